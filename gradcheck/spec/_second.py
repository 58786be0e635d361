"""``[check] order = 2``: a spec's second-order check, beside the usual first-order one.

Order 2 checks the backward's own derivatives: the map
:math:`(x, \\theta, g) \\mapsto \\text{backward}(g, x, \\theta)` of the whole stack,
numerically, against the framework's double backward. Only a framework can
differentiate a backward again, so every layer must be a PyTorch
``autograd.Function`` or ``nn.Module`` target, and there must be no ``[loss]`` (the
built-in layers and losses are NumPy code: their backward has no derivative of its own
to check). Anything else is a :class:`~gradcheck.SpecError` naming ``check.order`` and
the layer at fault. The rows of the second order are named ``order2.<tensor>`` and
``order2.grad_output`` in the spec's one report.
"""

from __future__ import annotations

from gradcheck._errors import SpecError
from gradcheck.spec._run import check_built as _check_first

__all__ = ["check_built", "check_spec", "second_order_report"]


def _why_not(spec, i, layer) -> str | None:
    kind = spec.layers[i].type
    if kind != "python":
        return (f"layer[{i}] is a built-in {kind} layer, written in NumPy: its backward has no "
                f"derivative of its own to check")
    if getattr(layer.obj, "framework", None) != "torch":
        return (f"layer[{i}] ({layer.target}) is a NumPy layer: no framework can "
                f"differentiate its backward again, so it has no second-order derivative to "
                f"check; write it as a torch.autograd.Function or nn.Module")
    return None


def second_order_report(built, *, seed=None, **options):
    """The second-order check of a built spec (every layer a PyTorch target, no loss)."""
    import numpy as np
    import torch

    from gradcheck.torch._check import run_problem
    from gradcheck.torch._problem import TorchProblem

    spec, net = built.spec, built.network
    source = spec.source
    for i, layer in enumerate(net.layers):
        why = _why_not(spec, i, layer)
        if why:
            raise SpecError(f"{source}: check.order: 2 needs every layer to be a PyTorch "
                            f"autograd.Function or nn.Module target; {why}", spec=source,
                            key="check.order")
    if spec.loss is not None:
        raise SpecError(f"{source}: check.order: 2 checks the network output with a seeded "
                        f"cotangent; the [loss] ({spec.loss.type}) is NumPy code with no "
                        f"double backward: leave [loss] out", spec=source, key="check.order")
    counts = [len(p) for p in built.params]

    def stack(x, *flat):
        k = 0
        for layer, n in zip(net.layers, counts):
            x = layer.obj.torch_call(x, *flat[k:k + n])
            k += n
        return x

    arrays = [built.x] + [np.asarray(v) for p in built.params for v in p.values()]
    inputs = tuple(torch.as_tensor(np.array(a, copy=True)) for a in arrays)
    names = tuple(net.names)
    problem = TorchProblem(stack, inputs, list(range(len(inputs))), names,
                           label=spec.name or source)
    options = {k: v for k, v in options.items() if v is not None}
    options["seed"] = spec.check.seed if seed is None else seed
    options.setdefault("name", spec.name or source)
    return run_problem(problem, orders=(2,), options=options)


def check_built(built, *, order=None, **options):
    """:func:`gradcheck.spec.check_built` of the first order, and with ``order=2`` (or
    ``[check] order = 2``) the second order too, as one report."""
    from gradcheck._adapter import merge_orders, validate_order

    order = validate_order(order if order is not None else (built.spec.check.order or 1))
    if order == 2:   # refuse an impossible spec before the first-order check runs
        for i, layer in enumerate(built.network.layers):
            why = _why_not(built.spec, i, layer)
            if why:
                raise SpecError(f"{built.spec.source}: check.order: 2 needs every layer to "
                                f"be a PyTorch autograd.Function or nn.Module target; {why}",
                                spec=built.spec.source, key="check.order")
    first = _check_first(built, **options)
    if order == 1:
        return first
    c = built.spec.check
    second = second_order_report(
        built, seed=options.get("seed"),
        mode=options.get("mode") or c.mode, budget=options.get("budget") or c.budget,
        time_budget=options.get("time_budget") or c.time_budget,
        rtol=options.get("rtol") if options.get("rtol") is not None else c.rtol,
        atol=options.get("atol") if options.get("atol") is not None else c.atol)
    return merge_orders(first, second)


def check_spec(spec, *, max_memory=None, **options):
    """Build ``spec`` (see :func:`gradcheck.spec.build`) and check it; return the report."""
    from gradcheck.spec._build import build

    return check_built(build(spec, max_memory=max_memory), **options)
