"""One pass of adaptive real differences as a record, and the noise it shows.

:func:`_pass` turns a pass's values into a :class:`~._records.PassEstimate` over all
quantities (:func:`._model.estimate_pass`); the rest reads the per-value noise of a
pass -- the prior's, what two passes confirmed, what its own top coefficients show --
and the verdicts the retries of :mod:`._adaptive` are decided on (no digit, suspect
noise, refuted noise).
"""

from __future__ import annotations

import numpy as np

from gradcheck.numdiff._model import KAPPA_E, KAPPA_R, estimate_pass
from gradcheck.numdiff._records import PassEstimate

__all__: list[str] = []

#: Retry an element when its truncation term exceeds this many times its rounding term.
TRUNCATION_DOMINATES = 4.0
#: A noise level confirmed by two passes is refuted by a later pass whose top two
#: coefficients both lie this many times below it (their samples of the noise; for
#: normal noise each is below a 16th of its scale 5% of the time, both 0.25%).
NOISE_REFUTED = 16.0
#: Noise the top coefficients of a pass show this many times above its prior (and any
#: noise confirmed before) is suspect until a smaller step confirms it (:func:`_suspect_noise`).
NOISE_SUSPECT = 1024.0


def _pass(values, ks, nodes, h, eps, n_q, arg_scale=None) -> PassEstimate:
    """One pass as a record over all quantities (NaN where ``values`` did not reach)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        est = estimate_pass(values, ks, nodes, h, eps, arg_scale)
    est["h"] = h
    bad = values.nonfinite | ~np.isfinite(est["value"])
    out = {}
    for name, arr in est.items():
        full = np.full(n_q, np.nan)
        full[values.q] = arr if name in ("value", "h") else np.where(bad, np.nan, arr)
        out[name] = full
    full_bad = np.zeros(n_q, bool)
    full_bad[values.q] = bad
    return PassEstimate(bad=full_bad, **out)


# --------------------------------------------------------------------------- noise


def _noise(p: PassEstimate, seen, excess=True):
    """Per-value noise of pass ``p``: its a-priori noise, the noise confirmed by two
    passes, and (``excess``) what its own top coefficients show beyond the trend -- left
    out where a kink is judged, whose own terms are no noise."""
    s = np.fmax(p.prior, seen)
    return np.fmax(s, p.excess) if excess else s


def _rounding(p: PassEstimate, seen, excess=True):
    return KAPPA_R * p.unit * _noise(p, seen, excess) + p.pos


def _confirmed_noise(a: PassEstimate, b: PassEstimate):
    """Noise both passes show: a top coefficient of the smaller-step pass ``b`` still
    above ``sqrt(r)`` times the other's, for the step ratio ``r`` (module docstring).
    Not also required to lie far below the first coefficient: float16 layers with kinks
    within the stencil show top coefficients as large as the signal, and their noise
    went unconfirmed (a bar 8 times too small, a false alarm on a random conv + ReLU)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = b.h / a.h
        out = np.zeros(r.shape)
        for t_a, t_b in ((a.below, b.below), (a.top, b.top)):
            out = np.fmax(out, np.where(t_b > np.sqrt(r) * t_a, t_b, 0.0))
    return KAPPA_E * np.where(np.isfinite(out), out, 0.0)


def _no_digit(p: PassEstimate):
    """Where pass ``p`` has no significant digit for a reason a smaller step can
    remove: its truncation is at least its value (values that saturate across a
    stencil far wider than the scale ``f`` varies on look like a flat polynomial with a
    large trend to one pass: ``tanh(1e6 x)`` at ``x = 1e-7``, ``h = 2**-10``). A pass
    whose values are all equal (``T = 0`` and a value of 0: ``f`` does not move with
    the element) has every digit of its exact zero; a pass whose rounding is at least
    its value has its bar, which a smaller step would only widen (noise about a
    derivative near zero, a sum that cancels)."""
    with np.errstate(invalid="ignore"):
        return ~p.bad & (p.tau > 0) & (p.tau >= np.abs(p.value))


def _suspect_noise(p: PassEstimate, seen, eps):
    """Where the noise pass ``p``'s top coefficients show lies ``NOISE_SUSPECT`` times
    above the prior and any noise earlier passes confirmed, and sets its bar (the
    rounding with it is ``TRUNCATION_DOMINATES`` times the rounding without it), a bar
    of more than ``sqrt(eps)`` of the value (rounding that cancels inside a smooth ``f``,
    a convolution's sums, reads a few thousand times its prior at a bar of 1e-12). A kink
    within the stencil of a smooth pass bends its values in a way no low-degree trend
    explains, and the fit reads it as scatter: a float64 ``relu(tanh(x @ w) - 0.1)``
    input whose pre-activation sat 1.2e-5 below zero, 2e-4 from the kink along the
    element (a tenth of the step), read -0.2752 +- 0.1 for -0.2222 -- a noise of 1.6e-4
    per value where the prior was 2.6e-15 -- and was never retried (no truncation). Real
    rounding shows again at a smaller step, where two passes confirm it and the larger
    step's smaller bar is kept; a kink's share of the top coefficients falls with the
    step."""
    with np.errstate(invalid="ignore"):
        above = p.excess > NOISE_SUSPECT * np.fmax(p.prior, seen)
        rho = _rounding(p, seen)
        return above & (rho > TRUNCATION_DOMINATES * _rounding(p, seen, False)) \
            & (rho > np.sqrt(eps) * np.abs(p.value))


def _refuted(seen, p: PassEstimate):
    """Where pass ``p``'s top coefficients both lie ``NOISE_REFUTED`` times below the
    noise two earlier passes confirmed: noise would show again at any step, so what
    they saw was the function varying on a scale between their steps."""
    with np.errstate(invalid="ignore"):
        return NOISE_REFUTED * KAPPA_E * np.fmax(p.top, p.below) < seen
