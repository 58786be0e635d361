"""The layer protocol's shared half: :class:`LayerBase` and the checks layers make.

:class:`LayerBase` gives every layer the same ``repr``, equality (by ``to_dict()``),
messages that name the layer, and the input-shape and parameter checks;
:class:`WeightedLayer` adds the weight-and-bias parameters that conv and dense layers
share. The protocol itself (``output_shape``, ``forward``, ``backward``, ``pattern`` ...)
is described in :mod:`gradcheck.ops.layers`.
"""

from __future__ import annotations

import abc
import math

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._precision import is_real_float
from gradcheck._validate import is_int

__all__ = ["LayerBase", "WeightedLayer", "positive_int", "int_or_tuple", "check_dtype"]


def positive_int(value, name: str, owner: str) -> int:
    """``value`` as an int >= 1, or a message that starts with the layer ``owner``."""
    if not is_int(value) or value < 1:
        raise ConfigurationError(f"{owner}: {name} must be a positive int; got {value!r}")
    return int(value)


def int_or_tuple(value, name: str, owner: str, *, minimum: int):
    """Check an int or a 1-3 tuple of ints >= ``minimum``; keep the user's form."""
    if is_int(value):
        ok = value >= minimum
    elif isinstance(value, (tuple, list)):
        ok = 1 <= len(value) <= 3 and all(is_int(v) and v >= minimum for v in value)
        value = tuple(int(v) for v in value) if ok else value
    else:
        ok = False
    if not ok:
        raise ConfigurationError(
            f"{owner}: {name} must be an int >= {minimum} or a tuple of 1 to 3 such ints "
            f"(one per spatial dim); got {value!r}"
        )
    return int(value) if is_int(value) else value


def check_dtype(dtype, owner: str) -> np.dtype:
    """``dtype`` as a floating or complex NumPy dtype (bfloat16 included)."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ConfigurationError(
            f"{owner}: dtype must be a floating or complex dtype; got {dtype!r}") from exc
    if dt.kind not in "fc" and not is_real_float(dt):     # bfloat16 is kind "V"
        raise ConfigurationError(
            f"{owner}: dtype must be a floating or complex dtype such as float32 or "
            f"float64; got {dt}"
        )
    return dt


class LayerBase(abc.ABC):
    """Shared behaviour of the layers: naming, equality, shape and parameter checks."""

    kind = "layer"
    #: Whether ``forward`` on complex input is the analytic continuation of the real
    #: layer, so complex-step differentiation may run through it (away from kinks/ties).
    complex_safe = True
    #: Whether the layer is smooth in its input and parameters: no kinks and no ties, so
    #: a complex step through it needs no second evaluation to expose one.
    smooth = False
    #: ``to_dict()`` entries left out of the repr and messages when at these values.
    _defaults: dict = {}

    @property
    def name(self) -> str:
        return self.kind

    @abc.abstractmethod
    def to_dict(self) -> dict:
        """The layer-spec form of this layer (``{"type": kind, ...}``)."""

    def _label(self) -> str:
        args = {k: v for k, v in self.to_dict().items()
                if k != "type" and not (k in self._defaults and self._defaults[k] == v)}
        inside = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{type(self).__name__}({inside})"

    def __repr__(self) -> str:
        return self._label()

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))

    def _error(self, message: str) -> ConfigurationError:
        return ConfigurationError(f"{self._label()}: {message}")

    def _input_shape(self, input_shape, *, min_ndim: int, max_ndim: int, what: str):
        """Validate ``input_shape`` as a tuple of positive ints of a given rank."""
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
        if shape is None or not all(is_int(n) and n >= 1 for n in shape):
            raise self._error(f"input_shape must be a tuple of positive ints; got {input_shape!r}")
        shape = tuple(int(n) for n in shape)
        if not min_ndim <= len(shape) <= max_ndim:
            raise self._error(f"input must have shape {what}; got shape {shape}")
        return shape

    def param_shapes(self, input_shape) -> dict:
        self.output_shape(input_shape)
        return {}

    def init_params(self, input_shape, *, rng: np.random.Generator, dtype=np.float64) -> dict:
        self.output_shape(input_shape)
        return {}

    def _check_params(self, x_shape, params, method: str) -> dict:
        """Check count and shapes of ``params`` against :meth:`param_shapes`."""
        shapes = self.param_shapes(x_shape)
        if len(params) != len(shapes):
            names = ", ".join(shapes) if shapes else "none"
            raise self._error(
                f"{method} takes the parameters ({names}) after x; got {len(params)} "
                f"parameter array(s)"
            )
        for (pname, shape), value in zip(shapes.items(), params):
            if np.shape(value) != shape:
                raise self._error(
                    f"parameter {pname} must have shape {shape} for input of shape "
                    f"{tuple(x_shape)}; got shape {np.shape(value)}"
                )
        return shapes

    def _check_grad_y(self, grad_y, x_shape):
        expected = self.output_shape(x_shape)
        if np.shape(grad_y) != expected:
            raise self._error(
                f"grad_y must have the output shape {expected} for input of shape "
                f"{tuple(x_shape)}; got shape {np.shape(grad_y)}"
            )

    def _check_wrt(self, input_shape, wrt):
        names = ("x", *self.param_shapes(input_shape))
        if wrt not in names:
            raise self._error(f"wrt must be one of {names}; got {wrt!r}")


class WeightedLayer(LayerBase):
    """A layer with a weight ``w`` (output channels first) and, if ``bias``, a bias ``b``."""

    bias: bool = True

    def _weight_and_bias(self, w_shape) -> dict:
        """``{"w": w_shape, "b": (w_shape[0],)}``, without ``b`` when the layer has none."""
        w_shape = tuple(w_shape)
        return {"w": w_shape, "b": (w_shape[0],)} if self.bias else {"w": w_shape}

    def init_params(self, input_shape, *, rng: np.random.Generator, dtype=np.float64) -> dict:
        """``w ~ N(0, 1/fan_in)``, ``b ~ U(±1/sqrt(fan_in))``: outputs of unit scale.

        ``fan_in = prod(w.shape[1:])`` is the number of inputs one output sums:
        ``in_features`` for a dense layer, ``C_in/groups * prod(kernel)`` for a conv.
        """
        dtype = check_dtype(dtype, self._label())
        shapes = self.param_shapes(input_shape)
        bound = 1.0 / math.sqrt(math.prod(shapes["w"][1:]))
        params = {"w": (rng.standard_normal(shapes["w"]) * bound).astype(dtype)}
        if self.bias:
            params["b"] = rng.uniform(-bound, bound, shapes["b"]).astype(dtype)
        return params
