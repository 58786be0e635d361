"""The plan stage: how each argument will be checked, and why.

A :class:`Plan` names its ``kind`` -- a key of the runners in
:mod:`gradcheck.checker._argument` and of forward mode's in
:mod:`gradcheck.checker._forward_runners` (``"full"``, ``"sampled"``, ``"fast"``,
``"skipped"``) -- with the reason when it is not the obvious one. ``mode="full"``,
``"sampled"`` and ``"fast"`` are taken as given. Under ``mode="auto"`` an argument is
checked in full when it has at most ``budget`` elements *and* its full check is
predicted to take at most ``time_budget`` seconds (the groups of elements perturbed
together, about ``PREDICTED_EVALS_PER_GROUP`` evaluations each, times the measured time
of one call of ``f``; in forward mode plus one call of ``f_jvp`` per group, its time
measured too); otherwise it gets the plan ``over_budget`` names -- ``"sampled"`` (the
default: a sample of single elements plus random directions over the rest) or
``"fast"`` (random directions only) -- with a note in the report, or the check is
refused (``over_budget="refuse"``). A sampled plan carries its
:class:`~._sample.Sample`, sized from the time budget (:mod:`gradcheck.checker._sample`).
An argument without elements is skipped, and the report says so. An argument ``f_vjp``
returned no gradient for (``None``) is *not* skipped: ``None`` is a zero gradient, as in
PyTorch, planned and checked like any other (it fails wherever the numerical derivative is
not zero); only ``wrt`` leaves an argument out.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from gradcheck._errors import ConfigurationError
from gradcheck._precision import is_real_float
from gradcheck.checker._diagnose import role_of
from gradcheck.checker._numeric import coloring_of, predicted_groups
from gradcheck.checker._sample import MAX_SAMPLE, SAMPLE_SHARE, choose_sample

__all__ = ["Plan", "plan_argument", "plan_checked", "PREDICTED_EVALS_PER_GROUP"]

#: Evaluations per group of perturbed elements (Richardson's five, plus retries).
PREDICTED_EVALS_PER_GROUP = 6


class Plan(NamedTuple):
    """How argument ``index`` (named ``name``) will be checked."""

    index: int
    name: str
    kind: str               # "full", "sampled", "fast" or "skipped": a key of the runners
    reason: str = ""        # why, when the options alone do not say (skipped, over budget)
    notice: str = ""        # a line for the report's notes ("" for none)
    pattern: object = None  # the argument's dependency pattern, built for full mode
    sample: object = None   # the Sample of a sampled plan


def _skip(index, name, problem):
    """The reason to skip the argument, or None (a complex argument is refused)."""
    arg = problem.args[index]
    if not is_real_float(arg.dtype):
        raise ConfigurationError(
            f"argument {name!r} has dtype {arg.dtype}; gradients are checked for real "
            f"arguments: pass the real and imaginary parts as two real arrays")
    if arg.size == 0:
        return "empty (0 elements)"
    return None


def _build(pattern):
    """A pattern given as a callable is built only when needed: in full mode."""
    return pattern() if callable(pattern) else pattern


def _group_seconds(f_seconds, call) -> float:
    """Predicted seconds per group of elements: ``f``'s evaluations, plus one call of
    ``call`` (``(name, seconds)``, forward mode's ``f_jvp``) when given."""
    return PREDICTED_EVALS_PER_GROUP * f_seconds + (call[1] if call else 0.0)


def _over_budget(size, pattern, options, f_seconds, call=None):
    """Why a full check of an argument is over budget, or None (``call``: a function
    called once per group besides ``f``, see :func:`_group_seconds`)."""
    if size > options.budget:
        return f"{size} elements > budget {options.budget}"
    groups = predicted_groups(pattern, size)
    evals = PREDICTED_EVALS_PER_GROUP * groups
    took = groups * _group_seconds(f_seconds, call)
    if took > options.time_budget:
        about = f"{took:.0f}" if took >= 10 else f"{took:.2g}"
        calls = f" and {groups} calls of {call[0]} of {1e3 * call[1]:.2g} ms" if call else ""
        return (f"a full check would take about {about} s ({evals} evaluations of "
                f"{1e3 * f_seconds:.2g} ms{calls}) > time_budget {options.time_budget:g} s")
    return None


def _sampled(index, name, problem, options, pattern, why="", call=None) -> Plan:
    """A sample of single elements sized from the time budget (see :mod:`._sample`)."""
    arg = problem.args[index]
    per_group = _group_seconds(problem.f_seconds, call)
    allowed = (math.floor(SAMPLE_SHARE * options.time_budget / per_group) if per_group > 0
               else MAX_SAMPLE)
    sample = choose_sample(arg.shape, role_of(options.roles[index], index, arg),
                           seed=options.seed, index=index, groups_allowed=allowed,
                           colors=coloring_of(pattern, arg.size))
    sample = sample._replace(seconds=SAMPLE_SHARE * options.time_budget)
    # the report's note completes the notice with what was checked (_check._check_report)
    notice = f"{name}: {why}; checked in sampled mode" if why else f"{name}"
    return Plan(index, name, "sampled", why, notice=notice, pattern=pattern, sample=sample)


def _within_budget(index, name, problem, options, call=None) -> Plan:
    """``mode="auto"``: full if within both budgets, else what ``over_budget`` says."""
    size = problem.args[index].size
    pattern = _build(options.patterns[index]) if size <= options.budget else None
    why = _over_budget(size, pattern, options, problem.f_seconds, call)
    if why is None:
        return Plan(index, name, "full", pattern=pattern)
    if options.over_budget == "refuse":
        raise ConfigurationError(
            f"argument {name!r} is over budget: {why}; raise budget/time_budget, pass "
            f"mode='sampled' or mode='fast', or over_budget='sampled' or 'fast'")
    if options.over_budget == "sampled":
        return _sampled(index, name, problem, options, pattern, why, call)
    return Plan(index, name, "fast", why, notice=f"{name}: {why}; checked in fast mode")


def plan_argument(problem, options, index: int) -> Plan:
    """The plan for argument ``index`` of the scalarized ``problem``."""
    name = options.argnames[index]
    why = _skip(index, name, problem)
    if why is not None:
        return Plan(index, name, "skipped", why)
    return plan_checked(problem, options, index)


def plan_checked(problem, options, index: int, *, call=None) -> Plan:
    """The plan of argument ``index`` once it is known to be checked: the mode given, or
    under ``mode="auto"`` what the budgets say (forward mode plans through here too,
    with ``call=("f_jvp", seconds)``: each group of elements also calls ``f_jvp`` once).
    """
    name = options.argnames[index]
    if options.mode == "auto":
        return _within_budget(index, name, problem, options, call)
    if options.mode == "sampled":
        size = problem.args[index].size
        pattern = _build(options.patterns[index]) if size <= options.budget else None
        return _sampled(index, name, problem, options, pattern, call=call)
    pattern = _build(options.patterns[index]) if options.mode == "full" else None
    return Plan(index, name, options.mode, pattern=pattern)
