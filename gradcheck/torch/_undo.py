"""The backward with its cuts undone: the evidence that a detach or no_grad is the bug.

When the graph of the backward still reaches an argument but the backward also detached
a tensor or computed under ``torch.no_grad()``, part of the derivative may be lost -- or
the detach may be harmless (a mask, a sign) and the bug elsewhere. :func:`undone_vjp`
settles it: it runs torch's double backward again with the same cotangent, the backward
executed under a ``TorchFunctionMode`` in which ``.detach()`` of a tensor that requires
grad is a differentiable view and an operation under ``no_grad`` runs with grad mode on.
If that double backward matches the numerical derivative where the real one does not,
the cut is the cause, shown rather than guessed.

The mode must be active inside the Function's backward, which the autograd engine runs:
a ``TorchFunctionMode`` is carried there when the engine is entered directly
(``torch.autograd.graph._engine_run_backward``), not through ``torch.autograd.grad``,
which the mode would itself intercept. Anything that fails on the way (a ``.numpy()`` of
the now differentiable value, an in-place operation on it) means no evidence: None.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from gradcheck._adapter import unpack
from gradcheck.torch._convert import numpy_dtype, to_array, to_tensor

__all__ = ["undone_vjp"]


class _Undo(TorchFunctionMode):
    """``.detach()`` of a tensor that requires grad is a view; no_grad is lifted."""

    def __init__(self, detach: bool, no_grad: bool):
        super().__init__()
        self.detach, self.no_grad = detach, no_grad

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (self.detach and getattr(func, "__name__", "") == "detach" and args
                and isinstance(args[0], torch.Tensor) and args[0].requires_grad):
            return args[0].view_as(args[0])
        if self.no_grad and not torch.is_grad_enabled():
            with torch.enable_grad():
                return func(*args, **kwargs)
        return func(*args, **kwargs)


def undone_vjp(problem, cotangent, arrays, *, detach: bool, no_grad: bool):
    """Torch's double backward of ``problem`` at ``arrays`` (inputs then cotangents ``g``)
    with ``cotangent``, its backward's cuts undone; one array per argument, or None."""
    from torch.autograd.graph import _engine_run_backward

    k = len(problem.checked)
    try:
        leaves = problem._leaves(arrays[:k], requires_grad=True)
        with torch.enable_grad():
            outs = problem._selected(problem._call(leaves))
            gs = problem._g_tensors(arrays[k:], requires_grad=True)
            with _Undo(detach, no_grad):
                grads = _engine_run_backward(tuple(outs), tuple(gs), True, True,
                                             tuple(leaves), True, False)
            pieces = unpack(cotangent, [tuple(t.shape) for t in leaves])
            live = [j for j, g in enumerate(grads) if g is not None and g.requires_grad]
            wrt = [*leaves, *gs]
            second = (torch.autograd.grad([grads[j] for j in live], wrt,
                                          [to_tensor(pieces[j], grads[j]) for j in live],
                                          allow_unused=True)
                      if live else (None,) * len(wrt))
    except Exception:       # noqa: BLE001 - no evidence, no claim
        return None
    return [np.zeros(tuple(t.shape), dtype=numpy_dtype(t)) if s is None else to_array(s)
            for s, t in zip(second, wrt)]
