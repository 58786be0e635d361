r"""Layer objects with one protocol: convolution, activation, pooling, flatten, dense.

The protocol
------------
Every layer has

* ``kind`` -- ``"conv"``, ``"activation"`` (with ``.name``, e.g. ``"tanh"``),
  ``"maxpool"``, ``"avgpool"``, ``"flatten"`` or ``"dense"``;
* ``output_shape(input_shape)`` -- validates the input shape against the layer and
  raises :class:`~gradcheck.ConfigurationError` naming the layer and the argument;
* ``param_shapes(input_shape)`` -- ordered ``{name: shape}`` (empty without parameters);
* ``init_params(input_shape, *, rng, dtype)`` -- parameters scaled so activations stay of
  order one;
* ``forward(x, *params)`` -- a pure function, parameters in ``param_shapes`` order;
* ``backward(grad_y, x, *params)`` -- ``(grad_x, *grad_params)``, the same contract as a
  user's layer and as ``torch.autograd.Function``;
* ``pattern(input_shape, wrt)`` -- boolean ``scipy.sparse.csr_matrix`` of shape
  ``(prod(output_shape), prod(shape of wrt))``: which outputs each element of ``x`` or of
  a parameter can reach (see :mod:`gradcheck.ops._patterns`);
* ``to_dict()`` -- the layer-spec form, e.g. ``{"type": "maxpool", "kernel": 2, ...}``;
  :func:`layer_from_dict` inverts it.

Every layer works on complex arrays where its math allows (convolution, dense, average
pooling, flatten, every activation, and max pooling by the real part), so complex-step
differentiation can run through it.
"""

from __future__ import annotations

import inspect
import math
from typing import Mapping

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._plain import plain
from gradcheck._validate import is_int
from gradcheck.ops._geometry import as_float_array, conv_geometry
from gradcheck.ops._layer_base import LayerBase, WeightedLayer, int_or_tuple, positive_int
from gradcheck.ops._memo import last_call
from gradcheck.ops.activations import ACTIVATIONS, get_activation
from gradcheck.ops.conv import CONVENTIONS, conv_backward, conv_forward

# MaxPool, AvgPool, Flatten and Dense live in gradcheck.ops.pooling and gradcheck.ops.dense,
# and are found here on first use (PEP 562, see __getattr__ below): a network of
# convolutions and activations imports neither, nor the patterns (._patterns)

__all__ = [
    "Conv",
    "Activation",
    "MaxPool",
    "AvgPool",
    "Flatten",
    "Dense",
    "LAYER_TYPES",
    "layer_from_dict",
]

_PADDING_WORDS = ("valid", "same", "full")


class Conv(WeightedLayer):
    r"""Convolution layer over 1 to 3 spatial dims, wrapping :func:`gradcheck.conv_forward`.

    The spatial rank is taken from the input shape; an int ``kernel`` is used in every
    spatial dim. Backward is :func:`gradcheck.conv_backward`: the input error is the
    seed's full convolution of :math:`\delta` with ``rot180(w)``, the weight gradient the
    valid correlation of the input with :math:`\delta`.

    Parameters
    ----------
    out_channels : int
    kernel : int or tuple of int
    stride, dilation : int or tuple of int
    padding : int, tuple of int, or {"valid", "same", "full"}
    groups : int
        Must divide ``out_channels`` (and the input channels).
    bias : bool
    convention : {"correlation", "convolution"}

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.ops.layers import Conv
    >>> conv = Conv(4, 3, padding=1)
    >>> conv.output_shape((2, 3, 8, 8)), conv.param_shapes((2, 3, 8, 8))
    ((2, 4, 8, 8), {'w': (4, 3, 3, 3), 'b': (4,)})
    >>> conv.to_dict()["padding"]
    1
    """

    kind = "conv"
    smooth = True
    _defaults = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True,
                 "convention": "correlation"}

    def __init__(self, out_channels, kernel, *, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, convention="correlation"):
        owner = f"Conv(out_channels={out_channels!r}, kernel={kernel!r})"
        self.out_channels = positive_int(out_channels, "out_channels", owner)
        self.kernel = int_or_tuple(kernel, "kernel", owner, minimum=1)
        self.stride = int_or_tuple(stride, "stride", owner, minimum=1)
        self.dilation = int_or_tuple(dilation, "dilation", owner, minimum=1)
        if isinstance(padding, str):
            if padding not in _PADDING_WORDS:
                raise ConfigurationError(
                    f"{owner}: padding must be an int, a tuple of ints, or one of "
                    f"{_PADDING_WORDS}; got {padding!r}")
            self.padding = padding
        elif isinstance(padding, (tuple, list)) and any(isinstance(p, (tuple, list))
                                                        for p in padding):
            self.padding = tuple(tuple(p) if isinstance(p, (tuple, list)) else p
                                 for p in padding)  # (low, high) pairs: checked per input
        else:
            self.padding = int_or_tuple(padding, "padding", owner, minimum=0)
        self.groups = positive_int(groups, "groups", owner)
        if self.out_channels % self.groups:
            raise ConfigurationError(
                f"{owner}: groups={groups} must divide out_channels={out_channels}")
        if not isinstance(bias, bool):
            raise ConfigurationError(f"{owner}: bias must be True or False; got {bias!r}")
        self.bias = bias
        if convention not in CONVENTIONS:
            raise ConfigurationError(
                f"{owner}: convention must be one of {CONVENTIONS}; got {convention!r}")
        self.convention = convention

    def to_dict(self) -> dict:
        return {"type": "conv", "out_channels": self.out_channels,
                "kernel": plain(self.kernel), "stride": plain(self.stride),
                "padding": plain(self.padding), "dilation": plain(self.dilation),
                "groups": self.groups, "bias": self.bias, "convention": self.convention}

    def _options(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups}

    def _geometry(self, input_shape):
        shape = self._input_shape(input_shape, min_ndim=3, max_ndim=5,
                                  what="(N, C_in, *spatial) with 1 to 3 spatial dims")
        nd = len(shape) - 2
        kernel = (self.kernel,) * nd if is_int(self.kernel) else self.kernel
        if len(kernel) != nd:
            raise self._error(
                f"kernel must be an int or a tuple of {nd} ints for input of shape {shape} "
                f"({nd} spatial dims); got {self.kernel!r}")
        if shape[1] % self.groups:
            raise self._error(
                f"groups={self.groups} must divide the input channels, but the input has "
                f"C_in={shape[1]} (shape {shape})")
        w_shape = (self.out_channels, shape[1] // self.groups, *kernel)
        try:
            return conv_geometry(shape, w_shape, **self._options())
        except ConfigurationError as exc:
            raise self._error(str(exc)) from None

    def output_shape(self, input_shape) -> tuple:
        g = self._geometry(input_shape)
        return (g.batch, g.out_channels, *g.out_shape)

    def param_shapes(self, input_shape) -> dict:
        g = self._geometry(input_shape)
        return self._weight_and_bias((g.out_channels, g.in_channels // g.groups, *g.kernel))

    def _split(self, x, params, method):
        x = as_float_array(x, "x")
        self._check_params(x.shape, params, method)
        return x, params[0], (params[1] if self.bias else None)

    def forward(self, x, *params) -> np.ndarray:
        """:func:`gradcheck.conv_forward` with this layer's options."""
        x, w, b = self._split(x, params, "forward")
        return conv_forward(x, w, b, convention=self.convention, **self._options())

    def backward(self, grad_y, x, *params) -> tuple:
        """``(grad_x, grad_w[, grad_b])`` from :func:`gradcheck.conv_backward`."""
        x, w, _ = self._split(x, params, "backward")
        self._check_grad_y(grad_y, x.shape)
        gx, gw, gb = conv_backward(grad_y, x, w, convention=self.convention, bias=self.bias,
                                   **self._options())
        return (gx, gw, gb) if self.bias else (gx, gw)

    def pattern(self, input_shape, wrt="x"):
        """x: the convolution matrix's structure; w: channel ``o``'s outputs to all of ``w[o]``; b: to ``b[o]``."""
        g = self._geometry(input_shape)
        self._check_wrt(input_shape, wrt)
        from gradcheck.ops._patterns import channel_block_pattern, window_pattern

        if wrt == "x":
            return window_pattern((g.batch, g.in_channels, *g.in_shape),
                                  (g.batch, g.out_channels, *g.out_shape), groups=g.groups,
                                  kernel=g.kernel, stride=g.stride, dilation=g.dilation,
                                  pad_lo=g.pad_lo)
        block = (g.in_channels // g.groups) * math.prod(g.kernel) if wrt == "w" else 1
        return channel_block_pattern(g.batch, g.out_channels, math.prod(g.out_shape), block)


class Activation(LayerBase):
    r"""Elementwise activation from the table: ``a = σ(z)``, backward ``δ ⊙ σ'(z)``.

    Parameters
    ----------
    name : str
        A key of :data:`gradcheck.ops.activations.ACTIVATIONS`.
    **params
        ``alpha`` for ``leaky_relu`` and ``elu``; ``min_val``/``max_val`` for ``hard_tanh``.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.ops.layers import Activation
    >>> act = Activation("relu")
    >>> act.backward(np.array([5.0, 5.0]), np.array([-1.0, 2.0]))
    (array([0., 5.]),)
    >>> Activation("leaky_relu", alpha=0.1).to_dict()
    {'type': 'leaky_relu', 'alpha': 0.1}
    """

    kind = "activation"

    def __init__(self, name, **params):
        self.spec = get_activation(name, **params)

    # the value and derivative at the last input are kept: a check asks for them again at
    # the same point (the backward for each cotangent, each tensor's complex steps)
    def value_at(self, z) -> np.ndarray:
        r""":math:`\sigma(z)` as the table computes it, kept for the next call with the same
        ``z`` (read-only)."""
        return last_call(self, "_value_memo")(self.spec.value, z)

    def derivative_at(self, z) -> np.ndarray:
        r""":math:`\sigma'(z)` as the table computes it, kept for the next call with the
        same ``z`` (read-only)."""
        return last_call(self, "_derivative_memo")(self.spec.derivative, z)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def complex_safe(self) -> bool:
        return self.spec.complex_safe

    @property
    def smooth(self) -> bool:
        return not self.spec.kinks

    def to_dict(self) -> dict:
        return self.spec.to_dict()

    def output_shape(self, input_shape) -> tuple:
        return self._input_shape(input_shape, min_ndim=1, max_ndim=32, what="(N, ...)")

    def forward(self, x, *params) -> np.ndarray:
        """:math:`a = \\sigma(z)`."""
        x = as_float_array(x, "x")
        self._check_params(x.shape, params, "forward")
        return self.spec.value(x)

    def backward(self, grad_y, x, *params) -> tuple:
        """``(grad_y * σ'(x),)`` -- the derivative taken at the input ``z``."""
        x = as_float_array(x, "x")
        self._check_params(x.shape, params, "backward")
        grad_y = as_float_array(grad_y, "grad_y")
        self._check_grad_y(grad_y, x.shape)
        return (grad_y * self.derivative_at(x),)

    def pattern(self, input_shape, wrt="x"):
        from gradcheck.ops._patterns import identity_pattern

        self._check_wrt(input_shape, wrt)
        return identity_pattern(math.prod(self.output_shape(input_shape)))


#: The layer classes defined in other modules, by name, and their modules.
_ELSEWHERE = {"MaxPool": "gradcheck.ops.pooling", "AvgPool": "gradcheck.ops.pooling",
              "Flatten": "gradcheck.ops.dense", "Dense": "gradcheck.ops.dense"}

#: The layer types (``to_dict()["type"]``) other than the activations, with the name of
#: each one's class; every activation name is a type too.
_TYPE_CLASSES = {"conv": "Conv", "maxpool": "MaxPool", "avgpool": "AvgPool",
                 "flatten": "Flatten", "dense": "Dense"}


def __getattr__(name):
    """``MaxPool``, ``AvgPool``, ``Flatten``, ``Dense`` (imported from their modules) and
    ``LAYER_TYPES`` (layer classes by their ``to_dict()["type"]``), made on first use."""
    if name == "LAYER_TYPES":
        value = {kind: _layer_class(kind) for kind in _TYPE_CLASSES}
    elif name in _ELSEWHERE:
        import importlib

        value = getattr(importlib.import_module(_ELSEWHERE[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_ELSEWHERE, "LAYER_TYPES"})


def _layer_class(kind: str) -> type:
    """The class of layer type ``kind`` (a key of ``_TYPE_CLASSES``)."""
    name = _TYPE_CLASSES[kind]
    return globals().get(name) or __getattr__(name)


def layer_from_dict(spec: Mapping) -> LayerBase:
    """Build a layer from its ``to_dict()`` form (the inverse of ``to_dict``).

    Examples
    --------
    >>> from gradcheck.ops.layers import layer_from_dict
    >>> layer_from_dict({"type": "maxpool", "kernel": 2})
    MaxPool(kernel=2, stride=2)
    >>> layer_from_dict({"type": "tanh"}).name
    'tanh'
    """
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigurationError(
            f"a layer spec must be a mapping with a 'type' key; got {spec!r}")
    kind = spec["type"]
    options = {k: v for k, v in spec.items() if k != "type"}
    valid = [*_TYPE_CLASSES, *ACTIVATIONS]
    if not isinstance(kind, str) or kind not in valid:
        import difflib       # only for a misspelt name

        close = difflib.get_close_matches(str(kind), valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigurationError(
            f"layer type {kind!r} is not known; {hint}valid types: {', '.join(valid)}")
    if kind in ACTIVATIONS:
        return Activation(kind, **options)
    cls = _layer_class(kind)
    positional = {"conv": ("out_channels", "kernel"), "maxpool": ("kernel",),
                  "avgpool": ("kernel",), "dense": ("out_features",), "flatten": ()}[kind]
    missing = [k for k in positional if k not in options]
    if missing:
        raise ConfigurationError(f"layer type {kind!r} needs {', '.join(missing)}; got {spec!r}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ConfigurationError(
            f"layer type {kind!r} does not take {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(accepted)}")
    args = [options.pop(k) for k in positional]
    return cls(*args, **options)
