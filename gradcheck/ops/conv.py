r"""N-d convolution, forward and backward, the way the seed derives it.

Conventions
-----------
``x`` is ``(N, C_in, *spatial)``, ``w`` is ``(C_out, C_in/groups, *kernel)`` with 1 to 3
spatial dims. With stride :math:`s`, dilation :math:`d` and the input zero-padded to
:math:`x_p`, the default forward pass is a **cross-correlation** (no kernel flip), as in
every framework:

.. math:: y[n, o, \mathbf{i}] = b[o] + \sum_{c \in g(o)} \sum_{\mathbf{a}}
          w[o, c, \mathbf{a}]\; x_p[n, c, s\mathbf{i} + d\mathbf{a}]

``convention="convolution"`` gives the seed's **true convolution**: the kernel index is
subtracted, which is the same as correlating with the kernel rotated by 180°
(``w[..., ::-1, ::-1]``). Everything below is stated for correlation; for convolution the
kernel is flipped on the way in and the weight gradient flipped on the way out.

Backward (the seed's formulas, generalized)
-------------------------------------------
With the output error :math:`\delta = \partial C / \partial y`:

* **input error** -- the seed's :math:`\delta^{l} = \delta^{l+1} * \operatorname{rot180}(w)`,
  a *full* convolution, in four steps, each a line of :func:`_error_layout` (1, 2, 4) or
  :func:`_grad_input_rot180` (3):

  1. *dilate the error by the stride*: :math:`s-1` zeros between the entries of
     :math:`\delta` (:func:`_dilate_by_stride`);
  2. *pad it to a full convolution*: :math:`d(k-1)` zeros on every side
     (:func:`_pad_to_full`);
  3. *correlate with the rotated kernel*: ``rot180(w)``, taps :math:`d` apart, the in/out
     channel axes swapped inside each group (:func:`_rotate_kernel`), stride 1;
  4. *crop by the padding*: drop :math:`p_{lo}` positions in front and keep the input's
     :math:`n` (:func:`_crop_by_padding`).

  .. math:: \partial C/\partial x = \operatorname{crop}_p\Bigl(
            \operatorname{pad}_{d(k-1)}\bigl(\operatorname{dilate}_s(\delta)\bigr)
            \star \operatorname{rot180}(w)^{\top}\Bigr)

  The scatter-add (col2im) route, :func:`_grad_input_col2im`, computes the same sum by
  multiplying :math:`\delta` with :math:`W^{\top}` and adding each kernel tap's
  contribution back at its offset; it skips the inserted zeros, so ``method="auto"``
  picks it when that moves less memory (a stride above 1, or many more output than input
  channels).
* **weight gradient** -- a *valid* correlation of the padded input with :math:`\delta`
  (whose entries sit :math:`s` apart), sampled :math:`d` apart, summed over the batch:

  .. math:: \partial C/\partial w[o, c, \mathbf{a}] = \sum_{n, \mathbf{i}}
            \delta[n, o, \mathbf{i}]\; x_p[n, c, s\mathbf{i} + d\mathbf{a}]
* **bias gradient** -- :math:`\partial C/\partial b[o] = \sum_{n, \mathbf{i}} \delta[n, o, \mathbf{i}]`.

The same formulas written literally, one ``scipy.signal`` call per channel pair, are
:func:`gradcheck.ops.reference.conv_forward_signal` and
:func:`gradcheck.ops.reference.conv_backward_signal` (``gradcheck/ops/reference/_signal.py``);
the tests hold this module against them and against the seed's perceptron picture.

Implementation
--------------
No Python loop visits a pixel or a batch item. Every pass is one valid correlation,
:func:`_correlate`: the input is unfolded into windowed copies (im2col, one strided copy
per kernel tap) laid out ``(N, groups, C_in/groups * K, L)`` with the ``L`` output
positions innermost, and multiplied by the kernel matrix in one batched GEMM
(``np.matmul``). float32 stays float32, float64 stays float64, complex inputs (used by
complex-step differentiation) stay complex. Large batches are unfolded in chunks, and an
item too large for the budget in bands of output rows, so the copy stays within
``UNFOLD_BUDGET_BYTES``; temporary arrays are reused between calls (:func:`_scratch`).
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._record import NamedTuple
from gradcheck.ops._geometry import ConvGeometry, as_float_array, conv_geometry, prod

__all__ = ["conv_forward", "conv_backward", "CONVENTIONS", "BACKWARD_METHODS"]

CONVENTIONS = ("correlation", "convolution")
BACKWARD_METHODS = ("auto", "rot180", "col2im")

#: Bytes of unfolded (im2col) copy processed at a time. Batch items are unfolded and
#: multiplied a few at a time so the copy stays cache-sized and is reused between chunks;
#: this bounds peak memory whatever the batch size, and is faster than one huge copy.
UNFOLD_BUDGET_BYTES = 4 * 2**20

#: Scratch arrays up to this size are kept between calls (per thread) and reused.
#: Fresh large allocations come from the operating system as untouched pages, and the
#: page faults on first write can cost more than the arithmetic (a gradient check calls
#: the same layer thousands of times). Larger scratch arrays are allocated per call.
WORKSPACE_LIMIT_BYTES = 64 * 2**20

_workspace_local = threading.local()

#: Index of every batch item and channel: the two leading axes of every array here.
_ALL2 = (slice(None), slice(None))


def _scratch(slot: str, shape, dtype, *, zero: bool = False,
             limit: int = WORKSPACE_LIMIT_BYTES) -> np.ndarray:
    """An array for temporary use inside one call, reused across calls.

    Each ``slot`` names one use; a caller must not hold a slot's array past the call,
    nor use one slot twice at the same time. Results handed to users are never scratch.
    An array above ``limit`` bytes is allocated for the call alone (nothing kept).
    """
    dtype = np.dtype(dtype)
    nbytes = prod(shape) * dtype.itemsize
    if nbytes > limit:
        return (np.zeros if zero else np.empty)(shape, dtype=dtype)
    pool = getattr(_workspace_local, "pool", None)
    if pool is None:
        pool = _workspace_local.pool = {}
    raw = pool.get(slot)
    if raw is None or raw.nbytes < nbytes:
        raw = pool[slot] = np.empty(max(nbytes, 1), dtype=np.uint8)
    out = raw[:nbytes].view(dtype).reshape(shape)
    if zero:
        out.fill(0)
    return out


# --------------------------------------------------------------------------- small pieces


def _validate_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ConfigurationError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
    return convention


def _flip_kernel(w: np.ndarray) -> np.ndarray:
    """rot180 generalized: reverse every spatial axis of ``w`` (axes 2 onward)."""
    return w[_ALL2 + (slice(None, None, -1),) * (w.ndim - 2)]


def _result_dtype(*arrays) -> np.dtype:
    return np.result_type(*[a.dtype for a in arrays if a is not None])


def _pad(x: np.ndarray, pad_lo, pad_hi) -> np.ndarray:
    """Zero-pad the spatial axes (a zeroed scratch buffer and one slice assignment)."""
    if not (any(pad_lo) or any(pad_hi)):
        return x
    shape = x.shape[:2] + tuple(n + lo + hi for n, lo, hi in zip(x.shape[2:], pad_lo, pad_hi))
    out = _scratch("padded", shape, x.dtype, zero=True)
    out[_ALL2 + tuple(slice(lo, lo + n) for lo, n in zip(pad_lo, x.shape[2:]))] = x
    return out


# --------------------------------------------------------------------------- the engine


def _tap_slices(tap, stride, dilation, out_shape):
    """Slices of the padded input read by kernel tap ``tap`` for every output position."""
    return tuple(
        slice(t * d, t * d + s * (o - 1) + 1, s)
        for t, s, d, o in zip(tap, stride, dilation, out_shape)
    )


def _unfold_into(cols, xp, kernel, stride, dilation, out_shape, *, tap_axis=2) -> np.ndarray:
    """Copy the windows of ``xp`` into ``cols`` (im2col), one strided copy per kernel tap.

    ``xp`` is ``(A, B, *spatial)``; ``cols`` has the kernel's axes from ``tap_axis`` on and
    ``(A, B, *out_shape)`` in the others: ``(A, B, *kernel, *out_shape)`` by default, or
    ``(A, *kernel, B, *out_shape)`` with ``tap_axis=1``.
    """
    lead = (slice(None),) * tap_axis
    for tap in np.ndindex(*kernel):
        cols[lead + tap] = xp[_ALL2 + _tap_slices(tap, stride, dilation, out_shape)]
    return cols


def _batch_chunks(batch: int, bytes_per_item: int):
    """Split ``range(batch)`` into chunks whose unfolded copy fits ``UNFOLD_BUDGET_BYTES``."""
    per_chunk = max(1, UNFOLD_BUDGET_BYTES // max(1, bytes_per_item))
    return [slice(i, min(batch, i + per_chunk)) for i in range(0, batch, per_chunk)]


class _Block(NamedTuple):
    """Batch items ``items`` and first-axis output positions ``rows`` unfolded at once;
    ``positions`` is the matching slice of the flattened output positions."""

    items: slice
    rows: slice
    positions: slice


class _Unfolder:
    """Unfolds blocks of a padded input into one reused buffer (im2col).

    A block is a chunk of batch items or, when one item's windows exceed
    ``UNFOLD_BUDGET_BYTES``, a band of output rows of one item: the copy stays within the
    budget however large the layer. A 1x1 kernel at stride 1 needs no copy: the windows
    are the input itself.
    """

    def __init__(self, xp, kernel, stride, dilation, out_shape, groups, dtype, *,
                 batch_inner=False):
        self.batch_inner = batch_inner
        self.xp, self.kernel, self.stride = xp, tuple(kernel), tuple(stride)
        self.dilation, self.out_shape, self.groups = tuple(dilation), tuple(out_shape), groups
        n, c = xp.shape[:2]
        self.rows = (c // groups) * prod(kernel)          # C_in/groups * K
        self.length = prod(out_shape)                     # L
        self.identity = prod(kernel) == 1 and all(s == 1 for s in stride)
        self.dtype = dtype
        row_len = prod(out_shape[1:])                     # positions per first-axis row
        row_bytes = c * prod(kernel) * row_len * np.dtype(dtype).itemsize
        whole = slice(0, out_shape[0])
        if row_bytes * out_shape[0] <= UNFOLD_BUDGET_BYTES or n == 0:
            self.blocks = [_Block(items, whole, slice(0, self.length))
                           for items in _batch_chunks(n, row_bytes * out_shape[0])]
        else:
            band = max(1, UNFOLD_BUDGET_BYTES // row_bytes)
            self.blocks = [
                _Block(slice(i, i + 1), slice(r, min(out_shape[0], r + band)),
                       slice(r * row_len, min(out_shape[0], r + band) * row_len))
                for i in range(n) for r in range(0, out_shape[0], band)]

    def __call__(self, block: _Block) -> np.ndarray:
        """Windows of one block.

        Laid out ``(n, groups, C_in/groups * K, l)`` for the block's ``n`` items and ``l``
        positions, or with ``batch_inner`` ``(groups, C_in/groups * K, n * l)`` so that a
        sum over the batch is one GEMM.
        """
        r0, r1 = block.rows.start, block.rows.stop
        out_shape = (r1 - r0,) + self.out_shape[1:]
        first = self.stride[0] * r0                        # padded input row of output r0
        last = self.stride[0] * (r1 - 1) + self.dilation[0] * (self.kernel[0] - 1) + 1
        part = self.xp[block.items, :, first:last]
        n, c = part.shape[:2]
        length = prod(out_shape)
        windows = (self.kernel, self.stride, self.dilation, out_shape)
        if self.batch_inner:                    # (C, *K, n, *out) from (C, n, *spatial)
            buf = _scratch("cols", (c, *self.kernel, n, *out_shape), self.dtype)
            cols = _unfold_into(buf, part.swapaxes(0, 1), *windows, tap_axis=1)
            return cols.reshape(self.groups, self.rows, n * length)
        if self.identity:
            cols = np.ascontiguousarray(part[_ALL2 + tuple(slice(0, o) for o in out_shape)])
        else:
            buf = _scratch("cols", (n, c, *self.kernel, *out_shape), self.dtype)
            cols = _unfold_into(buf, part, *windows)
        return cols.reshape(n, self.groups, self.rows, length)


def _correlate(xp, w, *, stride, dilation, groups, out_shape, dtype, out=None) -> np.ndarray:
    """Valid cross-correlation of an already padded ``xp`` with ``w`` (no bias).

    Returns ``(N, C_out, *out_shape)``, written to ``out`` when one is given (C-contiguous,
    of that shape and ``dtype``). This is the single GEMM engine every pass uses: per
    block of batch items (or of output rows), ``y[n, g] = W[g] @ cols[n, g]`` with
    ``W[g]`` of shape ``(C_out/groups, C_in/groups * K)``.
    """
    n = xp.shape[0]
    c_out = w.shape[0]
    unfold = _Unfolder(xp, w.shape[2:], stride, dilation, out_shape, groups, dtype)
    w_mat = np.ascontiguousarray(w, dtype=dtype).reshape(groups, c_out // groups, unfold.rows)
    shape = (n, groups, c_out // groups, unfold.length)
    if out is not None and not (out.flags.c_contiguous and out.dtype == dtype):
        raise ValueError("out must be C-contiguous and of the output's dtype")
    y = np.empty(shape, dtype=dtype) if out is None else out.reshape(shape)
    for block in unfold.blocks:
        np.matmul(w_mat, unfold(block), out=y[block.items, :, :, block.positions])
    return y.reshape(n, c_out, *out_shape)


# --------------------------------------------------------------------------- forward


def conv_forward(
    x,
    w,
    b=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    convention: str = "correlation",
) -> np.ndarray:
    r"""Convolution layer forward pass for 1, 2 or 3 spatial dims.

    Parameters
    ----------
    x : array_like, shape (N, C_in, \*spatial)
        Input batch.
    w : array_like, shape (C_out, C_in/groups, \*kernel)
        Kernels.
    b : array_like, shape (C_out,), optional
        Bias, added to every output position of its channel.
    stride, dilation : int or tuple of int
        Per spatial dim, >= 1.
    padding : int, tuple of int, tuple of (low, high) pairs, or {"valid", "same", "full"}
        Zero padding. ``"same"`` (stride 1 only) keeps the spatial size, the odd pad on
        the high side; ``"full"`` pads ``d*(k-1)`` on each side, as the seed's backward
        pass does.
    groups : int
        Channels split into ``groups`` independent blocks.
    convention : {"correlation", "convolution"}
        ``"correlation"`` (default) computes
        :math:`y[n,o,\mathbf{i}] = \sum_{c,\mathbf{a}} w[o,c,\mathbf{a}]\,x_p[n,c,s\mathbf{i}+d\mathbf{a}]`,
        matching ``torch.nn.functional.convNd``. ``"convolution"`` is the seed's true
        convolution: the kernel index is subtracted, i.e. the same with ``rot180(w)``.

    Returns
    -------
    y : ndarray, shape (N, C_out, \*out)
        ``out = (n + p_lo + p_hi - d*(k-1) - 1) // s + 1`` per dim, in the inputs' dtype.

    See Also
    --------
    gradcheck.ops.reference.conv_forward_signal : the same formula written literally, one
        ``scipy.signal`` call per batch item and channel pair (the tests' oracle).

    Examples
    --------
    The seed's picture: a 3×3 input and a 2×2 kernel give a 2×2 output.

    >>> import numpy as np
    >>> from gradcheck import conv_forward
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> conv_forward(x, w)[0, 0]
    array([[27., 37.],
           [57., 67.]])
    >>> conv_forward(x, w, convention="convolution")[0, 0]   # kernel flipped
    array([[13., 23.],
           [43., 53.]])
    """
    x = as_float_array(x, "x")
    w = as_float_array(w, "w")
    geom = conv_geometry(x.shape, w.shape, stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
    if b is not None:
        b = as_float_array(b, "b")
        if b.shape != (geom.out_channels,):
            raise ConfigurationError(
                f"b must have shape (C_out,) = ({geom.out_channels},); got shape {b.shape}"
            )
    if _validate_convention(convention) == "convolution":
        w = _flip_kernel(w)
    return _forward(x, w, b, geom)


def conv_forward_scratch(slot, x, w, *, stride=1, padding=0, dilation=1, groups=1,
                         convention: str = "correlation",
                         limit: int = WORKSPACE_LIMIT_BYTES) -> np.ndarray:
    """:func:`conv_forward` without a bias, its output in the scratch array ``slot``
    (:func:`_scratch`): for an intermediate result of a hot loop, read before ``slot``
    is used again in this thread, so that its memory is reused rather than mapped and
    faulted in afresh on every call. Never hand the result to a user. ``slot`` may also
    be an array to write the output to (C-contiguous, of the output's shape and dtype);
    ``limit`` as for :func:`_scratch`.
    """
    x = as_float_array(x, "x")
    w = as_float_array(w, "w")
    geom = conv_geometry(x.shape, w.shape, stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
    if _validate_convention(convention) == "convolution":
        w = _flip_kernel(w)
    out = slot if isinstance(slot, np.ndarray) else _scratch(
        slot, (x.shape[0], geom.out_channels, *geom.out_shape), _result_dtype(x, w),
        limit=limit)
    return _forward(x, w, None, geom, out=out)


def _forward(x, w, b, geom: ConvGeometry, out=None) -> np.ndarray:
    """Pad the input, correlate it with the kernel, add the bias (the output written
    to ``out`` when one is given)."""
    dtype = _result_dtype(x, w, b)
    xp = _pad(x, geom.pad_lo, geom.pad_hi)
    y = _correlate(xp, w, stride=geom.stride, dilation=geom.dilation, groups=geom.groups,
                   out_shape=geom.out_shape, dtype=dtype, out=out)
    if b is not None:
        y += b.astype(dtype, copy=False).reshape((1, -1) + (1,) * geom.nd)
    return y


# --------------------------------------------------------------------------- backward


def conv_backward(
    grad_y,
    x,
    w,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    convention: str = "correlation",
    bias: bool = True,
    method: str = "auto",
):
    r"""Gradients of a convolution layer: ``(grad_x, grad_w, grad_b)``.

    Parameters
    ----------
    grad_y : array_like, shape (N, C_out, \*out)
        The output error :math:`\delta = \partial C/\partial y`.
    x, w, stride, padding, dilation, groups, convention
        As given to :func:`conv_forward`.
    bias : bool
        Whether the layer had a bias; if False, ``grad_b`` is None.
    method : {"auto", "rot180", "col2im"}
        How the input error is computed. ``"rot180"`` is the seed's route: dilate the
        error by the stride, pad it to a full convolution, correlate it with the
        180°-rotated kernel, crop by the padding. ``"col2im"`` multiplies the error by the transposed kernel matrix and
        scatter-adds each tap back (same sum, no inserted zeros). ``"auto"`` picks the one
        that moves less memory (rot180 unless the stride is large or ``C_out`` clearly
        exceeds ``C_in``). Both are exact; tests hold them against each other.

    Returns
    -------
    grad_x : ndarray, shape of x
        :math:`\operatorname{crop}_p\bigl(\operatorname{full}(\operatorname{dilate}_s\delta
        \star \operatorname{rot180}(w))\bigr)` -- the seed's
        :math:`\delta^{l} = \delta^{l+1} * \operatorname{rot180}(w^{l+1})`.
    grad_w : ndarray, shape of w
        Valid correlation of the padded input with :math:`\delta`:
        :math:`\sum_{n,\mathbf{i}} \delta[n,o,\mathbf{i}]\,x_p[n,c,s\mathbf{i}+d\mathbf{a}]`
        (flipped back under ``convention="convolution"``).
    grad_b : ndarray, shape (C_out,), or None
        :math:`\sum_{n,\mathbf{i}} \delta[n,o,\mathbf{i}]`.

    See Also
    --------
    gradcheck.ops.reference.conv_backward_signal : the same formulas written literally,
        one ``scipy.signal`` call per batch item and channel pair (the tests' oracle).
    gradcheck.ops.reference.perceptron_deltas : each input pixel's error spelled out
        connection by connection, as the seed pictures it.

    Examples
    --------
    The seed's example: each input pixel's error is the sum, over the outputs it feeds,
    of that output's error times the shared weight on the connection. With all output
    errors 1, a corner pixel feeds one output and the centre pixel all four:

    >>> import numpy as np
    >>> from gradcheck import conv_backward
    >>> x = np.zeros((1, 1, 3, 3)); w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> gx, gw, gb = conv_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> gx[0, 0]
    array([[ 1.,  3.,  2.],
           [ 4., 10.,  6.],
           [ 3.,  7.,  4.]])
    >>> gb
    array([4.])
    """
    x = as_float_array(x, "x")
    w = as_float_array(w, "w")
    grad_y = as_float_array(grad_y, "grad_y")
    geom = conv_geometry(x.shape, w.shape, stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
    expected = (geom.batch, geom.out_channels, *geom.out_shape)
    if grad_y.shape != expected:
        raise ConfigurationError(
            f"grad_y must have the forward output's shape {expected} for {geom.describe()}; "
            f"got shape {grad_y.shape}"
        )
    if method not in BACKWARD_METHODS:
        raise ConfigurationError(f"method must be one of {BACKWARD_METHODS}; got {method!r}")
    flipped = _validate_convention(convention) == "convolution"
    if flipped:
        w = _flip_kernel(w)
    grad_x, grad_w, grad_b = _backward(grad_y, x, w, geom, method=method, bias=bias)
    if flipped:
        grad_w = np.ascontiguousarray(_flip_kernel(grad_w))
    return grad_x, grad_w, grad_b


def _backward(grad_y, x, w, geom: ConvGeometry, *, method: str, bias: bool):
    """The three gradients of a correlation layer (``w`` already in correlation form)."""
    dtype = _result_dtype(grad_y, x, w)
    grad_y = grad_y.astype(dtype, copy=False)
    grad_b = grad_y.sum(axis=(0,) + tuple(range(2, 2 + geom.nd))) if bias else None
    grad_w = _grad_weight(grad_y, x, geom, dtype)
    if method == "auto":
        method = _choose_route(geom)
    route = _grad_input_rot180 if method == "rot180" else _grad_input_col2im
    grad_x = route(grad_y, w.astype(dtype, copy=False), geom, dtype)
    return grad_x, grad_w, grad_b


def _choose_route(geom: ConvGeometry) -> str:
    """Pick the cheaper exact route for the input gradient.

    Both do the same GEMM work; they differ in memory traffic. The rot180 route unfolds
    the stride-dilated error at every *input* position, ``C_out * K * prod(in)`` values;
    col2im writes ``W^T delta`` at every *output* position and adds it back tap by tap,
    about ``2 * C_in * K * prod(out)`` values. At stride s the output has ``s^nd`` fewer
    positions, so col2im wins when the stride is large or ``C_out`` exceeds ``C_in``.
    """
    rot180 = geom.out_channels * prod(geom.in_shape)
    col2im = 2 * geom.in_channels * prod(geom.out_shape)
    return "rot180" if rot180 <= col2im else "col2im"


# --------------------------------------------------------------------------- weight gradient


def _grad_weight(grad_y, x, geom: ConvGeometry, dtype) -> np.ndarray:
    r"""Valid correlation of the padded input with the error, summed over the batch.

    :math:`\partial C/\partial w[o,c,\mathbf{a}] = \sum_{n,\mathbf{i}} \delta[n,o,\mathbf{i}]
    \,x_p[n,c,s\mathbf{i}+d\mathbf{a}]`: per group one GEMM of the error matrix
    ``(C_out/g, N L)`` with the unfolded input ``(N L, C_in/g * K)``. Literally, with
    ``scipy.signal``: the ``grad_w`` lines of
    :func:`~gradcheck.ops.reference.conv_backward_signal`.
    """
    g = geom.groups
    c_out_g = geom.out_channels // g
    xp = _pad(x.astype(dtype, copy=False), geom.pad_lo, geom.pad_hi)
    unfold = _Unfolder(xp, geom.kernel, geom.stride, geom.dilation, geom.out_shape, g, dtype,
                       batch_inner=True)
    delta = grad_y.reshape(geom.batch, g, c_out_g, unfold.length)
    grad_w = np.zeros((g, c_out_g, unfold.rows), dtype=dtype)
    product = _scratch("grad_w_part", grad_w.shape, dtype)
    for block in unfold.blocks:
        # the batch and positions of the block are one contraction axis: (g, c_out/g, n l)
        # against the windows (g, C_in/g K, n l) -- one GEMM per group, no per-item sum.
        part = delta[block.items, :, :, block.positions]
        n, length = part.shape[0], part.shape[-1]
        d = _scratch("delta", (g, c_out_g, n, length), dtype)
        d[...] = part.transpose(1, 2, 0, 3)
        np.matmul(d.reshape(g, c_out_g, n * length), unfold(block).swapaxes(1, 2), out=product)
        grad_w += product
    return grad_w.reshape(geom.out_channels, unfold.rows // prod(geom.kernel), *geom.kernel)


# --------------------------------------------------------------------------- input error


class _Line(NamedTuple):
    """Where the error's entries sit along one spatial axis.

    Entry ``i`` of :math:`\\delta` is at position ``start + step * i`` of a line of ``size``
    positions, zero everywhere else; entries that fall outside the line are left out.
    """

    start: int
    step: int
    size: int

    def kept(self, count: int):
        """``(where, which)``: the positions the ``count`` entries inside the line take and
        the slice of entries they are; None when no entry falls inside."""
        first = max(0, -(self.start // self.step))             # first at a position >= 0
        last = min(count - 1, (self.size - 1 - self.start) // self.step)  # last inside
        if last < first:
            return None
        where = slice(self.start + self.step * first, self.start + self.step * last + 1,
                      self.step)
        return where, slice(first, last + 1)


def _dilate_by_stride(count: int, stride: int) -> _Line:
    """Step 1: ``stride - 1`` zeros between neighbouring entries (entry ``i`` at ``s*i``)."""
    return _Line(0, stride, stride * (count - 1) + 1)


def _pad_to_full(line: _Line, reach: int) -> _Line:
    """Step 2: ``reach = d(k-1)`` zeros on each side, so the correlation is *full*.

    Every position where the dilated kernel overlaps the error at all gets an output.
    """
    return _Line(line.start + reach, line.step, line.size + 2 * reach)


def _crop_by_padding(line: _Line, pad_lo: int, size: int, reach: int) -> _Line:
    """Step 4, taken before step 3: keep what the input's ``size`` positions read.

    The full result's position ``j`` reads positions ``j`` to ``j + reach`` of the padded
    error (step 3 is a stride-1 correlation), so cropping the result to
    ``[pad_lo, pad_lo + size)`` is cropping the padded error to
    ``[pad_lo, pad_lo + size + reach)``: no cropped position is ever computed. Entries
    left out this way reach the padding only; where the line runs past the end of the
    full error it reads zeros (input positions no window reaches get no error).
    """
    return _Line(line.start - pad_lo, line.step, size + reach)


@functools.lru_cache(maxsize=256)
def _error_layout(geom: ConvGeometry):
    """Steps 1, 2 and 4 for every spatial axis: where the error's entries land.

    Returns the padded error's spatial shape and the index pair ``(where, which)`` that
    writes the kept entries of :math:`\\delta` into it (None when none is kept). Cached per
    geometry: a gradient check calls the same layer thousands of times.
    """
    lines = []
    for size, count, k, s, d, lo in zip(geom.in_shape, geom.out_shape, geom.kernel,
                                        geom.stride, geom.dilation, geom.pad_lo):
        reach = d * (k - 1)
        line = _dilate_by_stride(count, s)              # 1. dilate the error by the stride
        line = _pad_to_full(line, reach)                # 2. pad it to a full convolution
        line = _crop_by_padding(line, lo, size, reach)  # 4. crop by the padding (first)
        lines.append(line)
    shape = tuple(line.size for line in lines)
    kept = [line.kept(count) for line, count in zip(lines, geom.out_shape)]
    if None in kept:
        return shape, None
    return shape, (_ALL2 + tuple(where for where, _ in kept),
                   _ALL2 + tuple(which for _, which in kept))


def _rotate_kernel(w: np.ndarray, groups: int) -> np.ndarray:
    """``rot180(w)`` with in/out channels swapped inside each group: ``(C_in, C_out/g, *k)``.

    The error has ``C_out`` channels and the result ``C_in``, so the kernel the error is
    correlated with is ``w``'s transpose in the channel axes, rotated by 180°.
    """
    c_out, c_in_g = w.shape[:2]
    kernel = w.shape[2:]
    wg = _flip_kernel(w).reshape(groups, c_out // groups, c_in_g, *kernel)
    return np.ascontiguousarray(wg.swapaxes(1, 2)).reshape(groups * c_in_g, c_out // groups,
                                                           *kernel)


def _grad_input_rot180(grad_y, w, geom: ConvGeometry, dtype) -> np.ndarray:
    r"""The seed's route: dilate, pad to full, correlate with ``rot180(w)``, crop.

    :math:`\partial C/\partial x = \operatorname{crop}_p\bigl(\operatorname{pad}_{d(k-1)}
    (\operatorname{dilate}_s\delta) \star \operatorname{rot180}(w)^{\top}\bigr)`, stated
    literally (with ``scipy.signal.convolve(delta_s, w_d, "full")``) in
    :func:`~gradcheck.ops.reference.conv_backward_signal`. Steps 1, 2 and 4 only say where
    the error's entries land (:func:`_error_layout`), so the error is written once into
    a zeroed buffer; step 3 is the GEMM engine every pass uses.
    """
    shape, index = _error_layout(geom)                  # steps 1, 2 and 4
    padded_error = _scratch("dilated", (*grad_y.shape[:2], *shape), dtype, zero=True)
    if index is not None:
        where, which = index
        padded_error[where] = grad_y[which]
    # 3. correlate with the rotated kernel: stride 1, taps d apart, one output per input
    return _correlate(padded_error, _rotate_kernel(w, geom.groups), stride=(1,) * geom.nd,
                      dilation=geom.dilation, groups=geom.groups, out_shape=geom.in_shape,
                      dtype=dtype)


def _grad_input_col2im(grad_y, w, geom: ConvGeometry, dtype) -> np.ndarray:
    r"""Scatter-add route: ``W^T delta`` per position, each tap added back at its offset.

    Computes :math:`\partial C/\partial x_p[n,c,s\mathbf{i}+d\mathbf{a}] \mathrel{+}=
    \sum_o w[o,c,\mathbf{a}]\,\delta[n,o,\mathbf{i}]` -- the same sum as the rot180 route,
    without multiplying the inserted zeros -- then crops the padding.
    """
    g = geom.groups
    k, length = prod(geom.kernel), prod(geom.out_shape)
    c_in_g, c_out_g = geom.in_channels // g, geom.out_channels // g
    w_mat_t = w.reshape(g, c_out_g, c_in_g * k).swapaxes(1, 2)
    delta = grad_y.reshape(geom.batch, g, c_out_g, length)
    full_shape = (geom.batch, geom.in_channels, *geom.padded_shape)
    if not geom.has_padding:               # the result itself: a fresh array
        grad_xp = np.zeros(full_shape, dtype=dtype)
    else:                                  # cropped into a fresh array below
        grad_xp = _scratch("grad_xp", full_shape, dtype, zero=True)
    chunks = _batch_chunks(geom.batch, geom.in_channels * k * length * np.dtype(dtype).itemsize)
    largest = chunks[0].stop - chunks[0].start
    buffer = _scratch("cols", (largest, g, c_in_g * k, length), dtype)
    for chunk in chunks:
        cols = np.matmul(w_mat_t, delta[chunk], out=buffer[: chunk.stop - chunk.start])
        cols = cols.reshape(-1, geom.in_channels, *geom.kernel, *geom.out_shape)
        target = grad_xp[chunk]
        for tap in np.ndindex(*geom.kernel):
            target[_ALL2 + _tap_slices(tap, geom.stride, geom.dilation, geom.out_shape)] += (
                cols[_ALL2 + tap]
            )
    if not geom.has_padding:
        return grad_xp
    crop = tuple(slice(lo, lo + size) for lo, size in zip(geom.pad_lo, geom.in_shape))
    return grad_xp[_ALL2 + crop].copy()
