"""A convolution layer written by hand, the way a user would -- and the same layer with
the classic bug: the input gradient uses the kernel as it is instead of rotated by 180°;
and a batch norm, right and with a slip (``specs/examples/batchnorm_buggy.toml`` puts it
between a built-in conv and a relu, where the culprit pass names it).

Point gradcheck at them with a spec (``specs/examples/user_layer.toml``)::

    [[layer]]
    type = "python"
    target = "examples.my_layers:ConvLayer"
    params = { w = [3, 2, 3, 3], b = [3] }

Both classes follow the contract of a ``type = "python"`` layer:
``forward(x, *params) -> y`` and ``backward(grad_y, x, *params) -> (grad_x, *grad_params)``.
Only NumPy is used; loops run over the kernel taps, never over pixels.
"""

import numpy as np


class ConvLayer:
    """2-D cross-correlation, stride 1, no padding: ``y[n,o] = sum_c w[o,c] * x[n,c] + b[o]``."""

    def forward(self, x, w, b):
        n, c, h, width = x.shape
        o, _, kh, kw = w.shape
        y = np.zeros((n, o, h - kh + 1, width - kw + 1), dtype=np.result_type(x, w))
        for a in range(kh):
            for t in range(kw):
                window = x[:, :, a:a + y.shape[2], t:t + y.shape[3]]
                y += np.einsum("nchw,oc->nohw", window, w[:, :, a, t])
        return y + b[None, :, None, None]

    def backward(self, grad_y, x, w, b):
        kh, kw = w.shape[2:]
        grad_w = np.zeros_like(w)
        for a in range(kh):
            for t in range(kw):
                window = x[:, :, a:a + grad_y.shape[2], t:t + grad_y.shape[3]]
                grad_w[:, :, a, t] = np.einsum("nohw,nchw->oc", grad_y, window)
        grad_b = grad_y.sum(axis=(0, 2, 3))
        return self.input_gradient(grad_y, x, w), grad_w, grad_b

    def input_gradient(self, grad_y, x, w):
        """Full correlation of the error with rot180(w) (= full convolution with w)."""
        return _full_correlation(grad_y, w[:, :, ::-1, ::-1], x.shape)


class BuggyConvLayer(ConvLayer):
    """The same layer, but the input gradient forgets to rotate the kernel."""

    def input_gradient(self, grad_y, x, w):
        return _full_correlation(grad_y, w, x.shape)  # BUG: should be w[:, :, ::-1, ::-1]


def _full_correlation(grad_y, kernel, x_shape):
    """Pad the error by k-1 on every side and correlate with ``kernel`` (channels swapped)."""
    kh, kw = kernel.shape[2:]
    padded = np.pad(grad_y, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    grad_x = np.zeros(x_shape, dtype=np.result_type(grad_y, kernel))
    for a in range(kh):
        for t in range(kw):
            window = padded[:, :, a:a + x_shape[2], t:t + x_shape[3]]
            grad_x += np.einsum("nohw,oc->nchw", window, kernel[:, :, a, t])
    return grad_x


class BatchNorm:
    """Batch normalization per channel over the batch and spatial axes (training mode):
    ``y = gamma * (x - mean) / sqrt(var + eps) + beta``.

    The input gradient, with ``g_hat = grad_y * gamma`` and ``m`` values per channel:
    ``grad_x = (m g_hat - sum(g_hat) - x_hat sum(g_hat x_hat)) / (m sqrt(var + eps))``.
    """

    eps = 1e-5

    def _normalized(self, x):
        axes = (0, *range(2, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + self.eps)
        return axes, (x - mean) * inv, inv

    def forward(self, x, gamma, beta):
        _, x_hat, _ = self._normalized(x)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return gamma.reshape(shape) * x_hat + beta.reshape(shape)

    def backward(self, grad_y, x, gamma, beta):
        axes, x_hat, inv = self._normalized(x)
        m = x.size // x.shape[1]
        g_hat = grad_y * gamma.reshape((1, -1) + (1,) * (x.ndim - 2))
        grad_x = inv / m * (m * g_hat - self.mean_term(g_hat, axes)
                            - x_hat * (g_hat * x_hat).sum(axis=axes, keepdims=True))
        return grad_x, (grad_y * x_hat).sum(axis=axes), grad_y.sum(axis=axes)

    def mean_term(self, g_hat, axes):
        """The gradient through the batch mean: ``sum(g_hat)`` per channel."""
        return g_hat.sum(axis=axes, keepdims=True)


class BuggyBatchNorm(BatchNorm):
    """The same batch norm, but its input gradient forgets the path through the mean."""

    def mean_term(self, g_hat, axes):
        return 0.0  # BUG: the mean depends on x too; should be g_hat.sum(axes, keepdims=True)


class PaddedConvLayer:
    """2-D cross-correlation, stride 1, zero padding ``padding`` on every side (a spec
    passes it as ``kwargs = { padding = 1 }``): the output keeps the input's size for a
    3x3 kernel and ``padding = 1``.

    The input gradient follows the seed: the error correlated with rot180(w) over the
    error padded by ``k - 1`` is the gradient of the *padded* input; removing the padding
    (``padding`` positions on every side) leaves the input's.
    """

    def __init__(self, padding=1):
        self.padding = int(padding)

    def _pad(self, x):
        p = self.padding
        return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))

    def forward(self, x, w, b):
        return ConvLayer.forward(self, self._pad(x), w, b)

    def backward(self, grad_y, x, w, b):
        padded = self._pad(x)
        grad_padded, grad_w, grad_b = ConvLayer.backward(self, grad_y, padded, w, b)
        return self.crop(grad_padded, x.shape), grad_w, grad_b

    def input_gradient(self, grad_y, x, w):
        return _full_correlation(grad_y, w[:, :, ::-1, ::-1], x.shape)

    def crop(self, grad_padded, shape):
        """The padded input's gradient without the padding."""
        p = self.padding
        return grad_padded[:, :, p:p + shape[2], p:p + shape[3]]


class PaddingOffByOneConvLayer(PaddedConvLayer):
    """The same layer, but the padding is removed one position too far in."""

    def crop(self, grad_padded, shape):
        p = self.padding + 1     # BUG: should be self.padding
        cropped = np.zeros(shape, dtype=grad_padded.dtype)
        part = grad_padded[:, :, p:p + shape[2], p:p + shape[3]]
        cropped[:, :, :part.shape[2], :part.shape[3]] = part
        return cropped
