"""One call of a public function: its validated inputs, the method it runs, its result.

The public functions of :mod:`._api` differ in what they differentiate (the *target* of
:mod:`._targets`); everything else -- validation, the precision ``f`` works in, the
choice between the complex step and real differences, the fallback where complex
arithmetic overflows, the result record -- is here, once.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._precision import LOW_PRECISION, is_real_float, machine_eps
from gradcheck._record import frozen
from gradcheck.numdiff._core import run_complex, run_fixed
from gradcheck.numdiff._evaluate import Evaluator
from gradcheck.numdiff._grain import _significant_bits
from gradcheck.numdiff._options import validate_common, validate_x
from gradcheck.numdiff._records import Estimate
from gradcheck.numdiff._result import NumericalDerivative
from gradcheck.numdiff._stencils import ALIASES, DEFAULT_REAL, stencil
from gradcheck.numdiff._steps import (base_steps, complex_steps, direction_floor,
                                      direction_steps, offset_spread, typical_size)
from gradcheck.numdiff._targets import _RealOutput

__all__ = ["Problem"]

#: Factor on the measured rounding of each row (:meth:`Problem._row_floor`): a value of
#: magnitude m rounds by at most half an ulp, ulp <= eps m, uniformly spread, so with a
#: standard deviation of at most eps m / sqrt(12); the magnitude whose rounding a
#: measured standard deviation s is, is then at least sqrt(12) s / eps.
ROW_NOISE = float(np.sqrt(12.0))
#: The probe of :meth:`Problem._row_floor` moves each element by this many units of
#: eps times its scale (by eps**-1/4 units where fewer, so that the second difference's
#: own curvature, eps**1.5 relative, stays far below eps: float32 takes 64): enough to
#: change the rounding of sums of a few hundred of them, little enough that a kink (other
#: than one at the point, which the probe cancels) is rarely within reach.
ROW_PROBE = 1024.0
#: In float64 the probe moves each element by about eps**ROW_PROBE_POWER times its scale
#: instead (2**-35 relative, where ROW_PROBE's is 2**-42): a row that ``f`` rounds at a
#: magnitude far above its own -- ``log(1 + exp(x))`` at ``x = -15``, rounded at 1's
#: ulp, 1e7 times its value; ``(sin(x) + 1e6) - 1e6``, at 1e6's -- changes by less than
#: one step of that grid over 1024 ulps of ``x``, and the probe read no rounding at all.
#: Curvature, eps**(4/3) relative, stays 1e5 times below eps; a kink within reach but
#: not at the point shows as samples a small share of their second differences and is
#: not read as rounding (two ReLU kinks 1e-12 either side of the point,
#: tests/test_checker.py). Measured on benchmarks/bench_numdiff.py (real differences,
#: float64), problem seeds 0 / 1 / 2: held-out coverage 98.4 / 98.7 / 98.7% -> 99.2 /
#: 98.9 / 98.9%, evaluations per element 6.87 / 6.67 / 6.69 -> 6.68 / 6.51 / 6.59 (the
#: naive softplus's noise, unseen, had been read as truncation and retried), median
#: overestimate 9.1 / 8.5 / 9.0 -> 9.2 / 7.7 / 9.6; the tuning set 12.87 digits at 99.8%,
#: median overestimate 8.8 -> 9.4. A larger probe, 0.6, covered more (99.5 / 99.2 /
#: 98.7%) at a median overestimate up to 10.3. ``(sin(x) + 1e6) - 1e6 + 1e-8 x**3`` over
#: 40 random draws of 12 elements: 40 elements beyond their bar before, 30 after (14 at
#: 0.6): the grid of 1e6's ulp is 5e5 ulps of f, and a probe that moves f across it at
#: every element would reach kinks and curvature far more often.
ROW_PROBE_POWER = 2.0 / 3.0
#: Significand bits of each probe's random magnitude (float64): a power-of-two probe
#: moves only bits far above the low bits of ``x``, which every probed point then shares,
#: and the rounding of the products ``f`` forms from them repeats along the probe instead
#: of scattering (held-out float64 coverage, probes of eps**(2/3): 98.1% with powers of
#: two, 99.2% with 3 random bits below the leading one). The magnitudes are multiples of
#: 2**-4 of a power of two at least 16 ulps of ``x``, so every probed point is exact in
#: x's dtype.
ROW_PROBE_BITS = 3
#: A row's measured magnitude counts only where it exceeds this many times the row's
#: value: below that the row is formed as its value says (measured on the tuning set of
#: benchmarks/bench_numdiff.py: median overestimate 10.3 at 16, 9.3 at 32; the float64
#: conv then batch norm of offset outputs keeps every bar covering at 32, not at 64).
ROW_ORDINARY = 32.0
#: Independent random probes of :meth:`Problem._row_floor` (four evaluations each).
ROW_PROBES = 3
#: The first probe's second difference at ``delta`` alone (two evaluations) decides where
#: no row can take a floor: every row's, read as the rounding of three values (weights 1,
#: 1, -2) and were the other two probes zero, would give a magnitude at least this many
#: times below ``ROW_ORDINARY`` times the row's value. The floor those rows would take
#: from all three probes is then zero but where the first difference happened to fall
#: below a ``ROW_SCREEN``-th of the rounding's spread and the row's spread lies near or
#: above the threshold (a row at the threshold: about 9% of draws, at four times it 2%);
#: where it goes on, its floor is the three probes' as before. Saves ten of the twelve
#: evaluations on calls whose rows round as their values say.
#: benchmarks/bench_numdiff.py (real differences), problem seeds 0 / 1 / 2: float64
#: evaluations per element tuning 5.65 / 5.71 / 5.75 -> 5.50 / 5.61 / 5.63, held-out
#: 6.35 / 6.25 / 6.28 -> 6.27 / 6.19 / 6.15, float32 tuning 5.95 / 6.01 / 6.03 -> 5.83 /
#: 5.88 / 5.89, held-out 8.11 / 7.84 / 8.21 -> 8.03 / 7.78 / 8.13; digits, coverage,
#: median overestimate and elements beyond ten bars unchanged in every row.
ROW_SCREEN = 16.0
#: A row whose first second difference is exactly 0 is screened only where its three
#: values each keep their significand to within this many bits of its end.
ROW_SCREEN_BITS = 8
#: A row's probes show ``f`` varying on the probe's own scale, not rounding, where in
#: every probe the second differences at ``2 delta`` and ``delta`` keep one ratio within
#: this share (above 1; 4 for curvature, random for rounding) and the kink-cancelling
#: sample is this share of them: a softmax of float32 logits offset by 1e4 read
#: curvature as rounding 1e4 times its own (the probe, ``64 eps |x|``, is 0.06 there
#: and the function varies on a scale of 1).
SYSTEMATIC = 0.25


def _eval_eps(x, f0) -> float:
    """Relative rounding of one evaluation of ``f``: the coarser of x's and f's precision.

    A float64 result can still have been computed in float32 (a layer that casts its
    input, a float32 kernel behind a float64 interface). Its values then all sit on the
    float32 grid, which a float64 computation hits by chance with odds about 2**-29 per
    value; in that case float32's rounding is what the differences must beat.
    """
    eps = [machine_eps(d) for d in (x.dtype, f0.dtype) if d.kind in "fc" or is_real_float(d)]
    eps = max(eps) if eps else machine_eps(np.float64)
    single = float(np.finfo(np.float32).eps)
    if eps < single and _on_float32_grid(f0):
        eps = single
    return eps


def _on_float32_grid(values) -> bool:
    """Whether every finite value is a float32 number and some are telling evidence.

    Evidence is a value that is not an integer and not a float16 number: "round" values
    such as 0.5, 3 or 0.375 lie on every grid and say nothing about the precision used.
    """
    v = np.asarray(values)
    v = np.concatenate([v.real.ravel(), v.imag.ravel()]) if v.dtype.kind == "c" else v.ravel()
    v = v[np.isfinite(v)].astype(np.float64, copy=False)
    if v.size == 0:
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        if np.any(v.astype(np.float32).astype(np.float64) != v):
            return False
        telling = (v != np.round(v)) & (v.astype(np.float16).astype(np.float64) != v)
    return int(telling.sum()) >= min(4, v.size)


@frozen
class Problem:
    """A validated call: the point ``x``, ``f`` behind an :class:`Evaluator`, the options."""

    x: np.ndarray
    ev: Evaluator
    scale: np.ndarray
    step: np.ndarray | None
    method: str
    max_retries: int
    seed: int | None
    typical: float | None = None

    @classmethod
    def prepare(cls, f, x, scalar, method, scale, step, vectorized, memory, max_retries,
                seed) -> "Problem":
        x = validate_x(x)
        typical = typical_size(x) if scale is None else None   # the default: see _steps
        scale, step = validate_common(f, x, method=method,
                                      scale=1.0 if scale is None else scale, step=step,
                                      vectorized=vectorized, memory=memory,
                                      max_retries=max_retries, seed=seed)
        ev = Evaluator(f, x, vectorized=bool(vectorized), memory=memory, scalar=scalar)
        return cls(x, ev, scale, step, ALIASES.get(method, method), max_retries, seed,
                   typical)

    @property
    def eps(self) -> float:
        return _eval_eps(self.x, self.ev.f0)

    def run(self, target, *, V=None, smooth=False):
        """Pick and run the method; returns ``(estimate, method used, complex_check)``.

        ``V`` holds the directions of a directional target (None: coordinates).
        """
        method, eps, check = self.method, self.eps, "not tried"
        if target.n_src == 0 or target.n_q == 0:      # nothing to perturb
            return Estimate.blank(target.n_q, np.zeros(target.n_src)), method, check
        use_complex = method == "complex"
        low = self.x.dtype.name in LOW_PRECISION
        if use_complex and low:
            raise ConfigurationError(
                f"method='complex' needs a complex type of x's precision; NumPy has none for "
                f"{self.x.dtype.name} (use method='auto' or 'adaptive')")
        if method == "auto" and low:
            check = f"not tried: no complex type of {self.x.dtype.name}"
        elif method == "auto" and self._subnormal_imag(eps):
            check = ("not tried: f's values times the complex step (about eps) would be "
                     "subnormal and keep only part of their digits")
        elif method == "auto":
            from gradcheck.numdiff._acceptance import complex_ok   # not for colored checks

            use_complex, check = complex_ok(self.ev, self.x, target.contraction, self.scale,
                                            eps, self.seed, self.typical)
            check = "accepted" if use_complex else "rejected: " + check
        if not use_complex:
            name = DEFAULT_REAL if method == "auto" else method
            return self._real(target, stencil(name), eps, V), name, check
        if V is None:
            hc = (complex_steps(self.x, self.scale, eps) if self.step is None
                  else self.step.reshape(-1).copy())
        else:
            hc = direction_steps(self.x, V, self.scale, eps, 0, imag=True)
        shift = None
        if V is None:       # elements exactly at zero: seen from both sides of it
            at_zero = self.x.reshape(-1) == 0
            if at_zero.any():
                shift = np.where(at_zero, complex_steps(self.x, self.scale, eps), 0.0)
        try:
            out = run_complex(target, hc, eps, ties=not smooth, shift=shift,
                              spread=offset_spread(self.x) if V is None else None)
        except _RealOutput as exc:
            raise ConfigurationError(
                f"method='complex' needs f to return complex values for complex input; {exc}"
            ) from None
        check = check if method == "auto" else "forced"
        bad = ~np.isfinite(out.value)
        if bad.any():    # complex arithmetic overflowed where real did not: difference those
            srcs = np.unique(target.q_src[bad])
            real = self._real(target, stencil(DEFAULT_REAL), eps, V, sources=srcs)
            steps = out.steps.copy()
            steps[srcs] = real.steps[srcs]
            out = replace(out.where(bad, real), steps=steps)
            check += (f"; {int(bad.sum())} entries by {DEFAULT_REAL} differences (complex "
                      f"step not finite)")
        return out, "complex", check

    def _subnormal_imag(self, eps) -> bool:
        """Whether the complex step's imaginary parts, about ``eps |f|`` at most, would lie
        below the normal range, where they keep only part of their digits (f's values
        below about 1e-277 in float64)."""
        top = float(np.max(np.abs(self.ev.f0.astype(np.float64)), initial=0.0)) * self.ev.unit
        tiny = float(np.finfo(np.result_type(self.ev.f0.dtype, np.float32)).tiny)
        return 0.0 < top * eps < tiny / eps

    def _real(self, target, st, eps, V, sources=None) -> Estimate:
        """Real differences with stencil ``st``, steps by the rule of :mod:`._steps`."""
        x = self.x
        if V is None:
            h0 = base_steps(x, self.scale, eps, st.order, self.step, self.typical)
        else:
            h0 = direction_steps(x, V, self.scale, eps, st.order, typical=self.typical)
            if self.step is not None:
                h0 = np.full(V.shape[0], float(np.min(self.step)))
        columns = V is None or bool(np.all(np.count_nonzero(V.reshape(V.shape[0], -1), axis=1)
                                           <= 1))
        low = x.dtype.name in LOW_PRECISION
        if sources is None and columns and not (low and V is None):
            # coordinates, or directions that are columns (forward mode's): fast mode's
            # random directions keep their few evaluations. In float16 and bfloat16 the
            # columns only: their outputs are the rows of a map such as a backward, formed
            # from terms that cancel (a float16 weight gradient of 1.3e-3 moved in steps of
            # 2.7e-3 and a pass below that step read an exact 0 for 0.12), while a probe of
            # a few of their coarse ulps reads the kinks of a ReLU layer near the point as
            # rounding (conv + ReLU elements took a prior 1.7 times main's, and a
            # disagreement of two passes no longer widened their bars)
            target.set_row_floor(self._row_floor(eps))
        if not st.adaptive:
            return run_fixed(target, h0, st, eps)
        xs = x.reshape(-1) if V is None else None
        a = None if V is not None else np.abs(xs).astype(np.float64)
        floor = None if V is None else direction_floor(x, V)
        from gradcheck.numdiff._adaptive import run_adaptive   # not for complex-step checks

        return run_adaptive(target, h0, st, eps, max_retries=self.max_retries, x_src=xs,
                            sources=sources, arg_scale=a, step_floor=floor,
                            confirm=x.dtype.name in LOW_PRECISION)

    def _row_floor(self, eps):
        r"""Each output row's rounding, measured: the second difference
        :math:`f(x + \delta) + f(x - \delta) - 2 f(x)` less half the one at
        :math:`2\delta` (which cancels a kink at the point: ReLU at 0, a max-pool tie),
        along a random :math:`\delta`
        (:math:`\pm 2^{\lfloor\log_2 c\, \varepsilon s_j\rceil}`,
        :math:`c = \min(1024, \varepsilon^{-1/4})`, per element; in float64
        :math:`\pm u\, 2^{\lfloor\log_2 \varepsilon^{2/3} s_j\rceil}` with a random
        :math:`u \in \{8/16, \dots, 15/16\}`, ``ROW_PROBE_POWER``; far
        below any step, far above the ulps of the sums ``f`` forms from ``x``) holds no
        derivative to second order, only the rounding of ``f`` at three points -- of the
        terms each row is formed from, not of its value: a convolution's outputs sharing
        a large common part before a batch norm subtracts it. Returned as the magnitude
        whose rounding that is (``ROW_NOISE / eps`` times the deviation that two
        samples per probe give: that even one, of spread :math:`\sqrt{3.5}\, s`, and
        the odd one of the same points, :math:`f(x + \delta) - f(x - \delta)` less half
        the one at :math:`2\delta`, of spread :math:`\sqrt{2.5}\, s`, which cancels
        the slope and a kink at the point alike), where it exceeds ``ROW_ORDINARY``
        times the row's value; the rows' error bars take at least it (:mod:`._targets`,
        :mod:`._model`), along directions too (forward mode's columns: float32
        ``standardize(x).sum()``, zero by cancellation, had one column read as a kink
        from rounding its bar put at the value's size, about 0). Not where the probes show ``f`` itself varying at their scale
        (``SYSTEMATIC``: an input far from the scale ``f`` varies on, such as logits
        offset by 1e4 in float32, where :math:`\delta` is 0.06). The first probe alone
        stops the rest where no row's second difference could reach a floor (``ROW_SCREEN``).
        """
        x = self.x
        xf = x.reshape(-1)
        s = np.maximum(np.abs(xf).astype(np.float64), self.scale)
        wide = eps < float(np.finfo(np.float32).eps) / 2     # float64 evaluations
        c = eps ** ROW_PROBE_POWER if wide else min(ROW_PROBE, eps ** -0.25) * eps
        d0 = 2.0 ** np.round(np.log2(c * s))
        rng = np.random.default_rng(None if self.seed is None else [self.seed, 0x5EC0])
        signs = rng.choice(np.array([-1.0, 1.0]), (ROW_PROBES, xf.size))
        if wide:        # a random significand: multiples of d0 / 16 in [d0 / 2, d0)
            top = 2 ** ROW_PROBE_BITS
            signs = signs * (top + rng.integers(0, top, signs.shape)) / (2 * top)
        X = np.stack([(xf + k * d0 * sg).astype(x.dtype) for sg in signs
                      for k in (1, -1, 2, -2)]).reshape((4 * ROW_PROBES,) + x.shape)
        f0 = self.ev.f0.reshape(-1).astype(np.float64)
        per = self.ev.batch_size(x.dtype.itemsize)     # the memory budget's chunks

        def run(P):
            with np.errstate(all="ignore"):
                return np.concatenate([self.ev(P[i:i + per]) for i in range(0, P.shape[0], per)])

        # the first probe screens (ROW_SCREEN): where every row's sample lies far below
        # what would count, the other probes are not evaluated and no row has a floor
        # -- its second difference at delta alone, two evaluations (three roundings,
        # weights 1, 1, -2: 6 s**2; a kink at the point makes it large and goes on)
        Y = run(X[:2])
        with np.errstate(all="ignore"):
            y = Y.reshape(2, -1).astype(np.float64)
            # (float16 and bfloat16 columns: every probe, as measured there)
            screen = ROW_SCREEN if x.dtype.name not in LOW_PRECISION else np.inf
            first = y[0] + y[1] - 2 * f0
            reach = ROW_NOISE * np.abs(first) / np.sqrt(6.0 * ROW_PROBES) / eps
            # a difference of exactly 0 tells only where the three values use their
            # full significand (ROW_SCREEN_BITS): values on a grid coarser than their
            # own ulp -- a row that is 0 by cancellation, the sum of a batch norm --
            # show their rounding at some probes only
            digits = 1.0 - np.log2(eps)
            full = np.min([_significant_bits(v) for v in (f0, y[0], y[1])], axis=0)
            told = (first != 0) | (full >= digits - ROW_SCREEN_BITS)
            if np.all(np.isfinite(first) & told
                      & (screen * reach <= ROW_ORDINARY * np.abs(f0))):
                return np.zeros(f0.size)
        Y = np.concatenate([Y, run(X[2:])])
        with np.errstate(all="ignore"):
            Y = Y.reshape(ROW_PROBES, 4, -1).astype(np.float64)
            # second differences at delta and 2 delta: a kink at the point adds |jump| k
            # delta to the one at k delta, which d1 - d2 / 2 cancels; rounding does not.
            # Five roundings enter each sample, f(x)'s with weight -1 and so shared by
            # the probes: their mean square over 3.5 s**2 (+ 1 s**2 for the shared one)
            # is each row's s**2, far steadier than one sample
            d1, d2 = Y[:, 0] + Y[:, 1] - 2 * f0, Y[:, 2] + Y[:, 3] - 2 * f0
            sample = d1 - d2 / 2
            # the odd parts of the same points hold a second sample per probe: the
            # first differences at delta and 2 delta less half the second cancel the
            # slope (and a kink at the point: |k| is even), leave f'''s delta**3 (eps**2
            # relative) and the rounding of four values (weights 1, -1, -1/2, 1/2: 2.5
            # s**2, independent of the even sample's and free of f(x)'s). Twice the
            # samples from the same evaluations: the float64 conv then batch norm of
            # offset outputs (properties/test_known_issues.py) read 0.6 to 0.66 of its
            # rows' rounding (against a long-double f) from the even samples alone, its
            # center rounding by less than its neighbours, and some element's error
            # was 1.2 to 2.1 times its bar on 6 of probe seeds 6-15 (1.03 to 1.4 on 4
            # after; float32 held-out coverage 98.3 / 98.9 / 98.6% -> 98.6 / 98.9 /
            # 98.6%, evaluations within 0.02);
            # benchmarks/bench_numdiff.py, real differences, problem seeds 0 / 1 / 2:
            # float64 held-out coverage 99.5 / 98.9 / 98.9% -> 99.5 / 99.5 / 99.2%,
            # evaluations per element 5.99 / 5.99 / 5.95 -> 5.99 / 5.98 / 5.95, median
            # overestimate 8.25 / 6.87 / 9.11 -> 8.91 / 7.13 / 9.09, digits unchanged
            odd = (Y[:, 0] - Y[:, 1]) - (Y[:, 2] - Y[:, 3]) / 2
            second = np.sqrt((np.sum(sample ** 2, axis=0) + np.sum(odd ** 2, axis=0))
                             / (6.0 * Y.shape[0]))
            # f's own variation at the probe's scale, not rounding: every probe's
            # second differences in the same proportion (4 for curvature; rounding's
            # are independent), the sample a share of them
            ratio = d2 / d1
            varies = (np.all((ratio > 1.0) & (np.abs(sample) > SYSTEMATIC * np.abs(d1)), axis=0)
                      & (ratio.max(axis=0) < (1 + SYSTEMATIC) * ratio.min(axis=0)))
            # or a kink within the probe's reach but not at the point: every probe's
            # sample is then |jump| times the kink's distance, a small share of its second
            # differences (rounding's are of one size)
            varies = varies | np.all(np.abs(sample) < SYSTEMATIC * np.abs(d1), axis=0)
        floor = np.where(np.isfinite(second) & ~varies, ROW_NOISE * second / eps, 0.0)
        # a sample within ROW_ORDINARY of the value's own magnitude is its own rounding
        return np.where(floor > ROW_ORDINARY * np.abs(f0), floor, 0.0)

    def result(self, out, used, check, *, shape, ncolors, step_shape) -> NumericalDerivative:
        """The public record, values in the real dtype of ``x`` and ``f(x)`` (float32 for
        float16 and bfloat16, whose grid is coarser than the estimates' accuracy)."""
        sizes = [d.itemsize for d in (self.x.dtype, self.ev.f0.dtype) if is_real_float(d)]
        dt = np.dtype(np.float64 if not sizes or max(sizes) >= 8 else np.float32)

        unit = self.ev.unit      # f's values were divided by it (a power of two)

        def arr(a):
            return (a.reshape(shape) * unit).astype(dt)

        return NumericalDerivative(
            grad=arr(out.value), error=arr(out.error), nfev=int(self.ev.nfev),
            step=out.steps.reshape(step_shape), nondifferentiable=out.nondiff.reshape(shape),
            left=arr(out.left), right=arr(out.right), method=used, complex_check=check,
            ncolors=int(ncolors))
