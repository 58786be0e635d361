"""From a validated :class:`Spec` to arrays: the network, the input ``x`` and the parameters.

Nothing is allocated before the memory estimate has been compared with the limit:

    bytes ~ itemsize * (5 * (input + parameters) + 3 * (every layer's output))

(the forward trace and the errors flowing back hold each layer's output; each checked
tensor also has an analytic gradient, a numerical one and its error bars). The limit is
``--max-memory`` or ``[check] max_memory`` if given, else half the memory the system
reports as available (4 GiB when it reports nothing).
"""

from __future__ import annotations

import math
import os

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._record import NamedTuple
from gradcheck.spec._model import LayerSpec, Spec
from gradcheck.spec._values import Ctx, format_bytes

__all__ = ["BuiltSpec", "build", "make_layer", "estimate_bytes", "memory_limit",
           "available_memory", "draw_input"]

_FALLBACK_LIMIT = 4 * 2**30


class BuiltSpec(NamedTuple):
    """A spec made concrete: the network (loss attached), ``x`` and the parameters."""

    spec: Spec
    network: object          # gradcheck.ops.network.Sequential
    x: np.ndarray
    params: list             # one {name: array} dict per layer


def _tuple(value):
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value


def make_layer(layer: LayerSpec, *, obj=None, dtype="float64"):
    """The :mod:`gradcheck.ops.layers` object for one layer spec (``obj``: a resolved target)."""
    from gradcheck.ops import layers    # (pooling and dense layers imported when used)

    o = {k: _tuple(v) for k, v in layer.options.items()}
    if layer.type == "conv":
        return layers.Conv(o["out_channels"], o["kernel"], stride=o["stride"], padding=o["padding"],
                    dilation=o["dilation"], groups=o["groups"], bias=o["bias"],
                    convention=o["convention"])
    if layer.type in ("maxpool", "avgpool"):
        cls = layers.MaxPool if layer.type == "maxpool" else layers.AvgPool
        return cls(o["kernel"], stride=o["stride"], padding=o["padding"])
    if layer.type == "flatten":
        return layers.Flatten()
    if layer.type == "dense":
        return layers.Dense(o["out_features"], bias=o["bias"])
    if layer.type == "python":
        from gradcheck.spec._user import UserLayer

        params = layer.options["params"]
        if not params and hasattr(obj, "param_shapes"):   # an nn.Module: its own parameters
            params = obj.param_shapes() or {}   # a torch Function: None, the spec's (none)
        return UserLayer(layer.options["target"], obj, params,
                         options=layer.options["kwargs"],
                         output_shape=layer.options.get("output_shape"), dtype=dtype,
                         init=layer.options.get("init"),
                         batched=layer.options.get("batched", False))
    return layers.Activation(layer.type, **layer.options)


# --------------------------------------------------------------------------- memory


def available_memory() -> int | None:
    """Bytes the system reports as available (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", "rb") as fh:     # (bytes: no codec to import)
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(spec: Spec | None = None, max_memory: int | None = None) -> tuple[int, str]:
    """``(bytes, where it comes from)``: the option, the spec, or half the available memory."""
    if max_memory is not None:
        return int(max_memory), "--max-memory"
    if spec is not None and spec.check.max_memory is not None:
        return spec.check.max_memory, "check.max_memory"
    avail = available_memory()
    if avail is None:
        return _FALLBACK_LIMIT, "the default limit"
    return avail // 2, "half the available memory"


def _param_sizes(layer: LayerSpec, in_shape) -> list[int]:
    o = layer.options
    if layer.type == "python":
        return [math.prod(s) for s in o["params"].values()]
    if in_shape is None:
        return []
    if layer.type == "conv":
        nd = len(in_shape) - 2
        k = o["kernel"] if isinstance(o["kernel"], list) else [o["kernel"]] * nd
        w = o["out_channels"] * (in_shape[1] // o["groups"]) * math.prod(k)
        return [w, o["out_channels"]] if o["bias"] else [w]
    if layer.type == "dense":
        w = o["out_features"] * math.prod(in_shape[1:])
        return [w, o["out_features"]] if o["bias"] else [w]
    return []


def estimate_bytes(spec: Spec, shapes=None) -> int:
    """Rough peak memory of checking ``spec`` (see the module docstring), from shapes alone."""
    shapes = list(shapes if shapes is not None else spec.shapes)
    itemsize = np.dtype(spec.input.dtype).itemsize
    known = shapes[0]
    args = math.prod(known)
    acts = 0
    for layer, in_shape, out_shape in zip(spec.layers, shapes[:-1], shapes[1:]):
        args += sum(_param_sizes(layer, in_shape if in_shape is not None else known))
        known = out_shape if out_shape is not None else known  # unknown: assume same size
        acts += math.prod(known)
    return itemsize * (5 * args + 3 * acts)


def _check_memory(spec: Spec, shapes, max_memory):
    need = estimate_bytes(spec, shapes)
    limit, origin = memory_limit(spec, max_memory)
    if need > limit:
        raise Ctx(spec.source).fail(
            "input.shape",
            f"{list(spec.input.shape)} ({spec.input.dtype}) through these layers needs about "
            f"{format_bytes(need)} to check (input, parameters and every layer's output), "
            f"more than the {format_bytes(limit)} limit ({origin}); use a smaller shape or "
            f"raise the limit with --max-memory or [check] max_memory")


# --------------------------------------------------------------------------- building


def draw_input(spec: Spec, first_layer=None) -> np.ndarray:
    """``x``: ``loc + scale * N(0, 1)`` or ``loc + scale * U(-1, 1)``, seeded, in the spec's dtype.

    With ``away_from_kinks = d`` and an activation as the first layer, values within
    ``d`` of one of its kinks are pushed out to ``kink ± d`` (keeping their side).
    """
    inp = spec.input
    seed = inp.seed if inp.seed is not None else spec.check.seed
    rng = np.random.default_rng([seed, 0])
    if inp.distribution == "uniform":
        z = rng.uniform(-1.0, 1.0, inp.shape)
    else:
        z = rng.standard_normal(inp.shape)
    x = inp.loc + inp.scale * z
    kinks = getattr(getattr(first_layer, "spec", None), "kinks", ())
    d = inp.away_from_kinks
    if d > 0:
        for k in kinks:
            near = np.abs(x - k) < d
            x[near] = np.where(x[near] >= k, k + d, k - d)
    return x.astype(inp.dtype)


def _check_declared_shape(ctx: Ctx, i: int, layer, in_shape) -> None:
    """A python layer's ``output_shape`` against what its ``forward`` returns (once)."""
    declared = tuple(layer.output_shape(in_shape))
    actual = tuple(layer.probed_output_shape(in_shape))
    if actual != declared:
        raise ctx.fail(
            f"layer[{i}].output_shape",
            f"{list(layer.fixed_output_shape)} does not match the layer: {layer.target}.forward "
            f"returned shape {actual} for an input of shape {tuple(in_shape)}; write "
            f"output_shape = {list(actual)} or leave the key out")


def _check_batched(ctx: Ctx, i: int, layer, in_shape) -> None:
    """A python layer with ``batched = true``: its ``forward`` on two seeded points at
    once must return one output per point, each the output of its point alone."""
    try:
        layer.check_batch(in_shape)
    except ValueError as exc:
        raise ctx.fail(f"layer[{i}].batched", f"{exc}; return shape (B, *output) for a "
                                              f"leading batch of B inputs, or leave the "
                                              f"key out") from None


def build(spec: Spec, *, max_memory: int | None = None) -> BuiltSpec:
    """Resolve user targets, build the network and draw ``x`` and the parameters.

    Raises :class:`~gradcheck.SpecError` for bad input (memory, targets, shapes that only
    show once a user layer's output shape is known) and
    :class:`~gradcheck.UserCodeError` when a user layer fails while its output shape is
    probed.
    """
    from gradcheck.ops.losses import get_loss
    from gradcheck.ops.network import Sequential
    from gradcheck.spec._shapes import checked_output_shape

    ctx = Ctx(spec.source)
    shapes = list(spec.shapes) or [spec.input.shape] + [None] * len(spec.layers)
    _check_memory(spec, shapes, max_memory)
    layers = []
    for i, ls in enumerate(spec.layers):
        obj = None
        if ls.type == "python":
            from gradcheck.spec._user import resolve_target   # (only for a user layer)

            obj = resolve_target(ls.options["target"], kwargs=ls.options["kwargs"],
                                 source=spec.source, key=f"layer[{i}].target")
            if ls.options["params"] and getattr(obj, "param_shapes", lambda: None)():
                raise ctx.fail(f"layer[{i}].params", f"{ls.options['target']} is an "
                               f"nn.Module, whose parameters are its own "
                               f"({', '.join(obj.param_shapes())}); leave params out")
        layers.append(make_layer(ls, obj=obj, dtype=spec.input.dtype))
        unknown = [p for p in ls.options.get("init", {}) if p not in layers[-1].params] \
            if ls.type == "python" else []
        if unknown:   # an nn.Module's parameters are known only now
            raise ctx.fail(f"layer[{i}].init.{unknown[0]}",
                           f"not a parameter of {ls.options['target']}; its parameters are: "
                           f"{', '.join(layers[-1].params) or 'none'}")
    # Shapes past a python layer are known only now: probe it, then check what follows.
    shape = spec.input.shape
    for i, (ls, layer) in enumerate(zip(spec.layers, layers)):
        if ls.type == "python":
            if layer.fixed_output_shape is not None:
                _check_declared_shape(ctx, i, layer, shape)
            if layer.batched:
                _check_batched(ctx, i, layer, shape)
            shape = tuple(layer.output_shape(shape))
        elif shapes[i + 1] is None:
            shape = checked_output_shape(ctx, i, ls, shape)
        else:
            shape = shapes[i + 1]
        shapes[i + 1] = shape
    _check_memory(spec, shapes, max_memory)
    try:
        net = Sequential(layers, spec.input.shape)
    except ConfigurationError as exc:
        raise ctx.fail("layer", str(exc)) from None
    if spec.loss is not None:
        seed = spec.loss.seed if spec.loss.seed is not None else spec.check.seed
        try:
            loss = get_loss(spec.loss.type, net.output_shape, seed=seed, dtype=spec.input.dtype)
        except ConfigurationError as exc:
            raise ctx.fail("loss.type", str(exc)) from None
        net = Sequential(layers, spec.input.shape, loss=loss)
    x = draw_input(spec, layers[0])
    pseed = spec.input.seed if spec.input.seed is not None else spec.check.seed
    params = net.init_params(rng=np.random.default_rng([pseed, 1]), dtype=spec.input.dtype)
    return BuiltSpec(spec, net, x, params)
