"""Frozen records the methods pass around: one pass of real differences, one result."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from gradcheck._record import frozen

__all__ = ["PassEstimate", "Estimate"]


class _Record:
    """Arrays over all quantities; ``where`` builds a new record taking another's
    entries at a mask (records are frozen: every update is a new record). Fields named
    in ``_per_source`` are not per quantity and are kept."""

    _per_source = ()

    def where(self, mask, other):
        return type(self)(**{f.name: getattr(self, f.name) if f.name in self._per_source
                             else np.where(mask, getattr(other, f.name), getattr(self, f.name))
                             for f in fields(self)})


@frozen
class PassEstimate(_Record):
    """What one pass says about each quantity (NaN where the pass did not reach it).

    Rounding terms are kept per unit of per-value noise (``unit``, ``lunit``, ``runit``,
    ``sunit``) because the noise is settled only once every pass is in
    (:func:`gradcheck.numdiff._core.run_adaptive`).
    """

    value: np.ndarray      # b_1 / h
    tau: np.ndarray        # truncation term T
    h: np.ndarray          # step of the quantity's source
    unit: np.ndarray       # rounding of ``value`` per unit of per-value noise, ||w|| / h
    left: np.ndarray       # one-sided derivative from the nodes (-2, -1, 0)
    right: np.ndarray      # one-sided derivative from the nodes (0, 1, 2, 3)
    lunit: np.ndarray      # rounding of ``left`` and ``right`` per unit of noise
    runit: np.ndarray
    lsec: np.ndarray       # one-sided secants (f(x) - f(x - h))/h and (f(x + h) - f(x))/h
    rsec: np.ndarray
    lfar: np.ndarray       # secants (f(x - h) - f(x - 2h))/h and (f(x + 3h) - f(x + h))/2h
    rfar: np.ndarray
    sunit: np.ndarray      # rounding of a secant per unit of noise, sqrt(2) / h
    prior: np.ndarray      # a-priori per-value noise
    excess: np.ndarray     # noise the top coefficients show beyond the Taylor trend
    top: np.ndarray        # |b_d| in units of its noise weight (d: the fit's degree)
    below: np.ndarray      # |b_(d-1)| likewise
    pos: np.ndarray        # error from the rounded positions of the points (directions)
    bad: np.ndarray        # a value was not finite

    @classmethod
    def blank(cls, n_q: int) -> "PassEstimate":
        nan = np.full(n_q, np.nan)
        return cls(*(nan,) * 18, bad=np.zeros(n_q, bool))


@frozen
class Estimate(_Record):
    """A method's result per quantity, and the step kept for every source."""

    value: np.ndarray
    error: np.ndarray
    left: np.ndarray
    right: np.ndarray
    nondiff: np.ndarray
    rho: np.ndarray
    steps: np.ndarray      # per source, not per quantity

    _per_source = ("steps",)

    @classmethod
    def blank(cls, n_q: int, steps) -> "Estimate":
        nan = np.full(n_q, np.nan)
        return cls(value=nan, error=np.full(n_q, np.inf), left=nan, right=nan,
                   nondiff=np.zeros(n_q, bool), rho=np.full(n_q, np.inf),
                   steps=np.asarray(steps, np.float64).copy())
