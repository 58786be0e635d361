"""Plumbing the layers share: dependency patterns and the layer protocol's checks.

Dependency patterns
-------------------
A layer's pattern with respect to an argument is a boolean ``scipy.sparse.csr_matrix``
of shape ``(output.size, argument.size)`` whose entry ``(i, j)`` is True when output
element ``i`` (C-order flat index over the whole output, batch included) may depend on
argument element ``j``. It is built by index arithmetic (one vectorized block per kernel
tap), never by visiting pixels. Patterns may over-approximate; missing a true dependence
would be a bug. Batch items never connect.

Layer plumbing
--------------
:class:`LayerBase` gives every layer the same ``repr``, equality (by ``to_dict()``),
messages that name the layer, and the input-shape and parameter checks.
"""

from __future__ import annotations

import abc
import math
import numbers

import numpy as np

from gradcheck._errors import ConfigurationError

__all__ = [
    "LayerBase",
    "csr_pattern",
    "identity_pattern",
    "window_pattern",
    "channel_block_pattern",
    "batch_block_pattern",
]


# --------------------------------------------------------------------------- patterns


def csr_pattern(rows, cols, shape):
    """Boolean CSR matrix with True at ``(rows[k], cols[k])`` (duplicates allowed)."""
    from scipy import sparse

    rows = np.asarray(rows, dtype=np.int64).ravel()
    cols = np.asarray(cols, dtype=np.int64).ravel()
    data = np.ones(rows.size, dtype=bool)
    return sparse.coo_matrix((data, (rows, cols)), shape=shape).tocsr()


def _index_dtype(*sizes):
    return np.int32 if max(sizes) < 2**31 - 1 else np.int64


def _csr_by_rows(indices, counts, shape):
    """CSR from column indices already in row-major order and the entry count per row."""
    from scipy import sparse

    dt = _index_dtype(indices.size, shape[1])
    indptr = np.zeros(len(counts) + 1, dtype=dt)
    np.cumsum(counts, out=indptr[1:])
    data = np.ones(indices.size, dtype=bool)
    return sparse.csr_matrix((data, indices.astype(dt, copy=False), indptr), shape=shape)


def identity_pattern(size: int):
    """Elementwise layers and reshapes: output ``i`` depends on input ``i`` only."""
    from scipy import sparse

    return sparse.eye(size, dtype=bool, format="csr")


def window_pattern(in_shape, out_shape, *, groups, kernel, stride, dilation, pad_lo):
    """Input pattern of a windowed layer (convolution, pooling).

    Output ``(n, o, i)`` depends on input ``(n, c, s*i + d*a - p_lo)`` for every kernel
    tap ``a`` that lands inside the input and every channel ``c`` of ``o``'s group.
    Pooling is the case ``groups = C`` (each output channel reads its own channel).
    Built row by row in C order, ``(n, o, i)`` outer and ``(c, a)`` inner, so the CSR
    arrays come straight out of one broadcast, with no sort.
    """
    n, c_in, *in_sp = in_shape
    c_out, out_sp = out_shape[1], tuple(out_shape[2:])
    nd = len(out_sp)
    c_in_g, c_out_g = c_in // groups, c_out // groups
    length, in_size, taps = math.prod(out_sp), math.prod(in_sp), math.prod(kernel)
    dt = _index_dtype(n * c_in * in_size)
    coords = np.indices(out_sp, dtype=dt).reshape(nd, length, 1)
    tap = np.indices(kernel, dtype=dt).reshape(nd, 1, taps)
    col = lambda v: np.asarray(v, dtype=dt).reshape(nd, 1, 1)  # noqa: E731
    pos = col(stride) * coords + col(dilation) * tap - col(pad_lo)   # (nd, L, K)
    valid = np.logical_and.reduce((pos >= 0) & (pos < col(in_sp)), axis=0)  # (L, K)
    flat = np.zeros((length, taps), dtype=dt)
    for k in range(nd):  # C-order ravel of the input position (0 where invalid)
        flat = flat * in_sp[k] + np.where(valid, pos[k], 0)
    chans = (np.arange(c_out, dtype=dt) // c_out_g * c_in_g)[:, None] + np.arange(c_in_g,
                                                                                 dtype=dt)
    base = (np.arange(n, dtype=dt)[:, None, None] * c_in + chans[None]) * in_size
    full = base[:, :, None, :, None] + flat[None, None, :, None, :]  # (n, c_out, L, c_in_g, K)
    mask = np.broadcast_to(valid[None, None, :, None, :], full.shape)
    counts = np.tile(c_in_g * valid.sum(axis=1), n * c_out)
    return _csr_by_rows(full[mask], counts, (n * c_out * length, n * c_in * in_size))


def channel_block_pattern(batch: int, channels: int, inner: int, block: int):
    """Parameter pattern: output ``(n, o, i)`` depends on parameter block ``o`` entirely.

    The parameter is laid out as ``channels`` contiguous blocks of ``block`` entries
    (a conv kernel ``w[o]``, a dense row ``W[o]``, or a bias entry with ``block=1``);
    ``inner`` output elements per channel and batch item.
    """
    dt = _index_dtype(channels * block)
    cols = np.arange(channels * block, dtype=dt).reshape(1, channels, 1, block)
    cols = np.broadcast_to(cols, (batch, channels, inner, block))
    rows = batch * channels * inner
    return _csr_by_rows(cols.ravel(), np.full(rows, block), (rows, channels * block))


def batch_block_pattern(batch: int, rows_per_item: int, cols_per_item: int):
    """Every output of batch item ``n`` depends on every input of item ``n`` (I ⊗ 1)."""
    dt = _index_dtype(batch * cols_per_item)
    cols = np.arange(batch * cols_per_item, dtype=dt).reshape(batch, 1, cols_per_item)
    cols = np.broadcast_to(cols, (batch, rows_per_item, cols_per_item))
    rows = batch * rows_per_item
    return _csr_by_rows(cols.ravel(), np.full(rows, cols_per_item),
                        (rows, batch * cols_per_item))


# --------------------------------------------------------------------------- layer plumbing


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value, name: str, owner: str) -> int:
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


def jsonable(value):
    """Tuples to lists, recursively, so ``to_dict()`` output is JSON-ready."""
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    return value


def check_dtype(dtype, owner: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ConfigurationError(
            f"{owner}: dtype must be a floating or complex dtype; got {dtype!r}") from exc
    if dt.kind not in "fc":
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
