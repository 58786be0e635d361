r"""The methods: adaptive real differences, single stencils, the complex step.

Adaptive real differences (``method="adaptive"``)
------------------------------------------------
One pass evaluates the order-5 stencil of :mod:`._stencils` on the nodes
:math:`-2h, \dots, 3h` and estimates value, rounding :math:`\rho` and truncation
:math:`T` (:mod:`._model`). An element is evaluated again with a smaller step
(:mod:`._steps`) when a value was not finite or :math:`T > 4\rho` (truncation
dominates: the step is too large for the function, or a kink lies within :math:`3h`);
the pass with the smallest error bar is kept.

Kinks. Under a smooth function :math:`T` falls like :math:`h^5` with the step; across a
kink it does not fall at all. An element is marked **non-differentiable** when, after at
least one retry, (a) :math:`T` still exceeds :math:`4\rho`, (b) it fell by less than
:math:`r^{2.5}` for a step ratio :math:`r` (halfway between :math:`r^5` and :math:`r^0` on
a log scale), (c) the gap between its one-sided derivatives -- from nodes ``(-2,-1,0)``
and ``(0,1,2,3)`` -- exceeds :math:`z_k = 3` times their rounding, and (d) that gap fell
by less than :math:`r` (smooth: :math:`r^2` or faster; a kink: not at all). The element
then gets ``left`` and ``right``, the midpoint as its value and half their distance
plus their rounding as its error, so ``|grad - a| <= error`` accepts exactly the values
``a`` between the one-sided limits.

Single stencils (``"central"``, ``"central4"`` ...)
---------------------------------------------------
Each is evaluated at :math:`h` and :math:`2h`. :math:`D(2h) - D(h) \approx (2^p - 1)
c h^p` is Richardson's (1911) estimate of the error :math:`c h^p` of :math:`D(h)`; it
is doubled (``FIXED_SAFETY``) because at practical steps the next term is not
negligible.

Complex step (``"complex"``)
----------------------------
:math:`f'(x) = \operatorname{Im} f(x + ih)/h + O(h^2)` (Lyness and Moler 1967; Squire
and Trapp 1998): no subtraction, so a tiny step (:mod:`._steps`) gives the derivative
to rounding. The step is taken both ways, :math:`d_+ = \operatorname{Im} f(x + ih)/h`
and :math:`d_- = -\operatorname{Im} f(x - 3ih)/3h`. For real-analytic code (``f(conj z)
= conj f(z)``) the two agree to rounding, and because the second step is not a
power-of-two multiple of the first their rounding errors differ: :math:`|d_+ - d_-|` is
a free sample of the rounding error and is added to the error bar (``GAP_WEIGHT``).
Where ``f`` branches on a comparison (``maximum``, ``where(x > 0)``, a max-pool tie)
NumPy orders complex numbers by real part, then imaginary part, so at an exact tie
:math:`d_+` and :math:`d_-` are the right and left derivatives. The element is marked
non-differentiable when they differ by more than ``SPLIT_RATIO`` times :math:`\rho_c`
and more than :math:`\sqrt{\varepsilon}|f'|`. Error: :math:`\rho_c = \kappa_c
\varepsilon (\sigma_{\mathrm{Im}}/h + |f'|)` plus the gap (half the gap at a tie).

Constants: :math:`\kappa_r = 1`, :math:`\kappa_t = 2`, retry when :math:`T > 4\rho`,
:math:`\kappa_c = 3/4`.

Tuning record
-------------
Measured with ``benchmarks/bench_numdiff.py`` (818 elements per dtype; exact references),
then confirmed on two held-out draws of the same problem families (``problems(seed=1)``,
``seed=2``: median digits within 0.1, coverage 97.6-99.0%, tightness 4.2-8.2).

* Nodes. At a fixed step, the median digits of the 5-evaluation nodes ``(-2..3)`` were
  12.76 / 12.84 / 12.49 at ``h/s = 1e-3 / 2e-3 / 3e-3`` (float64), against 12.2 for the
  4-evaluation 5-point stencil at its best and 13.2 for the 6-evaluation 7-point one; the
  7-point stencil leaves no room under 6 evaluations per element for retries.
* :math:`\kappa_r`: 80% of rounding-dominated elements have a true error below
  :math:`0.4\rho` and 95% below :math:`\rho`.
* :math:`\kappa_t`: for truncation-dominated elements the trend prediction is within a
  factor 3 of the truth (median 0.4 of it, 95th percentile 1.3).
* Retry threshold: retrying at ratios 2 and 4 gives the same digits and coverage; 4
  spends fewer evaluations (5.47 instead of 5.56 per element in float64, 5.83 instead of
  6.11 in float32).
* :math:`\kappa_c` (coverage / tightness, float64 and float32): 0.5 gives 95.6% / 2.9
  and 95.5% / 5.6; 1 gives 98.5% / 5.3 and 98.9% / 10.5; 3/4 sits between.

Known blind spot: the rounding scale is the magnitude of the values, so cancellation
*inside* ``f`` (``1 + tanh(z)`` for ``z << 0`` in a GELU, a loss that subtracts nearly
equal terms) makes the true rounding larger than :math:`\rho`; the benchmark's misses
are mostly such elements.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradcheck.numdiff._model import Estimate, PassEstimate, estimate_pass, fit_matrix, table
from gradcheck.numdiff._model import KAPPA_R
from gradcheck.numdiff._steps import retry_steps

__all__ = ["run_adaptive", "run_fixed", "run_complex", "Estimate"]

#: Retry an element when its truncation term exceeds this many times its rounding term.
TRUNCATION_DOMINATES = 4.0
#: z_k: a kink needs one-sided derivatives this many times their rounding apart.
FLAG_Z = 3.0
#: kappa_c: complex-step rounding bar in units of eps * (sigma_Im / h + |f'|).
KAPPA_C = 0.75
#: A complex step's d+ and d- count as the two sides of a tie when they are this many
#: complex-step rounding bars apart (and more than sqrt(eps) relative): real-analytic
#: code keeps them within a few bars, a tie puts them a whole derivative apart.
SPLIT_RATIO = 64.0
#: Share of |d+ - d-| added to the complex step's bar where no tie was seen: the gap is
#: one sample of the rounding error (see the module docstring), counted in full.
GAP_WEIGHT = 1.0
#: Factor on Richardson's error estimate of a single stencil, |D(2h) - D(h)|/(2^p - 1):
#: the next term of the error expansion is not negligible at practical steps.
FIXED_SAFETY = 2.0


# ------------------------------------------------------------------ adaptive stencil


def run_adaptive(target, h0, stencil, eps, *, max_retries, x_src=None, sources=None):
    """Adaptive real differences with retries and kink detection (module docstring).

    ``sources`` restricts the work to those sources (quantities of others stay NaN).
    """
    nodes, ks = stencil.nodes, stencil.perturbed
    steps = h0.copy()
    best = Estimate.blank(target.n_q, h0)
    best_step = h0.copy()
    last = prev = PassEstimate.blank(target.n_q)
    src = np.arange(target.n_src) if sources is None else np.asarray(sources)
    for attempt in range(max_retries + 1):
        values = target.values(src, steps[src], ks, imag=False)
        q = values.q
        here = np.zeros(target.n_q, bool)
        here[q] = True
        now = _pass(values, ks, nodes, steps[target.q_src[q]], eps, target.n_q)
        better = here & (now.error < best.error)
        best = best.where(better, Estimate(
            value=now.value, error=now.error, left=best.left, right=best.right,
            nondiff=best.nondiff, rho=now.rho, steps=best.steps))
        best_step[target.q_src[np.flatnonzero(better)]] = now.h[better]
        if attempt:
            prev = prev.where(here, last)
        last = last.where(here, now)
        need = here & (now.bad | (now.tau > TRUNCATION_DOMINATES * now.rho))
        if attempt == max_retries or not need.any():
            break
        qn = np.flatnonzero(need)
        xs = None if x_src is None else x_src[target.q_src[qn]]
        new = retry_steps(now.h[qn], xs, now.rho[qn], now.tau[qn], now.bad[qn], eps,
                          stencil.order)
        nxt = np.full(target.n_src, np.inf)
        np.minimum.at(nxt, target.q_src[qn], new)
        src = np.flatnonzero(np.isfinite(nxt))
        steps[src] = nxt[src]
    return _flag_kinks(replace(best, steps=best_step), last, prev)


def _pass(values, ks, nodes, h, eps, n_q) -> PassEstimate:
    """One pass as a record over all quantities (NaN where ``values`` did not reach)."""
    with np.errstate(invalid="ignore", over="ignore"):
        val, rho, tau, lval, lrho, rval, rrho = estimate_pass(values, ks, nodes, h, eps)
    bad = values.nonfinite | ~np.isfinite(val)
    q = values.q
    out = {}
    for name, arr in (("value", val), ("rho", rho), ("tau", tau), ("h", h), ("left", lval),
                      ("right", rval), ("lrho", lrho), ("rrho", rrho)):
        full = np.full(n_q, np.nan)
        full[q] = arr if name in ("value", "h") else np.where(bad, np.nan, arr)
        out[name] = full
    full_bad = np.zeros(n_q, bool)
    full_bad[q] = bad
    return PassEstimate(bad=full_bad, **out)


def _flag_kinks(best: Estimate, last: PassEstimate, prev: PassEstimate) -> Estimate:
    """Mark the quantities whose last two passes show a kink (module docstring)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = last.h / prev.h
        gap = np.abs(last.right - last.left)
        stuck = (last.tau / prev.tau > r**2.5) & (gap > r * np.abs(prev.right - prev.left))
        unresolved = last.tau > TRUNCATION_DOMINATES * last.rho
        apart = gap > FLAG_Z * (last.lrho + last.rrho)
    flag = np.isfinite(prev.tau) & stuck & unresolved & apart & ~last.bad
    return best.where(flag, Estimate(
        value=0.5 * (last.left + last.right), error=0.5 * gap + last.lrho + last.rrho,
        left=last.left, right=last.right, nondiff=flag, rho=best.rho, steps=best.steps))


# ------------------------------------------------------------------ single stencils


def run_fixed(target, h0, stencil, eps):
    """A single stencil at ``h``; truncation from the same stencil at ``2h`` (Richardson's
    estimate, module docstring)."""
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


def _scatter(est: Estimate, q, **arrays) -> Estimate:
    """``est`` with the named fields set at the quantities ``q``."""
    changed = {}
    for name, arr in arrays.items():
        changed[name] = getattr(est, name).copy()
        changed[name][q] = arr
    return replace(est, **changed)


# ---------------------------------------------------------------------- complex step


def run_complex(target, hc, eps, *, ties=True):
    """Complex steps ``+ih`` and ``-3ih``; an exact tie shows as ``d+ != d-``.

    With ``ties=False`` (the caller knows ``f`` is smooth: no kinks, no ties) only ``+ih``
    is evaluated, half the cost; the error bar is then the rounding term alone.
    """
    values = target.values(np.arange(target.n_src), hc, (1, -3) if ties else (1,), imag=True)
    q = values.q
    h = hc[target.q_src[q]]
    with np.errstate(invalid="ignore", over="ignore"):
        dp = values.vals[0] / h
        dm = -values.vals[1] / (3 * h) if ties else dp
        mid = 0.5 * (dp + dm)
        rho = KAPPA_C * eps * (values.sigma / h + np.abs(mid))
        gap = np.abs(dp - dm)
        split = gap > np.maximum(SPLIT_RATIO * rho, np.sqrt(eps) * np.abs(mid))
    bad = values.nonfinite
    flag = split & ~bad
    return _scatter(
        Estimate.blank(target.n_q, hc), q, value=np.where(bad, np.nan, mid),
        error=np.where(bad, np.inf, rho + np.where(split, 0.5, GAP_WEIGHT) * gap), rho=rho,
        nondiff=flag, left=np.where(flag, dm, np.nan), right=np.where(flag, dp, np.nan))
