"""One argument through the pipeline, per plan kind.

:data:`RUNNERS` maps a :class:`~gradcheck.checker._plan.Plan`'s kind to the function that
carries the argument through the stages that kind has:

- ``"full"``: differentiate every element (:func:`._numeric.full_numeric`), judge them
  (:func:`._judge.judge_elements`), settle shared kinks (:func:`._kinks.settle_kinks`),
  take a second look at the mismatches (:func:`._numeric.second_look`), diagnose
  (:func:`._diagnose.diagnose_judgement`, with what is known of the argument:
  :func:`known_of`), report (:func:`._summarize.summarize_full`);
- ``"fast"``: differentiate along random directions (:func:`._numeric.directional_numeric`),
  judge the projections (:func:`._judge.judge_directions`), report;
- ``"skipped"``: report why.

Every runner takes the same four things -- the scalarized problem, the validated
options, the plan, and the suspects (what is known about ``f``) -- and returns an
:class:`~gradcheck.checker._report.ArgumentReport`. A new kind of plan is a new runner
and one more entry here.
"""

from __future__ import annotations

import time

import numpy as np

from gradcheck.checker._diagnose import diagnose_judgement, role_of
from gradcheck.checker._fit import Known, named_sizes
from gradcheck.checker._judge import judge_directions, judge_elements
from gradcheck.checker._kinks import KinkContext, settle_kinks
from gradcheck.checker._numeric import (
    Target,
    directional_numeric,
    full_numeric,
    rademacher_directions,
    second_look,
)
from gradcheck.checker._summarize import summarize_fast, summarize_full, summarize_skipped
from gradcheck.checker._tolerance import Tolerance

__all__ = ["RUNNERS", "target_of", "known_of"]


def target_of(problem, options, plan) -> Target:
    """What the differentiator needs for the planned argument."""
    i = plan.index
    return Target(problem.of_argument(i), problem.args[i], problem.cotangent, plan.pattern,
                  options.vectorized[i], options.method, options.seed, options.memory)


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
                 forward=problem.of_argument(index), missing=index in problem.missing)


def check_full(problem, options, plan, suspects):
    """Every element of one argument."""
    started = time.perf_counter()
    target = target_of(problem, options, plan)
    analytic = problem.analytic[plan.index]
    tolerance = Tolerance.for_dtype(analytic.dtype, atol=options.atol, rtol=options.rtol,
                                    resolution=problem.resolution(plan.index))

    def verdict(num):
        judged = judge_elements(analytic, num, tolerance)
        return settle_kinks(judged, KinkContext(plan.pattern, target.g, target.arg,
                                                problem.y, num.step))

    num = full_numeric(target)
    num, judged, note = second_look(target, num, verdict(num), verdict, tolerance)
    diagnosis = diagnose_judgement(
        judged, role=role_of(options.roles[plan.index], plan.index, target.arg),
        suspects=lambda: list(suspects(plan.name, problem.cotangent_f)),
        known=known_of(problem, plan.index))
    return summarize_full(plan.name, target.arg, analytic.dtype, judged, diagnosis,
                          nfev=num.nfev, started=started, note=note)


def check_fast(problem, options, plan, suspects):
    """Random directional derivatives of one argument."""
    started = time.perf_counter()
    target = target_of(problem, options, plan)
    analytic = problem.analytic[plan.index]
    directions = rademacher_directions(options.seed, plan.index, options.directions,
                                       target.arg.size)
    num = directional_numeric(target, directions)
    tolerance = Tolerance.for_dtype(analytic.dtype, atol=options.atol, rtol=options.rtol)
    judged = judge_directions(analytic, directions, num, tolerance)
    return summarize_fast(plan.name, target.arg, analytic.dtype, judged, nfev=num.nfev,
                          started=started)


def report_skipped(problem, options, plan, suspects):
    """An argument that is not checked (the plan says why)."""
    return summarize_skipped(plan.name, problem.args[plan.index], plan.reason)


#: The runner of each plan kind.
RUNNERS = {"full": check_full, "fast": check_fast, "skipped": report_skipped}
