"""The judge stage: one argument's analytic gradient against its numerical one.

Pure: the judge compares arrays under a :class:`~gradcheck.checker._tolerance.Tolerance`
and never calls ``f``. Element by element (full mode, :func:`judge_elements`): element
``j`` fails when ``|a_j - n_j| > tau_j``; at a kink, when ``a_j`` lies outside its
one-sided limits by more than ``kappa_j`` (which of those kinks are shared with other
elements, and so not judged, is settled afterwards by
:func:`gradcheck.checker._kinks.settle_kinks`). Along directions (fast mode,
:func:`judge_directions`): projection ``k`` fails when ``|<A, v_k> - n_k| > tau_k``.
"""

from __future__ import annotations

import numpy as np

from gradcheck._record import NamedTuple

__all__ = ["Judgement", "judge_elements", "judge_directions", "unusable", "excess",
           "rel_error", "cosine_and_ratio"]


class Judgement(NamedTuple):
    """Per-element comparison of one argument (arrays shaped like the argument; in fast
    mode, one entry per direction)."""

    analytic: np.ndarray      # float64
    numeric: np.ndarray
    error: np.ndarray         # the differentiator's error bar
    tolerance: np.ndarray     # allowed |a - n| (at kinks: allowed distance from the limits)
    diff: np.ndarray          # |a - n|, or the distance outside the limits at a kink
    failed: np.ndarray
    nondiff: np.ndarray       # at a non-differentiable point (a kink)
    outside: np.ndarray       # kink elements outside their limits (failed unless shared)
    shared: np.ndarray        # of those, the ones whose kink is shared: not judged
    left: np.ndarray | None = None    # one-sided limits (NaN away from kinks)
    right: np.ndarray | None = None
    #: groups of shared kinks failed along their sum direction (full mode,
    #: :func:`._kinks.judge_tie_groups`): ``(flat members, sum of A over them, the
    #: numerical directional derivative, its tolerance)`` each
    ties: tuple = ()
    #: kink elements judged with their tie group along the group's sum, passed or failed
    #: (:func:`._kinks.judge_tie_groups`; None where no group was judged)
    grouped: np.ndarray | None = None


def unusable(numeric, error) -> np.ndarray:
    """Elements without a usable numerical derivative (NaN, or an unbounded error bar)."""
    return ~(np.isfinite(numeric) & np.isfinite(error))


def excess(judged: Judgement) -> np.ndarray:
    """``|a - n|`` in units of the tolerance: above 1 is a failure (inf when that
    exceeds the largest float, NaN where the difference is)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return judged.diff / np.maximum(judged.tolerance, np.finfo(float).tiny)


def judge_elements(analytic, num, tolerance) -> Judgement:
    """Every element of ``analytic`` against the numerical derivative ``num``."""
    shape = np.shape(analytic)
    a = np.asarray(analytic, np.float64).reshape(shape)
    n = np.asarray(num.grad, dtype=np.float64).reshape(shape)
    err = np.asarray(num.error, dtype=np.float64).reshape(shape)
    diff = np.abs(a - n)
    tol = tolerance.elementwise(a, n, err)
    nondiff = np.asarray(num.nondifferentiable, bool).reshape(shape)
    # no usable numerical value (f overflowed or was NaN at the perturbed points): such an
    # element was not checked, and a check must not pass on what it did not check
    failed = ((diff > tol) & ~nondiff) | unusable(n, err)
    none = np.zeros(shape, bool)
    judged = Judgement(a, n, err, tol, diff, failed, nondiff, none, none)
    return _judge_kinks(judged, num, tolerance) if nondiff.any() else judged


def _judge_kinks(judged: Judgement, num, tolerance) -> Judgement:
    """At a kink the analytic value must lie within the one-sided limits, widened by kappa;
    its error is the distance outside them, measured against kappa."""
    shape, nondiff = judged.analytic.shape, judged.nondiff
    left = np.asarray(num.left, np.float64).reshape(shape)
    right = np.asarray(num.right, np.float64).reshape(shape)
    lo, hi = np.fmin(left, right), np.fmax(left, right)
    kappa = tolerance.at_kink(left, right, judged.error, judged.numeric)
    a = judged.analytic
    with np.errstate(invalid="ignore"):
        beyond = np.where(a < lo, lo - a, np.where(a > hi, a - hi, 0.0))
        outside = nondiff & ((beyond > kappa) | np.isnan(lo) | np.isnan(hi))
    diff = np.where(nondiff, np.where(np.isnan(beyond), judged.diff, beyond), judged.diff)
    return judged._replace(failed=judged.failed | outside, outside=outside, diff=diff,
                           tolerance=np.where(nondiff, kappa, judged.tolerance),
                           left=left, right=right)


def judge_directions(analytic, directions, num, tolerance) -> Judgement:
    """The projections ``<A, v_k>`` (``v_k`` the rows of ``directions``) against the
    numerical directional derivatives ``num``: one entry per direction."""
    a64 = np.asarray(analytic, np.float64).reshape(-1)
    proj_a = directions @ a64                                  # <A, v_k>
    proj_n = np.asarray(num.grad, np.float64).reshape(-1)      # d/dt C(arg + t v_k)
    err = np.asarray(num.error, np.float64).reshape(-1)
    tol = tolerance.along_directions(proj_a, proj_n, err,
                                     tolerance.direction_terms(directions, a64))
    diff = np.abs(proj_a - proj_n)
    none = np.zeros(proj_a.shape, bool)
    # a direction without a usable numerical value (f overflowed along it) was not
    # checked, and fails as such an element does: a check must not pass on it
    with np.errstate(invalid="ignore"):
        failed = (diff > tol) | unusable(proj_n, err)
    return Judgement(proj_a, proj_n, err, tol, diff, failed, none, none, none)


def rel_error(a, n):
    denom = np.maximum(np.abs(a), np.abs(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, np.abs(a - n) / np.where(denom > 0, denom, 1.0), 0.0)


def _scaled(v):
    """``(top, v / top)``: the largest magnitude of ``v`` and ``v`` scaled by it (a norm
    or a dot product of the scaled vectors does not overflow for huge values)."""
    v = np.asarray(v, np.float64).ravel()
    top = float(np.max(np.abs(v), initial=0.0))
    if top == 0.0 or not np.isfinite(top):
        return top, v
    return top, v / top


def cosine_and_ratio(a, n):
    """The cosine of the angle between ``a`` and ``n`` and the ratio of their norms."""
    ta, sa = _scaled(a)
    tn, sn = _scaled(n)
    if not (np.isfinite(ta) and np.isfinite(tn)):
        return float("nan"), float("nan")
    na, nn = float(np.linalg.norm(sa)), float(np.linalg.norm(sn))
    if na == 0 and nn == 0:
        return 1.0, 1.0
    cos = float(np.dot(sa, sn) / (na * nn)) if na and nn else 0.0
    with np.errstate(over="ignore"):      # a ratio beyond the largest float is inf
        ratio = (ta / tn) * (na / nn) if nn else float("inf")
    return cos, float(ratio)
