r"""Adaptive real differences (``method="adaptive"``): passes, retries, kinks.

One pass evaluates the order-5 stencil of :mod:`._stencils` on the nodes
:math:`-2h, \dots, 3h` and estimates the value, its rounding :math:`\rho` and its
truncation :math:`T` (:mod:`._model`). An element is evaluated again with a smaller
step (:mod:`._steps`) when a value was not finite or :math:`T > 4\rho` (truncation
dominates: the step is too large for the function, or a kink lies within :math:`3h`).
In float64 a first pass whose truncation dominates by less than ``EXTRA_TRUNCATION``
is first fitted again with one more node, :math:`-3h` (one evaluation), and not retried
where that order-6 fit resolves it; a retry whose truncation a half step resolves takes
exactly half the step, sharing two of its points (``HALF_STEP``). A first pass whose
stencil straddles a single jump of :math:`f'` or :math:`f''` (a ReLU's kink, the second
derivative of softsign, ELU or Huber) is completed on the side the jump leaves smooth
into a one-sided six-node stencil at the same step -- its own nodes there and two or
three new ones, where a retry takes five -- and not retried where that fit resolves it
(:mod:`._economy`, with the extra node and the shared nodes of half-step retries; the
pass record and its noise verdicts, ``NOISE_REFUTED``, ``NOISE_SUSPECT``, are in
:mod:`._passes`).

Combining the passes of an element
----------------------------------
* *Noise is a property of the point, not of the step.* A top coefficient that did not
  shrink from one pass to the next -- Taylor terms shrink like :math:`r^m` with the
  step ratio :math:`r`, a kink's share of the fit like :math:`r` or :math:`r^2` -- is
  rounding noise; the largest such sample (times :math:`\kappa_e`) is pooled over the
  passes and used for every pass's :math:`\rho`. Otherwise the pass with the smallest
  error bar would win where its noise happened to look small.
* *The smallest error bar wins, and must agree with the others.* Two honest bars
  overlap; where the chosen value lies further from another resolved pass's value
  (:math:`T \le 4\rho` there) than that pass's bar, the chosen bar grows to cover the
  difference.
* *A retry's value is held to its predecessor, at first order.* A function only once
  differentiable (softsign, ELU, Huber) has a jump of :math:`f''` that the fit sees as
  a smooth trend: its truncation falls like :math:`h`, not :math:`h^5`, while the pass
  looks clean. So a retry's bar is at least :math:`|v_k - v_{k-1}|\, r/(1 - r)`, what
  remains of the change if the error falls in proportion to the step. (Measured: a
  float32 softsign convolution whose pre-activation sat 3e-4 from zero had a true error
  16 times its bar without this term, 0.8 times with it.) Not where the predecessor
  straddled a kink the retry stepped inside (below), nor where the change is under
  ``FIRST_ORDER_SHARE`` of the predecessor's truncation term: a kink straddled then,
  resolved since.

Steps beyond the scale ``f`` varies on
--------------------------------------
The base step follows :math:`\max(|x_j|, \tau_j)`, not ``f``: ``tanh(1e6 x)`` at
:math:`x \approx 10^{-7}` starts at :math:`h = 2^{-10}`, a softmax of logits offset by
:math:`10^5` at :math:`h = 128` (float64) or 4096 (float32). There the values saturate
across the stencil, and one pass cannot tell them from a flat polynomial or from noise.
Four rules keep such a pass from carrying a small bar (:func:`_no_digit`: its
truncation is at least its value):

* it is retried, with the largest cut once the smooth model's cut has failed once, or
  at once where its pair's one-sided gap grew like :math:`1/h` (a stencil over
  saturated values locates no kink; float32 logits offset by 1e5 were cut by 4 per
  retry and read -8e-4 for -0.0116 after three);
* noise two passes confirmed is dropped when a later pass's top coefficients lie far
  below it (``NOISE_REFUTED``): noise would show at every step;
* a chosen pass that is truncation-dominated covers what the bars of the passes at
  smaller steps leave possible, their intersection (their union where they do not meet:
  :func:`_covering`) (it is not kept from winning: a derivative that cancels to about
  zero has no digit at any step, and a forward-mode layer norm averaged then took a
  pass below x's resolution, whose equal values showed its noise as a kink);
* a pair shows no kink where the one-sided gap grew like :math:`1/h` (fixed differences
  of saturated values; a kink's gap stays), and a kink a pair seemed to show is
  forgotten when a later pass's value lies beyond the kink's secants by more than its
  bar, or a later pair shows a smooth point (truncation fell, gap fell with the step).

Not blind: a pass whose values are all equal (``f`` does not move with the element;
its zero is exact), and a pass whose rounding, not its truncation, is as large as its
value (noise about a derivative near zero, a loss that cancels: a smaller step only
magnifies it). Retrying these took the bar of an exact zero from 0 to 0.16 (float32)
and let a wrong gradient of a (1, 1, 1) input pass, and cost softmax-sum rows two
passes each with bars a million times main's (float64).

Measured (``tests/test_numdiff_scales.py``): both steep functions of 1e-7 inputs
covered element by element (they were 34 bars off), and a right softmax at offsets
1e4 / 1e5 (float32) and 1e5 / 1e6 (float64) passes on every seed tried, while an
error of 1e-3 (ten ulps of the logits where that is more: 1e-2 at 1e4 in float32) in
one of its elements fails where the bar resolves it.

Kinks
-----
Under a smooth function :math:`T` falls like :math:`h^5` with the step; across a kink it
does not fall at all. A pair of consecutive passes shows a **kink** when (a) :math:`T`
still exceeds :math:`4\rho`, (b) it fell by less than :math:`r^{2.5}` (halfway between
:math:`r^5` and :math:`r^0` on a log scale), (c) the gap between the one-sided
derivatives -- nodes ``(-2,-1,0)`` and ``(0,1,2,3)`` -- exceeds :math:`z_k = 3` times
their rounding and :math:`\sqrt{\varepsilon}` of the larger (``KINK_RELATIVE``), and (d) that gap fell by less than :math:`r` (smooth: :math:`r^2` or
faster). It is reported where the one-sided secants of the smaller step differ by more
than :math:`z_k` times their rounding too (else the kink lies beyond one step: a kink,
but not at the point). Once truncation has failed to fall, the smooth model's cut does
not apply: a kink within one step of the point is *located* from the secants of the straddling pass
(:func:`_kink_distance`) and the next step is a quarter of its distance, so that every
node lies on one side of it; a kink not located takes the largest cut
(:data:`._steps.SHRINK_MIN`), except one the pair shows at the point: it is cut by at
least 4 but not below the step where its secants keep ``1/KINK_RESOLVE`` of their gap
(:func:`_kink_floor`; other kinks may lie within the step, and secants drowned in
rounding say nothing about them). The
kink is reported with the one-sided *secants* of the pair's smaller step,
:math:`(f(x) - f(x-h))/h` and :math:`(f(x+h) - f(x))/h`: a secant across a kink is a
weighted mean of the slopes on both sides, so unlike a fitted one-sided stencil it
never lands outside them; the element gets their midpoint and half their distance plus
their rounding, so ``|grad - a| <= error`` accepts exactly the values ``a`` between the
limits. The sharpest pair showing the kink is kept -- unless a later pair's secants
moved beyond their rounding from it (:func:`_moved`: the larger step's secants spanned a
second kink, their bar sharp about the wrong slopes) -- and forgotten when a later pair's
one-sided derivatives moved beyond their rounding and now agree, truncation resolved
(a near tie 1e-9 away, resolved by the smaller steps). A kink stands unless a pass
resolved the element with a smaller error bar.

Kinks in float16 and bfloat16
-----------------------------
Steps of 16 ulps or more reach kinks a few ulps from the point, and the prior's rounding
of a secant (eps times the magnitudes) is a bound several times what the values show. A
pass and its confirming pass therefore judge a kink with the rounding the secants show
on the side where they agree best (:func:`_side_rounding`; at least an eighth of the
prior's), while the kink's limits keep the prior's rounding (the secants of a step can
span a second kink: limits widened by the measured rounding alone failed a right conv +
ReLU weight whose slope lay beyond both secants). A kink so shown stands against a pass
at a larger step whose one-sided derivatives agree: they average the slopes across it.
A pass with no digit whose secants place a kink within its step beside a side that is
linear steps to a quarter of its distance and is not used after. Measured with
``benchmarks/bench_float16.py``, seeds 2000-2099 / 9000-9099 / 4000-4099 / 5000-5099,
before -> after: conv + ReLU false alarms 2 / 1 / 1 / 2 -> 0 / 0 / 0 / 2, its 5% slips
missed 67 / 61 / 64 / 67 -> 68 / 63 / 64 / 67 (of 100, 99, 100, 100; every one declared
in the notes, most at flagged kinks); dense ``tanh`` 5 / 9 / 5 / 7 -> 5 / 9 / 6 / 6 and
``x @ w.T`` 0 / 1 / 0 / 1 -> 0 / 1 / 0 / 1 missed of 100, no false alarm before or after.

Kinks read as noise
-------------------
A kink inside the first pass's stencil can bend its values so that no trend explains the
top coefficients: the fit reads the bend as scatter, truncation stays 0, and nothing is
retried, while the "noise" -- 1e10 times float64's rounding -- sets a bar of a third of
the value. Such noise (``NOISE_SUSPECT`` times the prior and above, setting the bar, more
than ``sqrt(eps)`` of the value: :func:`_suspect_noise`) is looked at again at a smaller
step: a quarter of the distance to a kink the secants locate, else a quarter step. Real
rounding shows again there, two passes confirm it, and the larger step's smaller bar is
kept; a kink's share of the coefficients falls with the step. A retry that lands on the
value one of its predecessor's one-sided derivatives read (that side was clean, the other
straddled the kink) keeps that agreement, not the first-order extrapolation of the
change, as its bar. Measured: a float64 ``relu(tanh(x @ w) - 0.1)`` input, x [64, 256],
w [256, 128], had 18 of 16384 elements allowed more than 5% of their value (101% at
worst, every one in the batch row whose pre-activation sat 1.2e-5 below 0), now none
(largest relative error 7e-8); ``benchmarks/bench_relu_at_zero.py`` slips beyond the
rule's share missed, seeds 0-19: 9 of 240 before, 0 after; fresh seeds 20-59: 11 / 8 of
480, no false alarm before or after. ``benchmarks/bench_numdiff.py --quick`` (draws 1
and 2): coverage unchanged (98.6-99.9%), evaluations per element +0.02-0.05 (tuning)
and +0.1-0.3 (held-out: the ReLU layers and once-differentiable activations beside
their kinks are the ones retried), held-out digits 12.71 -> 12.74 and 12.83 -> 12.89
(float64), 5.38 -> 5.44 and 5.23 -> 5.34 (float32).

Tuning record
-------------
Measured with ``benchmarks/bench_numdiff.py``: its *tuning* set (818 elements per
dtype) set the constants; its *held-out* set (372 / 360 elements, once-differentiable
activations next to their kinks, ReLU layers, losses that cancel inside, float32 work
behind float64) was scored with them, and its draws for seeds 1 and 2 after that.

* Nodes. At a fixed step, the median digits of the 5-evaluation nodes ``(-2..3)`` were
  12.76 / 12.84 / 12.49 at ``h/s = 1e-3 / 2e-3 / 3e-3`` (float64), against 12.2 for the
  4-evaluation 5-point stencil at its best and 13.2 for the 6-evaluation 7-point one; the
  7-point stencil leaves no room under 6 evaluations per element for retries.
* :math:`\kappa_r = 1`: with the argument's rounding in the prior, 99% of the tuning
  set's elements are covered at a median of 9 times their error (0.8 gives 99% / 7.4,
  but 94.9% on the held-out float64 set).
* :math:`\kappa_e = 4` and the three ways of combining passes took the held-out float64
  coverage from 86.6% to 95.2% and its elements beyond ten error bars from 13 to 2;
  without the argument's rounding it was 87% (the slope errors of cancelling sums).
* :math:`\kappa_t = 2`: for truncation-dominated elements the trend prediction is within
  a factor 3 of the truth.
"""

from __future__ import annotations

import numpy as np

from gradcheck.numdiff._economy import _evaluate, _extra_node, _Nodes, _side_extension
from gradcheck.numdiff._model import KAPPA_R
from gradcheck.numdiff._passes import (TRUNCATION_DOMINATES, _confirmed_noise, _no_digit,
                                       _noise, _pass, _refuted, _rounding, _suspect_noise)
from gradcheck.numdiff._records import Estimate, PassEstimate
from gradcheck.numdiff._steps import KINK_SHRINK, retry_steps

__all__ = ["run_adaptive"]

#: A retry's change counts as evidence of first-order convergence only where it is at
#: least this share of the predecessor's truncation term (module docstring).
FIRST_ORDER_SHARE = 0.01
#: Step of the confirming pass (``confirm``), relative to the first: in float16 the
#: first step is a sixth of the input's scale, and a ReLU layer's element reaches several
#: kinks within it whose slopes, spread over the stencil, look like one smooth curve
#: (measured: 7 false alarms in 60 random float16 convolutions + ReLU, the fit's
#: truncation estimate 50 times too small); a pass at a quarter of the step that
#: disagrees widens the bar (:func:`_settle`). A retry that looks resolved is confirmed
#: the same way, and a pass and its confirming pass bound each other's bar by their
#: difference (the confirming pass can meet the kinks too): random float16 convolutions
#: + ReLU, seeds 0-179, had 5 false alarms, now none; seeds 1000-1179, 5 before, then 1
#: (an element within float16's resolution of a kink, left and right derivatives steady
#: across the passes but not flagged), now none (``steady`` of :func:`_kinks`). A *clean*
#: pass -- its top coefficients show no noise beyond the prior's, its truncation is under
#: a quarter of its rounding -- is dropped only where its confirming pass lies beyond both
#: bars together: float16 ``x @ w.T`` (seed 2014) had a pass -5.574 +- 0.078 for the
#: truth -5.566 dropped for a confirming -5.672 +- 0.254, and a 5% error went unseen.
#: A pass that is not clean is dropped at the same point, and within it keeps its value
#: with its bar grown by the difference (conv + ReLU passes, whose kinks show as excess
#: noise or truncation: kept with their own bar, 2 false alarms in seeds 3000-3059).
#: ``benchmarks/bench_float16.py``, 5% slips missed before / after: dense 4 / 1 of 60
#: (seeds 3000-3059, tuned on), 12 / 9 of 100 (6000-6099), 14 / 7 (8000-8099, held
#: out); x @ w.T 2 / 1, 4 / 1, 2 / 0; conv + ReLU false alarms 0 / 0, 2 / 1, 0 / 0.
CONFIRM_SHRINK = 0.25
#: A kink needs one-sided derivatives this many sqrt(eps) apart, relative to the larger:
#: the complex step's floor too. Rounding the error model does not see (an output entry
#: of a linear map, formed from terms that cancel) kept one-sided derivatives up to
#: 4e-6 (float32) and 1e-11 (float64) apart on random linear maps, and they were flagged
#: (15 entries of 52 626 of numerical_jvp without a cotangent); a kink within reach moves
#: a derivative by a share of one term, far more than sqrt(eps) of it.
KINK_RELATIVE = 1.0
#: An unlocated kink at the point is retried at no step where the rounding of its
#: one-sided secants exceeds this share of their gap (:func:`_kink_floor`).
KINK_RESOLVE = 1024.0
#: A pass retried for truncation within this many roundings of it (float64 evaluations:
#: ``FLOAT64_BELOW``) takes exactly half its step, not the smooth model's cut: the
#: truncation falls by ``2**5``, the rounding doubles, and ``T / 32 <= TRUNCATION_DOMINATES
#: * 2 rho`` resolves it; the retry's nodes -2 and 2 are the pass's -1 and 1 (``REUSE``),
#: three new evaluations where a cut to a quarter took five. Its bar is up to 2.5 times the
#: quarter step's (``2 rho + T/32`` for ``4 rho + T/1024``), its value as good.
#: benchmarks/bench_numdiff.py (real differences, float64), problem seeds 0 / 1 / 2:
#: without ``EXTRA_NODE``, evaluations per element held-out 6.74 / 6.55 / 6.58 -> 6.61 /
#: 6.45 / 6.50, tuning 5.78 / 5.90 / 5.92 -> 5.75 / 5.84 / 5.86, median digits the same or
#: up to +0.04, coverage unchanged, median overestimate held-out 8.9 / 7.8 / 9.6 -> 9.2 /
#: 8.4 / 9.8; with it, few retries are left to halve (held-out 6.37 / 6.26 / 6.28 -> 6.35 /
#: 6.25 / 6.28). Not in float32, whose held-out median overestimate went from 9.5 to 10.3
#: (seed 0), nor in float16 and bfloat16 (their confirming passes).
HALF_STEP = 256.0
#: ``EXTRA_NODE`` and ``HALF_STEP`` apply to evaluations of a machine epsilon below this:
#: float64 (float32: see ``HALF_STEP``; float16 and bfloat16 have their confirming pass).
FLOAT64_BELOW = float(np.finfo(np.float32).eps) / 2
#: The rounding of the gap between two one-sided secants in float16 and bfloat16, in
#: units of the spread of the secants of the side where they agree best
#: (:func:`_side_rounding`): the prior's, eps times the magnitudes, is a bound several
#: times the rounding the values show (a float16 value rounds by at most half an ulp,
#: between eps/4 and eps/2 of it), and hid kinks a few ulps from the point whose gap
#: was ten times the measured spread.
SIDE_SPREAD = 1.0
#: ... but not below the prior's over this: a value rounds by half an ulp at most, and an
#: ulp is at least eps/2 of the value, so rounding spread evenly has a standard deviation
#: of at least eps/7 of it; secants of values on a grid repeat exactly (a float16 conv
#: input whose secants read -0.3504 three times at two steps, the truth -0.3651, failed
#: with a bar of 0).
SIDE_FLOOR = 8.0
#: z_k: a kink needs one-sided derivatives this many times their rounding apart; a
#: one-sided derivative that moved by more than this many roundings between two passes
#: moved for a reason.
FLAG_Z = 3.0


def run_adaptive(target, h0, stencil, eps, *, max_retries, x_src=None, sources=None,
                 arg_scale=None, confirm=False, step_floor=None):
    """Adaptive real differences with retries and kink detection (module docstring).

    ``x_src`` holds the elements (in x's dtype) for the step rules, ``arg_scale``
    their magnitudes for the argument's rounding (both None for directions); ``sources``
    restricts the work to those sources (quantities of others stay NaN). ``confirm``
    differences every element once more, at a quarter of the step of the pass that first
    looked resolved -- the first, or the retry after it (:data:`CONFIRM_SHRINK`;
    float16 and bfloat16). ``step_floor`` (per source) bounds the retries' steps from below
    where ``x_src`` cannot (directions: :func:`._steps.direction_floor`).
    """
    nodes, ks = stencil.nodes, stencil.perturbed
    steps = h0.copy()
    passes, located = [], [np.zeros(target.n_q, bool)]   # pass k stepped inside a kink
    checks = [np.zeros(target.n_q, bool)]  # pass k confirms pass k - 1
    confirmed = np.zeros(target.n_q, bool)
    seen = np.zeros(target.n_q)            # noise confirmed by two passes, pooled
    last = prev = PassEstimate.blank(target.n_q)
    kink = Estimate.blank(target.n_q, h0)  # the sharpest pair of passes showing a kink
    src = np.arange(target.n_src) if sources is None else np.asarray(sources)
    memo = _Nodes(target, ks) if x_src is not None and target.n_q == target.n_src else None
    # float64 coordinates: the first pass takes an extra node where that resolves it
    # (EXTRA_NODE), a retry a half step where that does (HALF_STEP)
    economy = memo is not None and eps < FLOAT64_BELOW
    kink_h = np.full(target.n_q, np.inf)      # the step of the pass that showed the kink
    sided = np.zeros(target.n_q, bool)        # kept by _extra_node or _side_extension
    for attempt in range(max_retries + 1):
        here = np.zeros(target.n_q, bool)
        now = PassEstimate.blank(target.n_q)
        first = []
        for values in _evaluate(target, src, steps, ks, memo):
            at = np.zeros(target.n_q, bool)
            at[values.q] = True
            here |= at
            a_q = None if arg_scale is None else arg_scale[target.q_src[values.q]]
            now = now.where(at, _pass(values, ks, nodes, steps[target.q_src[values.q]], eps,
                                      target.n_q, a_q))
            first.append(values)
        if attempt == 0 and economy:
            now, fine = _extra_node(target, first, now, ks, nodes, steps, eps, arg_scale)
            now, sided = _side_extension(target, first, now, ks, steps, eps, arg_scale)
            sided = sided | fine
        passes.append(now)
        if attempt:
            prev = prev.where(here, last)
            seen = np.where(here & _refuted(seen, now), 0.0, seen)
            seen = np.where(here, np.fmax(seen, _confirmed_noise(last, now)), seen)
        last = last.where(here, now)
        stuck = grew = shown = np.zeros(target.n_q, bool)
        if attempt:
            found, resolved, stuck, grew = _kinks(last, prev, seen, h0, eps, steady=confirm)
            shown = here & found.nondiff & stuck & ~grew
            kink = kink.where(here & (resolved | _contradicts(now, seen, kink)),
                              Estimate.blank(target.n_q, h0))
            if confirm:
                kink = _widened(kink, now, seen, here & ~found.nondiff)
            took = here & found.nondiff & (~(found.error >= kink.error) | _moved(found, kink))
            kink = kink.where(took, found)
            kink_h = np.where(took, now.h, np.where(kink.nondiff, kink_h, np.inf))
        rho = _rounding(now, seen)
        # no digit while truncation does not dominate (it sets no cut), or still none
        # after a retry (beyond the scale f varies on, where the smooth model's cut
        # does not hold): the largest cut (_steps.retry_steps)
        blind = here & _no_digit(now)
        truncated = (now.tau > TRUNCATION_DOMINATES * rho) & ~(here & sided)
        # noise no earlier pass confirmed, far above the prior, that sets the bar: a kink
        # within the stencil, whose slopes the fit reads as scatter (not in float16 and
        # bfloat16, whose confirming pass looks again)
        suspect = here & ~confirm & ~now.bad & _suspect_noise(now, seen, eps) & ~truncated
        need = here & (now.bad | truncated | blind | suspect)
        confirming = here & ~need & ~confirmed if confirm else np.zeros(target.n_q, bool)
        confirmed = confirmed | confirming
        need = need | confirming
        if attempt == max_retries or not need.any():
            break
        qn = np.flatnonzero(need)
        xs = None if x_src is None else x_src[target.q_src[qn]]
        # a gap that grew like 1/h is no kink to locate (saturated values): the
        # largest cut
        # (float16 and bfloat16: also a pass retried for want of a digit, whose fit a
        # kink within its stencil can pass for a smooth curve with a bar as small as the
        # value; the largest cut took a float16 input whose kink sat 0.55 steps away to a
        # step where f's values no longer moved. Not one retried for its truncation: a
        # smooth curve's secants place a kink as well, and a dense tanh layer's steps cut
        # by the kink's distance rather than the smooth model's rule missed 5% slips
        # twice as often)
        lowp = confirm & blind & ~now.bad
        kink_at = np.where((stuck & ~grew) | suspect, _kink_distance(now, seen),
                           np.where(lowp, _kink_distance(now, seen, beside=True), np.nan))
        lowp = lowp & np.isfinite(kink_at)
        located.append(np.isfinite(kink_at))
        # (not in float16 and bfloat16, whose steps of 16 ulps or more leave the secants
        # few digits, and a kink kept there spans what the smaller step would have shown)
        floor = np.where(shown & ~np.isfinite(kink_at) & (not confirm), _kink_floor(now, seen),
                         np.nan)
        # suspect noise not located as a kink: looked at again at a quarter step
        floor = np.where(suspect & ~np.isfinite(kink_at), KINK_SHRINK * now.h, floor)
        checks.append(confirming)
        new = retry_steps(now.h[qn], xs, rho[qn], now.tau[qn], now.bad[qn], eps,
                          stencil.order, stuck=(stuck | suspect | lowp)[qn],
                          kink_at=kink_at[qn],
                          blind=(blind & (~truncated | (attempt > 0)))[qn],
                          kink_floor=floor[qn])
        new = np.where(confirming[qn], now.h[qn] * CONFIRM_SHRINK, new)
        if economy:
            # truncation a half step resolves: exactly half, three new evaluations
            # (HALF_STEP)
            with np.errstate(invalid="ignore"):
                halve = (truncated & ~blind & ~suspect & ~stuck & ~now.bad
                         & (now.tau <= HALF_STEP * rho))[qn]
            new = np.where(halve, np.maximum(0.5 * now.h[qn], new), new)
        if step_floor is not None:
            new = np.maximum(new, step_floor[target.q_src[qn]])
        nxt = np.full(target.n_src, np.inf)
        np.minimum.at(nxt, target.q_src[qn], new)
        src = np.flatnonzero(np.isfinite(nxt))
        steps[src] = nxt[src]
    best, sides_agree = _settle(passes, seen, target.q_src, h0,
                                np.stack(located[:len(passes)]), np.abs(kink.right - kink.left),
                                np.stack(checks[:len(passes)]),
                                kink_h=kink_h if confirm else None)
    best = best.where(kink.nondiff & ~((best.error < kink.error) & sides_agree), kink)
    if confirm and x_src is not None:
        # float16, bfloat16: an element no pass formed for values beyond the dtype's range
        # on one side is differenced on the other (:mod:`._one_sided`)
        from gradcheck.numdiff._one_sided import one_sided

        best = one_sided(target, best, last, eps, arg_scale, seen)
    return best


# ------------------------------------------------------------------- the passes, settled


def _settle(passes, seen, q_src, h0, located, kink_gap, checks, kink_h=None):
    """The pass with the smallest error bar, its bar widened to agree with the others
    and with its predecessor (module docstring); ``located[k]`` marks the quantities
    whose pass ``k`` took a step inside a kink located by the pass before it.

    Also returns where the chosen pass shows a smooth point to a kink of one-sided gap
    ``kink_gap``: its own one-sided derivatives agree within ``FLAG_Z`` times their
    rounding, and that rounding is fine enough to have seen the gap (a pass whose step
    is so small that rounding hides a kink's gap shows nothing about it). Where
    ``checks[k]``, pass ``k`` confirms pass ``k - 1``: a confirmed pass whose bar does
    not reach the confirming pass's value is not used (its smooth model did not hold at
    its step) -- unless it was clean, and the two bars together reach (the confirming
    pass has four times the rounding)."""
    V = np.stack([p.value for p in passes])
    R = np.stack([_rounding(p, seen) for p in passes])
    T = np.stack([p.tau for p in passes])
    H = np.stack([p.h for p in passes])
    bad = np.stack([p.bad | np.isnan(p.tau) for p in passes])
    E = np.where(bad, np.inf, R + T)
    with np.errstate(invalid="ignore"):
        # a clean pass (no noise beyond the prior's, truncation under a quarter of its
        # rounding) is held to its confirming pass within both bars (CONFIRM_SHRINK)
        clean = np.stack([~(p.excess > p.prior) for p in passes]) & (T <= 0.25 * R)
        gap = np.abs(V[1:] - V[:-1])
        missed = checks[1:] & (gap > E[:-1] + E[1:]) & np.isfinite(E[1:])
        # one that is not clean and lies within both bars of its confirming pass but
        # beyond its own keeps its value with its bar grown by the difference (it may
        # still be the sharper: a dense float16 layer whose top coefficients read a
        # little above the prior lost a right pass for one four times noisier)
        strained = checks[1:] & ~clean[:-1] & (gap > E[:-1]) & ~missed & np.isfinite(E[1:])
    E[:-1] = np.where(missed, np.inf, np.where(strained, E[:-1] + gap, E[:-1]))
    if kink_h is not None:
        # a pass whose secants located a kink within its stencil, which the next pass
        # stepped inside, fitted values from both sides of it (float16, bfloat16)
        E[:-1] = np.where(located[1:], np.inf, E[:-1])
    k = np.argmin(E, axis=0)
    cols = np.arange(V.shape[1])
    value, error = V[k, cols], E[k, cols]
    resolved = np.isfinite(E) & ~(T > TRUNCATION_DOMINATES * R)
    with np.errstate(invalid="ignore", divide="ignore"):
        apart = np.where(resolved, np.abs(V - value) - E, 0.0)
        error = np.fmax(error, np.nanmax(apart, axis=0))
        # a chosen pass whose truncation dominates has no trustworthy bar of its own:
        # it covers what the finite passes at smaller steps leave possible (the
        # sequence's disagreement; those steps were nearer to resolving it): _covering
        error = np.where(resolved[k, cols], error,
                         np.fmax(error, _covering(V, E, H < H[k, cols], value)))
        kp = np.maximum(k - 1, 0)
        r = H[k, cols] / H[kp, cols]
        change = np.abs(value - V[kp, cols])
        first_order = change * r / (1 - r)
        # a predecessor whose truncation estimate dwarfs the change, or that located a
        # kink the retry stepped inside, straddled a kink resolved since: its change is
        # no evidence of slow convergence
        evidence = (change > FIRST_ORDER_SHARE * T[kp, cols]) & ~located[k, cols]
        # unless one one-sided derivative of the predecessor already read the retry's
        # value: that side was clean, the other straddled a kink the retry stepped
        # inside, and two estimates from different nodes and steps agree that far
        sides = np.stack([p.left for p in passes]), np.stack([p.right for p in passes])
        side = np.fmin(*(np.abs(S[kp, cols] - value) for S in sides))
        first_order = np.where(side < first_order, side, first_order)
    first_order = np.where((k > 0) & evidence & np.isfinite(first_order)
                           & np.isfinite(E[kp, cols]), first_order, 0.0)
    error = np.fmax(error, first_order)
    # a pass and its confirming pass (low precision) disagree by what neither model
    # sees: several kinks within the stencil, spread over it, look like one smooth curve
    n = len(passes)
    with np.errstate(invalid="ignore"):
        nxt = np.minimum(k + 1, n - 1)
        pair = np.where(checks[k, cols], np.abs(value - V[kp, cols]), 0.0)
        pair = np.fmax(pair, np.where((k + 1 < n) & checks[nxt, cols] & np.isfinite(E[nxt, cols]),
                                      np.abs(value - V[nxt, cols]), 0.0))
    error = np.fmax(error, np.where(np.isfinite(pair), pair, 0.0))
    ok = np.isfinite(error)
    steps = h0.copy()
    steps[q_src[ok]] = H[k, cols][ok]
    nan = np.full(cols.size, np.nan)
    left, right, lunit, runit = (np.stack([getattr(p, name) for p in passes])[k, cols]
                                 for name in ("left", "right", "lunit", "runit"))
    noise = np.stack([_noise(p, seen, excess=False) for p in passes])[k, cols]
    resolution = FLAG_Z * KAPPA_R * (lunit + runit) * noise
    with np.errstate(invalid="ignore"):
        agree = (np.abs(right - left) <= resolution) & (resolution < kink_gap)
        if kink_h is not None:
            # float16, bfloat16: only a pass at the step that showed the kink or a smaller
            # one (``kink_h``) shows a smooth point; a larger step's one-sided
            # derivatives average the slopes across it (a conv + ReLU weight whose kink
            # sat 7e-3 away, shown at 2**-5, kept the central value of 2**-3, whose sides
            # agreed within the prior's rounding, and failed the right gradient)
            agree &= ~(H[k, cols] > kink_h)
    return Estimate(value=np.where(ok, value, nan), error=np.where(ok, error, np.inf),
                    left=nan, right=nan, nondiff=np.zeros(cols.size, bool),
                    rho=np.where(ok, R[k, cols], np.inf), steps=steps), agree


def _covering(V, E, smaller, value):
    """The bar about ``value`` that covers what the passes ``smaller`` (values ``V``,
    bars ``E``) leave possible: the truth lies within every honest bar, so within their
    intersection; where the bars do not meet (one of them is not honest), their union.

    Their union alone let one pass whose truncation estimate had run away set the bar:
    a float32 conv + batch norm weight read -0.0010065 (truth -0.0009949) at 2**-5, and
    the half step's fit, whose only significant coefficients were b_1 and b_2 (b_1 small:
    a batch norm makes ``f`` flat along its channel's weights), extrapolated the ratio
    |b_2 / b_1| = 44 to a truncation of 4.8e8, which became the chosen pass's bar; the
    pass at 2**-9 (-0.00065 +- 0.0013) bounds it to 0.0017. (That fit now takes no
    truncation, a quadratic being exact: :mod:`._model`; a runaway estimate of any other
    smaller step is still bounded here.)
    """
    use = smaller & np.isfinite(E) & np.isfinite(V)
    with np.errstate(invalid="ignore"):
        lo = np.max(np.where(use, V - E, -np.inf), axis=0)
        hi = np.min(np.where(use, V + E, np.inf), axis=0)
        meet = use.any(axis=0) & (lo <= hi)
        inter = np.fmax(np.abs(value - lo), np.abs(value - hi))
        union = np.max(np.where(use, np.abs(V - value) + E, 0.0), axis=0)
    return np.where(meet, inter, union)


# --------------------------------------------------------------------------- kinks


def _kink_distance(p: PassEstimate, seen, beside=False):
    r"""Distance of a kink within one step of the point, located from the secants; NaN
    where none is found.

    With the kink at :math:`d \in (0, h)` on the right and the function linear on each
    side, the nodes :math:`h, 3h` lie beyond it (slope :math:`s_r`, their secant) and
    the secant over :math:`[0, h]` mixes the two sides: :math:`(f(h) - f(0))/h = s_r +
    (s_\ell - s_r)\, d/h`, :math:`s_\ell` the left one-sided derivative; the left
    side alike. A retry at a quarter of that distance sees both nodes on one side. A
    kink beyond the first node (the near secant equals the near side's derivative, the
    far secant does not) is at least a step away: the retry takes a quarter step.

    ``beside``: only a kink within the step beside a side that is linear -- its near and
    far secants and its one-sided derivative agree within their rounding -- as the model
    has it (a smooth curve's secants place a "kink" too: a quadratic's at 3/4 of the
    step on the right).
    """
    s = _noise(p, seen, excess=False)
    jump_r, jump_l = p.left - p.rfar, p.right - p.lfar
    with np.errstate(invalid="ignore", divide="ignore"):
        t_r = (p.rsec - p.rfar) / jump_r
        t_l = (p.lsec - p.lfar) / jump_l
        real = FLAG_Z * KAPPA_R * (p.lunit + p.runit) * s
        ok_r = ((t_r > 0) & (t_r < 1) & (np.abs(jump_r) > real)
                & (np.abs(p.rsec - p.rfar) > real))
        ok_l = ((t_l > 0) & (t_l < 1) & (np.abs(jump_l) > real)
                & (np.abs(p.lsec - p.lfar) > real))
        # beyond the first node (d in [h, 3h) on the right, [h, 2h) on the left): the
        # near secant is the near side's derivative, the far one is not; the kink is at
        # least a step away
        far_r = ((np.abs(p.rsec - p.left) <= real) & (np.abs(p.rfar - p.left) > real)
                 & ~ok_r)
        far_l = ((np.abs(p.lsec - p.right) <= real) & (np.abs(p.lfar - p.right) > real)
                 & ~ok_l)
    if beside:
        with np.errstate(invalid="ignore"):
            lin_l = ((np.abs(p.lsec - p.lfar) <= real) & (np.abs(p.left - p.lsec) <= real))
            lin_r = ((np.abs(p.rsec - p.rfar) <= real) & (np.abs(p.right - p.rsec) <= real))
        ok_r, ok_l = ok_r & lin_l, ok_l & lin_r
        far_r = far_l = np.zeros(ok_r.shape, bool)
    t = np.fmin(np.where(ok_r, t_r, np.where(far_r, 1.0, np.nan)),
                np.where(ok_l, t_l, np.where(far_l, 1.0, np.nan)))
    return t * p.h


def _kink_floor(p: PassEstimate, seen):
    """The smallest step at which the one-sided secants of pass ``p`` still resolve
    their gap to ``1/KINK_RESOLVE`` of it (NaN where they show none): an unlocated kink
    at the point is retried no further down, since other kinks can lie within its
    step, and the secants must remain sharp to show where the one-sided derivatives
    stand (a float32 ReLU bias with ten pre-activations exactly at 0 and one at
    -1.4e-3: the largest cut, from 2**-9 to 2**-19, gave secants with a rounding as
    large as their gap, and the kink kept those of 2**-9, which spanned the second
    kink)."""
    s = _noise(p, seen, excess=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(p.rsec - p.lsec)
        out = KINK_RESOLVE * KAPPA_R * p.sunit * p.h * s / gap
    return np.where(gap > 0, out, np.nan)


def _moved(found: Estimate, kink: Estimate):
    """Where the one-sided secants of a kink ``found`` at a smaller step moved beyond
    their rounding from those of the ``kink`` kept so far: the larger step's secants
    spanned another kink, and the sharper bar they drew is not the point's."""
    with np.errstate(invalid="ignore"):
        shift = np.fmax(np.abs(found.left - kink.left), np.abs(found.right - kink.right))
        return kink.nondiff & (shift > FLAG_Z * 0.5 * (found.rho + kink.rho))


def _widened(kink: Estimate, p: PassEstimate, seen, where):
    """``kink`` with its limits widened, at ``where``, to take in the one-sided secants
    of pass ``p`` (a smaller step that shows no kink of its own) where those moved beyond
    their rounding from the kink's: the kink's secants spanned other kinks, and the
    smaller step's, too noisy to show a kink themselves, still say where the slopes lie
    (float16 and bfloat16: a conv + ReLU bias with kinks at -7e-4 and 1.4e-2 kept the
    secants -1.109 / -1.726 of 2**-5, while 2**-9 read -1.613 / -2.430 and the right
    gradient is -2.4297)."""
    srho = KAPPA_R * p.sunit * _noise(p, seen, excess=False)
    shown = Estimate(value=0.5 * (p.lsec + p.rsec), error=0.5 * np.abs(p.rsec - p.lsec)
                     + 2 * srho, left=p.lsec, right=p.rsec,
                     nondiff=np.ones(p.value.shape, bool), rho=2 * srho, steps=kink.steps)
    with np.errstate(invalid="ignore"):
        grow = where & kink.nondiff & ~p.bad & np.isfinite(srho) & _moved(shown, kink)
        lo = np.fmin(np.fmin(kink.left, kink.right), np.fmin(p.lsec, p.rsec))
        hi = np.fmax(np.fmax(kink.left, kink.right), np.fmax(p.lsec, p.rsec))
        up = kink.right >= kink.left
    rho = np.fmax(kink.rho, shown.rho)
    wide = Estimate(value=0.5 * (lo + hi), error=0.5 * (hi - lo) + rho,
                    left=np.where(up, lo, hi), right=np.where(up, hi, lo),
                    nondiff=kink.nondiff, rho=rho, steps=kink.steps)
    return kink.where(grow, wide)


def _contradicts(p: PassEstimate, seen, kink: Estimate):
    """Where pass ``p`` (a smaller step than the pair that showed ``kink``) found a
    value beyond the kink's secants by more than its own error bar: a stencil inside a
    kink's reach sees a slope between the two sides, so the pair saw something else --
    values saturating across steps far wider than the scale ``f`` varies on (logits
    offset by ``1e5`` in float32, ``h = 4096`` then ``512``)."""
    lo, hi = np.fmin(kink.left, kink.right), np.fmax(kink.left, kink.right)
    with np.errstate(invalid="ignore"):
        beyond = np.fmax(lo - p.value, p.value - hi)
        return kink.nondiff & ~p.bad & (beyond > _rounding(p, seen) + p.tau)


def _side_rounding(last: PassEstimate, prev: PassEstimate):
    """The rounding of the gap between two one-sided secants of pass ``last``, measured:
    the spread of one side's secants -- near and far at ``last``'s step, near at the
    larger step of ``prev`` (three estimates of one slope over different nodes) -- on
    the side where they agree best, times ``SIDE_SPREAD``. A side with no kink within
    reach holds one slope, and its secants differ by their rounding (and a smooth
    function's curvature, which the other side's secants share); a kink only adds to the
    spread of the side it is on. At least the prior's rounding over ``SIDE_FLOOR``:
    values on a coarse grid repeat exactly, and secants that agree to the last bit say
    nothing finer than one step of the grid."""
    spreads = []
    for near, far in (("lsec", "lfar"), ("rsec", "rfar")):
        e = np.stack([getattr(last, near), getattr(last, far), getattr(prev, near)])
        spreads.append(e.max(axis=0) - e.min(axis=0))
    floor = 2 * KAPPA_R * last.sunit * last.prior / SIDE_FLOOR
    return np.fmax(SIDE_SPREAD * np.fmin(*spreads), floor)


def _kinks(last: PassEstimate, prev: PassEstimate, seen, h0, eps, steady=False):
    """What the last two passes say about kinks (module docstring): the kinks they show
    as estimates, where the smaller step resolved a smooth piece that the larger one
    saw as a kink, and where the truncation failed to fall as a smooth function's
    would.

    ``steady`` (float16 and bfloat16): a gap between the one-sided secants that stayed
    within the square root of the step ratio (a smooth point's falls like the ratio) and
    exceeds ``FLAG_Z`` times its rounding -- the rounding the secants show
    (:func:`_side_rounding`), here and for the report -- shows a kink even where the
    truncation estimate fell: a kink within the type's resolution of the point, which no
    step of at least 16 ulps gets inside, is fitted by a smooth curve over the stencil (a
    float16 conv + ReLU input with its pre-activation 1e-4 above 0, a kink one ulp away:
    one-sided derivatives -0.386 and -0.614 at two steps, the truncation 0.02 against a
    rounding of 0.02, and the central value -0.519 +- 0.046 failed the right gradient
    -0.389)."""
    s = _noise(last, seen, excess=False)
    lrho, rrho = KAPPA_R * last.lunit * s, KAPPA_R * last.runit * s
    srho = KAPPA_R * last.sunit * s
    with np.errstate(invalid="ignore", divide="ignore"):
        r = last.h / prev.h
        gap = np.abs(last.right - last.left)
        stuck = last.tau / prev.tau > r**2.5
        unresolved = last.tau > TRUNCATION_DOMINATES * (KAPPA_R * last.unit * s + last.pos)
        prev_gap = np.abs(prev.right - prev.left)
        # (e) nor grew like 1/h: fixed differences of saturated values over a stencil
        # far wider than the scale f varies on (a kink's gap stays)
        grew = gap >= prev_gap / np.sqrt(r)
        kinked = (stuck & (gap > r * prev_gap) & ~grew & unresolved
                  & (gap > FLAG_Z * (lrho + rrho))
                  & (gap > KINK_RELATIVE * np.sqrt(eps)
                     * np.fmax(np.abs(last.left), np.abs(last.right))))
        # the rounding of the gap between the secants: the prior's, or in float16 and
        # bfloat16 the one measured by the side whose secants agree (_side_rounding)
        grho = np.fmin(2 * srho, _side_rounding(last, prev)) if steady else 2 * srho
        if steady:
            sgap, prev_sgap = np.abs(last.rsec - last.lsec), np.abs(prev.rsec - prev.lsec)
            kinked = kinked | ((sgap > np.sqrt(r) * prev_sgap) & (sgap < prev_sgap / np.sqrt(r))
                               & (sgap > FLAG_Z * grho)
                               & (sgap > KINK_RELATIVE * np.sqrt(eps)
                                  * np.fmax(np.abs(last.lsec), np.abs(last.rsec))))
        reported = np.abs(last.rsec - last.lsec) > FLAG_Z * grho
        moved = (np.abs(last.left - prev.left) + np.abs(last.right - prev.right)
                 > FLAG_Z * (lrho + rrho))
    flag = np.isfinite(prev.tau) & kinked & ~last.bad
    lo, hi = last.lsec, last.rsec
    found = Estimate(value=0.5 * (lo + hi), error=0.5 * np.abs(hi - lo) + 2 * srho,
                     left=lo, right=hi, nondiff=flag & reported, rho=2 * srho, steps=h0)
    # the pair shows the point inside a smooth piece at its smaller step: the one-sided
    # derivatives moved there and now agree, truncation resolved
    smooth = moved & ~unresolved & ~(gap > FLAG_Z * (lrho + rrho)) & ~flag
    # or the truncation fell as a smooth function's does and the one-sided derivatives'
    # gap at least in proportion to the step, as the truncation of the one-sided
    # stencils does at a smooth point (a kink's gap stays): after passes beyond the
    # scale f varies on (logits offset by 1e5, h = 128 then 0.5), whose truncation did
    # not fall and seemed to show a kink
    with np.errstate(invalid="ignore"):
        smooth = smooth | (~stuck & ~flag & np.isfinite(prev.tau)
                           & (gap <= r * np.abs(prev.right - prev.left)))
    return found, smooth, stuck & unresolved, grew
