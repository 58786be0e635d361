"""``[check] order = 2``: a spec's second-order check, beside the usual first-order one.

Order 2 checks the backward's own derivatives: the map
:math:`(x, \\theta, g) \\mapsto \\text{backward}(g, x, \\theta)` of the whole stack,
numerically, against the framework's double backward. Only a framework can
differentiate a backward again, so every layer must be a PyTorch
``autograd.Function`` or ``nn.Module`` target, and there must be no ``[loss]`` (the
built-in layers and losses are NumPy code: their backward has no derivative of its own
to check). Anything else is a :class:`~gradcheck.SpecError` naming ``check.order`` and
the layer at fault -- raised when the spec is loaded (:func:`refuse_order`, called by
:func:`gradcheck.spec.resolve_targets` once the targets are imported), so that
``gradcheck check`` lists it among the bad specs (``errors`` in ``--json``) and checks
the others. The rows of the second order are named ``order2.<tensor>`` and
``order2.grad_output`` in the spec's one report.
"""

from __future__ import annotations

from gradcheck._errors import SpecError
from gradcheck.spec._run import check_built as _check_first

__all__ = ["check_built", "check_spec", "second_order_report", "refuse_order"]


def _why_not(spec, i, obj) -> str | None:
    """Why layer ``i`` (``obj``: its resolved target, for a python layer) has no second
    order to check, or None."""
    kind = spec.layers[i].type
    if kind != "python":
        return (f"layer[{i}] is a built-in {kind} layer, written in NumPy: its backward has no "
                f"derivative of its own to check")
    if getattr(obj, "framework", None) != "torch":
        return (f"layer[{i}] ({spec.layers[i].options['target']}) is a NumPy layer: no "
                f"framework can differentiate its backward again, so it has no second-order "
                f"derivative to check; write it as a torch.autograd.Function or nn.Module")
    return None


def refuse_order(spec, objects, order=None) -> None:
    """Raise :class:`~gradcheck.SpecError` (key ``check.order``) when ``order`` (default
    the spec's ``[check] order``) is 2 and the spec cannot be checked at second order.

    ``objects[i]`` is layer ``i``'s resolved target (None for a built-in layer).
    """
    order = order if order is not None else (spec.check.order or 1)
    if order != 2:
        return
    source = spec.source
    for i, obj in enumerate(objects):
        why = _why_not(spec, i, obj)
        if why:
            raise SpecError(f"{source}: check.order: 2 needs every layer to be a PyTorch "
                            f"autograd.Function or nn.Module target; {why}", spec=source,
                            key="check.order")
    if spec.loss is not None:
        raise SpecError(f"{source}: check.order: 2 checks the network output with a seeded "
                        f"cotangent; the [loss] ({spec.loss.type}) is NumPy code with no "
                        f"double backward: leave [loss] out", spec=source, key="check.order")


def _objects(built) -> list:
    return [getattr(layer, "obj", None) for layer in built.network.layers]


def second_order_report(built, *, seed=None, **options):
    """The second-order check of a built spec (every layer a PyTorch target, no loss)."""
    import numpy as np
    import torch

    from gradcheck.torch._check import run_problem
    from gradcheck.torch._problem import TorchProblem

    spec, net = built.spec, built.network
    source = spec.source
    refuse_order(spec, _objects(built), order=2)
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
    order = order if order is not None else (built.spec.check.order or 1)
    if type(order) is not int or order != 1:    # (the first order alone needs no adapter)
        from gradcheck._adapter import validate_order

        order = validate_order(order)
    # refuse an impossible spec before the first-order check runs (a spec read by
    # gradcheck check was refused already, when it was loaded)
    refuse_order(built.spec, _objects(built), order=order)
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
    from gradcheck._adapter import merge_orders

    return merge_orders(first, second)


def check_spec(spec, *, max_memory=None, **options):
    """Build ``spec`` (see :func:`gradcheck.spec.build`) and check it; return the report."""
    from gradcheck.spec._build import build

    return check_built(build(spec, max_memory=max_memory), **options)
