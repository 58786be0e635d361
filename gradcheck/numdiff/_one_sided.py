r"""One-sided differences where ``f`` is not finite on one side of the point (float16 and
bfloat16).

float16's largest value is 65504: ``exp`` near 11 (``exp(11) = 59874``) overflows at
``x + h`` for every step the differentiator may take there -- the first, 2 (from the
argument's typical size), and every retry, held at 16 ulps of ``x`` (0.125). Each pass
then meets an infinity and no central stencil is formed (the derivative was NaN). Letting
the retries go below 16 ulps gave finite values but bars of 40-500%, the values' grid
being coarser than what such a step moves.

An element no pass formed is differenced once more on one side, at the last pass's step:
the nodes ``0, -1, -2, -3, -4`` (times ``h``; else ``0, 1, .., 4``), a degree-4 fit -- the
least whose top coefficients leave a trend to tell noise from truncation
(:func:`._model.excess_noise` reads the top two against the ones below) -- with the same
error model as a central pass (rounding from the prior and the noise its top
coefficients show, truncation from the trend: :func:`._model.estimate_pass`). The
element keeps that side's derivative as ``left`` (or ``right``) and the other side NaN,
which the checker's notes name (:func:`gradcheck.checker._notes.one_sided_notes`). Where
neither side is finite the element stays without a value (error ``inf``): the checker
counts it as not checked and says why.

Measured on ``exp`` at float16 ``10.9, 11.0, 11.05`` (step 0.125, reference the
float64 derivative): values within 1.5%, 0.05%, 0.8% of it, bars of about 48% of the
value. The bar is the prior's: the argument's rounding, :math:`\varepsilon |x| |f'|`
per value, is 11 times the value's own at ``x = 11`` and the degree-4 one-sided row
is 5.6 / h long (a central pass at ``x = 10.5`` has a bar of 10% for the same reason),
so a 5% error in such an element is not resolved: the checker's coarse-resolution note
says so (:func:`gradcheck.checker._notes.coarse_notes`); a wrong sign is caught.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradcheck.numdiff._passes import _no_digit, _rounding
from gradcheck.numdiff._model import estimate_pass
from gradcheck.numdiff._records import Estimate, PassEstimate

__all__ = ["one_sided", "ONE_SIDED"]

#: Nodes (times the side's sign, with the center) of the one-sided stencil (module
#: docstring).
ONE_SIDED = (1, 2, 3, 4)


def one_sided(target, best, last, eps, arg_scale, seen):
    """``best`` with the quantities no pass formed (every pass met a value that was not
    finite) differenced on one side at the last pass's step, where the nodes
    ``-ONE_SIDED`` (else ``+ONE_SIDED``) are finite (float16 and bfloat16 coordinates).
    Such a quantity keeps ``left`` (or ``right``) as its value and the other side NaN:
    the side that could not be formed, which the report names."""
    lost = ~np.isfinite(best.error) & last.bad & np.isfinite(last.h)
    if not lost.any():
        return best
    h = np.full(target.n_src, np.inf)
    np.minimum.at(h, target.q_src[lost], last.h[lost])
    steps = best.steps.copy()
    for sign in (-1, 1):
        src = np.flatnonzero(np.isfinite(h))
        if src.size == 0:
            break
        ks = tuple(sign * k for k in ONE_SIDED)
        nodes = tuple(sorted((0,) + ks))
        values = target.values(src, h[src], ks, imag=False)
        a_q = None if arg_scale is None else arg_scale[target.q_src[values.q]]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            est = estimate_pass(values, ks, nodes, h[target.q_src[values.q]], eps, a_q,
                                sides=False)
        at = np.zeros(target.n_q, bool)
        at[values.q] = True
        full = {name: np.full(target.n_q, np.nan) for name in est}
        for name, arr in est.items():
            full[name][values.q] = arr
        p = PassEstimate(bad=np.zeros(target.n_q, bool), h=h[target.q_src], **full)
        rho = _rounding(p, seen)
        error = rho + p.tau
        with np.errstate(invalid="ignore"):
            ok = (at & lost & ~np.isfinite(best.error) & np.isfinite(p.value)
                  & np.isfinite(error) & ~_no_digit(p))
        if not ok.any():
            continue
        steps[target.q_src[ok]] = h[target.q_src[ok]]
        nan = np.full(target.n_q, np.nan)
        side = Estimate(value=p.value, error=error, left=p.value if sign < 0 else nan,
                        right=nan if sign < 0 else p.value,
                        nondiff=np.zeros(target.n_q, bool), rho=rho, steps=steps)
        best = replace(best.where(ok, side), steps=steps)
        done = np.zeros(target.n_src, bool)
        done[target.q_src[ok]] = True
        h = np.where(done, np.inf, h)
    return best
