"""Sequential held against: a small network written here in a few lines of numpy and
differenced centrally; the seed's five steps written literally with scipy.signal; complex
step; and (optionally) torch autograd on conv -> tanh -> maxpool -> flatten -> dense -> loss."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from gradcheck import ConfigurationError
from gradcheck.ops.layers import Activation, AvgPool, Conv, Dense, Flatten, MaxPool
from gradcheck.ops.losses import get_loss
from gradcheck.ops.network import Sequential


def stack(loss="weighted_sum", shape=(2, 2, 5, 5)):
    return Sequential([Conv(3, 2), Activation("tanh"), MaxPool(2), Flatten(), Dense(4)],
                      shape, loss=loss)


def setup(net, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = net.init_params(rng=rng, dtype=dtype)
    x = rng.standard_normal(net.input_shape).astype(dtype)
    return x, params


# --------------------------------------------------------------------------- independent numpy net


def numpy_loss(x, w, b, wd, bd, r):
    """conv(valid, 2x2) -> tanh -> maxpool 2 -> flatten -> dense -> sum(R * y), by hand."""
    win = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))  # N,C,4,4,2,2
    z = np.einsum("ncijab,ocab->noij", win, w) + b[None, :, None, None]
    a = np.tanh(z)
    n, c, h, v = a.shape
    pooled = a.reshape(n, c, h // 2, 2, v // 2, 2).max(axis=(3, 5))
    y = pooled.reshape(n, -1) @ wd.T + bd
    return np.sum(r * y)


def test_gradients_match_central_differences_of_a_hand_written_network():
    net = stack()
    x, params = setup(net)
    args = [x, params[0]["w"], params[0]["b"], params[4]["w"], params[4]["b"]]
    r = net.loss.weights
    value, grad_x, pgrads = net.loss_and_grads(x, params)
    assert value == pytest.approx(numpy_loss(*args, r), rel=1e-13)
    analytic = [grad_x, pgrads[0]["w"], pgrads[0]["b"], pgrads[4]["w"], pgrads[4]["b"]]
    assert pgrads[1] == pgrads[2] == pgrads[3] == {}
    h = 1e-6
    for a, (arg, g) in enumerate(zip(args, analytic)):
        numeric = np.zeros_like(arg)
        for j in np.ndindex(*arg.shape):
            plus, minus = [v.copy() for v in args], [v.copy() for v in args]
            plus[a][j] += h
            minus[a][j] -= h
            numeric[j] = (numpy_loss(*plus, r) - numpy_loss(*minus, r)) / (2 * h)
        np.testing.assert_allclose(g, numeric, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- the seed's five steps


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("convention", ["correlation", "convolution"])
def test_seed_five_steps_literally(convention):
    """Two single-channel conv layers with sigmoid, checked step by step with scipy.signal:
    z = w * a + b; δ^L = ∇_a C ⊙ σ'(z^L); δ^l = (δ^{l+1} * rot180(w^{l+1})) ⊙ σ'(z^l) as a
    full operation; ∂C/∂w = valid operation of a^{l-1} with δ^l; ∂C/∂b = Σ δ."""
    net = Sequential([Conv(1, 2, convention=convention), Activation("sigmoid"),
                      Conv(1, 2, convention=convention), Activation("sigmoid")],
                     (1, 1, 5, 5), loss="weighted_sum")
    x, params = setup(net, seed=1)
    trace = net.forward(x, params)
    back = net.backward(trace, net.loss.grad(trace.output))
    w1, b1 = params[0]["w"][0, 0], params[0]["b"][0]
    w2, b2 = params[2]["w"][0, 0], params[2]["b"][0]
    R = net.loss.weights[0, 0]
    # forward: valid correlation (frameworks) or valid true convolution (the seed)
    fwd = signal.correlate2d if convention == "correlation" else signal.convolve2d
    z1 = fwd(x[0, 0], w1, "valid") + b1
    a1 = sigmoid(z1)
    z2 = fwd(a1, w2, "valid") + b2
    np.testing.assert_allclose(trace.outputs[0][0, 0], z1, rtol=1e-14)
    np.testing.assert_allclose(trace.outputs[1][0, 0], a1, rtol=1e-14)
    np.testing.assert_allclose(trace.outputs[2][0, 0], z2, rtol=1e-14)
    # step 3: output error
    d2 = R * sigmoid(z2) * (1 - sigmoid(z2))
    np.testing.assert_allclose(back.deltas[2][0, 0], d2, rtol=1e-13)
    np.testing.assert_array_equal(back.deltas[3], net.loss.grad(trace.output))
    # step 4: the seed's δ^l = (δ^{l+1} * rot180(w^{l+1})) ⊙ σ'(z^l), "*" the true
    # convolution for the seed's convention; for correlation the kernel is not rotated
    w2_rot = np.rot90(w2, 2)
    full = (signal.convolve2d(d2, w2_rot, "full") if convention == "convolution"
            else signal.convolve2d(d2, w2, "full"))
    np.testing.assert_allclose(back.deltas[1][0, 0], full, rtol=1e-13)
    d1 = full * sigmoid(z1) * (1 - sigmoid(z1))
    np.testing.assert_allclose(back.deltas[0][0, 0], d1, rtol=1e-13)
    # step 5: ∂C/∂w^l = δ^l * σ(rot180(z^{l-1})) (seed), a valid correlation for frameworks
    for layer, a_prev, d in ((2, a1, d2), (0, x[0, 0], d1)):
        gw = (signal.convolve2d(np.rot90(a_prev, 2), d, "valid") if convention == "convolution"
              else signal.correlate2d(a_prev, d, "valid"))
        np.testing.assert_allclose(back.param_grads[layer]["w"][0, 0], gw, rtol=1e-13)
        assert back.param_grads[layer]["b"][0] == pytest.approx(d.sum(), rel=1e-13)


# --------------------------------------------------------------------------- torch


@pytest.mark.parametrize("loss", ["weighted_sum", "mse", "softmax_cross_entropy"])
def test_matches_torch_autograd(loss):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    net = Sequential([Conv(3, 3, padding=1, stride=1), Activation("tanh"), MaxPool(2),
                      Flatten(), Dense(5)], (2, 2, 6, 6), loss=loss)
    x, params = setup(net, seed=2)
    value, grad_x, pgrads = net.loss_and_grads(x, params)
    tx = torch.tensor(x, requires_grad=True)
    tp = [torch.tensor(params[i][k], requires_grad=True) for i, k in
          ((0, "w"), (0, "b"), (4, "w"), (4, "b"))]
    y = F.linear(F.max_pool2d(torch.tanh(F.conv2d(tx, tp[0], tp[1], padding=1)), 2)
                 .flatten(1), tp[2], tp[3])
    if loss == "weighted_sum":
        c = (torch.tensor(net.loss.weights) * y).sum()
    elif loss == "mse":
        c = F.mse_loss(y, torch.tensor(net.loss.target))
    else:
        c = F.cross_entropy(y, torch.tensor(net.loss.targets))
    grads = torch.autograd.grad(c, [tx, *tp])
    assert value == pytest.approx(c.item(), rel=1e-13)
    ours = [grad_x, pgrads[0]["w"], pgrads[0]["b"], pgrads[4]["w"], pgrads[4]["b"]]
    for got, want in zip(ours, grads):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- flat view


def _central_vjp(f, args, c, h=1e-6):
    out = []
    for a, arg in enumerate(args):
        g = np.zeros_like(arg)
        for j in np.ndindex(*arg.shape):
            plus, minus = list(args), list(args)
            e = np.zeros_like(arg)
            e[j] = h
            plus[a], minus[a] = arg + e, arg - e
            g[j] = np.sum(c * (f(*plus) - f(*minus))) / (2 * h)
        out.append(g)
    return out


@pytest.mark.parametrize("loss", [None, "mse"])
def test_as_function_vjp_matches_central_differences(loss):
    net = Sequential([Conv(2, 2, stride=2, padding=1), Activation("softplus"),
                      AvgPool(2), Flatten(), Dense(3)], (3, 1, 4, 4), loss=loss)
    x, params = setup(net, seed=3)
    f, f_vjp, names = net.as_function()
    assert names == ("input", "layer0.conv.w", "layer0.conv.b", "layer4.dense.w",
                     "layer4.dense.b")
    args = [x, *net.flatten_params(params)]
    y = f(*args)
    assert y.shape == ((3,) if loss else (3, 3))
    c = np.random.default_rng(4).standard_normal(y.shape)
    grads = f_vjp(c, *args)
    assert len(grads) == len(args)
    for g, want in zip(grads, _central_vjp(f, args, c)):
        np.testing.assert_allclose(g, want, rtol=0, atol=1e-9)
    if loss:
        assert float(np.sum(y)) == pytest.approx(net.loss_and_grads(x, params).loss, rel=1e-14)


def test_complex_step_through_the_whole_network():
    net = stack(loss="softmax_cross_entropy")
    x, params = setup(net, seed=5)
    f, f_vjp, names = net.as_function()
    args = [x, *net.flatten_params(params)]
    c = np.array([0.7, -1.3])
    grads = f_vjp(c, *args)
    h = 1e-40
    for a, arg in enumerate(args):
        for j in list(np.ndindex(*arg.shape))[::7]:
            cargs = [v.astype(complex) for v in args]
            cargs[a][j] += 1j * h
            numeric = np.sum(c * f(*cargs)).imag / h
            assert grads[a][j] == pytest.approx(numeric, rel=1e-12, abs=1e-16), names[a]


@pytest.mark.parametrize("loss", [None, "weighted_sum"])
def test_pattern_covers_the_jacobian(loss):
    net = Sequential([Conv(2, 2, padding=1), Activation("tanh"), Conv(2, 2, stride=2),
                      Activation("tanh"), Flatten(), Dense(3)], (2, 1, 4, 4), loss=loss)
    x, params = setup(net, seed=6)
    f, _, names = net.as_function()
    args = [x, *net.flatten_params(params)]
    out_size = f(*args).size
    for a, name in enumerate(names):
        pattern = net.pattern(name)
        assert pattern.shape == (out_size, args[a].size) and pattern.dtype == bool
        cols = []
        for j in range(args[a].size):
            plus, minus = list(args), list(args)
            e = np.zeros(args[a].size)
            e[j] = 1e-6
            plus[a] = args[a] + e.reshape(args[a].shape)
            minus[a] = args[a] - e.reshape(args[a].shape)
            cols.append((f(*plus) - f(*minus)).ravel() / 2e-6)
        structure = np.abs(np.stack(cols, axis=1)) > 1e-8
        dense = pattern.toarray()
        assert not (structure & ~dense).any(), f"{name}: pattern misses a dependence"
        if name in ("input", "layer2.conv.w", "layer2.conv.b", "layer5.dense.w"):
            # conv -> tanh -> conv -> ...: generic values make every structural path nonzero
            np.testing.assert_array_equal(dense, structure, err_msg=name)
    # the input pattern is not trivially full: batch items never connect
    if loss is None:
        dense = net.pattern("input").toarray().reshape(2, 3, 2, 16)
        assert not dense[0, :, 1].any() and not dense[1, :, 0].any()


class _Opaque(Activation):
    """A layer that cannot state its pattern nor take complex input (like a user's layer)."""

    complex_safe = False

    def pattern(self, input_shape, wrt="x"):
        return None


def test_pattern_is_none_past_an_opaque_layer_and_complex_safety():
    net = Sequential([Conv(2, 2), _Opaque("tanh"), Conv(1, 2)], (1, 1, 5, 5))
    assert net.pattern("input") is None and net.pattern("layer0.conv.b") is None
    assert net.pattern("layer2.conv.w").shape == (9, 8)  # after the opaque layer: known
    assert not net.complex_safe
    assert stack().complex_safe


# --------------------------------------------------------------------------- trace, dtypes, specs


def test_trace_and_deltas_layout():
    net = stack()
    x, params = setup(net)
    trace = net.forward(x, params)
    assert len(trace.inputs) == len(trace.outputs) == 5
    assert trace.inputs[0] is x or np.array_equal(trace.inputs[0], x)
    for i in range(4):
        assert trace.outputs[i] is trace.inputs[i + 1]
    assert [o.shape for o in trace.outputs] == net.shapes[1:]
    np.testing.assert_allclose(trace.outputs[1], np.tanh(trace.outputs[0]), rtol=1e-15)
    g = net.loss.grad(trace.output)
    back = net.backward(trace, g)
    assert [d.shape for d in back.deltas] == net.shapes[1:]
    assert back.grad_x.shape == x.shape


def test_float32_stays_float32():
    net = stack()
    x, params = setup(net, dtype=np.float32)
    assert all(v.dtype == np.float32 for p in params for v in p.values())
    trace = net.forward(x, params)
    assert all(o.dtype == np.float32 for o in trace.outputs)
    value, grad_x, pgrads = net.loss_and_grads(x, params)
    assert grad_x.dtype == np.float32
    assert all(v.dtype == np.float32 for p in pgrads for v in p.values())
    # and agrees with float64 to float32 accuracy
    x64, p64 = x.astype(np.float64), [{k: v.astype(np.float64) for k, v in p.items()}
                                        for p in params]
    np.testing.assert_allclose(grad_x, net.loss_and_grads(x64, p64).grad_x, rtol=0, atol=1e-5)


def test_layers_given_as_specs_and_to_dict():
    specs = [{"type": "conv", "out_channels": 3, "kernel": 2}, {"type": "tanh"},
             {"type": "maxpool", "kernel": 2}, {"type": "flatten"},
             {"type": "dense", "out_features": 4}]
    net = Sequential(specs, (2, 2, 5, 5), loss="weighted_sum")
    assert net.layers == stack().layers
    d = net.to_dict()
    assert d["input"] == {"shape": [2, 2, 5, 5]} and d["loss"] == {"type": "weighted_sum",
                                                                   "seed": 0}
    assert [l["type"] for l in d["layers"]] == ["conv", "tanh", "maxpool", "flatten", "dense"]


def test_loss_object_with_seed():
    loss = get_loss("weighted_sum", (2, 4), seed=9)
    net = stack(loss=loss)
    assert net.loss is loss


# --------------------------------------------------------------------------- bad calls

BAD_BUILD = [
    (lambda: Sequential([Conv(3, 2), Dense(4)], (2, 2, 5, 5)),
     r"layer 1 \(dense\) on input of shape \(2, 3, 4, 4\): Dense\(out_features=4\): input must have shape \(N, in_features\); put a Flatten layer before it"),
    (lambda: Sequential([Conv(3, 6)], (2, 2, 5, 5)),
     r"layer 0 \(conv\) on input of shape \(2, 2, 5, 5\): Conv\(out_channels=3, kernel=6\): kernel is larger than the padded input"),
    (lambda: Sequential([], (2, 3)), r"layers must be a non-empty list of layers; got \[\]"),
    (lambda: Sequential([Flatten(), "tanh"], (2, 3)),
     r"layers\[1\] must be a layer from gradcheck.ops.layers or a layer-spec mapping; got 'tanh'"),
    (lambda: Sequential([Flatten()], (2, -3)), r"input_shape must be a non-empty tuple of positive ints; got \(2, -3\)"),
    (lambda: Sequential([Flatten()], (2, 3), loss="mean_squared"), r"loss name 'mean_squared' is not known"),
    (lambda: Sequential([Flatten()], (2, 3), loss=get_loss("mse", (2, 4))),
     r"loss 'mse' was built for output shape \(2, 4\), but the network's output has shape \(2, 3\)"),
    (lambda: Sequential([Flatten()], (2, 3), loss=3), r"loss must be None, a loss name or a Loss; got 3"),
    (lambda: Sequential([{"type": "tanhh"}], (2, 3)), r"layer type 'tanhh' is not known; did you mean 'tanh'\?"),
]


@pytest.mark.parametrize("build, message", BAD_BUILD)
def test_bad_construction(build, message):
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_bad_calls():
    net = stack()
    x, params = setup(net)
    with pytest.raises(ConfigurationError, match=r"x must have the network's input shape \(2, 2, 5, 5\); got \(1, 2, 5, 5\)"):
        net.forward(x[:1], params)
    with pytest.raises(ConfigurationError, match=r"params must be a list of 5 dicts, one per layer; got list of length 4"):
        net.forward(x, params[:4])
    bad = list(params)
    bad[0] = {"b": params[0]["b"], "w": params[0]["w"]}
    with pytest.raises(ConfigurationError, match=r"params\[0\] \(layer 0, conv\) must be a dict with keys \['w', 'b'\]; got \['b', 'w'\]"):
        net.forward(x, bad)
    trace = net.forward(x, params)
    with pytest.raises(ConfigurationError, match=r"grad_output must have the network's output shape \(2, 4\); got \(2, 5\)"):
        net.backward(trace, np.zeros((2, 5)))
    with pytest.raises(ConfigurationError, match=r"wrt 'layer0.conv.W' is not an argument of this network; did you mean 'layer0.conv.w'\?"):
        net.pattern("layer0.conv.W")
    with pytest.raises(ConfigurationError, match=r"loss_and_grads needs a loss; construct Sequential\(..., loss=name\)"):
        stack(loss=None).loss_and_grads(x, params)
    f, f_vjp, _ = net.as_function()
    with pytest.raises(ConfigurationError, match=r"expected 4 parameter arrays \(layer0.conv.w, layer0.conv.b, layer4.dense.w, layer4.dense.b\); got 3"):
        f(x, *net.flatten_params(params)[:3])


@pytest.mark.parametrize("loss", [None, "mse"])
def test_vjp_at_the_same_point_reuses_its_forward_pass_only_there(loss):
    """f_vjp called again at the same point (new cotangents, as a check does) gives what
    a fresh function gives; arrays changed in place or replaced are run forward again."""
    net = Sequential([Conv(3, 3, padding=1), Activation("tanh"), MaxPool(2), Flatten(),
                      Dense(2)], (2, 2, 6, 6), loss=loss)
    rng = np.random.default_rng(3)
    flat = [rng.standard_normal(net.input_shape),
            *net.flatten_params(net.init_params(rng=rng))]
    f_vjp = net.as_function().f_vjp
    shape = net.as_function().f(*flat).shape

    def fresh(R, args):    # a new function: nothing to reuse
        return net.as_function().f_vjp(R, *args)

    for _ in range(3):     # new cotangents at the same point
        R = rng.standard_normal(shape)
        for got, want in zip(f_vjp(R, *flat), fresh(R, flat)):
            np.testing.assert_array_equal(got, want)
    for change in ("in place", "replaced", "copied", "-0.0"):
        if change == "in place":
            flat[0][0, 0, 1, 2] += 0.5          # the input changed in place
        elif change == "replaced":
            flat[1] = flat[1] * 1.5             # a parameter replaced by a new array
        elif change == "copied":
            flat = [a.copy() for a in flat]     # the same values in new arrays
        else:
            flat[0][0, 0, 0, 0] = 0.0           # an input at 0.0, then at -0.0
            f_vjp(R, *flat)
            flat[0][0, 0, 0, 0] = -0.0
        R = rng.standard_normal(shape)
        for got, want in zip(f_vjp(R, *flat), fresh(R, flat)):
            np.testing.assert_array_equal(got, want, err_msg=change)
