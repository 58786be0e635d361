"""A convolution written as a user would write it: NumPy, padding 1, no bias.

``forward`` takes any number of leading axes -- ``(N, C, H, W)``, or ``(B, N, C, H, W)``
for a batch of points (the spec's ``batched = true``) -- and ``backward`` is the seed's:
the input error by a full convolution with the rotated kernel, the weight gradient by a
valid correlation of the input with the error.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _windows(x, k):
    pad = [(0, 0)] * (x.ndim - 2) + [(k // 2, k // 2)] * 2
    return sliding_window_view(np.pad(x, pad), (k, k), axis=(-2, -1))


def forward(x, w):
    """y[..., o, h, v] = sum_{c, i, j} x_pad[..., c, h + i, v + j] w[o, c, i, j]."""
    win = _windows(x, w.shape[-1])                    # (..., C, H, W, k, k)
    y = np.tensordot(win, w, axes=([-5, -2, -1], [1, 2, 3]))   # (..., H, W, O)
    return np.moveaxis(y, -1, -3)


def backward(grad_y, x, w):
    k = w.shape[-1]
    rotated = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)         # (C, O, k, k)
    grad_x = forward(grad_y, rotated)
    win = _windows(x, k)                              # (N, C, H, W, k, k)
    grad_w = np.tensordot(grad_y, win, axes=([0, 2, 3], [0, 2, 3]))   # (O, C, k, k)
    return grad_x, grad_w
