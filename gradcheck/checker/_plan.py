"""The plan stage: how each argument will be checked, and why.

A :class:`Plan` names its ``kind`` -- a key of the runners in
:mod:`gradcheck.checker._argument` and of forward mode's in
:mod:`gradcheck.checker._forward_runners` (``"full"``, ``"sampled"``, ``"fast"``,
``"skipped"``) -- with the reason when it is not the obvious one. ``mode="full"``,
``"sampled"`` and ``"fast"`` are taken as given. Under ``mode="auto"`` an argument is
checked in full when it has at most ``budget`` elements *and* its full check is
predicted to take at most ``time_budget`` seconds (the groups of elements perturbed
together, about ``PREDICTED_EVALS_PER_GROUP`` evaluations each, times the measured time
of one call of ``f`` plus what forming each perturbed point and reducing its output takes,
measured too (:func:`._timing.point_seconds`: for a cheap ``f`` of a large argument,
most of the time); in forward mode plus one call of ``f_jvp`` per group, its time
measured too); otherwise it gets the plan ``over_budget`` names -- ``"sampled"`` (the
default: a sample of single elements plus random directions over the rest) or
``"fast"`` (random directions only) -- with a note in the report, or the check is
refused (``over_budget="refuse"``). A full plan ``mode="auto"`` chose carries its
prediction (:class:`~._timing.Watch`): a check that runs on past ``OVERRUN`` times
``time_budget`` is stopped and planned again as over budget (:func:`over_time`), which
the report says. A sampled plan carries its
:class:`~._sample.Sample`, sized from the time budget (:mod:`gradcheck.checker._sample`).
An argument without elements is skipped, and the report says so. An argument ``f_vjp``
returned no gradient for (``None``) is *not* skipped: ``None`` is a zero gradient, as in
PyTorch, planned and checked like any other (it fails wherever the numerical derivative is
not zero); only ``wrt`` leaves an argument out.

Where no dependency structure is known (a user's function) and differencing every element
on its own would take many evaluations, the structure is probed first (:mod:`._probe`): a
full plan then carries the structure found, the evaluations probing took (``probe_nfev``)
and, under ``mode="auto"``, for user code whose complex arithmetic is slow, the cheaper
real method (``method``). If the structure breaks while the argument is differenced,
:func:`unprobed` plans it again as without one, and the report says why.

What is decided from a clock, and what is not: a route chosen only for speed is decided
from counts -- elements, evaluations -- never from seconds measured, so that the same
check of the same point takes the same route, and reports the same numbers, on a quiet
machine and on a loaded one (a re-run in CI, ``gradcheck check -j N`` or ``--shard``).
Whether to probe is such a choice (:func:`_probed`: an element count), and so is the
method of ``mode="full"`` (the differentiator's own choice: the complex step where its
cross-check accepts it). Only ``mode="auto"`` reads the clock, where the user's
``time_budget`` is at stake: whether a full check fits (:func:`_over_budget`), the size of
a sample, the re-planning of a check that runs over (:func:`over_time`), and real
differences where a complex evaluation was measured dearer than
``COMPLEX_COST_LIMIT`` real ones (:func:`._probe.cheapest_method`, whose prediction is
what fits the budget); the report's notes say which route was taken and why.
"""

from __future__ import annotations

import math

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._precision import is_real_float
from gradcheck._record import NamedTuple
from gradcheck.checker._diagnose import role_of
from gradcheck.checker._numeric import coloring_of, predicted_groups
from gradcheck.checker._timing import REAL_EVALS_PER_GROUP, Watch, point_seconds, timed

# imported where used: ._probe (probing a user function's structure) and ._sample (a
# sampled plan), which a full check of built-in layers, the usual passing check, never
# runs (some 55 KB of bytecode to load)

__all__ = ["Plan", "plan_argument", "plan_checked", "unprobed", "over_time",
           "PREDICTED_EVALS_PER_GROUP", "PROBE_WORTH_EVALS"]

#: Evaluations per group of perturbed elements (the adaptive stencil's five, plus retries).
PREDICTED_EVALS_PER_GROUP = REAL_EVALS_PER_GROUP
#: A user function's structure is probed only when differencing its elements one by one
#: is predicted to take at least this many evaluations (``PREDICTED_EVALS_PER_GROUP`` an
#: element; probing takes a few dozen, so it costs at most a few percent where it finds
#: nothing): a count, not seconds measured, so that the route does not depend on how
#: loaded the machine is. ``PROBE_MIN_ELEMENTS`` (:mod:`._probe`) elements reach it.
PROBE_WORTH_EVALS = 3072
#: ``mode="auto"``: what a complex evaluation costs is measured (:func:`_real_if_cheaper`)
#: only where a full check is predicted to take at least this many seconds.
METHOD_WORTH_S = 2.0
#: ``mode="auto"``: a full check predicted over ``time_budget`` from ``f``'s first two
#: calls (which may pay for warm-up, or meet a busy machine) is predicted again from
#: ``RETIMED_CALLS`` more, the fastest of all taken, where those calls cost at most
#: ``RETIME_SHARE`` of the budget.
RETIMED_CALLS = 3
RETIME_SHARE = 0.05


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
    watch: object = None    # a full plan mode="auto" chose: its prediction (._timing.Watch)


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


class _Cost(NamedTuple):
    """Measured seconds of one evaluation while differencing an argument: ``f``'s call and
    forming the point and reducing its output (:func:`._timing.point_seconds`)."""

    f: float
    point: float = 0.0

    @property
    def each(self) -> float:
        return self.f + self.point

    def __str__(self) -> str:
        return (f"{1e3 * self.each:.2g} ms: f {1e3 * self.f:.2g} ms, forming and reducing "
                f"the point {1e3 * self.point:.2g} ms") if self.point else \
            f"{1e3 * self.f:.2g} ms"


def _cost(problem, index) -> _Cost:
    """The cost of one evaluation of argument ``index`` (forward mode has no cotangent:
    its outputs are weighed alike)."""
    cotangent = getattr(problem, "cotangent", None)
    return _Cost(problem.f_seconds, point_seconds(
        problem.args[index], problem.y,
        np.ones(np.shape(problem.y)) if cotangent is None else cotangent))


def _timed_again(problem, index, options, cost) -> _Cost:
    """``cost`` measured again before a full check is given up for time: ``f``'s fastest
    of ``RETIMED_CALLS`` more calls and of the first two, and the point's cost measured
    again, the smaller of each (unchanged where the calls would cost more than
    ``RETIME_SHARE`` of the budget)."""
    if RETIMED_CALLS * cost.f > RETIME_SHARE * options.time_budget:
        return cost
    g, a = problem.of_argument(index), problem.args[index]
    f = min(cost.f, min(timed(lambda: g(a), repeats=1) for _ in range(RETIMED_CALLS)))
    return _Cost(f, min(cost.point, _cost(problem, index).point))


def _group_seconds(cost, call) -> float:
    """Predicted seconds per group of elements: its evaluations (``cost``, a
    :class:`_Cost` or seconds), plus one call of ``call`` (``(name, seconds)``, forward
    mode's ``f_jvp``) when given."""
    each = cost.each if isinstance(cost, _Cost) else cost
    return PREDICTED_EVALS_PER_GROUP * each + (call[1] if call else 0.0)


def _over_budget(size, pattern, options, cost, call=None):
    """Why a full check of an argument is over budget, or None (``cost``: a
    :class:`_Cost`; ``call``: a function called once per group besides ``f``, see
    :func:`_group_seconds`)."""
    if size > options.budget:
        return f"{size} elements > budget {options.budget}"
    groups = predicted_groups(pattern, size)
    evals = PREDICTED_EVALS_PER_GROUP * groups
    took = groups * _group_seconds(cost, call)
    if took > options.time_budget:
        about = f"{took:.0f}" if took >= 10 else f"{took:.2g}"
        calls = f" and {groups} calls of {call[0]} of {1e3 * call[1]:.2g} ms" if call else ""
        return (f"a full check would take about {about} s ({evals} evaluations of "
                f"{cost}{calls}) > time_budget {options.time_budget:g} s")
    return None


def _watch(size, pattern, options, cost) -> Watch:
    """The prediction a full plan chosen by ``mode="auto"`` is held to."""
    return Watch(options.time_budget, predicted_groups(pattern, size), cost.each)


def _sampled(index, name, problem, options, pattern, why="", call=None, cost=None) -> Plan:
    """A sample of single elements sized from the time budget (see :mod:`._sample`) and
    ``cost`` (seconds per evaluation: measured, or :func:`_cost`)."""
    from gradcheck.checker._sample import MAX_SAMPLE, SAMPLE_SHARE, choose_sample

    arg = problem.args[index]
    per_group = _group_seconds(_cost(problem, index) if cost is None else cost, call)
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
    elements, differencing them one by one predicted to take at least
    ``PROBE_WORTH_EVALS`` evaluations: counts, the same however loaded the machine is --
    and, under ``mode="auto"`` only, the method a measured cost chooses (a full check
    leaves it to the differentiator, which decides without a clock):
    ``(pattern, method, probe_nfev, sentence)``."""
    size = problem.args[index].size
    if pattern is not None or call is not None or size > options.budget:
        return pattern, "", 0, ""
    from gradcheck.checker._probe import PROBE_MIN_ELEMENTS

    if size < PROBE_MIN_ELEMENTS or PREDICTED_EVALS_PER_GROUP * size < PROBE_WORTH_EVALS:
        return pattern, "", 0, ""
    from gradcheck.checker._probe import cheapest_method, probe_structure

    g, a = problem.of_argument(index), problem.args[index]
    try:
        found = probe_structure(g, a, problem.y, seed=options.seed)
    except Exception as exc:     # noqa: BLE001 -- the differentiator reports it as usual
        return None, "", 0, f"probing for a dependency structure stopped: f raised " \
                            f"{type(exc).__name__}"
    method, why = "", ""
    if options.mode == "auto":      # a matter of the time budget: measured (see above)
        method, why = cheapest_method(g, a, problem.f_seconds, options.method)
    return found.structure, method, found.nfev, found.note + (f"; {why}" if why else "")


def _real_if_cheaper(index, problem, options, pattern, cost):
    """``(method, sentence)``: real differences where the complex step would cost more
    (:func:`._probe.cheapest_method`), asked of a full check the prediction counted in
    real evaluations (``PREDICTED_EVALS_PER_GROUP`` a group: the complex step's two are
    within it only while one complex evaluation costs at most three real ones) when it
    is predicted to take a while (``METHOD_WORTH_S``, or ``SAMPLE_SHARE`` of the
    budget); ``("", "")`` otherwise. A structure that vouches for the complex step
    (built-in layers) keeps it."""
    if options.method != "auto" or getattr(pattern, "complex_safe", False):
        return "", ""
    from gradcheck.checker._sample import SAMPLE_SHARE

    size = problem.args[index].size
    took = predicted_groups(pattern, size) * _group_seconds(cost, None)
    if took < min(METHOD_WORTH_S, SAMPLE_SHARE * options.time_budget):
        return "", ""
    from gradcheck.checker._probe import cheapest_method

    return cheapest_method(problem.of_argument(index), problem.args[index],
                           problem.f_seconds, options.method)


def _full(index, name, pattern, method, probe_nfev, probed, watch=None) -> Plan:
    """A full plan, with what probing found (see :func:`_probed`) in its notice."""
    if probe_nfev and pattern is None:
        probed = f"{probed}; every element differenced on its own"
    return Plan(index, name, "full", notice=f"{name}: {probed}" if probed else "",
                pattern=pattern, method=method, probe_nfev=probe_nfev, watch=watch)


def _within_budget(index, name, problem, options, call=None) -> Plan:
    """``mode="auto"``: full if within both budgets, else what ``over_budget`` says."""
    size = problem.args[index].size
    pattern = _build(options.patterns[index]) if size <= options.budget else None
    cost = _cost(problem, index)
    pattern, method, probe_nfev, probed = _probed(index, problem, options, pattern, call)
    why = _over_budget(size, pattern, options, cost, call)
    if why is not None and size <= options.budget:
        cost = _timed_again(problem, index, options, cost)
        why = _over_budget(size, pattern, options, cost, call)
    if why is None:
        if not method and call is None:
            method, cheaper = _real_if_cheaper(index, problem, options, pattern, cost)
            probed = "; ".join(n for n in (probed, cheaper) if n)
        return _full(index, name, pattern, method, probe_nfev, probed,
                     None if call else _watch(size, pattern, options, cost))
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
        return _sampled(index, name, problem, options, pattern, why, call, cost)._replace(
            probe_nfev=probe_nfev, method=method)
    return Plan(index, name, "fast", why, notice=f"{name}: {why}; checked in fast mode",
                probe_nfev=probe_nfev)


def unprobed(problem, options, plan, why) -> Plan:
    """``plan`` again without the structure probing found, which broke while the argument
    was differenced (:class:`~._probe.StructureBroken`): as if none had been found."""
    index, name = plan.index, plan.name
    lost = f"the dependency structure found by probing did not hold ({why})"
    size = problem.args[index].size
    if options.mode == "full":      # the mode given: no clock is read
        return Plan(index, name, "full", notice=f"{name}: {lost}; every element "
                    f"differenced on its own", probe_nfev=plan.probe_nfev)
    cost = _cost(problem, index)
    reason = _over_budget(size, None, options, cost)
    if reason is None:
        return Plan(index, name, "full", notice=f"{name}: {lost}; every element "
                    f"differenced on its own", probe_nfev=plan.probe_nfev,
                    watch=_watch(size, None, options, cost))
    why = f"{lost}; {reason}"
    fast = _refused_or_fast(plan, why, options)
    if fast is not None:
        return fast
    return _sampled(index, name, problem, options, None, why, cost=cost)._replace(
        probe_nfev=plan.probe_nfev)


def _refused_or_fast(plan, why, options) -> Plan | None:
    """An argument over budget (``why``) as ``over_budget`` says: refused (raises), or
    planned in fast mode; None where it is to be sampled."""
    if options.over_budget == "refuse":
        raise ConfigurationError(
            f"argument {plan.name!r} is over budget: {why}; raise budget/time_budget, pass "
            f"mode='sampled' or mode='fast', or over_budget='sampled' or 'fast'")
    if options.over_budget == "fast":
        return Plan(plan.index, plan.name, "fast", why,
                    notice=f"{plan.name}: {why}; checked in fast mode",
                    probe_nfev=plan.probe_nfev)
    return None


def over_time(problem, options, plan, stopped) -> Plan:
    """``plan`` again after its full check was stopped for time (``stopped``, an
    :class:`~._timing.OverTime`): as over budget, a sample sized from the time each
    evaluation really took (or fast mode, or a refusal, as ``over_budget`` says)."""
    index, name = plan.index, plan.name
    why = str(stopped)
    fast = _refused_or_fast(plan, why, options)
    if fast is not None:
        return fast
    # a probed structure goes only with a full check that confirms it (see _within_budget)
    pattern = None if plan.probe_nfev else plan.pattern
    return _sampled(index, name, problem, options, pattern, why,
                    cost=stopped.elapsed / max(stopped.evals, 1))._replace(
        probe_nfev=plan.probe_nfev, method=plan.method)


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
        # the mode given, the route from counts alone: no clock is read (see above)
        pattern = _build(options.patterns[index])
        return _full(index, name, *_probed(index, problem, options, pattern, call))
    return Plan(index, name, options.mode)
