"""The catalogue of causes: one entry per cause, its test of fit and its message.

Each entry of :data:`CAUSES` is a claim about how a buggy backward pass turned the true
gradient ``N`` into the analytic one ``A``; its ``test`` takes the
:class:`~gradcheck.checker._diagnose.Evidence` of one failing argument and returns a
:class:`~gradcheck.checker._report.Diagnosis` when the claim fits, else None. The route
(:func:`gradcheck.checker._diagnose.diagnose_evidence`) tries the entries in order and
names the first that fits; when none does, the cause is ``no_known_pattern``.

===========================  ==========================================================
cause                        claim
===========================  ==========================================================
``no_numerical_derivative``  some elements have no usable numerical value (not a claim
                             about ``A``: nothing can be said about them)
(the caller's suspects)      ``A`` is what a known bug of the layer would return
                             (:mod:`gradcheck.checker._suspects`)
``sign_flipped``             ``A = -N``
``scaled``                   ``A = c N`` for a constant ``c`` (2, 1/2, 1/batch, …)
``kernel_not_rotated``       ``A = flip(N)`` over the spatial axes (or one of them)
``transposed``               ``A = N`` with its last two spatial axes swapped
``shifted``                  ``A = N`` moved by one position along a spatial axis
``single_element``           ``A = N`` except one element
``region``                   ``A = N`` everywhere except one region (one batch item, one
                             channel, one side of the border, the whole border), which
                             is zero or wrong; the first of these that holds every
                             mismatch
``outside_kink_limits``      at a kink, ``A`` lies outside both one-sided derivatives
===========================  ==========================================================

A claim is named only when the evidence says so: after applying it, the analytic and
numerical values must agree *within the same tolerance the check used* (up to a small
slack, :data:`~gradcheck.checker._diagnose.SLACK`), where before they did not. A new
cause is a new function here and one more line in :data:`CAUSES`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from gradcheck.checker._judge import excess, unusable
from gradcheck.checker._report import Diagnosis

__all__ = ["Cause", "CAUSES", "no_known_pattern"]


class Cause(NamedTuple):
    """One entry of the catalogue: ``test(evidence)`` is its Diagnosis, or None."""

    name: str
    test: Callable   # (Evidence) -> Diagnosis | None


# --------------------------------------------------------------------------- the check itself


def _no_numerical_derivative(ev):
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


def _outside_kink_limits(ev):
    """Mismatches at kinks: the analytic value is outside both one-sided limits there."""
    judged = ev.judged
    if judged is None:
        return None
    failed = judged.failed & judged.nondiff
    if not failed.any():
        return None
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


# --------------------------------------------------------------------------- known bugs


def _caller_suspects(ev):
    """The layer-aware claims, most specific first (tested in the order given)."""
    if not ev.n_failed:
        return None
    for s in ev.suspects():
        # a claim that predicts the right gradient cannot explain a wrong one
        if s.predicted.shape == ev.a.shape and ev.fits(s.predicted) and not ev.fits(ev.n):
            if not ev.agrees(s.predicted, ev.n):
                return Diagnosis(s.cause, s.message, ev.record(s.predicted))
    return None


# --------------------------------------------------------------------------- sign and scale


def _sign_flipped(ev):
    c = ev.factor
    if c is None or abs(c + 1) >= 1e-3 or not ev.fits(-ev.n, ev.tol):
        return None
    return Diagnosis("sign_flipped",
                     "The analytic gradient is the numerical one with its sign flipped.",
                     ev.record(-ev.n, factor=-1.0))


def _nice_factor(c: float, shape: Sequence[int]) -> str:
    """Describe a scale factor: an integer, a simple fraction, or 1/(a dimension)."""
    frac = Fraction(c).limit_denominator(64)
    if frac != 0 and abs(float(frac) - c) <= 1e-6 * abs(c):
        text = str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"
        # a dimension is named only when it is not a small number that could be anything
        hints = [f"size of axis {i}" for i, n in enumerate(shape)
                 if n > 4 and (frac == n or frac == Fraction(1, n))]
        return text + (f" ({' or '.join(hints)})" if hints else "")
    return f"{c:.6g}"


def _scaled(ev):
    c = ev.factor
    if c is None or abs(c) <= 1e-12 or abs(c - 1) <= 1e-6 or not ev.fits(c * ev.n, abs(c) * ev.tol):
        return None
    return Diagnosis(
        "scaled",
        f"The analytic gradient is {_nice_factor(c, ev.a.shape)} times the numerical one "
        f"everywhere: a constant factor is wrong (a missing or extra mean, sum, or factor "
        f"of 2).",
        ev.record(c * ev.n, factor=c))


# --------------------------------------------------------------------------- data moved


def _shift(arr, axis, by):
    out = np.zeros_like(arr)
    src = [slice(None)] * arr.ndim
    dst = [slice(None)] * arr.ndim
    if by > 0:
        src[axis], dst[axis] = slice(0, -by), slice(by, None)
    else:
        src[axis], dst[axis] = slice(-by, None), slice(0, by)
    out[tuple(dst)] = arr[tuple(src)]
    return out


def _flips(shape, role) -> Iterator:
    """``A = flip(N)``: over every spatial axis, then along one axis only."""
    sp = role.spatial_axes
    if not sp or not any(shape[a] > 1 for a in sp):
        return
    name = "kernel gradient" if role.kind == "weight" else "gradient"
    yield (f"The analytic {name} is the numerical one rotated 180° (flipped along every "
           f"spatial axis): the kernel was not rotated — a convolution was used where a "
           f"correlation belongs, or the other way round.", lambda arr: np.flip(arr, axis=sp))
    if len(sp) > 1:
        for axis in sp:
            if shape[axis] > 1:
                yield (f"The analytic gradient is the numerical one flipped along axis {axis} "
                       f"only: the kernel was flipped along one axis instead of rotated 180°.",
                       lambda arr, axis=axis: np.flip(arr, axis=axis))


def _transposes(shape, role) -> Iterator:
    """``A = N`` with the last two spatial axes swapped."""
    sp = role.spatial_axes
    if len(sp) >= 2 and shape[sp[-1]] == shape[sp[-2]] > 1:
        yield (f"The analytic gradient is the numerical one with spatial axes {sp[-2]} and "
               f"{sp[-1]} swapped: the kernel (or the gradient) was transposed instead of "
               f"rotated.", lambda arr: np.swapaxes(arr, sp[-2], sp[-1]))


def _shifts(shape, role) -> Iterator:
    """``A = N`` moved by one position along one spatial axis."""
    for axis in role.spatial_axes:
        if shape[axis] < 2:
            continue
        for by in (1, -1):
            yield (f"The analytic gradient is the numerical one shifted by {by:+d} along axis "
                   f"{axis}: an off-by-one in the padding crop or the stride offset.",
                   lambda arr, axis=axis, by=by: _shift(arr, axis, by))


def _moved(cause, transforms):
    """A cause of the form ``A = T(N)``: ``transforms(shape, role)`` yields each ``T``
    with its message. A prediction made from ``N`` carries ``N``'s own uncertainty, moved
    along with it."""
    def test(ev):
        for message, move in transforms(ev.a.shape, ev.role):
            predicted = move(ev.n)
            if ev.fits(predicted, move(ev.tol)) and not ev.fits(ev.n):
                return Diagnosis(cause, message, ev.record(predicted))
        return None

    return test


# --------------------------------------------------------------------------- where it is wrong


def _single_element(ev):
    if ev.n_failed != 1:
        return None
    a, n = ev.a, ev.n
    idx = tuple(int(i) for i in np.argwhere(ev.failed)[0])
    rel = abs(a[idx] - n[idx]) / max(abs(a[idx]), abs(n[idx]), np.finfo(float).tiny)
    return Diagnosis(
        "single_element",
        f"Only element {idx} is wrong (analytic {a[idx]:.9g}, numeric {n[idx]:.9g}, "
        f"relative error {rel:.2g}); every other element agrees.",
        {"index": list(idx), "analytic": a[idx], "numeric": n[idx], "relative_error": rel,
         "failed_elements": 1})


def _slab(shape, axis, where) -> np.ndarray:
    """The mask of the positions ``where`` (an index or a slice) along ``axis``."""
    mask = np.zeros(shape, bool)
    idx = [slice(None)] * len(shape)
    idx[axis] = where
    mask[tuple(idx)] = True
    return mask


def _region_masks(shape, role):
    """Candidate regions (name, boolean mask) for 'one region is zero or wrong'."""
    if role.batch_axis is not None and shape[role.batch_axis] > 1:
        for i in range(shape[role.batch_axis]):
            yield f"batch item {i} (axis {role.batch_axis} = {i})", _slab(shape, role.batch_axis, i)
    for axis in role.channel_axes:
        if shape[axis] > 1:
            what = {0: "output channel", 1: "input channel"}.get(axis, "channel") \
                if role.kind == "weight" else "channel"
            for i in range(shape[axis]):
                yield f"{what} {i} (axis {axis} = {i})", _slab(shape, axis, i)
    # one side of the border: the first or last `width` positions along one spatial axis
    for width in (1, 2):
        for a in role.spatial_axes:
            if shape[a] <= 2 * width:
                continue
            where = f"position{'s' if width > 1 else ''}"
            for side, sl in (("first", slice(0, width)), ("last", slice(shape[a] - width, None))):
                yield (f"the {side} {width} {where} along spatial axis {a} (a border)",
                       _slab(shape, a, sl))
    if role.spatial_axes and all(shape[a] >= 3 for a in role.spatial_axes):
        for width in (1, 2):
            if any(shape[a] <= 2 * width for a in role.spatial_axes):
                continue
            inner = np.zeros(shape, bool)
            idx = [slice(None)] * len(shape)
            for a in role.spatial_axes:
                idx[a] = slice(width, shape[a] - width)
            inner[tuple(idx)] = True
            yield f"the border (the outer {width} row{'s' if width > 1 else ''}/column" \
                  f"{'s' if width > 1 else ''} of every spatial axis)", ~inner


def _region(ev):
    if not ev.n_failed:
        return None
    for label, mask in _region_masks(ev.a.shape, ev.role):
        if mask.all() or not ev.failed[~mask].sum() == 0:
            continue
        inside = mask & ev.keep
        zero = ev.negligible(inside)
        share = ev.failed.sum() / max(1, inside.sum())
        return Diagnosis(
            "region",
            f"All {ev.n_failed} mismatches lie in {label}, where the analytic gradient is "
            f"{'zero' if zero else 'wrong'}; everywhere else it agrees. Look for a boundary "
            f"or indexing bug that drops or mangles that part.",
            {"region": label, "analytic_zero_there": zero, "failed_elements": ev.n_failed,
             "failed_share_of_region": float(share)})
    return None


# --------------------------------------------------------------------------- the table

#: Tried in this order; the first that fits is named.
CAUSES = (
    Cause("no_numerical_derivative", _no_numerical_derivative),
    Cause("suspects", _caller_suspects),
    Cause("sign_flipped", _sign_flipped),
    Cause("scaled", _scaled),
    Cause("kernel_not_rotated", _moved("kernel_not_rotated", _flips)),
    Cause("transposed", _moved("transposed", _transposes)),
    Cause("shifted", _moved("shifted", _shifts)),
    Cause("single_element", _single_element),
    Cause("region", _region),
    Cause("outside_kink_limits", _outside_kink_limits),
)


def no_known_pattern(ev) -> Diagnosis:
    """What is said when no entry of :data:`CAUSES` fits."""
    return Diagnosis(
        "no_known_pattern",
        "No known pattern fits: not a sign flip, a constant factor, a kernel flip or transpose, "
        "a one-position shift, a single element or a single region.",
        {"misfit_before": ev.before, "failed_elements": ev.n_failed,
         "largest_numeric": float(np.max(np.abs(ev.n_k))) if ev.n_k.size else 0.0})
