"""A sample's kinks, across the whole sample (sampled mode).

Each part of a sample is differenced and judged on its own (:mod:`._argument`); here its
kinks are settled across the merged sample (:func:`settled_across`,
:func:`._kinks.settle_sample`), the sample is extended around its kinks where a
dependency pattern names the elements reaching the same outputs (:func:`around_kinks`),
and the tie groups it then holds whole are judged along their sums as full mode judges
every group (:func:`sample_ties`, :func:`._kinks.whole_in_sample`).
"""

from __future__ import annotations

import time

import numpy as np

from gradcheck.checker._kinks import (KinkContext, _reached_by, reaching, settle_sample,
                                      whole_in_sample)
from gradcheck.checker._numeric import directional_numeric, subset_target
from gradcheck.checker._sampled import merge_samples
from gradcheck.checker._ties import TieFinder, judge_groups_with_ties
from gradcheck.checker._tolerance import Tolerance, longest_sum

__all__ = ["settled_across", "around_kinks", "sample_ties", "AROUND_KINKS_ROUNDS"]


def settled_across(problem, target, index, judged):
    """The sample's kinks settled across the whole sample (:func:`._kinks.settle_sample`),
    and the note on the undecided ones: ``(judged, undecided, note)``."""
    context = KinkContext(target.pattern, target.g, target.arg, problem.y,
                          np.full(target.arg.size, np.nan))
    judged, undecided = settle_sample(judged, index, context)
    if not undecided.any():
        return judged, undecided, ""
    return judged, undecided, (
        f"{int(undecided.sum())} sampled element(s) sit at kinks and lie outside their "
        f"one-sided limits (by up to {float(judged.diff[undecided].max()):.3g}), and "
        f"elements outside the sample reach the same outputs: whether the kink is shared "
        f"(and the limits no bound) is not known from a sample, so they are reported, not "
        f"judged (mode='full' judges them)")


def sample_ties(problem, options, target, analytic, index, judged, note, resolution=0.0):
    """The sample's tie groups that are whole (:func:`._kinks.whole_in_sample`) judged
    along their sums, as full mode judges every group: ``(judged, nfev, note)``. The
    others stay reported, not judged. ``resolution`` is the sampled elements'
    (:meth:`._scalarize.Problem.resolution`)."""
    whole = whole_in_sample(index, target.pattern, target.arg.size, problem.y.size)
    if whole is None or not judged.nondiff.any():
        return judged, 0, note
    sub = subset_target(target, index)
    context = KinkContext(sub.pattern, sub.g, sub.arg, problem.y,
                          np.full(index.size, np.nan))
    finder = TieFinder(context)
    tolerance = Tolerance.for_dtype(analytic.dtype, atol=options.atol, rtol=options.rtol,
                                    argument=np.asarray(target.arg).dtype,
                                    resolution=resolution, length=longest_sum(problem))
    judged, nfev, said = judge_groups_with_ties(
        judged, context, finder, lambda v: directional_numeric(sub, v), tolerance, whole,
        lambda j: tuple(int(i) for i in np.unravel_index(index[j], target.arg.shape)))
    return judged, nfev + finder.nfev, "; ".join(n for n in (note, said) if n)


#: Rounds of extending a sample by the elements around its kinks (:func:`around_kinks`).
AROUND_KINKS_ROUNDS = 3


def around_kinks(problem, target, index, judged, difference, seconds=np.inf,
                 per_element=0.0):
    """The sample extended, round by round, by the unsampled elements reaching an output
    that a sampled kink element reaches (from the dependency pattern), so that the tie
    groups it holds can be whole (:func:`sample_ties`); at most half as many elements as
    the sample held are added, the first by flat index when more would be (the groups of
    that region are whole, the others are not judged). ``difference(elements)`` judges
    the flat ``elements`` as the sample's were: ``(judged, nfev)``.

    The extension counts against the sample's share of the time budget: it takes at most
    ``seconds`` (what the sample left of its share), each element predicted to cost
    ``per_element`` (what one cost in the sample) and the rounds timed; an extension cut
    short is said in the note (on a pool of many ties it was measured at 1.2 times the
    sample's evaluations, and its bookkeeping at as much time again).
    ``(index, judged, nfev, note)``."""
    pattern, size = target.pattern, target.arg.size
    if pattern is None or index.size == size:
        return index, judged, 0, ""
    started = time.perf_counter()
    budget, nfev, added, wanted = index.size // 2, 0, 0, 0
    for _ in range(AROUND_KINKS_ROUNDS):
        kinks = np.zeros(size, bool)
        kinks[index[judged.nondiff]] = True
        near = reaching(pattern, _reached_by(pattern, kinks, problem.y.size), size)
        near[index] = False
        more = np.flatnonzero(near)
        more = more[:budget - added]      # the first ones: a region of whole groups
        wanted = added + more.size
        left = seconds - (time.perf_counter() - started)
        if per_element > 0 and more.size * per_element > left:
            more = more[:max(0, int(left / per_element))]
        if more.size == 0:
            break
        extra, used = difference(more)
        index, judged = merge_samples(index, judged, more, extra)
        nfev, added = nfev + used, added + more.size
    said = "" if not added else (
        f"{added} element(s) around the sample's kinks added to it, so that its tie groups "
        f"can be judged whole")
    if wanted > added:
        said = "; ".join(n for n in (said, (
            f"the extension of the sample around its kinks was cut for time at {added} of "
            f"{wanted} element(s) ({max(seconds, 0.0):.2g} s left of the sample's share of "
            f"time_budget): tie groups it leaves partial are reported, not judged")) if n)
    return index, judged, nfev, said
