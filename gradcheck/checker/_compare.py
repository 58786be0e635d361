"""Holding one argument's analytic gradient against its numerical one: verdict and report.

:func:`judge_full` applies the rule of :mod:`gradcheck.checker._tolerance` element by
element (and the kink rule of :mod:`gradcheck.checker._kinks`); :func:`report_full` and
:func:`report_fast` turn the comparison into an
:class:`~gradcheck.checker._report.ArgumentReport`.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np

from gradcheck.checker._diagnose import diagnose
from gradcheck.checker._kinks import shared_kinks
from gradcheck.checker._report import ArgumentReport, Diagnosis
from gradcheck.checker._tolerance import (
    allowed_difference,
    kink_allowance,
    real_eps,
    tolerance_for,
)

__all__ = ["Judgement", "judge_full", "report_full", "report_fast"]


class Judgement(NamedTuple):
    """Per-element comparison of one argument (all arrays shaped like the argument)."""

    analytic: np.ndarray      # float64
    numeric: np.ndarray
    error: np.ndarray         # the differentiator's error bar
    tolerance: np.ndarray     # allowed |a - n| (at kinks: allowed distance from the limits)
    diff: np.ndarray          # |a - n|, or the distance outside the limits at a kink
    failed: np.ndarray
    nondiff: np.ndarray
    shared: np.ndarray        # kink elements outside their limits, not judged (shared kink)
    left: np.ndarray | None = None    # one-sided limits (NaN away from kinks)
    right: np.ndarray | None = None


def rel_error(a, n):
    denom = np.maximum(np.abs(a), np.abs(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, np.abs(a - n) / np.where(denom > 0, denom, 1.0), 0.0)


def cosine_and_ratio(a, n):
    na, nn = float(np.linalg.norm(a)), float(np.linalg.norm(n))
    if na == 0 and nn == 0:
        return 1.0, 1.0
    cos = float(np.dot(a.ravel(), n.ravel()) / (na * nn)) if na and nn else 0.0
    ratio = na / nn if nn else float("inf")
    return cos, ratio


def judge_full(analytic, num, shape, dtype, *, atol=None, rtol=None,
               shares: Callable | None = None, resolution=0.0) -> Judgement:
    """Element ``j`` fails when ``|a_j - n_j| > tau_j``; at a kink, when ``a_j`` lies outside
    its one-sided limits by more than ``kappa_j`` and the kink is its own.

    ``shares(candidates, nondiff)`` says which candidate kink elements share an output with
    another kink (see :func:`gradcheck.checker._kinks.shared_kinks`).
    """
    a = np.asarray(analytic, np.float64).reshape(shape)
    n = np.asarray(num.grad, dtype=np.float64).reshape(shape)
    err = np.asarray(num.error, dtype=np.float64).reshape(shape)
    resolution = np.broadcast_to(np.asarray(resolution, np.float64), shape)
    tol = allowed_difference(a, n, err, dtype, atol=atol, rtol=rtol, resolution=resolution)
    diff = np.abs(a - n)
    nondiff = np.asarray(num.nondifferentiable, bool).reshape(shape)
    # no usable numerical value (f overflowed or was NaN at the perturbed points): such an
    # element was not checked, and a check must not pass on what it did not check
    failed = ((diff > tol) & ~nondiff) | _unusable(n, err)
    shared = np.zeros(shape, bool)
    left = right = None
    if nondiff.any():
        left = np.asarray(num.left, np.float64).reshape(shape)
        right = np.asarray(num.right, np.float64).reshape(shape)
        lo, hi = np.fmin(left, right), np.fmax(left, right)
        kappa = kink_allowance(left, right, err, n, dtype, atol=atol, rtol=rtol,
                               resolution=resolution)
        with np.errstate(invalid="ignore"):
            beyond = np.where(a < lo, lo - a, np.where(a > hi, a - hi, 0.0))
            outside = nondiff & ((beyond > kappa) | np.isnan(lo) | np.isnan(hi))
        candidates = np.flatnonzero(outside)
        if candidates.size and shares is not None:
            flat = shared.reshape(-1)
            flat[candidates] = shares(candidates, nondiff.reshape(-1))
        failed |= outside & ~shared
        # at a kink the error is the distance outside the limits, measured against kappa
        diff = np.where(nondiff, np.where(np.isnan(beyond), diff, beyond), diff)
        tol = np.where(nondiff, kappa, tol)
    return Judgement(a, n, err, tol, diff, failed, nondiff, shared, left, right)


def shares_for(pattern, g, arg, y, steps) -> Callable:
    """The ``shares`` callable of :func:`judge_full` for one argument."""
    def shares(candidates, nondiff):
        return shared_kinks(candidates, nondiff, pattern=pattern, g=g, arg=arg, y=y,
                            steps=steps)
    return shares


def report_full(label, arg, dtype, judged: Judgement, nfev, *, role, suspects_for, cotangent,
                started, note="") -> ArgumentReport:
    a, n, err, tol, diff = judged.analytic, judged.numeric, judged.error, judged.tolerance, \
        judged.diff
    failed, nondiff = judged.failed, judged.nondiff
    rel = rel_error(a, n)
    rel = np.where(nondiff & ~failed, 0.0, rel)
    n_shared = int(judged.shared.sum())
    if n_shared:
        note = (note + "; " if note else "") + (
            f"{n_shared} element(s) sit at kinks shared with other elements (ties, several "
            f"kinks at once) and lie outside their one-sided limits along their own axis "
            f"(by up to {float(diff[judged.shared].max()):.3g}), which do not bound the valid "
            f"values there: reported, not judged")
        diff = np.where(judged.shared, 0.0, diff)
    # worst element: largest excess over its tolerance (the one that decides the verdict)
    excess = diff / np.maximum(tol, np.finfo(float).tiny)
    worst = np.unravel_index(int(np.argmax(excess)), arg.shape) if arg.size else ()
    cos, ratio = cosine_and_ratio(a, n)
    n_failed = int(failed.sum())
    diagnosis = None
    unusable = _unusable(n, err)
    if unusable.any():
        diagnosis = _unusable_diagnosis(unusable, n)
    elif n_failed and (failed & ~nondiff).any():
        found = list(suspects_for(label, cotangent)) if suspects_for is not None else []
        diagnosis = diagnose(a, n, tol, role=role, suspects=found, exclude=nondiff)
        if diagnosis.cause == "no_known_pattern" and (failed & nondiff).any():
            diagnosis = _kink_diagnosis(judged)   # the one pattern with evidence
    elif n_failed:
        diagnosis = _kink_diagnosis(judged)
    return ArgumentReport(
        name=label, shape=tuple(arg.shape), dtype=str(dtype), passed=n_failed == 0,
        mode="full", n_elements=int(arg.size), n_checked=int(arg.size), n_failed=n_failed,
        n_nondifferentiable=int(nondiff.sum()),
        max_abs_error=float(diff.max()) if arg.size else 0.0,
        max_rel_error=float(rel.max()) if arg.size else 0.0,
        worst_index=tuple(int(i) for i in worst),
        analytic_at_worst=float(a[worst]), numeric_at_worst=float(n[worst]),
        error_estimate_at_worst=float(err[worst]), tolerance_at_worst=float(tol[worst]),
        max_error_estimate=float(err.max()) if arg.size else 0.0,
        cosine_similarity=cos, norm_ratio=ratio, nfev=int(nfev),
        elapsed_s=time.perf_counter() - started, diagnosis=diagnosis,
        analytic=a, numeric=n, error_estimate=err, failed_mask=failed,
        nondifferentiable_mask=nondiff, note=note)


def _unusable(n, err) -> np.ndarray:
    return ~(np.isfinite(n) & np.isfinite(err))


def _unusable_diagnosis(unusable, n) -> Diagnosis:
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(unusable)), unusable.shape))
    count = int(unusable.sum())
    return Diagnosis(
        "no_numerical_derivative",
        f"{count} of {unusable.size} element(s) have no usable numerical derivative (at "
        f"{idx}: {'NaN' if np.isnan(n[idx]) else 'an unbounded error'}): f overflowed or "
        f"returned NaN or infinity at the perturbed points, so the analytic value cannot be "
        f"checked there; they count as failed. Inputs of moderate size (not near 1e100, "
        f"where squares overflow) and an f that is finite around them make them checkable.",
        {"count": count, "index": list(idx)})


def _kink_diagnosis(judged: Judgement) -> Diagnosis:
    """Mismatches at kinks: the analytic value is outside both one-sided limits there."""
    failed = judged.failed & judged.nondiff
    excess = np.where(failed, judged.diff / np.maximum(judged.tolerance, np.finfo(float).tiny),
                      -1.0)
    idx = np.unravel_index(int(np.argmax(excess)), failed.shape)
    lo, hi = sorted((float(judged.left[idx]), float(judged.right[idx])))
    value = float(judged.analytic[idx])
    count = int(failed.sum())
    return Diagnosis(
        "outside_kink_limits",
        f"{count} element(s) sit at a non-differentiable point and the analytic value lies "
        f"outside the one-sided derivatives there: at {tuple(int(i) for i in idx)} the "
        f"analytic value is {value:.9g} but the derivative from either side is {lo:.9g} or "
        f"{hi:.9g} (a value between them would be a valid choice). Look at how the backward "
        f"handles ties and the exact kink point.",
        {"index": [int(i) for i in idx], "analytic": value, "left": float(judged.left[idx]),
         "right": float(judged.right[idx]), "failed_elements": count})


def report_fast(label, arg, analytic, directions, num, *, atol, rtol, started) -> ArgumentReport:
    a64 = analytic.astype(np.float64).reshape(-1)
    proj_a = directions @ a64                                  # <A, v_k>
    proj_n = np.asarray(num.grad, np.float64).reshape(-1)      # d/dt C(arg + t v_k)
    err = np.asarray(num.error, np.float64).reshape(-1)
    rule = tolerance_for(analytic.dtype)
    # rounding of the analytic projection: eps * sum_j |A_j v_j| (+ the table's ulps)
    an_round = rule.analytic_ulps * real_eps(analytic.dtype) * (np.abs(directions) @ np.abs(a64))
    tol = rule.numeric_factor * err + an_round
    if atol is not None or rtol is not None:
        floor = (atol or 0.0) + (rtol or 0.0) * np.maximum(np.abs(proj_a), np.abs(proj_n))
        tol = np.maximum(tol, floor)
    diff = np.abs(proj_a - proj_n)
    failed = diff > tol
    k = int(np.argmax(diff / np.maximum(tol, np.finfo(float).tiny)))
    rel = rel_error(proj_a, proj_n)
    cos, ratio = cosine_and_ratio(proj_a, proj_n)
    return ArgumentReport(
        name=label, shape=tuple(arg.shape), dtype=str(analytic.dtype),
        passed=not failed.any(), mode="fast", n_elements=int(arg.size),
        n_checked=int(len(proj_a)), n_failed=int(failed.sum()), n_nondifferentiable=0,
        max_abs_error=float(diff.max()), max_rel_error=float(rel.max()), worst_index=(k,),
        analytic_at_worst=float(proj_a[k]), numeric_at_worst=float(proj_n[k]),
        error_estimate_at_worst=float(err[k]), tolerance_at_worst=float(tol[k]),
        max_error_estimate=float(err.max()), cosine_similarity=cos, norm_ratio=ratio,
        nfev=int(num.nfev), elapsed_s=time.perf_counter() - started,
        diagnosis=None,
        note=f"{len(proj_a)} random directions; one wrong element in a large tensor may go "
             f"unseen in fast mode")
