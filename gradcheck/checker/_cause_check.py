"""Causes that come from the check itself or from what is known of ``f``.

- ``no_gradient_returned``: the backward returned None for the argument, a zero gradient
  (checked as zeros), where the numerical derivative is not zero;
- ``no_numerical_derivative``: some elements have no usable numerical value (``f``
  overflowed or was NaN next to the point) -- not a claim about ``A``: nothing can be
  said about those elements;
- ``gradient_where_none``: the numerical gradient is zero at every element (``f`` does
  not change with the argument at this point) and the analytic one is not: a gradient
  where there should be none (a term the forward pass cancels, a parameter it does not
  use). Layout causes cannot explain it (moving zeros gives zeros);
- the caller's suspects: ``A`` is what a known mistake of the layer would return
  (:mod:`gradcheck.checker._suspects`), tested most specific first;
- ``outside_kink_limits``: at a kink, ``A`` lies outside both one-sided derivatives.

Each returns a :class:`~gradcheck.checker._report.Diagnosis` of its own making (its
message depends on the layer or on the kink), or None.
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._fit import SLACK
from gradcheck.checker._judge import excess, unusable
from gradcheck.checker._report import Diagnosis

__all__ = ["no_gradient_returned", "no_numerical_derivative", "gradient_where_none",
           "caller_suspects", "outside_kink_limits"]


def no_gradient_returned(ev):
    """``f_vjp`` returned None: a zero gradient, and the true one is not zero."""
    if not ev.known.missing or not ev.n_failed:
        return None
    n = np.where(ev.failed, np.abs(ev.n), -1.0)
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(n)), n.shape))
    return Diagnosis(
        "no_gradient_returned",
        f"No gradient was returned for this argument: the backward gave None, which counts "
        f"as a zero gradient (as in PyTorch), but the numerical derivative is not zero at "
        f"{ev.n_failed} of {ev.a.size} element(s) (e.g. {float(ev.n[idx]):.9g} at {idx}). "
        f"Return its gradient, or leave the argument out of the check with wrt.",
        {"failed_elements": ev.n_failed, "index": list(idx), "numeric": float(ev.n[idx])})


def no_numerical_derivative(ev):
    """Elements without a usable numerical derivative fail, and say so."""
    judged = ev.judged
    if judged is None:
        return None
    bad = unusable(judged.numeric, judged.error)
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
    count = int(bad.sum())
    return Diagnosis(
        "no_numerical_derivative",
        f"{count} of {bad.size} element(s) have no usable numerical derivative (at "
        f"{idx}: {'NaN' if np.isnan(judged.numeric[idx]) else 'an unbounded error'}): f "
        f"overflowed or returned NaN or infinity at the perturbed points, so the analytic "
        f"value cannot be checked there; they count as failed. Inputs of moderate size (not "
        f"near 1e100, where squares overflow) and an f that is finite around them make them "
        f"checkable.",
        {"count": count, "index": list(idx)})


def gradient_where_none(ev):
    """``N`` is zero (within SLACK tolerances) at every element, ``A`` clearly is not."""
    if not ev.n_failed:
        return None
    known = ev.keep & np.isfinite(ev.n)      # a sample: N is known where it was sampled
    if not known.any() or np.any(np.abs(ev.n[known]) > SLACK * ev.tol[known]):
        return None
    clear = known & (np.abs(ev.a) > 2 * SLACK * ev.tol)
    if not clear.any():
        return None
    idx = tuple(int(i) for i in np.unravel_index(
        int(np.argmax(np.where(clear, np.abs(ev.a), -1.0))), ev.a.shape))
    count = int(clear.sum())
    return Diagnosis(
        "gradient_where_none",
        f"The numerical gradient is zero at every {'' if known.all() else 'sampled '}"
        f"element (f does not change with this "
        f"argument at this point), but the analytic gradient is not: it is nonzero at "
        f"{count} of {int(known.sum())} element(s) (largest {float(ev.a[idx]):.9g} at "
        f"{idx}). The backward returns a gradient where there should be none: a term the "
        f"forward pass cancels (a bias followed by a normalization), a parameter the "
        f"forward pass does not use, or a term that belongs to another argument.",
        {"count": count, "index": list(idx), "analytic": float(ev.a[idx]),
         "failed_elements": ev.n_failed})


def caller_suspects(ev):
    """The layer-aware claims, most specific first (tested in the order given)."""
    if not ev.n_failed:
        return None
    for s in ev.suspects():
        # a claim that predicts the right gradient cannot explain a wrong one
        if s.predicted.shape == ev.a.shape and ev.fits(s.predicted) and not ev.fits(ev.n):
            record = ev.record(s.predicted)
            # and it explains most of the mismatch: where tolerances are wide (float16)
            # a prediction near N (a ReLU mask that is nearly all ones) may fit a
            # gradient scaled by 1.1 within SLACK and explain none of it
            if not ev.agrees(s.predicted, ev.n) and \
                    record["misfit_after"] <= 0.5 * record["misfit_before"]:
                return Diagnosis(s.cause, s.message, record)
    return None


def outside_kink_limits(ev):
    """Mismatches at kinks: the analytic value is outside both one-sided limits there."""
    judged = ev.judged
    if judged is None:
        return None
    failed = judged.failed & judged.nondiff
    if not failed.any():
        return None
    if judged.ties:     # elements failed by their group's sum are not outside alone
        grouped = np.zeros(failed.size, bool)
        for members, *_ in judged.ties:
            grouped[members] = True
        failed = failed & ~grouped.reshape(failed.shape)
        if not failed.any():
            # the groups' sums name the cause only when nothing away from kinks fails
            # too (a gradient wrong everywhere is wrong over a group as well)
            return None if (judged.failed & ~judged.nondiff).any() else _tie_sum(judged)
    idx = np.unravel_index(int(np.argmax(np.where(failed, excess(judged), -1.0))), failed.shape)
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


def _tie_sum(judged):
    """Groups of tied elements (shared kinks) whose analytic values, each within its
    one-sided limits, add up to something other than the derivative along the direction
    that moves them together (:func:`._kinks.judge_tie_groups`)."""
    members, total, numeric, tol = max(judged.ties, key=lambda t: abs(t[1] - t[2]) / t[3])
    where = [tuple(int(i) for i in np.unravel_index(j, judged.analytic.shape))
             for j in members]
    count = len(judged.ties)
    return Diagnosis(
        "outside_kink_limits",
        f"{count} group(s) of elements tied at a shared kink: each lies within its one-sided "
        f"derivatives, but moving a group together (which keeps the tie, and along which f "
        f"is differentiable) changes C by {numeric:.9g}, and the analytic values there add "
        f"up to {total:.9g} (at {', '.join(map(str, where[:6]))}"
        f"{' ...' if len(where) > 6 else ''}). The backward sends the incoming gradient to "
        f"every tied element (a mask such as win == win.max()) where one winner (or shares "
        f"adding up to one) should take it.",
        {"index": list(where[0]), "group": [list(w) for w in where], "analytic_sum": total,
         "numeric": numeric, "tolerance": tol, "failed_groups": count})
