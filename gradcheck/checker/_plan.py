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

Where no dependency structure is known (a user's function) and differencing every element
on its own would be slow, the structure is probed first (:mod:`._probe`): a full plan
then carries the structure found, the evaluations probing took (``probe_nfev``) and, for
user code whose complex arithmetic is slow, the cheaper real method (``method``). If the
structure breaks while the argument is differenced, :func:`unprobed` plans it again as
without one, and the report says why.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from gradcheck._errors import ConfigurationError
from gradcheck._precision import is_real_float
from gradcheck.checker._diagnose import role_of
from gradcheck.checker._numeric import coloring_of, predicted_groups
from gradcheck.checker._probe import PROBE_MIN_ELEMENTS, cheapest_method, probe_structure
from gradcheck.checker._sample import MAX_SAMPLE, SAMPLE_SHARE, choose_sample

__all__ = ["Plan", "plan_argument", "plan_checked", "unprobed", "PREDICTED_EVALS_PER_GROUP"]

#: Evaluations per group of perturbed elements (the adaptive stencil's five, plus retries).
PREDICTED_EVALS_PER_GROUP = 6
#: A user function's structure is probed only when differencing its elements one by one
#: is predicted to take longer than this (probing takes a few dozen evaluations).
PROBE_WORTH_S = 2.0


class Plan(NamedTuple):
    """How argument ``index`` (named ``name``) will be checked."""

    index: int
    name: str
    kind: str               # "full", "sampled", "fast" or "skipped": a key of the runners
    reason: str = ""        # why, when the options alone do not say (skipped, over budget)
    notice: str = ""        # a line for the report's notes ("" for none)
    pattern: object = None  # the argument's dependency pattern, built for full mode
    sample: object = None   # the Sample of a sampled plan
    method: str = ""        # the differentiation method chosen here ("": the options')
    probe_nfev: int = 0     # evaluations spent probing the structure (gradcheck.checker._probe)


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


def _probed(index, problem, options, pattern, call):
    """A structure found by probing (:mod:`._probe`) where none is known and a full check
    would gain by one -- reverse mode, within ``budget``, at least ``PROBE_MIN_ELEMENTS``
    elements, a full check without it predicted to take over ``PROBE_WORTH_S`` seconds
    -- and the method its cost chooses: ``(pattern, method, probe_nfev, sentence)``."""
    size = problem.args[index].size
    if (pattern is not None or call is not None or size > options.budget
            or size < PROBE_MIN_ELEMENTS
            or size * _group_seconds(problem.f_seconds, None) <= PROBE_WORTH_S):
        return pattern, "", 0, ""
    g, a = problem.of_argument(index), problem.args[index]
    try:
        found = probe_structure(g, a, problem.y, seed=options.seed)
    except Exception as exc:     # noqa: BLE001 -- the differentiator reports it as usual
        return None, "", 0, f"probing for a dependency structure stopped: f raised " \
                            f"{type(exc).__name__}"
    method, why = cheapest_method(g, a, problem.f_seconds, options.method)
    return found.structure, method, found.nfev, found.note + (f"; {why}" if why else "")


def _full(index, name, pattern, method, probe_nfev, probed) -> Plan:
    """A full plan, with what probing found (see :func:`_probed`) in its notice."""
    if probe_nfev and pattern is None:
        probed = f"{probed}; every element differenced on its own"
    return Plan(index, name, "full", notice=f"{name}: {probed}" if probed else "",
                pattern=pattern, method=method, probe_nfev=probe_nfev)


def _within_budget(index, name, problem, options, call=None) -> Plan:
    """``mode="auto"``: full if within both budgets, else what ``over_budget`` says."""
    size = problem.args[index].size
    pattern = _build(options.patterns[index]) if size <= options.budget else None
    pattern, method, probe_nfev, probed = _probed(index, problem, options, pattern, call)
    why = _over_budget(size, pattern, options, problem.f_seconds, call)
    if why is None:
        return _full(index, name, pattern, method, probe_nfev, probed)
    if probe_nfev:
        # a probed structure is trusted only where a full check confirms it at the end
        # (._probe.confirm_structure): a sample or directions go without it, as before
        pattern = None
        why = f"{probed}; {why}"
    if options.over_budget == "refuse":
        raise ConfigurationError(
            f"argument {name!r} is over budget: {why}; raise budget/time_budget, pass "
            f"mode='sampled' or mode='fast', or over_budget='sampled' or 'fast'")
    if options.over_budget == "sampled":
        return _sampled(index, name, problem, options, pattern, why, call)._replace(
            probe_nfev=probe_nfev)
    return Plan(index, name, "fast", why, notice=f"{name}: {why}; checked in fast mode",
                probe_nfev=probe_nfev)


def unprobed(problem, options, plan, why) -> Plan:
    """``plan`` again without the structure probing found, which broke while the argument
    was differenced (:class:`~._probe.StructureBroken`): as if none had been found."""
    index, name = plan.index, plan.name
    lost = f"the dependency structure found by probing did not hold ({why})"
    reason = _over_budget(problem.args[index].size, None, options, problem.f_seconds)
    if reason is None or options.mode == "full":
        return Plan(index, name, "full", notice=f"{name}: {lost}; every element "
                    f"differenced on its own", probe_nfev=plan.probe_nfev)
    why = f"{lost}; {reason}"
    if options.over_budget == "refuse":
        raise ConfigurationError(
            f"argument {name!r} is over budget: {why}; raise budget/time_budget, pass "
            f"mode='sampled' or mode='fast', or over_budget='sampled' or 'fast'")
    if options.over_budget == "fast":
        return Plan(index, name, "fast", why, notice=f"{name}: {why}; checked in fast mode",
                    probe_nfev=plan.probe_nfev)
    return _sampled(index, name, problem, options, None, why)._replace(
        probe_nfev=plan.probe_nfev)


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
    if options.mode == "full":
        pattern = _build(options.patterns[index])
        return _full(index, name, *_probed(index, problem, options, pattern, call))
    return Plan(index, name, options.mode)
