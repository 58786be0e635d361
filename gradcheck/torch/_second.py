"""Why a second-order row fails: what cuts the backward from torch's graph.

Torch's double backward differentiates the graph that the backward built while it ran
with ``create_graph=True``. A backward that detaches a tensor (``x.detach()``, as every
``.numpy()`` round trip must), computes under ``torch.no_grad()``, is marked
``@once_differentiable`` or uses a tensor its forward computed (a Function's forward runs
without a graph, so such a value is a constant) is right to first order, but the graph
does not lead from its results back to the argument: torch's double backward gives
exactly 0 for that argument, where the numerical derivative of the backward is not 0.

:func:`explain_cuts` runs the backward once more, at the checked point, and finds

* which arguments of the second-order map ``(x, g) -> backward(g, x)`` no backward result
  reaches in torch's graph (a walk of ``grad_fn`` / ``next_functions``: the proof that
  torch's value for them is 0, whatever the numbers);
* how the cut was made: a ``TorchDispatchMode`` (which torch keeps active inside a
  Function's backward) records a ``detach`` of a tensor that requires grad and any
  operation on such a tensor while grad mode is off; a node that refuses differentiation
  in the graph is ``@once_differentiable``'s mark; a tensor saved on a Function's ``ctx``
  that does not require grad is one its forward computed.

:func:`name_cuts` then gives each failing row of a cut argument the diagnosis
``double_backward_cut`` with a sentence naming the argument and the mechanism, in place
of the generic description of a mismatch. A row that passes keeps its verdict (a backward
that does not depend on an argument at all is cut from it and right). A failing row whose
argument the graph still reaches is a partial cut only when the run shows it
(:mod:`gradcheck.torch._undo`: the double backward with the cuts undone matches the
numerical one). :func:`name_forward_cuts` does the same for forward mode through the
backward, where only a detach or a saved forward value (no tangent) is a cut.

A Function applied inside the backward runs its own forward with grad mode off, which
looks like ``no_grad`` from below autograd: with such a Function in the backward's graph,
``no_grad`` is not named. Each explanation calls the user's code again (``f`` and its
backward once; three times for a partial cut), counted in ``evidence["calls_made"]``.

``TorchDispatchMode`` lives in a private module of torch (``torch.utils._python_dispatch``)
and is imported when a cut is first explained. A torch without it still gets the graph
walk (which arguments are cut, ``@once_differentiable``, values saved by a forward), but
not the record of ``detach`` and ``no_grad``: the message then says the operations were
not recorded and why, the evidence carries ``"operations_recorded": False``, and a failing
row of an argument the graph still reaches is not examined for a partial cut (its message
says so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import numpy as np
import torch

from gradcheck._adapter import (CUT_CAUSE, cut_where, name_cut_rows, reproduces,
                                undo_residuals)
from gradcheck._record import frozen
from gradcheck.checker._report import Diagnosis
from gradcheck.torch._problem import graph_reached
from gradcheck.torch._undo import undone_vjp

__all__ = ["explain_cuts", "name_cuts", "name_forward_cuts"]


#: Said where the operations of a backward could not be recorded (module notes).
UNRECORDED = ("this torch has no TorchDispatchMode (torch.utils._python_dispatch), so its "
              "operations (.detach(), no_grad) were not recorded")


@functools.lru_cache(maxsize=None)
def _recorder_class():
    """The class recording, below autograd, the operations that cut a tensor from the
    graph; None where this torch has no ``TorchDispatchMode`` (module notes)."""
    try:
        from torch.utils._python_dispatch import TorchDispatchMode
    except ImportError:
        return None

    class _CutRecorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.detached = 0
            self.no_grad = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            needs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            if needs:
                if func is torch.ops.aten.detach.default:
                    self.detached += 1
                elif not torch.is_grad_enabled():
                    self.no_grad += 1
            return func(*args, **(kwargs or {}))

    return _CutRecorder


def _forward_constants(outputs, count_nodes=False) -> int:
    """Floating tensors saved on the ``ctx`` of the Functions behind ``outputs`` that do
    not require grad: values computed in a forward (no graph there), constants to torch's
    double backward. With ``count_nodes``, the number of those Functions instead."""
    count, seen = 0, set()
    stack = [o.grad_fn for o in outputs if o is not None and o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction) and count_nodes:
            count += 1
        elif isinstance(node, torch.autograd.function.BackwardCFunction):
            try:
                saved = list(node.saved_tensors)
            except RuntimeError:
                saved = []
            saved += [v for v in vars(node).values() if isinstance(v, torch.Tensor)]
            count += sum(1 for t in saved if t is not None and t.is_floating_point()
                         and not t.requires_grad and t.numel() > 1)
        stack.extend(fn for fn, _ in node.next_functions)
    return count


def _function_names(outputs) -> tuple:
    """The autograd.Function classes behind ``outputs`` (their backward nodes' names
    without ``Backward``), in the order met."""
    names, seen = [], set()
    stack = [o.grad_fn for o in outputs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            name = type(node).__name__
            name = name[:-len("Backward")] if name.endswith("Backward") else name
            if name not in names:
                names.append(name)
        stack.extend(fn for fn, _ in node.next_functions)
    return tuple(names)


@frozen
class Cuts:
    """What :func:`explain_cuts` found: the cut arguments and how they were cut."""

    cut: tuple            # names of the second-order map's arguments no result reaches
    once_differentiable: bool
    detached: int         # detach() of a tensor that requires grad, during the backward
    no_grad: int          # operations on such tensors under torch.no_grad()
    forward_constants: int  # tensors a forward saved that do not require grad
    names: tuple = ()     # every argument of the second-order map, in order
    functions: tuple = ()   # the autograd.Function classes the outputs come from
    recorded: bool = True   # detach / no_grad recorded (False: this torch cannot)


def explain_cuts(problem, g_arrays, names):
    """Run ``problem``'s backward at its point with cotangents ``g_arrays`` building a
    graph, and say which of ``names`` (the checked inputs, then the cotangents) it cuts.
    None when the backward cannot be run again (its failure is reported elsewhere)."""
    k = len(problem.checked)
    try:
        leaves = problem._leaves(problem.point, requires_grad=True)
        recorder_class = _recorder_class()
        recorder = recorder_class() if recorder_class is not None else None
        with torch.enable_grad():
            outs = problem._selected(problem._call(leaves))
            constants = _forward_constants(outs)
            functions = _function_names(outs)
            gs = problem._g_tensors(g_arrays, requires_grad=True)
            with recorder if recorder is not None else contextlib.nullcontext():
                grads = torch.autograd.grad(outs, leaves, gs, create_graph=True,
                                            allow_unused=True)
    except Exception:       # noqa: BLE001 - the checked run reports the backward's errors
        return None
    found, refuses = graph_reached(grads, [*leaves, *gs])
    cut = tuple(name for j, name in enumerate(names[:k + len(gs)]) if j not in found)
    if recorder is None:
        return Cuts(cut, refuses, 0, 0, constants, tuple(names), functions, recorded=False)
    # a Function applied inside the backward runs its forward with grad mode off, as
    # no_grad does: with one in the backward's graph, no_grad is not told apart from it
    no_grad = 0 if _forward_constants(grads, count_nodes=True) else recorder.no_grad
    return Cuts(cut, refuses, recorder.detached, no_grad, constants, tuple(names), functions)


def _how(cuts: Cuts) -> str:
    ways = []
    if cuts.detached:
        ways.append("calls .detach() on a tensor that requires grad (as a .numpy() round "
                    "trip must)")
    if cuts.no_grad:
        ways.append("computes under torch.no_grad()")
    if cuts.forward_constants and not ways:
        ways.append("uses a tensor its forward computed and saved on ctx (a forward runs "
                    "without a graph, so that value is a constant to double backward)")
    if not ways:
        ways.append("detaches it, leaves torch (.numpy(), .item(), a NumPy computation), "
                    "computes under torch.no_grad() or uses a value its forward computed")
    how = " and ".join(ways)
    return how if cuts.recorded else f"{how} ({UNRECORDED})"


def _message(cuts: Cuts, label: str, row) -> str:
    name = row.name
    if cuts.once_differentiable:
        return (f"The backward of {label} is marked @once_differentiable: torch cannot "
                f"differentiate it again, so its derivative with respect to {name!r} is lost "
                f"(torch's double backward gives 0; {cut_where(row)}). Remove the decorator "
                f"and write the backward with differentiable torch operations.")
    return (f"The backward of {label} cuts {name!r} from torch's graph: it {_how(cuts)}, so "
            f"torch's double backward sees what it computes from {name!r} as a constant and "
            f"its derivative with respect to {name!r} is lost (torch gives 0; "
            f"{cut_where(row)}). Compute it from {name!r} with differentiable torch "
            f"operations.")


def _forward_message(cuts: Cuts, label: str, row) -> str:
    name = row.name
    how = ("calls .detach() on a tensor that requires grad (as a .numpy() round trip must)"
           if cuts.detached else "uses a tensor its forward computed and saved on ctx")
    return (f"The backward of {label} cuts {name!r} from torch's graph: it {how}, which "
            f"carries no tangent, so forward mode through the backward "
            f"(check_fwd_over_rev) sees what it computes from {name!r} as a constant and its "
            f"derivative with respect to {name!r} is lost (torch gives 0; {cut_where(row)}). "
            f"Compute it from {name!r} with differentiable torch operations.")


def name_forward_cuts(report, cuts: Cuts | None, label: str):
    """The forward-mode rows of the backward's map (``check_fwd_over_rev``): a failing row
    of a cut argument whose analytic values are all 0, from a backward that detaches or
    uses a tensor its forward saved (neither carries a tangent), is ``double_backward_cut``.
    A cut made by no_grad alone is not named (forward AD does not heed no_grad), nor by
    @once_differentiable alone."""
    if cuts is None or not cuts.cut:
        return report
    zero = tuple(r.name for r in report.arguments if r.name in cuts.cut
                 and r.analytic is not None and not np.any(r.analytic))
    if not (cuts.detached or cuts.forward_constants):
        return report if cuts.recorded else _unexamined(
            report, zero, f"Whether the backward cuts it with a .detach() (which carries no "
                          f"tangent) was not examined: {UNRECORDED}.")
    if len(cuts.functions) == 1 and cuts.functions[0] != label:
        label = f"{cuts.functions[0]} (in {label})"
    evidence = {"forward_mode": True, "detach_calls": cuts.detached,
                "forward_constants": cuts.forward_constants, "calls_made": 1}
    return name_cut_rows(report, zero, lambda row: _forward_message(cuts, label, row),
                         evidence)


def name_cuts(report, cuts: Cuts | None, label: str, problem=None, calls=None):
    """``report`` with each failing row of a cut argument diagnosed
    ``double_backward_cut`` (rows of other arguments and passing rows unchanged).

    A failing row whose argument the graph still reaches, from a backward that detaches or
    computes under no_grad, is a partial cut when :func:`~gradcheck.torch._undo.undone_vjp`
    -- torch's double backward with those cuts undone, with the cotangent and point of
    ``calls`` (recorded calls of the checked double backward) that reproduce the row --
    matches the numerical derivative; without
    that evidence it keeps its diagnosis, with a sentence saying what the backward did.
    """
    if cuts is None:
        return report
    if len(cuts.functions) == 1 and cuts.functions[0] != label:
        label = f"{cuts.functions[0]} (in {label})"     # the one Function that has a backward
    if cuts.recorded:
        report = _partial(report, cuts, label, problem, calls)
    else:
        report = _unexamined(report, [
            r.name for r in report.arguments if r.name not in cuts.cut and r.name in cuts.names],
            f"Whether the backward cuts part of this derivative from torch's graph (a "
            f".detach() or no_grad on the way) was not examined: {UNRECORDED}.")
    if not cuts.cut:
        return report
    evidence = {"once_differentiable": cuts.once_differentiable,
                "detach_calls": cuts.detached, "no_grad_operations": cuts.no_grad,
                "forward_constants": cuts.forward_constants, "calls_made": 1}
    if not cuts.recorded:
        evidence["operations_recorded"] = False
    return name_cut_rows(report, cuts.cut, lambda row: _message(cuts, label, row), evidence)


def _unexamined(report, names, sentence: str):
    """``report`` with ``sentence`` added to the diagnosis of each failing row among
    ``names`` (and ``"operations_recorded": False`` to its evidence): what could not be
    looked for is said, not passed over."""
    changed = {r.name: dataclasses.replace(r.diagnosis, message=f"{r.diagnosis.message} "
                                           f"{sentence}", evidence=dict(
                                               r.diagnosis.evidence, operations_recorded=False))
               for r in report.arguments
               if r.name in names and not r.passed and r.diagnosis is not None}
    if not changed:
        return report
    return dataclasses.replace(report, arguments=tuple(
        dataclasses.replace(r, diagnosis=changed[r.name]) if r.name in changed else r
        for r in report.arguments))


def _ways(cuts: Cuts) -> list:
    return [w for w, n in (("calls .detach() on a tensor that requires grad", cuts.detached),
                           ("computes under torch.no_grad()", cuts.no_grad)) if n]


def _residuals(problem, calls, cuts, rows):
    """``{row name: (max |A - N|, max |U - N|)}`` over the rows' usable elements, ``U``
    the undone double backward with the recorded cotangent (of ``calls``) that reproduces
    the rows' analytic values; {} when there is no evidence to be had."""
    for cotangent, arrays in (calls or ()) if problem is not None else ():
        try:
            again = problem.second_vjp(cotangent, *arrays)
        except Exception:       # noqa: BLE001 - no evidence
            return {}
        judged = [r for r in rows if reproduces(r, again[cuts.names.index(r.name)])]
        if not judged:
            continue            # a cotangent of the checker's own tests, not the judged one
        undone = undone_vjp(problem, cotangent, arrays, detach=bool(cuts.detached),
                            no_grad=bool(cuts.no_grad))
        if undone is None:
            return {}
        out = {}
        for row in judged:
            j = cuts.names.index(row.name)
            found = undo_residuals(row, again[j], undone[j])
            if found is not None:
                out[row.name] = found
        return out
    return {}


def _partial(report, cuts: Cuts, label: str, problem, calls):
    ways = _ways(cuts)
    rows = [r for r in report.arguments if not r.passed and r.name not in cuts.cut
            and r.name in cuts.names and r.diagnosis is not None]
    if not ways or not rows:
        return report
    residuals = _residuals(problem, calls, cuts, rows)
    how = " and ".join(ways)
    undo = " and ".join(w for w, n in ((".detach() made a differentiable view", cuts.detached),
                                       ("no_grad lifted", cuts.no_grad)) if n)
    changed = {}
    for row in rows:
        if row.name in residuals:
            before, after = residuals[row.name]
            if not after <= 1e-3 * before:
                continue        # undoing the cut does not explain the mismatch: no word
            message = (
                f"The backward of {label} cuts part of its derivative with respect to "
                f"{row.name!r} from torch's graph: it {how}, and torch's double backward "
                f"misses what flows through the value cut off. With that undone ({undo}) "
                f"torch's double backward matches "
                f"the numerical derivative of the backward: the largest |difference| goes "
                f"from {before:.3g} to {after:.3g}. Compute it with differentiable torch "
                f"operations.")
            changed[row.name] = Diagnosis(CUT_CAUSE, message, {
                "argument": row.name, "partial": True, "detach_calls": cuts.detached,
                "no_grad_operations": cuts.no_grad, "residual_before": before,
                "residual_after": after, "calls_made": 3})
        else:
            hint = (f" The backward of {label} also {how}: any part of its derivative with "
                    f"respect to {row.name!r} that flows through the value so cut off is "
                    f"lost to torch's double backward.")
            evidence = dict(row.diagnosis.evidence, detach_calls=cuts.detached,
                            no_grad_operations=cuts.no_grad)
            changed[row.name] = dataclasses.replace(
                row.diagnosis, message=row.diagnosis.message + hint, evidence=evidence)
    return dataclasses.replace(report, arguments=tuple(
        dataclasses.replace(r, diagnosis=changed[r.name]) if r.name in changed else r
        for r in report.arguments))
