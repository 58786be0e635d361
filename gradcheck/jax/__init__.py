"""Check a JAX function (a ``custom_vjp`` among them) with gradcheck's verdict.

Needs JAX (``pip install -e '.[jax]'`` in the checkout); ``import gradcheck`` never
imports it.

* :func:`check_function` returns the checker's :class:`~gradcheck.CheckReport`;
* :func:`check_grads` is a drop-in for ``jax.test_util.check_grads``: same signature,
  ``AssertionError`` carrying the report on a mismatch.

The analytic side is ``jax.vjp`` with the checker's seeded cotangent (for ``order=2``,
``jax.vjp`` of the map :math:`(x, g) \\mapsto \\text{vjp}(g)`); the numerical side
evaluates ``f`` on arrays of each argument's own dtype (float32 stays float32: JAX's
default). The verdict is :func:`gradcheck.check_vjp`'s.

jax's keyword arguments (``check_grads``): ``atol`` / ``rtol`` are honoured when given (a
floor added to the automatic tolerance; never needed for a right verdict); ``eps`` is not
needed (steps are chosen per element, with error bars); ``modes`` must be ``("rev",)``
for now: forward mode (``"fwd"``, also in jax's default ``("fwd", "rev")``) is not
available in this version and raises :class:`~gradcheck.ConfigurationError`.
"""

from __future__ import annotations

try:
    import jax as _jax  # noqa: F401  (absolute import: the real JAX)
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("gradcheck.jax needs JAX, which is not installed: pip install jax "
                      "(or pip install -e '.[jax]' in the gradcheck checkout)") from _exc

from gradcheck._adapter import (merge_orders, second_order_names, validate_modes,
                                validate_order, with_notes)
from gradcheck._errors import ConfigurationError
from gradcheck.checker import check_vjp
from gradcheck.jax._problem import JaxProblem

__all__ = ["check_function", "check_grads"]


def _run(problem, orders, options):
    options = dict(options)
    name = options.pop("name", None) or problem.label
    reports = []
    if 1 in orders:
        reports.append(check_vjp(problem.forward, problem.backward, problem.point,
                                 argnames=problem.argnames, name=name, **options))
    if 2 in orders:
        g = problem.draw_g(options.get("seed", 0))
        opts = {k: v for k, v in options.items() if k not in ("wrt", "cotangent")}
        opts.setdefault("roles", "generic")
        reports.append(check_vjp(problem.second, problem.second_vjp, problem.point + g,
                                 argnames=second_order_names(problem.argnames, len(g)),
                                 name=f"{name} (order 2)", **opts))
    return merge_orders(*reports) if len(reports) == 2 else with_notes(reports[0])


def check_function(f, args, *, order=1, modes=("rev",), **options):
    """Check the reverse-mode derivatives of a JAX function.

    Parameters
    ----------
    f : callable
        ``f(*args)`` returns an array or a pytree of arrays (its floating leaves count).
    args : tuple
        The point: arrays or pytrees of arrays. Every floating leaf is checked, named by
        its path (``params['w']``); other leaves pass through.
    order : {1, 2}
        1: ``jax.vjp`` against numerical derivatives of ``f``. 2: also the VJP's own
        derivatives, rows named ``order2.<argument>`` and ``order2.grad_output``.
    modes : sequence of str
        ``("rev",)``; forward mode (``"fwd"``) is not available in this version.
    **options
        Those of :func:`gradcheck.check_vjp` (``mode``, ``seed``, ``atol``, ``rtol``,
        ``wrt`` ...); ``wrt`` and ``cotangent`` apply to order 1.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from gradcheck.jax import check_function
    >>> @jax.custom_vjp
    ... def softplus(x):
    ...     return jnp.logaddexp(x, 0.0)
    >>> softplus.defvjp(lambda x: (softplus(x), x),
    ...                 lambda x, g: (g * jax.nn.sigmoid(x),))
    >>> report = check_function(softplus, (jnp.linspace(-3.0, 3.0, 7),), order=2)
    >>> report.passed, report.dtype
    (True, 'float32')
    """
    order = validate_order(order)
    validate_modes(modes)
    problem = JaxProblem(f, args, label=options.get("name"))
    return _run(problem, tuple(range(1, order + 1)), options)


def check_grads(f, args, order, modes=("fwd", "rev"), atol=None, rtol=None, eps=None):
    """Drop-in for ``jax.test_util.check_grads``: ``AssertionError`` carrying the report.

    Checks every order up to ``order`` (1 or 2), as JAX's does. ``atol``/``rtol`` given
    are a floor on top of the automatic tolerance; ``eps`` is not needed. JAX's default
    ``modes=("fwd", "rev")`` asks for forward mode, which this version does not have:
    pass ``modes=("rev",)`` (a :class:`~gradcheck.ConfigurationError` says so otherwise).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from gradcheck.jax import check_grads
    >>> check_grads(jnp.sin, (jnp.arange(4.0),), order=2, modes=("rev",))
    >>> check_grads(lambda x: x ** 3, (jnp.arange(1.0, 4.0),), order=1, modes=("fwd",))
    Traceback (most recent call last):
    ...
    gradcheck._errors.ConfigurationError: modes=('fwd',): forward mode ('fwd') is not available ...
    """
    order = validate_order(order)
    validate_modes(modes)
    options = {k: v for k, v in (("atol", atol), ("rtol", rtol)) if v is not None}
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float))
                            or not eps > 0):
        raise ConfigurationError(f"eps must be None or a number > 0 (it is not needed); got "
                                 f"{eps!r}")
    report = _run(JaxProblem(f, args), tuple(range(1, order + 1)), options)
    if not report.passed:
        err = AssertionError(str(report))
        err.report = report
        raise err
