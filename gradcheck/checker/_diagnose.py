"""Naming the likely cause of a gradient mismatch.

A failing check has two arrays for one argument: the analytic gradient ``A`` (what the
backward pass under test returned) and the numerical gradient ``N`` (what the function
really does, with error bars ``E``). Each *suspect* is a precise claim about how a buggy
backward pass turns the true gradient into something else:

=========================  ============================================================
cause                      claim
=========================  ============================================================
``sign_flipped``           ``A = -N``
``scaled``                 ``A = c N`` for a constant ``c`` (2, 1/2, 1/batch, …)
``kernel_not_rotated``     ``A = flip(N)`` over the spatial axes (weights), or ``A`` is
                           the gradient of the same layer with the kernel rotated 180°
``transposed``             ``A = N`` with its last two spatial axes swapped
``shifted``                ``A = N`` moved by one position along a spatial axis
``derivative_at_output``   an activation's derivative evaluated at its output
``region``                 ``A = N`` everywhere except one region (one batch item, one
                           channel, one side of the border, the whole border), which is
                           zero or wrong; the first of these that holds every mismatch
``single_element``         ``A = N`` except one element
=========================  ============================================================

A suspect is named only when the evidence says so: after applying the claim, the
analytic and numerical values must agree *within the same tolerance the check used*
(up to a small slack), where before they did not. Otherwise the answer is
``no_known_pattern``. Layer-specific suspects (a conv input gradient computed with the
kernel not rotated, stride zeros missing, an activation's derivative taken at its
output, …) are supplied by the caller as predicted arrays, because only the caller knows
the layer; the generic ones here need nothing but the two arrays and the tensor's axes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from gradcheck.checker._report import Diagnosis

__all__ = ["TensorRole", "Suspect", "diagnose"]

#: A claim is accepted when every element agrees within SLACK x the check's tolerance.
SLACK = 4.0


class TensorRole(NamedTuple):
    """Which axes of a tensor mean what, for suspects that move data around.

    ``batch_axis`` / ``channel_axes`` may be None / empty; ``spatial_axes`` are the axes
    that a kernel flip, transpose or shift acts on.
    """

    kind: str = "generic"            # "input", "weight", "bias", "generic"
    batch_axis: int | None = None
    channel_axes: tuple[int, ...] = ()
    spatial_axes: tuple[int, ...] = ()

    @classmethod
    def for_array(cls, kind: str, ndim: int) -> "TensorRole":
        """Roles of the usual layouts: input ``(N, C, *sp)``, weight ``(C_out, C_in, *k)``."""
        if kind == "input" and ndim >= 3:
            return cls("input", 0, (1,), tuple(range(2, ndim)))
        if kind == "input" and ndim == 2:
            return cls("input", 0, (1,), ())
        if kind == "weight" and ndim >= 3:
            return cls("weight", None, (0, 1), tuple(range(2, ndim)))
        if kind == "weight" and ndim == 2:
            return cls("weight", None, (0, 1), ())
        if kind == "bias":
            return cls("bias", None, (0,), ())
        return cls("generic")


class Suspect(NamedTuple):
    """A caller-supplied claim: ``predicted`` is what the buggy backward would return."""

    cause: str
    message: str
    predicted: np.ndarray


def _agrees(a, b, tol) -> bool:
    return bool(np.all(np.abs(a - b) <= SLACK * tol))


def _misfit(a, b, tol) -> float:
    """Largest |a - b| in units of the tolerance (<= SLACK means the claim fits)."""
    return float(np.max(np.abs(a - b) / np.maximum(tol, np.finfo(float).tiny)))


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


def _transform_suspects(numeric: np.ndarray, role: TensorRole) -> Iterable[Suspect]:
    """Claims of the form ``A = T(N)`` that need only the array and its axes."""
    sp = role.spatial_axes
    if sp and any(numeric.shape[a] > 1 for a in sp):
        name = "kernel" if role.kind == "weight" else "gradient"
        msg = (f"The analytic {name} gradient is the numerical one rotated 180° (flipped along "
               f"every spatial axis): the kernel was not rotated — a convolution was used "
               f"where a correlation belongs, or the other way round.")
        yield Suspect("kernel_not_rotated", msg, np.flip(numeric, axis=sp))
        if len(sp) > 1:
            for axis in sp:
                if numeric.shape[axis] > 1:
                    yield Suspect(
                        "kernel_not_rotated",
                        f"The analytic gradient is the numerical one flipped along axis {axis} "
                        f"only: the kernel was flipped along one axis instead of rotated 180°.",
                        np.flip(numeric, axis=axis))
        if len(sp) >= 2 and numeric.shape[sp[-1]] == numeric.shape[sp[-2]] > 1:
            yield Suspect(
                "transposed",
                f"The analytic gradient is the numerical one with spatial axes {sp[-2]} and "
                f"{sp[-1]} swapped: the kernel (or the gradient) was transposed instead of "
                f"rotated.",
                np.swapaxes(numeric, sp[-2], sp[-1]))
        for axis in sp:
            if numeric.shape[axis] < 2:
                continue
            for by in (1, -1):
                yield Suspect(
                    "shifted",
                    f"The analytic gradient is the numerical one shifted by {by:+d} along axis "
                    f"{axis}: an off-by-one in the padding crop or the stride offset.",
                    _shift(numeric, axis, by))


def _region_masks(shape, role: TensorRole):
    """Candidate regions (name, boolean mask) for 'one region is zero or wrong'."""
    ndim = len(shape)
    if role.batch_axis is not None and shape[role.batch_axis] > 1:
        for i in range(shape[role.batch_axis]):
            mask = np.zeros(shape, bool)
            idx = [slice(None)] * ndim
            idx[role.batch_axis] = i
            mask[tuple(idx)] = True
            yield f"batch item {i} (axis {role.batch_axis} = {i})", mask
    for axis in role.channel_axes:
        if shape[axis] > 1:
            for i in range(shape[axis]):
                mask = np.zeros(shape, bool)
                idx = [slice(None)] * ndim
                idx[axis] = i
                mask[tuple(idx)] = True
                what = {0: "output channel", 1: "input channel"}.get(axis, "channel") \
                    if role.kind == "weight" else "channel"
                yield f"{what} {i} (axis {axis} = {i})", mask
    # one side of the border: the first or last `width` positions along one spatial axis
    for width in (1, 2):
        for a in role.spatial_axes:
            if shape[a] <= 2 * width:
                continue
            for side, sl in (("first", slice(0, width)), ("last", slice(shape[a] - width, None))):
                mask = np.zeros(shape, bool)
                idx = [slice(None)] * ndim
                idx[a] = sl
                mask[tuple(idx)] = True
                where = f"position{'s' if width > 1 else ''}"
                yield f"the {side} {width} {where} along spatial axis {a} (a border)", mask
    if role.spatial_axes and all(shape[a] >= 3 for a in role.spatial_axes):
        for width in (1, 2):
            if any(shape[a] <= 2 * width for a in role.spatial_axes):
                continue
            inner = np.zeros(shape, bool)
            idx = [slice(None)] * ndim
            for a in role.spatial_axes:
                idx[a] = slice(width, shape[a] - width)
            inner[tuple(idx)] = True
            yield f"the border (the outer {width} row{'s' if width > 1 else ''}/column" \
                  f"{'s' if width > 1 else ''} of every spatial axis)", ~inner


def diagnose(
    analytic: np.ndarray,
    numeric: np.ndarray,
    tolerance: np.ndarray,
    *,
    role: TensorRole = TensorRole(),
    suspects: Sequence[Suspect] = (),
    exclude: np.ndarray | None = None,
) -> Diagnosis:
    """Name the best-supported cause of ``analytic != numeric``.

    Parameters
    ----------
    analytic, numeric : ndarray
        The two gradients of one argument, same shape.
    tolerance : ndarray
        Per-element allowed ``|analytic - numeric|`` the check used.
    role : TensorRole
        Axis meanings for flips, shifts and regions.
    suspects : sequence of Suspect
        Layer-specific claims supplied by the caller (tested first, in order).
    exclude : ndarray of bool, optional
        Elements to leave out of every comparison (non-differentiable points).
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), a.shape)
    keep = np.ones(a.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    a_k, n_k, tol_k = a[keep], n[keep], tol[keep]
    before = _misfit(a_k, n_k, tol_k) if a_k.size else 0.0
    failed = keep & (np.abs(a - n) > tol)
    n_failed = int(failed.sum())
    scale = float(np.max(np.abs(n_k))) if n_k.size else 0.0

    def fits(predicted, spread=None):
        # a prediction made from N carries N's own uncertainty, moved along with it
        t = tol_k if spread is None else tol_k + np.asarray(spread, np.float64)[keep]
        return a_k.size and _agrees(a_k, np.asarray(predicted, np.float64)[keep], t)

    def evidence(predicted, **extra):
        ev = {"misfit_before": before,
              "misfit_after": _misfit(a_k, np.asarray(predicted, np.float64)[keep], tol_k),
              "failed_elements": n_failed}
        ev.update(extra)
        return ev

    # 1. Caller-supplied, layer-aware claims (most specific), then sign and scale.
    for s in suspects:
        # a claim that predicts the right gradient cannot explain a wrong one
        if s.predicted.shape == a.shape and fits(s.predicted) and not fits(n):
            distinct = not _agrees(np.asarray(s.predicted, np.float64)[keep], n_k, tol_k)
            if distinct:
                return Diagnosis(s.cause, s.message, evidence(s.predicted))
    nn = float(np.dot(n_k, n_k))
    if nn > 0 and n_failed:
        c = float(np.dot(a_k, n_k) / nn)
        if abs(c + 1) < 1e-3 and fits(-n, tol):
            return Diagnosis("sign_flipped",
                             "The analytic gradient is the numerical one with its sign flipped.",
                             evidence(-n, factor=-1.0))
        if abs(c) > 1e-12 and abs(c - 1) > 1e-6 and fits(c * n, abs(c) * tol):
            return Diagnosis(
                "scaled",
                f"The analytic gradient is {_nice_factor(c, a.shape)} times the numerical "
                f"one everywhere: a constant factor is wrong (a missing or extra mean, sum, "
                f"or factor of 2).",
                evidence(c * n, factor=c))
    # 2. Data moved: flips, transposes, shifts.
    for s, moved in zip(_transform_suspects(n, role), _transform_suspects(tol, role)):
        if fits(s.predicted, moved.predicted) and not fits(n):
            return Diagnosis(s.cause, s.message, evidence(s.predicted))
    # 3. One element, or one region, is wrong while the rest agrees.
    if n_failed == 1:
        idx = tuple(int(i) for i in np.argwhere(failed)[0])
        rel = abs(a[idx] - n[idx]) / max(abs(a[idx]), abs(n[idx]), np.finfo(float).tiny)
        return Diagnosis(
            "single_element",
            f"Only element {idx} is wrong (analytic {a[idx]:.9g}, numeric {n[idx]:.9g}, "
            f"relative error {rel:.2g}); every other element agrees.",
            {"index": list(idx), "analytic": a[idx], "numeric": n[idx], "relative_error": rel,
             "failed_elements": 1})
    if n_failed:
        for label, mask in _region_masks(a.shape, role):
            if mask.all() or not failed[~mask].sum() == 0:
                continue
            inside = mask & keep
            zero = bool(np.all(np.abs(a[inside]) <= SLACK * tol[inside]))
            what = "zero" if zero else "wrong"
            share = failed.sum() / max(1, inside.sum())
            return Diagnosis(
                "region",
                f"All {n_failed} mismatches lie in {label}, where the analytic gradient is "
                f"{what}; everywhere else it agrees. Look for a boundary or indexing bug that "
                f"drops or mangles that part.",
                {"region": label, "analytic_zero_there": zero, "failed_elements": n_failed,
                 "failed_share_of_region": float(share)})
    return Diagnosis(
        "no_known_pattern",
        "No known pattern fits: not a sign flip, a constant factor, a kernel flip or transpose, "
        "a one-position shift, a single element or a single region.",
        {"misfit_before": before, "failed_elements": n_failed,
         "largest_numeric": scale})
