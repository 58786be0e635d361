"""Checking a built spec: every tensor of the network against its numerical gradient.

Built-in layers come with what the checker knows about them (dependency patterns, their
usual mistakes). A ``type = "python"`` layer comes with nothing, so for a network that
holds one:

* the dependency pattern of a tensor is known only when no user layer lies between it
  and the output (:meth:`~gradcheck.ops.network.Sequential.pattern` says None
  otherwise, and every element is perturbed on its own);
* the network is not ``complex_safe`` (a user layer need not accept complex numbers),
  so complex-step differentiation is not used through it;
* when a user layer turns out to compute a plain convolution (its output is reproduced
  by :func:`gradcheck.conv_forward` for some geometry), the convolution's usual mistakes
  -- kernel not rotated, padding or stride offsets, ... -- are offered to the diagnosis
  as suspects, propagated to every tensor below that layer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_built", "check_spec", "user_layer_suspects"]


def _is_user(layer) -> bool:
    return getattr(layer, "kind", None) == "python"


def user_layer_suspects(net, x, params):
    """``suspects(argname, cotangent)`` from the user layers that compute a convolution or
    a table activation (recognized by reproducing their output)."""
    from gradcheck.checker._diagnose import Suspect
    from gradcheck.checker._identify import identify_activation, identify_conv
    from gradcheck.checker._suspects import activation_mistakes, carry_down, conv_input_mistakes

    cache = {}

    def compute(cotangent):
        if "all" in cache:
            return cache["all"]
        results = []
        trace = net.forward(x, params)
        delta = cotangent if net.loss is None else net.loss.vjp(cotangent, trace.output)
        deltas = [None] * len(net.layers)
        for j in reversed(range(len(net.layers))):  # error at each layer's output
            deltas[j] = delta
            delta = net.layers[j].backward(delta, trace.inputs[j],
                                           *trace.params[j].values())[0]
        for li, layer in enumerate(net.layers):
            if not _is_user(layer):
                continue
            p = [np.asarray(v) for v in trace.params[li].values()]
            z = np.asarray(trace.inputs[li])
            act = identify_activation([z], np.asarray(trace.outputs[li])) if not p else None
            if act is not None:
                delta_out = np.asarray(deltas[li], dtype=z.dtype)
                for m in activation_mistakes(act):
                    wrong_gx = m.backward(delta_out, z)[0]
                    results.append((m.cause, f"In layer {li} ({layer.name}), which computes "
                                             f"{act.name} elementwise: {m.message}",
                                    carry_down(net, trace, li, wrong_gx)))
                continue
            ident = identify_conv([trace.inputs[li], *p], np.asarray(trace.outputs[li]))
            if ident is None or ident.x_index != 0:
                continue
            kind = ("a correlation" if ident.convention == "correlation"
                    else "a true convolution")
            what = (f"{kind} with stride {ident.stride}, padding {ident.padding}, dilation "
                    f"{ident.dilation}, groups {ident.groups}")
            w = p[ident.w_index - 1]
            for cause, message, wrong_gx in conv_input_mistakes(
                    np.asarray(deltas[li], dtype=np.result_type(trace.inputs[li], w)),
                    trace.inputs[li], w, stride=ident.stride, padding=ident.padding,
                    dilation=ident.dilation, groups=ident.groups,
                    convention=ident.convention):
                predicted = carry_down(net, trace, li, wrong_gx)
                results.append((cause, f"In layer {li} ({layer.name}), which computes {what}: "
                                       f"{message}", predicted))
        cache["all"] = results
        return results

    def suspects(argname, cotangent):
        return [Suspect(cause, message, np.asarray(predicted[argname]))
                for cause, message, predicted in compute(cotangent) if argname in predicted]

    return suspects


def _combine(*sources):
    def suspects(argname, cotangent):
        return [s for source in sources for s in source(argname, cotangent)]

    return suspects


def check_built(built, *, mode=None, seed=None, rtol=None, atol=None, budget=None,
                time_budget=None):
    """Run :func:`gradcheck.check_network` on a :class:`~gradcheck.spec.BuiltSpec`.

    Options left as None come from the spec's ``[check]`` table, and from the checker's
    own defaults where the spec has none.
    """
    import gradcheck

    c = built.spec.check
    options = {"seed": c.seed if seed is None else seed,
               "mode": mode if mode is not None else c.mode,
               "budget": budget if budget is not None else c.budget,
               "time_budget": time_budget if time_budget is not None else c.time_budget}
    options = {k: v for k, v in options.items() if v is not None}
    net = built.network
    user = [i for i, layer in enumerate(net.layers) if _is_user(layer)]
    if user:
        from gradcheck.checker._suspects import network_suspects

        options["suspects"] = _combine(network_suspects(net, built.x, built.params),
                                       user_layer_suspects(net, built.x, built.params))
    name = built.spec.name or built.spec.source
    # Tensors sharing a tolerance are checked together; the command line's rtol/atol apply
    # to every tensor, else [check.tolerance] per tensor, else [check] rtol/atol.
    groups: dict = {}
    for arg in (c.wrt or net.names):
        if rtol is not None or atol is not None:
            tol = (rtol, atol)
        else:
            own = (c.tolerance or {}).get(arg, {})
            tol = (own.get("rtol", c.rtol), own.get("atol", c.atol))
        groups.setdefault(tol, []).append(arg)
    reports = []
    for (r, a), wrt in groups.items():
        extra = {k: v for k, v in (("rtol", r), ("atol", a)) if v is not None}
        if c.wrt is not None or len(groups) > 1:
            extra["wrt"] = wrt
        reports.append(gradcheck.check_network(net, built.x, built.params, name=name,
                                               **options, **extra))
    return reports[0] if len(reports) == 1 else _merge(reports, net.names)


def _merge(reports, order):
    """One report from several over disjoint tensors, in the network's tensor order."""
    import dataclasses

    args = sorted((a for r in reports for a in r.arguments), key=lambda a: order.index(a.name))
    return dataclasses.replace(
        reports[0], passed=all(r.passed for r in reports), arguments=tuple(args),
        elapsed_s=sum(r.elapsed_s for r in reports), nfev=sum(r.nfev for r in reports),
        notes=tuple(n for r in reports for n in r.notes))


def check_spec(spec, *, max_memory=None, **options):
    """Build ``spec`` (see :func:`gradcheck.spec.build`) and check it; return the report."""
    from gradcheck.spec._build import build

    return check_built(build(spec, max_memory=max_memory), **options)
