"""Checking a built spec: every tensor of the network against its numerical gradient.

A spec is checked by :func:`gradcheck.check_network`, which knows what the toolkit knows
about the layers -- built-in or ``type = "python"`` -- and diagnoses a failure the same
way for a spec run as for a network built in Python (see
:mod:`gradcheck.checker._suspects`). A user layer comes with less: the dependency
pattern of a tensor is known only when no user layer lies between it and the output
(:meth:`~gradcheck.ops.network.Sequential.pattern` says None otherwise), so where
perturbing its elements one by one would be slow the checker probes for one and
verifies it (:mod:`gradcheck.checker._probe`), else perturbs every element on its own;
the network is not ``complex_safe`` (a user layer need not accept complex numbers), so
under ``method="auto"`` the complex step is used through it only after its cross-check
against real differences (:mod:`gradcheck.numdiff._acceptance`), and under
``mode="auto"`` a probed tensor whose complex evaluation costs more than a few real ones
gets real differences (:func:`gradcheck.checker._probe.cheapest_method`; a full check
decides without a clock, see :mod:`gradcheck.checker._plan`); a layer with ``batched = true`` is
evaluated at many perturbed points per call (:mod:`gradcheck.ops._batched`); and its
usual mistakes are offered only when it is recognized as a convolution or an activation
(by reproducing its output).

When the check fails, every layer is then checked on its own, at the activation the
forward pass gave it and with the error that reaches it, and the culprit is named
(:mod:`gradcheck.checker._culprit`); the report's ``layers`` hold one entry per layer.
"""

from __future__ import annotations

__all__ = ["check_built", "check_spec"]


def check_built(built, *, mode=None, seed=None, rtol=None, atol=None, budget=None,
                time_budget=None, per_layer="on_failure"):
    """Run :func:`gradcheck.check_network` on a :class:`~gradcheck.spec.BuiltSpec`.

    Options left as None come from the spec's ``[check]`` table, and from the checker's
    own defaults where the spec has none. ``per_layer`` as for
    :func:`~gradcheck.check_network`: the layers are checked on their own once, over the
    whole report.
    """
    from gradcheck.checker._layers import check_tensors, layer_pass

    c = built.spec.check
    options = {"seed": c.seed if seed is None else seed,
               "mode": mode if mode is not None else c.mode,
               "budget": budget if budget is not None else c.budget,
               "time_budget": time_budget if time_budget is not None else c.time_budget}
    options = {k: v for k, v in options.items() if v is not None}
    net = built.network
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
        reports.append(check_tensors(net, built.x, built.params, name=name, **options,
                                     **extra))
    report = reports[0] if len(reports) == 1 else _merge(reports, net.names)
    # the layers alone, under the floor of every tensor (else [check] rtol/atol)
    r, a = next(iter(groups)) if len(groups) == 1 else (c.rtol, c.atol)
    floor = {k: v for k, v in (("rtol", r), ("atol", a)) if v is not None}
    return layer_pass(report, net, built.x, built.params, per_layer=per_layer,
                      **options, **floor)


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
