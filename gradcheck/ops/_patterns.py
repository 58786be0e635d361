"""Dependency patterns: which output elements may depend on which argument elements.

A layer's pattern with respect to an argument is a boolean ``scipy.sparse.csr_matrix``
of shape ``(output.size, argument.size)`` whose entry ``(i, j)`` is True when output
element ``i`` (C-order flat index over the whole output, batch included) may depend on
argument element ``j``. It is built by index arithmetic (one vectorized block per kernel
tap), never by visiting pixels. Patterns may over-approximate; missing a true dependence
would be a bug. Batch items never connect.
"""

from __future__ import annotations

import math

import numpy as np

# LayerBase lived here; gradcheck.spec._user imports it by this path.
from gradcheck.ops._layer_base import LayerBase  # noqa: F401

__all__ = [
    "identity_pattern",
    "window_pattern",
    "channel_block_pattern",
    "batch_block_pattern",
]


def _index_dtype(*sizes):
    return np.int32 if max(sizes) < 2**31 - 1 else np.int64


def _csr_by_rows(indices, counts, shape):
    """CSR from column indices already in row-major order and the entry count per row."""
    from scipy import sparse

    dt = _index_dtype(indices.size, shape[1])
    indptr = np.zeros(len(counts) + 1, dtype=dt)
    np.cumsum(counts, out=indptr[1:])
    data = np.ones(indices.size, dtype=bool)
    return sparse.csr_matrix((data, indices.astype(dt, copy=False), indptr), shape=shape)


def identity_pattern(size: int):
    """Elementwise layers and reshapes: output ``i`` depends on input ``i`` only."""
    from scipy import sparse

    return sparse.eye(size, dtype=bool, format="csr")


def window_pattern(in_shape, out_shape, *, groups, kernel, stride, dilation, pad_lo):
    """Input pattern of a windowed layer (convolution, pooling).

    Output ``(n, o, i)`` depends on input ``(n, c, s*i + d*a - p_lo)`` for every kernel
    tap ``a`` that lands inside the input and every channel ``c`` of ``o``'s group.
    Pooling is the case ``groups = C`` (each output channel reads its own channel).
    Built row by row in C order, ``(n, o, i)`` outer and ``(c, a)`` inner, so the CSR
    arrays come straight out of one broadcast, with no sort.
    """
    n, c_in, *in_sp = in_shape
    c_out, out_sp = out_shape[1], tuple(out_shape[2:])
    nd = len(out_sp)
    c_in_g, c_out_g = c_in // groups, c_out // groups
    length, in_size, taps = math.prod(out_sp), math.prod(in_sp), math.prod(kernel)
    dt = _index_dtype(n * c_in * in_size)
    coords = np.indices(out_sp, dtype=dt).reshape(nd, length, 1)
    tap = np.indices(kernel, dtype=dt).reshape(nd, 1, taps)
    col = lambda v: np.asarray(v, dtype=dt).reshape(nd, 1, 1)  # noqa: E731
    pos = col(stride) * coords + col(dilation) * tap - col(pad_lo)   # (nd, L, K)
    valid = np.logical_and.reduce((pos >= 0) & (pos < col(in_sp)), axis=0)  # (L, K)
    flat = np.zeros((length, taps), dtype=dt)
    for k in range(nd):  # C-order ravel of the input position (0 where invalid)
        flat = flat * in_sp[k] + np.where(valid, pos[k], 0)
    chans = (np.arange(c_out, dtype=dt) // c_out_g * c_in_g)[:, None] + np.arange(c_in_g,
                                                                                 dtype=dt)
    base = (np.arange(n, dtype=dt)[:, None, None] * c_in + chans[None]) * in_size
    full = base[:, :, None, :, None] + flat[None, None, :, None, :]  # (n, c_out, L, c_in_g, K)
    mask = np.broadcast_to(valid[None, None, :, None, :], full.shape)
    counts = np.tile(c_in_g * valid.sum(axis=1), n * c_out)
    return _csr_by_rows(full[mask], counts, (n * c_out * length, n * c_in * in_size))


def channel_block_pattern(batch: int, channels: int, inner: int, block: int):
    """Parameter pattern: output ``(n, o, i)`` depends on parameter block ``o`` entirely.

    The parameter is laid out as ``channels`` contiguous blocks of ``block`` entries
    (a conv kernel ``w[o]``, a dense row ``W[o]``, or a bias entry with ``block=1``);
    ``inner`` output elements per channel and batch item.
    """
    dt = _index_dtype(channels * block)
    cols = np.arange(channels * block, dtype=dt).reshape(1, channels, 1, block)
    cols = np.broadcast_to(cols, (batch, channels, inner, block))
    rows = batch * channels * inner
    return _csr_by_rows(cols.ravel(), np.full(rows, block), (rows, channels * block))


def batch_block_pattern(batch: int, rows_per_item: int, cols_per_item: int):
    """Every output of batch item ``n`` depends on every input of item ``n`` (I ⊗ 1)."""
    dt = _index_dtype(batch * cols_per_item)
    cols = np.arange(batch * cols_per_item, dtype=dt).reshape(batch, 1, cols_per_item)
    cols = np.broadcast_to(cols, (batch, rows_per_item, cols_per_item))
    rows = batch * rows_per_item
    return _csr_by_rows(cols.ravel(), np.full(rows, cols_per_item),
                        (rows, batch * cols_per_item))
