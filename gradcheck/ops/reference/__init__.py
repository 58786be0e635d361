r"""Slow, literal reference convolutions: the seed's formulas and the seed's picture.

Nothing here shares code with :mod:`gradcheck.ops.conv`; tests trust the fast path only
because it agrees with these independent routes. The one thing borrowed is argument
normalization: :func:`gradcheck.ops._geometry.conv_geometry` turns ``stride``,
``padding`` (ints, pairs or the words ``"valid"``/``"same"``/``"full"``), ``dilation`` and
``groups`` into per-dimension tuples and the output shape. No arithmetic of the
convolution itself comes from there.

Two routes, each written as the seed writes it (see ``shared/seed/SEED.md``):

* **The formulas** (:func:`conv_forward_signal`, :func:`conv_backward_signal`): one
  ``scipy.signal`` call per (batch item, output channel, input channel) pair.

  - forward, seed's true convolution: :math:`z^{l+1}_{x,y} = \sum_{a,b} w_{a,b}\,
    \sigma(z^{l}_{x-a,y-b})` -- a *valid* convolution; under the default
    cross-correlation the kernel index is added instead (a valid correlation);
  - input error: :math:`\delta^{l} = \delta^{l+1} * \operatorname{rot180}(w)` -- a *full*
    convolution of the error with the rotated kernel (seed's convention), or, under
    cross-correlation, a full convolution with the kernel itself (= a full correlation
    with ``rot180(w)``); stride inserts :math:`s-1` zeros between the error's entries,
    dilation :math:`d-1` zeros between the kernel's taps, and the padding is cropped;
  - weight gradient: :math:`\partial C/\partial w = \delta * \operatorname{rot180}(z)`
    (valid; seed's convention), or, under cross-correlation, a valid correlation of the
    padded input with the error, sampled every ``dilation``;
  - bias gradient: :math:`\partial C/\partial b = \sum \delta`.

* **The picture** (:func:`conv_matrix`, :func:`conv_forward_matrix`,
  :func:`conv_backward_matrix`, :func:`perceptron_deltas`): the layer as a perceptron with
  most connections removed and the rest sharing weights -- a sparse matrix :math:`W` with
  ``y.ravel() = W @ x.ravel()``, so the input error is :math:`W^{\top}\delta` and a
  shared weight's gradient is the sum of :math:`\delta_i x_j` over the connections
  :math:`(i, j)` that use it.

``scipy.signal.correlate`` conjugates its second argument; the formulas' helpers undo that so
complex inputs (complex-step differentiation) get the holomorphic derivative, the same
algebra as for real inputs.
"""

from gradcheck.ops.reference._perceptron import (
    Connection,
    Connections,
    PixelDelta,
    connections,
    conv_backward_matrix,
    conv_forward_matrix,
    conv_matrix,
    perceptron_deltas,
)
from gradcheck.ops.reference._signal import conv_backward_signal, conv_forward_signal

__all__ = [
    "conv_forward_signal",
    "conv_backward_signal",
    "Connections",
    "connections",
    "conv_matrix",
    "conv_forward_matrix",
    "conv_backward_matrix",
    "Connection",
    "PixelDelta",
    "perceptron_deltas",
]
