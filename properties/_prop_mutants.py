"""Deliberately wrong backward passes of a convolution layer: the bugs people write.

Each mutant takes the configuration, the arguments and the output error ``g`` and returns
the gradients a buggy layer would return, as ``{argument name: wrong gradient}`` for the
arguments it gets wrong, or None where the bug cannot be written for this configuration
(e.g. "wrong channel axis" needs as many input as output channels). Whether the wrong
gradient actually differs from the right one is decided by the caller, from the values.

The correct pieces come from :func:`gradcheck.conv_backward`, whose agreement with two
independent references is a property of its own (``test_references.py``).
"""

from __future__ import annotations

import numpy as np

from gradcheck import conv_backward


def _flip(w):
    return w[(slice(None), slice(None)) + (slice(None, None, -1),) * (w.ndim - 2)]


def _grad_x(c, g, x, w, **override):
    options = {**c.options(), **override}
    return conv_backward(g, x, w, bias=False, **options)[0]


def kernel_not_rotated(c, x, w, g, rng):
    """Input error from the full correlation of delta with w as stored (no rot180)."""
    return {"x": _grad_x(c, g, x, _flip(w))}


def stride_zeros_missing(c, x, w, g, rng):
    """delta packed densely instead of s-1 zeros between entries before the full conv."""
    geom = c.geometry
    if all(s == 1 for s in geom.stride):
        return None
    unit = c._replace(stride=1)
    dense = np.zeros(unit.y_shape, dtype=g.dtype)
    dense[(slice(None), slice(None)) + tuple(slice(0, o) for o in geom.out_shape)] = g
    return {"x": _grad_x(unit, dense, x, w)}


def padding_offset(c, x, w, g, rng):
    """The padded input's error cropped one position off (+1 or -1) along one spatial dim."""
    geom = c.geometry
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(geom.pad_lo, geom.pad_hi)))
    gxp = _grad_x(c._replace(x_shape=xp.shape, padding=0), g, xp, w)
    axis = int(rng.integers(geom.nd))
    shift = int(rng.choice([-1, 1]))
    out = np.zeros_like(x)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for d, (lo, n, size) in enumerate(zip(geom.pad_lo, geom.in_shape, gxp.shape[2:])):
        start = lo + (shift if d == axis else 0)
        a, b = max(0, start), min(size, start + n)
        if b <= a:
            return {"x": out}
        src.append(slice(a, b))
        dst.append(slice(a - start, b - start))
    out[tuple(dst)] = gxp[tuple(src)]
    return {"x": out}


def wrong_channel_axis(c, x, w, g, rng):
    """The kernel used as (C_in, C_out, ...) inside each group in the input error."""
    c_out, c_in_g = c.w_shape[:2]
    if c_out // c.groups != c_in_g:
        return None
    k = c.groups
    swapped = w.reshape(k, c_out // k, c_in_g, *c.w_shape[2:]).swapaxes(1, 2).reshape(w.shape)
    return {"x": _grad_x(c, g, x, np.ascontiguousarray(swapped))}


def scaled(c, x, w, g, rng, grads):
    """One argument's gradient multiplied by a constant (a missing mean, a factor of 2 ...)."""
    name = str(rng.choice(list(grads)))
    factor = float(rng.choice([2.0, 0.5, -1.0, 1.01, 0.99]))
    return {name: grads[name] * np.asarray(factor, dtype=grads[name].dtype)}


def one_element_perturbed(c, x, w, g, rng, grads, *, size):
    """One element of one argument's gradient off by ``size`` times that gradient's
    largest magnitude (an off-by-one index, a forgotten border term ...)."""
    name = str(rng.choice(list(grads)))
    wrong = grads[name].copy()
    j = tuple(int(rng.integers(n)) for n in wrong.shape)
    scale = float(np.max(np.abs(wrong))) or 1.0
    wrong[j] += np.asarray(rng.choice([-1.0, 1.0]) * size * scale, dtype=wrong.dtype)
    return {name: wrong}


#: Mutants that need only the configuration and the arrays.
CONV_MUTANTS = {
    "kernel_not_rotated": kernel_not_rotated,
    "stride_zeros_missing": stride_zeros_missing,
    "padding_offset": padding_offset,
    "wrong_channel_axis": wrong_channel_axis,
}
