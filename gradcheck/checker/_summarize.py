"""The report stage: one argument's judgement as an :class:`ArgumentReport`.

The worst element (or direction) is the one furthest beyond its own tolerance -- the one
that decides the verdict; its values are reported beside the largest differences, the
cosine and norm ratio of the two gradients (elements at kinks left out), and what was left
unjudged and why.
"""

from __future__ import annotations

import re
import time

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.checker._judge import Judgement, cosine_and_ratio, excess, rel_error
from gradcheck.checker._report import ArgumentReport, Diagnosis
from gradcheck.checker._tolerance import real_eps, rule_for

__all__ = ["SampleJudged", "summarize_full", "summarize_sampled", "summarize_fast", "summarize_skipped",
           "sampled_said", "join_notes", "resolved_share", "finite_rms", "LOW_PRECISION_SLIP"]

#: A counted note (compiled by re on first use: most checks have no note to join).
_COUNTED = r"^(\d+) of (\d+) (mismatching .*)$"


def join_notes(*notes: str) -> str:
    """Notes joined with ``"; "``, the counted ones of the same kind said once with their
    counts added (a sample differenced in two parts takes two second looks).

    >>> join_notes("3 of 5 mismatching element(s) differenced again", "",
    ...            "2 of 4 mismatching element(s) differenced again; cut")
    '5 of 9 mismatching element(s) differenced again; cut'
    """
    parts, counts = [], {}
    for note in notes:
        for part in filter(None, (note or "").split("; ")):
            m = re.match(_COUNTED, part)
            if m is None:
                parts.append(part)
                continue
            key = m.group(3)
            if key not in counts:
                parts.append(key)
                counts[key] = [0, 0]
            counts[key][0] += int(m.group(1))
            counts[key][1] += int(m.group(2))
    return "; ".join(f"{counts[p][0]} of {counts[p][1]} {p}" if p in counts else p
                     for p in parts)


def _measures(judged: Judgement, diff, rel) -> dict:
    """The fields every checked argument reports (``diff``, ``rel``: per entry)."""
    over = excess(judged._replace(diff=diff))
    worst = np.unravel_index(int(np.argmax(over)), judged.analytic.shape)
    # as vectors, without the elements at kinks: there the numerical value is a central
    # difference across the kink, which a right analytic value need not equal
    smooth = ~np.asarray(judged.nondiff, bool)
    cos, ratio = cosine_and_ratio(judged.analytic[smooth], judged.numeric[smooth])
    at_kink = bool(np.asarray(judged.nondiff, bool)[worst])
    limits = None if not at_kink or judged.left is None else (
        float(judged.left[worst]), float(judged.right[worst]))
    return dict(
        worst_at_kink=at_kink, limits_at_worst=limits,
        worst_excess=_worst_excess(over, judged),
        n_checked=int(judged.analytic.size), n_failed=int(judged.failed.sum()),
        max_abs_error=float(diff.max()), max_rel_error=float(rel.max()),
        worst_index=tuple(int(i) for i in worst),
        analytic_at_worst=float(judged.analytic[worst]),
        numeric_at_worst=float(judged.numeric[worst]),
        error_estimate_at_worst=float(judged.error[worst]),
        tolerance_at_worst=float(judged.tolerance[worst]),
        max_error_estimate=float(judged.error.max()), cosine_similarity=cos, norm_ratio=ratio)


def _worst_excess(over, judged: Judgement) -> float:
    """The largest excess the verdict saw: inf where an element failed for want of a
    usable numerical value (its excess is NaN), else the largest finite one."""
    if over.size == 0:
        return float("nan")
    if np.any(judged.failed & ~np.isfinite(over)):
        return float("inf")
    finite = over[np.isfinite(over)]
    return float(finite.max()) if finite.size else float("nan")


#: Why shared kink elements outside a judged group are not judged, per mode.
_UNGROUPED_WHY = {
    "full": "moving their group together crosses a kink too, so there is no derivative "
            "along it to hold their sum to",
    "sampled": "their tie groups are not whole in the sample, or moving a group together "
               "crosses a kink too; mode='full' judges every group it can",
}


def _shared_note(judged: Judgement, note: str, mode: str = "full") -> str:
    """The note on the elements at shared kinks outside their one-sided limits: those
    judged with their tie group along its sum (:func:`._kinks.judge_tie_groups`) told
    apart from those reported, not judged (why depends on ``mode``: ``"sampled"`` for a
    sample short of the whole argument)."""
    shared = np.asarray(judged.shared, bool)
    if not shared.any():
        return note
    grouped = shared & (False if judged.grouped is None
                        else np.asarray(judged.grouped, bool).reshape(shared.shape))
    n_grouped, n_left = int(grouped.sum()), int((shared & ~grouped).sum())
    with_groups = ("judged with their tie groups, along each group's sum (which keeps the "
                   "tie), not one by one")
    left = f"reported, not judged ({_UNGROUPED_WHY[mode]})"
    if n_grouped and n_left:
        verdict = f"{n_grouped} of them {with_groups}; {n_left} {left}"
    else:
        verdict = with_groups if n_grouped else left
    said = (f"{int(shared.sum())} element(s) sit at kinks shared with other elements (ties, "
            f"several kinks at once) and lie outside their one-sided limits along their own "
            f"axis (by up to {float(judged.diff[shared].max()):.3g}), which do not bound the "
            f"valid values there: {verdict}")
    return (note + "; " if note else "") + said


#: The error a check is meant to catch in one element (a share of its value): elements
#: that an error of that share may pass are named in the notes
#: (:func:`gradcheck.checker._notes.coarse_notes`).
LOW_PRECISION_SLIP = 0.05


def finite_rms(values) -> float:
    """The root mean square of the finite entries of ``values`` (0 if none), scaled by
    the largest first so that squaring huge values does not overflow.

    >>> finite_rms([3.0, -4.0, float("nan")]), finite_rms([1e300, 1e300])
    (3.5355339059327378, 1e+300)
    """
    values = np.abs(np.asarray(values, np.float64))
    values = values[np.isfinite(values)]
    top = float(values.max(initial=0.0))
    return top * float(np.sqrt(np.mean((values / top) ** 2))) if top > 0 else 0.0


def resolved_share(judged: Judgement, kink_gap: float = 0.1) -> np.ndarray:
    """Per element, the share of its value an error must exceed to fail for sure: its
    allowance plus the numerical value's own error bar (a numerical value off by its bar
    toward the error hides that much of it), over the larger of ``|a_j|`` and the
    analytic gradient's root mean square. At a kink, the allowance beyond the one-sided
    limits less the share of their gap the rule allows by design (``kink_gap``,
    :class:`._tolerance.ToleranceRule`), and the limits' rounding in place of the error
    bar (which spans the gap). NaN where no per-element bound is judged (kinks shared
    with other elements, which have a note of their own) or the scale is zero.

    >>> import numpy as np
    >>> from gradcheck.checker._judge import Judgement
    >>> a, z = np.array([1.0, 2.0, 4.0]), np.zeros(3, bool)
    >>> j = Judgement(a, a, 0.01 * a, np.array([0.01, 0.3, 0.1]), 0 * a, z, z, z, z)
    >>> np.round(resolved_share(j), 3).tolist()
    [0.008, 0.121, 0.035]
    """
    a = np.abs(np.asarray(judged.analytic, np.float64))
    scale = np.fmax(a, finite_rms(a))
    err = np.asarray(judged.error, np.float64)
    tol = np.asarray(judged.tolerance, np.float64)
    if judged.left is not None and judged.right is not None:
        gap = np.abs(np.asarray(judged.right, np.float64) - np.asarray(judged.left, np.float64))
        kink = np.asarray(judged.nondiff, bool) & np.isfinite(gap)
        err = np.where(kink, np.fmax(err - 0.5 * gap, 0.0), err)
        tol = np.where(kink, np.fmax(tol - kink_gap * gap, 0.0), tol)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        share = (tol + err) / scale
    return np.where(np.asarray(judged.shared, bool) | ~(scale > 0), np.nan, share)


def _kink_gap(dtype, arg) -> float:
    """``k_gap`` of the tolerance row that judged a gradient of ``dtype`` for ``arg``."""
    return rule_for(max((np.dtype(dtype), arg.dtype), key=real_eps)).kink_gap


def summarize_full(name, arg, dtype, judged: Judgement, diagnosis: Diagnosis | None, *,
                   nfev, started, note="") -> ArgumentReport:
    """Every element of argument ``name`` (``dtype``: the analytic gradient's)."""
    # shared kinks are not judged: their distance outside the limits is no error
    diff = np.where(judged.shared, 0.0, judged.diff)
    rel = np.where(judged.nondiff & ~judged.failed, 0.0,
                   rel_error(judged.analytic, judged.numeric))
    return ArgumentReport(
        name=name, shape=tuple(arg.shape), dtype=str(dtype),
        passed=not judged.failed.any(), mode="full", n_elements=int(arg.size),
        n_nondifferentiable=int(judged.nondiff.sum()), nfev=int(nfev),
        elapsed_s=time.perf_counter() - started, diagnosis=diagnosis,
        analytic=judged.analytic, numeric=judged.numeric, error_estimate=judged.error,
        failed_mask=judged.failed, nondifferentiable_mask=judged.nondiff,
        allowed=judged.tolerance, resolved_share=resolved_share(judged, _kink_gap(dtype, arg)),
        note=_shared_note(judged, note),
        **_measures(judged, diff, rel))


class SampleJudged(NamedTuple):
    """A sampled argument's verdicts: the sampled elements (flat ``index``, judged as
    ``judged``), the random directions over the rest (``along``; None when the sample
    is the whole argument), and the kink elements of the sample left undecided
    (``undecided``, a mask over the sample, or None: :func:`._kinks.settle_sample`)."""

    index: np.ndarray
    judged: Judgement
    along: Judgement | None = None
    undecided: np.ndarray | None = None


def summarize_sampled(name, arg, analytic, sample: SampleJudged,
                      diagnosis: Diagnosis | None, *, nfev, started, note="") -> ArgumentReport:
    """The sampled elements and the directions over the rest (``sample``) of argument
    ``name``.

    The undecided kink elements are not judged for want of the unsampled elements' kinks
    (their note is the caller's; they are not counted as shared ones).
    The worst element is the sample's, named in the argument's shape; the arrays on the
    report have the argument's shape, NaN (numeric, error bar) or False (masks) where no
    element was sampled.
    """
    from gradcheck.checker._sampled import embed

    index, judged, along, undecided = sample

    diff = np.where(judged.shared, 0.0, judged.diff)
    rel = np.where(judged.nondiff & ~judged.failed, 0.0,
                   rel_error(judged.analytic, judged.numeric))
    measures = _measures(judged, diff, rel)
    worst = int(index[measures["worst_index"][0]])
    measures["worst_index"] = tuple(int(i) for i in np.unravel_index(worst, arg.shape))
    if along is not None and along.analytic.size:   # the directions over the rest, too
        measures["worst_excess"] = max(measures["worst_excess"],
                                       _worst_excess(excess(along), along))
    n_dirs = 0 if along is None else int(along.analytic.size)
    dirs_failed = 0 if along is None else int(along.failed.sum())
    elapsed = time.perf_counter() - started
    said = sampled_said(index.size, arg.size, elapsed, n_dirs if along is not None else None,
                        dirs_failed)
    shape = tuple(arg.shape)
    return ArgumentReport(
        name=name, shape=shape, dtype=str(analytic.dtype),
        passed=not judged.failed.any() and not dirs_failed, mode="sampled",
        n_elements=int(arg.size), n_nondifferentiable=int(judged.nondiff.sum()),
        nfev=int(nfev), elapsed_s=elapsed, diagnosis=diagnosis,
        analytic=np.asarray(analytic, np.float64),
        numeric=embed(judged.numeric, index, shape, np.nan),
        error_estimate=embed(judged.error, index, shape, np.nan),
        failed_mask=embed(judged.failed, index, shape, False),
        nondifferentiable_mask=embed(judged.nondiff, index, shape, False),
        allowed=embed(judged.tolerance, index, shape, np.nan),
        resolved_share=embed(resolved_share(judged, _kink_gap(analytic.dtype, arg)), index,
                             shape, np.nan),
        note=_shared_note(judged if undecided is None else judged._replace(
            shared=judged.shared & ~np.asarray(undecided, bool)),
            "; ".join(n for n in (said, note) if n),
            mode="sampled" if index.size < arg.size else "full"),
        n_directions=n_dirs, n_directions_failed=dirs_failed, **measures)


def sampled_said(n_sampled, n_elements, elapsed, n_directions, n_failed) -> str:
    """The sampled argument's note: how much was sampled, and the directions over the rest
    (``n_directions`` None: none, the sample was the whole argument)."""
    said = f"sampled {n_sampled} of {n_elements} elements ({elapsed:.2g} s)"
    if n_directions is not None:
        said += (f"; {n_directions} random directions over the rest"
                 + (f", {n_failed} of them failed" if n_failed else ""))
    return said


def summarize_fast(name, arg, dtype, judged: Judgement, *, nfev, started,
                   note="", crossed=None) -> ArgumentReport:
    """The random directions of argument ``name``: no diagnosis, no arrays (``note``:
    what was reported, not judged). The kinks counted are the directions that cross one:
    ``crossed`` (flagged by the differentiator) and those found so by
    :func:`._along.kinks_along` (``judged.nondiff``)."""
    crossed = np.asarray(judged.nondiff, bool) | (
        False if crossed is None else np.asarray(crossed, bool).reshape(judged.nondiff.shape))
    measures = _measures(judged, judged.diff, rel_error(judged.analytic, judged.numeric))
    measures["worst_at_kink"] = bool(crossed[measures["worst_index"]])
    return ArgumentReport(
        name=name, shape=tuple(arg.shape), dtype=str(dtype),
        passed=not judged.failed.any(), mode="fast", n_elements=int(arg.size),
        n_nondifferentiable=int(crossed.sum()), nfev=int(nfev),
        elapsed_s=time.perf_counter() - started,
        diagnosis=None,
        note="; ".join(n for n in (f"{judged.analytic.size} random directions; one wrong "
                                   f"element in a large tensor may go unseen in fast mode",
                                   note) if n),
        **measures)


def summarize_skipped(name, arg, why) -> ArgumentReport:
    """An argument that was not checked, and why."""
    nan = float("nan")
    return ArgumentReport(
        name=name, shape=tuple(arg.shape), dtype=str(arg.dtype), passed=True, mode="skipped",
        n_elements=int(arg.size), n_checked=0, n_failed=0, n_nondifferentiable=0,
        max_abs_error=nan, max_rel_error=nan, worst_index=None, analytic_at_worst=nan,
        numeric_at_worst=nan, error_estimate_at_worst=nan, tolerance_at_worst=nan,
        max_error_estimate=nan, cosine_similarity=nan, norm_ratio=nan, nfev=0, elapsed_s=0.0,
        note=why)
