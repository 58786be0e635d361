r"""The seed's picture: the convolution as a sparse perceptron with shared weights.

See :mod:`gradcheck.ops.reference` for the formulas and why this shares no code with
:mod:`gradcheck.ops.conv`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse

from gradcheck._errors import ConfigurationError
from gradcheck._plain import plain
from gradcheck._record import NamedTuple
from gradcheck.ops.reference._common import _as_array, _check_convention, _geometry

__all__ = [
    "Connections",
    "connections",
    "conv_matrix",
    "conv_forward_matrix",
    "conv_backward_matrix",
    "Connection",
    "PixelDelta",
    "perceptron_deltas",
]


# --------------------------------------------------------------------------- the picture


class Connections(NamedTuple):
    """Every connection of the layer seen as a sparse perceptron.

    Connection ``k`` joins input node ``input[k]`` (a flat index into ``x``) to output
    node ``output[k]`` (a flat index into ``y``) through the shared weight ``weight[k]``
    (a flat index into ``w``). Connections into the zero padding are left out: a padded
    zero has no node.
    """

    output: np.ndarray
    input: np.ndarray
    weight: np.ndarray
    x_shape: tuple
    y_shape: tuple
    w_shape: tuple

    def weight_matrix(self) -> scipy.sparse.csr_matrix:
        """Sparse ``(w.size, n_connections)`` 0/1 matrix: which weight each connection uses."""
        k = len(self.weight)
        return scipy.sparse.csr_matrix(
            (np.ones(k), (self.weight, np.arange(k))), shape=(math.prod(self.w_shape), k)
        )


def connections(x_shape, w_shape, *, stride=1, padding=0, dilation=1, groups=1,
                convention="correlation") -> Connections:
    r"""List the connections of the convolution as a perceptron with shared weights.

    Output node :math:`(n, o, \mathbf{i})` reads input :math:`(n, c, \mathbf{p})` with
    :math:`\mathbf{p} = s\mathbf{i} + d\mathbf{a} - \mathbf{p}_{lo}` through weight
    :math:`w[o, c - g k, \mathbf{a}]` (cross-correlation), or through
    :math:`w[o, c - g k, \mathbf{K} - 1 - \mathbf{a}]` (the seed's true convolution, whose
    kernel index is subtracted). Taps that land in the padding make no connection.
    Built with numpy index arithmetic, one pass per kernel tap.

    Examples
    --------
    The seed's 3×3 input and 2×2 kernel: 4 outputs × 4 weights = 16 connections.

    >>> conn = connections((1, 1, 3, 3), (1, 1, 2, 2))
    >>> len(conn.output)
    16
    >>> np.bincount(conn.input, minlength=9).reshape(3, 3)   # connections per pixel
    array([[1, 2, 1],
           [2, 4, 2],
           [1, 2, 1]])
    """
    true_conv = _check_convention(convention)
    geom = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    y_shape = (geom.batch, geom.out_channels, *geom.out_shape)
    c_in_g = geom.in_channels // geom.groups
    c_out_g = geom.out_channels // geom.groups
    # One axis each for n, o, c_local, and the output position i; broadcast together.
    grids = np.meshgrid(np.arange(geom.batch), np.arange(geom.out_channels),
                        np.arange(c_in_g), *[np.arange(o) for o in geom.out_shape],
                        indexing="ij")
    n, o, c_local, *pos = [g.ravel() for g in grids]
    c = (o // c_out_g) * c_in_g + c_local
    out_idx = np.ravel_multi_index((n, o, *pos), y_shape)
    outs, ins, weights = [], [], []
    for tap in np.ndindex(*geom.kernel):
        p = [s * i + d * a - lo for i, s, d, a, lo in
             zip(pos, geom.stride, geom.dilation, tap, geom.pad_lo)]
        inside = np.ones(n.shape, dtype=bool)
        for q, size in zip(p, geom.in_shape):
            inside &= (q >= 0) & (q < size)
        w_tap = tuple(k - 1 - a for k, a in zip(geom.kernel, tap)) if true_conv else tap
        outs.append(out_idx[inside])
        ins.append(np.ravel_multi_index((n[inside], c[inside], *[q[inside] for q in p]),
                                        x_shape))
        weights.append(np.ravel_multi_index((o[inside], c_local[inside],
                                             *[np.full(inside.sum(), t) for t in w_tap]),
                                            w_shape))
    return Connections(np.concatenate(outs), np.concatenate(ins), np.concatenate(weights),
                       x_shape, y_shape, w_shape)


def conv_matrix(x_shape, w, *, stride=1, padding=0, dilation=1, groups=1,
                convention="correlation") -> scipy.sparse.csr_matrix:
    r"""The convolution as a sparse matrix: ``y.ravel() = W @ x.ravel()`` (bias apart).

    ``W`` has shape ``(y.size, x.size)``; entry :math:`(i, j)` is the shared weight on the
    connection from input node :math:`j` to output node :math:`i` (see
    :func:`connections`), zero where there is none -- the seed's perceptron with most
    connections removed and the rest sharing weights. The input error is then
    :math:`W^{\top}\delta`.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> W = conv_matrix((1, 1, 3, 3), w)
    >>> W.shape, W.nnz
    ((4, 9), 16)
    >>> W.toarray()[0].reshape(3, 3)      # output (0, 0) sees the top-left window
    array([[1., 2., 0.],
           [3., 4., 0.],
           [0., 0., 0.]])
    """
    w = _as_array(w)
    conn = connections(x_shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, convention=convention)
    return scipy.sparse.csr_matrix(
        (w.ravel()[conn.weight], (conn.output, conn.input)),
        shape=(math.prod(conn.y_shape), math.prod(conn.x_shape)),
    )


def conv_forward_matrix(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1,
                        convention="correlation") -> np.ndarray:
    """Forward pass through the sparse perceptron: ``W @ x.ravel()`` plus the bias."""
    x, w = _as_array(x), _as_array(w)
    conn = connections(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, convention=convention)
    big_w = conv_matrix(x.shape, w, stride=stride, padding=padding, dilation=dilation,
                        groups=groups, convention=convention)
    y = (big_w @ x.ravel()).reshape(conn.y_shape)
    if b is not None:
        y = y + _as_array(b).reshape((1, -1) + (1,) * (x.ndim - 2))
    return y


def conv_backward_matrix(grad_y, x, w, *, stride=1, padding=0, dilation=1, groups=1,
                         convention="correlation"):
    r"""``(grad_x, grad_w, grad_b)`` from the sparse perceptron.

    * :math:`\partial C/\partial x = W^{\top}\delta` -- each input node's error is the sum,
      over the output nodes it feeds, of that node's error times the shared weight;
    * :math:`\partial C/\partial w_k = \sum_{(i, j) \text{ using } w_k} \delta_i\, x_j` --
      the products over every connection, summed per shared weight through the sparse
      "which weight" matrix of :meth:`Connections.weight_matrix`;
    * :math:`\partial C/\partial b_o = \sum` of the errors of channel ``o``.
    """
    grad_y, x, w = _as_array(grad_y), _as_array(x), _as_array(w)
    conn = connections(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, convention=convention)
    if grad_y.shape != conn.y_shape:
        raise ConfigurationError(
            f"grad_y must have the forward output's shape {conn.y_shape}; "
            f"got shape {grad_y.shape}"
        )
    big_w = conv_matrix(x.shape, w, stride=stride, padding=padding, dilation=dilation,
                        groups=groups, convention=convention)
    delta = grad_y.ravel()
    grad_x = (big_w.T @ delta).reshape(x.shape)
    products = delta[conn.output] * x.ravel()[conn.input]
    grad_w = (conn.weight_matrix() @ products).reshape(w.shape)
    grad_b = grad_y.sum(axis=(0, *range(2, grad_y.ndim)))
    dtype = np.result_type(grad_y, x, w)
    return grad_x.astype(dtype), grad_w.astype(dtype), grad_b.astype(dtype)


# --------------------------------------------------------------------------- explain


class Connection(NamedTuple):
    """One connection from an input pixel to an output node through a shared weight."""

    output: tuple           # index of the output node in y: (n, o, *i)
    weight: tuple           # index of the shared weight in w: (o, c_local, *a)
    delta: float            # the output node's error (complex for complex input)
    weight_value: float     # the shared weight's value
    product: float          # delta * weight_value

    def to_dict(self) -> dict:
        return {"output": list(self.output), "weight": list(self.weight),
                "delta": plain(self.delta), "weight_value": plain(self.weight_value),
                "product": plain(self.product)}


class PixelDelta(NamedTuple):
    """An input pixel's error as the seed computes it: the sum over its connections."""

    pixel: tuple                        # index into x: (n, c, *p)
    connections: tuple[Connection, ...]
    delta: float                        # sum of the connections' products

    def to_dict(self) -> dict:
        return {"pixel": list(self.pixel), "delta": plain(self.delta),
                "connections": [c.to_dict() for c in self.connections]}


def perceptron_deltas(delta, w, x_shape, *, stride=1, padding=0, dilation=1, groups=1,
                      convention="correlation") -> list[PixelDelta]:
    r"""Every input pixel's error, spelled out connection by connection.

    The seed: *the error of a pixel is the sum, over the output nodes it feeds, of that
    node's error times the shared weight on the connection*,
    :math:`\delta_j = \sum_{i \to j} \delta_i\, w_{k(i, j)}`. Returns one
    :class:`PixelDelta` per input pixel in ``x``'s C order, each with its connections
    (sorted by output node) and their sum (added in that order). A pixel that no window
    reaches has no connections and error 0.

    Examples
    --------
    The seed's example with output errors 1, 10, 100, 1000 -- each digit of a pixel's
    error is one connection:

    >>> import numpy as np
    >>> w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> delta = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    >>> pixels = perceptron_deltas(delta, w, (1, 1, 3, 3))
    >>> [len(p.connections) for p in pixels]
    [1, 2, 1, 2, 4, 2, 1, 2, 1]
    >>> centre = pixels[4]
    >>> [(c.output[2:], c.weight[2:], c.product) for c in centre.connections]
    [((0, 0), (1, 1), 4.0), ((0, 1), (1, 0), 30.0), ((1, 0), (0, 1), 200.0), ((1, 1), (0, 0), 1000.0)]
    >>> centre.delta
    1234.0
    """
    delta, w = _as_array(delta), _as_array(w)
    conn = connections(x_shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, convention=convention)
    if delta.shape != conn.y_shape:
        raise ConfigurationError(
            f"delta must have the forward output's shape {conn.y_shape}; "
            f"got shape {delta.shape}"
        )
    order = np.lexsort((conn.output, conn.input))      # by pixel, then by output node
    ins, outs, ws = conn.input[order], conn.output[order], conn.weight[order]
    d_vals, w_vals = delta.ravel()[outs], w.ravel()[ws]
    products = d_vals * w_vals
    out_idx = np.unravel_index(outs, conn.y_shape)
    w_idx = np.unravel_index(ws, conn.w_shape)
    bounds = np.searchsorted(ins, np.arange(math.prod(conn.x_shape) + 1))
    zero = np.zeros((), dtype=np.result_type(delta, w))
    result = []
    for pixel in range(math.prod(conn.x_shape)):
        lo, hi = bounds[pixel], bounds[pixel + 1]
        links = tuple(
            Connection(tuple(int(a[k]) for a in out_idx), tuple(int(a[k]) for a in w_idx),
                       d_vals[k].item(), w_vals[k].item(), products[k].item())
            for k in range(lo, hi)
        )
        total = zero.copy()
        for k in range(lo, hi):
            total = total + products[k]
        result.append(PixelDelta(tuple(int(i) for i in np.unravel_index(pixel, conn.x_shape)),
                                 links, total.item()))
    return result
