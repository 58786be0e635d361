"""One argument through forward mode, per plan kind: the runners of :func:`check_jvp`.

:data:`FORWARD_RUNNERS` maps a :class:`~gradcheck.checker._plan.Plan`'s kind to the
function that carries the argument through forward mode's stages, with the reverse
mode's signature (problem, options, plan, suspects) -> ArgumentReport:

- ``"full"``: every column of the argument's Jacobian (:class:`._forward.ColumnProbes`),
  judged entry by entry with the kink rule, shared kinks settled
  (:mod:`._forward_probes`), the worst probe diagnosed, the argument reported;
- ``"fast"``: ``directions`` random tangents (:class:`._forward.DirectionProbes`), each
  JVP judged entry by entry over the output on its error bars, a mismatch standing where
  ``f`` is differentiable and the projection disagrees too (:mod:`._forward_probes`),
  reported (with a diagnosis too: a JVP is an array shaped like the output);
- ``"sampled"``: the columns of the plan's sample of elements as in ``"full"``, random
  tangents over the rest as in ``"fast"``, a failing direction bisected to a column
  (:mod:`._forward_sampled`);
- ``"skipped"``: as in reverse mode.

Diagnosis
---------
A failing argument is diagnosed on its worst probe: the analytic and the numerical JVP
along that probe's tangent, arrays shaped like ``f``'s output, go through the reverse
mode's route (:func:`._diagnose.diagnose_judgement`) with the *output's* layout
(``output_role``; by default ``(N, C, *spatial)`` for an output of three axes or more)
and the sizes of every argument and of the output. In full mode the worst column is
shown beside every other column that reaches other outputs (:func:`_side_by_side`): one
column alone can be too little to name a cause. So the causes are named against the
output, and those of the catalogue that need only the two arrays, their layout and the
sizes apply: ``sign_flipped``, ``scaled`` (and per slice), the layout moves
(``shifted``, ``transposed``, ``kernel_not_rotated``, ``reversed``, ``axes_permuted``,
``permuted_within``), ``single_element`` (one Jacobian entry), ``region`` and
``position_mask`` (a batch item, channel or border of the output), the missing terms
that need no value (``missing_term_constant``, ``missing_term_rank_one``),
``outside_kink_limits`` and ``no_numerical_derivative``; the caller's ``suspects`` when
they predict a JVP (``suspects(argname, tangent)`` returning arrays shaped like the
output). The causes that need the argument's value or the cotangent, or call the
backward again (value masks, element-wise relations, terms in ``x`` or ``R``, linearity
in ``R``, the derivative at the output) and those of a recognized layer
(:mod:`._suspects`, which predict gradients, not JVPs) are not tried. One cause is
forward mode's own, tried first: ``jvp_not_linear``, when ``f_jvp`` returns something
for zero tangents and the analytic JVP is the true one plus that (a JAX ``custom_jvp``
rule with such a term still transposes to a right VJP). In sampled mode the same route
runs on the sampled columns, without ``single_element`` and ``region``, which speak of
columns a sample did not see (:mod:`._forward_sampled`).
"""

from __future__ import annotations

import time

import numpy as np

from gradcheck.checker._diagnose import Suspect, diagnose_judgement
from gradcheck.checker._fit import Known, named_sizes
from gradcheck.checker._forward import DirectionProbes, column_probes
from gradcheck.checker._forward_probes import (BYTES_PER_ENTRY, Context, Tally,
                                               judge_probes, output_rounding)
from gradcheck.checker._judge import excess
from gradcheck.checker._numeric import rademacher_directions
from gradcheck.checker._report import ArgumentReport, Diagnosis
from gradcheck.checker._summarize import summarize_skipped

__all__ = ["FORWARD_RUNNERS", "stream", "argument_report"]


def _batch(ctx: Context) -> int:
    """Probes differenced together: as many as ``memory`` holds (at least one)."""
    return max(1, int(ctx.options.memory // (ctx.problem.y.size * BYTES_PER_ENTRY)))


def _first_method(ctx: Context) -> str:
    method = ctx.options.method
    if method == "auto" and getattr(ctx.plan.pattern, "complex_safe", False):
        return "complex"
    return method


def stream(ctx: Context, tally: Tally, ks, method: str | None = None) -> str:
    """Probes ``ks`` of the argument, batch by batch, into ``tally``, differenced with
    ``method`` (None: the plan's first choice); the method decided, for the next ones."""
    method, step = method or _first_method(ctx), _batch(ctx)
    out_size = ctx.problem.y.size
    ks = list(ks)
    for start in range(0, len(ks), step):
        items, used = judge_probes(ctx, ks[start:start + step], tally, method)
        if method == "auto":    # decided once: later batches skip the complex step's test
            method = "complex" if used == "complex" else "adaptive"
        for item in items:
            tally.add(item, ctx.probes.columns(item.k, out_size))
    return method


def _stream(ctx: Context) -> Tally:
    """Every probe of the argument, batch by batch, into one :class:`Tally`."""
    tally = Tally(ctx)
    stream(ctx, tally, range(ctx.probes.count))
    return tally


def _worst(ctx: Context, tally: Tally):
    """``(item, columns)`` of the probe that decides the verdict, shared kinks cleared."""
    top, k = tally.settle()
    if k is None or top <= tally.best[0]:
        item, cols = tally.best[1], tally.best[2]
    elif k in tally.kept:
        item, cols = tally.kept[k]
    else:   # its arrays were not kept: judge it again
        items, _ = judge_probes(ctx, [k], Tally(ctx), ctx.options.method)
        item, cols = items[0], ctx.probes.columns(k, ctx.problem.y.size)
    j = item.judged
    shared = tally.shared_mask(j)
    failed = j.failed & ~shared
    judged = j._replace(failed=failed, shared=shared, diff=np.where(shared, 0.0, j.diff))
    return item._replace(judged=judged), cols


def _side_by_side(ctx: Context, tally: Tally, item, cols, column):
    """The worst column with the packed ones whose outputs do not overlap it, judged as
    one probe (``(item, description)``), or None when no other column fits beside it.

    One column alone can be too little to name a cause: the column of an elementwise
    function has one entry, which any scale 'explains'. Side by side, the columns show
    the JVP over the whole output (the diagonal, for an elementwise function).
    """
    j = item.judged
    touched = np.flatnonzero(((np.asarray(j.analytic) != 0) | (np.asarray(j.numeric) != 0))
                             .reshape(-1) & (cols == column))
    tangent = tally.packing_with(column, touched)
    others = int(tangent.sum()) - 1
    if others < 1:
        return None
    scratch = Tally(ctx)
    items, _ = judge_probes(ctx, [item.k], scratch, ctx.options.method, tangent[None])
    tally.nfev += scratch.nfev
    side = items[0]
    shared = tally.shared_mask(side.judged)
    side = side._replace(judged=side.judged._replace(
        failed=side.judged.failed & ~shared, shared=shared))
    arg = ctx.problem.args[ctx.plan.index]
    where = tuple(int(v) for v in np.unravel_index(column, arg.shape))
    return side, (f"element {where} of {ctx.plan.name!r} with {others} other element(s) that "
                  f"reach other outputs (their Jacobian columns side by side)")


def _not_linear(problem, item) -> Suspect:
    """The claim 'the JVP is the true one plus what ``f_jvp`` returns for zero tangents'."""
    z = np.asarray(problem.zero_response, np.float64)
    at = tuple(int(v) for v in np.unravel_index(int(np.argmax(np.abs(z))), z.shape))
    return Suspect(
        "jvp_not_linear",
        f"f_jvp is not linear in the tangents: with every tangent zero it returns a nonzero "
        f"output tangent (largest {float(np.abs(z).max()):.3g}, at output {at}), and the "
        f"analytic JVP is the true one plus that term. A term of the JVP does not scale "
        f"with the tangent (a constant, or a primal value, added where its tangent "
        f"belongs); a reverse-mode check cannot see it.",
        np.asarray(item.judged.numeric, np.float64) + z)


def _diagnosis(ctx, item, suspects, what, skip=()) -> Diagnosis | None:
    problem, name = ctx.problem, ctx.plan.name
    arg = problem.args[ctx.plan.index]

    def claims():
        found = [_not_linear(problem, item)] if np.any(problem.zero_response != 0) else []
        if suspects is not None:
            found += list(suspects(name, item.tangent.reshape(arg.shape)))
        return found

    shapes = {"the output": problem.y.shape,
              **{n: np.shape(a) for n, a in zip(problem.argnames, problem.args)}}
    found = diagnose_judgement(item.judged, role=problem.role, suspects=claims,
                               known=Known(sizes=named_sizes(shapes)), skip=skip)
    if found is None:
        return None
    return Diagnosis(found.cause,
                     f"In the Jacobian-vector product along {what}, compared over the output "
                     f"{problem.y.shape} ('gradient' below is that JVP): {found.message}",
                     dict(found.evidence, probe=item.k))


def _notes(ctx: Context, tally: Tally) -> list:
    notes = []
    if ctx.probes.colored:
        notes.append(f"{ctx.probes.count} probe(s) for {ctx.probes.index.size} columns: elements "
                     f"whose outputs do not overlap (dependency pattern) moved together")
    if tally.rechecked:
        how = "with real steps" if tally.complex_first else "with smaller steps"
        notes.append(f"{tally.rechecked} of {tally.mismatching} mismatching probe(s) "
                     f"differenced again {how}")
    if tally.n_shared:
        one = tally.n_shared == 1
        notes.append(f"{tally.n_shared} Jacobian entr{'y sits' if one else 'ies sit'} at a "
                     f"kink shared with other columns (the output is at a kink along several "
                     f"elements: ties, several kinks at once) and {'lies' if one else 'lie'} "
                     f"outside the one-sided limits along {'its' if one else 'their'} own "
                     f"column, which do not bound the valid values there: reported, not "
                     f"judged")
    if tally.excused:
        notes.append(f"{tally.excused} mismatching output entr(ies) along the random "
                     f"directions sit where f is not differentiable (their directional "
                     f"derivatives are not linear in the direction: several kinks at once), "
                     f"where J v need not be the directional derivative: reported, not "
                     f"judged")
    if tally.agreed:
        notes.append(f"{tally.agreed} mismatching output entr(ies) along the random "
                     f"directions lie on direction(s) whose projection on a seeded cotangent "
                     f"agrees within its error bars (what reverse fast mode judges): "
                     f"reported, not judged")
    if tally.unowned:
        notes.append(f"{tally.unowned} failing output entr(ies) lie outside every footprint of "
                     f"their probe according to the dependency pattern (counted against its "
                     f"first element): is the pattern complete?")
    return notes


def _cosine(tally: Tally):
    na, nn = float(np.sqrt(tally.aa)), float(np.sqrt(tally.nn))
    if na == 0 and nn == 0:
        return 1.0, 1.0
    cos = tally.dot / (na * nn) if na and nn else 0.0
    return float(cos), (na / nn if nn else float("inf"))


def argument_report(ctx: Context, tally: Tally, suspects, started, *, full: bool,
                    skip=()) -> ArgumentReport:
    """The argument's report: its columns (``full``; the causes named in ``skip`` not
    tried) or its random directions."""
    problem, plan = ctx.problem, ctx.plan
    arg = problem.args[plan.index]
    item, cols = _worst(ctx, tally)
    j = item.judged
    i = int(np.argmax(np.nan_to_num(excess(j), nan=np.inf).reshape(-1)))
    at = np.unravel_index(i, problem.y.shape)
    passed = not tally.probes_failed.any()
    if full:
        col = int(cols[i]) if cols[i] >= 0 else int(ctx.probes.members(item.k)[0])
        worst, n_checked = tuple(int(v) for v in np.unravel_index(col, arg.shape)), arg.size
        n_failed, n_kinks = int(tally.columns_failed.sum()), int(tally.columns_kinked.sum())
        failed_mask = tally.columns_failed.reshape(arg.shape)
        kink_mask = tally.columns_kinked.reshape(arg.shape)
    else:
        worst, n_checked = (int(item.k),), ctx.probes.count
        n_failed, n_kinks = int(tally.probes_failed.sum()), 0
        failed_mask, kink_mask = tally.probes_failed, None
    what = ctx.probes.describe(item.k, plan.name, arg.shape)
    diagnosis = None
    if not passed and full:
        side = _side_by_side(ctx, tally, item, cols, col)
        if side is not None:
            diagnosis = _diagnosis(ctx, side[0], suspects, side[1], skip)
    if not passed and diagnosis is None:
        diagnosis = _diagnosis(ctx, item, suspects, what, skip)
    cos, ratio = _cosine(tally)
    notes = _notes(ctx, tally)
    if not full:
        notes.insert(0, f"{ctx.probes.count} random directions, each JVP compared entry by "
                        f"entry over the output ({problem.y.size} entries) and as a "
                        f"projection; one wrong element in a large tensor may go unseen and "
                        f"is not located in fast mode")
    return ArgumentReport(
        name=plan.name, shape=tuple(arg.shape), dtype=str(item.analytic.dtype),
        passed=passed, mode="full" if full else "fast", n_elements=int(arg.size),
        n_checked=int(n_checked), n_failed=n_failed, n_nondifferentiable=n_kinks,
        max_abs_error=tally.max_abs, max_rel_error=tally.max_rel, worst_index=worst,
        output_index=tuple(int(v) for v in at),
        analytic_at_worst=float(j.analytic[at]), numeric_at_worst=float(j.numeric[at]),
        error_estimate_at_worst=float(j.error[at]), tolerance_at_worst=float(j.tolerance[at]),
        max_error_estimate=tally.max_err, cosine_similarity=cos, norm_ratio=ratio,
        nfev=tally.nfev, elapsed_s=time.perf_counter() - started, diagnosis=diagnosis,
        note="; ".join(notes), analytic=j.analytic, numeric=j.numeric,
        error_estimate=j.error, failed_mask=failed_mask, nondifferentiable_mask=kink_mask)


def check_full_forward(problem, options, plan, suspects):
    """Every column of one argument's Jacobian."""
    started = time.perf_counter()
    arg = problem.args[plan.index]
    probes = column_probes(plan.pattern, arg.size, problem.y.size)
    ctx = Context(problem, options, plan, probes, True, output_rounding(problem, plan.index))
    return argument_report(ctx, _stream(ctx), suspects, started, full=True)


def check_fast_forward(problem, options, plan, suspects):
    """Random tangent directions of one argument."""
    started = time.perf_counter()
    arg = problem.args[plan.index]
    probes = DirectionProbes(rademacher_directions(options.seed, plan.index,
                                                   options.directions, arg.size))
    ctx = Context(problem, options, plan, probes, False, output_rounding(problem, plan.index))
    return argument_report(ctx, _stream(ctx), suspects, started, full=False)


def check_sampled_forward(problem, options, plan, suspects):
    """The sample's columns in full, random directions over the rest
    (:mod:`._forward_sampled`, which builds on this module)."""
    from gradcheck.checker._forward_sampled import check_sampled

    return check_sampled(problem, options, plan, suspects)


def report_skipped(problem, options, plan, suspects):
    """An argument that is not checked (the plan says why)."""
    return summarize_skipped(plan.name, problem.args[plan.index], plan.reason)


#: The runner of each plan kind in forward mode.
FORWARD_RUNNERS = {"full": check_full_forward, "sampled": check_sampled_forward,
                   "fast": check_fast_forward, "skipped": report_skipped}
