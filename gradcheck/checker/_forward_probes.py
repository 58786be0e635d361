r"""Forward mode's differentiate, judge and settle stages, over the probes of one argument.

Each probe (:mod:`._forward`) gives two arrays shaped like the output: the analytic JVP
``f_jvp`` returns along the probe's tangent, and the numerical directional derivative of
``f`` along it (:func:`gradcheck.numdiff.numerical_jvp`, with an error bar per output
entry). They are compared entry by entry by the reverse mode's judge
(:func:`._judge.judge_elements`) under a :class:`~._tolerance.Tolerance` of the probe:

.. math:: \tau_i = k_{num} E_i + k_{an}\,\varepsilon\,(|n_i| + s + r)

with :math:`s` the root-mean-square of the probe's numerical JVP and :math:`r` the
smallest derivative one output entry can express along the tangent
(:meth:`._forward.ForwardProblem.resolution`). The probes are evaluated in batches
whose size follows ``memory``; what the argument's report needs is added up as they go
(:class:`Tally`), so memory follows the output, not the Jacobian.

The error bar's floor
---------------------
The differentiator estimates the rounding of a difference from the magnitude of the
values differenced (:mod:`gradcheck.numdiff._core`, whose docstring names the blind
spot): an output entry computed as a sum of larger terms that cancel (a convolution's)
carries the rounding of those terms, not of its own value. Reverse mode sums the rows
an element reaches, so that scale is in its bar; forward mode judges each output entry
on its own, thousands of them per argument, and there the blind spot showed (measured:
``tanh`` of a float64 convolution, differenced with real steps only, failed 6 of 12
right checks by a few times its bar at relative errors near 1e-11). So with real steps
an entry's bar is at least :math:`\lVert w_1\rVert\,\varepsilon (|y_i| +
\mathrm{rms}(y)) / h`: the stencil's rounding at the output's typical magnitude (the
typical size of the terms summed), with :math:`h` the probe's step. The complex step,
which subtracts nothing, keeps its own bar.

Kinks
-----
In full mode an entry the differentiator marks non-differentiable is judged by the
one-sided derivatives *along its column*, as reverse mode judges an element: the
analytic value must lie between them (widened by :math:`\kappa`). That rule is exact
when the output sits on one kink along that column (a ReLU at zero, a max-pool or sort
tie: any active branch's derivative lies between the two one-sided ones). It is not
when an output sits at a kink along several columns at once (a tie feeding a later
layer, several units at zero together): like reverse mode's shared kinks, an entry
outside its limits whose output is at a kink along another column too is reported, not
judged (:meth:`Tally.settle`). In fast mode a mismatch that survives the second look is
tested for differentiability too (:func:`_linearity_look`): several kinks crossed at once
along a random direction break :math:`J v = f'(x; v)` for right code as well.

Which entries are kinks: the differentiator flags an output entry whose one-sided
estimates stay apart, and along a direction that happens on smooth entries too, from
rounding (measured on a float64 linear convolution and on ``tanh`` of a float32 one:
about one nonzero entry in 200, up to 2% apart, with the true value sometimes outside
both estimates). So an entry is judged by the kink rule, and counts toward a shared
kink, only when its one-sided derivatives are ``KINK_GAP`` (10%) of the larger apart;
the others are judged as smooth, on their error bar (which spans both one-sided values:
a correct value there, either side's derivative, always passes; what is lost is only the
kink rule's strictness at a kink whose sides differ by less than 10%). Fast mode's directions move every element at once, so
several kinks meet in one output by construction: as in reverse mode's fast mode, an
entry there is judged on its error bar alone (half the one-sided gap and more).

A second look
-------------
As in reverse mode (:func:`._numeric.second_look`): the probes of a batch with
mismatches are differenced again, the worst ``RECHECK_FIRST`` first and the rest only if
none of those is confirmed; once a mismatch is confirmed, later batches are not looked
at again. After the complex step, with real steps, under reverse mode's policy (they
overrule it where they contradict it). After real steps, with a step four times smaller
(truncation about a thousand times smaller): its value replaces the first where its bar
is smaller, where it finds a kink, or where it contradicts the first beyond the first's
own bar -- the truncation estimate of one output entry can be several times too small
(measured: a float32 ``tanh`` of a convolution, 17 times, at an effective step of 0.18 in
the argument of ``tanh``), which the elements of reverse mode, each a sum over rows,
average away.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.checker._along import PARTNERS, not_differentiable, partner_directions
from gradcheck.checker._judge import excess, judge_elements, rel_error, unusable
from gradcheck.checker._numeric import (POLICIES, RECHECK_FIRST, RECHECK_RETRIES, Policy,
                                        evaluate)
from gradcheck.checker._tolerance import Tolerance, longest_sum, real_eps
from gradcheck.numdiff import numerical_jvp, rounding_bar

__all__ = ["Item", "Tally", "Context", "judge_probes", "substantial", "output_rounding",
           "BYTES_PER_ENTRY",
           "MAX_KEPT", "KINK_GAP"]

#: Bytes one output entry of one probe takes while a batch is differenced and judged.
BYTES_PER_ENTRY = 160
#: Probes with kink entries outside their limits whose arrays are kept for the report.
MAX_KEPT = 8
#: An entry is judged as a kink when its one-sided derivatives are this share of the
#: larger apart (measured: the differentiator's flags on smooth float32 entries, from
#: rounding, stay below 2%; ReLU, abs, max and sort kinks are 100% apart).
KINK_GAP = 0.1


class Context(NamedTuple):
    """One argument's forward check: the problem, options, plan and probes."""

    problem: object        # ForwardProblem
    options: object        # the validated Options
    plan: object           # Plan
    probes: object         # ColumnProbes or DirectionProbes
    kink_rule: bool        # judge kinks by their one-sided limits (full mode)
    rounding: object = None  # output_rounding(problem, index): the error bars' floor


def output_rounding(problem, index) -> np.ndarray:
    r""":math:`\varepsilon (|y_i| + \mathrm{rms}(y))`: the rounding one evaluation of each
    output entry may carry (see the module notes), in the coarser precision of the
    argument and the output."""
    y = np.abs(np.asarray(problem.y, np.float64))
    eps = max(real_eps(problem.args[index].dtype), real_eps(problem.y.dtype))
    return eps * (y + float(np.sqrt(np.mean(y * y))) if y.size else y)


def _floor(num, p, rounding) -> np.ndarray | None:
    r"""The error bar's floor of probe ``p`` of a real-difference result:
    :math:`\lVert w_1\rVert\,\varepsilon (|y_i| + \mathrm{rms}(y)) / h`
    (:func:`gradcheck.numdiff.rounding_bar`; None for the complex step)."""
    if rounding is None:
        return None
    return rounding_bar(num.method, np.asarray(num.step, np.float64).reshape(-1)[p], rounding)


class NumView(NamedTuple):
    """One probe's numerical JVP (arrays shaped like the output)."""

    grad: np.ndarray
    error: np.ndarray
    nondifferentiable: np.ndarray
    left: np.ndarray
    right: np.ndarray


class Item(NamedTuple):
    """One judged probe."""

    k: int
    tangent: np.ndarray        # flat, float64
    analytic: np.ndarray       # f_jvp's output tangent
    num: NumView
    tolerance: Tolerance
    judged: object             # Judgement over the output


def _apart(nondiff, left, right) -> np.ndarray:
    """Flagged entries whose one-sided derivatives are more than ``KINK_GAP`` of the
    larger one apart (see the module notes)."""
    left, right = np.asarray(left, np.float64), np.asarray(right, np.float64)
    with np.errstate(invalid="ignore"):
        big = np.abs(right - left) > KINK_GAP * np.fmax(np.abs(left), np.abs(right))
    return np.asarray(nondiff, bool) & big


def _view(num, p, kinks: bool, rounding=None) -> NumView:
    """Probe ``p`` of a stacked numerical JVP; with ``kinks``, the flagged entries whose
    one-sided derivatives are not ``KINK_GAP`` apart are judged as smooth; with
    ``rounding`` (:func:`output_rounding`), the error bar has its floor."""
    nondiff = np.asarray(num.nondifferentiable[p], bool)
    nondiff = _apart(nondiff, num.left[p], num.right[p]) if kinks and nondiff.any() else \
        np.zeros(nondiff.shape, bool) if not kinks else nondiff
    error = num.error[p]
    floor = _floor(num, p, rounding)
    if floor is not None:
        error = np.maximum(np.asarray(error, np.float64), floor)
    return NumView(num.grad[p], error, nondiff, num.left[p], num.right[p])


def substantial(judged) -> np.ndarray:
    """The kink entries of a judgement (those the kink rule judged)."""
    if judged.left is None:
        return np.zeros(np.shape(judged.nondiff), bool)
    return _apart(judged.nondiff, judged.left, judged.right)


def _differentiate(ctx: Context, tangents, method, max_retries=2, step=None):
    """The numerical JVPs of ``f`` along the rows of ``tangents`` (stacked)."""
    problem, options, i = ctx.problem, ctx.options, ctx.plan.index
    arg = problem.args[i]
    V = np.asarray(tangents, np.float64).reshape((-1,) + arg.shape)
    g = problem.of_argument(i)
    return evaluate(lambda V: numerical_jvp(
        g, arg, V, method=method, memory=options.memory, max_retries=max_retries,
        vectorized=bool(options.vectorized[i]), seed=options.seed, step=step), V,
        "it was differenced along the tangents of forward mode")


def _smaller_step_overrules(first: NumView, second: NumView, tolerance) -> np.ndarray:
    """After real differences, the value from a step four times smaller replaces the
    first where it has the smaller bar, finds a kink, or contradicts the first beyond
    the first's own bar (its truncation was underestimated)."""
    a, b = np.asarray(first.grad, np.float64), np.asarray(second.grad, np.float64)
    return (np.asarray(second.nondifferentiable, bool)
            | (np.asarray(second.error, np.float64) < np.asarray(first.error, np.float64))
            | (np.abs(b - a) > tolerance.numeric(first.error)))


def _judge(ctx: Context, k, tangent, analytic, num: NumView) -> Item:
    problem, options = ctx.problem, ctx.options
    tolerance = Tolerance.for_dtype(analytic.dtype, atol=options.atol, rtol=options.rtol,
                                    resolution=problem.resolution(ctx.plan.index, tangent),
                                    length=longest_sum(problem),
                                    argument=np.asarray(problem.args[ctx.plan.index]).dtype)
    judged = judge_elements(analytic, num, tolerance)
    if judged.failed.any():
        # judged again with the resolution of the terms the outputs are formed from,
        # measured (an output whose derivative cancels to zero rounds at their scale)
        tolerance = dataclasses.replace(tolerance, resolution=problem.resolution(
            ctx.plan.index, tangent, options.seed))
        judged = judge_elements(analytic, num, tolerance)
    return Item(k, tangent, analytic, num, tolerance, judged)


def _worst_excess(judged) -> float:
    over = np.nan_to_num(excess(judged), nan=np.inf)
    return float(over.max(initial=0.0))


def _second_look(ctx: Context, items, tally, first):
    """The failing probes of a batch differenced again (see the module notes); ``first``
    is the batch's numerical result (its method and steps)."""
    failing = sorted((p for p, it in enumerate(items) if it.judged.failed.any()),
                     key=lambda p: -_worst_excess(items[p].judged))
    if not failing or ctx.options.method != "auto" or tally.confirmed:
        return items
    complex_first = first.method == "complex"
    policy = POLICIES[True] if complex_first else Policy(_smaller_step_overrules,
                                                         RECHECK_RETRIES, "")
    tally.mismatching += len(failing)
    tally.complex_first = complex_first
    steps = np.asarray(first.step, np.float64).reshape(-1)
    for group in (failing[:RECHECK_FIRST], failing[RECHECK_FIRST:]):
        if not group:
            break
        step = None if complex_first else float(steps[group].min()) / 4
        second = _differentiate(ctx, [items[p].tangent for p in group], "adaptive",
                                max_retries=policy.max_retries, step=step)
        tally.nfev += int(second.nfev)
        for q, p in enumerate(group):
            it = items[p]
            raw = _view(second, q, True, ctx.rounding)
            take = np.asarray(policy.takes(it.num, raw, it.tolerance) if not complex_first
                              else policy.takes(it.num, np.arange(np.size(it.analytic)), raw,
                                                it.tolerance), bool)
            take = take.reshape(np.shape(it.analytic))
            mine = _view(second, q, ctx.kink_rule, ctx.rounding)
            merged = NumView(*(np.where(take, new, old) for new, old in zip(mine, it.num)))
            items[p] = _judge(ctx, it.k, it.tangent, it.analytic, merged)
        tally.rechecked += len(group)
        if any(items[p].judged.failed.any() for p in group):
            tally.confirmed = True
            break
    return items


def _projection_agrees(ctx: Context, it: Item, excused) -> np.ndarray:
    """The failing entries of a fast-mode direction left, when the direction's projection
    on a seeded cotangent ``R`` agrees within its summed bars (reverse fast mode's
    verdict): then no more than reverse mode would see is claimed (none, else)."""
    j = it.judged
    left = j.failed & ~excused & ~unusable(j.numeric, j.error)
    if not left.any():
        return np.zeros(np.shape(left), bool)
    r = np.random.default_rng([ctx.options.seed, ctx.plan.index, int(it.k), 11]) \
        .standard_normal(np.shape(left))
    a, n = np.asarray(j.analytic, np.float64), np.asarray(j.numeric, np.float64)
    bars = np.where(excused, 0.0, np.asarray(j.error, np.float64))
    tau = it.tolerance.numeric(np.sum(np.abs(r) * bars)) + \
        it.tolerance.rounding(np.sum(np.abs(r * a)))
    mismatch = abs(float(np.sum(np.where(excused, 0.0, r * (a - n)))))
    return left if mismatch <= tau else np.zeros(np.shape(left), bool)


def _linearity_look(ctx: Context, items, tally, first):
    """Fast mode: the entries that still fail, where ``f`` is not differentiable.

    Along a random direction an output can cross several kinks at once (a ReLU layer's
    zeros feeding one convolution output), and there the analytic :math:`J v` -- one
    element of the generalized Jacobian, applied to ``v`` -- need not be the directional
    derivative at all, though the code is right. Where ``f`` is differentiable the
    directional derivative is linear in the direction, so each failing direction ``v`` is
    differenced again beside a random partner ``w``, along ``w`` and ``v + w``: an entry
    whose derivatives add up wrong (beyond ten of their bars) beside any of ``PARTNERS``
    partners, or that the differentiator flags at a kink along ``v``, ``w`` or ``v + w``
    (a single kink's one-sided value passes on the error bar, so a failing entry at a
    kink has crossed several), is not differentiable there; its mismatch is reported,
    not judged (the test is :func:`._along.not_differentiable`, which reverse fast mode
    shares). Fast mode judges no kink, as in reverse mode. Where the crossed kinks do
    not show (their gaps cancel along every direction tried), the direction's mismatches
    stand only if its projection on a seeded cotangent -- the number reverse fast mode
    judges -- disagrees too (:func:`_projection_agrees`): fast mode then claims no more
    than reverse fast mode would.
    """
    failing = [p for p, it in enumerate(items) if it.judged.failed.any()]
    if not failing:
        return items
    partners = partner_directions(ctx.options.seed, ctx.plan.index,
                                  [items[p].k for p in failing],
                                  ctx.problem.args[ctx.plan.index].size)
    sums = np.repeat(np.stack([items[p].tangent for p in failing]), PARTNERS, axis=0) + \
        partners
    num = _differentiate(ctx, np.concatenate([partners, sums]), "adaptive")
    tally.nfev += int(num.nfev)
    m = len(partners)
    for q, p in enumerate(failing):
        it = items[p]
        rs = range(q * PARTNERS, (q + 1) * PARTNERS)
        kinked = not_differentiable(
            first[p], [_view(num, r, True, ctx.rounding) for r in rs],
            [_view(num, m + r, True, ctx.rounding) for r in rs],
            it.tolerance).reshape(np.shape(it.analytic))
        kinked &= it.judged.failed & ~unusable(it.judged.numeric, it.judged.error)
        agreed = _projection_agrees(ctx, it, kinked)
        tally.excused += int(kinked.sum())
        tally.agreed += int(agreed.sum())
        kinked |= agreed
        if kinked.any():
            items[p] = it._replace(judged=it.judged._replace(
                failed=it.judged.failed & ~kinked, nondiff=it.judged.nondiff | kinked,
                diff=np.where(kinked, 0.0, it.judged.diff)))
    return items


def judge_probes(ctx: Context, ks, tally, method: str, tangents=None, *, looks=True):
    """Probes ``ks`` differenced (with ``method``), judged and looked at again: the items,
    and the method the differentiator used. ``tangents`` (flat, one row per probe)
    replaces the probes' own; ``looks=False`` leaves out the second look and the
    linearity look (a bisection's halves, judged only to choose between them)."""
    problem, i = ctx.problem, ctx.plan.index
    if tangents is None:
        tangents = np.stack([ctx.probes.tangent(k) for k in ks])
    analytic = [problem.jvp(i, t) for t in tangents]
    num = _differentiate(ctx, tangents, method)
    tally.nfev += int(num.nfev)
    items = [_judge(ctx, k, t, a, _view(num, p, ctx.kink_rule, ctx.rounding))
             for p, (k, t, a) in enumerate(zip(ks, tangents, analytic))]
    if not looks:
        return items, num.method
    items = _second_look(ctx, items, tally, num)
    if not ctx.kink_rule:
        first = [_view(num, p, True, ctx.rounding) for p in range(len(items))]
        items = _linearity_look(ctx, items, tally, first)
    return items, num.method


def _flat(a) -> np.ndarray:
    return np.asarray(a).reshape(-1)


class Tally:
    """What the probes of one argument add up to, streamed (see the module notes)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        n, m = ctx.problem.args[ctx.plan.index].size, ctx.problem.y.size
        self.columns_failed = np.zeros(n, bool)
        self.columns_kinked = np.zeros(n, bool)
        self.probes_failed = np.zeros(ctx.probes.count, bool)
        self.kink_count = np.zeros(m, np.int64)    # kink entries per output, over probes
        self.candidates = []     # (k, entries, columns, excess, diff, rel): outside limits
        self.kept = {}           # k -> (Item, columns) of probes with candidates
        self.best = None         # (excess, Item, columns): the largest non-candidate excess
        self.max_abs = self.max_rel = self.max_err = 0.0
        self.dot = self.aa = self.nn = 0.0
        self.nfev = self.rechecked = self.mismatching = self.unowned = self.n_shared = 0
        self.confirmed = self.complex_first = False
        self.excused = 0         # fast mode: mismatches where f is not differentiable
        self.agreed = 0          # ... and on directions whose projection agrees
        # columns whose outputs do not overlap, side by side: what a diagnosis looks at
        self.pack_owner = np.full(m, -1, np.int64)   # the packed column of each output
        self.packed = np.zeros(n, bool)

    def _attribute(self, k, cols) -> np.ndarray:
        """Columns of failing entries; one no member reaches goes to the color's first."""
        cols = np.asarray(cols)
        lost = cols < 0
        if lost.any():
            self.unowned += int(lost.sum())
            cols = np.where(lost, self.ctx.probes.members(k)[0], cols)
        return cols

    def add(self, item: Item, cols) -> None:
        j = item.judged
        bad = _flat(unusable(j.numeric, j.error))
        cand = _flat(j.outside) & ~bad
        failed = _flat(j.failed) & ~cand
        nondiff = _flat(j.nondiff)
        over = np.nan_to_num(_flat(excess(j)), nan=np.inf)
        diff = _flat(j.diff)
        # no relative error where it means nothing: a passing kink, or a passing entry no
        # larger than its tolerance (a structural zero computed as rounding reads as 100%)
        small = np.maximum(np.abs(_flat(j.analytic)), np.abs(_flat(j.numeric))) <= \
            _flat(j.tolerance)
        rel = np.where((nondiff | small) & ~_flat(j.failed), 0.0,
                       _flat(rel_error(j.analytic, j.numeric)))
        keep = ~cand
        self.max_abs = max(self.max_abs, float(diff[keep].max(initial=0.0)))
        self.max_rel = max(self.max_rel, float(rel[keep].max(initial=0.0)))
        self.max_err = max(self.max_err, float(_flat(j.error).max(initial=0.0)))
        a, n = _flat(j.analytic), _flat(j.numeric)
        self.dot += float(a @ n)
        self.aa += float(a @ a)
        self.nn += float(n @ n)
        big = _flat(substantial(j))
        self.kink_count += big
        if failed.any():
            self.probes_failed[item.k] = True
        if cols is not None:
            self.columns_kinked[cols[big & (cols >= 0)]] = True
            self.columns_failed[self._attribute(item.k, cols[failed])] = True
            self._pack(item.k, cols, np.flatnonzero((a != 0) | (n != 0)))
        top = float(over[keep].max(initial=-np.inf))
        if self.best is None or top > self.best[0]:
            self.best = (top, item, cols)
        if cand.any():
            idx = np.flatnonzero(cand)
            self.candidates.append((item.k, idx, None if cols is None else cols[idx],
                                    over[idx], diff[idx], rel[idx], big[idx]))
            if len(self.kept) < MAX_KEPT:
                self.kept[item.k] = (item, cols)

    def _pack(self, k, cols, touched) -> None:
        """Add probe ``k``'s columns to the packing if no output they touch is taken."""
        if not (self.pack_owner[touched] >= 0).any():
            members = self.ctx.probes.members(k)
            self.pack_owner[touched] = np.where(cols[touched] >= 0, cols[touched], members[0])
            self.packed[members] = True

    def packing_with(self, column, touched) -> np.ndarray:
        """The packed columns with ``column`` in, the ones whose outputs overlap its
        (``touched``, flat output indices) out: a tangent of 0s and 1s (flat)."""
        clash = np.unique(self.pack_owner[touched])
        packed = self.packed.copy()
        packed[clash[(clash >= 0) & (clash != column)]] = False
        packed[column] = True
        return packed.astype(np.float64)

    def grow(self, ctx: Context) -> None:
        """Go on with ``ctx``, whose probes extend this tally's (sampled mode adds columns
        as it goes: :meth:`._forward.ColumnProbes.extended`)."""
        more = ctx.probes.count - self.probes_failed.size
        self.ctx = ctx
        self.probes_failed = np.concatenate([self.probes_failed, np.zeros(more, bool)])

    def settle(self):
        """Settle the kink entries outside their limits; ``(excess, k)`` of the worst
        unshared one (``(-inf, None)`` when there is none). Settling again gives the
        same (sampled mode asks before it reports)."""
        worst = (-np.inf, None)
        self.n_shared = 0
        for k, idx, cols, over, diff, rel, own in self.candidates:
            alone = self.kink_count[idx] - own < 1      # no other column's kink here
            self.n_shared += int((~alone).sum())
            if not alone.any():
                continue
            self.probes_failed[k] = True
            self.max_abs = max(self.max_abs, float(diff[alone].max()))
            self.max_rel = max(self.max_rel, float(rel[alone].max()))
            if cols is not None:
                self.columns_failed[self._attribute(k, cols[alone])] = True
            if float(over[alone].max()) > worst[0]:
                worst = (float(over[alone].max()), k)
        return worst

    def shared_mask(self, judged) -> np.ndarray:
        """The entries of a probe's judgement whose kink is shared (not judged)."""
        others = self.kink_count.reshape(np.shape(judged.outside)) - substantial(judged)
        return judged.outside & (others >= 1) & ~unusable(judged.numeric, judged.error)
