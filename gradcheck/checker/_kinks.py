r"""Judging elements that sit at non-differentiable points.

The differentiator marks an element non-differentiable when its one-sided derivatives
along its own axis, :math:`\ell_j` and :math:`r_j`, stay apart however small the step.
A backward pass may return anything a one-sided derivative could be there (PyTorch's
ReLU returns 0 at zero, other code 1, a subgradient 1/2), so the rule is: the analytic
value must lie between :math:`\ell_j` and :math:`r_j` (widened by
:func:`._tolerance.kink_allowance`), otherwise the element fails.

That rule is exact when the kink is the element's own -- two smooth pieces meeting along
one surface, as at a ReLU input or an isolated max-pool tie: every valid value is a
convex combination of the two limits. It is *not* exact when several pieces meet: a
max-pool entry tied in two overlapping windows, or an input reaching two ReLUs that sit
at zero together. The analytic gradient may then be the gradient of a piece that moving
:math:`x_j` alone never enters (it wins one window and loses the other), and lie outside
:math:`[\ell_j, r_j]` while being exactly right. Such an element *shares* its kink: some
output it can change is also changed by another element marked non-differentiable.
Shared kinks are reported (they count in ``n_nondifferentiable``) and named in the
report's note, but not judged, because no per-element bound is known for them. Whether
two elements share an output comes from the dependency pattern when one is known, and
otherwise from one evaluation per non-differentiable element (which outputs move when it
moves).
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._numeric import evaluate, is_structure

__all__ = ["shared_kinks"]


def _rows_from_pattern(pattern, columns):
    if is_structure(pattern):   # rows each element owns within its color
        colors = np.asarray(pattern.colors)
        out = []
        for j in columns:
            members = np.flatnonzero(colors == colors[j])
            own = np.asarray(pattern.owners(members))
            out.append(np.flatnonzero(own == int(np.searchsorted(members, j))))
        return out
    import scipy.sparse as sp

    P = sp.csc_matrix(pattern)
    return [P.indices[P.indptr[j]:P.indptr[j + 1]] for j in columns]


def _rows_by_probing(g, arg, y, columns, steps):
    """Outputs that change when element ``j`` moves by its step, for each ``j``."""
    flat = arg.reshape(-1)
    base = np.asarray(y).reshape(-1)
    typical = float(np.sqrt(np.mean(np.abs(flat.astype(np.float64)) ** 2))) or 1.0
    eps = float(np.finfo(arg.dtype).eps)
    out = []
    for j in columns:
        h = max(float(steps[j]) if np.isfinite(steps[j]) else 0.0,
                eps ** (1 / 3) * max(abs(float(flat[j])), typical))
        moved = flat.copy()
        moved[j] = moved[j] + h
        value = np.asarray(evaluate(g, moved.reshape(arg.shape),
                                    "the outputs each kink element reaches were probed"))
        out.append(np.flatnonzero(value.reshape(-1) != base))
    return out


def shared_kinks(candidates, nondiff, *, pattern=None, g=None, arg=None, y=None,
                 steps=None) -> np.ndarray:
    """For each flat index in ``candidates``: does it share an output with another kink?

    ``nondiff`` is the flat boolean mask of non-differentiable elements (``candidates``
    among them). With ``pattern`` (outputs x elements) the answer is read from it;
    otherwise ``g`` is evaluated once per non-differentiable element, moved by its step.
    """
    candidates = np.asarray(candidates, dtype=np.intp)
    if candidates.size == 0:
        return np.zeros(0, bool)
    kinks = np.flatnonzero(nondiff)
    if pattern is not None:
        rows = _rows_from_pattern(pattern, kinks)
        n_out = int(np.asarray(y).size)
    else:
        rows = _rows_by_probing(g, arg, y, kinks, np.asarray(steps, np.float64).reshape(-1))
        n_out = int(np.asarray(y).size)
    count = np.zeros(n_out, dtype=np.intp)
    for r in rows:
        count[r] += 1
    where = {int(k): r for k, r in zip(kinks, rows)}
    return np.array([bool(np.any(count[where[int(j)]] >= 2)) for j in candidates])
