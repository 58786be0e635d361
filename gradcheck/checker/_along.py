r"""Is ``f`` differentiable along a direction? The test both fast modes share.

A fast check compares the analytic derivative along a random direction :math:`v` --
:math:`\langle A, v\rangle` in reverse mode, :math:`J v` in forward mode -- with the
numerical directional derivative :math:`f'(x; v)`. The two are equal only where ``f``
is differentiable. A random direction moves every element at once, so it crosses
several kinks together where a single element's axis crosses one (a max-pool tie, a
ReLU layer's zeros feeding one output); there the analytic value is one element of
the generalized Jacobian applied to :math:`v`, which need not be :math:`f'(x; v)` at
all, though the code is right. A single kink's one-sided value passes on the error
bar, which spans both sides; a mismatch at a kink has crossed several.

Where ``f`` is differentiable the directional derivative is linear in the direction,
so a failing direction :math:`v` is differenced again beside ``PARTNERS`` random
partners :math:`w` (entries ±1, seeded by the direction: :func:`partner_directions`),
along :math:`w` and :math:`v + w`. Where :math:`f'(x; v + w)` is not
:math:`f'(x; v) + f'(x; w)` beyond ten of their summed rounding bars
(:func:`rounding_part`: a flagged kink's half gap left out), or where the
differentiator flags a kink along :math:`v`, :math:`w` or :math:`v + w`, ``f`` is not
differentiable along :math:`v` (:func:`not_differentiable`): the mismatch is a kink
along that direction, reported, not judged. A wrong gradient at a point where ``f`` is
differentiable along the directions tried still fails: its directional derivatives
add up, and none is flagged.

The test costs ``2 * PARTNERS`` directional derivatives per failing direction, and
nothing when none fails. Forward mode applies it per output entry
(:func:`._forward_probes._linearity_look`), reverse fast mode per projection
(:func:`kinks_along`, for :func:`._argument.check_fast`) and sampled mode per direction
over the rest, when bisection finds no failing element along it
(:func:`._argument._unconfirmed`).
"""

from __future__ import annotations

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.checker._judge import excess, unusable
from gradcheck.checker._numeric import directional_numeric

__all__ = ["PARTNERS", "partner_directions", "rounding_part", "not_differentiable",
           "kinks_along"]

#: Random partners each failing direction is tested for linearity beside.
PARTNERS = 3


def partner_directions(seed, index, ks, size) -> np.ndarray:
    """``PARTNERS`` random directions (entries ±1) beside each direction of ``ks`` of
    argument ``index``, seeded by the direction: shape ``(len(ks) * PARTNERS, size)``.

    Examples
    --------
    >>> from gradcheck.checker._along import partner_directions
    >>> partner_directions(0, 0, [2, 5], 4).shape
    (6, 4)
    """
    if len(ks) == 0:
        return np.zeros((0, int(size)))
    return np.concatenate([
        np.random.default_rng([int(seed), int(index), int(k), 7])
        .choice(np.array([-1.0, 1.0]), size=(PARTNERS, int(size))) for k in ks])


def rounding_part(view) -> np.ndarray:
    """``view``'s error bar without the half gap a flagged kink adds (its rounding and
    truncation); ``view`` has ``error``, ``left``, ``right`` and ``nondifferentiable``."""
    error = np.asarray(view.error, np.float64)
    gap = np.abs(np.asarray(view.right, np.float64) - np.asarray(view.left, np.float64))
    flagged = np.asarray(view.nondifferentiable, bool)
    with np.errstate(invalid="ignore"):
        return np.where(flagged & np.isfinite(gap), np.maximum(error - 0.5 * gap, 0.0),
                        error)


def not_differentiable(along_v, partners, sums, tolerance) -> np.ndarray:
    """Where ``f`` is not differentiable along ``v`` (see the module notes).

    ``along_v`` holds the numerical derivative along ``v`` (``grad``, ``error``,
    ``left``, ``right``, ``nondifferentiable``: arrays of one shape, or scalars),
    ``partners`` and ``sums`` the same along each partner ``w`` and along ``v + w``;
    ``tolerance`` is the comparison's :class:`~._tolerance.Tolerance` (its numerical
    factor applies to the summed bars). A boolean array of ``along_v``'s shape.
    """
    shape = np.shape(along_v.grad)
    out = np.asarray(along_v.nondifferentiable, bool).reshape(shape).copy()
    d_v = np.asarray(along_v.grad, np.float64)
    for w, vw in zip(partners, sums):
        bars = rounding_part(along_v) + rounding_part(w) + rounding_part(vw)
        off = np.abs(np.asarray(vw.grad, np.float64) - d_v - np.asarray(w.grad, np.float64))
        with np.errstate(invalid="ignore"):
            out |= ((off > tolerance.numeric(bars))
                    | np.asarray(w.nondifferentiable, bool)
                    | np.asarray(vw.nondifferentiable, bool)).reshape(shape)
    return out


# --------------------------------------------------------------------------- reverse


class _Along(NamedTuple):
    """One direction's numerical derivative (what :func:`._along.not_differentiable`
    reads)."""

    grad: float
    error: float
    nondifferentiable: bool
    left: float
    right: float


def _along(num, k) -> _Along:
    flat = lambda name: np.asarray(getattr(num, name)).reshape(-1)[k]  # noqa: E731
    return _Along(*(flat(name) for name in _Along._fields))


def kinks_along(options, plan, target, directions, num, judged, tolerance):
    """The failing directions along which ``f`` is not differentiable
    (:func:`._along.not_differentiable`: differenced again beside random partners)
    marked ``nondiff`` and no longer failed: ``(judged, nfev, note)``.

    The worst first, one at a time, and none after the first along which ``f`` is
    differentiable: that one fails the argument whatever the rest are, so a wrong
    gradient costs the test of one direction (``2 * PARTNERS`` directional derivatives).
    A direction flagged at a kink needs no partners; one without a usable numerical value
    still fails."""
    failing = np.flatnonzero(judged.failed & ~unusable(judged.numeric, judged.error))
    failing = failing[np.argsort(-excess(judged)[failing], kind="stable")]
    kinked = np.zeros(judged.failed.shape, bool)
    nfev = 0
    for k in failing:
        along = _along(num, k)
        if not along.nondifferentiable:
            partners = partner_directions(options.seed, plan.index, [k], target.arg.size)
            more = directional_numeric(target._replace(method="adaptive"), np.concatenate(
                [partners, np.asarray(directions)[k] + partners]))
            nfev += int(more.nfev)
            rs = range(PARTNERS)
            if not not_differentiable(along, [_along(more, r) for r in rs],
                                      [_along(more, PARTNERS + r) for r in rs], tolerance):
                break
        kinked[k] = True
    if not kinked.any():
        return judged, nfev, ""
    worst = float(np.max(excess(judged)[kinked]))
    note = (f"{int(kinked.sum())} direction(s) cross kinks (f is not differentiable along "
            f"them: a tie, several kinks at once; their derivatives are not linear in the "
            f"direction) and differ by up to {worst:.3g} x their tolerance, where the "
            f"projection need not be the directional derivative: reported, not judged")
    return judged._replace(failed=judged.failed & ~kinked, nondiff=judged.nondiff | kinked,
                           diff=np.where(kinked, 0.0, judged.diff)), nfev, note
