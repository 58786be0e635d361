"""Evaluations the adaptive passes share rather than repeat (float64 coordinates).

* A retry at exactly half the step takes its nodes ``-2, 2`` from the last pass's
  ``-1, 1`` (``REUSE``, :class:`_Nodes`).
* A first pass whose truncation dominates by little is fitted again with one more node,
  ``EXTRA_NODE`` (:func:`_extra_node`).
* A first pass whose stencil straddles a jump of ``f'`` or ``f''`` is completed into a
  one-sided stencil on the side that is smooth, from its own nodes there and two or
  three new ones, not retried with five (:func:`_side_extension`).

Measured on ``benchmarks/bench_numdiff.py`` (real differences, float64), problem seeds
0 / 1 / 2, before -> after the one-sided completion and ``FINE`` (with the quadratic
rule of :func:`._model.truncation` and the exact weights of :func:`._stencils.fit_matrix`):
held-out evaluations per element 6.27 / 6.19 / 6.15 -> 5.99 / 5.99 / 5.95, median digits
12.88 / 12.79 / 12.92 -> 12.91 / 12.80 / 12.92, coverage unchanged (99.5 / 98.9 /
98.9%), median overestimate 9.87 / 7.78 / 10.58 -> 8.25 / 6.87 / 9.11 (the softsign,
ELU and Huber elements beside their jumps had bars up to 1e8 times their errors from
retries held to a straddling predecessor, and now carry the one-sided fit's own); tuning
5.50 / 5.62 / 5.63 -> 5.50 / 5.60 / 5.59 at the same digits and coverage. Seeds 3-8
(not tuned on): held-out 6.20 / 5.95 / 5.99 / 5.81 / 6.11 / 6.09; on seeds 3-6 main
took 6.52 / 6.13 / 6.15 / 6.13 and had as many elements beyond ten bars (0 / 1 / 1 / 0).
What stays: a ReLU layer's element with kinks on both sides of the point (retried, as
before), truncation of smooth functions varying faster than the step (retried), and
noise a first pass reads as a trend (retried: a retry is what shows it).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradcheck.numdiff._model import estimate_pass
from gradcheck.numdiff._passes import (TRUNCATION_DOMINATES, _no_digit, _noise, _pass,
                                       _rounding, _suspect_noise)
from gradcheck.numdiff._stencils import fit_matrix
from gradcheck.numdiff._steps import KINK_SHRINK, SHRINK_MAX, SHRINK_MIN
from gradcheck.numdiff._targets import Values

__all__: list[str] = []

#: A retry at exactly half the step of the pass before takes its nodes -2 and 2 from that
#: pass's -1 and 1 (the same points) and evaluates three new points, not five (elements,
#: one quantity per source: :class:`_Nodes`). The values are those of five new
#: evaluations, the bars too but for the values' magnitude, the larger of the two passes'
#: (a hair wider); benchmarks/bench_numdiff.py (real differences, float64), every other
#: figure unchanged: tuning set 5.84 -> 5.78 evaluations per element, held-out 6.68 ->
#: 6.59.
REUSE = True
#: A first pass whose truncation dominates its rounding, by at most ``EXTRA_TRUNCATION``
#: times, is fitted again with one more node, ``EXTRA_NODE`` times the step (the nodes
#: ``-3 .. 3``, an order-6 fit whose truncation term is the next Taylor term's, measured
#: where the six-node fit extrapolated it), and kept where that resolves it: one new
#: evaluation where a retry takes three or five (where it does not, the element is
#: retried from the six-node pass, as before). Truncation far above the rounding is a
#: kink or a jump of ``f''`` within the stencil, which no extra node resolves.
#: The order-6 fit's rounding term is kept at least the six-node fit's (the extra node
#: measures the truncation; it is not taken to narrow the rounding).
#: benchmarks/bench_numdiff.py (real differences, float64), problem seeds 0 / 1 / 2, with
#: ``HALF_STEP``: evaluations per element held-out 6.61 / 6.45 / 6.50 -> 6.35 / 6.25 /
#: 6.28, tuning 5.75 / 5.84 / 5.86 -> 5.65 / 5.71 / 5.75; median digits held-out 12.81 /
#: 12.76 / 12.90 -> 12.87 / 12.78 / 12.92, tuning 12.87 / 12.86 / 12.81 -> 12.89 / 12.89 /
#: 12.82; coverage the same but tuning 99.8 -> 99.5% (seed 0) and 100 -> 99.9% (seed 2);
#: median overestimate held-out 9.2 / 8.4 / 9.8 -> 9.4 / 7.6 / 9.8, tuning 9.5 / 8.6 /
#: 8.7 -> 9.6 / 8.4 / 8.7. In float32 it cost more evaluations than it saved (held-out
#: 8.11 -> 8.14, seed 0).
EXTRA_NODE = -3
EXTRA_TRUNCATION = 256.0


def _extra_node(target, first, now, ks, nodes, steps, eps, arg_scale):
    """Pass ``now`` (the first; coordinates, one quantity per source), with the quantities
    whose truncation dominates within ``EXTRA_TRUNCATION`` roundings fitted again over
    the nodes and ``EXTRA_NODE`` (one new evaluation each) where that resolves them;
    also returns where the fit was kept with its truncation still dominating, its bar
    within ``FINE`` (those are not retried)."""
    seen = np.zeros(now.value.size)
    with np.errstate(invalid="ignore"):
        rho = _rounding(now, seen)
        cand = (~now.bad & (now.tau > TRUNCATION_DOMINATES * rho)
                & (now.tau <= EXTRA_TRUNCATION * rho) & ~_no_digit(now)
                & ~_suspect_noise(now, seen, eps))
    none = np.zeros(now.value.size, bool)
    if not cand.any():
        return now, none
    n = now.value.size
    got = _first_values(target, first, n)
    if got is None:
        return now, none        # quantities that are not their sources
    vals, sigma, spread, grain = got
    sub = np.flatnonzero(cand)
    new = target.values(sub, steps[sub], (EXTRA_NODE,), imag=False)
    if not np.array_equal(new.q, sub):
        return now, none
    ks7 = tuple(ks) + (EXTRA_NODE,)
    nodes7 = tuple(sorted(tuple(nodes) + (EXTRA_NODE,)))
    g = None if grain is None or new.grain is None else np.fmin(grain[sub], new.grain)
    merged = Values(np.vstack([vals[:, sub], new.vals]), sub, np.fmax(sigma[sub], new.sigma),
                    target.offsets(sub, steps[sub], ks7), np.arange(sub.size),
                    position=new.position,
                    spread=None if np.isnan(spread[sub]).any() else spread[sub], grain=g)
    a_q = None if arg_scale is None else arg_scale[sub]
    wide = _pass(merged, ks7, nodes7, steps[sub], eps, n, a_q)
    # the node measures the truncation; the rounding term stays the six-node fit's (the
    # order-6 fit's derivative row is a tenth shorter: a float64 batch norm of offset conv
    # outputs had one element of 54 1.5% beyond that shorter bar, none beyond this one)
    wide = replace(wide, unit=np.fmax(wide.unit, now.unit))
    with np.errstate(invalid="ignore"):
        rw = _rounding(wide, seen)
        fine = _fine(wide, rw, eps)
        ok = (cand & ~wide.bad & (~(wide.tau > TRUNCATION_DOMINATES * rw) | fine)
              & ~_no_digit(wide) & ~_suspect_noise(wide, seen, eps))
    return now.where(ok, wide), ok & fine


#: A fit whose truncation still dominates is kept, and not retried, where its whole bar
#: (truncation and rounding) is at most this share of ``sqrt(eps)`` of its value (1e-9
#: relative in float64): the trend's extrapolation, which the bar then mostly is, is an
#: upper bound within the error model's factor, and a retry would buy digits beyond the
#: ones the bar already vouches for at the cost of five evaluations. Not for the first
#: pass itself, whose unseen noise only a retry shows (a naive softplus at -16.6, the
#: values on the grid of 1's ulp: a first pass kept so was 137 bars off, and problem
#: seeds 3-6 of benchmarks/bench_numdiff.py had 2 more elements beyond ten bars); the
#: extra node and the one-sided fit each add nodes whose top coefficients show noise.
FINE = 1.0 / 16
#: New nodes of the one-sided completion of a first pass (:func:`_side_extension`):
#: right of the point ``(0, 1, 2, 3)`` evaluated, ``4, 5`` new; left ``(-2, -1, 0)``
#: evaluated, ``-3, -4, -5`` new. Six nodes, a degree-5 fit as the central one.
SIDE_NEW = {1: (4, 5), -1: (-3, -4, -5)}
#: A jump is local where the fourth or fifth differences of the six values are at least
#: this share of the largest third difference (a smooth function's fall by the step over
#: its scale) ...
SIDE_LOCAL = 0.5
#: ... and the largest third difference is this many times the values' noise (the prior's).
SIDE_SIGNAL = 1024.0
#: A kink's second differences are a hat over two neighbouring windows; the other two,
#: and for a pass with no digit the smooth side's own third difference, stay within this
#: share of the largest (several kinks do not: a ReLU layer's element with kinks on both
#: sides had its one-sided fit tried in vain).
SIDE_CLEAN = 1.0 / 256
#: A kink (a jump of f') is completed around only where it lies at least this share of
#: the step from the point: a max-pool window whose values differ by 1e-9 has its kink
#: that close, whose side the second differences do not tell (a one-sided fit on the
#: wrong side read the other window's slope with a tight bar: tests/test_checker.py,
#: windows differing by 1e-9), and a kink at the point is the retries' to report.
SIDE_AWAY = 0.25
#: The first pass's value must lie within its rounding, this many times its truncation
#: term, and the one-sided fit's bar of the one-sided value (two honest bars overlap; the
#: trend's truncation of a pass straddling a jump is within a factor 3 of its error):
#: a float64 softsign convolution's weight whose one-sided fit had straddled a second
#: jump read 5.5e-4 off with a bar of 4.2e-4 (problem seed 3) and is retried instead.
SIDE_OVERLAP = 4.0


def _fine(p, rounding, eps):
    """Where pass ``p``'s whole bar is within ``FINE`` of ``sqrt(eps)`` of its value."""
    with np.errstate(invalid="ignore"):
        return p.tau + rounding <= FINE * np.sqrt(eps) * np.abs(p.value)


def _first_values(target, first, n):
    """The first pass's records (``first``) as arrays over all ``n`` quantities: node
    values (rows in the order of the pass's nodes), magnitudes, spreads and grains;
    None where the quantities are not their sources."""
    vals = np.full((len(first[0].vals), n), np.nan)
    sigma, spread = np.zeros(n), np.full(n, np.nan)
    grain = None
    for v in first:
        if not np.array_equal(target.q_src[v.q], v.q):
            return None
        vals[:, v.q] = v.vals
        sigma[v.q] = v.sigma
        if v.spread is not None:
            spread[v.q] = v.spread
        if v.grain is not None:
            grain = np.zeros(n) if grain is None else grain
            grain[v.q] = v.grain
    return vals, sigma, spread, grain


def _jump_side(F, noise):
    r"""Where the first pass's values ``F`` (rows: nodes ``-2 .. 3``, relative to
    :math:`f(x)`) show one jump of :math:`f'` or :math:`f''` within the stencil: +1 where
    it lies left of the point (the right side is smooth), -1 where right, 0 where no
    single local jump shows. Also returns where the smooth side's own third difference
    is clean (``SIDE_CLEAN``).

    A jump :math:`J` of :math:`f''` at :math:`d` adds :math:`J (t - d)_+^2 / 2` to a
    smooth function: the third differences over the windows ``-2..1, -1..2, 0..3`` are
    :math:`J h^2` times a quadratic B-spline sampled at the windows -- one sign, summing
    to :math:`J h^2`, their mean over the windows' centres :math:`d/h` where all three
    reach it. A jump :math:`K` of :math:`f'` adds :math:`K (t - d)_+`: the second
    differences are :math:`K h` times a hat over two neighbouring windows, whose mean is
    :math:`d/h`. A smooth function's third differences are nearly equal (they change by
    :math:`f^{(4)} h^4`).
    """
    D2 = F[:-2] - 2 * F[1:-1] + F[2:]          # centred at -1, 0, 1, 2
    D3 = np.diff(D2, axis=0)                    # windows -2..1, -1..2, 0..3 (centres -.5, .5, 1.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        same = np.abs(D3.sum(axis=0)) >= 0.5 * np.abs(D3).sum(axis=0)
        # a jump of f'': third differences sample a quadratic B-spline (one sign),
        # whose mean is the jump's place
        d3 = (-0.5 * D3[0] + 0.5 * D3[1] + 1.5 * D3[2]) / D3.sum(axis=0)
        # a jump of f': second differences sample a hat (one sign)
        d2 = (-1.0 * D2[0] + 0.0 * D2[1] + 1.0 * D2[2] + 2.0 * D2[3]) / D2.sum(axis=0)
    # ... and the shape must be one of the two: a hat spans two neighbouring second
    # differences, the others stay at the background (several kinks do not)
    a2 = np.abs(D2)
    m = np.argmax(a2, axis=0)
    cols = np.arange(D2.shape[1])
    lo, hi = a2[np.maximum(m - 1, 0), cols], a2[np.minimum(m + 1, 3), cols]
    nb = np.where((m == 0) | ((m < 3) & (hi >= lo)), m + 1, m - 1)
    rest = a2.copy()
    rest[m, cols] = 0.0
    rest[nb, cols] = 0.0
    with np.errstate(invalid="ignore"):
        hat = ((rest.max(axis=0) <= SIDE_CLEAN * a2[m, cols])
               & (D2[m, cols] * D2[nb, cols] >= 0))
        # a kink within a share of the step of the point is the retries' to judge (its
        # side is not told apart from the background, and it may be at the point)
        hat &= np.abs(d2) >= SIDE_AWAY
    d = np.where(same, d3, np.where(hat, d2, np.nan))
    # localized: the fourth and fifth differences as large as the third (a smooth
    # function's fall like h), and far above the values' noise
    top = np.abs(D3).max(axis=0)
    high = np.fmax(np.abs(np.diff(D3, axis=0)).max(axis=0), np.abs(D3[0] - 2 * D3[1] + D3[2]))
    with np.errstate(invalid="ignore"):
        local = (high >= SIDE_LOCAL * top) & (top > SIDE_SIGNAL * noise)
    side = np.where(local & (d < 0), 1, np.where(local & (d >= 0), -1, 0))
    # the smooth side's own third difference (nodes 0..3 on the right, -2..1 on the left)
    # far below the others: a jump clear of it
    with np.errstate(invalid="ignore"):
        clean = np.where(side > 0, np.abs(D3[2]), np.abs(D3[0])) <= SIDE_CLEAN * top
    return side, clean


def _side_extension(target, first, now, ks, steps, eps, arg_scale):
    r"""Pass ``now`` (the first; float64 coordinates, one quantity per source) with the
    quantities retried for a jump of :math:`f'` or :math:`f''` within the stencil --
    truncation dominating, or noise read off a kink (suspect) -- completed on the side
    the jump leaves smooth (:func:`_jump_side`) into the one-sided six-node stencil at
    the same step (``SIDE_NEW``: two or three new evaluations where a retry takes five),
    kept where its own error model resolves it (truncation within the rounding a retry
    would have, or within ``FINE``) and the first pass's bar reaches it
    (``SIDE_OVERLAP``). Returns the pass and where it was kept (those are not retried).

    The one-sided fit takes the actual offsets of its nodes (``x + k h`` rounds beyond
    the central nodes' reach, and its weights, up to 137/60 and 5, magnify that), and
    keeps the central fit's one-sided fields (left, right, secants) for the kink logic.
    """
    seen = np.zeros(now.value.size)
    with np.errstate(invalid="ignore"):
        rho = _rounding(now, seen)
        truncated = now.tau > TRUNCATION_DOMINATES * rho
        suspect = _suspect_noise(now, seen, eps) & ~truncated
        cand = ~now.bad & ((truncated & ~_suspect_noise(now, seen, eps)) | suspect)
    n = now.value.size
    none = np.zeros(n, bool)
    if not cand.any():
        return now, none
    got = _first_values(target, first, n)
    if got is None:
        return now, none
    vals, sigma, spread, grain = got
    order = (-2, -1, 0, 1, 2, 3)
    F = np.stack([np.zeros(n) if k == 0 else vals[tuple(ks).index(k)] for k in order])
    side, clean = _jump_side(F, _noise(now, seen, excess=False))
    # a pass with no digit: only where its smooth side shows clean
    side = np.where(_no_digit(now) & ~clean, 0, side)
    out, done = now, none.copy()
    for sg, new_ks in SIDE_NEW.items():
        sub = np.flatnonzero(cand & (side == sg))
        if sub.size == 0:
            continue
        new = target.values(sub, steps[sub], new_ks, imag=False)
        if not np.array_equal(new.q, sub):
            continue
        ks_all = tuple(ks) + new_ks
        nodes = tuple(sorted(k for k in (0,) + ks_all if k * sg >= 0))
        g = None if grain is None or new.grain is None else np.fmin(grain[sub], new.grain)
        merged = Values(np.vstack([vals[:, sub], new.vals]), sub,
                        np.fmax(sigma[sub], new.sigma), target.offsets(sub, steps[sub], ks_all),
                        np.arange(sub.size), position=new.position,
                        spread=None if np.isnan(spread[sub]).any() else spread[sub], grain=g)
        a_q = None if arg_scale is None else arg_scale[sub]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            est = estimate_pass(merged, ks_all, nodes, steps[sub], eps, a_q, sides=False,
                                actual=True)
        # the rounding bound of six values with weights up to 5: the sum of the weights'
        # magnitudes, not their root-sum-square (which the central fit's small weights
        # make close): a relu(tanh(x @ w) - 0.1) input 6.3e-12 off had a bar of 5.5e-12
        fm = fit_matrix(nodes)[1]
        est["unit"] = est["unit"] * (np.abs(fm).sum() / np.linalg.norm(fm))
        one = {name: getattr(now, name).copy() for name in
               ("value", "tau", "unit", "prior", "excess", "top", "below", "pos")}
        for name in one:
            one[name][sub] = est[name]
        wide = replace(now, **one)
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = np.zeros(n, bool)
            ok[sub] = ~merged.nonfinite & np.isfinite(est["value"])
            # the step a retry would take (the smooth model's cut, _steps.retry_steps;
            # suspect noise: a quarter step) and the rounding it would have: the prior's
            # (noise the pass showed may be the kink's), over the cut
            ratio = np.clip((rho / (5 * now.tau)) ** (1.0 / 6), SHRINK_MIN, SHRINK_MAX)
            ratio = np.where(suspect, KINK_SHRINK, ratio)
            cut = steps / 2.0 ** np.floor(np.log2(steps * ratio))
            rw = _rounding(wide, seen)
            fine = _fine(wide, rw, eps)
            retry_rho = cut * _rounding(now, seen, excess=False)
            ok &= ((~(wide.tau > TRUNCATION_DOMINATES * np.fmax(rw, retry_rho)) | fine)
                   & ~_no_digit(wide) & ~_suspect_noise(wide, seen, eps)
                   # the first pass's bar reaches the one-sided value (honest bars overlap)
                   & (np.abs(wide.value - now.value)
                      <= rho + SIDE_OVERLAP * now.tau + rw + wide.tau))
        out = out.where(ok, wide)
        done |= ok
    return out, done


class _Nodes:
    """The last pass's values at the nodes ``-1, 1`` of each source (coordinates, one
    quantity per source), kept for a retry at exactly half its step: that retry's nodes
    ``-2, 2`` are the same points (``REUSE``)."""

    def __init__(self, target, ks):
        n = target.n_q
        self.ks = tuple(ks)
        self.h = np.full(n, np.nan)
        self.vals = np.full((2, n), np.nan)
        self.sigma = np.zeros(n)
        self.grain = None
        self.off = False        # a target whose quantities are not its sources

    def keep(self, values, steps):
        q = values.q
        self.h[q] = steps
        for row, k in enumerate((-1, 1)):
            self.vals[row, q] = values.vals[self.ks.index(k)]
        self.sigma[q] = values.sigma
        if values.grain is not None:
            if self.grain is None:
                self.grain = np.zeros(self.h.size)
            self.grain[q] = values.grain


def _evaluate(target, src, steps, ks, memo):
    """The values of one pass over the sources ``src``, as one or two records: sources
    whose step is exactly half the last pass's take their nodes ``-2, 2`` from it
    (``memo``, a :class:`_Nodes`; None: no reuse) and evaluate three new points. Their
    magnitude is the larger of the two passes' (``sigma``: the old one reached 3h, a
    little wider), their grid the finer (a grid divides every value)."""
    if memo is None or memo.off or not REUSE or not {-2, -1, 1, 2}.issubset(ks):
        return [target.values(src, steps[src], ks, imag=False)]
    half = memo.h[src] == 2 * steps[src]
    out = []
    if (~half).any():
        rest = src[~half]
        out.append(target.values(rest, steps[rest], ks, imag=False))
        if not np.array_equal(out[-1].q, rest):
            memo.off = True
            return out + ([target.values(src[half], steps[src[half]], ks, imag=False)]
                          if half.any() else [])
    if half.any():
        sub = src[half]
        new = tuple(k for k in ks if k not in (-2, 2))
        v = target.values(sub, steps[sub], new, imag=False)
        vals = np.empty((len(ks), v.q.size))
        for a, k in enumerate(ks):
            vals[a] = (memo.vals[0 if k < 0 else 1, v.q] if k in (-2, 2)
                       else v.vals[new.index(k)])
        grain = (None if v.grain is None or memo.grain is None
                 else np.fmin(v.grain, memo.grain[v.q]))
        out.append(Values(vals, v.q, np.fmax(v.sigma, memo.sigma[v.q]),
                          target.offsets(sub, steps[sub], ks), v.src_pos,
                          position=v.position, spread=v.spread, grain=grain))
    for values in out:
        memo.keep(values, steps[target.q_src[values.q]])
    return out
