"""A network's function at a batch of points equals the points evaluated one by one."""

import numpy as np
import pytest

from gradcheck.ops._batched import batchable
from gradcheck.ops.activations import FIRST_ORDER_IMAG, get_activation
from gradcheck.ops.layers import Activation, Conv, Dense, Flatten, MaxPool
from gradcheck.ops.network import Sequential


def _net(loss=None, groups=1, convention="correlation"):
    layers = [Conv(4, 3, padding=1, stride=2, groups=groups, convention=convention),
              Activation("tanh"), MaxPool(2), Flatten(), Dense(3)]
    return Sequential(layers, (2, 2, 9, 9), loss=loss)


@pytest.mark.parametrize("loss", [None, "mse"])
@pytest.mark.parametrize("convention", ["correlation", "convolution"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_batch_of_points_equals_points_one_by_one(loss, convention, dtype):
    net = _net(loss, convention=convention)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(net.input_shape)
    params = net.init_params(rng=rng)
    flat = [x, *net.flatten_params(params)]
    f = net.as_function().f
    for k, name in enumerate(net.names):
        if not batchable(net, name):
            continue
        pts = flat[k][None] + rng.standard_normal((3,) + flat[k].shape)
        if dtype is np.complex128:
            pts = pts + 1e-3j * rng.standard_normal(pts.shape)
        args = list(flat)
        args[k] = pts
        batched = f(*args)
        one_by_one = []
        for p in pts:
            args[k] = p
            one_by_one.append(f(*args))
        np.testing.assert_allclose(batched, np.stack(one_by_one), rtol=1e-13, atol=1e-13)


def test_which_arguments_are_batched():
    net = _net()
    assert [batchable(net, n) for n in net.names] == [True, True, True, False, False]
    grouped = Sequential([Conv(4, 3, groups=2), Activation("tanh")], (2, 4, 6, 6))
    assert [batchable(grouped, n) for n in grouped.names] == [True, False, False]


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_first_order_complex_equals_numpy_continuation(name, dtype):
    """Below FIRST_ORDER_IMAG the fast path is the continuation to rounding; above it
    NumPy's complex functions run (the same values)."""
    act = get_activation(name)
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.standard_normal(500) * 4, [0.0, -0.0, 30.0, -30.0, 400.0]])
    for scale in (1e-12, FIRST_ORDER_IMAG, 1e-3):
        z = (a + 1j * scale * rng.standard_normal(a.size)).astype(dtype)
        got = act.value(z)
        ref = (np.tanh(z.astype(np.complex128)) if name == "tanh"
               else 1 / (1 + np.exp(-z.astype(np.complex128)))).astype(dtype)
        eps = np.finfo(z.real.dtype).eps
        assert got.dtype == dtype
        np.testing.assert_allclose(got.real, ref.real, rtol=8 * eps, atol=0)
        np.testing.assert_allclose(got.imag, ref.imag, rtol=8 * eps, atol=0)
