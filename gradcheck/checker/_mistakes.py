r"""Planted mistakes: what the usual backward-pass bugs would have returned.

Generic suspects (sign, scale, flip, shift, region) need only the two gradient arrays;
they live in :mod:`gradcheck.checker._diagnose`. The bugs people actually write in a
convolution or an activation do not always leave such a simple fingerprint on the
gradient of a *network's* input: a kernel that was not rotated in layer 2 reaches the
input through layers 1 and 0. So for a layer the checker knows (a built-in layer, or a
user layer identified as a convolution), it *recomputes* the gradients with one known
mistake planted in one layer, using the library's own correct ops everywhere else, and
offers each result as a :class:`~gradcheck.checker._diagnose.Suspect`
(:mod:`gradcheck.checker._suspects`). A suspect is named only if the analytic gradient
under test matches it within tolerance.

The mistakes, per layer kind:

``conv``
    - *kernel not rotated*: the input error computed as the full convolution of δ with
      the kernel as stored, not rotated 180°: :math:`\text{full}(\delta \star w)`,
    - *kernel transposed*: a spatial transpose used instead of the 180° rotation (or on
      top of it),
    - *stride zeros missing* (stride > 1): δ not dilated before the full convolution,
    - *padding offset*: the padding cropped one position off at the start (the same
      gradient as stride zeros inserted one position early or late),
    - *channel axes swapped* (C_in = C_out, no groups): ``w`` used as ``(C_in, C_out, …)``.
``activation``
    - *derivative at output*: :math:`\sigma'(a)` with :math:`a = \sigma(z)` instead of
      :math:`\sigma'(z)`,
    - *derivative missing*: δ passed through unchanged.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.ops.conv import conv_backward
from gradcheck.ops._geometry import conv_geometry

__all__ = ["Mistake", "conv_input_mistakes", "activation_mistakes", "layer_mistakes",
           "reference_backward", "carry_down"]


class Mistake(NamedTuple):
    """A planted bug: ``backward(grad_y, x, *params)`` returning what buggy code would."""

    cause: str
    message: str
    backward: Callable


def _rot180(w):
    """The kernel rotated by 180°: every spatial axis (2 onward) reversed."""
    return np.flip(w, axis=tuple(range(2, w.ndim)))


def _crop_with_offset(full, pad_lo, in_shape, shift):
    """Take ``in_shape`` from ``full`` starting at ``pad_lo + shift`` per dim, zero-filling."""
    out = np.zeros(full.shape[:2] + tuple(in_shape), dtype=full.dtype)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for lo, n, size in zip(pad_lo, in_shape, full.shape[2:]):
        start = lo + shift
        a, b = max(0, start), min(size, start + n)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - start, b - start))
    out[tuple(dst)] = full[tuple(src)]
    return out


def conv_input_mistakes(grad_y, x, w, *, stride=1, padding=0, dilation=1, groups=1,
                        convention="correlation"):
    """``[(cause, message, wrong_grad_x), ...]`` for a convolution's input gradient."""
    opts = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    geom = conv_geometry(x.shape, w.shape, **opts)
    out = []

    def grad_x(kernel, **over):
        return conv_backward(grad_y, x, kernel, bias=False, convention=convention,
                             **{**opts, **over})[0]

    out.append(("kernel_not_rotated",
                "The input gradient is the full correlation of the output error with the "
                "kernel as stored, δ ⋆ w, where the backprop rule needs the kernel rotated "
                "by 180°, δ ⋆ rot180(w): the kernel was not rotated (or was rotated twice).",
                grad_x(_rot180(w))))
    if geom.nd >= 2 and w.shape[-1] == w.shape[-2] and w.shape[-1] > 1:
        # conv_backward(kernel=K) correlates with rot180(K): K = rot180(w^T) makes it use
        # w^T where rot180(w) belongs; K = w^T makes it use rot180(w)^T
        out.append(("transposed",
                    "The input gradient is the full correlation of the output error with the "
                    "kernel transposed (its last two spatial axes swapped), δ ⋆ wᵀ, where the "
                    "backprop rule needs it rotated by 180°, δ ⋆ rot180(w): a transpose was "
                    "used instead of the rotation.",
                    grad_x(_rot180(np.swapaxes(w, -1, -2)))))
        out.append(("transposed",
                    "The input gradient is the full correlation of the output error with the "
                    "rotated kernel transposed, δ ⋆ rot180(w)ᵀ: the kernel was rotated by "
                    "180° and also had its last two spatial axes swapped.",
                    grad_x(np.swapaxes(w, -1, -2))))
    if groups == 1 and w.shape[0] == w.shape[1] and w.shape[0] > 1:
        out.append(("channel_axes_swapped",
                    "The input gradient equals the one computed with the kernel's input and "
                    "output channel axes swapped: w was used as (C_in, C_out, ...).",
                    grad_x(np.swapaxes(w, 0, 1))))
    # full gradient with respect to the padded input, to move the crop
    xp_shape = (geom.batch, geom.in_channels, *geom.padded_shape)
    full = conv_backward(grad_y, np.zeros(xp_shape, x.dtype), w, bias=False,
                         convention=convention, stride=stride, padding=0, dilation=dilation,
                         groups=groups)[0]
    for shift in (1, -1):
        out.append(("padding_offset",
                    f"The input gradient is the right full-size result cropped one position "
                    f"off ({'+1' if shift > 0 else '-1'} in every spatial dim): an off-by-one "
                    f"in removing the padding, or the stride zeros inserted one position "
                    f"{'early' if shift > 0 else 'late'}.",
                    _crop_with_offset(full, geom.pad_lo, geom.in_shape, shift)))
    if any(s > 1 for s in geom.stride):
        # δ used without the stride-1 zeros: the full correlation of the compact δ
        compact_in = tuple(o + d * (k - 1) for o, d, k in
                           zip(geom.out_shape, geom.dilation, geom.kernel))
        compact = conv_backward(grad_y, np.zeros((geom.batch, geom.in_channels, *compact_in),
                                                 x.dtype), w, bias=False, convention=convention,
                                stride=1, padding=0, dilation=dilation, groups=groups)[0]
        out.append(("stride_zeros_missing",
                    "The input gradient equals the full convolution of the output error with "
                    "rot180(w) WITHOUT the (stride - 1) zeros inserted between the error's "
                    "entries: the stride was ignored in the backward pass.",
                    _crop_with_offset(compact, geom.pad_lo, geom.in_shape, 0)))
    return out


def activation_mistakes(spec) -> list[Mistake]:
    """The usual mistakes in the backward of the activation ``spec`` (an ActivationSpec)."""

    def at_output(grad_y, x, *params):
        return (grad_y * spec.derivative(spec.value(x)),)

    def missing(grad_y, x, *params):
        return (np.array(grad_y, copy=True),)

    name = spec.name
    return [
        Mistake("derivative_at_output",
                f"The {name} derivative was evaluated at the activation's output a = {name}(z) "
                f"instead of at its input z: σ'(a) where σ'(z) belongs.", at_output),
        Mistake("derivative_missing",
                f"The error passed back through the {name} activation unchanged: the "
                f"derivative σ'(z) was never multiplied in.", missing),
    ]


def layer_mistakes(layer) -> list[Mistake]:
    """Known mistakes for one built-in layer (possibly empty)."""
    kind = getattr(layer, "kind", None)
    if kind == "activation" and getattr(layer, "spec", None) is not None:
        if layer.spec.name == "identity":
            return []
        return activation_mistakes(layer.spec)
    return []


def reference_backward(layer) -> Callable:
    """The library's own backward for ``layer``: a subclass of a built-in layer that
    overrides ``backward`` (a mutant, a user's variant) is differentiated as its built-in
    base would be. A layer with no built-in base keeps its own backward."""
    for cls in type(layer).__mro__:
        if cls.__module__.startswith("gradcheck.ops") and "backward" in vars(cls):
            return lambda *args, _cls=cls: _cls.backward(layer, *args)

    def own(grad_y, x, *params):   # a gradient not returned (None) is a zero gradient
        grads = layer.backward(grad_y, x, *params)
        return tuple(np.zeros_like(a) if g is None else g for g, a in zip(grads, (x, *params)))

    return own


def carry_down(net, trace, li, wrong_gx, backward=None) -> dict:
    """Gradients of the layers below ``li`` and of the input, given a wrong input error.

    ``wrong_gx`` is what a buggy layer ``li`` would pass down; every layer below runs its
    backward (``backward[j]``, default the layer's own) on it. Returns ``{argname: grad}``
    with the network's argument names (``"input"``, ``"layer0.conv.w"``, ...).
    """
    predicted, d = {}, wrong_gx
    for j in reversed(range(li)):
        run = net.layers[j].backward if backward is None else backward[j]
        grads = run(d, trace.inputs[j], *trace.params[j].values())
        for pname, g in zip(trace.params[j], grads[1:]):
            predicted[f"layer{j}.{net.layers[j].kind}.{pname}"] = g
        d = grads[0]
    predicted["input"] = d
    return predicted
