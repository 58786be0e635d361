"""What a check weakened or assumed, said in the report's notes: nothing passes by omission.

- an argument the differentiator differenced by real differences because the complex
  step's cross-check turned it down (``ArgumentReport.route``): which, and why;

The verdict of :func:`~gradcheck.check_vjp` is only as strong as what was compared. Four
things weaken it without changing what the caller sees in the table, so each is a note:

- **a gradient not returned**: ``f_vjp`` gave ``None`` for an argument; it is checked as a
  zero gradient (:mod:`._scalarize`), which passes only where the numerical derivative is
  zero, and the report says it was not returned (:func:`missing_notes`);
- **a gradient in a coarser dtype**: a float32 gradient returned for a float64 argument
  is judged at float32's rounding (the tolerance follows the analytic gradient's dtype,
  :mod:`._tolerance`), about 5e8 times looser (:func:`dtype_notes`);
- **a tolerance floor**: ``atol``/``rtol`` raise every allowance to at least
  ``atol + rtol * |value|``; ``rtol=1`` lets a factor-2 bug pass. The note names the
  floor and, for every argument checked element by element, how many elements pass only
  because of it -- judged again under the automatic tolerance alone
  (:func:`floor_notes`);
- **a coarse resolution**: where the numerical derivative's error bar, or the rounding a
  right gradient carries, is a large share of an element, an error below that share
  passes there -- float16 differences of an element near several kinks (bars of 20% and
  more), float32 inputs of ``100 + 3e-4 z`` under a batch norm, whose real differences
  have no digit and whose ``gamma`` gradient rounds at several percent. Every element
  judged (full or sampled mode, any dtype) whose allowance and error bar together exceed
  ``COARSE`` of its value (of the gradient's root mean square where that is more:
  :func:`._summarize.resolved_share`) is counted, the coarsest named
  (:func:`coarse_notes`). In float32 and float64 only where the two gradients agree as
  vectors (cosine above 0.9, norms within a factor of two): a gradient that is zero by
  cancellation (the sum of a batch norm's outputs) is rounding on both sides, resolved to
  no share of its value, and says nothing new; a gradient that fails says more. In
  float16 and bfloat16 whatever the vectors do: bars of a third of an element can leave
  them apart while the check passes.

A fifth is not a weakening but a change of method: a float16 or bfloat16 element whose
``f`` is not finite on one side of the point at every step the differentiator may take
(``exp`` near 11 in float16 overflows its largest value, 65504, at ``x + h``) is
differenced on the other side alone (:func:`gradcheck.numdiff._adaptive._one_sided`),
and the note names it, its side and why (:func:`one_sided_notes`).

Elements at kinks are judged against their one-sided limits, widened by what a kink
allows (:mod:`._kinks`); a shared kink outside its limits is not judged at all. Where
either leaves a slip unseen -- the kink is shared and not judged, or the widened limits
reach the analytic value with its sign flipped (float16 convolutions + ReLU: limits
-0.453 and -0.219 allowed 1.57 beyond them for a value of -1.048) -- and the element is
at least ``COARSE`` of the gradient's root mean square, a note counts and names them
(:func:`kink_notes`): the kinks column counts them, the coarse note's share leaves the
limits' gap out by design, so neither says that a wrong sign there passes.
"""

from __future__ import annotations

import numpy as np

from gradcheck._precision import LOW_PRECISION
from gradcheck.checker._summarize import LOW_PRECISION_SLIP, finite_rms
from gradcheck.checker._tolerance import Tolerance, longest_sum, real_eps

__all__ = ["missing_notes", "dtype_notes", "floor_notes", "coarse_notes", "weakened_notes",
           "one_sided", "one_sided_notes", "unseen_at_kinks", "kink_notes", "COARSE"]

#: Share of an element's value above which it is noted as resolved only coarsely (a 5%
#: error in one element is what a check is expected to catch, in every dtype).
COARSE = LOW_PRECISION_SLIP


def missing_notes(problem, options) -> list:
    """One note per checked argument ``f_vjp`` returned no gradient (None) for."""
    return [f"{options.argnames[i]}: no gradient returned (f_vjp gave None); checked as a "
            f"zero gradient, as PyTorch treats it (leave an argument out with wrt)"
            for i in options.wrt if i in problem.missing]


def dtype_notes(problem, options) -> list:
    """A note per argument whose gradient came back in a coarser dtype than the argument."""
    notes = []
    for i in options.wrt:
        arg, grad = problem.args[i], problem.analytic[i]
        if i in problem.missing or arg.dtype.kind != "f":
            continue
        if real_eps(grad.dtype) > real_eps(arg.dtype):
            notes.append(
                f"{options.argnames[i]}: the gradient returned is {grad.dtype} for a "
                f"{arg.dtype} argument, so it is checked at {grad.dtype} tolerance (eps "
                f"{real_eps(grad.dtype):.3g} instead of {real_eps(arg.dtype):.3g}): errors "
                f"up to about 1e-5 relative can go unseen; return the gradient in the "
                f"argument's dtype")
    return notes


def _let_through(report, index, problem, seed=None):
    """Elements of a full-mode ``report`` that pass only under the floor: ``(count, where,
    analytic, numeric, automatic tolerance)`` of the one furthest outside, or None. The
    automatic tolerance is the verdict's: with the resolution of the terms ``f``'s
    outputs are formed from, measured, once an element departs (given ``seed``)."""
    if report.mode != "full" or report.analytic is None or report.numeric is None:
        return None
    a, n, e = report.analytic, report.numeric, report.error_estimate
    diff = np.abs(a - n)
    kinks = report.nondifferentiable_mask
    for measured in (None, seed):
        automatic = Tolerance.for_dtype(report.dtype,
                                        resolution=problem.resolution(index, measured),
                                        length=longest_sum(problem),
                                        argument=np.asarray(problem.args[index]).dtype)
        tol = automatic.elementwise(a, n, e)
        through = (diff > tol) & ~report.failed_mask
        if kinks is not None:
            through &= ~kinks   # a kink's allowance is another rule; not judged again here
        if not through.any() or seed is None:
            break
    if not through.any():
        return None
    over = np.where(through, diff / np.maximum(tol, np.finfo(float).tiny), -1.0)
    idx = np.unravel_index(int(np.argmax(over)), over.shape)
    return (int(through.sum()), tuple(int(i) for i in idx), float(a[idx]), float(n[idx]),
            float(tol[idx]))


def floor_notes(problem, options, reports) -> list:
    """The caller's ``atol``/``rtol``, and what it let pass that the automatic tolerance
    fails."""
    given = [f"{k}={v:g}" for k, v in (("atol", options.atol), ("rtol", options.rtol))
             if v is not None]
    if not given:
        return []
    through, rejudged = [], False
    for i, report in zip(options.wrt, reports):
        rejudged |= report.mode == "full" and report.analytic is not None
        found = _let_through(report, i, problem, options.seed)
        if found is not None:
            count, idx, a, n, tol = found
            through.append(f"{report.name}: {count} of {report.n_checked} element(s), e.g. "
                           f"{idx}: analytic {a:.9g} vs numeric {n:.9g} where the automatic "
                           f"tolerance allows {tol:.3g}")
    head = (f"{' and '.join(given)} given: every allowance is raised to at least atol + "
            f"rtol * |value|, on top of the automatic tolerance")
    if not rejudged:
        return [head + " (no argument was checked element by element, so whether it "
                       "changed the verdict is not known)"]
    if not through:
        return [head + "; the automatic tolerance alone gives the same verdict on every "
                       "element checked element by element"]
    return [head + "; it lets pass what the automatic tolerance fails -- "
            + "; ".join(through)]


def weakened_notes(problem, options, reports) -> list:
    """Every note of this module, in the order above."""
    return (missing_notes(problem, options) + dtype_notes(problem, options)
            + floor_notes(problem, options, reports) + coarse_notes(reports)
            + one_sided_notes(reports) + kink_notes(reports)
            + [f"{r.name}: {r.route}" for r in reports if getattr(r, "route", "")]
            + _zero_notes(problem, options, reports))


def _zero_notes(problem, options, reports) -> list:
    """The passing arguments whose gradient is zero up to rounding
    (:mod:`._zero_gradient`)."""
    if options.atol is not None or options.rtol is not None:
        return []       # a floor widens every allowance: within it is not rounding
    from gradcheck.checker._zero_gradient import zero_notes

    return zero_notes(reports, {options.argnames[i] for i in problem.missing})


def coarse_notes(reports) -> list:
    """A note per argument checked element by element (full or sampled mode) with
    elements that an error of ``COARSE`` of their value may pass (see the module notes).

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> a = np.array([1.0, 2.0, 4.0])
    >>> r = SimpleNamespace(name="w", mode="full", n_checked=3, passed=True, analytic=a,
    ...                     numeric=a, error_estimate=0.01 * a, allowed=np.array([0.01, 0.3, 0.1]),
    ...                     resolved_share=np.array([0.02, 0.16, 0.035]),
    ...                     cosine_similarity=1.0, norm_ratio=1.0)
    >>> coarse_notes([r])[0][:75]
    'w: 1 of 3 element(s) resolved only to more than 5% of their value (an error'
    """
    notes = []
    for report in reports:
        share = getattr(report, "resolved_share", None)
        if report.mode not in ("full", "sampled") or share is None or report.analytic is None \
                or report.numeric is None or report.allowed is None:
            continue
        agree = report.cosine_similarity > 0.9 and 0.5 < report.norm_ratio < 2.0
        if not agree and report.dtype not in LOW_PRECISION:
            continue
        share = np.nan_to_num(np.asarray(share, np.float64), nan=0.0, posinf=np.inf)
        coarse = share > COARSE
        if not coarse.any():
            continue
        idx = np.unravel_index(int(np.argmax(share)), share.shape)
        a, e = float(report.analytic[idx]), float(report.error_estimate[idx])
        sampled = "sampled " if report.mode == "sampled" else ""
        kinks = getattr(report, "nondifferentiable_mask", None)
        at_kink = " (at a kink: allowed beyond its one-sided limits)" \
            if kinks is not None and bool(np.asarray(kinks)[idx]) else ""
        of = "the value" if abs(a) >= finite_rms(report.analytic) else "the gradient's root mean square"
        notes.append(f"{report.name}: {int(coarse.sum())} of {report.n_checked} {sampled}"
                     f"element(s) resolved only to more than {COARSE:.0%} of their value "
                     f"(an error below that passes there), e.g. "
                     f"{tuple(int(i) for i in idx)}{at_kink}: value {a:.6g}, allowed |diff| "
                     f"{float(report.allowed[idx]):.3g} and the numerical error bar "
                     f"{e:.3g} ({float(share[idx]):.0%} of {of})")
    return notes


def one_sided(num, shape):
    """Per element of a numerical derivative ``num`` (shape ``shape``): ``-1`` where only
    its left derivative was formed, ``1`` only its right one (``f`` not finite on the
    other side), ``0`` elsewhere -- at a kink both sides are formed."""
    left = np.isfinite(np.asarray(num.left, np.float64)).reshape(shape)
    right = np.isfinite(np.asarray(num.right, np.float64)).reshape(shape)
    flagged = np.asarray(num.nondifferentiable, bool).reshape(shape)
    return np.where(flagged, 0, np.where(left & ~right, -1, np.where(right & ~left, 1, 0)))


def one_sided_notes(reports) -> list:
    """A note per argument with elements differenced on one side only (see the module
    notes), the first named with its side.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> r = SimpleNamespace(name="x", dtype="float16", n_checked=3,
    ...                     one_sided=np.array([0, -1, 0]), numeric=np.array([1.0, 59904, 2]),
    ...                     error_estimate=np.array([0.01, 2.9e4, 0.02]))
    >>> one_sided_notes([r])[0][:76]
    'x: 1 of 3 element(s) differenced on one side only, e.g. (1,): the left deriv'
    """
    notes = []
    for report in reports:
        sides = getattr(report, "one_sided", None)
        if sides is None or not np.any(sides):
            continue
        sides = np.asarray(sides)
        idx = tuple(int(i) for i in np.argwhere(sides != 0)[0])
        left = sides[idx] < 0
        value = float(np.asarray(report.numeric)[idx])
        bar = float(np.asarray(report.error_estimate)[idx])
        notes.append(
            f"{report.name}: {int(np.count_nonzero(sides))} of {report.n_checked} element(s) "
            f"differenced on one side only, e.g. {idx}: the {'left' if left else 'right'} "
            f"derivative {value:.6g} +- {bar:.3g}, because f is not finite (beyond "
            f"{report.dtype}'s range) at x {'+' if left else '-'} h for every step tried; "
            f"an error of the other side's derivative (a kink there) would not be seen")
    return notes


def unseen_at_kinks(judged) -> np.ndarray:
    """Elements of a judgement at kinks on which a slip would not be seen (module
    notes): not judged (shared, outside their limits), or whose limits widened by the
    allowance reach ``-a``; only elements of at least ``COARSE`` of the analytic
    gradient's root mean square (a value at rounding's size has no sign to lose)."""
    nondiff = np.asarray(judged.nondiff, bool)
    if judged.left is None or not nondiff.any():
        return np.zeros(nondiff.shape, bool)
    a = np.asarray(judged.analytic, np.float64)
    left, right = (np.asarray(v, np.float64) for v in (judged.left, judged.right))
    lo, hi = np.fmin(left, right), np.fmax(left, right)
    kappa = np.asarray(judged.tolerance, np.float64)
    with np.errstate(invalid="ignore"):
        flipped = (-a >= lo - kappa) & (-a <= hi + kappa)
        matters = np.abs(a) >= COARSE * finite_rms(a)
    return nondiff & matters & (np.asarray(judged.shared, bool) | flipped)


def kink_notes(reports) -> list:
    """A note per argument with elements at kinks on which a slip would not be seen
    (:func:`unseen_at_kinks`), the largest named with its limits.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> r = SimpleNamespace(name="w", n_nondifferentiable=2, analytic=np.array([-1.048, 2.0]),
    ...                     unseen_at_kinks=np.array([True, False]), allowed=np.array([1.57, 0.1]),
    ...                     kink_limits=(np.array([-0.453, 1.9]), np.array([-0.219, 2.1])))
    >>> kink_notes([r])[0][:78]
    'w: 1 of 2 element(s) at kinks would pass with a wrong sign or any value (their'
    """
    notes = []
    for report in reports:
        unseen = getattr(report, "unseen_at_kinks", None)
        if unseen is None or not np.any(unseen) or report.kink_limits is None:
            continue
        unseen = np.asarray(unseen, bool)
        a = np.asarray(report.analytic, np.float64)
        idx = np.unravel_index(int(np.argmax(np.where(unseen, np.abs(a), -1.0))), a.shape)
        left, right = (float(np.asarray(v)[idx]) for v in report.kink_limits)
        if np.isnan(left) or np.isnan(right):
            limits = "limits not known"
        else:
            lo, hi = sorted((left, right))
            limits = (f"one-sided limits {lo:.6g} and {hi:.6g}, allowed "
                      f"{float(np.asarray(report.allowed)[idx]):.3g} beyond them")
        notes.append(
            f"{report.name}: {int(unseen.sum())} of {report.n_nondifferentiable} element(s) "
            f"at kinks would pass with a wrong sign or any value (their limits, widened by "
            f"what a kink allows, reach the value with its sign flipped, or the kink is "
            f"shared with another and not judged): a slip there is not seen, e.g. "
            f"{tuple(int(i) for i in idx)}: value {float(a[idx]):.6g}, {limits}")
    return notes
