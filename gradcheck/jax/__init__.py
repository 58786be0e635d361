r"""Check a JAX function (a ``custom_vjp`` or ``custom_jvp`` among them) with gradcheck's verdict.

Needs JAX (``pip install -e '.[jax]'`` in the checkout); ``import gradcheck`` never
imports it.

* :func:`check_function` returns the checker's :class:`~gradcheck.CheckReport`;
* :func:`check_grads` is a drop-in for ``jax.test_util.check_grads``: same signature,
  ``AssertionError`` carrying the report on a mismatch.

``modes`` says which derivatives are checked, as in JAX: ``"rev"`` the reverse mode,
``jax.vjp`` with the checker's seeded cotangent, by :func:`gradcheck.check_vjp`;
``"fwd"`` the forward mode, ``jax.jvp`` along each column of the Jacobian (or random
tangents), by :func:`gradcheck.check_jvp`. Forward rows are named ``fwd.<argument>``.
``order=2`` does what ``check_grads`` does: with ``"rev"`` the backward's map
:math:`(x, g) \mapsto \text{vjp}(g)` (rows ``order2.<argument>``,
``order2.grad_output``), with ``"fwd"`` the JVP's map :math:`(x, v) \mapsto J v` (rows
``order2.jvp.<argument>``, ``order2.jvp.tangent.<argument>``), each checked in every
requested mode -- forward over forward, reverse over forward, forward over reverse,
reverse over reverse. The numerical side evaluates ``f`` on arrays of each argument's
own dtype (float32 stays float32: JAX's default; float16 and ``jnp.bfloat16`` stay
float16 and bfloat16, with steps and tolerances from their own resolution -- not a fixed
step such as ``check_grads``'s 1e-4, below float16's resolution). A failing
``order2.<argument>`` row of the backward's map in reverse mode whose argument the backward cuts with
``jax.lax.stop_gradient`` (in a ``custom_vjp``'s ``bwd``, or on a residual of its ``fwd``)
is diagnosed ``double_backward_cut``, its sentence naming the argument
(``docs/diagnosis.md``).

jax's keyword arguments (``check_grads``): ``atol`` / ``rtol`` are honoured when given (a
floor added to the automatic tolerance; never needed for a right verdict); ``eps`` is not
needed (steps are chosen per element, with error bars); ``modes`` is honoured, with
JAX's default ``("fwd", "rev")``. A ``custom_vjp`` function has no forward mode in JAX
(``jax.jvp`` refuses it, in ``check_grads`` too): check it with ``modes=("rev",)``.
"""

from __future__ import annotations

try:
    import jax as _jax  # noqa: F401  (absolute import: the real JAX)
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("gradcheck.jax needs JAX, which is not installed: pip install jax "
                      "(or pip install -e '.[jax]' in the gradcheck checkout)") from _exc

from gradcheck._adapter import (FORWARD_PREFIX, SECOND_PREFIX, check_in_mode, merge_reports,
                                mode_options, recording, second_order_names, tangent_names,
                                validate_modes, validate_order)
from gradcheck._errors import ConfigurationError
from gradcheck.jax._problem import JaxProblem
from gradcheck.jax._second import name_stops, stopped_arguments

__all__ = ["check_function", "check_grads"]


def _prefix(mode):
    return FORWARD_PREFIX if mode == "fwd" else ""


def _check_map(problem, which, point, argnames, mode, modes, name, options, calls=None):
    jmap = problem.map(which)
    derivative = jmap.vjp if mode == "rev" else jmap.jvp
    if calls is not None and mode == "rev":
        derivative = recording(jmap.vjp, calls)
    return check_in_mode(mode, jmap.value, derivative, point, argnames=argnames, name=name,
                         source={"f": "JAX's VJP", "backward": "JAX's VJP of the backward",
                                 "jvp": "JAX's VJP of the JVP"}[which],
                         **mode_options(options, mode, modes))


def _run(problem, order, modes, options):
    """Every (map, mode) pair that ``order`` and ``modes`` ask for, as one report."""
    options = dict(options)
    name = options.pop("name", None) or problem.label
    parts = [(_prefix(mode), "forward mode" if mode == "fwd" else "",
              _check_map(problem, "f", problem.point, problem.argnames, mode, modes, name,
                         options)) for mode in modes]
    if order == 2:
        opts = {k: v for k, v in options.items() if k not in ("wrt", "cotangent")}
        if "rev" in modes:
            opts.setdefault("roles", "generic")
        if "fwd" in modes:
            opts.setdefault("output_role", "generic")
        seed = options.get("seed", 0)
        second = []
        if "rev" in modes:      # the backward's derivatives, as check_grads's "VJP of"
            second.append(("backward", SECOND_PREFIX, problem.draw_g(seed),
                           second_order_names(problem.argnames, len(problem.out_shapes))))
        if "fwd" in modes:      # the JVP's derivatives, as check_grads's "JVP of"
            second.append(("jvp", SECOND_PREFIX + "jvp.", problem.draw_v(seed),
                           tangent_names(problem.argnames)))
        for which, prefix, extra, names in second:
            for mode in modes:
                label = f"order 2 ({which}{', forward mode' if mode == 'fwd' else ''})"
                calls = []      # the cotangents and points of the checked VJP
                report = _check_map(problem, which, problem.point + extra, names, mode,
                                    modes, f"{name} (order 2)", opts, calls)
                if which == "backward" and mode == "rev" and not report.passed:
                    report = name_stops(report, stopped_arguments(
                        problem, problem.point + extra, names), problem.label, names,
                        problem, calls)
                parts.append((_prefix(mode) + prefix, label, report))
    return merge_reports(parts)


def check_function(f, args, *, order=1, modes=("rev",), **options):
    """Check the derivatives of a JAX function in reverse and/or forward mode.

    Parameters
    ----------
    f : callable
        ``f(*args)`` returns an array or a pytree of arrays (its floating leaves count).
    args : tuple
        The point: arrays or pytrees of arrays. Every floating leaf is checked, named by
        its path (``params['w']``); other leaves pass through.
    order : {1, 2}
        1: the derivatives of ``f``. 2: also those of the backward's map (with
        ``"rev"``) and of the JVP's map (with ``"fwd"``), see the module notes.
    modes : sequence of {"rev", "fwd"}
        ``"rev"``: ``jax.vjp`` against numerical derivatives (:func:`gradcheck.check_vjp`);
        ``"fwd"``: ``jax.jvp``, column by column (:func:`gradcheck.check_jvp`), rows
        named ``fwd.<argument>``. Default reverse only; :func:`check_grads` defaults to
        both, as JAX's does.
    **options
        Those of :func:`gradcheck.check_vjp` / :func:`gradcheck.check_jvp` (``mode``,
        ``seed``, ``atol``, ``rtol``, ``wrt`` ...); ``wrt`` and ``cotangent`` apply to
        order 1, ``cotangent`` and ``roles`` to ``"rev"``, ``output_role`` to ``"fwd"``.

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
    >>> @jax.custom_jvp
    ... def sine(x):
    ...     return jnp.sin(x)
    >>> _ = sine.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0] + 1e-3))  # affine in t
    >>> report = check_function(sine, (jnp.linspace(-1.0, 1.0, 5),), modes=("rev", "fwd"))
    >>> [(a.name, a.passed) for a in report.arguments]       # the VJP is right, the JVP is not
    [('x', True), ('fwd.x', False)]
    """
    order = validate_order(order)
    modes = validate_modes(modes)
    problem = JaxProblem(f, args, label=options.get("name"))
    return _run(problem, order, modes, options)


def check_grads(f, args, order, modes=("fwd", "rev"), atol=None, rtol=None, eps=None):
    """Drop-in for ``jax.test_util.check_grads``: ``AssertionError`` carrying the report.

    A gradient from JAX with NaN or infinite entries (where ``f`` is finite) raises
    :class:`~gradcheck.NonFiniteGradientError`, an ``AssertionError`` too, naming the
    argument and the first indices.

    Checks every order up to ``order`` (1 or 2) in every mode of ``modes``, as JAX's does
    (see the module notes). ``atol``/``rtol`` given are a floor on top of the automatic
    tolerance; ``eps`` is not needed.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from gradcheck.jax import check_grads
    >>> check_grads(jnp.sin, (jnp.arange(4.0),), order=2)        # fwd and rev, orders 1, 2
    >>> check_grads(lambda x: x ** 3, (jnp.arange(1.0, 4.0),), order=2, modes=("fwd",))
    """
    order = validate_order(order)
    modes = validate_modes(modes)
    options = {k: v for k, v in (("atol", atol), ("rtol", rtol)) if v is not None}
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float))
                            or not eps > 0):
        raise ConfigurationError(f"eps must be None or a number > 0 (it is not needed); got "
                                 f"{eps!r}")
    report = _run(JaxProblem(f, args), order, modes, options)
    if not report.passed:
        err = AssertionError(str(report))
        err.report = report
        raise err
