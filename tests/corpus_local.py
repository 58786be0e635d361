"""Hand-written layers that move or map elements locally: max- and average-pooling,
upsampling, reflect- and zero-padding, sort and top-k, element-wise layers, convolution,
each a NumPy forward and a backward with its usual slips (``slip=`` names one; None is
the correct backward).

Written independently of gradcheck's ops and checker, the way one writes backprop by hand.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# ============================================================================ pooling

def _windows(x, k, s):
    """(N, C, Ho, Wo, k, k) windows of x."""
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]


def maxpool_f(x, k=3, s=2):
    return _windows(x, k, s).max(axis=(4, 5))


def maxpool_vjp(g, x, k=3, s=2, slip=None):
    win = _windows(x, k, s)
    n, c, ho, wo = win.shape[:4]
    flat = win.reshape(n, c, ho, wo, k * k)
    arg = flat.argmax(-1)
    dx = np.zeros_like(x)
    for i in range(ho):
        for j in range(wo):
            di, dj = np.divmod(arg[:, :, i, j], k)
            if slip == "first_in_window":
                di, dj = np.zeros_like(di), np.zeros_like(dj)
            rows, cols = i * s + di, j * s + dj
            for nn in range(n):
                for cc in range(c):
                    if slip == "assign_not_accumulate":
                        dx[nn, cc, rows[nn, cc], cols[nn, cc]] = g[nn, cc, i, j]
                    else:
                        dx[nn, cc, rows[nn, cc], cols[nn, cc]] += g[nn, cc, i, j]
    return (dx,)


def avgpool_f(x, k=2, s=2):
    return _windows(x, k, s).mean(axis=(4, 5))


def avgpool_vjp(g, x, k=2, s=2, slip=None):
    dx = np.zeros_like(x)
    div = {"no_division": 1, "divides_by_k": k}.get(slip, k * k)
    for i in range(g.shape[2]):
        for j in range(g.shape[3]):
            share = g[:, :, i, j, None, None] / div
            if slip == "assign_not_accumulate":
                dx[:, :, i * s:i * s + k, j * s:j * s + k] = share
            else:
                dx[:, :, i * s:i * s + k, j * s:j * s + k] += share
    return (dx,)


def avgpool_pad_f(x, k=3):
    """Average pool, stride 1, zero padding 1, divided by the count of real elements."""
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    ones = np.pad(np.ones(x.shape[2:]), 1)
    count = sliding_window_view(ones, (k, k)).sum(axis=(2, 3))
    return _windows(xp, k, 1).sum(axis=(4, 5)) / count


def avgpool_pad_vjp(g, x, k=3, slip=None):
    ones = np.pad(np.ones(x.shape[2:]), 1)
    count = sliding_window_view(ones, (k, k)).sum(axis=(2, 3))
    if slip == "divides_by_window":    # count_include_pad in the backward only
        count = np.full_like(count, k * k)
    share = g / count
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2, x.shape[3] + 2))
    for i in range(g.shape[2]):
        for j in range(g.shape[3]):
            dxp[:, :, i:i + k, j:j + k] += share[:, :, i, j, None, None]
    return (dxp[:, :, 1:-1, 1:-1],)


# ============================================================================ upsampling

def upsample_f(x):
    return x.repeat(2, axis=2).repeat(2, axis=3)


def upsample_vjp(g, x, slip=None):
    n, c, h, w = x.shape
    blocks = g.reshape(n, c, h, 2, w, 2)
    if slip == "block_mean":
        return (blocks.mean((3, 5)),)
    if slip == "one_sample":
        return (g[:, :, ::2, ::2].copy(),)
    return (blocks.sum((3, 5)),)


# ============================================================================ padding

def reflect_pad_f(x, p=2):
    return np.pad(x, [(0, 0), (0, 0), (p, p), (p, p)], mode="reflect")


def reflect_pad_vjp(g, x, p=2, slip=None):
    h, w = x.shape[2:]
    if slip == "center_only":
        return (g[:, :, p:p + h, p:p + w].copy(),)
    # fold the reflected borders back: first along H, then along W
    gh = g[:, :, p:p + h].copy()
    # reflect: padded row j < p is x[p - j], row p + h + i is x[h - 2 - i];
    # symmetric (the slip) repeats the edge: x[p - 1 - j] and x[h - 1 - i]
    off = 0 if slip == "symmetric_fold" else 1
    for i in range(p):
        gh[:, :, p - 1 + off - i] += g[:, :, i]
        gh[:, :, h - 1 - off - i] += g[:, :, p + h + i]
    out = gh[:, :, :, p:p + w].copy()
    for j in range(p):
        out[:, :, :, p - 1 + off - j] += gh[:, :, :, j]
        out[:, :, :, w - 1 - off - j] += gh[:, :, :, p + w + j]
    return (out,)


def zero_pad_f(x, p=1):
    return np.pad(x, [(0, 0), (0, 0), (p, p), (p, p)])


def zero_pad_vjp(g, x, p=1, slip=None):
    h, w = x.shape[2:]
    if slip == "crop_off_by_one_h":
        return (g[:, :, p + 1:p + 1 + h, p:p + w].copy(),)
    if slip == "crop_off_by_one_both":
        return (g[:, :, p + 1:p + 1 + h, p + 1:p + 1 + w].copy(),)
    return (g[:, :, p:p + h, p:p + w].copy(),)


# ============================================================================ sort / top-k

def sort_f(x):
    return np.sort(x, axis=1)


def sort_vjp(g, x, slip=None):
    perm = np.argsort(x, axis=1)
    dx = np.zeros_like(x)
    if slip == "gather_not_scatter":   # g[perm] where dx[perm] = g belongs
        return (np.take_along_axis(g, perm, axis=1),)
    np.put_along_axis(dx, perm, g, axis=1)
    return (dx,)


def topk_f(x, k=3):
    idx = np.argsort(-x, axis=1)[:, :k]
    return np.take_along_axis(x, idx, axis=1)


def topk_vjp(g, x, k=3, slip=None):
    dx = np.zeros_like(x)
    if slip == "first_k_positions":
        dx[:, :k] = g
        return (dx,)
    order = np.argsort(x, axis=1)[:, :k] if slip == "ascending_indices" else \
        np.argsort(-x, axis=1)[:, :k]
    np.put_along_axis(dx, order, g, axis=1)
    return (dx,)


# ============================================================================ element-wise

def _sig(z):
    return 1 / (1 + np.exp(-z))


def elementwise(name):
    """``(f, vjp)`` of one element-wise layer with the slips people make in it."""
    def mish(z):
        return z * np.tanh(np.log1p(np.exp(z)))

    def mish_prime(z):
        t = np.tanh(np.log1p(np.exp(z)))
        return t + z * (1 - t * t) * _sig(z)

    table = {
        "sigmoid": (_sig, lambda z: _sig(z) * (1 - _sig(z))),
        "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
        "mish": (mish, mish_prime),
        "clip": (lambda z: np.clip(z, -1, 1), lambda z: (np.abs(z) < 1) * 1.0),
        "relu6": (lambda z: np.clip(z, 0, 6), lambda z: ((z > 0) & (z < 6)) * 1.0),
        "abs": (np.abs, np.sign),
        "leaky_relu": (lambda z: np.where(z > 0, z, 0.1 * z), lambda z: np.where(z > 0, 1, 0.1)),
        "softplus": (lambda z: np.log1p(np.exp(z)), _sig),
        "square": (lambda z: z * z, lambda z: 2 * z),
        "reciprocal": (lambda z: 1 / z, lambda z: -1 / (z * z)),
        "sqrt": (np.sqrt, lambda z: 0.5 / np.sqrt(z)),
        "cube": (lambda z: z ** 3, lambda z: 3 * z * z),
        "elu": (lambda z: np.where(z > 0, z, np.expm1(z)),
                lambda z: np.where(z > 0, 1, np.exp(z))),
        "residual_tanh": (lambda z: z + np.tanh(z), lambda z: 2 - np.tanh(z) ** 2),
        "gelu_tanh": (lambda z: 0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z ** 3))),
                      None),
    }
    value, prime = table[name]
    if prime is None:                  # gelu (tanh form): derivative written out
        def prime(z):
            u = 0.7978845608 * (z + 0.044715 * z ** 3)
            t = np.tanh(u)
            du = 0.7978845608 * (1 + 3 * 0.044715 * z * z)
            return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du

    def vjp(g, x, slip=None):
        if slip == "derivative_at_output":
            return (g * prime(value(x)),)
        if slip == "not_masked":       # the derivative of the unclipped line
            return (g.copy(),) if name == "clip" else (g * (x > 0),)
        if slip == "sign_missing":
            return (g.copy(),)
        if slip == "wrong_slope":
            return (np.where(x > 0, g, 0.01 * g),)
        if slip == "sigmoid_of_minus_x":
            return (g * _sig(-x),)
        if slip == "two_missing":
            return (g * x,)
        if slip == "square_missing":   # -1/x where -1/x² belongs
            return (-g / x,)
        if slip == "half_missing":
            return (g / np.sqrt(x),)
        if slip == "power_off_by_one":  # 3 x where 3 x² belongs
            return (3 * g * x,)
        if slip == "uses_output":      # elu: y where y + alpha belongs below zero
            return (np.where(x > 0, g, g * np.expm1(x)),)
        if slip == "skip_dropped":
            return (g * (1 - np.tanh(x) ** 2),)
        if slip == "cubic_term_missing":
            t = np.tanh(0.7978845608 * (x + 0.044715 * x ** 3))
            return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608),)
        return (g * prime(x),)

    return value, vjp


# ============================================================================ convolution

def conv_f(x, w, b, pad=0, stride=1):
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    win = sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w) + b[:, None, None]


def conv_vjp(g, x, w, b, pad=0, stride=1, slip=None):
    """dW: the valid correlation of the padded input with the error; dx: the error dilated
    by the stride, padded to a full correlation with the rotated kernel, cropped."""
    kh, kw = w.shape[2:]
    n, c, h, wd = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    dw = np.einsum("nchwij,nohw->ocij", win, g)
    db = g.mean((0, 2, 3)) if slip == "db_mean" else g.sum((0, 2, 3))
    if slip == "last_item_dropped":               # for i in range(N - 1)
        g = g.copy()
        g[-1] = 0
    kernel = {"kernel_not_rotated": w,
              "kernel_transposed": w.swapaxes(2, 3),
              "channels_swapped": w.swapaxes(0, 1)[:, :, ::-1, ::-1]}.get(slip, w[:, :, ::-1, ::-1])
    # dilate the error by the stride (the zeros the stride skipped), up to the padded size
    dil = np.zeros((n, g.shape[1], h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1), g.dtype)
    if slip == "stride_zeros_missing":
        dil[:, :, :g.shape[2], :g.shape[3]] = g
    else:
        dil[:, :, ::stride, ::stride][:, :, :g.shape[2], :g.shape[3]] = g
    gp = np.pad(dil, [(0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)])
    gwin = sliding_window_view(gp, (kh, kw), axis=(2, 3))
    dxp = np.einsum("nohwij,ocij->nchw", gwin, kernel)
    top = pad + 1 if slip in ("crop_off_by_one_h", "crop_off_by_one") else pad
    left = pad + 1 if slip == "crop_off_by_one" else pad
    out = np.zeros((n, c, h, wd), x.dtype)
    part = dxp[:, :, top:top + h, left:left + wd]
    out[:, :, :part.shape[2], :part.shape[3]] = part
    return out, dw, db


# ============================================================================ sequence

def reverse_f(x):
    """Reverse the time axis of a batch-first (N, T, C) sequence (the input of an RNN run
    backwards in time)."""
    return x[:, ::-1].copy()


def reverse_vjp(g, x, slip=None):
    return (g.copy(),) if slip == "not_reversed" else (g[:, ::-1].copy(),)
