r"""The methods besides adaptive real differences: single stencils and the complex step.

Single stencils (``"central"``, ``"central4"`` ...)
---------------------------------------------------
Each is evaluated at :math:`h` and :math:`2h`. :math:`D(2h) - D(h) \approx (2^p - 1)
c h^p` is Richardson's (1911) estimate of the error :math:`c h^p` of :math:`D(h)`; it
is doubled (``FIXED_SAFETY``) because at practical steps the next term is not
negligible. The rounding term is :math:`\kappa_r \varepsilon \lVert w\rVert \sigma/h`
as in :mod:`._model`.

Complex step (``"complex"``)
----------------------------
:math:`f'(x) = \operatorname{Im} f(x + ih)/h + O(h^2)` (Lyness and Moler 1967; Squire
and Trapp 1998): no subtraction, so a tiny step (:mod:`._steps`) gives the derivative
to rounding. The step is taken both ways, :math:`d_+ = \operatorname{Im} f(x + ih)/h`
and :math:`d_- = -\operatorname{Im} f(x - 3ih)/3h`. For real-analytic code (``f(conj z)
= conj f(z)``) the two agree to rounding, and because the second step is not a
power-of-two multiple of the first their rounding errors differ: :math:`|d_+ - d_-|` is
a free sample of the rounding error, added to the error bar ``GAP_WEIGHT`` times.
Where ``f`` branches on a comparison (``maximum``, ``where(x > 0)``, a max-pool tie)
NumPy orders complex numbers by real part, then imaginary part, so at an exact tie
:math:`d_+` and :math:`d_-` are the right and left derivatives. An element exactly at
zero has its two points' real parts moved to :math:`+h` and :math:`-3h` as well, so a
branch on the real part alone (``where(x.real > 0)``) is seen from both sides. The
element is marked non-differentiable when :math:`d_\pm` differ by more than
``SPLIT_RATIO`` times :math:`\rho_c` and more than :math:`\sqrt{\varepsilon}|f'|`.
Error: :math:`\rho_c = \kappa_c \varepsilon (\sigma_{\mathrm{Im}}/h + |f'|) +
\varepsilon \max(|x_j| - 1, 0) |f'| + \delta\,|f'|` plus the gap (half the gap at a tie)
-- and, for an argument offset far above its spread :math:`s`, the rounding of the point
itself, :math:`4 \varepsilon |x_j| / s` times the larger of :math:`|f'|` and the
derivatives' root mean square (``POINT_WEIGHT``) -- where :math:`\delta` is the
*drift* of the real part: :math:`\operatorname{Re} f(x + ih) = f(x) + O(h^2)`, so the
relative difference between the two, over the outputs the step reached, is rounding of
``f``'s value -- large where ``f`` forms it from terms that cancel (a loss
:math:`(\tanh z - t)^2` with :math:`\tanh z \approx t`), and then the derivative,
formed from the same difference, carries the same relative rounding. Found by the
thorough property profile: a right ``tanh`` + ``mse`` network failed with a bar 6 times
too small; with :math:`\delta|f'|` it passes.

Tuning record (complex step), ``benchmarks/bench_numdiff.py``, coverage / median
overestimate (before the drift term, which took the tuning set to 99.0% / 99.3% at
4.9 / 9.5, and the held-out set to 89.5% / 95.3%): :math:`\kappa_c` = 0.5 gives 95.6% / 2.9 (float64) and 95.5% / 5.6
(float32), 1 gives 98.5% / 5.3 and 98.9% / 10.5, 3/4 sits between. ``GAP_WEIGHT`` 2
instead of 1 took the held-out set, whose losses cancel inside (a derivative near zero
made of large terms, which :math:`\sigma_{\mathrm{Im}}` does not see), from 83.7% /
91.9% to 88.4% / 95.3% coverage, at a median overestimate of 4.4 / 8.7 on the tuning set.

Cancellation in the imaginary part: a derivative near zero that ``f`` forms as the
difference of large terms (``((x - 3) x + 3) x - 1`` near its double root at 1; a
cross-entropy at confident logits, whose imaginary part is
:math:`\operatorname{fl}(h/(1 + s)) - h`) carries the rounding of those terms, which
both points share: :math:`|d_+ - d_-|` does not see it, and the bar was 30 to 160 times
too small. The imaginary parts then lie on the grid of the terms' ulp, and that grid
(``values.grain``, per row, :func:`._grain._grain`) over :math:`h` is a floor of the
rounding term: held-out coverage 89.5% -> 94.2% (float64), no element beyond ten bars.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradcheck.numdiff._records import Estimate

__all__ = ["run_fixed", "run_complex"]

#: kappa_c: complex-step rounding bar in units of eps * (sigma_Im / h + |f'|).
KAPPA_C = 0.75
#: A complex step's d+ and d- count as the two sides of a tie when they are this many
#: complex-step rounding bars apart (and more than sqrt(eps) relative): real-analytic
#: code keeps them within a few bars, a tie puts them a whole derivative apart.
SPLIT_RATIO = 64.0
#: Multiples of |d+ - d-| added to the complex step's bar where no tie was seen: the gap
#: is one sample of the difference of two rounding errors (see the module docstring).
GAP_WEIGHT = 2.0
#: Multiples of eps (|x_j| - 1) |f'| (where |x_j| > 1) in the complex step's rounding
#: term: ``f`` rounds the arguments it forms from x_j (``x - max(x)`` before ``exp``) at
#: eps |x_j|, which moves the point the derivative is taken at: relative error
#: eps |x_j| |f''/f'|, beyond the eps |f'| of the term before it where |x_j| > 1. Measured
#: (``bench_numdiff.py``, complex step, float64): held-out coverage 94.2% -> 95.9% (0.5:
#: 94.2%), tuning 99.0% -> 99.3%, at a median overestimate of 6.0 / 5.8 (float32: 15.3 /
#: 12.5, where it was 10.9 / 11.0). The relative term takes |f''/f'| of order 1, which
#: x far from 1 does not keep (f = mean(x**2) at x ~ 1e100: a relative bar of 1e84 passed
#: a wrong factor): it is held to sqrt(eps), reached at |x_j| ~ 1/sqrt(eps).
ARG_WEIGHT = 1.0
#: Multiples of eps |x_j| / spread times the larger of |f'_j| and the root mean square
#: of the derivatives in the complex step's rounding term, for an argument whose elements
#: share a common part far above their spread (:func:`._steps.offset_spread`: a batch
#: norm of ``100 + 1e-3 z``). ``f`` forms ``x - mean(x)`` with the rounding of x's size,
#: eps |x_j| (the element's, and the mean's), and varies on the spread: the point the
#: derivative is taken at moves by eps |x_j| / spread of the scale ``f`` varies on, and
#: the derivatives, coupled through the mean, by that share of their typical size --
#: not of their own, which may be near zero. The complex step's two points share the
#: moved point, so neither their gap nor sigma sees it: the bar was 100 to 2000 times
#: below the error against the exact derivative (float64, ``100 + 1e-3 z``). Measured
#: against the closed form at the exact point (tests/test_numdiff_scales.py; float64
#: batch norm + tanh, 20 seeds each of ``100 + 1e-3 z``, ``1e3 + 3e-3 z``,
#: ``1e4 + 1e-2 z``, ``100 + 1e-4 z``): 1 left one element of one seed 1.1 bars off, 2
#: covered all but that one, 4 every element, the worst at 0.56 of its bar, at a median
#: overestimate of 56 to 300 (2.8e4 where the batch norm's own eps, 1e-5, sets the scale
#: f varies on, not the spread of 1e-4). The product is held to sqrt(eps), as
#: ``ARG_WEIGHT``'s term is.
POINT_WEIGHT = 4.0
#: Multiples of the real part's relative drift (module docstring) taken as the relative
#: rounding of the derivative.
DRIFT_WEIGHT = 1.0
#: Factor on Richardson's error estimate of a single stencil, |D(2h) - D(h)|/(2^p - 1):
#: the next term of the error expansion is not negligible at practical steps.
FIXED_SAFETY = 2.0


# ------------------------------------------------------------------ single stencils


def run_fixed(target, h0, stencil, eps):
    """A single stencil at ``h``; truncation from the same stencil at ``2h`` (Richardson's
    estimate, module docstring)."""
    from gradcheck.numdiff._model import KAPPA_R, fit_matrix, table   # real differences only

    nodes, ks1 = stencil.nodes, stencil.perturbed
    ks = tuple(sorted(set(ks1) | {2 * k for k in ks1}))
    values = target.values(np.arange(target.n_src), h0, ks, imag=False)
    q = values.q
    h = h0[target.q_src[q]]
    Vinv = fit_matrix(nodes)
    with np.errstate(invalid="ignore", over="ignore"):
        d1 = (Vinv @ table(values.vals, ks, nodes))[1] / h
        d2 = (Vinv @ table(values.vals, ks, tuple(2 * k for k in nodes)))[1] / (2 * h)
        rho = KAPPA_R * eps * np.linalg.norm(Vinv[1]) * values.sigma / h
        if values.position is not None:
            rho = rho + values.position * np.abs(d1)
        err = FIXED_SAFETY * np.abs(d1 - d2) / (2.0**stencil.order - 1) + rho
    bad = values.nonfinite | ~np.isfinite(d1)
    return _scatter(Estimate.blank(target.n_q, h0), q,
                    value=np.where(bad, np.nan, d1), error=np.where(bad, np.inf, err), rho=rho)


def _arg_scale(target, q):
    """|x_j| of each quantity's element (0 for directions)."""
    xf = getattr(target, "xf", None)
    if xf is None or getattr(target, "V", None) is not None:
        return np.zeros(q.size)
    return np.abs(xf[target.q_src[q]]).astype(np.float64)


def _scatter(est: Estimate, q, **arrays) -> Estimate:
    """``est`` with the named fields set at the quantities ``q``."""
    changed = {}
    for name, arr in arrays.items():
        changed[name] = getattr(est, name).copy()
        changed[name][q] = arr
    return replace(est, **changed)


# ---------------------------------------------------------------------- complex step


def _typical(values):
    """Root mean square of the finite ``values`` (0 where none)."""
    v = np.abs(values[np.isfinite(values)])
    return float(np.sqrt(np.mean(v * v))) if v.size else 0.0


def run_complex(target, hc, eps, *, ties=True, shift=None, spread=None):
    """Complex steps ``+ih`` and ``-3ih``; an exact tie shows as ``d+ != d-``.

    ``shift`` (per source; nonzero for elements exactly at zero, where it is the
    imaginary step's size) moves the two points' real parts by ``+shift`` and
    ``-3 shift``, so that a branch on the real part exactly at the point
    (``where(x.real > 0)`` at ``x == 0``) is seen from both sides; ``(3 d+ + d-)/4`` is
    then the derivative at ``x`` itself.
    With ``ties=False`` (the caller knows ``f`` is smooth: no kinks, no ties) only ``+ih``
    is evaluated, half the cost; the error bar is then the rounding term alone.
    ``spread`` (coordinates of an offset argument, :func:`._steps.offset_spread`): the
    point's rounding is taken relative to it (``POINT_WEIGHT``).
    """
    ks = (1, -3) if ties else (1,)
    values = target.values(np.arange(target.n_src), hc, ks, imag=True,
                           shift=shift if ties else None)
    q = values.q
    h = hc[target.q_src[q]]
    with np.errstate(invalid="ignore", over="ignore"):
        dp = values.vals[0] / h
        dm = -values.vals[1] / (3 * h) if ties else dp
        mid = 0.5 * (dp + dm)
        if shift is not None:
            mid = np.where(shift[target.q_src[q]] != 0, 0.25 * (3 * dp + dm), mid)
        drift = target.real_drift[target.q_src[q]]
        own = eps * (values.sigma / h + np.abs(mid))
        if values.grain is not None:
            own = np.maximum(own, values.grain / h)
        moved = np.minimum(eps * np.maximum(_arg_scale(target, q) - 1, 0), np.sqrt(eps))
        own = own + ARG_WEIGHT * moved * np.abs(mid)
        if spread is not None:      # an offset argument: f varies on its spread
            shifted = np.minimum(POINT_WEIGHT * eps * _arg_scale(target, q) / spread,
                                 np.sqrt(eps))
            own = own + shifted * np.maximum(np.abs(mid), _typical(mid))
        rho = (KAPPA_C * own
               + DRIFT_WEIGHT * np.abs(mid) * np.where(np.isfinite(drift), drift, 0.0))
        gap = np.abs(dp - dm)
        split = gap > np.maximum(SPLIT_RATIO * rho, np.sqrt(eps) * np.abs(mid))
    bad = values.nonfinite
    flag = split & ~bad
    mid = np.where(split, 0.5 * (dp + dm), mid)
    return _scatter(
        Estimate.blank(target.n_q, hc), q, value=np.where(bad, np.nan, mid),
        error=np.where(bad, np.inf, rho + np.where(split, 0.5, GAP_WEIGHT) * gap), rho=rho,
        nondiff=flag, left=np.where(flag, dm, np.nan), right=np.where(flag, dp, np.nan))
