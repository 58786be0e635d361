r"""Grouping input elements that can be perturbed together (Curtis, Powell and Reid).

With a dependency pattern :math:`P` (``n_out x n_in``, entry ``(i, j)`` true when output
``i`` may depend on input ``j``), two columns are *structurally orthogonal* when no row
has both. A *color* is a set of pairwise structurally orthogonal columns: perturbing all
of them at once, every changed output row belongs to exactly one perturbed column, so

.. math:: \frac{\partial C}{\partial x_j} \approx
          \frac{1}{h_j}\sum_{i:\,P_{ij}} R_i\,\Delta f_i \quad (j \in S),
          \qquad\text{i.e.}\quad g_S = P_{:,S}^{\top} (R \odot \Delta f) / h_S ,

with a step :math:`h_j` of its own for every column. A convolution's ``7000`` input
elements need only ``(2k-1)^2 C_{in}`` colors for a ``k x k`` kernel (75 for 3x3 and
three channels), its weights ``C_{in} k^2`` (27).

The greedy coloring visits columns in order and gives each the lowest color none of its
rows has seen yet (each row keeps the set of colors used on it as the bits of an
integer). That is a Python loop over columns, ~5 microseconds each; callers that know
their structure (a convolution's geometry) can pass their own ``colors`` instead, which
:func:`check_colors` verifies in one vectorized pass.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gradcheck._errors import ConfigurationError

__all__ = ["greedy_colors", "check_colors", "as_pattern"]


def as_pattern(pattern, n_out: int, n_in: int) -> sp.csc_matrix:
    """``pattern`` as a boolean CSC matrix of shape ``(n_out, n_in)``, validated."""
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


def greedy_colors(P: sp.csc_matrix) -> np.ndarray:
    """Color of every column (``int64``, ``0 .. ncolors-1``); columns of a color share no row."""
    n_rows, n_cols = P.shape
    indptr, indices = P.indptr.tolist(), P.indices.tolist()
    used = [0] * n_rows
    colors = [0] * n_cols
    for j in range(n_cols):
        rows = indices[indptr[j]:indptr[j + 1]]
        taken = 0
        for i in rows:
            taken |= used[i]
        c = (~taken & (taken + 1)).bit_length() - 1
        bit = 1 << c
        for i in rows:
            used[i] |= bit
        colors[j] = c
    return np.asarray(colors, dtype=np.int64)


def check_colors(colors, P: sp.csc_matrix) -> np.ndarray:
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
