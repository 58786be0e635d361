"""One argument through the pipeline, per plan kind.

:data:`RUNNERS` maps a :class:`~gradcheck.checker._plan.Plan`'s kind to the function that
carries the argument through the stages that kind has:

- ``"full"``: differentiate every element (:func:`._numeric.full_numeric`), judge them
  (:func:`._judge.judge_elements`), settle shared kinks (:func:`._kinks.settle_kinks`),
  take a second look at the mismatches (:func:`._numeric.second_look`) and at the
  elements resolved only coarsely (:func:`._coarse.coarse_look`), diagnose
  (:func:`._diagnose.diagnose_judgement`, with what is known of the argument:
  :func:`known_of`), report (:func:`._summarize.summarize_full`);
- ``"sampled"``: the stages of ``"full"`` on the plan's sample of elements (the argument
  seen as a function of those elements alone, :func:`._numeric.subset_target`), then
  random directions over the rest, judged like ``"fast"``; a direction that fails while
  no sampled element does is narrowed to a few elements by bisection
  (:func:`._locate.bisect_direction`), which are differenced and judged too, so a
  failure always names an element; diagnose on the sample; report
  (:func:`._summarize.summarize_sampled`);
- ``"fast"``: differentiate along random directions (:func:`._numeric.directional_numeric`),
  judge the projections (:func:`._judge.judge_directions`), report a failing direction
  along which ``f`` is not differentiable as a kink, not a failure
  (:func:`._along.kinks_along`, forward mode's test), report;
- ``"skipped"``: report why.

Every runner takes the same four things -- the scalarized problem, the validated
options, the plan, and the suspects (what is known about ``f``) -- and returns an
:class:`~gradcheck.checker._report.ArgumentReport`. A new kind of plan is a new runner
and one more entry here.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from gradcheck.checker._coarse import coarse_look
from gradcheck.checker._diagnose import diagnose_judgement, role_of
from gradcheck.checker._fit import Known, named_sizes
from gradcheck.checker._judge import excess, judge_directions, judge_elements, unusable
from gradcheck.checker._kinks import KinkContext
from gradcheck.checker._notes import one_sided, unseen_at_kinks
from gradcheck.checker._numeric import (
    Target,
    directional_numeric,
    full_numeric,
    rademacher_directions,
    second_look,
    subset_target,
)
from gradcheck.checker._summarize import (
    SampleJudged,
    join_notes,
    summarize_fast,
    summarize_full,
    summarize_sampled,
    summarize_skipped,
)
from gradcheck.checker._ties import (TieFinder, joined_note, judge_groups_with_ties,
                                     settle_with_ties)
from gradcheck.checker._tolerance import Tolerance, longest_sum

__all__ = ["RUNNERS", "target_of", "known_of"]


def target_of(problem, options, plan) -> Target:
    """What the differentiator needs for the planned argument."""
    i = plan.index
    g = problem.of_argument(i)
    if _probed(plan):                                  # a probed structure, on probation
        from gradcheck.checker._probe import guard

        g = guard(g, problem.args[i], problem.y, plan.pattern)
    if plan.kind == "full" and plan.watch is not None:    # mode="auto" chose it: on time
        from gradcheck.checker._timing import watched

        g = watched(g, problem.args[i], plan.watch)
    return Target(g, problem.args[i], problem.cotangent, plan.pattern,
                  options.vectorized[i], options.method, options.seed, options.memory)


def _probed(plan) -> bool:
    """The plan differences with a structure found by probing (:mod:`._probe`)."""
    return bool(plan.probe_nfev) and plan.pattern is not None


def known_of(problem, index) -> Known:
    """What the diagnosis may use of argument ``index`` beyond its two gradients: its
    value, the sizes of every argument and of the output, the cotangent, and the backward
    and forward to call again."""
    shapes = {"the output": problem.y.shape,
              **{name: np.shape(a) for name, a in zip(problem.argnames, problem.args)}}
    backward = None if problem.f_vjp is None else (
        lambda cotangent: problem.vjp_again(cotangent)[index])
    return Known(x=problem.args[index], sizes=named_sizes(shapes),
                 cotangent=problem.cotangent_f, backward=backward,
                 forward=problem.of_argument(index), missing=index in problem.missing,
                 name=problem.argnames[index],
                 others=tuple(zip(problem.argnames, problem.args)))


def _backward_of(problem, index):
    """Argument ``index``'s value -> its analytic gradient with the check's cotangent and
    the other arguments at the point (None without a backward)."""
    if problem.f_vjp is None:
        return None

    def backward(value):
        args = list(problem.args)
        args[index] = value
        grads = problem.f_vjp(problem.cotangent_f.copy(), *args)
        grads = (grads,) if len(args) == 1 and isinstance(grads, np.ndarray) else tuple(grads)
        g = grads[index]
        return np.zeros(value.shape) if g is None else g

    return backward


def _elements(problem, options, target, analytic, resolution, method=None, confirm=None,
              ties=False, backward=None):
    """Differentiate every element of ``target`` (with ``method`` if given, else the
    target's), judge, settle kinks, take a second look: ``(num, judged, note)``.
    ``confirm(target, num)``, if given, vets the first numbers before they are judged
    and returns the evaluations it took. With ``ties`` (every element of the argument),
    groups of shared kinks are judged along their sum directions too
    (:func:`._kinks.judge_tie_groups`). ``resolution(seed)`` is the resolution
    :math:`r_j` of the elements: with ``seed`` None, from the outputs' values; else from
    the terms they are formed from, measured (:meth:`._scalarize.Problem.resolution`),
    which the verdict takes once an element departs beyond the first: a gradient that
    cancels to zero is the rounding of those terms (:mod:`._formed`)."""
    tolerance = Tolerance.for_dtype(analytic.dtype, atol=options.atol, rtol=options.rtol,
                                    argument=np.asarray(target.arg).dtype,
                                    resolution=resolution(None),
                                    length=longest_sum(problem))
    raised = []

    finder = TieFinder(KinkContext(target.pattern, target.g, target.arg, problem.y, None))

    def context(num):
        return KinkContext(target.pattern, target.g, target.arg, problem.y, num.step)

    def verdict(num):
        judged = judge_elements(analytic, num, raised[0] if raised else tolerance)
        if judged.failed.any() and not raised:
            raised.append(dataclasses.replace(tolerance,
                                              resolution=resolution(options.seed)))
            judged = judge_elements(analytic, num, raised[0])
        return settle_with_ties(judged, context(num), finder)

    num = full_numeric(target if method is None else target._replace(method=method))
    if confirm is not None:
        num = dataclasses.replace(num, nfev=int(num.nfev) + confirm(target, num))
    judged = verdict(num)
    num, judged, note = second_look(target, num, judged, verdict,
                                    raised[0] if raised else tolerance, backward)
    num, judged, coarse = coarse_look(target, num, judged, verdict)
    note = "; ".join(n for n in (note, coarse) if n)
    nfev, groups = 0, ""
    if ties:
        judged, nfev, groups = judge_groups_with_ties(
            judged, context(num), finder, lambda v: directional_numeric(target, v),
            raised[0] if raised else tolerance)
    if nfev + finder.nfev:
        num = dataclasses.replace(num, nfev=int(num.nfev) + nfev + finder.nfev)
    return num, judged, "; ".join(n for n in (note, joined_note(judged, num), groups) if n)


def _method_note(num) -> str:
    """The report's note when the differentiator turned down the complex step (its
    cross-check, :mod:`gradcheck.numdiff._acceptance`): which real differences were
    taken instead, and why (empty otherwise)."""
    check = getattr(num, "complex_check", "")
    if not check.startswith("rejected: "):
        return ""
    return (f"differenced by real differences ({num.method}), not the complex step: "
            f"{check[len('rejected: '):]}")


def check_full(problem, options, plan, suspects):
    """Every element of one argument."""
    started = time.perf_counter()
    target = target_of(problem, options, plan)
    analytic = problem.analytic[plan.index]
    confirm = None
    if _probed(plan):
        from gradcheck.checker._probe import confirm_structure as confirm
    num, judged, note = _elements(problem, options, target, analytic,
                                  lambda seed: problem.resolution(plan.index, seed),
                                  plan.method or None, confirm, ties=True,
                                  backward=_backward_of(problem, plan.index))
    diagnosis = diagnose_judgement(
        judged, role=role_of(options.roles[plan.index], plan.index, target.arg),
        suspects=lambda: list(suspects(plan.name, problem.cotangent_f)),
        known=known_of(problem, plan.index))
    report = summarize_full(plan.name, target.arg, analytic.dtype, judged, diagnosis,
                            nfev=num.nfev, started=started, note=note)
    return dataclasses.replace(report, one_sided=one_sided(num, analytic.shape),
                               unseen_at_kinks=unseen_at_kinks(judged),
                               route=_method_note(num),
                               kink_limits=None if judged.left is None else (judged.left,
                                                                             judged.right))


def _sampled_elements(problem, options, plan, target, index, method=None):
    """The elements ``index`` (flat, sorted) of the planned argument, as in full mode:
    ``(judged, nfev, note, method used)`` over those elements."""
    analytic = problem.analytic[plan.index].reshape(-1)[index]
    num, judged, note = _elements(
        problem, options, subset_target(target, index), analytic,
        lambda seed: problem.resolution(plan.index, seed).reshape(-1)[index], method)
    return judged, int(num.nfev), note, num.method


def _sample_within_time(problem, options, plan, target, method):
    """The plan's sample, differenced in two parts: the first quarter of its groups (at
    least ``MIN_SAMPLE``), then as many more as the time those took says fit in the
    sample's share of the time budget (:func:`._sample.groups_that_fit`). ``method``
    (None: the options') is the differentiation method of both parts.
    ``(index, judged, nfev, note)``."""
    from gradcheck.checker._sample import cut_note, first_part, groups_that_fit
    from gradcheck.checker._sampled import merge_samples

    sample = plan.sample
    first = first_part(sample)
    started = time.perf_counter()
    index = np.sort(sample.first(first))
    judged, nfev, note, _ = _sampled_elements(problem, options, plan, target, index, method)
    if first >= sample.groups:
        return index, judged, nfev, note
    more, per_group = groups_that_fit(sample, first, time.perf_counter() - started)
    if more:
        extra = np.sort(sample.between(first, first + more))
        judged2, nfev2, note2, _ = _sampled_elements(problem, options, plan, target, extra,
                                                     method)
        index, judged = merge_samples(index, judged, extra, judged2)
        nfev += nfev2
        note = join_notes(note, note2)     # one second-look note, the counts added
    if first + more < sample.groups:
        note = "; ".join(n for n in (note, cut_note(index.size, sample, per_group)) if n)
    return index, judged, nfev, note


def _directions_over_rest(problem, options, plan, target, analytic, index):
    """Random ±1 directions over the elements not in ``index``: ``(directions,
    judged, nfev, tolerance, num)``, ``num`` the numerical derivatives along them; the
    judgement's ``nondiff`` marks the directions along which the differentiator found a
    kink."""
    directions = rademacher_directions(options.seed, plan.index, options.directions,
                                       target.arg.size)
    directions[:, index] = 0.0
    num = directional_numeric(target, directions)
    tolerance = Tolerance.for_dtype(analytic.dtype, atol=options.atol, rtol=options.rtol,
                                    argument=np.asarray(target.arg).dtype,
                                    length=longest_sum(problem))
    judged = judge_directions(analytic, directions, num, tolerance)
    judged = judged._replace(nondiff=np.asarray(num.nondifferentiable, bool).reshape(-1))
    return directions, judged, int(num.nfev), tolerance, num


def _unconfirmed(options, plan, target, directions, num, along, tolerance, note):
    """After bisection of a failing direction found no failing element: the failing
    directions along which ``f`` is not differentiable (a projection across a kink, a
    max-pool tie, is no derivative: :func:`._along.kinks_along`, fast mode's test) are not
    judged, the others still fail. ``(along, nfev, note)``."""
    from gradcheck.checker._along import kinks_along

    along, nfev, said = kinks_along(options, plan, target, directions, num, along,
                                    tolerance)
    if along.failed.any():
        said = "; ".join(n for n in (said, (
            "no element fails there: the mismatch is spread over elements each within its "
            "tolerance, or lies outside the path bisection took; a full check (mode='full') "
            "tells")) if n)
    else:
        said += ", and no element on the path bisection took fails"
    return along, nfev, "; ".join(n for n in (note, said) if n)


def _method_of_sample(options, plan, target, used):
    """The method every part of a sample is differenced with, decided once on the whole
    argument as full mode decides it: the plan's, when planning chose one (real
    differences where a complex evaluation costs too much, :func:`._probe.cheapest_method`);
    None when the caller chose one (or a structure
    vouches for the complex step: :func:`._numeric.full_numeric` takes it); else the
    method the directions over the rest used (``used``, their complex-step cross-check
    being full mode's: same point, cotangent and seed), or, when there are none, the one
    a single random direction over the whole argument uses. Left to each part, the
    cross-check would run on that part's elements alone, and a part whose real
    differences crossed a kink rejected the complex step that full mode accepts (a
    correct network then failed on real differences wrong beyond their error bars).
    ``(method, evaluations spent)``."""
    if plan.method:             # chosen when planning, by what a complex evaluation costs
        return plan.method, 0
    if options.method != "auto" or getattr(target.pattern, "complex_safe", False):
        return None, 0
    nfev = 0
    if used is None:
        one = rademacher_directions(options.seed, plan.index, 1, target.arg.size)
        num = directional_numeric(target, one)
        used, nfev = num.method, int(num.nfev)
    return ("complex" if used.startswith("complex") else "adaptive"), nfev


def check_sampled(problem, options, plan, suspects):
    """A sample of single elements of one argument, and directions over the rest.

    The directions come first, over every element outside the first part of the sample
    (so an element planned but cut for time is still covered by them; when the sample
    planned is the whole argument, they come after it, over what was cut, if any): with
    ``method="auto"`` their complex-step cross-check, made on the whole argument as full
    mode makes it, also decides the sample's method (a cross-check on a subset of the
    elements is weaker: it once accepted a float32 batch norm's inaccurate complex step
    that the whole argument's rejects).
    """
    from gradcheck.checker._locate import bisect_direction
    from gradcheck.checker._sample import first_part
    from gradcheck.checker._sample_kinks import around_kinks, sample_ties, settled_across
    from gradcheck.checker._sampled import diagnose_sample, merge_samples

    started = time.perf_counter()
    target = target_of(problem, options, plan)
    if plan.method:                 # the plan's method for the directions too
        target = target._replace(method=plan.method)
    analytic = problem.analytic[plan.index]
    size = target.arg.size
    along, used, nfev = None, None, 0
    if plan.sample.index.size < size:
        first = np.sort(plan.sample.first(first_part(plan.sample)))
        directions, along, nfev, tolerance, dnum = _directions_over_rest(problem,
            options, plan, target, analytic, first)
        used = dnum.method
    method, more = _method_of_sample(options, plan, target, used)
    nfev += more
    took = time.perf_counter()
    index, judged, more, note = _sample_within_time(problem, options, plan, target, method)
    took = time.perf_counter() - took
    nfev += more
    if along is None and index.size < size:     # a whole sample, cut for time
        directions, along, more, tolerance, dnum = _directions_over_rest(problem,
            options, plan, target, analytic, index)
        nfev += more
    # a sampled element outside its limits at a kink shared (or maybe shared) with another
    # is no failure once the sample's kinks are settled: settle before asking whether any
    # sampled element fails (else a failing direction across ties is never looked at)
    settled, undecided, said = settled_across(problem, target, index, judged)
    if along is not None and along.failed.any() and not settled.failed.any():
        k = int(np.argmax(excess(along)))
        leaf, used = bisect_direction(target, analytic, directions[k], tolerance)
        leaf = np.sort(leaf)
        extra, more, _, _ = _sampled_elements(problem, options, plan, target, leaf, method)
        nfev += used + more
        index, judged = merge_samples(index, judged, leaf, extra)
        settled, undecided, said = settled_across(problem, target, index, judged)
        found = int(settled.failed[np.isin(index, leaf)].sum())
        note = "; ".join(n for n in (note, (
            f"direction {k} failed while every sampled element passed; bisection "
            f"narrowed it to {leaf.size} element(s), of which {found} fail")) if n)
        if not found:
            along, more, note = _unconfirmed(options, plan, target, directions, dnum, along,
                                             tolerance, note)
            nfev += more
    if not settled.failed.any():
        index, extended, more, grew = around_kinks(
            problem, target, index, judged,
            lambda more: _sampled_elements(problem, options, plan, target, more,
                                           method)[:2],
            seconds=plan.sample.seconds - took, per_element=took / max(index.size, 1))
        if more:
            settled, undecided, said = settled_across(problem, target, index, extended)
            nfev = nfev + more
        note = "; ".join(n for n in (note, grew) if n)
    judged, note = settled, "; ".join(n for n in (note, said) if n)
    judged, more, note = sample_ties(
        problem, options, target, analytic, index, judged, note,
        problem.resolution(plan.index).reshape(-1)[index])
    nfev += more
    diagnosis = diagnose_sample(judged, index, analytic,
                                role=role_of(options.roles[plan.index], plan.index,
                                             target.arg),
                                suspects=lambda: list(suspects(plan.name,
                                                               problem.cotangent_f)),
                                known=known_of(problem, plan.index))
    return summarize_sampled(plan.name, target.arg, analytic,
                             SampleJudged(index, judged, along, undecided), diagnosis,
                             nfev=nfev, started=started, note=note)


def check_fast(problem, options, plan, suspects):
    """Random directional derivatives of one argument; a failing direction along which
    ``f`` is not differentiable is reported, not judged (:func:`._along.kinks_along`)."""
    from gradcheck.checker._along import kinks_along

    started = time.perf_counter()
    target = target_of(problem, options, plan)
    analytic = problem.analytic[plan.index]
    directions = rademacher_directions(options.seed, plan.index, options.directions,
                                       target.arg.size)
    num = directional_numeric(target, directions)
    tolerance = Tolerance.for_dtype(analytic.dtype, atol=options.atol, rtol=options.rtol,
                                    argument=np.asarray(target.arg).dtype,
                                    length=longest_sum(problem))
    judged = judge_directions(analytic, directions, num, tolerance)
    judged, more, note = kinks_along(options, plan, target, directions, num, judged,
                                     tolerance)
    lost = int(unusable(judged.numeric, judged.error).sum())
    if lost:
        note = "; ".join(n for n in (note, (
            f"{lost} direction(s) have no usable numerical derivative (f overflowed or was "
            f"NaN along them, or its error bar did): not checked, so failed")) if n)
    return summarize_fast(plan.name, target.arg, analytic.dtype, judged,
                          nfev=num.nfev + more, started=started, note=note,
                          crossed=num.nondifferentiable)


def report_skipped(problem, options, plan, suspects):
    """An argument that is not checked (the plan says why)."""
    return summarize_skipped(plan.name, problem.args[plan.index], plan.reason)


#: The runner of each plan kind.
RUNNERS = {"full": check_full, "sampled": check_sampled, "fast": check_fast,
           "skipped": report_skipped}
