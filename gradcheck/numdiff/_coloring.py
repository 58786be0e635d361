r"""Grouping input elements that can be perturbed together (Curtis, Powell and Reid).

With a dependency pattern :math:`P` (``n_out x n_in``, entry ``(i, j)`` true when output
``i`` may depend on input ``j``), two columns are *structurally orthogonal* when no row
has both. A *color* is a set of pairwise structurally orthogonal columns: perturbing all
of them at once, every changed output row belongs to exactly one perturbed column, so

.. math:: \frac{\partial C}{\partial x_j} \approx
          \frac{1}{h_j}\sum_{i:\,P_{ij}} R_i\,\Delta f_i \quad (j \in S),
          \qquad\text{i.e.}\quad g_S = P_{:,S}^{\top} (R \odot \Delta f) / h_S ,

with a step :math:`h_j` of its own for every column. A stride-1 convolution's ``7000``
input elements (``x`` of shape ``(4, 3, 24, 24)``, a 3x3 kernel) need ``C_{in} k^2 = 27``
colors: inputs whose positions differ by a multiple of 3 in some axis share no output.

The greedy coloring visits columns in order and gives each the lowest color none of its
rows has seen yet (each row keeps the set of colors used on it as the bits of an
integer). Columns with identical row sets are found first (two random hashes, then an
exact comparison) and colored as one group; duplicate rows are dropped the same way. What remains is a Python loop over groups,
a few microseconds each (about 20 ms for the convolution above); callers that know their
structure can pass their own ``colors`` instead, which :func:`check_colors` verifies in
one vectorized pass.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

import numpy as np

from gradcheck._errors import ConfigurationError

__all__ = ["greedy_colors", "check_colors", "as_pattern", "ragged_arange"]


def as_pattern(pattern, n_out: int, n_in: int) -> "sp.csc_matrix":
    """``pattern`` as a boolean CSC matrix of shape ``(n_out, n_in)``, validated."""
    import scipy.sparse as sp  # only the pattern route needs it

    try:
        P = sp.csc_matrix(pattern, dtype=bool)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"pattern must be a scipy.sparse matrix or a 2-d boolean array of shape "
            f"({n_out}, {n_in}); got {type(pattern).__name__} ({exc})") from None
    if P.shape != (n_out, n_in):
        raise ConfigurationError(
            f"pattern must have shape (f(x).size, x.size) = ({n_out}, {n_in}); "
            f"got {P.shape}")
    P.eliminate_zeros()
    P.sort_indices()
    return P


def _identical_columns(P):
    """Representative (first column with the same row set) of every column."""
    n = P.shape[1]
    counts = np.diff(P.indptr)
    col = np.repeat(np.arange(n), counts)
    rng = np.random.default_rng(12345)
    keys = [counts.astype(np.int64)]
    nonempty = counts > 0
    for _ in range(2):
        mult = rng.integers(-2**62, 2**62, size=P.shape[0], dtype=np.int64)
        h = np.zeros(n, dtype=np.int64)
        if P.nnz:
            h[nonempty] = np.add.reduceat(mult[P.indices], P.indptr[:-1][nonempty])
        keys.append(h)
    order = np.lexsort(keys[::-1])
    sk = np.stack([k[order] for k in keys])
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = np.any(sk[:, 1:] != sk[:, :-1], axis=0)
    starts = np.flatnonzero(new_group)
    first = np.minimum.reduceat(order, starts) if n else order
    rep = np.empty(n, dtype=np.int64)
    rep[order] = np.repeat(first, np.diff(np.append(starts, n)))
    # verify (hash collisions are possible in principle): same rows as the representative
    idx = ragged_arange(P.indptr[:-1], counts)
    ridx = ragged_arange(P.indptr[rep], counts)
    differs = np.zeros(n, dtype=bool)
    np.logical_or.at(differs, col, P.indices[idx] != P.indices[ridx])
    return np.where(differs, np.arange(n), rep)


def ragged_arange(starts, counts):
    """Concatenation of ``arange(s, s + c)`` for each pair, vectorized."""
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(int(counts.sum())) - offsets + np.repeat(starts, counts)


def greedy_colors(P) -> np.ndarray:
    """Color of every column (``int64``, ``0 .. ncolors-1``); columns of a color share no row.

    Duplicate rows are dropped first (they add no conflict), and columns with identical
    row sets (the input channels at one pixel, the weights of one filter) are colored
    together: the group takes the lowest colors free on its rows.
    """
    n_cols = P.shape[1]
    row_rep = _identical_columns(P.T.tocsc())        # duplicate rows add no conflicts
    P = P[np.flatnonzero(row_rep == np.arange(row_rep.size))]
    n_rows = P.shape[0]
    rep = _identical_columns(P)
    reps = np.flatnonzero(rep == np.arange(n_cols))
    members = np.argsort(rep, kind="stable")
    bounds = np.searchsorted(rep[members], reps)
    sizes = np.diff(np.append(bounds, n_cols))
    indptr, indices = P.indptr.tolist(), P.indices.tolist()
    used = [0] * n_rows
    get = used.__getitem__
    colors = np.empty(n_cols, dtype=np.int64)
    for r, start, size in zip(reps.tolist(), bounds.tolist(), sizes.tolist()):
        rows = indices[indptr[r]:indptr[r + 1]]
        taken = reduce(or_, map(get, rows), 0)
        bits = 0
        picked = []
        for _ in range(size):
            c = (~taken & (taken + 1)).bit_length() - 1
            taken |= 1 << c
            bits |= 1 << c
            picked.append(c)
        for i in rows:
            used[i] |= bits
        colors[members[start:start + size]] = picked
    return colors


def check_colors(colors, P) -> np.ndarray:
    """Validate user-given ``colors`` against ``P``: one int per column, no shared row."""
    c = np.asarray(colors)
    if c.shape != (P.shape[1],) and c.size == P.shape[1]:
        c = c.reshape(-1)
    if c.shape != (P.shape[1],) or not np.issubdtype(c.dtype, np.integer) or (c.size and c.min() < 0):
        raise ConfigurationError(
            f"colors must hold one non-negative integer per element of x ({P.shape[1]}); "
            f"got an array of shape {c.shape} and dtype {c.dtype}")
    coo = P.tocoo()
    key = coo.row.astype(np.int64) * (int(c.max(initial=0)) + 1) + c[coo.col]
    if np.unique(key).size != key.size:
        raise ConfigurationError(
            "colors must not give two elements that share an output row (per pattern) the "
            "same color; got colors that do")
    return c.astype(np.int64)


def n_distinct(values) -> int:
    """How many different values (``np.unique(values).size``, without importing numpy.ma)."""
    v = np.sort(np.asarray(values).reshape(-1))
    return int(v.size and 1 + np.count_nonzero(v[1:] != v[:-1]))
