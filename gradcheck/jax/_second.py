"""Why a second-order row of a JAX function fails: ``stop_gradient`` cuts the backward.

A ``custom_vjp`` whose ``bwd`` (or whose ``fwd``, for a residual) applies
``jax.lax.stop_gradient`` to a value computed from an argument is right to first order,
but JAX's derivative of the backward treats that value as a constant: the derivative
with respect to the argument is lost (0, where the numerical derivative of the backward
is not). :func:`stopped_arguments` traces the map ``(x, g) -> vjp(g)`` to a jaxpr and
follows which of its inputs each output depends on through operations JAX differentiates
(``stop_gradient`` passes no dependence on; a nested jaxpr is followed when its inputs
match the equation's, any other equation conservatively passes on all of its inputs'
dependence): an argument no output depends on, with a ``stop_gradient`` in the trace,
is cut. :func:`name_stops` diagnoses the failing rows of those arguments
``double_backward_cut``.

When the trace still reaches the argument, a ``stop_gradient`` may have cut part of the
derivative, or nothing that matters. :func:`name_stops` then evaluates the trace again with
each top-level ``stop_gradient`` the identity (:func:`_without_stops`) and takes JAX's VJP
of that with the cotangent of the checked one: when it matches the numerical derivative
where JAX's did not, the row is a partial cut; otherwise it keeps its diagnosis.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from gradcheck._adapter import (CUT_CAUSE, cut_where, name_cut_rows, reproduces,
                                undo_residuals, unpack)
from gradcheck.checker._report import Diagnosis

__all__ = ["stopped_arguments", "name_stops"]

_NESTED = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _inner(eqn):
    """The jaxpr an equation calls with its own inputs (jit, custom_jvp_call...), or None."""
    for key in _NESTED:
        sub = eqn.params.get(key)
        sub = getattr(sub, "jaxpr", sub)
        if sub is not None and hasattr(sub, "eqns") and len(sub.invars) == len(eqn.invars) \
                and len(sub.outvars) == len(eqn.outvars):
            return sub
    return None


def _depends(jaxpr, deps_in):
    """For each output of ``jaxpr``, the set of input numbers it depends on
    differentiably, given each input's set ``deps_in``; and whether a stop_gradient ran."""
    env = {}
    stopped = False

    def read(v):
        # a literal (a constant in the trace) depends on nothing
        return frozenset() if type(v).__name__ == "Literal" else env.get(v, frozenset())

    for v, d in zip(jaxpr.invars, deps_in):
        env[v] = frozenset(d)
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if eqn.primitive.name == "stop_gradient":
            stopped = True
            outs = [frozenset()] * len(eqn.outvars)
        else:
            sub = _inner(eqn)
            if sub is not None:
                outs, inner_stopped = _depends(sub, ins)
                stopped |= inner_stopped
            else:
                union = frozenset().union(*ins) if ins else frozenset()
                outs = [union] * len(eqn.outvars)
        for v, d in zip(eqn.outvars, outs):
            env[v] = d
    return [read(v) for v in jaxpr.outvars], stopped


def _trace(problem, point):
    return jax.make_jaxpr(problem._backward_map)(*problem.map("backward")._jax(point))


def stopped_arguments(problem, point, names) -> tuple:
    """Names (of ``names``: the checked arguments, then the cotangents) that no output of
    the backward map depends on through what JAX differentiates, when a stop_gradient
    is in its trace; () otherwise or when it cannot be traced."""
    try:
        jaxpr = _trace(problem, point).jaxpr
        outs, stopped = _depends(jaxpr, [{k} for k in range(len(jaxpr.invars))])
    except Exception:       # noqa: BLE001 - the checked run reports what JAX refused
        return ()
    if not stopped:
        return ()
    reached = frozenset().union(*outs) if outs else frozenset()
    return tuple(n for k, n in enumerate(names) if k not in reached)


def _without_stops(closed):
    """The traced function with every top-level ``stop_gradient`` the identity."""
    jaxpr, consts = closed.jaxpr, closed.consts

    def run(*args):
        env = dict(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, args))

        def read(v):
            return v.val if type(v).__name__ == "Literal" else env[v]

        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            if eqn.primitive.name == "stop_gradient":
                outs = ins
            else:
                bound = eqn.primitive.get_bind_params(eqn.params)   # (subfuns, params)
                subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
                outs = eqn.primitive.bind(*subfuns, *ins, **params)
                outs = outs if eqn.primitive.multiple_results else [outs]
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]

    return run


def _undone(problem, call):
    """JAX's VJP of the backward map without its stop_gradients, at ``call`` (a
    recorded cotangent and point)."""
    cotangent, arrays = call
    jmap = problem.map("backward")
    xs = jmap._jax(arrays)
    closed = _trace(problem, arrays)
    outs, vjp_fn = jax.vjp(_without_stops(closed), *xs)
    shapes = [tuple(o.shape) for o in outs]
    dtypes = [np.dtype(o.dtype) for o in outs]
    cts = [jax.numpy.asarray(p) for p in unpack(cotangent, shapes, dtypes)]
    return [np.asarray(g) for g in vjp_fn(cts)]


def _message(label, row) -> str:
    name = row.name
    return (f"The backward of {label} cuts {name!r} with jax.lax.stop_gradient: what it "
            f"computes from {name!r} (in the custom_vjp's bwd, or a residual its fwd "
            f"stopped) is a constant to JAX, so the derivative of the backward with respect "
            f"to {name!r} is lost (JAX gives 0; {cut_where(row)}). Leave stop_gradient out "
            f"of what the backward computes from {name!r}.")


def _judged_call(problem, calls, rows, names):
    """The recorded ``(cotangent, point)`` whose VJP reproduces a row's analytic values,
    and that VJP; None if none does."""
    jmap = problem.map("backward")
    for cotangent, arrays in calls:
        again = jmap.vjp(cotangent, *arrays)
        if any(reproduces(r, again[names.index(r.name)]) for r in rows):
            return (cotangent, arrays), again
    return None


def _partial(report, cut, label, names, problem, calls):
    rows = [r for r in report.arguments if not r.passed and r.name not in cut
            and r.name in names]
    if not rows or problem is None or not calls:
        return report
    try:
        closed = _trace(problem, calls[0][1])
        if not any(e.primitive.name == "stop_gradient" for e in closed.jaxpr.eqns):
            return report
        judged = _judged_call(problem, calls, rows, names)
        if judged is None:
            return report
        undone = _undone(problem, judged[0])
        again = judged[1]
    except Exception:       # noqa: BLE001 - no evidence, no claim
        return report
    changed = {}
    for row in rows:
        j = names.index(row.name)
        found = undo_residuals(row, again[j], undone[j])
        if found is None or not found[1] <= 1e-3 * found[0]:
            continue
        before, after = found
        changed[row.name] = Diagnosis(CUT_CAUSE, (
            f"The backward of {label} cuts part of its derivative with respect to "
            f"{row.name!r} with jax.lax.stop_gradient: JAX's derivative of the backward "
            f"misses what flows through the stopped value. With the stop_gradient removed it "
            f"matches the numerical derivative of the backward: the largest |difference| "
            f"goes from {before:.3g} to {after:.3g}. Leave stop_gradient out of what the "
            f"backward computes from {row.name!r}."),
            {"argument": row.name, "partial": True, "stop_gradient": True,
             "residual_before": before, "residual_after": after, "calls_made": 3})
    return dataclasses.replace(report, arguments=tuple(
        dataclasses.replace(r, diagnosis=changed[r.name]) if r.name in changed else r
        for r in report.arguments))


def name_stops(report, cut, label, names=(), problem=None, calls=None):
    """``report`` with the failing rows of ``cut`` arguments diagnosed as cut, and the
    failing rows of other arguments as partly cut when removing the top-level
    stop_gradients explains their mismatch (with the recorded cotangent and point of
    ``calls``, calls of the checked VJP, that reproduces the row)."""
    report = _partial(report, cut, label, tuple(names), problem, calls)
    if not cut:
        return report
    return name_cut_rows(report, cut, lambda row: _message(label, row),
                         {"stop_gradient": True, "calls_made": 1})
