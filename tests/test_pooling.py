"""Max and average pooling held against a per-window loop written here (np.argmax picks the
first maximum in C order: the documented tie rule), values derived by hand, central
differences, complex step, and (optionally) PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gradcheck import ConfigurationError
from gradcheck.ops.layers import AvgPool, MaxPool

# (spatial input shape, kernel, stride, padding)
CONFIGS = [
    ((7,), 2, None, 0),
    ((7,), 3, 2, 1),
    ((8,), 3, 1, 1),
    ((5, 6), 2, None, 0),
    ((5, 6), (3, 2), (1, 2), (1, 0)),
    ((6, 6), 3, 2, 1),
    ((4, 5, 4), 2, 1, 0),
    ((4, 5, 5), (2, 3, 2), (2, 1, 2), (1, 1, 0)),
]
CONFIG_IDS = [f"{len(s)}d-k{k}-s{st}-p{p}" for s, k, st, p in CONFIGS]


def as_tuple(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def loop_pool(x, grad_y, kernel, stride, padding, *, kind):
    """Per-window reference: forward value and backward, one output position at a time."""
    nd = x.ndim - 2
    k, p = as_tuple(kernel, nd), as_tuple(padding, nd)
    s = k if stride is None else as_tuple(stride, nd)
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, [(0, 0), (0, 0)] + [(q, q) for q in p], constant_values=fill)
    out_sp = tuple((n + 2 * q - kk) // ss + 1 for n, q, kk, ss in zip(x.shape[2:], p, k, s))
    y = np.zeros(x.shape[:2] + out_sp, dtype=x.dtype)
    gxp = np.zeros(xp.shape, dtype=x.dtype)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for pos in np.ndindex(*out_sp):
            sl = tuple(slice(i * ss, i * ss + kk) for i, ss, kk in zip(pos, s, k))
            window = xp[(n, c) + sl]
            if kind == "max":
                idx = np.unravel_index(np.argmax(window), window.shape)  # first max, C order
                y[(n, c) + pos] = window[idx]
                at = tuple(i * ss + j for i, ss, j in zip(pos, s, idx))
                gxp[(n, c) + at] += grad_y[(n, c) + pos]
            else:
                y[(n, c) + pos] = window.sum() / window.size
                gxp[(n, c) + sl] += grad_y[(n, c) + pos] / window.size
    crop = tuple(slice(q, q + n) for q, n in zip(p, x.shape[2:]))
    return y, gxp[(slice(None), slice(None)) + crop]


def make_layer(kind, kernel, stride, padding):
    cls = MaxPool if kind == "max" else AvgPool
    return cls(kernel, stride=stride, padding=padding)


# --------------------------------------------------------------------------- against the loop


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("spatial, kernel, stride, padding", CONFIGS, ids=CONFIG_IDS)
def test_matches_loop_reference_with_many_ties(kind, spatial, kernel, stride, padding):
    rng = np.random.default_rng(len(spatial) * 100 + 7)
    x = rng.integers(-2, 3, size=(2, 3, *spatial)).astype(np.float64)  # ties everywhere
    layer = make_layer(kind, kernel, stride, padding)
    y = layer.forward(x)
    grad_y = rng.standard_normal(y.shape)
    want_y, want_gx = loop_pool(x, grad_y, kernel, stride, padding, kind=kind)
    np.testing.assert_allclose(y, want_y, rtol=1e-15, atol=0)
    (gx,) = layer.backward(grad_y, x)
    np.testing.assert_allclose(gx, want_gx, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- hand-derived ties


def test_maxpool_ties_hand_derived_1d_overlapping():
    # windows of 2, stride 1, over [1, 3, 3, 2]: [1,3] -> the 3 at 1; [3,3] -> the FIRST 3,
    # at 1; [3,2] -> the 3 at 2. With output errors (1, 10, 100): x[1] gets 11, x[2] 100.
    x = np.array([[[1.0, 3.0, 3.0, 2.0]]])
    pool = MaxPool(2, stride=1)
    np.testing.assert_array_equal(pool.forward(x), [[[3.0, 3.0, 3.0]]])
    (gx,) = pool.backward(np.array([[[1.0, 10.0, 100.0]]]), x)
    np.testing.assert_array_equal(gx, [[[0.0, 11.0, 100.0, 0.0]]])


def test_maxpool_ties_hand_derived_2d_c_order():
    # a 2x2 window whose maxima sit at (0,1) and (1,0): C order visits (0,1) first.
    x = np.array([[[[0.0, 5.0], [5.0, 5.0]]]])
    (gx,) = MaxPool(2).backward(np.array([[[[7.0]]]]), x)
    np.testing.assert_array_equal(gx, [[[[0.0, 7.0], [0.0, 0.0]]]])
    # all four equal: the first entry of the window
    (gx,) = MaxPool(2).backward(np.array([[[[7.0]]]]), np.full((1, 1, 2, 2), -4.0))
    np.testing.assert_array_equal(gx, [[[[7.0, 0.0], [0.0, 0.0]]]])


def test_maxpool_padding_is_never_selected():
    # every real entry is hugely negative; the -inf padding must still lose
    x = np.full((1, 1, 3, 3), -1e300)
    pool = MaxPool(3, stride=1, padding=1)
    y = pool.forward(x)
    np.testing.assert_array_equal(y, np.full((1, 1, 3, 3), -1e300))
    (gx,) = pool.backward(np.ones_like(y), x)
    # each output's error reaches the first real entry of its window: hand-counted
    np.testing.assert_array_equal(gx[0, 0], [[4.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])


def test_maxpool_nan_is_selected_and_propagates():
    x = np.array([[[1.0, np.nan, 5.0, 2.0]]])
    pool = MaxPool(2)
    y = pool.forward(x)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 5.0
    (gx,) = pool.backward(np.array([[[1.0, 1.0]]]), x)
    np.testing.assert_array_equal(gx, [[[0.0, 1.0, 1.0, 0.0]]])


def test_avgpool_counts_padding_hand_derived():
    x = np.array([[[2.0, 4.0, 6.0]]])
    pool = AvgPool(2, stride=2, padding=1)  # windows [0, 2], [4, 6]
    np.testing.assert_array_equal(pool.forward(x), [[[1.0, 5.0]]])
    (gx,) = pool.backward(np.array([[[2.0, 4.0]]]), x)
    np.testing.assert_array_equal(gx, [[[1.0, 2.0, 2.0]]])


# --------------------------------------------------------------------------- numerical routes


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("spatial, kernel, stride, padding", CONFIGS[::2], ids=CONFIG_IDS[::2])
def test_backward_matches_central_differences(kind, spatial, kernel, stride, padding):
    rng = np.random.default_rng(3)
    x = rng.permutation(np.prod((1, 2, *spatial))).reshape(1, 2, *spatial) * 0.1  # no ties
    layer = make_layer(kind, kernel, stride, padding)
    r = rng.standard_normal(layer.output_shape(x.shape))
    h = 1e-6
    numeric = np.zeros_like(x)
    for j in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[j] = h
        numeric[j] = np.sum(r * (layer.forward(x + e) - layer.forward(x - e))) / (2 * h)
    (gx,) = layer.backward(r, x)
    np.testing.assert_allclose(gx, numeric, rtol=0, atol=1e-8)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_complex_step_through_pooling(kind):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 4, 5))
    layer = make_layer(kind, 2, 1, 0)
    r = rng.standard_normal(layer.output_shape(x.shape))
    h = 1e-50
    numeric = np.zeros_like(x)
    for j in np.ndindex(*x.shape):
        xc = x.astype(complex)
        xc[j] += 1j * h
        numeric[j] = np.sum(r * layer.forward(xc)).imag / h
    np.testing.assert_allclose(layer.backward(r, x)[0], numeric, rtol=1e-14, atol=1e-15)


# --------------------------------------------------------------------------- torch


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("spatial, kernel, stride, padding", CONFIGS, ids=CONFIG_IDS)
def test_matches_torch(kind, spatial, kernel, stride, padding):
    torch = pytest.importorskip("torch")
    nd = len(spatial)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, *spatial))  # continuous: no ties
    layer = make_layer(kind, kernel, stride, padding)
    y = layer.forward(x)
    grad_y = rng.standard_normal(y.shape)
    fn = getattr(torch.nn.functional, f"{kind}_pool{nd}d")
    kwargs = {"count_include_pad": True} if kind == "avg" else {}
    t = torch.tensor(x, requires_grad=True)
    ty = fn(t, kernel, stride=stride, padding=padding, **kwargs)
    (tg,) = torch.autograd.grad(ty, t, torch.tensor(grad_y))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(layer.backward(grad_y, x)[0], tg.numpy(), rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- shapes, dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_shape_and_dtype_preserved(kind, dtype):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5)).astype(dtype)
    layer = make_layer(kind, (2, 3), (2, 1), (1, 1))
    y = layer.forward(x)
    assert y.shape == layer.output_shape(x.shape) == (2, 3, 4, 5)
    assert y.dtype == dtype
    (gx,) = layer.backward(np.ones_like(y), x)
    assert gx.shape == x.shape and gx.dtype == dtype


def test_to_dict_and_default_stride():
    assert MaxPool(2).to_dict() == {"type": "maxpool", "kernel": 2, "stride": 2, "padding": 0}
    assert AvgPool((2, 3), stride=1, padding=(1, 0)).to_dict() == {
        "type": "avgpool", "kernel": [2, 3], "stride": 1, "padding": [1, 0]}
    assert MaxPool(3).output_shape((1, 1, 9, 10)) == (1, 1, 3, 3)
    assert MaxPool(2).kind == "maxpool" and AvgPool(2).kind == "avgpool"
    assert MaxPool(2).param_shapes((1, 1, 4)) == {}


# --------------------------------------------------------------------------- bad calls

BAD_CONSTRUCT = [
    (lambda: MaxPool(0), r"MaxPool\(kernel=0\): kernel must be an int >= 1 or a tuple of 1 to 3 such ints \(one per spatial dim\); got 0"),
    (lambda: AvgPool(2, stride=0), r"AvgPool\(kernel=2\): stride must be an int >= 1 .*; got 0"),
    (lambda: MaxPool(2, padding=-1), r"MaxPool\(kernel=2\): padding must be an int >= 0 .*; got -1"),
    (lambda: MaxPool("2"), r"kernel must be an int >= 1 .*; got '2'"),
    (lambda: MaxPool((2, 2, 2, 2)), r"kernel must be an int >= 1 or a tuple of 1 to 3 such ints .*; got \(2, 2, 2, 2\)"),
]

BAD_SHAPE = [
    (MaxPool(3, padding=2), (1, 1, 6, 6), r"MaxPool\(kernel=3, stride=3, padding=2\): padding 2 along spatial dim 0 must be at most half the kernel size 3; use padding <= 1"),
    (AvgPool(5), (1, 1, 6, 3), r"AvgPool\(kernel=5, stride=5\): kernel is larger than the padded input along spatial dim 1: kernel 5 > input 3 \+ padding 2\*0 = 3"),
    (MaxPool((2, 2)), (1, 1, 6), r"MaxPool\(kernel=\[2, 2\], stride=\[2, 2\]\): kernel must be an int or a tuple of 1 ints .* \(input has 1 spatial dims\)"),
    (MaxPool(2), (4, 6), r"MaxPool\(kernel=2, stride=2\): input must have shape \(N, C, \*spatial\) with 1 to 3 spatial dims; got shape \(4, 6\)"),
    (MaxPool(2), (1, 1, 0, 4), r"input_shape must be a tuple of positive ints; got \(1, 1, 0, 4\)"),
]


@pytest.mark.parametrize("make, message", BAD_CONSTRUCT)
def test_bad_construction(make, message):
    with pytest.raises(ConfigurationError, match=message):
        make()


@pytest.mark.parametrize("layer, shape, message", BAD_SHAPE)
def test_bad_input_shapes(layer, shape, message):
    with pytest.raises(ConfigurationError, match=message):
        layer.output_shape(shape)


def test_bad_forward_and_backward_arguments():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ConfigurationError, match=r"forward takes the parameters \(none\) after x; got 1"):
        MaxPool(2).forward(x, np.zeros(3))
    with pytest.raises(ConfigurationError, match=r"grad_y must have the output shape \(1, 1, 2, 2\) .* got shape \(1, 1, 4, 4\)"):
        AvgPool(2).backward(x, x)
