r"""The fully connected end of a CNN: flatten and dense layers.

* **Flatten** reshapes ``(N, *features)`` to ``(N, prod(features))`` in C order; its
  backward reshapes the error back.
* **Dense** is the seed's multilayer-perceptron layer,
  :math:`z_{nj} = \sum_k W_{jk}\, x_{nk} + b_j`, i.e. ``y = x @ W.T + b`` with ``W`` of
  shape ``(out_features, in_features)`` as in ``torch.nn.Linear``. Backward:
  :math:`\partial C/\partial x = \delta W`, :math:`\partial C/\partial W = \delta^{\top} x`,
  :math:`\partial C/\partial b = \sum_n \delta_n` -- the error of a node is the weighted
  sum of the errors of the nodes it feeds.
"""

from __future__ import annotations

import math

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck.ops._geometry import as_float_array
from gradcheck.ops._layer_base import LayerBase, WeightedLayer, positive_int
from gradcheck.ops._patterns import batch_block_pattern, channel_block_pattern, identity_pattern

__all__ = ["Dense", "Flatten"]


class Flatten(LayerBase):
    """``(N, *features) -> (N, prod(features))`` in C order.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.ops.layers import Flatten
    >>> Flatten().output_shape((2, 3, 4, 4))
    (2, 48)
    """

    kind = "flatten"
    smooth = True

    def to_dict(self) -> dict:
        return {"type": "flatten"}

    def output_shape(self, input_shape) -> tuple:
        shape = self._input_shape(input_shape, min_ndim=2, max_ndim=32,
                                  what="(N, *features) with at least one feature axis")
        return (shape[0], math.prod(shape[1:]))

    def forward(self, x, *params) -> np.ndarray:
        """``x.reshape(N, -1)``."""
        x = as_float_array(x, "x")
        self._check_params(x.shape, params, "forward")
        return x.reshape(self.output_shape(x.shape))

    def backward(self, grad_y, x, *params) -> tuple:
        """``(grad_y.reshape(x.shape),)``."""
        x = as_float_array(x, "x")
        self._check_params(x.shape, params, "backward")
        grad_y = as_float_array(grad_y, "grad_y")
        self._check_grad_y(grad_y, x.shape)
        return (grad_y.reshape(x.shape),)

    def pattern(self, input_shape, wrt="x"):
        self._check_wrt(input_shape, wrt)
        return identity_pattern(math.prod(self.output_shape(input_shape)))


class Dense(WeightedLayer):
    """Fully connected layer ``y = x @ W.T + b`` on input ``(N, in_features)``.

    Parameters
    ----------
    out_features : int
        Number of output nodes.
    bias : bool
        Whether the layer has a bias ``b`` of shape ``(out_features,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.ops.layers import Dense
    >>> layer = Dense(2)
    >>> x = np.array([[1.0, 2.0, 3.0]]); W = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    >>> layer.forward(x, W, np.array([0.0, 1.0]))
    array([[-2.,  4.]])
    >>> gx, gW, gb = layer.backward(np.array([[1.0, 2.0]]), x, W, np.array([0.0, 1.0]))
    >>> gx                       # delta @ W: each input sums the errors it feeds
    array([[2., 1., 0.]])
    """

    kind = "dense"
    smooth = True
    _defaults = {"bias": True}

    def __init__(self, out_features, *, bias=True):
        self.out_features = positive_int(out_features, "out_features",
                                         f"Dense(out_features={out_features!r})")
        if not isinstance(bias, bool):
            raise ConfigurationError(
                f"Dense(out_features={out_features!r}): bias must be True or False; "
                f"got {bias!r}")
        self.bias = bias

    def to_dict(self) -> dict:
        return {"type": "dense", "out_features": self.out_features, "bias": self.bias}

    def output_shape(self, input_shape) -> tuple:
        shape = self._input_shape(
            input_shape, min_ndim=2, max_ndim=2,
            what="(N, in_features); put a Flatten layer before it for image-shaped input")
        return (shape[0], self.out_features)

    def param_shapes(self, input_shape) -> dict:
        self.output_shape(input_shape)
        return self._weight_and_bias((self.out_features, int(input_shape[1])))

    def forward(self, x, *params) -> np.ndarray:
        """:math:`z = x W^{\\top} + b`."""
        x = as_float_array(x, "x")
        self._check_params(x.shape, params, "forward")
        w = as_float_array(params[0], "w")
        y = x @ w.T
        if self.bias:
            y = y + as_float_array(params[1], "b")
        return y

    def backward(self, grad_y, x, *params) -> tuple:
        """``(delta @ W, delta.T @ x[, delta.sum(0)])``."""
        x = as_float_array(x, "x")
        self._check_params(x.shape, params, "backward")
        grad_y = as_float_array(grad_y, "grad_y")
        self._check_grad_y(grad_y, x.shape)
        w = as_float_array(params[0], "w")
        grads = (grad_y @ w, grad_y.T @ x)
        if self.bias:
            grads += (grad_y.sum(axis=0),)
        return grads

    def pattern(self, input_shape, wrt="x"):
        self._check_wrt(input_shape, wrt)
        self.output_shape(input_shape)
        n, n_in = (int(v) for v in input_shape)
        if wrt == "x":
            return batch_block_pattern(n, self.out_features, n_in)
        return channel_block_pattern(n, self.out_features, 1, n_in if wrt == "w" else 1)
