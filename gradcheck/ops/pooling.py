r"""Max and average pooling over 1, 2 or 3 spatial dims, forward and backward.

Both layers read windows of ``kernel`` entries, ``stride`` apart (default: the kernel,
so windows tile), from the input padded by ``padding`` on each side, per channel; the
output size is ``(n + 2p - k) // s + 1`` per dim (floor, as PyTorch's default). The
padding may be at most half the kernel, as in PyTorch, so every window holds at least one
real entry.

* **MaxPool** pads with :math:`-\infty`, so padding is never selected (unless every real
  entry of the window is :math:`-\infty` as well; then the gradient may be dropped).
  :math:`y = \max_{\mathbf{a}} x_p[s\mathbf{i} + \mathbf{a}]` and the whole output
  error goes to the selected entry. **Ties**: the gradient goes to the *first* maximal
  entry of the window in C order of the window (row-major over the kernel taps), and to
  no other; a NaN in a window is selected (the first one) and propagates. Complex input
  is compared by its real part and the selected entry is passed through unchanged, so
  complex-step differentiation works away from ties.
* **AvgPool** pads with zeros and *counts the padded zeros* in the mean (PyTorch's default
  ``count_include_pad=True``): :math:`y = \frac{1}{|K|}\sum_{\mathbf{a}}
  x_p[s\mathbf{i}+\mathbf{a}]`, and each entry receives :math:`\delta/|K|` from every
  window that contains it.

Implementation: one strided slice per kernel tap (loops over taps, never over pixels);
overlapping windows accumulate their gradients with ``+=``.
"""

from __future__ import annotations

import math

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._plain import plain
from gradcheck._record import NamedTuple
from gradcheck.ops._geometry import as_float_array, normalize_tuple
from gradcheck.ops._layer_base import LayerBase, int_or_tuple
from gradcheck.ops._patterns import window_pattern

__all__ = ["MaxPool", "AvgPool"]


class _PoolGeometry(NamedTuple):
    nd: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]  # full (N, C, *out)


def _tap_slices(tap, stride, out_sp):
    return tuple(slice(t, t + s * (o - 1) + 1, s) for t, s, o in zip(tap, stride, out_sp))


class _Pool(LayerBase):
    _defaults = {"padding": 0}

    def __init__(self, kernel, *, stride=None, padding=0):
        owner = f"{type(self).__name__}(kernel={kernel!r})"
        self.kernel = int_or_tuple(kernel, "kernel", owner, minimum=1)
        self.stride = None if stride is None else int_or_tuple(stride, "stride", owner,
                                                                minimum=1)
        self.padding = int_or_tuple(padding, "padding", owner, minimum=0)

    def to_dict(self) -> dict:
        stride = self.kernel if self.stride is None else self.stride
        return {"type": self.kind, "kernel": plain(self.kernel), "stride": plain(stride),
                "padding": plain(self.padding)}

    def _geometry(self, input_shape) -> _PoolGeometry:
        shape = self._input_shape(input_shape, min_ndim=3, max_ndim=5,
                                  what="(N, C, *spatial) with 1 to 3 spatial dims")
        nd = len(shape) - 2
        try:
            kernel = normalize_tuple(self.kernel, nd, "kernel", minimum=1)
            stride = kernel if self.stride is None else normalize_tuple(
                self.stride, nd, "stride", minimum=1)
            pad = normalize_tuple(self.padding, nd, "padding", minimum=0)
        except ConfigurationError as exc:
            raise self._error(f"{exc} (input has {nd} spatial dims)") from None
        out = []
        for axis, (n, k, s, p) in enumerate(zip(shape[2:], kernel, stride, pad)):
            if 2 * p > k:
                raise self._error(
                    f"padding {p} along spatial dim {axis} must be at most half the kernel "
                    f"size {k}; use padding <= {k // 2}"
                )
            if n + 2 * p < k:
                raise self._error(
                    f"kernel is larger than the padded input along spatial dim {axis}: "
                    f"kernel {k} > input {n} + padding 2*{p} = {n + 2 * p}; use a smaller "
                    f"kernel or more padding"
                )
            out.append((n + 2 * p - k) // s + 1)
        return _PoolGeometry(nd, kernel, stride, pad, shape, shape[:2] + tuple(out))

    def output_shape(self, input_shape) -> tuple:
        return self._geometry(input_shape).out_shape

    def pattern(self, input_shape, wrt="x"):
        g = self._geometry(input_shape)
        self._check_wrt(input_shape, wrt)
        return window_pattern(g.in_shape, g.out_shape, groups=g.in_shape[1], kernel=g.kernel,
                              stride=g.stride, dilation=(1,) * g.nd, pad_lo=g.pad)

    def _pad(self, x, g: _PoolGeometry, value):
        if not any(g.pad):
            return x
        return np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in g.pad], constant_values=value)

    def _prepare(self, x, params, method):
        x = as_float_array(x, "x")
        g = self._geometry(x.shape)
        self._check_params(x.shape, params, method)
        return x, g

    def _scatter(self, per_tap, g: _PoolGeometry, dtype):
        """Sum each tap's contribution back at its window offset, then crop the padding."""
        lead = (slice(None), slice(None))
        padded = tuple(n + 2 * p for n, p in zip(g.in_shape[2:], g.pad))
        grad_xp = np.zeros(g.in_shape[:2] + padded, dtype=dtype)
        for t, tap in enumerate(np.ndindex(*g.kernel)):
            grad_xp[lead + _tap_slices(tap, g.stride, g.out_shape[2:])] += per_tap(t)
        if not any(g.pad):
            return grad_xp
        crop = tuple(slice(p, p + n) for p, n in zip(g.pad, g.in_shape[2:]))
        return np.ascontiguousarray(grad_xp[lead + crop])


class MaxPool(_Pool):
    """Max pooling; ties send the gradient to the first maximal entry (C order of the window).

    Parameters
    ----------
    kernel : int or tuple of int
        Window size per spatial dim.
    stride : int or tuple of int, optional
        Defaults to ``kernel``.
    padding : int or tuple of int
        Padding with :math:`-\\infty` on each side, at most half the kernel.

    Examples
    --------
    A tie inside a window: the gradient goes to the first of the equal maxima.

    >>> import numpy as np
    >>> from gradcheck.ops.layers import MaxPool
    >>> pool = MaxPool(2)
    >>> x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    >>> pool.forward(x)
    array([[[[3.]]]])
    >>> pool.backward(np.ones((1, 1, 1, 1)), x)[0]
    array([[[[0., 1.],
             [0., 0.]]]])
    """

    kind = "maxpool"

    def _select(self, x, g: _PoolGeometry):
        """Window maxima and, per output, the index of the winning tap (first maximum)."""
        xp = self._pad(x, g, -np.inf)
        lead = (slice(None), slice(None))
        out = key = winner = None
        for t, tap in enumerate(np.ndindex(*g.kernel)):
            v = xp[lead + _tap_slices(tap, g.stride, g.out_shape[2:])]
            if out is None:
                out, key = v.copy(), v.real.copy()
                winner = np.zeros(v.shape, dtype=np.intp)
                continue
            vr = v.real
            take = (vr > key) | (np.isnan(vr) & ~np.isnan(key))  # strict: first max stays
            np.copyto(out, v, where=take)
            np.copyto(key, vr, where=take)
            winner[take] = t
        return out, winner

    def forward(self, x, *params) -> np.ndarray:
        """:math:`y[n,c,\\mathbf{i}] = \\max_{\\mathbf{a}} x_p[n,c,s\\mathbf{i}+\\mathbf{a}]`."""
        x, g = self._prepare(x, params, "forward")
        return self._select(x, g)[0]

    def backward(self, grad_y, x, *params) -> tuple:
        """``(grad_x,)``: each output error goes to its window's first maximal entry."""
        x, g = self._prepare(x, params, "backward")
        grad_y = as_float_array(grad_y, "grad_y")
        self._check_grad_y(grad_y, x.shape)
        winner = self._select(x, g)[1]
        dtype = np.result_type(x.dtype, grad_y.dtype)
        return (self._scatter(lambda t: np.where(winner == t, grad_y, 0), g, dtype),)


class AvgPool(_Pool):
    """Average pooling; padded zeros count in the mean (``count_include_pad=True``).

    Parameters
    ----------
    kernel : int or tuple of int
        Window size per spatial dim.
    stride : int or tuple of int, optional
        Defaults to ``kernel``.
    padding : int or tuple of int
        Zero padding on each side, at most half the kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.ops.layers import AvgPool
    >>> x = np.arange(4.0).reshape(1, 1, 4)
    >>> AvgPool(2).forward(x)
    array([[[0.5, 2.5]]])
    >>> AvgPool(2, stride=1, padding=1).forward(x)   # the zero padding is counted
    array([[[0. , 0.5, 1.5, 2.5, 1.5]]])
    """

    kind = "avgpool"
    smooth = True

    def forward(self, x, *params) -> np.ndarray:
        """:math:`y = \\frac{1}{|K|}\\sum_{\\mathbf{a}} x_p[s\\mathbf{i}+\\mathbf{a}]`."""
        x, g = self._prepare(x, params, "forward")
        xp = self._pad(x, g, 0)
        lead = (slice(None), slice(None))
        total = np.zeros(g.out_shape, dtype=x.dtype)
        for tap in np.ndindex(*g.kernel):
            total += xp[lead + _tap_slices(tap, g.stride, g.out_shape[2:])]
        return total / math.prod(g.kernel)

    def backward(self, grad_y, x, *params) -> tuple:
        """``(grad_x,)``: every entry of a window receives :math:`\\delta / |K|`."""
        x, g = self._prepare(x, params, "backward")
        grad_y = as_float_array(grad_y, "grad_y")
        self._check_grad_y(grad_y, x.shape)
        share = grad_y / math.prod(g.kernel)
        dtype = np.result_type(x.dtype, grad_y.dtype)
        return (self._scatter(lambda t: share, g, dtype),)
