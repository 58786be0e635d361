"""Wrong backward passes written independently of the checker, for the mutant suite.

Nothing here uses :mod:`gradcheck.checker` or :func:`gradcheck.conv_backward`: the
convolution's gradients are recomputed literally, channel by channel, with
``scipy.signal.correlate`` on the padded input, exactly as the seed writes them
(input error = full correlation of the stride-dilated error with the rotated kernel,
weight gradient = valid correlation of the input with that error). Each *mistake* is a
bug somebody could write in that code; the tests check that the checker catches it and
names it. Shapes are tiny, so the per-channel Python loops cost nothing.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

__all__ = [
    "CONV_MISTAKES",
    "conv_reference_forward",
    "conv_reference_backward",
    "dilate_kernel",
]

#: Mistakes made *inside* the input-gradient computation of a convolution.
CONV_MISTAKES = (
    None,               # correct
    "not_rotated",      # full correlation with w instead of rot180(w)
    "transposed",       # kernel spatially transposed instead of rotated
    "channel_swap",     # w used as (C_in, C_out, ...)
    "no_stride_zeros",  # the error not dilated by the stride before the full correlation
    "stride_phase",     # the stride zeros inserted one position late
    "crop_offset",      # padding cropped one position too far
)


def _tup(v, nd):
    return (v,) * nd if np.isscalar(v) else tuple(v)


def dilate_kernel(k, d):
    """Insert ``d-1`` zeros between the taps of a kernel (all of its axes)."""
    out = np.zeros(tuple(di * (n - 1) + 1 for n, di in zip(k.shape, d)), dtype=k.dtype)
    out[tuple(slice(None, None, di) for di in d)] = k
    return out


def _rot180(k):
    return k[(slice(None, None, -1),) * k.ndim]


def _geometry(x, w, stride, padding, dilation):
    nd = x.ndim - 2
    s, p, d = _tup(stride, nd), _tup(padding, nd), _tup(dilation, nd)
    padded = tuple(n + 2 * pi for n, pi in zip(x.shape[2:], p))
    keff = tuple(di * (k - 1) + 1 for k, di in zip(w.shape[2:], d))
    out = tuple((P - K) // si + 1 for P, K, si in zip(padded, keff, s))
    valid = tuple(P - K + 1 for P, K in zip(padded, keff))   # stride-1 valid length
    return nd, s, p, d, padded, keff, out, valid


def _pad(x, p):
    return np.pad(x, [(0, 0), (0, 0)] + [(pi, pi) for pi in p])


def _pairs(x, w, groups):
    """``(c, o, c_local)``: input channel c, output channel o, w's channel index."""
    cg, og = x.shape[1] // groups, w.shape[0] // groups
    for g in range(groups):
        for o in range(g * og, (g + 1) * og):
            for cl in range(cg):
                yield g * cg + cl, o, cl


def conv_reference_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation, per (batch, output, input) channel with scipy.signal."""
    nd, s, p, d, padded, keff, out, valid = _geometry(x, w, stride, padding, dilation)
    xp = _pad(x, p)
    y = np.zeros((x.shape[0], w.shape[0], *out), dtype=np.result_type(x, w))
    take = tuple(slice(None, None, si) for si in s)
    for n in range(x.shape[0]):
        for c, o, cl in _pairs(x, w, groups):
            y[n, o] += signal.correlate(xp[n, c], dilate_kernel(w[o, cl], d), "valid")[take]
    if b is not None:
        y += b.reshape((1, -1) + (1,) * nd)
    return y


def conv_reference_backward(g, x, w, *, stride=1, padding=0, dilation=1, groups=1,
                            mistake=None, bias=True):
    """``(grad_x, grad_w, grad_b)`` of :func:`conv_reference_forward`, optionally wrong.

    ``mistake`` is one of :data:`CONV_MISTAKES`; it changes only ``grad_x``.
    """
    if mistake not in CONV_MISTAKES:
        raise ValueError(f"unknown mistake {mistake!r}")
    nd, s, p, d, padded, keff, out, valid = _geometry(x, w, stride, padding, dilation)
    dtype = np.result_type(g, x, w)
    xp = _pad(x, p)
    # the error with s-1 zeros between its entries, as long as the stride-1 output
    g_up = np.zeros(g.shape[:2] + valid, dtype=dtype)
    g_up[(slice(None), slice(None)) + tuple(slice(None, None, si) for si in s)] = g
    g_in = g_up                       # what the input gradient is computed from
    if mistake == "stride_phase":     # zeros inserted, but one position late
        g_in = np.zeros(g.shape[:2] + tuple(v + 1 for v in valid), dtype=dtype)
        g_in[(slice(None), slice(None)) + tuple(slice(1, None, si) for si in s)] = g
    grad_xp = np.zeros(x.shape[:2] + tuple(P + 1 for P in padded), dtype=dtype)
    grad_w = np.zeros(w.shape, dtype=dtype)
    whole = tuple(slice(0, P) for P in padded)
    for n in range(x.shape[0]):
        for c, o, cl in _pairs(x, w, groups):
            kernel = w[cl, o] if mistake == "channel_swap" else w[o, cl]
            kd = dilate_kernel(kernel, d)
            if mistake == "not_rotated":
                k_back = kd
            elif mistake == "transposed":
                k_back = np.swapaxes(kd, -1, -2)
            else:
                k_back = _rot180(kd)
            delta = g[n, o] if mistake == "no_stride_zeros" else g_in[n, o]
            full = signal.correlate(delta, k_back, "full")
            region = tuple(slice(0, min(a, P + 1)) for a, P in zip(full.shape, padded))
            grad_xp[(n, c) + region] += full[region]
            # weight gradient: valid correlation of the padded input with the (dilated) error
            gw = signal.correlate(xp[n, c], g_up[n, o], "valid")
            grad_w[o, cl] += gw[tuple(slice(None, None, di) for di in d)]
    grad_xp = grad_xp[(slice(None), slice(None)) + whole]
    shift = 1 if mistake == "crop_offset" else 0
    grad_x = np.zeros(x.shape, dtype=dtype)
    src = tuple(slice(pi + shift, min(pi + shift + n, P))
                for pi, n, P in zip(p, x.shape[2:], padded))
    dst = tuple(slice(0, sl.stop - sl.start) for sl in src)
    grad_x[(slice(None), slice(None)) + dst] = grad_xp[(slice(None), slice(None)) + src]
    grad_b = g.sum(axis=(0,) + tuple(range(2, g.ndim))) if bias else None
    return grad_x.astype(dtype), grad_w.astype(dtype), grad_b

