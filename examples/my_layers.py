"""A convolution layer written by hand, the way a user would -- and the same layer with
the classic bug: the input gradient uses the kernel as it is instead of rotated by 180°.

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
