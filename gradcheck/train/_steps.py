r"""The seed's five training steps, one function each, in the seed's order.

The seed ends with a training procedure (``shared/seed/SEED.md``, "Training
procedure"); here it is over the layers of :mod:`gradcheck.ops`, where a linear map and
its activation are two layers, so the seed's :math:`z^l = w^l * a^{l-1} + b^l` is a conv
layer's output and :math:`a^l = \sigma(z^l)` the next (activation) layer's output.

1. **Input** -- a batch of images, :math:`a^0 = x` (:func:`forward`'s first entry).
2. **Forward** -- :func:`forward`: each layer maps its input to its output,
   :math:`a^l = \text{layer}_l(a^{l-1})`; every :math:`a^l` is kept, since step 4 needs
   each layer's input (the seed's :math:`z^l` for an activation, :math:`a^{l-1}` for a
   convolution).
3. **Output error** -- :func:`output_error`: :math:`\delta^L = \partial C/\partial y`
   from the loss. For softmax cross-entropy over the logits :math:`y`, the seed's
   :math:`\nabla_a C \odot \sigma'(z^L)` with the softmax's Jacobian folded in is
   :math:`(\operatorname{softmax}(y) - \operatorname{onehot}(t)) / N`.
4. **Backward** -- :func:`backward`: the error is carried from each layer's output to its
   input, last layer first (:data:`RULES`, one line per layer kind):

   ======================= ==============================================================
   convolution             full convolution of :math:`\delta` with the kernel rotated by
                           180°: :math:`\delta^{l-1} = \delta^l \star_{\text{full}}
                           \operatorname{rot180}(w^l)` (``conv_backward``, the seed's
                           route: dilate by the stride, pad to a full convolution,
                           correlate with ``rot180(w)``, crop the padding)
   max pooling             routing: each window's error goes to its maximal entry
   average pooling         shared equally among the window's entries
   activation              :math:`\delta \odot \sigma'(z)`, the derivative at the
                           pre-activation :math:`z` (the layer's input)
   flatten                 reshaped back to the input's shape
   dense                   :math:`\delta W`: each input sums the errors of the nodes it
                           feeds
   ``python`` (user)       the user's own ``backward``
   ======================= ==============================================================

   Together, a convolution and the activation before it give the seed's
   :math:`\delta^l = (\delta^{l+1} * \operatorname{rot180}(w^{l+1})) \odot \sigma'(z^l)`.
5. **Gradients and update** -- the same rules return each layer's parameter gradients
   (:math:`\partial C/\partial w^l` = valid correlation of the layer's input with its
   :math:`\delta`, :math:`\partial C/\partial b^l = \sum \delta^l`; for dense
   :math:`\delta^\top a^{l-1}`); :func:`sgd_momentum` then updates every parameter.

The same functions compute the scheduled gradient checks' ``f_vjp``
(:func:`per_sample_vjp`), so the checker judges exactly the code that moves the weights.
"""

from __future__ import annotations

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.ops.conv import conv_backward

__all__ = ["forward", "output_error", "backward", "carry_back", "sgd_momentum", "Backprop",
           "RULES", "backprop", "per_sample_vjp"]


class Backprop(NamedTuple):
    """Steps 2-5 on one batch: the activations, the errors and the parameter gradients."""

    loss: float
    activations: list   # a[0] = x, a[l + 1] = output of layer l; a[-1] are the logits
    deltas: list        # deltas[l] = dC/da[l] (deltas[0] is the error at the input)
    grads: list         # grads[l] = {param name: dC/dparam} of layer l


# ----------------------------------------------------------------- step 2: forward


def forward(layers, x, params) -> list:
    """Step 2: ``a[0] = x``, ``a[l + 1] = layers[l].forward(a[l], *params[l])``."""
    a = [x]
    for layer, p in zip(layers, params):
        a.append(layer.forward(a[-1], *p.values()))
    return a


# ----------------------------------------------------------------- step 3: output error


def output_error(loss, y) -> np.ndarray:
    """Step 3: :math:`\\delta^L = \\partial C/\\partial y` for the network output ``y``."""
    return loss.grad(y)


# ----------------------------------------------------------------- step 4: backward


def _through_conv(layer, delta, a_in, p):
    """δ to the input by the full convolution with rot180(w); ∂C/∂w by the valid
    correlation of the input with δ; ∂C/∂b = Σ δ (all three from ``conv_backward``)."""
    grad_x, grad_w, grad_b = conv_backward(
        delta, a_in, p["w"], stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
        groups=layer.groups, convention=layer.convention, bias=layer.bias, method="rot180")
    return grad_x, ({"w": grad_w, "b": grad_b} if layer.bias else {"w": grad_w})


def _through_activation(layer, delta, z, p):
    """δ ⊙ σ'(z), the derivative taken at the pre-activation z (the layer's input)."""
    return delta * layer.spec.derivative(z), {}


def _through_layer(layer, delta, a_in, p):
    """The layer's own backward: routing (max pool), sharing (avg pool), reshaping
    (flatten), δW and δᵀa (dense), or a user's ``python`` layer."""
    grad_x, *grads = layer.backward(delta, a_in, *p.values())
    return grad_x, dict(zip(p, grads))


#: How δ crosses each kind of layer (kinds not listed use the layer's own backward).
RULES = {
    "conv": _through_conv,
    "activation": _through_activation,
    "maxpool": _through_layer,
    "avgpool": _through_layer,
    "flatten": _through_layer,
    "dense": _through_layer,
}


def carry_back(layer, delta, a_in, params: dict):
    """``(δ at the layer's input, {param: ∂C/∂param})`` from δ at its output."""
    return RULES.get(layer.kind, _through_layer)(layer, delta, a_in, params)


def backward(layers, a, params, delta_out) -> tuple[list, list]:
    """Step 4 (and the gradients of step 5): ``(deltas, grads)``, last layer first."""
    deltas = [None] * len(a)
    grads = [None] * len(layers)
    deltas[-1] = delta_out
    for l in reversed(range(len(layers))):
        if deltas[l + 1] is None:   # a user layer gave no input error (None): a zero one
            deltas[l + 1] = np.zeros_like(a[l + 1])
        deltas[l], grads[l] = carry_back(layers[l], deltas[l + 1], a[l], params[l])
    return deltas, grads


def backprop(layers, loss, x, params) -> Backprop:
    """Steps 1-5 but the update: the loss, every δ and every parameter gradient."""
    a = forward(layers, x, params)
    deltas, grads = backward(layers, a, params, output_error(loss, a[-1]))
    grads = [{k: np.zeros_like(p[k]) if g[k] is None else g[k] for k in g}   # None: zero
             for g, p in zip(grads, params)]
    return Backprop(loss.value(a[-1]), a, deltas, grads)


# ----------------------------------------------------------------- step 5: update


def sgd_momentum(params, grads, velocity, *, learning_rate, momentum):
    """Step 5's update: :math:`v \\leftarrow \\mu v + g`, :math:`w \\leftarrow w - \\eta v`.

    (``torch.optim.SGD``'s form; with :math:`v_0 = 0` it is the same sequence as
    :math:`v \\leftarrow \\mu v - \\eta g, w \\leftarrow w + v` for a constant
    :math:`\\eta`.) Returns new ``(params, velocity)``; the inputs are not modified.
    """
    new_params, new_velocity = [], []
    for p, g, v in zip(params, grads, velocity):
        v = {k: momentum * v[k] + g[k] for k in p}
        new_velocity.append(v)
        new_params.append({k: (p[k] - learning_rate * v[k]).astype(p[k].dtype, copy=False)
                           for k in p})
    return new_params, new_velocity


# ----------------------------------------------------------------- the checker's view


def per_sample_vjp(layers, loss, cotangent, x, params) -> tuple:
    """``(∂S/∂x, *∂S/∂params)`` for :math:`S = \\sum_n r_n C_n`, ``C_n`` the per-sample
    loss: steps 2-5 with the output error weighted per sample by the cotangent ``r``."""
    a = forward(layers, x, params)
    deltas, grads = backward(layers, a, params, loss.vjp(cotangent, a[-1]))
    return (deltas[0],) + tuple(g[k] for g, p in zip(grads, params) for k in p)
