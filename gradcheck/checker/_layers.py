"""Checks of the built-in layers and networks, using what the toolkit knows about them.

For a :class:`~gradcheck.ops.network.Sequential` or a single layer the checker knows
three things a generic function does not tell it:

- **dependency patterns** -- which outputs each element of an argument can change (a
  conv input element reaches only its receptive field, a kernel entry only its own output
  channel, batch items never mix), so the differentiator perturbs many elements at once;
- **batch independence** -- a batch of perturbed inputs can go through the network as
  one larger batch (vectorized evaluation);
- **the layers' usual bugs** -- a failing check is diagnosed against gradients
  recomputed with a known mistake planted in one layer (:mod:`._suspects`).
"""

from __future__ import annotations

import numpy as np

from gradcheck._errors import ConfigurationError, NondeterministicError
from gradcheck.checker._check import check_vjp
from gradcheck.checker._report import CheckReport
from gradcheck.checker._suspects import network_suspects

__all__ = ["check_network", "check_layer"]


def _roles(names, shapes):
    roles = {}
    for name, shape in zip(names, shapes):
        if name in ("input", "x"):
            roles[name] = "input"
        elif name.endswith(".b") or name == "b":
            roles[name] = "bias"
        elif len(shape) >= 2:
            roles[name] = "weight"
        else:
            roles[name] = "generic"
    return roles


def _draw(net, x, params, seed, dtype):
    rng = np.random.default_rng([seed, 1])
    if params is None:
        params = net.init_params(rng=rng, dtype=dtype)
    if x is None:
        x = rng.standard_normal(net.input_shape).astype(dtype)
    return x, params


def check_network(net, x=None, params=None, *, seed=0, dtype=np.float64, name=None,
                  **options) -> CheckReport:
    """Check every gradient of a :class:`~gradcheck.ops.network.Sequential`.

    Parameters
    ----------
    net : Sequential
        The network. With a loss, the checked function is the per-sample loss; without,
        the network output.
    x, params : optional
        The point to check at; drawn from ``seed`` (standard normal input, the layers'
        own initialization) when omitted.
    seed : int
        Seeds the drawn point, the cotangent and fast-mode directions.
    dtype : {float64, float32}
        dtype of drawn inputs and parameters.
    **options
        Passed to :func:`~gradcheck.check_vjp` (``mode``, ``budget``, ``atol`` …).

    Returns
    -------
    CheckReport
        One entry per tensor: ``"input"``, ``"layer0.conv.w"``, ``"layer0.conv.b"`` …

    Examples
    --------
    >>> from gradcheck import check_network
    >>> from gradcheck.ops.layers import Conv, Activation, Flatten, Dense
    >>> from gradcheck.ops.network import Sequential
    >>> net = Sequential([Conv(2, 2), Activation("tanh"), Flatten(), Dense(3)],
    ...                  (2, 1, 4, 4), loss="softmax_cross_entropy")
    >>> report = check_network(net)
    >>> report.passed, [a.name for a in report.arguments]
    (True, ['input', 'layer0.conv.w', 'layer0.conv.b', 'layer3.dense.w', 'layer3.dense.b'])
    """
    from gradcheck.ops.network import Sequential

    if not isinstance(net, Sequential):
        raise ConfigurationError(f"net must be a gradcheck.ops.network.Sequential; got "
                                 f"{type(net).__name__}")
    x, params = _draw(net, x, params, seed, dtype)
    if net.loss is not None and net.loss.name == "weighted_sum" and "cotangent" not in options:
        # C = <R, y> is linear in the output: check the output's VJP with R itself, so the
        # layers' dependency patterns (not the per-sample sum) decide what moves together.
        options["cotangent"] = net.loss.weights
        net = Sequential(net.layers, net.input_shape)
    f, f_vjp, names = net.as_function()
    flat = (x,) + tuple(net.flatten_params(params))
    shapes = [np.shape(a) for a in flat]
    options.setdefault("patterns", {n: (lambda n=n: net.structure(n) or net.pattern(n))
                                    for n in names})
    options.setdefault("roles", _roles(names, shapes))
    options.setdefault("suspects", network_suspects(net, x, params))
    try:
        return check_vjp(f, f_vjp, flat, argnames=names, seed=seed,
                         name=name or "network", **options)
    except NondeterministicError as exc:   # f is the network: say so
        raise NondeterministicError(exc.detail, "the network's forward pass") from None


def check_layer(layer, x=None, params=None, *, input_shape=None, seed=0, dtype=np.float64,
                name=None, **options) -> CheckReport:
    """Check one built-in layer's backward: ``x`` and each parameter (``w``, ``b`` …).

    ``x`` or ``input_shape`` must be given; missing values are drawn from ``seed``.

    Examples
    --------
    >>> from gradcheck import check_layer
    >>> from gradcheck.ops.layers import Conv
    >>> check_layer(Conv(3, 2, stride=2, padding=1), input_shape=(2, 2, 5, 5)).passed
    True
    """
    from gradcheck.ops.network import Sequential

    if x is None and input_shape is None:
        raise ConfigurationError("check_layer needs x or input_shape")
    shape = tuple(np.shape(x)) if x is not None else tuple(input_shape)
    net = Sequential([layer], shape)
    if params is not None and not isinstance(params, (list, tuple)):
        params = [dict(params)]
    x, params = _draw(net, x, params, seed, dtype)
    pnames = list(params[0])
    names = ("x", *pnames)
    flat = (np.asarray(x),) + tuple(params[0][p] for p in pnames)
    net_names = net.names
    rename = dict(zip(net_names, names))

    def f(x, *p):
        return layer.forward(x, *p)

    def f_vjp(g, x, *p):
        return layer.backward(g, x, *p)

    options.setdefault("patterns", {rename[n]: (lambda n=n: net.structure(n) or net.pattern(n))
                                    for n in net_names})
    options.setdefault("roles", _roles(names, [np.shape(a) for a in flat]))
    options.setdefault("suspects", network_suspects(net, x, params, rename=rename))
    return check_vjp(f, f_vjp, flat, argnames=names, seed=seed,
                     name=name or getattr(layer, "name", "layer"), **options)
