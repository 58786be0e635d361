r"""Forward mode's entry point: :func:`check_jvp`, the reverse pipeline's stages reused.

::

    validate    options and arguments, once                      _options.validate
    scalarize   f twice at the point (no cotangent)              _forward.scalarize_forward
    for each argument:
      plan          full / sampled / fast / skipped, the same    _forward.plan_forward
                    budgets (f_jvp's time counted)
      probes        columns (colored by the pattern), a sample's _forward
                    columns, or random tangent directions
      differentiate numerical JVPs along the probes, in batches  _forward_probes
      judge         entry by entry over the output (pure)        _judge, _tolerance
      second look   failing probes differenced again             _forward_probes
      settle kinks  entries at a kink along several columns      _forward_probes.Tally
      diagnose      the worst probe's JVP, causes named          _diagnose, _causes
                    against the output's shape
      locate        sampled: a failing direction bisected to a   _forward_sampled,
                    column                                       _locate
      report        one ArgumentReport                           _forward_runners
    report      the CheckReport, with what was weakened          _check_jvp

Why a forward check at all: ``f_jvp`` is code of its own (a ``custom_jvp`` rule, a
``torch.autograd.Function.jvp``, a hand-written tangent map). A reverse check never
calls it, so a wrong JVP next to a right VJP passes every reverse check; the forward
check judges the JVP itself.

Modes
-----
``"full"`` compares every column :math:`J e_j` of each argument's Jacobian with the
numerical directional derivative of ``f`` along :math:`e_j`, every entry of it over the
output. With a dependency pattern (``patterns``) elements whose outputs do not overlap
are moved together, one evaluation for many columns, exactly as reverse mode colors
them. ``"fast"`` compares ``directions`` random tangents (entries ±1), each JVP entry
by entry over the output, for the report and the diagnosis; but along a random direction
an output can cross several kinks at once, where :math:`J v` need not be the directional
derivative though the code is right, so a direction's mismatches stand only where ``f``
is shown differentiable and the direction's projection on a seeded cotangent (the number
reverse fast mode judges) disagrees too (:mod:`._forward_probes`): fast mode's reach is
reverse fast mode's (a float64 entry off by 1e-5 is caught, one float32 entry off by 2%
in a tensor of a few hundred elements is not), and the element behind a wrong entry is
not located. ``"sampled"`` compares the Jacobian columns of a sample of elements in
full, as ``"full"`` does, and ``directions`` random tangents over the other elements, as
``"fast"`` does; a direction that fails while every sampled column passes is bisected to
a few elements whose columns are then checked in full (:mod:`._forward_sampled`). It
proves the sampled columns right and the rest as fast mode does; the sample is reverse
mode's (:mod:`._sample`), sized so that its columns take about a quarter of
``time_budget``. ``"auto"`` chooses per argument with the reverse mode's budgets
(``budget``, ``time_budget``; the predicted time counts ``f``'s evaluations and one call
of ``f_jvp`` per probe, both measured at the point), and above either does what
``over_budget`` says (``"sampled"`` by default), with a note.
"""

from __future__ import annotations

import time
from typing import Callable

from gradcheck._errors import ConfigurationError
from gradcheck.checker._diagnose import TensorRole
from gradcheck.checker._forward import plan_forward, scalarize_forward
from gradcheck.checker._forward_runners import FORWARD_RUNNERS
from gradcheck.checker._numeric import DEFAULT_MEMORY
from gradcheck.checker._options import (DEFAULT_BUDGET, DEFAULT_DIRECTIONS,
                                        DEFAULT_TIME_BUDGET, Options, validate)
from gradcheck.checker._report import CheckReport
from gradcheck.checker._tolerance import real_eps

__all__ = ["check_jvp"]

_ROLES = ("input", "weight", "bias", "generic")


def _output_role(value):
    if value is None or isinstance(value, TensorRole) or value in _ROLES:
        return value
    raise ConfigurationError(f"output_role must be None, one of {_ROLES} or a TensorRole; "
                             f"got {value!r}")


def check_jvp(f: Callable, f_jvp: Callable, args, *, argnames=None, wrt=None, mode="auto",
              seed=0, atol=None, rtol=None, budget=DEFAULT_BUDGET, over_budget="sampled",
              directions=DEFAULT_DIRECTIONS, method="auto", patterns=None, vectorized=None,
              output_role=None, suspects=None, name=None, memory=DEFAULT_MEMORY,
              time_budget=DEFAULT_TIME_BUDGET) -> CheckReport:
    r"""Check a forward-mode derivative ``f_jvp`` against numerical derivatives of ``f``.

    Parameters
    ----------
    f : callable
        ``f(*args)`` returns a real array.
    f_jvp : callable
        ``f_jvp(tangents, *args)`` returns the output tangent :math:`\sum_k J_k t_k`,
        shaped like ``f(*args)``, for ``tangents`` holding one array per argument (shaped
        and typed like it; the check passes zeros for the arguments it is not probing).
    args : sequence of array_like
        The point at which to check. Must be finite.
    argnames, wrt, mode, seed, atol, rtol, budget, over_budget, directions, method,
    patterns, vectorized, name, memory, time_budget
        As in :func:`~gradcheck.check_vjp`, validated by the same rules. ``mode="full"``
        checks every column of each argument's Jacobian, ``"sampled"`` the columns of a
        sample of elements plus ``directions`` random tangents over the rest, ``"fast"``
        ``directions`` random tangents; ``seed`` seeds the sample and the directions.
    output_role : {"input", "weight", "bias", "generic"} or TensorRole, optional
        The layout of ``f``'s output, used to name causes of a mismatch (by default
        ``(N, C, *spatial)`` for an output of three axes or more, else generic).
    suspects : callable, optional
        ``suspects(argname, tangent) -> [Suspect, ...]``: JVPs (shaped like the output)
        that known bugs would give along ``tangent``, tested first when a check fails.

    Returns
    -------
    CheckReport
        With ``ad_mode == "fwd"``. Per argument: ``n_checked`` columns (full, sampled)
        or directions (fast), ``n_failed`` of them wrong, ``worst_index`` the element (or
        direction) and ``output_index`` the output entry of the worst Jacobian entry;
        sampled: ``n_directions`` over the rest, ``n_directions_failed`` of them wrong.

    Raises
    ------
    ConfigurationError
        Invalid options or arguments.
    UserCodeError
        ``f`` or ``f_jvp`` raised, returned NaN/inf, or returned the wrong shape.

    Notes
    -----
    Reverse-mode options without a forward meaning are not taken: ``cotangent`` (there
    is none) and ``roles`` (causes are named against the output: ``output_role``).
    Elements at a kink are judged by the one-sided derivatives along their column, as in
    reverse mode; the stages are mapped in :mod:`gradcheck.checker._check_jvp`.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_jvp
    >>> f = lambda x, w: np.tanh(x * w)
    >>> def f_jvp(t, x, w):
    ...     tx, tw = t
    ...     return (1 - np.tanh(x * w) ** 2) * (tx * w + x * tw)
    >>> x, w = np.linspace(-1.0, 1.0, 5), np.full(5, 0.7)
    >>> report = check_jvp(f, f_jvp, (x, w), argnames=("x", "w"))
    >>> report.passed, report["x"].n_checked, report.ad_mode
    (True, 5, 'fwd')
    >>> def wrong(t, x, w):             # the tangent of w forgotten
    ...     return (1 - np.tanh(x * w) ** 2) * t[0] * w
    >>> report = check_jvp(f, wrong, (x, w), argnames=("x", "w"))
    >>> report.passed, report["x"].passed, report["w"].n_failed
    (False, True, 4)
    """
    started = time.perf_counter()
    options, args = validate(f, f_jvp, args, Options(
        argnames=argnames, wrt=wrt, mode=mode, seed=seed, atol=atol, rtol=rtol, budget=budget,
        over_budget=over_budget, directions=directions, method=method, patterns=patterns,
        vectorized=vectorized, suspects=suspects, name=name, memory=memory,
        time_budget=time_budget), derivative="f_jvp")
    problem = scalarize_forward(f, f_jvp, args, options, _output_role(output_role))
    plans = [plan_forward(problem, options, i) for i in options.wrt]
    reports = tuple(FORWARD_RUNNERS[plan.kind](problem, options, plan, options.suspects)
                    for plan in plans)
    return _forward_report(options, problem, plans, reports, started)


def _forward_report(options, problem, plans, reports, started) -> CheckReport:
    """The verdict over every argument, as reverse mode's: a check that checked nothing
    does not pass, and what weakened it is said (a JVP in a coarser dtype than its
    argument, the caller's tolerance floor)."""
    # a sampled argument's notice ends with what its sample held (known after the run)
    notes = [f"{plan.notice}: {r.note}" if plan.kind == "sampled" else plan.notice
             for plan, r in zip(plans, reports) if plan.notice]
    for plan, r in zip(plans, reports):
        arg = problem.args[plan.index]
        if r.mode != "skipped" and real_eps(r.dtype) > real_eps(arg.dtype):
            notes.append(f"{r.name}: f_jvp returned {r.dtype} for a {arg.dtype} argument, so "
                         f"it is checked at {r.dtype} tolerance (eps {real_eps(r.dtype):.3g} "
                         f"instead of {real_eps(arg.dtype):.3g}): errors up to about 1e-5 "
                         f"relative can go unseen")
    given = [f"{k}={v:g}" for k, v in (("atol", options.atol), ("rtol", options.rtol))
             if v is not None]
    if given:
        notes.append(f"{' and '.join(given)} given: every allowance is raised to at least "
                     f"atol + rtol * |value|, on top of the automatic tolerance")
    passed = all(r.passed for r in reports)
    if not any(r.mode != "skipped" for r in reports):
        passed = False
        notes.append("no argument was checked: every one was skipped (no elements, or an "
                     "empty output)")
    return CheckReport(name=options.name, passed=passed, mode=options.mode, seed=options.seed,
                       arguments=reports, elapsed_s=time.perf_counter() - started,
                       nfev=2 + sum(r.nfev for r in reports), dtype=str(problem.y.dtype),
                       notes=tuple(notes), ad_mode="fwd")
