r"""The checker's entry point: :func:`check_vjp` is a pipeline of named stages.

::

    validate    options and arguments, once                      _options.validate
    scalarize   C = <R, f>: f twice, R, f_vjp(R, *args)          _scalarize.scalarize
    for each argument:
      plan          full / sampled / fast / skipped, and why     _plan.plan_argument
      differentiate the numerical side, with its second look     _numeric
      judge         analytic vs numeric under a Tolerance (pure) _judge, _tolerance
      settle kinks  which kinks are shared, so not judged        _kinks.settle_kinks
      diagnose      the likely cause of a mismatch               _diagnose, _causes
      report        one ArgumentReport                           _summarize
    report      the CheckReport, with what was weakened          _report, _notes

The per-argument stages of each plan kind are run by :data:`._argument.RUNNERS`.

Modes
-----
``"full"`` compares every element: it proves every element right (to the tolerance), and
locates and diagnoses any mismatch. ``"fast"`` compares ``directions`` random directional
derivatives :math:`\langle \nabla C, v\rangle` (Rademacher ``v``, entries ±1): its cost
does not grow with the size of the argument (a few evaluations per direction: 24 per
argument for the default 8 when the complex step applies, against about two per element
and color in full mode), and it
catches any bug that moves the gradient as a whole -- a wrong sign, scale, flip, shift,
channel, region: such an error changes every projection by a sizeable fraction of
:math:`\lVert \nabla C\rVert`.

What fast mode cannot catch: **one wrong element in a large tensor.** An error
:math:`\delta` in one element enters each projection with weight ±1, while the
projection's error bar grows with the whole gradient: measured on convolutions, the
allowed difference is about :math:`10^{-12}\lVert g\rVert` in float64 and
:math:`10^{-4}`–:math:`10^{-3}\lVert g\rVert` in float32 (:math:`\lVert g\rVert \approx
\sqrt{n}` times a typical entry for ``n`` elements). So a single float32 entry off by 2%
goes unseen once the tensor has a few thousand elements, and a float64 entry off by
:math:`10^{-5}` only beyond about :math:`10^{12}` elements; full mode catches both at
any size. Fast mode gives no diagnosis and reports no kinks (a projection straddling a
kink is judged on its error bar).

``"sampled"`` compares a deterministic sample of single elements exactly as full mode
does -- every batch item and channel, the corners and the borders (where padding and
stride bugs live), every output/input channel pair's taps of a weight as the budget
allows, then random elements (:mod:`._sample`) -- and projects the rest onto
``directions`` random directions as fast mode does. It proves the sampled elements
right, and the rest only as fast mode proves anything: a bug that moves the gradient as
a whole is seen twice (on the sample and along the directions), **one wrong element
outside the sample** only when the directions see it (see above). A failure always names
an element with both values: when a direction fails and no sampled element does, the
direction is bisected down to a few elements, which are then differenced
(:mod:`._locate`). The diagnosis is made on the sampled elements (the layer's known
mistakes are compared there; a cause that needs elements that were not sampled does not
fit, and the diagnosis says it was judged on a sample). The sample is sized so that
differencing it takes about a quarter of ``time_budget`` (:data:`._sample.SAMPLE_SHARE`;
elements that share evaluations under a known dependency structure count once): the
order of the candidates is fixed by the seed, their number by the time one call of ``f``
takes -- and, once the first quarter of the sample is differenced, by the time that took
(a complex evaluation may cost many real ones; the report says when the sample was cut)
-- so a faster machine checks a longer prefix of the same sequence. Shared kinks are
settled among the sampled elements (a kink shared with an element outside the sample is
judged as the element's own); a direction with a kink along it that fails while no
element on its bisection path does is reported, not judged.

How the budget chooses: ``"auto"`` (the default) checks an argument in full mode when it
has at most ``budget`` elements (default :data:`DEFAULT_BUDGET`, 200 000) *and* its
full check is predicted to take at most ``time_budget`` seconds (default 60), and above
either budget as ``over_budget`` says, per argument, with a note in the report:
``"sampled"`` (the default), ``"fast"`` (directions only; cheaper, no element named),
or ``"refuse"`` (:class:`~gradcheck.ConfigurationError`). A full check ``"auto"`` chose
that runs on past 1.25 times ``time_budget`` (at least a second) is stopped and the
argument planned again as over budget, with a note (:mod:`._timing`). ``mode="full"``,
``"sampled"`` or ``"fast"`` is taken as given (:mod:`._plan`); ``"sampled"`` still sizes
its sample from ``time_budget``.

Verdict
-------
Element ``j`` passes when :math:`|a_j - n_j| \le \tau_j` with :math:`\tau_j` from
:mod:`gradcheck.checker._tolerance` (the differentiator's own error bar and the dtype's
rounding). An element the differentiator found to sit at a non-differentiable point is
reported as such; it fails only if the analytic value lies outside the interval spanned
by the two one-sided derivatives (widened by :math:`\kappa_j` of the tolerance module)
and the kink is its own -- a kink shared with other elements (ties in overlapping
max-pool windows, several ReLUs at zero at once) is reported but not judged, see
:mod:`gradcheck.checker._kinks`. A mismatching element is differenced again before the
verdict (:func:`gradcheck.checker._numeric.second_look`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from gradcheck._errors import ConfigurationError, UserCodeError
from gradcheck.checker._argument import RUNNERS
from gradcheck.checker._linearity import linearity, with_linearity
from gradcheck.checker._notes import weakened_notes
from gradcheck.checker._numeric import DEFAULT_MEMORY
from gradcheck.checker._options import (
    DEFAULT_BUDGET,
    DEFAULT_DIRECTIONS,
    DEFAULT_TIME_BUDGET,
    MODES,
    Options,
    validate,
)
from gradcheck.checker._plan import over_time, plan_argument, unprobed
from gradcheck.checker._report import CheckReport
from gradcheck.checker._scalarize import scalarize
from gradcheck.checker._suspects import function_suspects
from gradcheck.checker._timing import OverTime, StructureBroken

__all__ = ["check_vjp", "check_grad", "assert_vjp_close", "DEFAULT_BUDGET", "MODES"]


def check_vjp(f: Callable, f_vjp: Callable, args, *, argnames=None, wrt=None, mode="auto",
              seed=0, atol=None, rtol=None, budget=DEFAULT_BUDGET, over_budget="sampled",
              directions=DEFAULT_DIRECTIONS, method="auto", patterns=None, vectorized=None,
              roles=None, suspects=None, name=None, cotangent=None,
              memory=DEFAULT_MEMORY, time_budget=DEFAULT_TIME_BUDGET) -> CheckReport:
    r"""Check a backward pass ``f_vjp`` against numerical derivatives of ``f``.

    Parameters
    ----------
    f : callable
        ``f(*args)`` returns an array.
    f_vjp : callable
        ``f_vjp(cotangent, *args)`` returns one gradient per argument:
        :math:`\partial \langle R, f\rangle / \partial \text{arg}`. ``None`` is a zero
        gradient, as in PyTorch: it fails wherever the numerical derivative is not zero,
        and the report says no gradient was returned (leave an argument out with
        ``wrt``). With a single argument it may return the bare array.
    args : sequence of array_like
        The point at which to check. Must be finite.
    argnames : sequence of str, optional
        Names for the report (default ``arg0``, ``arg1``, …).
    wrt : int, str or sequence of them, optional
        Which arguments to check (default all).
    mode : {"auto", "full", "sampled", "fast"}
        Every element; a sample of elements plus random directions over the rest; random
        directional derivatives only; or full within the budgets and ``over_budget``
        above them (see the module notes).
    seed : int
        Seeds the cotangent (a standard normal from its own stream,
        ``default_rng([seed, COTANGENT_SALT])``: never the draw of a test input
        ``default_rng(seed).standard_normal(shape)``, see :mod:`._scalarize`) and the
        directions; the verdict is deterministic for a given seed.
    atol, rtol : float, optional
        A tolerance floor on top of the automatic one (never needed for a right verdict);
        the report's notes say it was given and what it let pass that the automatic
        tolerance fails.
    budget : int
        Largest argument (in elements) checked in full under ``mode="auto"``.
    over_budget : {"sampled", "fast", "refuse"}
        What ``mode="auto"`` does with an argument above ``budget`` or ``time_budget``:
        sample it, check it along directions only, or raise
        :class:`~gradcheck.ConfigurationError`.
    directions : int
        Random directions per argument in fast mode, and over the unsampled elements in
        sampled mode.
    method : str
        Differentiation method passed to the differentiator (``"auto"`` chooses).
    patterns : mapping or sequence, optional
        Per argument, a sparse boolean matrix (outputs × elements) of which outputs each
        element can change, or a callable returning one (called only in full mode); lets
        the differentiator perturb many elements at once.
    vectorized : bool or mapping or sequence, optional
        Per argument, whether ``f`` accepts a leading batch of points for it.
    roles : mapping or sequence, optional
        Per argument ``"input"`` (N, C, *spatial), ``"weight"`` (C_out, C_in, *kernel),
        ``"bias"`` or ``"generic"``; used to name causes of a mismatch.
    suspects : callable, optional
        ``suspects(argname, cotangent) -> [Suspect, ...]``: layer-specific predicted
        gradients of known bugs (given the cotangent the check used), tested first when a
        check fails.
    name : str, optional
        Name of the check in the report.
    time_budget : float
        Seconds a full check of one argument may be predicted to take under
        ``mode="auto"`` (groups of elements perturbed together x about six evaluations x
        the time of one call of ``f`` and of forming one perturbed point); above it the
        argument is handled as ``over_budget`` says, with a note, as is a full check
        that runs on past 1.25 times it. A sampled argument's sample is sized to about
        a quarter of it.
    memory : int
        Bytes the perturbed points of one batch of evaluations may take (with
        ``vectorized``); with structured arguments the bookkeeping stays proportional to
        the output, so a check's memory follows this budget, not the size of the layer.
    cotangent : array_like, optional
        Use this ``R`` (shape of ``f(*args)``) instead of a seeded random one, e.g. when
        ``C = <R, f>`` is itself the loss of interest.

    Returns
    -------
    CheckReport
        ``.passed``, a readable ``str()`` table, ``.to_dict()`` for JSON.

    Raises
    ------
    ConfigurationError
        Invalid options or arguments.
    UserCodeError
        ``f`` or ``f_vjp`` raised, returned NaN/inf, or returned the wrong shape; or
        modified an argument in place (``f`` and ``f_vjp`` are given copies, compared after
        their first calls: the caller's arrays never change, and a function that writes to
        its input would otherwise be checked at another point than the one given).

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_vjp
    >>> f = lambda x: np.tanh(x)
    >>> f_vjp = lambda g, x: (g * (1 - np.tanh(x) ** 2),)
    >>> report = check_vjp(f, f_vjp, (np.linspace(-2, 2, 5),))
    >>> report.passed
    True
    >>> wrong = lambda g, x: (g * (1 - np.tanh(x)),)
    >>> check_vjp(f, wrong, (np.linspace(-2, 2, 5),)).passed
    False
    """
    started = time.perf_counter()
    options, args = validate(f, f_vjp, args, Options(
        argnames=argnames, wrt=wrt, mode=mode, seed=seed, atol=atol, rtol=rtol, budget=budget,
        over_budget=over_budget, directions=directions, method=method, patterns=patterns,
        vectorized=vectorized, roles=roles, suspects=suspects, name=name, cotangent=cotangent,
        memory=memory, time_budget=time_budget))
    problem = scalarize(f, f_vjp, args, options)
    linear = linearity(problem, options)
    plans = [plan_argument(problem, options, i) for i in options.wrt]
    if options.suspects is None:   # a black box: suspects only if f is recognized
        suspects = function_suspects(problem.args, problem.y, options.argnames)
    else:
        suspects = options.suspects
    reports = []
    for k, plan in enumerate(plans):
        plans[k], report = _run(problem, options, plan, suspects)
        reports.append(with_linearity(report, plans[k].index, linear))
    return _check_report(options, problem, plans, tuple(reports), started, linear.notes)


def _run(problem, options, plan, suspects):
    """``(plan, report)``: the runner of the plan's kind (:data:`._argument.RUNNERS`), the
    plan made again when a probed structure fails on probation (:func:`._plan.unprobed`)
    or a full check chosen by ``mode="auto"`` runs late (:func:`._plan.over_time`, the
    evaluations it spent counted in the report)."""
    spent = 0
    for _ in range(3):      # at most: structure broken, then late, then the last plan
        try:
            report = RUNNERS[plan.kind](problem, options, plan, suspects)
            break
        except OverTime as exc:
            spent += exc.evals
            plan = over_time(problem, options, plan, exc)
        except StructureBroken as exc:
            plan = unprobed(problem, options, plan, exc)
    else:       # not reached: a sampled or fast plan raises neither
        report = RUNNERS[plan.kind](problem, options, plan, suspects)
    if plan.probe_nfev or spent:
        report = dataclasses.replace(report, nfev=report.nfev + plan.probe_nfev + spent)
    return plan, report


def _check_report(options, problem, plans, reports, started, linear_notes=()) -> CheckReport:
    """The verdict over every argument: a check that checked nothing does not pass, and
    what was weakened (a gradient not returned, a coarser dtype, a tolerance floor) is
    said in the notes (:mod:`._notes`)."""
    # a sampled argument's notice ends with what its sample held (known after the run)
    notes = [f"{plan.notice}: {report.note}" if plan.kind == "sampled" else plan.notice
             for plan, report in zip(plans, reports) if plan.notice]
    notes += weakened_notes(problem, options, reports)
    notes += list(linear_notes)
    reports = tuple(dataclasses.replace(r, note="; ".join(
        n for n in ("no gradient returned (None): checked as zeros", r.note) if n))
        if plan.index in problem.missing else r for plan, r in zip(plans, reports))
    passed = all(r.passed for r in reports)
    if not any(r.mode != "skipped" for r in reports):
        passed = False
        notes.append("no argument was checked: every one was skipped (no elements)")
    return CheckReport(name=options.name, passed=passed, mode=options.mode, seed=options.seed,
                       arguments=reports, elapsed_s=time.perf_counter() - started,
                       nfev=2 + sum(r.nfev for r in reports), dtype=str(problem.y.dtype),
                       notes=tuple(notes))


def check_grad(loss: Callable, grad: Callable, args, **options) -> CheckReport:
    """Check ``grad(*args)`` against numerical derivatives of a scalar ``loss(*args)``.

    ``grad`` returns one gradient per argument (or a bare array for one argument).
    Options are those of :func:`check_vjp`.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_grad
    >>> loss = lambda w: float(np.sum(w ** 3))
    >>> check_grad(loss, lambda w: 3 * w ** 2, (np.array([0.5, -1.0, 2.0]),)).passed
    True
    """
    if not callable(loss):
        raise ConfigurationError(f"loss must be callable; got {type(loss).__name__}")
    if not callable(grad):
        raise ConfigurationError(f"grad must be callable; got {type(grad).__name__}")

    def f(*a):
        value = np.asarray(loss(*a))
        if value.size != 1:
            raise UserCodeError(f"loss must return a scalar; got an array of shape {value.shape}")
        return value.reshape(())

    def f_vjp(cotangent, *a):
        g = grad(*a)
        if len(a) == 1 and not isinstance(g, (tuple, list)):
            g = (g,)
        return tuple(None if gi is None else np.asarray(gi) * cotangent for gi in g)

    options.setdefault("name", getattr(loss, "__name__", "loss"))
    return check_vjp(f, f_vjp, args, **options)


def assert_vjp_close(f: Callable, f_vjp: Callable, args, **options) -> CheckReport:
    """Like :func:`check_vjp`, but raise ``AssertionError`` carrying the report on a mismatch.

    For pytest: the failure message is the report's table, the worst element with both
    values, and the likely cause. Returns the report when the check passes.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import assert_vjp_close
    >>> x = np.array([0.3, -0.7])
    >>> _ = assert_vjp_close(np.sin, lambda g, x: (g * np.cos(x),), (x,))
    >>> assert_vjp_close(np.sin, lambda g, x: (g * np.sin(x),), (x,))
    Traceback (most recent call last):
    ...
    AssertionError: gradcheck sin: FAILED ...
    """
    __tracebackhide__ = True  # pytest shows the caller's line and the report, not this frame
    report = check_vjp(f, f_vjp, args, **options)
    if not report.passed:
        err = AssertionError(str(report))
        err.report = report
        raise err
    return report
