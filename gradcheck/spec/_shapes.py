"""Following the tensor shape through the layers of a spec, with errors pinned on keys.

Each layer's output shape comes from the real layer (:mod:`gradcheck.ops.layers`), but
the checks that can name a key -- a kernel larger than the padded input, channels not
divisible by groups, pooling padding over half the kernel, ``"same"`` padding with a
stride, a dense layer on an image-shaped input -- are made here first, so the message
says ``layer[i].kernel`` rather than repeating the layer's arguments.
"""

from __future__ import annotations

import math

from gradcheck.spec._model import LayerSpec, layer_kind
from gradcheck.spec._values import Ctx, show

__all__ = ["checked_output_shape", "layer_output_shape", "divisors"]


def divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _per_dim(value, nd):
    return list(value) if isinstance(value, list) else [value] * nd


def _from_where(i: int) -> str:
    return "the input" if i == 0 else f"layer[{i - 1}]"


def checked_output_shape(ctx: Ctx, i: int, layer: LayerSpec, shape):
    """The layer's output shape, with shape errors pinned on the key at fault."""
    key, o = f"layer[{i}]", layer.options
    if layer.type == "python":
        return tuple(o["output_shape"]) if "output_shape" in o else None
    if shape is None:
        return None  # after a python layer of unknown output shape: checked when built
    if layer.type in ("conv", "maxpool", "avgpool"):
        if not 3 <= len(shape) <= 5:
            raise ctx.fail(key, f"a {layer.type} layer needs an input of shape (N, C, *spatial) "
                                f"with 1 to 3 spatial dims, but {_from_where(i)} gives shape "
                                f"{shape}")
        _window_checks(ctx, key, layer, shape)
    elif layer.type == "dense" and len(shape) != 2:
        raise ctx.fail(key, f"a dense layer needs a 2-D input (N, features), but "
                            f"{_from_where(i)} gives shape {shape}; put a "
                            f"{{type = \"flatten\"}} layer before it")
    elif layer.type == "flatten" and len(shape) < 2:
        raise ctx.fail(key, f"a flatten layer needs an input (N, *features), but "
                            f"{_from_where(i)} gives shape {shape}")
    return layer_output_shape(ctx, i, layer, shape)


def layer_output_shape(ctx: Ctx, i: int, layer: LayerSpec, shape):
    """Ask the real layer (from :mod:`gradcheck.ops.layers`) for its output shape."""
    from gradcheck._errors import ConfigurationError
    from gradcheck.spec._build import make_layer

    if layer.type == "python":
        return tuple(layer.options["output_shape"]) if "output_shape" in layer.options else None
    try:
        return tuple(make_layer(layer).output_shape(shape))
    except ConfigurationError as exc:
        raise ctx.fail(f"layer[{i}]", f"{layer_kind(layer)} on input of shape {shape}: {exc}") \
            from None


def _window_checks(ctx, key, layer, shape):
    o, nd = layer.options, len(shape) - 2
    kernel = _per_dim(o["kernel"], nd)
    stride = _per_dim(o["stride"], nd)
    dilation = _per_dim(o.get("dilation", 1), nd)
    if layer.type == "conv":
        c_in, groups = shape[1], o["groups"]
        if c_in % groups:
            raise ctx.fail(f"{key}.groups", f"{groups} does not divide the {c_in} input "
                                            f"channels of shape {shape}; valid: "
                                            f"{divisors(math.gcd(c_in, o['out_channels']))}")
        lo, hi = _conv_pads(ctx, key, o["padding"], kernel, stride, dilation, nd)
    else:
        pads = _per_dim(o["padding"], nd)
        for axis, (k, p) in enumerate(zip(kernel, pads)):
            if 2 * p > k:
                raise ctx.fail(f"{key}.padding", f"{show(o['padding'])} is more than half the "
                                                 f"kernel size {k} along spatial dim {axis}; "
                                                 f"valid: at most {k // 2}")
        lo = hi = pads
    for axis, (n, k, d, a, b) in enumerate(zip(shape[2:], kernel, dilation, lo, hi)):
        reach = d * (k - 1) + 1
        if n + a + b < reach:
            extent = f" (dilated extent {reach})" if d > 1 else ""
            raise ctx.fail(f"{key}.kernel", f"{show(o['kernel'])}{extent} is larger than the "
                                            f"padded input along spatial dim {axis}: size {n} "
                                            f"+ padding {a}+{b} = {n + a + b}; use a kernel of "
                                            f"at most {n + a + b} there or more padding")


def _conv_pads(ctx, key, padding, kernel, stride, dilation, nd):
    reach = [d * (k - 1) for k, d in zip(kernel, dilation)]
    if padding == "valid":
        return [0] * nd, [0] * nd
    if padding == "full":
        return reach, reach
    if padding == "same":
        if any(s != 1 for s in stride):
            shown = show(stride if len(set(stride)) > 1 else stride[0])
            raise ctx.fail(f"{key}.padding", f"\"same\" needs stride 1, got stride {shown}; "
                                             f"use an int padding with this stride")
        lo = [r // 2 for r in reach]
        return lo, [r - a for r, a in zip(reach, lo)]
    if isinstance(padding, list) and padding and isinstance(padding[0], list):
        return [p[0] for p in padding], [p[1] for p in padding]
    pads = _per_dim(padding, nd)
    return pads, pads
