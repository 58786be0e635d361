r"""A network evaluated at many points in one call: a leading batch of one argument.

The numerical side differences ``f`` at dozens of perturbed points per group of
elements; one call per point keeps every GEMM at the size of one layer's batch, where
BLAS runs far below its rate and Python's per-call overhead shows. When ``f`` takes a
*batch of points* -- one argument with a leading axis ``B``, the others fixed -- the
differentiator evaluates a whole chunk of points per call
(:mod:`gradcheck.numdiff._evaluate`).

How each layer carries the batch
--------------------------------
- **Built-in layers never mix batch items**, so ``B`` points of a batch of ``N`` items
  are one batch of ``B N`` items: the layer's own forward on ``(B N, ...)``, reshaped back.
- **A user layer** carries it only when it says its ``forward`` takes a leading batch of
  inputs (a spec's ``batched = true``, :mod:`gradcheck.spec._user`): it receives
  ``(B, N, ...)`` as it is and must return ``(B, *output)``.
- **A convolution's parameters**: ``B`` kernels of ``C_out`` filters are one kernel of
  ``B C_out`` filters (groups = 1), so the batch is one GEMM over the same windows of the
  input, :math:`y[b, n, o] = \sum_{c, a} w[b, o, c, a]\, x_p[n, c, \cdot + a]`; a batch
  of biases is added to the one output without them.
- **The loss** is applied point by point (its targets are the batch's own).

Anything else (a user layer that does not say so, a dense layer's parameters) is not
batched: :func:`batchable` says False and the differentiator calls ``f`` per point.
"""

from __future__ import annotations

import math

import numpy as np

from gradcheck._errors import UserCodeError

__all__ = ["batchable", "batched_output"]


def _builtin(layer) -> bool:
    return type(layer).__module__.startswith("gradcheck.ops.")


def _carries(layer) -> bool:
    """The layer passes a batch of points on (built-in, or a user layer that says so)."""
    return _builtin(layer) or bool(getattr(layer, "batched", False))


def _param_batchable(layer, name) -> bool:
    return (_builtin(layer) and getattr(layer, "kind", None) == "conv"
            and getattr(layer, "groups", 1) == 1 and name in ("w", "b"))


def batchable(net, wrt: str) -> bool:
    """Whether ``net``'s function takes a leading batch of points of argument ``wrt``."""
    start, arg = net._locate(wrt)
    if arg != "x" and not _param_batchable(net.layers[start], arg):
        return False
    after = net.layers[start:] if arg == "x" else net.layers[start + 1:]
    return all(_carries(layer) for layer in after)


def _fold(layer, h, params, out_shape):
    """``layer`` on a batch of points ``h`` of shape ``(B, *in_shape)`` -> ``(B, *out)``."""
    B = h.shape[0]
    if _builtin(layer):
        y = layer.forward(h.reshape((B * h.shape[1],) + h.shape[2:]), *params)
        return y.reshape((B,) + tuple(out_shape))
    if hasattr(layer, "forward_batch"):
        return layer.forward_batch(h, *params, out_shape=out_shape)
    y = np.asarray(layer.forward(h, *params))
    if y.shape != (B,) + tuple(out_shape):
        raise UserCodeError(
            f"layer {layer.name} says its forward takes a leading batch (batched = true), "
            f"but given inputs of shape {h.shape} it returned shape {y.shape}; expected "
            f"{(B,) + tuple(out_shape)}")
    return y


def _conv_params(layer, h, params: dict, arg: str, A):
    """A conv layer with a batch ``A`` of its ``w`` or ``b`` (``(B, *shape)``) on the one
    input ``h`` -> ``(B, N, C_out, *out)``."""
    from gradcheck.ops.conv import conv_forward

    B = A.shape[0]
    w, b = params["w"], params.get("b")
    options = dict(convention=layer.convention, **layer._options())
    if arg == "w":       # B kernels of C_out filters = one kernel of B * C_out filters
        y = conv_forward(h, A.reshape((B * A.shape[1],) + A.shape[2:]), None, **options)
        n, _, *spatial = y.shape
        y = np.moveaxis(y.reshape((n, B, A.shape[1], *spatial)), 1, 0)
        if b is not None:
            y = y + b.reshape((1, 1, -1) + (1,) * len(spatial))
        return y
    y = conv_forward(h, w, None, **options)          # the one output, biases added per point
    return y[None] + A.reshape((B, 1, A.shape[1]) + (1,) * (y.ndim - 2))


def batched_output(net, index: int, A, flat: list):
    """``net``'s function (output, or per-sample loss) at ``B`` points: flat argument
    ``index`` (0: the input, else a parameter in ``names`` order) takes the values
    ``A[b]``, the others ``flat`` (``flat[index]`` is ignored)."""
    wrt = net.names[index]
    start, arg = net._locate(wrt)
    params = net.unflatten_params(tuple(flat[1:]))
    h = A if arg == "x" else flat[0]
    batched = arg == "x"
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        if batched:
            h = _fold(layer, h, tuple(p.values()), net.shapes[i + 1])
        elif i == start:
            h = _conv_params(layer, h, p, arg, A)
            batched = True
        else:
            h = layer.forward(h, *p.values())
    if net.loss is not None:
        h = np.stack([net.loss.per_sample(y) for y in h])
    return h


def batch_axis(net, args) -> int | None:
    """Which flat argument carries a leading batch of points (one more axis than its
    shape, the rest matching), or None for a plain call."""
    shapes = [net.input_shape] + [tuple(s) for shapes in net.param_shapes
                                  for s in shapes.values()]
    found = None
    for k, (a, shape) in enumerate(zip(args, shapes)):
        s = np.shape(a)
        if len(s) == len(shape) + 1 and tuple(s[1:]) == tuple(shape) and math.prod(s) > 0:
            found = k
            break
    return found
