"""A PyTorch Function or Module behind the ``type = "python"`` layer contract.

A spec's ``python`` layer is called with NumPy arrays: ``forward(x, *params) -> y`` and
``backward(grad_y, x, *params) -> (grad_x, *grad_params)``. :class:`TorchLayer` turns
those calls into torch calls -- arrays become tensors of their own dtype, the backward is
``torch.autograd.grad`` -- so a ``torch.autograd.Function`` subclass (its ``apply`` takes
``x`` and the spec's ``params``) or an ``nn.Module`` (its parameters, named as in
``named_parameters()``, are the layer's) is checked like any python layer.
:meth:`TorchLayer.torch_call` is the same layer on tensors, for the second-order check
of a spec (:mod:`gradcheck.spec._second`).
"""

from __future__ import annotations

import numpy as np
import torch

from gradcheck.torch._check import module_function
from gradcheck.torch._convert import from_array, to_array

__all__ = ["TorchLayer"]


def _tensor(array, *, requires_grad=False):
    array = np.asarray(array)
    if array.dtype.kind == "c":   # the layer runs in its own real dtype (see _convert)
        raise TypeError("a PyTorch layer is evaluated in its own real dtype; complex input "
                        "is not passed through")
    t = from_array(array)
    return t.requires_grad_(requires_grad) if t.is_floating_point() else t


class TorchLayer:
    """``forward``/``backward`` on arrays for a torch Function (class) or Module."""

    framework = "torch"

    def __init__(self, call, label, module=None):
        self._call = call
        self.label = label
        self.module = module

    @classmethod
    def from_function(cls, function, label):
        return cls(function.apply, label)

    @classmethod
    def from_module(cls, module, label):
        names = [n for n, p in module.named_parameters() if p.requires_grad]
        layer = cls(None, label, module)
        layer._names = names
        layer._fn = module_function(module, 1, names)
        return layer

    def param_shapes(self):
        """An nn.Module's trainable parameters, name -> shape (None for a Function)."""
        if self.module is None:
            return None
        shapes = dict(self.module.named_parameters())
        return {n: tuple(shapes[n].shape) for n in self._names}

    def torch_call(self, x, *params):
        """The layer on tensors, in ``x``'s dtype: a Module is cast to it first, and its
        parameters are given in it (a network computes a float16 or bfloat16 spec in
        float32, as its built-in layers do, and hands each layer its input so; the
        parameters' gradients come back in that dtype, judged by the parameters' own)."""
        if self.module is None:
            return self._call(x, *params)
        dtype = x.dtype
        if any(t.is_floating_point() and t.dtype != dtype
               for t in (*self.module.parameters(), *self.module.buffers())):
            self.module.to(dtype)
        params = [p.to(dtype) if p.is_floating_point() and p.dtype != dtype else p
                  for p in params]
        return self._fn(x, *params)

    def forward(self, x, *params):
        with torch.no_grad():
            y = self.torch_call(_tensor(x), *(_tensor(p) for p in params))
        if not isinstance(y, torch.Tensor):
            return y   # the caller reports what came back
        return to_array(y)

    def backward(self, grad_y, x, *params):
        leaves = [_tensor(x, requires_grad=True), *(_tensor(p, requires_grad=True)
                                                    for p in params)]
        with torch.enable_grad():
            y = self.torch_call(*leaves)
            g = from_array(np.asarray(grad_y).astype(to_array(y.detach()).dtype))
            grads = torch.autograd.grad(y, leaves, g, allow_unused=True)
        return tuple(np.zeros(np.shape(a), dtype=np.asarray(a).dtype) if gr is None
                     else to_array(gr) for gr, a in zip(grads, (x, *params)))
