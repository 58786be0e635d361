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
"""

from __future__ import annotations

import jax

from gradcheck._adapter import cut_where, name_cut_rows

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


def stopped_arguments(problem, point, names) -> tuple:
    """Names (of ``names``: the checked arguments, then the cotangents) that no output of
    the backward map depends on through what JAX differentiates, when a stop_gradient
    is in its trace; () otherwise or when it cannot be traced."""
    try:
        closed = jax.make_jaxpr(problem._backward_map)(*problem.map("backward")._jax(point))
        jaxpr = closed.jaxpr
        outs, stopped = _depends(jaxpr, [{k} for k in range(len(jaxpr.invars))])
    except Exception:       # noqa: BLE001 - the checked run reports what JAX refused
        return ()
    if not stopped:
        return ()
    reached = frozenset().union(*outs) if outs else frozenset()
    return tuple(n for k, n in enumerate(names) if k not in reached)


def _message(label, row) -> str:
    name = row.name
    return (f"The backward of {label} cuts {name!r} with jax.lax.stop_gradient: what it "
            f"computes from {name!r} (in the custom_vjp's bwd, or a residual its fwd "
            f"stopped) is a constant to JAX, so the derivative of the backward with respect "
            f"to {name!r} is lost (JAX gives 0; {cut_where(row)}). Leave stop_gradient out "
            f"of what the backward computes from {name!r}.")


def name_stops(report, cut, label):
    """``report`` with the failing rows of ``cut`` arguments diagnosed as cut."""
    if not cut:
        return report
    return name_cut_rows(report, cut, lambda row: _message(label, row),
                         {"stop_gradient": True})
