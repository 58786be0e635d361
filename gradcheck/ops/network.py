r"""A sequential network whose backward pass follows the seed's five steps.

How the seed's training procedure maps onto :class:`Sequential`
-----------------------------------------------------------------
The seed writes a network as alternating linear maps and activations,
:math:`z^l = w^l * a^{l-1} + b^l`, :math:`a^l = \sigma(z^l)`. Here each of those is its
own layer (a :class:`~gradcheck.ops.layers.Conv` or ``Dense`` followed by an
:class:`~gradcheck.ops.layers.Activation`), so:

1. **Input** ``x`` -- ``trace.inputs[0]``.
2. **Forward** -- :meth:`Sequential.forward` stores every layer's input and output. For a
   linear layer ``l`` followed by an activation, ``trace.outputs[l]`` is :math:`z^l` and
   ``trace.outputs[l + 1]`` is :math:`a^l = \sigma(z^l)`.
3. **Output error** -- the loss gives :math:`\nabla_a C` (``loss.grad``); the last
   activation's backward multiplies it by :math:`\sigma'(z^L)`, giving
   :math:`\delta^L = \nabla_a C \odot \sigma'(z^L)`.
4. **Backward** -- :meth:`Sequential.backward` walks the layers in reverse. A conv
   layer's backward turns the error at its output into the error at its input by the
   full convolution with the rotated kernel, :math:`\delta^{l+1} * \operatorname{rot180}
   (w^{l+1})`; the activation before it multiplies by :math:`\sigma'(z^l)`. Their
   composition is the seed's :math:`\delta^l = (\delta^{l+1} * \operatorname{rot180}
   (w^{l+1})) \odot \sigma'(z^l)`. ``deltas[l]`` is the error at layer ``l``'s output,
   :math:`\partial C / \partial\,\text{outputs}[l]`; for a linear layer that is the
   seed's :math:`\delta^l`.
5. **Gradients** -- the same backward calls return each layer's parameter gradients,
   :math:`\partial C/\partial w^l = ` valid correlation of :math:`a^{l-1}` with
   :math:`\delta^l`, :math:`\partial C/\partial b^l = \sum \delta^l`.

The flat view for a checker
---------------------------
:meth:`Sequential.as_function` returns ``(f, f_vjp, names)``: ``f(x, *flat_params)`` is the
network output, or, when a loss is set, the **per-sample loss** (shape ``(N,)``) -- so
batch items stay independent and the checker may perturb several items at once;
``f_vjp(cotangent, x, *flat_params)`` returns one gradient per argument. Names are
``"input"`` and ``"layer{i}.{kind}.{param}"`` (e.g. ``"layer0.conv.w"``).
:meth:`Sequential.pattern` composes the layers' dependency patterns for any of them.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._record import NamedTuple
from gradcheck._validate import is_int
from gradcheck.ops._geometry import as_float_array
from gradcheck.ops._layer_base import LayerBase, check_dtype
from gradcheck.ops.layers import layer_from_dict
from gradcheck.ops.losses import Loss, get_loss

__all__ = ["Sequential", "Trace", "Backward", "LossAndGrads", "FlatFunction"]


class Trace(NamedTuple):
    """What the forward pass stored: per layer its input and output, and the parameters."""

    inputs: tuple
    outputs: tuple
    params: tuple

    @property
    def output(self) -> np.ndarray:
        return self.outputs[-1]


class Backward(NamedTuple):
    """``grad_x``; ``param_grads[l]`` a dict per layer; ``deltas[l] = ∂C/∂outputs[l]``."""

    grad_x: np.ndarray
    param_grads: list
    deltas: list


class LossAndGrads(NamedTuple):
    loss: float
    grad_x: np.ndarray
    param_grads: list


class FlatFunction(NamedTuple):
    """``f(x, *flat_params)``, ``f_vjp(cotangent, x, *flat_params)`` and argument names."""

    f: Callable
    f_vjp: Callable
    names: tuple


class Sequential:
    """Layers applied in order, shapes checked at construction.

    Parameters
    ----------
    layers : sequence of layers or layer-spec mappings
        Layer objects from :mod:`gradcheck.ops.layers`, or their ``to_dict()`` forms.
    input_shape : tuple of int
        Shape of ``x``, batch first.
    loss : str or Loss, optional
        A loss name (bound with :func:`~gradcheck.ops.losses.get_loss`, seed 0) or a
        :class:`~gradcheck.ops.losses.Loss` for the network's output shape.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.ops.layers import Conv, Activation, Flatten, Dense
    >>> from gradcheck.ops.network import Sequential
    >>> net = Sequential([Conv(2, 2), Activation("tanh"), Flatten(), Dense(3)],
    ...                  (1, 1, 3, 3), loss="mse")
    >>> net.shapes
    [(1, 1, 3, 3), (1, 2, 2, 2), (1, 2, 2, 2), (1, 8), (1, 3)]
    >>> f, f_vjp, names = net.as_function()
    >>> names
    ('input', 'layer0.conv.w', 'layer0.conv.b', 'layer3.dense.w', 'layer3.dense.b')
    """

    def __init__(self, layers: Sequence, input_shape, *, loss=None):
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
            raise ConfigurationError(
                f"layers must be a non-empty list of layers; got {layers!r}")
        self.layers = [layer_from_dict(l) if isinstance(l, Mapping) else l for l in layers]
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerBase):
                raise ConfigurationError(
                    f"layers[{i}] must be a layer from gradcheck.ops.layers or a layer-spec "
                    f"mapping; got {layer!r}")
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
        if shape is None or not shape or not all(is_int(n) and n >= 1 for n in shape):
            raise ConfigurationError(
                f"input_shape must be a non-empty tuple of positive ints; got {input_shape!r}")
        self.shapes = [tuple(int(n) for n in shape)]
        self.param_shapes = []
        for i, layer in enumerate(self.layers):
            try:
                out = layer.output_shape(self.shapes[-1])
                self.param_shapes.append(layer.param_shapes(self.shapes[-1]))
                self.shapes.append(out)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"layer {i} ({layer.name}) on input of shape {self.shapes[-1]}: {exc}"
                ) from None
        if loss is None or isinstance(loss, Loss):
            self.loss = loss
        elif isinstance(loss, str):
            self.loss = get_loss(loss, self.output_shape)
        else:
            raise ConfigurationError(f"loss must be None, a loss name or a Loss; got {loss!r}")
        if self.loss is not None and self.loss.output_shape != self.output_shape:
            raise ConfigurationError(
                f"loss {self.loss.name!r} was built for output shape {self.loss.output_shape}, "
                f"but the network's output has shape {self.output_shape}")
        self.names = ("input",) + tuple(
            f"layer{i}.{layer.kind}.{p}"
            for i, (layer, shapes) in enumerate(zip(self.layers, self.param_shapes))
            for p in shapes)

    @property
    def complex_safe(self) -> bool:
        """True when every layer takes complex input (complex step may run through ``f``)."""
        return all(getattr(layer, "complex_safe", False) for layer in self.layers)

    @property
    def input_shape(self) -> tuple:
        return self.shapes[0]

    @property
    def output_shape(self) -> tuple:
        return self.shapes[-1]

    def __repr__(self) -> str:
        return (f"Sequential({getattr(self, 'layers', None)!r}, "
                f"{getattr(self, 'shapes', [None])[0]}, loss={getattr(self, 'loss', None)!r})")

    def to_dict(self) -> dict:
        d = {"input": {"shape": list(self.input_shape)},
             "layers": [layer.to_dict() for layer in self.layers]}
        if self.loss is not None:
            d["loss"] = self.loss.to_dict()
        return d

    # ----------------------------------------------------------------- parameters

    def init_params(self, *, rng: np.random.Generator, dtype=np.float64) -> list:
        """One parameter dict per layer (empty for parameter-free layers)."""
        check_dtype(dtype, "Sequential.init_params")
        return [layer.init_params(shape, rng=rng, dtype=dtype)
                for layer, shape in zip(self.layers, self.shapes)]

    def flatten_params(self, params) -> tuple:
        """The parameter arrays in ``names[1:]`` order."""
        self._check_param_list(params)
        return tuple(p[name] for p, shapes in zip(params, self.param_shapes) for name in shapes)

    def unflatten_params(self, flat) -> list:
        """Inverse of :meth:`flatten_params`."""
        if len(flat) != len(self.names) - 1:
            raise ConfigurationError(
                f"expected {len(self.names) - 1} parameter arrays ({', '.join(self.names[1:])}); "
                f"got {len(flat)}")
        it = iter(flat)
        return [{name: next(it) for name in shapes} for shapes in self.param_shapes]

    def _check_param_list(self, params):
        if not isinstance(params, Sequence) or len(params) != len(self.layers):
            raise ConfigurationError(
                f"params must be a list of {len(self.layers)} dicts, one per layer; got "
                f"{type(params).__name__} of length {len(params) if hasattr(params, '__len__') else '?'}")
        for i, (p, shapes) in enumerate(zip(params, self.param_shapes)):
            if not isinstance(p, Mapping) or list(p) != list(shapes):
                got = list(p) if isinstance(p, Mapping) else p
                raise ConfigurationError(
                    f"params[{i}] (layer {i}, {self.layers[i].name}) must be a dict with keys "
                    f"{list(shapes)}; got {got!r}")

    # ----------------------------------------------------------------- the five steps

    def forward(self, x, params) -> Trace:
        """Steps 1-2: run every layer, storing its input and output (the seed's z and a)."""
        x = as_float_array(x, "x")
        if x.shape != self.input_shape:
            raise ConfigurationError(
                f"x must have the network's input shape {self.input_shape}; got {x.shape}")
        self._check_param_list(params)
        inputs, outputs = [], []
        for layer, p in zip(self.layers, params):
            inputs.append(x)
            x = layer.forward(x, *p.values())
            outputs.append(x)
        return Trace(tuple(inputs), tuple(outputs), tuple(params))

    def backward(self, trace: Trace, grad_output) -> Backward:
        """Steps 3-5: propagate the output error back, collecting δ and parameter gradients.

        ``grad_output`` is :math:`\\partial C/\\partial y` for the network output ``y``;
        ``deltas[l]`` is the error at layer ``l``'s output (``deltas[-1] = grad_output``).
        A gradient a user layer returns as None stays None (a zero gradient the checker
        reports as not returned); as the error passed down, it is carried on as zeros.
        """
        delta = as_float_array(grad_output, "grad_output")
        if delta.shape != self.output_shape:
            raise ConfigurationError(
                f"grad_output must have the network's output shape {self.output_shape}; "
                f"got {delta.shape}")
        deltas = [None] * len(self.layers)
        grads = [None] * len(self.layers)
        for i in reversed(range(len(self.layers))):
            if delta is None:   # a layer's backward gave no input error: a zero one
                delta = np.zeros_like(trace.outputs[i])
            deltas[i] = delta
            p = trace.params[i]
            delta, *g = self.layers[i].backward(delta, trace.inputs[i], *p.values())
            grads[i] = dict(zip(p, g))
        return Backward(delta, grads, deltas)

    def loss_and_grads(self, x, params) -> LossAndGrads:
        """The loss value and its gradients with respect to ``x`` and every parameter."""
        loss = self._need_loss("loss_and_grads")
        trace = self.forward(x, params)
        back = self.backward(trace, loss.grad(trace.output))
        return LossAndGrads(loss.value(trace.output), back.grad_x, back.param_grads)

    def _need_loss(self, method) -> Loss:
        if self.loss is None:
            raise ConfigurationError(f"{method} needs a loss; construct Sequential(..., loss=name)")
        return self.loss

    # ----------------------------------------------------------------- checker view

    def as_function(self) -> FlatFunction:
        """``(f, f_vjp, names)`` over flat arguments ``(x, *params in names order)``.

        ``f`` returns the network output, or the per-sample loss ``(N,)`` when a loss is
        set; ``f_vjp(cotangent, x, *flat)`` returns ``(grad_x, *grad_params)``. Where
        :func:`~gradcheck.ops._batched.batchable` says so, ``f`` also takes one argument
        with a leading batch of points, ``(B, *shape)``, and returns ``(B, *output)``;
        ``f.complex_parts`` (same arguments) gives such a batch of complex steps as its
        real and imaginary parts, or None (:func:`~gradcheck.ops._batched.complex_parts`);
        it also takes the batch as its parts (``takes_complex_steps``: a
        :class:`~gradcheck.numdiff._evaluate.ComplexSteps` in place of the complex array).
        ``f_vjp`` keeps its last forward pass (of built-in layers, on copies of the
        arguments) and runs only the backward pass when called again with arguments of
        the same values, to the bit.
        """

        from gradcheck.ops._batched import batch_axis, batched_output, complex_parts

        def f(x, *flat):
            k = batch_axis(self, (x,) + flat)
            if k is not None:    # a leading batch of points of one argument (_batched)
                return batched_output(self, k, ((x,) + flat)[k], [x, *flat])
            y = self.forward(x, self.unflatten_params(flat)).output
            return y if self.loss is None else self.loss.per_sample(y)

        def parts(x, *flat):
            k = batch_axis(self, (x,) + flat)
            return None if k is None else complex_parts(self, k, ((x,) + flat)[k], [x, *flat])

        parts.takes_complex_steps = True     # the points as parts, too (_batched)
        f.complex_parts = parts

        # the last forward pass of f_vjp, reused by a call at the same point (a check
        # calls f_vjp at its point with several cotangents): kept only where every layer
        # is built-in (none writes to what the trace holds), run on copies of the
        # arguments (nothing the caller holds is in it), for arrays of the same bytes
        reusable = all(type(layer).__module__.startswith("gradcheck.ops.")
                       for layer in self.layers)
        last = [None]

        def _forward_at(args):
            if not reusable or not all(type(a) is np.ndarray for a in args):
                return self.forward(args[0], self.unflatten_params(args[1:]))
            key = tuple((a.dtype, a.shape, a.tobytes()) for a in args)
            seen = last[0]
            if seen is not None and seen[0] == key:
                return seen[1]
            own = tuple(a.copy() for a in args)
            trace = self.forward(own[0], self.unflatten_params(own[1:]))
            last[0] = (key, trace)
            return trace

        def f_vjp(cotangent, x, *flat):
            trace = _forward_at((x,) + tuple(flat))
            if self.loss is None:
                grad_y = cotangent
            else:
                grad_y = self.loss.vjp(cotangent, trace.output)
            back = self.backward(trace, grad_y)
            return (back.grad_x,) + self.flatten_params(back.param_grads)

        return FlatFunction(f, f_vjp, self.names)

    def structure(self, wrt: str):
        """Colors and owners for ``wrt`` from the layers' geometry, or None.

        The compact alternative to :meth:`pattern` (memory grows with the output, not with
        the multiply-adds), available when the path from ``wrt`` to ``f``'s output is
        understood (see :mod:`gradcheck.ops._structure`): the input of a chain of conv,
        pool and elementwise layers; the input of any built-in network, batch items being
        independent; a convolution's ``w``/``b`` followed only by elementwise layers.
        """
        from gradcheck.ops._structure import (
            chain_structure,
            param_structure,
            per_sample_structure,
        )

        start, arg = self._locate(wrt)
        if not all(type(l).__module__.startswith("gradcheck.ops.") for l in self.layers[start:]):
            return None   # a layer from elsewhere: nothing is known about it
        found = None
        if arg == "x":
            if self.loss is None:
                found = chain_structure(self.layers, self.shapes)
            if found is None:
                found = per_sample_structure(
                    self.input_shape,
                    self.output_shape if self.loss is None else (self.output_shape[0],))
        elif self.loss is None:
            found = param_structure(self.layers[start], self.shapes[start], arg,
                                    self.layers[start + 1:], self.shapes[start + 1:])
        if found is not None:
            # near a kink or tie the complex step takes one branch silently; only the
            # cross-check against real differences notices, so it is skipped only for
            # networks that have none
            rest = self.layers[start:]
            smooth = all(layer.smooth for layer in rest)
            found = found._replace(
                smooth=smooth,
                complex_safe=smooth and all(getattr(l, "complex_safe", True) for l in rest))
        return found

    def _locate(self, wrt: str):
        if wrt not in self.names:
            import difflib       # only for a misspelt name

            close = difflib.get_close_matches(str(wrt), list(self.names), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigurationError(
                f"wrt {wrt!r} is not an argument of this network; {hint}valid names: "
                f"{', '.join(self.names)}")
        if wrt == "input":
            return 0, "x"
        return int(wrt.split(".")[0][len("layer"):]), wrt.split(".")[-1]

    def pattern(self, wrt: str):
        """Which elements of ``f``'s output (see :meth:`as_function`) each element of ``wrt`` can reach.

        The boolean product of the layers' patterns from ``wrt``'s layer to the output
        (and the loss's per-sample pattern when a loss is set). None when a layer on the
        way cannot say (its ``pattern`` returns None, e.g. a user's layer): then any output
        may depend on any element.
        """
        from gradcheck.ops._patterns import batch_block_pattern

        start, arg = self._locate(wrt)
        if self.loss is not None:
            n = self.output_shape[0]
            result = batch_block_pattern(n, 1, math.prod(self.output_shape) // n)
        else:
            result = None
        for i in reversed(range(start, len(self.layers))):
            p = self.layers[i].pattern(self.shapes[i], arg if i == start else "x")
            if p is None:
                return None
            result = p if result is None else (result @ p)
        return result.tocsr()

