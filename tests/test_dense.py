"""Dense and Flatten held against explicit sums written here, hand values, central
differences, complex step, and (optionally) torch.nn.functional.linear with autograd."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import ConfigurationError
from gradcheck.ops.layers import Dense, Flatten


def test_dense_hand_example():
    # z_j = sum_k W_jk x_k + b_j; dC/dx_k = sum_j delta_j W_jk; dC/dW_jk = delta_j x_k
    x = np.array([[1.0, 2.0, 3.0]])
    w = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    b = np.array([0.0, 1.0])
    layer = Dense(2)
    np.testing.assert_array_equal(layer.forward(x, w, b), [[-2.0, 4.0]])
    gx, gw, gb = layer.backward(np.array([[1.0, 2.0]]), x, w, b)
    np.testing.assert_array_equal(gx, [[1.0 + 1.0, 0.0 + 1.0, -1.0 + 1.0]])
    np.testing.assert_array_equal(gw, [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    np.testing.assert_array_equal(gb, [1.0, 2.0])


def test_dense_matches_explicit_sums():
    rng = np.random.default_rng(0)
    n, f, o = 3, 5, 4
    x, w, b = rng.standard_normal((n, f)), rng.standard_normal((o, f)), rng.standard_normal(o)
    d = rng.standard_normal((n, o))
    y = Dense(o).forward(x, w, b)
    gx, gw, gb = Dense(o).backward(d, x, w, b)
    for i in range(n):
        for j in range(o):
            assert np.isclose(y[i, j], sum(w[j, k] * x[i, k] for k in range(f)) + b[j],
                              rtol=1e-14)
    want_gx = [[sum(d[i, j] * w[j, k] for j in range(o)) for k in range(f)] for i in range(n)]
    want_gw = [[sum(d[i, j] * x[i, k] for i in range(n)) for k in range(f)] for j in range(o)]
    np.testing.assert_allclose(gx, want_gx, rtol=1e-13)
    np.testing.assert_allclose(gw, want_gw, rtol=1e-13)
    np.testing.assert_allclose(gb, d.sum(axis=0), rtol=1e-14)


@pytest.mark.parametrize("bias", [True, False])
def test_dense_central_differences(bias):
    rng = np.random.default_rng(1)
    layer = Dense(3, bias=bias)
    x = rng.standard_normal((2, 4))
    params = layer.init_params(x.shape, rng=rng)
    r = rng.standard_normal((2, 3))
    args = [x, *params.values()]
    grads = layer.backward(r, *args)
    assert len(grads) == len(args)
    h = 1e-6
    for a, (arg, g) in enumerate(zip(args, grads)):
        numeric = np.zeros_like(arg)
        for j in np.ndindex(*arg.shape):
            plus = [v.copy() for v in args]
            minus = [v.copy() for v in args]
            plus[a][j] += h
            minus[a][j] -= h
            numeric[j] = np.sum(r * (layer.forward(*plus) - layer.forward(*minus))) / (2 * h)
        np.testing.assert_allclose(g, numeric, rtol=0, atol=1e-9)


def test_dense_complex_step():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    r = rng.standard_normal((2, 2))
    gw = Dense(2).backward(r, x, w, b)[1]
    h = 1e-60
    numeric = np.zeros_like(w)
    for j in np.ndindex(*w.shape):
        wc = w.astype(complex)
        wc[j] += 1j * h
        numeric[j] = np.sum(r * Dense(2).forward(x, wc, b)).imag / h
    np.testing.assert_allclose(gw, numeric, rtol=1e-14)


def test_dense_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((5, 6)), rng.standard_normal(5)
    d = rng.standard_normal((4, 5))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    want = torch.autograd.grad(ty, (tx, tw, tb), torch.tensor(d))
    np.testing.assert_allclose(Dense(5).forward(x, w, b), ty.detach().numpy(), rtol=1e-14)
    for got, exp in zip(Dense(5).backward(d, x, w, b), want):
        np.testing.assert_allclose(got, exp.numpy(), rtol=1e-13, atol=1e-15)


def test_flatten_round_trip_and_c_order():
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    y = Flatten().forward(x)
    np.testing.assert_array_equal(y, [np.arange(12.0), np.arange(12.0, 24.0)])
    (gx,) = Flatten().backward(y * 2, x)
    np.testing.assert_array_equal(gx, x * 2)
    assert Flatten().output_shape((5, 7)) == (5, 7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_shape_and_dtype_preserved(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 2)).astype(dtype)
    flat = Flatten().forward(x)
    assert flat.shape == (3, 4) and flat.dtype == dtype
    layer = Dense(5)
    params = layer.init_params(flat.shape, rng=rng, dtype=dtype)
    assert all(p.dtype == dtype for p in params.values())
    y = layer.forward(flat, *params.values())
    assert y.shape == (3, 5) and y.dtype == dtype
    grads = layer.backward(np.ones_like(y), flat, *params.values())
    assert [g.shape for g in grads] == [(3, 4), (5, 4), (5,)]
    assert all(g.dtype == dtype for g in grads)
    (gx,) = Flatten().backward(grads[0], x)
    assert gx.shape == x.shape and gx.dtype == dtype


def test_init_scale():
    # W ~ N(0, 1/F): output variance ~ input variance, so activations stay O(1)
    rng = np.random.default_rng(5)
    layer = Dense(400)
    p = layer.init_params((1, 900), rng=rng)
    assert abs(p["w"].std() * np.sqrt(900) - 1) < 0.02
    assert np.all(np.abs(p["b"]) <= 1 / 30)
    assert Dense(3, bias=False).init_params((2, 4), rng=rng).keys() == {"w"}


def test_to_dict_and_protocol():
    assert Dense(10).to_dict() == {"type": "dense", "out_features": 10, "bias": True}
    assert Flatten().to_dict() == {"type": "flatten"}
    assert Dense(3).param_shapes((2, 4)) == {"w": (3, 4), "b": (3,)}
    assert list(Dense(3, bias=False).param_shapes((2, 4))) == ["w"]
    assert Dense(3).kind == "dense" and Flatten().kind == "flatten"


BAD = [
    (lambda: Dense(0), r"Dense\(out_features=0\): out_features must be a positive int; got 0"),
    (lambda: Dense(2.5), r"out_features must be a positive int; got 2.5"),
    (lambda: Dense(3, bias=1), r"Dense\(out_features=3\): bias must be True or False; got 1"),
    (lambda: Dense(3).output_shape((2, 3, 4)),
     r"Dense\(out_features=3\): input must have shape \(N, in_features\); put a Flatten layer before it for image-shaped input; got shape \(2, 3, 4\)"),
    (lambda: Flatten().output_shape((5,)),
     r"Flatten\(\): input must have shape \(N, \*features\) with at least one feature axis; got shape \(5,\)"),
    (lambda: Dense(3).forward(np.zeros((2, 4)), np.zeros((3, 4))),
     r"forward takes the parameters \(w, b\) after x; got 1 parameter array"),
    (lambda: Dense(3).forward(np.zeros((2, 4)), np.zeros((4, 3)), np.zeros(3)),
     r"parameter w must have shape \(3, 4\) for input of shape \(2, 4\); got shape \(4, 3\)"),
    (lambda: Dense(3).init_params((2, 4), rng=np.random.default_rng(), dtype=np.int32),
     r"dtype must be a floating or complex dtype such as float32 or float64; got int32"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_calls(call, message):
    with pytest.raises(ConfigurationError, match=message):
        call()
