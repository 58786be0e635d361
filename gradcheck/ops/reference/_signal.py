r"""The seed's formulas, literally: one ``scipy.signal`` call per channel pair.

See :mod:`gradcheck.ops.reference` for the formulas and why this shares no code with
:mod:`gradcheck.ops.conv`.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from gradcheck._errors import ConfigurationError
from gradcheck.ops._geometry import ConvGeometry
from gradcheck.ops.reference._common import _as_array, _check_convention, _geometry

__all__ = ["conv_forward_signal", "conv_backward_signal"]


# --------------------------------------------------------------------------- helpers


def _insert_zeros(a: np.ndarray, step) -> np.ndarray:
    """Put ``step - 1`` zeros between neighbouring entries along every axis of ``a``."""
    out = np.zeros(tuple((n - 1) * s + 1 for n, s in zip(a.shape, step)), dtype=a.dtype)
    out[tuple(slice(None, None, s) for s in step)] = a
    return out


def _rot180(a: np.ndarray) -> np.ndarray:
    """Reverse every axis of ``a`` (for a 2-D kernel, a 180-degree rotation)."""
    return a[(slice(None, None, -1),) * a.ndim]


def _conv(a, v, mode):
    """``scipy.signal.convolve``, direct method (exact sums, no FFT rounding)."""
    return scipy.signal.convolve(a, v, mode=mode, method="direct")


def _corr(a, v, mode):
    r"""Correlation without conjugation: :math:`\sum_m a[m + k]\, v[m]`.

    ``scipy.signal.correlate`` conjugates ``v``; conjugating first cancels that.
    """
    return scipy.signal.correlate(a, np.conj(v), mode=mode, method="direct")


def _pad(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    return np.pad(x, [(0, 0), (0, 0)] + list(zip(geom.pad_lo, geom.pad_hi)))


def _group_pairs(geom: ConvGeometry):
    """Yield ``(o, c_local, c)``: output channel, its kernel's input slot, input channel."""
    c_in_g = geom.in_channels // geom.groups
    c_out_g = geom.out_channels // geom.groups
    for o in range(geom.out_channels):
        group = o // c_out_g
        for c_local in range(c_in_g):
            yield o, c_local, group * c_in_g + c_local


# --------------------------------------------------------------------------- the formulas


def conv_forward_signal(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1,
                        convention="correlation"):
    r"""Convolution forward pass, one ``scipy.signal`` call per channel pair.

    For each batch item ``n``, output channel ``o`` and input channel ``c`` of its group,
    with the input zero-padded to :math:`x_p` and the kernel dilated to :math:`w_d`
    (:math:`d-1` zeros between taps):

    * ``convention="convolution"`` (the seed):
      :math:`z_{x,y} = \sum_{a,b} w_{a,b}\, x_{x-a,\,y-b}`, i.e.
      ``y[n, o] += scipy.signal.convolve(x_p[n, c], w_d[o, c], "valid")[::s]``;
    * ``convention="correlation"`` (frameworks): the kernel index is added,
      ``y[n, o] += correlate(x_p[n, c], w_d[o, c], "valid")[::s]``;

    then ``b[o]`` is added. Sampling the stride-1 result every ``s`` is the strided layer.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> conv_forward_signal(x, w)[0, 0]
    array([[27., 37.],
           [57., 67.]])
    """
    x, w = _as_array(x), _as_array(w)
    true_conv = _check_convention(convention)
    geom = _geometry(x.shape, w.shape, stride, padding, dilation, groups)
    dtype = np.result_type(x, w) if b is None else np.result_type(x, w, _as_array(b))
    xp = _pad(x, geom)
    sample = tuple(slice(None, None, s) for s in geom.stride)
    y = np.zeros((geom.batch, geom.out_channels, *geom.out_shape), dtype=dtype)
    for n in range(geom.batch):
        for o, c_local, c in _group_pairs(geom):
            w_d = _insert_zeros(w[o, c_local], geom.dilation)
            full_rate = (_conv if true_conv else _corr)(xp[n, c], w_d, "valid")
            y[n, o] += full_rate[sample]
    if b is not None:
        y += _as_array(b).reshape((1, -1) + (1,) * geom.nd)
    return y


def conv_backward_signal(grad_y, x, w, *, stride=1, padding=0, dilation=1, groups=1,
                         convention="correlation"):
    r"""``(grad_x, grad_w, grad_b)`` from the seed's backward formulas, per channel pair.

    :math:`\delta_s` is ``grad_y[n, o]`` with :math:`s-1` zeros inserted between entries
    (stride), :math:`w_d` the kernel with :math:`d-1` zeros between taps (dilation),
    :math:`x_p` the padded input.

    * **Input error** -- the seed's
      :math:`\delta^{l}_{x,y} = \sum_{x',y'} \delta^{l+1}_{x',y'}\, w_{x'-x,\,y'-y}
      = (\delta^{l+1} * \operatorname{rot180}(w))_{x,y}`, a *full* convolution:

      - convention="convolution": ``correlate(delta_s, w_d, "full")``, which is
        ``convolve(delta_s, rot180(w_d), "full")`` -- the seed's formula;
      - convention="correlation": ``convolve(delta_s, w_d, "full")`` (a full convolution
        with the kernel = a full correlation with ``rot180(w)``);

      summed over the output channels of the group, zero-extended to the padded size (rows
      that no window reaches get no error) and cropped by the padding.
    * **Weight gradient** --

      - convention="correlation": ``correlate(x_p, delta_s, "valid")`` sampled every
        ``d``, i.e. :math:`\sum_{\mathbf{i}} \delta[\mathbf{i}]\,
        x_p[s\mathbf{i} + d\mathbf{a}]`;
      - convention="convolution": the seed's
        :math:`\partial C/\partial w = \delta * \operatorname{rot180}(z)` (valid), i.e.
        ``convolve(rot180(x_r), delta_s, "valid")`` sampled every ``d``, where
        :math:`x_r` is the part of :math:`x_p` that some window reaches;

      summed over the batch.
    * **Bias gradient** -- :math:`\sum_{n, \mathbf{i}} \delta[n, o, \mathbf{i}]`.

    Examples
    --------
    The seed's picture with every output error 1: a corner pixel feeds one output, the
    centre pixel all four.

    >>> import numpy as np
    >>> w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> gx, gw, gb = conv_backward_signal(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)), w)
    >>> gx[0, 0]
    array([[ 1.,  3.,  2.],
           [ 4., 10.,  6.],
           [ 3.,  7.,  4.]])
    """
    grad_y, x, w = _as_array(grad_y), _as_array(x), _as_array(w)
    true_conv = _check_convention(convention)
    geom = _geometry(x.shape, w.shape, stride, padding, dilation, groups)
    expected = (geom.batch, geom.out_channels, *geom.out_shape)
    if grad_y.shape != expected:
        raise ConfigurationError(
            f"grad_y must have the forward output's shape {expected}; got shape {grad_y.shape}"
        )
    dtype = np.result_type(grad_y, x, w)
    xp = _pad(x, geom)
    # Extent of the padded input that some window reaches: s*(out-1) + d*(k-1) + 1.
    reached = tuple(s * (o - 1) + e for s, o, e in
                    zip(geom.stride, geom.out_shape, geom.effective_kernel))
    every_d = tuple(slice(None, d * (k - 1) + 1, d) for k, d in zip(geom.kernel, geom.dilation))
    grad_xp = np.zeros((geom.batch, geom.in_channels, *geom.padded_shape), dtype=dtype)
    grad_w = np.zeros(w.shape, dtype=dtype)
    in_reach = tuple(slice(0, r) for r in reached)
    for n in range(geom.batch):
        for o, c_local, c in _group_pairs(geom):
            delta_s = _insert_zeros(grad_y[n, o], geom.stride)
            w_d = _insert_zeros(w[o, c_local], geom.dilation)
            x_r = xp[n, c][in_reach]
            if true_conv:
                grad_xp[n, c][in_reach] += _corr(delta_s, w_d, "full")
                grad_w[o, c_local] += _conv(_rot180(x_r), delta_s, "valid")[every_d]
            else:
                grad_xp[n, c][in_reach] += _conv(delta_s, w_d, "full")
                grad_w[o, c_local] += _corr(x_r, delta_s, "valid")[every_d]
    crop = tuple(slice(lo, lo + size) for lo, size in zip(geom.pad_lo, geom.in_shape))
    grad_x = grad_xp[(slice(None), slice(None)) + crop]
    grad_b = grad_y.sum(axis=(0, *range(2, grad_y.ndim))).astype(dtype)
    return grad_x, grad_w, grad_b
