r"""Forward mode's sampled runner: a sample's Jacobian columns in full, random tangents
over the rest.

Under ``mode="sampled"`` (or ``"auto"`` above a budget) :func:`~gradcheck.check_jvp`
checks an argument the way reverse mode's sampled runner does
(:func:`._argument.check_sampled`), with forward mode's probes and judge:

- the plan's sample of elements (:mod:`._sample`: every batch item and channel, the
  corners, a patch at the centre, the borders, random elements -- the same elements as
  reverse mode's for the same seed) gives the Jacobian columns :math:`J e_j` compared in
  full, entry by entry over the output, with the kink rule along each column and the
  shared kinks settled, as in full mode; where the dependency structure is known the
  sampled columns whose outputs do not overlap are moved together (one probe per group
  of the sample, :class:`._forward.ColumnProbes` over the sample);
- ``directions`` random tangents (entries ±1) over the elements outside the sample are
  judged as forward fast mode judges them, with its safeguards (the second look,
  linearity beside random partners, the projection on a seeded cotangent:
  :func:`._forward_probes.judge_probes`); they come first, over everything but the
  sample's first part, and the method they settle on (the complex step or real steps)
  is the sample's;
- the sample is differenced in two parts, the second as long as the time the first
  took says fits in the sample's share of the time budget
  (:func:`._sample.groups_that_fit`; each probe's call of ``f_jvp`` is in that time);
- a direction that fails while every sampled column passes is bisected
  (:func:`._locate.bisect`: the direction restricted to each half, its JVP against the
  numerical one entry by entry, the half furthest beyond its tolerance followed) down
  to at most :data:`~._locate.LEAF` elements, whose columns are then checked in full like
  the sample's, so a failure names a column and an output entry with both values.

What it proves: the sampled columns are right, entry by entry; the rest only as forward
fast mode proves anything (a float64 entry off by 1e-5 is caught along the directions,
one float32 entry off by 2% in a tensor of a few hundred elements may not be).

The diagnosis is full mode's -- the worst sampled column beside the other sampled
columns whose outputs do not overlap it, named against the output -- except for what a
sample cannot tell (:data:`UNTESTED`): one wrong Jacobian entry (``single_element``) or a
region of the output holding every mismatch (``region``) speak of every column, and the
columns outside the sample are not known. It says it was judged on a sample.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from gradcheck.checker._forward import DirectionProbes, column_probes
from gradcheck.checker._forward_probes import (Context, Tally, _worst_excess, judge_probes,
                                               output_rounding)
from gradcheck.checker._forward_runners import _notes, argument_report, stream
from gradcheck.checker._locate import bisect
from gradcheck.checker._numeric import rademacher_directions
from gradcheck.checker._report import Diagnosis
from gradcheck.checker._sample import cut_note, first_part, groups_that_fit
from gradcheck.checker._summarize import sampled_said

__all__ = ["check_sampled", "UNTESTED"]

#: Causes a sample of columns cannot name (they speak of every column).
UNTESTED = ("single_element", "region")


class _Columns:
    """The sampled columns checked so far: one context whose probes grow as columns are
    added (the first part of the sample, the rest that fits, a bisection's leaf), and
    the one :class:`Tally` they add up to."""

    def __init__(self, problem, options, plan, rounding):
        self.problem, self.options, self.plan, self.rounding = problem, options, plan, rounding
        self.ctx = self.tally = None

    @property
    def index(self) -> np.ndarray:
        return self.ctx.probes.index if self.ctx is not None else np.zeros(0, np.int64)

    def add(self, index, groups, method):
        """Check the columns ``index`` (flat), moved together by ``groups`` (colors
        numbered on from those already used); the method decided."""
        if self.ctx is None:
            probes = column_probes(self.plan.pattern, self.problem.args[self.plan.index].size,
                                   self.problem.y.size, index=index, groups=groups)
            self.ctx = Context(self.problem, self.options, self.plan, probes, True,
                               self.rounding)
            self.tally, start = Tally(self.ctx), 0
        else:
            start = self.ctx.probes.count
            self.ctx = self.ctx._replace(probes=self.ctx.probes.extended(index, groups))
            self.tally.grow(self.ctx)
        return stream(self.ctx, self.tally, range(start, self.ctx.probes.count), method)

    def failed(self) -> bool:
        self.tally.settle()
        return bool(self.tally.probes_failed.any())


def _part(sample, start, stop):
    """The elements of groups ``start .. stop - 1`` of ``sample`` and their groups."""
    keep = (sample.group >= start) & (sample.group < stop)
    return sample.index[keep], sample.group[keep]


def _sample_within_time(columns: _Columns, sample, method):
    """The sample's columns in two parts, the second sized from the time the first took
    (reverse mode's rule, :func:`._sample.groups_that_fit`); the note when it was cut,
    and the method decided."""
    first = first_part(sample)
    started = time.perf_counter()
    method = columns.add(*_part(sample, 0, first), method)
    if first >= sample.groups:
        return "", method
    more, per_group = groups_that_fit(sample, first, time.perf_counter() - started)
    if more:
        method = columns.add(*_part(sample, first, first + more), method)
    if first + more < sample.groups:
        return cut_note(columns.index.size, sample, per_group), method
    return "", method


def _directions(problem, options, plan, rounding, checked):
    """Random ±1 tangents over the elements outside ``checked``, judged as forward fast
    mode judges them: ``(context, tally, method decided)``."""
    directions = rademacher_directions(options.seed, plan.index, options.directions,
                                       problem.args[plan.index].size)
    directions[:, checked] = 0.0
    ctx = Context(problem, options, plan, DirectionProbes(directions), False, rounding)
    tally = Tally(ctx)
    return ctx, tally, stream(ctx, tally, range(ctx.probes.count))


def _worst_failing(tally: Tally) -> int:
    """The failing direction furthest beyond its tolerance."""
    best = tally.best[1].k if tally.best is not None else None
    return int(best) if best is not None and tally.probes_failed[best] else \
        int(np.flatnonzero(tally.probes_failed)[0])


def _locate(columns: _Columns, dctx, dtally, method):
    """Bisect the worst failing direction to a few elements and check their columns:
    ``(nfev of the bisection, note)``."""
    k = _worst_failing(dtally)

    def excesses(halves):
        scratch = Tally(dctx)
        items, _ = judge_probes(dctx, [k, k], scratch, method, halves, looks=False)
        return [_worst_excess(it.judged) for it in items], scratch.nfev

    leaf, nfev = bisect(dctx.probes.tangent(k), excesses)
    new = np.setdiff1d(leaf, columns.index)
    if new.size:
        columns.add(new, columns.ctx.probes.count + np.arange(new.size), method)
    columns.failed()                     # kinks along the new columns settled
    found = int(columns.tally.columns_failed[leaf].sum())
    note = (f"direction {k} failed while every sampled column passed; bisection narrowed it "
            f"to {leaf.size} element(s), of which {found} fail (their Jacobian columns "
            f"checked in full)")
    if not found:
        note += ("; no column there fails: the mismatch is spread over columns each within "
                 "its tolerance, or lies outside the path bisection took; a full check "
                 "(mode='full') tells")
    return nfev, note


def _on_the_sample(diagnosis: Diagnosis | None, checked: int, size: int):
    """A diagnosis found on the sample says so; when no cause fits, it also names what a
    sample cannot tell."""
    if diagnosis is None:
        return None
    message = (f"{diagnosis.message} (Judged on the sample: the Jacobian columns of "
               f"{checked} of {size} elements were sampled.)")
    if diagnosis.cause == "no_known_pattern":
        message += (" A sample cannot tell one wrong Jacobian entry (single_element) or a "
                    "region of the output holding every mismatch (region): the columns "
                    "not sampled are not known; a full check (mode='full') tells.")
    return Diagnosis(diagnosis.cause, message,
                     {**diagnosis.evidence, "sampled": checked, "n_elements": size,
                      "untested_on_sample": list(UNTESTED)})


def check_sampled(problem, options, plan, suspects):
    """A sample of one argument's Jacobian columns in full, and random tangent directions
    over the rest (see the module notes)."""
    started = time.perf_counter()
    sample, size = plan.sample, problem.args[plan.index].size
    rounding = output_rounding(problem, plan.index)
    columns = _Columns(problem, options, plan, rounding)
    dctx = dtally = method = None
    if sample.index.size < size:       # the directions first: they set the sample's method
        first, _ = _part(sample, 0, first_part(sample))
        dctx, dtally, method = _directions(problem, options, plan, rounding, first)
    cut, method = _sample_within_time(columns, sample, method)
    if dctx is None and columns.index.size < size:   # a whole sample, cut for time
        dctx, dtally, _ = _directions(problem, options, plan, rounding, columns.index)
    notes, nfev = [cut], 0
    if dtally is not None and dtally.probes_failed.any() and not columns.failed():
        nfev, located = _locate(columns, dctx, dtally, method)
        notes.append(located)
    report = argument_report(columns.ctx, columns.tally, suspects, started, full=True,
                             skip=UNTESTED)
    checked = int(columns.index.size)
    n_dirs = None if dctx is None else dctx.probes.count
    dirs_failed = 0 if dtally is None else int(dtally.probes_failed.sum())
    elapsed = time.perf_counter() - started
    along = [] if dtally is None else [f"along the directions: {n}"
                                       for n in _notes(dctx, dtally)]
    note = "; ".join(n for n in (sampled_said(checked, size, elapsed, n_dirs, dirs_failed),
                                 *notes, report.note, *along) if n)
    return dataclasses.replace(
        report, mode="sampled", n_checked=checked, passed=report.passed and not dirs_failed,
        nfev=report.nfev + nfev + (0 if dtally is None else dtally.nfev), elapsed_s=elapsed,
        diagnosis=_on_the_sample(report.diagnosis, checked, size), note=note,
        n_directions=n_dirs or 0, n_directions_failed=dirs_failed)
