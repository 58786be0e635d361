"""Checks of the built-in layers and networks, using what the toolkit knows about them.

For a :class:`~gradcheck.ops.network.Sequential` or a single layer the checker knows
three things a generic function does not tell it:

- **dependency patterns** -- which outputs each element of an argument can change (a
  conv input element reaches only its receptive field, a kernel entry only its own output
  channel, batch items never mix), so the differentiator perturbs many elements at once;
- **batch independence** -- a batch of perturbed inputs can go through the network as
  one larger batch (vectorized evaluation);
- **the layers' usual bugs** -- a failing check is diagnosed against gradients
  recomputed with a known mistake planted in one layer (:mod:`._suspects`);
- **which layer is wrong** -- when a network check fails, every layer is checked on its
  own, at the activation and with the error the network gave it, and the culprit is named
  (:mod:`._culprit`).

:func:`check_layer` takes a built-in layer, a user's own layer object (``forward`` and
``backward``, the contract of a spec's ``type = "python"`` layer) or a layer-spec mapping
(``{"type": "conv", ...}``, ``{"type": "python", "target": ..., "params": ...}``).
"""

from __future__ import annotations

import numpy as np

from gradcheck._errors import ConfigurationError, NondeterministicError
from gradcheck.checker._check import check_vjp
from gradcheck.checker._culprit import (
    PER_LAYER,
    network_layer_pass,
    single_layer,
    unchecked_layers,
    with_layers,
)
from gradcheck.checker._report import CheckReport
from gradcheck.checker._suspects import network_suspects

__all__ = ["check_network", "check_layer", "check_alone", "as_layer"]


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
                  per_layer="on_failure", **options) -> CheckReport:
    """Check every gradient of a :class:`~gradcheck.ops.network.Sequential`, and name the
    layer whose backward is wrong.

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
    per_layer : {"on_failure", "always"}
        When every layer is also checked on its own, at the activation and with the error
        the network gave it (:mod:`gradcheck.checker._culprit`): when the network's check
        fails (a right network skips it), or always.
    **options
        Passed to :func:`~gradcheck.check_vjp` (``mode``, ``budget``, ``atol`` …).

    Returns
    -------
    CheckReport
        One entry per tensor: ``"input"``, ``"layer0.conv.w"``, ``"layer0.conv.b"`` …;
        ``layers`` holds one :class:`~gradcheck.checker.LayerResult` per layer, and
        ``str(report)`` names the culprit of a failure.

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
    >>> [(layer.index, layer.type, layer.passed, layer.alone) for layer in report.layers][:2]
    [(0, 'conv', True, False), (1, 'tanh', True, False)]
    """
    if per_layer not in PER_LAYER:
        raise ConfigurationError(f"per_layer must be one of {PER_LAYER}; got {per_layer!r}")
    net, x, params = _network_point(net, x, params, seed, dtype)
    report = check_tensors(net, x, params, seed=seed, name=name, **options)
    return layer_pass(report, net, x, params, seed=seed, per_layer=per_layer, **options)


def layer_pass(report, net, x, params, *, seed=0, per_layer="on_failure", **options):
    """``report`` of ``net`` with its layers: checked on their own when it failed (or
    ``per_layer="always"``), else verified as part of it."""
    alone = len(net.layers) == 1 and (net.loss is None or net.loss.name == "weighted_sum")
    if alone and not report.passed:   # the network is its one layer: its check is the layer's
        layers = single_layer(net.layers[0], report.passed)
    elif per_layer == "always" or not report.passed:
        layers = network_layer_pass(net, x, params, seed=seed, **options)
    else:
        layers = unchecked_layers(net.layers, report.passed)
    return with_layers(report, layers)


def _network_point(net, x, params, seed, dtype):
    from gradcheck.ops.network import Sequential

    if not isinstance(net, Sequential):
        raise ConfigurationError(f"net must be a gradcheck.ops.network.Sequential; got "
                                 f"{type(net).__name__}")
    x, params = _draw(net, x, params, seed, dtype)
    return net, x, params


def check_tensors(net, x, params, *, seed=0, name=None, **options) -> CheckReport:
    """The network's tensors checked against numerical derivatives (no per-layer pass)."""
    from gradcheck.ops.network import Sequential

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
    from gradcheck.ops._batched import batchable

    # f takes a leading batch of points where the layers carry one (gradcheck.ops._batched)
    options.setdefault("vectorized", {n: batchable(net, n) for n in names})
    try:
        return check_vjp(f, f_vjp, flat, argnames=names, seed=seed,
                         name=name or "network", **options)
    except NondeterministicError as exc:   # f is the network: say so, and name the user's
        own = [f"layer {i} ({layer.name})" for i, layer in enumerate(net.layers)   # layers
               if getattr(layer, "kind", None) == "python"]
        where = "" if not own else (f"; the built-in layers are deterministic, so look at "
                                    f"{'this one' if len(own) == 1 else 'these'}: "
                                    f"{', '.join(own)}")
        raise NondeterministicError(exc.detail + where, "the network's forward pass") from None


def _label(obj) -> str:
    """``module:Qualname`` of a user's layer object (its class), or the module's name."""
    import types

    if isinstance(obj, types.ModuleType):
        return obj.__name__
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def as_layer(layer, *, params=None, dtype=np.float64, input_shape=None):
    """A layer of :mod:`gradcheck.ops.layers` for ``layer``: itself; a user object with
    ``forward``/``backward`` (its parameters' shapes from ``params``, name -> array);
    or a layer-spec mapping, ``{"type": "python", "target": ..., "params": {name:
    shape}, "kwargs": {...}}`` read as a spec reads it."""
    from collections.abc import Mapping

    from gradcheck.ops._layer_base import LayerBase

    if isinstance(layer, LayerBase):
        return layer
    if isinstance(layer, Mapping):
        if layer.get("type") != "python":
            from gradcheck.ops.layers import layer_from_dict

            return layer_from_dict(dict(layer))
        return _python_layer(layer, dtype, input_shape)
    if callable(getattr(layer, "forward", None)) and callable(getattr(layer, "backward", None)):
        from gradcheck.spec._user import UserLayer

        if isinstance(layer, type):
            raise ConfigurationError(
                f"layer is the class {_label(layer)}; pass an instance, e.g. "
                f"{layer.__name__}(), or a mapping {{'type': 'python', 'target': ...}}")
        shapes = {} if params is None else {k: np.shape(v) for k, v in dict(params).items()}
        return UserLayer(_label(layer), layer, shapes, dtype=np.dtype(dtype).name)
    raise ConfigurationError(
        f"layer must be a layer of gradcheck.ops.layers, an object with forward(x, *params) "
        f"and backward(grad_y, x, *params) methods, or a layer-spec mapping such as "
        f"{{'type': 'python', 'target': 'mylayers:Layer', 'params': {{'w': [3, 2, 3, 3]}}}}; "
        f"got {type(layer).__name__}")


def _python_layer(mapping, dtype, input_shape):
    """A ``{"type": "python", ...}`` mapping, validated and resolved as a spec layer."""
    from gradcheck.spec._build import make_layer
    from gradcheck.spec._schema import parse_spec
    from gradcheck.spec._user import resolve_target

    shape = list(input_shape) if input_shape is not None else [1, 1]
    spec = parse_spec({"input": {"shape": shape, "dtype": np.dtype(dtype).name},
                       "layer": [dict(mapping)]}, source="check_layer")
    ls = spec.layers[0]
    obj = resolve_target(ls.options["target"], kwargs=ls.options["kwargs"],
                         source="check_layer", key="layer[0].target")
    return make_layer(ls, obj=obj, dtype=np.dtype(dtype).name)


def check_layer(layer, x=None, params=None, *, input_shape=None, seed=0, dtype=np.float64,
                name=None, **options) -> CheckReport:
    """Check one layer's backward: ``x`` and each parameter (``w``, ``b`` …).

    ``layer`` is a built-in layer (:mod:`gradcheck.ops.layers`), your own layer -- an
    object with ``forward(x, *params) -> y`` and ``backward(grad_y, x, *params) ->
    (grad_x, *grad_params)``, the contract of a spec's ``type = "python"`` layer -- or a
    layer-spec mapping (``{"type": "conv", "out_channels": 4, "kernel": 3}``, or
    ``{"type": "python", "target": "mylayers:BatchNorm", "params": {"gamma": [3], "beta":
    [3]}}``, read as a spec's ``[[layer]]``). ``x`` or ``input_shape`` must be given;
    missing values are drawn from ``seed``. For an object, ``params`` (name -> array, in
    the order ``forward`` takes them) gives its parameters; a mapping's come from its
    ``params`` shapes, drawn like a spec's.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_layer
    >>> from gradcheck.ops.layers import Conv
    >>> check_layer(Conv(3, 2, stride=2, padding=1), input_shape=(2, 2, 5, 5)).passed
    True
    >>> class Scale:                      # your own layer: y = a * x
    ...     def forward(self, x, a):
    ...         return a * x
    ...     def backward(self, g, x, a):
    ...         return g * a, np.array([np.sum(g * x)])
    >>> check_layer(Scale(), np.ones((2, 3)), {"a": np.array([2.0])}).passed
    True
    """
    from gradcheck.ops.network import Sequential

    if x is None and input_shape is None:
        raise ConfigurationError("check_layer needs x or input_shape")
    shape = tuple(np.shape(x)) if x is not None else tuple(input_shape)
    own = params[0] if isinstance(params, (list, tuple)) and params else params
    layer = as_layer(layer, params=own, dtype=dtype if x is None else np.asarray(x).dtype,
                     input_shape=shape)
    net = Sequential([layer], shape)
    if params is not None and not isinstance(params, (list, tuple)):
        params = [dict(params)]
    x, params = _draw(net, x, params, seed, dtype)
    return check_alone(layer, x, params[0], seed=seed,
                       name=name or getattr(layer, "name", "layer"), **options)


def check_alone(layer, x, params: dict, *, backward=None, seed=0, name=None, index=None,
                **options) -> CheckReport:
    """``layer`` at ``x`` with ``params`` (name -> array), its backward (or ``backward``)
    against numerical derivatives of its forward: ``x`` and each parameter. ``index`` is
    the layer's number in its network (the per-layer pass), named by its diagnoses."""
    from gradcheck.ops.network import Sequential

    x = np.asarray(x)
    net = Sequential([layer], tuple(x.shape))
    pnames = list(params)
    names = ("x", *pnames)
    flat = (x,) + tuple(params[p] for p in pnames)
    rename = dict(zip(net.names, names))
    backward = layer.backward if backward is None else backward

    def f(x, *p):
        return layer.forward(x, *p)

    def f_vjp(g, x, *p):
        return backward(g, x, *p)

    options.setdefault("patterns", {rename[n]: (lambda n=n: net.structure(n) or net.pattern(n))
                                    for n in net.names})
    options.setdefault("roles", _roles(names, [np.shape(a) for a in flat]))
    options.setdefault("suspects", network_suspects(net, x, [params], rename=rename,
                                                    layer_number=index))
    return check_vjp(f, f_vjp, flat, argnames=names, seed=seed,
                     name=name or getattr(layer, "name", "layer"), **options)
