r"""A network evaluated at many points in one call: a leading batch of one argument.

The numerical side differences ``f`` at dozens of perturbed points per group of
elements; one call per point keeps every GEMM at the size of one layer's batch, where
BLAS runs far below its rate and Python's per-call overhead shows. When ``f`` takes a
*batch of points* -- one argument with a leading axis ``B``, the others fixed -- the
differentiator evaluates a whole chunk of points per call
(:mod:`gradcheck.numdiff._evaluate`).

How each layer carries the batch
--------------------------------
- **Built-in layers never mix batch items**, so ``B`` points of a batch of ``N`` items
  are one batch of ``B N`` items: the layer's own forward on ``(B N, ...)``, reshaped back.
- **A user layer** carries it only when it says its ``forward`` takes a leading batch of
  inputs (a spec's ``batched = true``, :mod:`gradcheck.spec._user`): it receives
  ``(B, N, ...)`` as it is and must return ``(B, *output)``.
- **A convolution's parameters**: ``B`` kernels of ``C_out`` filters are one kernel of
  ``B C_out`` filters (groups = 1), so the batch is one GEMM over the same windows of the
  input, :math:`y[b, n, o] = \sum_{c, a} w[b, o, c, a]\, x_p[n, c, \cdot + a]`; a batch
  of biases is added to the one output without them.
- **The loss** is applied point by point (its targets are the batch's own).

Anything else (a user layer that does not say so, a dense layer's parameters) is not
batched: :func:`batchable` says False and the differentiator calls ``f`` per point.

Complex steps: one real part for the whole batch
-------------------------------------------------
The complex step's points are ``a + i t_b v_b``: every point has the same real part, the
argument itself. Through convolutions (linear: the real part maps to one real output,
the imaginary parts to theirs, by real GEMMs instead of complex ones a quarter of the
rate) and ``tanh``/``sigmoid`` (evaluated to first order where every ``|Im|`` is at most
``2^-27``, as :mod:`gradcheck.ops.activations` does it: ``sigma(a) + i b sigma'(a)``,
the same continuation to rounding), the real part is carried once and the imaginary
parts per point (:func:`_shared_real`), so the transcendental functions run on one copy
of the activations instead of ``B``. Any other layer, or a larger imaginary part, takes
the general route above. The differentiator needs the parts apart (the imaginary parts
summed, the real part compared with ``f(x)``): :func:`complex_parts` hands them over as
they are, without building the complex array and splitting it again.
"""

from __future__ import annotations

import math

import numpy as np

from gradcheck._errors import UserCodeError

__all__ = ["batchable", "batched_output", "complex_parts"]


def _builtin(layer) -> bool:
    return type(layer).__module__.startswith("gradcheck.ops.")


def _carries(layer) -> bool:
    """The layer passes a batch of points on (built-in, or a user layer that says so)."""
    return _builtin(layer) or bool(getattr(layer, "batched", False))


def _param_batchable(layer, name) -> bool:
    return (_builtin(layer) and getattr(layer, "kind", None) == "conv"
            and getattr(layer, "groups", 1) == 1 and name in ("w", "b"))


def batchable(net, wrt: str) -> bool:
    """Whether ``net``'s function takes a leading batch of points of argument ``wrt``."""
    start, arg = net._locate(wrt)
    if arg != "x" and not _param_batchable(net.layers[start], arg):
        return False
    after = net.layers[start:] if arg == "x" else net.layers[start + 1:]
    return all(_carries(layer) for layer in after)


def _fold(layer, h, params, out_shape):
    """``layer`` on a batch of points ``h`` of shape ``(B, *in_shape)`` -> ``(B, *out)``."""
    B = h.shape[0]
    if _builtin(layer):
        y = layer.forward(h.reshape((B * h.shape[1],) + h.shape[2:]), *params)
        return y.reshape((B,) + tuple(out_shape))
    if hasattr(layer, "forward_batch"):
        return layer.forward_batch(h, *params, out_shape=out_shape)
    y = np.asarray(layer.forward(h, *params))
    if y.shape != (B,) + tuple(out_shape):
        raise UserCodeError(
            f"layer {layer.name} says its forward takes a leading batch (batched = true), "
            f"but given inputs of shape {h.shape} it returned shape {y.shape}; expected "
            f"{(B,) + tuple(out_shape)}")
    return y


def _conv_params(layer, h, params: dict, arg: str, A):
    """A conv layer with a batch ``A`` of its ``w`` or ``b`` (``(B, *shape)``) on the one
    input ``h`` -> ``(B, N, C_out, *out)``."""
    from gradcheck.ops.conv import conv_forward

    B = A.shape[0]
    w, b = params["w"], params.get("b")
    options = dict(convention=layer.convention, **layer._options())
    if arg == "w":       # B kernels of C_out filters = one kernel of B * C_out filters
        y = conv_forward(h, A.reshape((B * A.shape[1],) + A.shape[2:]), None, **options)
        n, _, *spatial = y.shape
        y = np.moveaxis(y.reshape((n, B, A.shape[1], *spatial)), 1, 0)
        if b is not None:
            y = y + b.reshape((1, 1, -1) + (1,) * len(spatial))
        return y
    y = conv_forward(h, w, None, **options)          # the one output, biases added per point
    return y[None] + A.reshape((B, 1, A.shape[1]) + (1,) * (y.ndim - 2))


#: Largest imaginary output of one layer (bytes) kept between calls for the next chunk
#: of complex steps (:func:`.conv._scratch`); larger ones are allocated per call, so that
#: no more than twice this stays with a thread after a check.
PARTS_KEEP_BYTES = 16 * 2**20

#: Activations evaluated to first order on a shared real part (module notes).
_FIRST_ORDER = ("tanh", "sigmoid")


#: What an upper bound of the imaginary parts is multiplied by at each layer it passes
#: (:func:`_split_layer`): far more than the rounding of a sum of millions of terms, or
#: of a derivative of at most 1 computed a few ulps above it.
BOUND_SLACK = 1.01


def _split_layer(layer, params, re, im, arg, slot, bound=None):
    """One layer on a shared real part ``re`` and per-point imaginary parts ``im``
    ``(B, ...)``, as ``(re, im, bound)``, or None where the split does not apply.
    ``arg`` names the parameter whose batch ``im`` is (``"w"``/``"b"``), or None when
    ``im`` is the input's. The imaginary output is written to the scratch array ``slot``
    (:func:`.conv._scratch`), which must not be ``im``'s.

    ``bound`` is an upper bound of every ``|im|`` (None: not known), carried through
    the layer (times :data:`BOUND_SLACK`): a first-order activation whose input is
    bounded below :data:`~gradcheck.ops.activations.FIRST_ORDER_IMAG` that way needs
    no pass over its input to know it (the same decision as the pass: the bound is at
    least the largest value)."""
    from gradcheck.ops._memo import last_call
    from gradcheck.ops.activations import FIRST_ORDER_IMAG
    from gradcheck.ops.conv import _scratch, conv_forward, conv_forward_scratch

    kind = getattr(layer, "kind", None)
    if kind == "activation":
        spec = layer.spec
        if arg is not None or spec.name not in _FIRST_ORDER:
            return None
        if bound is None or not bound <= FIRST_ORDER_IMAG:
            # the largest |Im| without an array of them (NaN fails, as it should)
            bound = np.maximum(im.max(), -im.min())
            if not bound <= FIRST_ORDER_IMAG:
                return None
        # the same real part for every tensor of a check: kept by the layer (read-only)
        value, d = layer.value_at(re), layer.derivative_at(re)
        # written in C order whatever im's layout (a batch of kernels gives its points
        # axis second in memory): the differentiator reads the parts as they come
        out = _scratch(slot, im.shape, np.result_type(im, d), limit=PARTS_KEEP_BYTES)
        # tanh' and sigmoid' are at most 1: the bound holds (with slack for rounding)
        return value, np.multiply(im, d, out=out), bound * BOUND_SLACK
    if kind != "conv" or getattr(layer, "groups", 1) != 1:
        return None
    w, b = params["w"], params.get("b")
    options = dict(convention=layer.convention, **layer._options())
    # the same real part for every tensor of a check: the layer keeps its last (read-only)
    y = last_call(layer, "_real_part")(conv_forward, re, w, b, **options)
    if arg is None:                       # B inputs: one batch of B N items, no bias
        if bound is not None:             # |sum w x| <= max|x| * sum |w| per filter
            bound = bound * float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max()) \
                * BOUND_SLACK
        return y, _input_imag(im, w, options, slot, y.shape), bound
    if arg == "b":                        # B biases: the imaginary part is the bias's
        return y, np.broadcast_to(im.reshape((im.shape[0], 1, im.shape[1]) +
                                             (1,) * (y.ndim - 2)),
                                  (im.shape[0],) + y.shape), bound
    # B kernels: |sum w x| <= max|x| * sum |w| per filter of each point
    bound = float(np.abs(im).reshape(im.shape[0] * im.shape[1], -1).sum(axis=1).max(
        initial=0.0)) * float(np.abs(re).max(initial=0.0)) * BOUND_SLACK
    y_im = _kernel_imag(re, im, options, slot)
    if y_im is not None:
        return y, y_im, bound
    B, c_out = im.shape[0], im.shape[1]  # B kernels of C_out filters: one of B C_out
    y_im = conv_forward_scratch(slot, re, im.reshape((B * c_out,) + im.shape[2:]), **options,
                                limit=PARTS_KEEP_BYTES)
    n, _, *spatial = y_im.shape
    return y, np.moveaxis(y_im.reshape((n, B, c_out, *spatial)), 1, 0), bound


def _kernel_imag(re, im, options, slot):
    """A conv (no bias) of the one input ``re`` with ``B`` points' imaginary kernels
    ``im`` ``(B, C_out, C_in, *kernel)`` -> ``(B, N, C_out, *out)`` in the scratch array
    ``slot``, where each point moves one kernel entry ``(c, a)`` (of any filters: a color
    of a conv's weight); else None.

    Each output of such a point has one nonzero term, ``im[b, o, c, a]`` times the input
    that tap reads: its product, as the GEMM over every entry gives it (the other terms
    exact zeros; +0.0 where the product is a zero, as the GEMM's sum of zeros is), for
    a point's every output in one multiply instead of a GEMM over all entries.
    """
    from gradcheck.ops._geometry import conv_geometry, prod
    from gradcheck.ops.conv import _flip_kernel, _pad, _scratch, _tap_slices

    B, c_out = im.shape[:2]
    geom = conv_geometry(re.shape, im.shape[1:], stride=options["stride"],
                         padding=options["padding"], dilation=options["dilation"],
                         groups=options["groups"])
    if geom.groups != 1:
        return None
    kernels = im.reshape((B * c_out,) + im.shape[2:])
    if options["convention"] == "convolution":     # correlation with the flipped kernel
        kernels = _flip_kernel(kernels)
    flat = kernels.reshape(B, c_out, -1)
    live = (flat != 0).any(axis=1)                 # (B, C_in * K): entries each point moves
    if not (live.sum(axis=1) <= 1).all():
        return None
    dtype = np.result_type(re, im)
    out = _scratch(slot, (B, re.shape[0], c_out) + tuple(geom.out_shape), dtype,
                   limit=PARTS_KEEP_BYTES)
    xp = _pad(re, geom.pad_lo, geom.pad_hi)
    per_channel = prod(geom.kernel)
    lead = (slice(None),) * 2 + (None,) * geom.nd
    for b in range(B):
        if not live[b].any():
            out[b] = 0
            continue
        entry = int(live[b].argmax())
        c, t = divmod(entry, per_channel)
        tap = np.unravel_index(t, geom.kernel)
        reads = xp[(slice(None), c) + _tap_slices(tap, geom.stride, geom.dilation,
                                                  geom.out_shape)]
        np.multiply(flat[b, :, entry][lead[1:]], reads[:, None], out=out[b])
        out[b] += 0.0
    return out


def _input_imag(im, w, options, slot, out_shape):
    """A conv (no bias) of ``B`` points' imaginary inputs ``im`` ``(B, N, C, *spatial)``
    -> ``(B, *out_shape)``, in the scratch array ``slot``.

    Where each point moves one input channel at most (a complex step of a colored input:
    a color lies in one channel when the layer mixes channels) and the points of each
    channel come in one run, each run is a convolution of that channel alone: a third
    of the windows to copy and multiply for three channels. Every output is the same sum
    of the same nonzero products in the same order (the other channels' terms are exact
    zeros), the same numbers; the rest is one convolution of all ``B N`` items.
    """
    from gradcheck.ops.conv import _scratch, conv_forward_scratch

    B, N, C = im.shape[:3]
    live = (im.reshape(B, N, C, -1) != 0).any(axis=(1, 3)) if C > 1 else None
    if live is not None and (live.sum(axis=1) <= 1).all():
        channel = np.where(live.any(axis=1), live.argmax(axis=1), -1)
        starts = np.flatnonzero(np.diff(channel, prepend=-2))
        if starts.size <= C + 1:        # one run per channel (and one of points at rest)
            out = _scratch(slot, (B,) + tuple(out_shape), np.result_type(im, w),
                           limit=PARTS_KEEP_BYTES)
            for s, e in zip(starts, [*starts[1:], B]):
                c = channel[s]
                if c < 0:
                    out[s:e] = 0
                    continue
                part = im[s:e, :, c:c + 1].reshape(((e - s) * N, 1) + im.shape[3:])
                conv_forward_scratch(out[s:e].reshape(((e - s) * N,) + tuple(out_shape[1:])),
                                     part, w[:, c:c + 1], **options)
            return out
    y_im = conv_forward_scratch(slot, im.reshape((B * N,) + im.shape[2:]), w, **options,
                                limit=PARTS_KEEP_BYTES)
    return y_im.reshape((B,) + tuple(out_shape))


def _shared_real(net, start, arg, A, flat, params):
    """The network's output at the complex points ``A`` whose real parts are all the
    same (a complex step), carried as one real part and ``B`` imaginary parts, or None
    (module notes)."""
    parts = _shared_parts(net, start, arg, A, flat, params)
    if parts is None:
        return None
    re, im = parts
    y = np.empty(im.shape, dtype=A.dtype)
    y.real = re
    y.imag = im
    return y


def _shared_parts(net, start, arg, A, flat, params):
    """:func:`_shared_real`'s output as ``(re, im)``: the one real part (the output's
    shape) and the ``B`` imaginary parts, or None. ``A`` is a complex array, or its
    parts already apart (the one real part ``A.point``, ``A.imag``: the differentiator's
    :class:`~gradcheck.numdiff._evaluate.ComplexSteps`)."""
    point = getattr(A, "point", None)
    bound = getattr(A, "largest", None)     # of |A.imag|, where the points say
    if point is not None:
        base = np.ascontiguousarray(point)
    elif A.dtype.kind != "c" or not np.array_equal(A.real, np.broadcast_to(A[0].real, A.shape)):
        return None
    else:
        base = np.ascontiguousarray(A[0].real)
    if arg == "x":
        re, im, first = base, A.imag, None
    else:
        params = list(params)
        params[start] = {**params[start], arg: base}
        h = flat[0]
        for layer, p in zip(net.layers[:start], params[:start]):
            h = layer.forward(h, *p.values())
        re, im, first = h, A.imag, arg
    for i, (layer, p) in enumerate(zip(net.layers[start:], params[start:])):
        if first is not None and i > 0:
            first = None
        if first is not None and not _param_batchable(layer, first):
            return None
        # each layer's imaginary output in the scratch slot its input is not in
        out = _split_layer(layer, p, re, im, first, f"complex_parts{i % 2}", bound)
        if out is None:
            return None
        re, im, bound = out
    return re, im


def batched_output(net, index: int, A, flat: list):
    """``net``'s function (output, or per-sample loss) at ``B`` points: flat argument
    ``index`` (0: the input, else a parameter in ``names`` order) takes the values
    ``A[b]``, the others ``flat`` (``flat[index]`` is ignored)."""
    wrt = net.names[index]
    start, arg = net._locate(wrt)
    params = net.unflatten_params(tuple(flat[1:]))
    h = _shared_real(net, start, arg, A, flat, params)
    if h is not None:
        if net.loss is not None:
            h = np.stack([net.loss.per_sample(y) for y in h])
        return h
    h = A if arg == "x" else flat[0]
    batched = arg == "x"
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        if batched:
            h = _fold(layer, h, tuple(p.values()), net.shapes[i + 1])
        elif i == start:
            h = _conv_params(layer, h, p, arg, A)
            batched = True
        else:
            h = layer.forward(h, *p.values())
    if net.loss is not None:
        h = np.stack([net.loss.per_sample(y) for y in h])
    return h


def complex_parts(net, index: int, A, flat: list):
    """:func:`batched_output` at complex points ``A`` whose real parts are all the same
    (or those points as their parts, :class:`~gradcheck.numdiff._evaluate.ComplexSteps`),
    as ``(re, im)``: the output's one real part and the ``B`` points' imaginary parts
    (float64 for a complex128 ``A``), each in ``A``'s precision -- what
    ``batched_output(...).real`` and ``.imag`` hold, without the complex array between.
    None where the route of :func:`_shared_real` does not apply, or a loss follows (its
    per-sample values are not split). The imaginary parts may lie in a scratch array of
    this thread (:func:`.conv._scratch`): read them before the next call."""
    if net.loss is not None:
        return None
    start, arg = net._locate(net.names[index])
    parts = _shared_parts(net, start, arg, A, flat, net.unflatten_params(tuple(flat[1:])))
    if parts is None:
        return None
    real = A.imag.dtype
    re, im = parts
    return (np.asarray(re, dtype=real),
            np.ascontiguousarray(im, dtype=real))


def batch_axis(net, args) -> int | None:
    """Which flat argument carries a leading batch of points (one more axis than its
    shape, the rest matching), or None for a plain call."""
    shapes = [net.input_shape] + [tuple(s) for shapes in net.param_shapes
                                  for s in shapes.values()]
    found = None
    for k, (a, shape) in enumerate(zip(args, shapes)):
        s = np.shape(a)
        if len(s) == len(shape) + 1 and tuple(s[1:]) == tuple(shape) and math.prod(s) > 0:
            found = k
            break
    return found
