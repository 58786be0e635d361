"""Argument checking and shape arithmetic for N-d convolution.

Everything a convolution needs to know about its arguments is settled here, once, by
:func:`conv_geometry`; the kernels in :mod:`gradcheck.ops.conv` trust what it returns.
Errors name the argument, repeat the value and say what would be valid.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._record import NamedTuple
from gradcheck._validate import is_int

__all__ = ["ConvGeometry", "conv_geometry", "as_float_array", "normalize_tuple"]

_PADDING_WORDS = ("valid", "same", "full")


class ConvGeometry(NamedTuple):
    """Shapes and hyper-parameters of one convolution, per spatial dimension."""

    nd: int
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pad_hi: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(n + lo + hi for n, lo, hi in zip(self.in_shape, self.pad_lo, self.pad_hi))

    @property
    def effective_kernel(self) -> tuple[int, ...]:
        """Extent of the dilated kernel, ``d*(k-1)+1`` per dimension."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def has_padding(self) -> bool:
        return any(self.pad_lo) or any(self.pad_hi)

    def describe(self) -> str:
        return (
            f"x {(self.batch, self.in_channels, *self.in_shape)}, "
            f"w {(self.out_channels, self.in_channels // self.groups, *self.kernel)}, "
            f"stride {self.stride}, padding {tuple(zip(self.pad_lo, self.pad_hi))}, "
            f"dilation {self.dilation}, groups {self.groups}"
        )


def normalize_tuple(value, nd: int, name: str, *, minimum: int) -> tuple[int, ...]:
    """Turn an int or a length-``nd`` sequence of ints into a tuple, checking bounds."""
    if is_int(value):
        values = (int(value),) * nd
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != nd or not all(is_int(v) for v in values):
            raise ConfigurationError(
                f"{name} must be an int or a tuple of {nd} ints (one per spatial dim); "
                f"got {value!r}"
            )
        values = tuple(int(v) for v in values)
    else:
        raise ConfigurationError(
            f"{name} must be an int or a tuple of {nd} ints (one per spatial dim); got {value!r}"
        )
    if any(v < minimum for v in values):
        raise ConfigurationError(f"{name} must be >= {minimum} in every spatial dim; got {value!r}")
    return values


def _normalize_padding(padding, nd, kernel, dilation, stride):
    """Return (pad_lo, pad_hi) tuples for an int, a tuple, per-dim pairs, or a word."""
    if isinstance(padding, str):
        word = padding.lower()
        if word not in _PADDING_WORDS:
            raise ConfigurationError(
                f"padding must be an int, a tuple of ints, or one of {_PADDING_WORDS}; "
                f"got {padding!r}"
            )
        reach = tuple(d * (k - 1) for k, d in zip(kernel, dilation))
        if word == "valid":
            return (0,) * nd, (0,) * nd
        if word == "full":
            return reach, reach
        if any(s != 1 for s in stride):
            raise ConfigurationError(
                f"padding='same' needs stride 1 in every spatial dim (as in PyTorch); "
                f"got stride {stride}"
            )
        # Total padding d*(k-1) keeps the size; the odd one out goes on the high side.
        lo = tuple(r // 2 for r in reach)
        return lo, tuple(r - l for r, l in zip(reach, lo))
    if isinstance(padding, Sequence) and any(
        isinstance(p, Sequence) and not isinstance(p, str) for p in padding
    ):
        pairs = tuple(padding)
        ok = len(pairs) == nd and all(
            isinstance(p, Sequence) and len(p) == 2 and all(is_int(v) and v >= 0 for v in p)
            for p in pairs
        )
        if not ok:
            raise ConfigurationError(
                f"padding given as pairs must be {nd} (low, high) pairs of ints >= 0; "
                f"got {padding!r}"
            )
        return tuple(int(p[0]) for p in pairs), tuple(int(p[1]) for p in pairs)
    if not (is_int(padding) or (isinstance(padding, Sequence) and not isinstance(padding, str))):
        raise ConfigurationError(
            f"padding must be an int >= 0, a tuple of {nd} ints, {nd} (low, high) pairs, or one "
            f"of {_PADDING_WORDS}; got {padding!r}")
    pads = normalize_tuple(padding, nd, "padding", minimum=0)
    return pads, pads


def as_float_array(value, name: str) -> np.ndarray:
    """Return ``value`` as a floating (or complex) ndarray without changing its precision.

    Integers and booleans are promoted to float64; float16 and bfloat16 to float32;
    extended precision (long double) to float64, since BLAS has no such type. Anything that
    cannot become a numeric array is a :class:`ConfigurationError` naming ``name``.
    """
    if value is None:
        raise ConfigurationError(f"{name} must be an array of numbers; got None")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # numpy's own conversion errors vary (ragged nesting, ...)
        raise ConfigurationError(
            f"{name} must be a rectangular array of numbers; {type(value).__name__} could not "
            f"be converted ({exc})") from exc
    kind = arr.dtype.kind
    if kind in "fc":
        if arr.dtype == np.float16:
            return arr.astype(np.float32)
        if arr.dtype in (np.longdouble, np.clongdouble) and arr.dtype.itemsize > (
                8 if kind == "f" else 16):
            # extended precision has no BLAS: compute in double and say so in the docs
            return arr.astype(np.float64 if kind == "f" else np.complex128)
        return arr
    if kind in "iub":
        return arr.astype(np.float64)
    if arr.dtype.name == "bfloat16":       # ml_dtypes' type, of kind "V": as float16 above
        return arr.astype(np.float32)
    raise ConfigurationError(
        f"{name} must hold real or complex numbers; got an array of dtype {arr.dtype}"
    )


def conv_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
) -> ConvGeometry:
    """Validate convolution arguments and compute every derived shape.

    ``x_shape`` is ``(N, C_in, *spatial)`` and ``w_shape`` ``(C_out, C_in/groups, *kernel)``
    with 1 to 3 spatial dimensions.

    A check asks it dozens of times for the same few layers: the geometry of arguments
    seen before is reused (keyed by their ``repr``, so ``True`` and ``1`` or ``2.0`` and
    ``2`` stay apart and each is judged on its own; arguments that fail are not kept).
    """
    key = repr((tuple(x_shape), tuple(w_shape), stride, padding, dilation, groups))
    found = _GEOMETRIES.get(key)
    if found is None:
        found = _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups)
        if len(_GEOMETRIES) >= _GEOMETRIES_KEPT:
            _GEOMETRIES.clear()
        _GEOMETRIES[key] = found
    return found


#: Geometries computed (``repr`` of the arguments -> ConvGeometry, an immutable record).
_GEOMETRIES: dict = {}
_GEOMETRIES_KEPT = 256


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups) -> ConvGeometry:
    """:func:`conv_geometry` computed."""
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    if not 3 <= len(x_shape) <= 5:
        raise ConfigurationError(
            f"x must have shape (N, C_in, *spatial) with 1 to 3 spatial dims; got shape {x_shape}"
        )
    nd = len(x_shape) - 2
    if len(w_shape) != len(x_shape):
        raise ConfigurationError(
            f"w must have shape (C_out, C_in/groups, *kernel) with {nd} kernel dims to match x "
            f"of shape {x_shape}; got shape {w_shape}"
        )
    if any(n <= 0 for n in x_shape):
        raise ConfigurationError(f"x must have no zero-size dimension; got shape {x_shape}")
    if any(n <= 0 for n in w_shape):
        raise ConfigurationError(f"w must have no zero-size dimension; got shape {w_shape}")
    if not is_int(groups) or groups < 1:
        raise ConfigurationError(f"groups must be a positive int; got {groups!r}")
    batch, c_in = x_shape[:2]
    c_out, c_in_g = w_shape[:2]
    if c_in % groups:
        raise ConfigurationError(
            f"groups={groups} must divide the input channels, but x has C_in={c_in}; "
            f"valid groups here: {[g for g in range(1, c_in + 1) if c_in % g == 0]}"
        )
    if c_out % groups:
        raise ConfigurationError(
            f"groups={groups} must divide the output channels, but w has C_out={c_out}; "
            f"valid groups for C_in={c_in}, C_out={c_out}: "
            f"{[g for g in range(1, min(c_in, c_out) + 1) if c_in % g == 0 and c_out % g == 0]}"
        )
    if c_in_g * groups != c_in:
        raise ConfigurationError(
            f"w.shape[1] must be C_in/groups = {c_in}/{groups} = {c_in // groups}; "
            f"got w of shape {w_shape}"
        )
    kernel = tuple(int(k) for k in w_shape[2:])
    stride_t = normalize_tuple(stride, nd, "stride", minimum=1)
    dilation_t = normalize_tuple(dilation, nd, "dilation", minimum=1)
    pad_lo, pad_hi = _normalize_padding(padding, nd, kernel, dilation_t, stride_t)
    in_shape = tuple(int(n) for n in x_shape[2:])
    out_shape = []
    for axis, (n, k, s, d, lo, hi) in enumerate(
        zip(in_shape, kernel, stride_t, dilation_t, pad_lo, pad_hi)
    ):
        reach = d * (k - 1) + 1
        if n + lo + hi < reach:
            raise ConfigurationError(
                f"kernel is larger than the padded input along spatial dim {axis}: "
                f"dilated kernel size {reach} (kernel {k}, dilation {d}) > input {n} + "
                f"padding {lo}+{hi} = {n + lo + hi}; use a smaller kernel or more padding"
            )
        out_shape.append((n + lo + hi - reach) // s + 1)
    return ConvGeometry(
        nd=nd,
        batch=int(batch),
        in_channels=int(c_in),
        out_channels=int(c_out),
        groups=int(groups),
        in_shape=in_shape,
        kernel=kernel,
        stride=stride_t,
        dilation=dilation_t,
        pad_lo=pad_lo,
        pad_hi=pad_hi,
        out_shape=tuple(out_shape),
    )


def prod(values) -> int:
    return int(math.prod(values))
