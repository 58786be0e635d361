"""Validation of the public functions' arguments, once, with messages that name them."""

from __future__ import annotations

import numbers

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._precision import REAL_FLOATS, is_real_float
from gradcheck.numdiff._stencils import ALIASES, METHODS

__all__ = ["validate_common", "validate_x", "validate_like"]


def validate_x(x) -> np.ndarray:
    if not callable(getattr(x, "__array__", None)) and not isinstance(x, (list, tuple, numbers.Real)):
        raise ConfigurationError(f"x must be a real array or number; got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    if not is_real_float(arr.dtype):
        raise ConfigurationError(
            f"x must hold {', '.join(REAL_FLOATS[:-1])} or {REAL_FLOATS[-1]} values "
            f"(integers are converted); got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr.astype(np.float64))):
        raise ConfigurationError("x must be finite; got an array containing NaN or inf")
    return arr


def validate_like(value, name: str, shape, *, dtype=np.float64) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != tuple(shape):
        raise ConfigurationError(f"{name} must have shape {tuple(shape)}; got {arr.shape}")
    if arr.dtype.kind not in "biuf" or not np.all(np.isfinite(arr)):
        raise ConfigurationError(f"{name} must hold finite real numbers; got dtype {arr.dtype}"
                                 + ("" if arr.dtype.kind not in "biuf" else " with NaN or inf"))
    return arr.astype(dtype)


def _positive_array(value, name, shape, what):
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{name} must be a positive number or an array broadcastable to x's shape "
            f"{tuple(shape)} ({what}); got {value!r}") from None
    if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ConfigurationError(
            f"{name} must be positive and finite ({what}); got {value!r}")
    return arr


def validate_common(f, x, *, method, scale, step, vectorized, memory, max_retries, seed):
    if not callable(f):
        raise ConfigurationError(f"f must be callable; got {type(f).__name__}")
    if method not in METHODS and method not in ALIASES:
        former = ", ".join(f"{old!r} for {new!r}" for old, new in ALIASES.items())
        raise ConfigurationError(f"method must be one of {METHODS} (or the former name "
                                 f"{former}); got {method!r}")
    scale = _positive_array(scale, "scale", x.shape, "the typical magnitude of x")
    scale = scale.reshape(-1).astype(np.float64)
    if step is not None:
        step = _positive_array(step, "step", x.shape, "the base step per element")
    if not isinstance(vectorized, (bool, np.bool_)):
        raise ConfigurationError(f"vectorized must be True or False; got {vectorized!r}")
    if (isinstance(memory, bool) or not isinstance(memory, numbers.Real)
            or not np.isfinite(memory) or memory <= 0):
        raise ConfigurationError(
            f"memory must be a positive number of bytes for a chunk of points; got {memory!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, numbers.Integral) or max_retries < 0:
        raise ConfigurationError(
            f"max_retries must be a non-negative integer; got {max_retries!r}")
    if not (seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool))):
        raise ConfigurationError(f"seed must be an integer or None; got {seed!r}")
    return scale, step
