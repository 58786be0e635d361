"""The layer protocol: Conv against torch and central differences, every layer's
dependency pattern against the nonzero structure of a Jacobian measured by central
differences, spec round trips, initial scales, and a table of bad calls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcheck import ConfigurationError
from gradcheck.ops.layers import (
    Activation,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    MaxPool,
    layer_from_dict,
)


def rot180(w):
    return np.flip(w, axis=tuple(range(2, w.ndim)))


def random_args(layer, input_shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(input_shape)
    return [x, *layer.init_params(input_shape, rng=rng).values()]


def jacobian(layer, args, index, h=1e-6):
    """Dense Jacobian of layer.forward w.r.t. args[index] by central differences."""
    base = args[index]
    cols = []
    for j in range(base.size):
        plus, minus = list(args), list(args)
        e = np.zeros(base.size)
        e[j] = h
        plus[index] = base + e.reshape(base.shape)
        minus[index] = base - e.reshape(base.shape)
        cols.append(((layer.forward(*plus) - layer.forward(*minus)) / (2 * h)).ravel())
    return np.stack(cols, axis=1)


# --------------------------------------------------------------------------- Conv

CONV_CASES = [
    (Conv(3, 3, padding=1), (2, 2, 5, 5)),
    (Conv(4, (2, 3), stride=2, dilation=(1, 2), groups=2, padding=(1, 0)), (2, 4, 6, 7)),
    (Conv(2, 2, stride=3, bias=False), (2, 3, 10)),
    (Conv(2, 2, padding="same"), (1, 2, 4, 4, 3)),
    (Conv(3, 2, padding="full", convention="convolution"), (1, 1, 4, 3)),
]
CONV_IDS = [repr(layer) for layer, _ in CONV_CASES]


@pytest.mark.parametrize("layer, shape", CONV_CASES, ids=CONV_IDS)
def test_conv_backward_matches_central_differences(layer, shape):
    args = random_args(layer, shape, seed=0)
    r = np.random.default_rng(1).standard_normal(layer.output_shape(shape))
    grads = layer.backward(r, *args)
    assert len(grads) == len(args)
    for i, g in enumerate(grads):
        numeric = r.ravel() @ jacobian(layer, args, i)
        np.testing.assert_allclose(g.ravel(), numeric, rtol=0, atol=1e-8)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("layer, shape", CONV_CASES, ids=CONV_IDS)
def test_conv_matches_torch(layer, shape):
    torch = pytest.importorskip("torch")
    args = random_args(layer, shape, seed=2)
    y = layer.forward(*args)
    r = np.random.default_rng(3).standard_normal(y.shape)
    t_args = [torch.tensor(a, requires_grad=True) for a in args]
    w = t_args[1]
    if layer.convention == "convolution":  # the seed's true convolution: flip the kernel
        w = torch.flip(w, dims=tuple(range(2, w.ndim)))
    conv = getattr(torch.nn.functional, f"conv{len(shape) - 2}d")
    ty = conv(t_args[0], w, t_args[2] if layer.bias else None, stride=layer.stride,
              padding=layer.padding if layer.padding != "full" else 1, dilation=layer.dilation,
              groups=layer.groups)
    want = torch.autograd.grad(ty, t_args, torch.tensor(r))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13, atol=1e-14)
    for got, exp in zip(layer.backward(r, *args), want):
        np.testing.assert_allclose(got, exp.numpy(), rtol=1e-13, atol=1e-14)


def test_conv_conventions_map_by_rot180():
    x, w, b = random_args(Conv(2, 3), (1, 2, 5, 5), seed=4)
    corr, conv = Conv(2, 3), Conv(2, 3, convention="convolution")
    np.testing.assert_allclose(conv.forward(x, w, b), corr.forward(x, rot180(w), b), rtol=1e-14)
    g = np.ones(corr.output_shape(x.shape))
    gw_conv = conv.backward(g, x, w, b)[1]
    gw_corr = corr.backward(g, x, rot180(w), b)[1]
    np.testing.assert_allclose(gw_conv, rot180(gw_corr), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_conv_shape_and_dtype_preserved(dtype):
    layer = Conv(4, 3, stride=2, padding=1)
    rng = np.random.default_rng(5)
    params = layer.init_params((2, 3, 7, 6), rng=rng, dtype=dtype)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    y = layer.forward(x, *params.values())
    assert y.shape == layer.output_shape(x.shape) == (2, 4, 4, 3) and y.dtype == dtype
    grads = layer.backward(np.ones_like(y), x, *params.values())
    assert [g.shape for g in grads] == [x.shape, (4, 3, 3, 3), (4,)]
    assert all(g.dtype == dtype for g in grads)


def test_conv_init_keeps_activations_of_order_one():
    layer = Conv(16, 3, padding=1)
    rng = np.random.default_rng(6)
    shape = (4, 8, 12, 12)
    p = layer.init_params(shape, rng=rng)
    assert abs(p["w"].std() * np.sqrt(8 * 9) - 1) < 0.05
    y = layer.forward(rng.standard_normal(shape), p["w"], np.zeros(16))
    interior = y[..., 1:-1, 1:-1]
    assert 0.8 < interior.std() < 1.2


# --------------------------------------------------------------------------- patterns

PATTERN_CASES = CONV_CASES + [
    (Conv(2, 2), (2, 2, 4, 3)),  # no padding: the w pattern is exact too
    (MaxPool(2), (2, 2, 4, 4)),
    (MaxPool(3, stride=2, padding=1), (1, 2, 5, 5)),
    (AvgPool(3, stride=1, padding=1), (2, 1, 4, 3)),
    (AvgPool((2, 1, 2), stride=(1, 1, 2)), (1, 2, 3, 2, 4)),
    (Flatten(), (2, 3, 2, 2)),
    (Dense(3), (2, 5)),
    (Dense(2, bias=False), (3, 4)),
    (Activation("tanh"), (2, 3, 4)),
    (Activation("relu"), (2, 6)),
]


def _exact(layer, shape, wrt):
    """Whether the pattern is expected to equal the Jacobian's structure exactly."""
    if isinstance(layer, (MaxPool, Activation)) and layer.name != "tanh":
        return False  # data-dependent zeros (the losers of a window, relu's off side)
    if isinstance(layer, Conv) and wrt == "w" and layer.padding not in (0, "valid"):
        return False  # a tap that only ever meets padding is over-approximated
    return True


@pytest.mark.parametrize("layer, shape", PATTERN_CASES,
                         ids=[repr(layer) for layer, _ in PATTERN_CASES])
def test_pattern_covers_the_jacobian(layer, shape):
    names = ["x", *layer.param_shapes(shape)]
    out_size = int(np.prod(layer.output_shape(shape)))
    for seed in range(2):
        args = random_args(layer, shape, seed=seed)
        for i, wrt in enumerate(names):
            pattern = layer.pattern(shape, wrt)
            assert pattern.dtype == bool and pattern.format == "csr"
            assert pattern.shape == (out_size, args[i].size)
            assert pattern.has_canonical_format  # sorted, no duplicate entries
            structure = np.abs(jacobian(layer, args, i)) > 1e-7
            dense = pattern.toarray()
            missing = structure & ~dense
            assert not missing.any(), f"{wrt}: pattern misses {np.argwhere(missing)[:5]}"
            if _exact(layer, shape, wrt):
                np.testing.assert_array_equal(dense, structure, err_msg=f"{wrt}: not exact")


def test_pattern_keeps_batch_items_apart():
    layer = Conv(2, 3, padding=1)
    pattern = layer.pattern((3, 2, 4, 4), "x").toarray()
    rows = pattern.reshape(3, -1, 3, 32)
    for n in range(3):
        for m in range(3):
            assert rows[n, :, m].any() == (n == m)


def test_pattern_bad_wrt():
    with pytest.raises(ConfigurationError, match=r"Dense\(out_features=3, bias=False\): wrt must be one of \('x', 'w'\); got 'b'"):
        Dense(3, bias=False).pattern((2, 4), "b")


# --------------------------------------------------------------------------- spec round trip

ALL_LAYERS = [layer for layer, _ in PATTERN_CASES] + [
    Activation("leaky_relu", alpha=0.1),
    Activation("hard_tanh", min_val=-2.0, max_val=0.5),
    Activation("swish"),
    Conv(4, 3, padding=((1, 0), (0, 2))),
]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=repr)
def test_to_dict_round_trips_through_json(layer):
    d = layer.to_dict()
    again = layer_from_dict(json.loads(json.dumps(d)))
    assert again == layer and again.to_dict() == d and type(again) is type(layer)


def test_to_dict_examples():
    assert Conv(4, 3, padding=1).to_dict() == {
        "type": "conv", "out_channels": 4, "kernel": 3, "stride": 1, "padding": 1,
        "dilation": 1, "groups": 1, "bias": True, "convention": "correlation"}
    assert Activation("tanh").to_dict() == {"type": "tanh"}
    assert Activation("leaky_relu", alpha=0.1).to_dict() == {"type": "leaky_relu", "alpha": 0.1}


def test_kinds_and_names():
    assert [l.kind for l in (Conv(1, 1), Activation("elu"), MaxPool(2), AvgPool(2), Flatten(),
                             Dense(1))] == ["conv", "activation", "maxpool", "avgpool",
                                            "flatten", "dense"]
    assert Activation("elu").name == "elu"


def test_activation_layer_backward_uses_derivative_at_input():
    x = np.array([[0.5, -2.0]])
    (gx,) = Activation("tanh").backward(np.array([[2.0, 3.0]]), x)
    np.testing.assert_allclose(gx, [[2.0 / np.cosh(0.5) ** 2, 3.0 / np.cosh(2.0) ** 2]],
                               rtol=1e-14)


# --------------------------------------------------------------------------- bad calls

BAD_CONSTRUCT = [
    (lambda: Conv(0, 3), r"Conv\(out_channels=0, kernel=3\): out_channels must be a positive int; got 0"),
    (lambda: Conv(4, 0), r"Conv\(out_channels=4, kernel=0\): kernel must be an int >= 1 .*; got 0"),
    (lambda: Conv(4, 3, stride=0), r"stride must be an int >= 1 or a tuple of 1 to 3 such ints \(one per spatial dim\); got 0"),
    (lambda: Conv(4, 3, dilation=(1, -1)), r"dilation must be an int >= 1 .*; got \(1, -1\)"),
    (lambda: Conv(4, 3, padding="half"), r"padding must be an int, a tuple of ints, or one of \('valid', 'same', 'full'\); got 'half'"),
    (lambda: Conv(4, 3, groups=3), r"Conv\(out_channels=4, kernel=3\): groups=3 must divide out_channels=4"),
    (lambda: Conv(4, 3, bias="yes"), r"bias must be True or False; got 'yes'"),
    (lambda: Conv(4, 3, convention="conv"), r"convention must be one of \('correlation', 'convolution'\); got 'conv'"),
    (lambda: Activation("tahn"), r"activation name 'tahn' is not known; did you mean 'tanh'\?"),
    (lambda: layer_from_dict({"type": "maxpol", "kernel": 2}), r"layer type 'maxpol' is not known; did you mean 'maxpool'\? valid types: conv, maxpool"),
    (lambda: layer_from_dict({"kernel": 2}), r"a layer spec must be a mapping with a 'type' key; got \{'kernel': 2\}"),
    (lambda: layer_from_dict({"type": "conv", "kernel": 3}), r"layer type 'conv' needs out_channels; got"),
    (lambda: layer_from_dict({"type": "dense", "out_features": 3, "bais": False}), r"layer type 'dense' does not take 'bais'; valid keys: out_features, bias"),
    (lambda: layer_from_dict({"type": "tanh", "alpha": 1}), r"activation 'tanh' takes no parameters; got alpha=1"),
]

BAD_SHAPE = [
    (Conv(4, 7), (1, 3, 5, 5), r"Conv\(out_channels=4, kernel=7\): kernel is larger than the padded input along spatial dim 0: dilated kernel size 7 \(kernel 7, dilation 1\) > input 5 \+ padding 0\+0 = 5"),
    (Conv(4, 3, groups=2), (1, 3, 5, 5), r"Conv\(out_channels=4, kernel=3, groups=2\): groups=2 must divide the input channels, but the input has C_in=3"),
    (Conv(4, (3, 3)), (1, 3, 5), r"kernel must be an int or a tuple of 1 ints for input of shape \(1, 3, 5\) \(1 spatial dims\); got \(3, 3\)"),
    (Conv(4, 3), (1, 3), r"input must have shape \(N, C_in, \*spatial\) with 1 to 3 spatial dims; got shape \(1, 3\)"),
    (Conv(4, 3, stride=2, padding="same"), (1, 1, 5, 5), r"padding='same' needs stride 1 in every spatial dim"),
    (Conv(4, 3), "abc", r"input_shape must be a tuple of positive ints; got 'abc'"),
]


@pytest.mark.parametrize("make, message", BAD_CONSTRUCT)
def test_bad_construction(make, message):
    with pytest.raises(ConfigurationError, match=message):
        make()


@pytest.mark.parametrize("layer, shape, message", BAD_SHAPE)
def test_bad_input_shapes(layer, shape, message):
    with pytest.raises(ConfigurationError, match=message):
        layer.output_shape(shape)


def test_bad_parameters():
    layer = Conv(2, 3)
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ConfigurationError, match=r"parameter w must have shape \(2, 1, 3, 3\) for input of shape \(1, 1, 4, 4\); got shape \(2, 1, 2, 2\)"):
        layer.forward(x, np.zeros((2, 1, 2, 2)), np.zeros(2))
    with pytest.raises(ConfigurationError, match=r"backward takes the parameters \(w, b\) after x; got 1"):
        layer.backward(np.zeros((1, 2, 2, 2)), x, np.zeros((2, 1, 3, 3)))
    with pytest.raises(ConfigurationError, match=r"grad_y must have the output shape \(1, 2, 2, 2\)"):
        layer.backward(np.zeros((1, 2, 3, 3)), x, np.zeros((2, 1, 3, 3)), np.zeros(2))
