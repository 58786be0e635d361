"""A network's function at a batch of points equals the points evaluated one by one."""

import numpy as np
import pytest

from gradcheck.numdiff._evaluate import ComplexSteps
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


def _complex_step_points(base, rng, count=4, scale=1e-20):
    """Complex-step points: the same real part, tiny imaginary parts on a few elements."""
    pts = np.broadcast_to(base, (count,) + base.shape).astype(np.complex128)
    im = np.zeros(pts.shape)
    for b in range(count):
        chosen = rng.random(base.shape) < 0.3
        im[b][chosen] = scale * rng.choice([-1.0, 3.0], int(chosen.sum()))
    return pts + 1j * im


@pytest.mark.parametrize("layers", [
    [Conv(3, 3, padding=1), Activation("tanh")],
    [Conv(3, 3, padding=1, stride=2), Activation("sigmoid"), Conv(2, 2), Activation("tanh")],
    [Conv(3, 3), Activation("tanh"), Conv(2, 3, padding=1, convention="convolution")],
], ids=["conv tanh", "conv sigmoid conv tanh", "conv tanh conv"])
@pytest.mark.parametrize("loss", [None, "weighted_sum"])
def test_complex_steps_with_one_real_part_equal_points_one_by_one(layers, loss):
    """The shared-real-part route (one real part, the imaginary parts per point) against
    each point through the layers' own complex arithmetic, one call per point."""
    import gradcheck.ops._batched as batched_module

    net = Sequential(layers, (2, 2, 8, 8), loss=loss)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(net.input_shape)
    flat = [x, *net.flatten_params(net.init_params(rng=rng))]
    f = net.as_function().f
    taken = []
    original = batched_module._shared_real

    def spy(*a):
        out = original(*a)
        taken.append(out is not None)
        return out

    batched_module._shared_real = spy
    try:
        for k, name in enumerate(net.names):
            if not batchable(net, name):
                continue
            pts = _complex_step_points(flat[k], rng)
            args = list(flat)
            args[k] = pts
            batched = f(*args)
            one_by_one = []
            for p in pts:
                args[k] = p
                one_by_one.append(f(*args))
            one_by_one = np.stack(one_by_one)
            np.testing.assert_allclose(batched.real, one_by_one.real, rtol=1e-13, atol=1e-13)
            # the imaginary parts are the derivative's: equal to rounding of their own size
            scale = np.max(np.abs(one_by_one.imag))
            assert scale > 0
            np.testing.assert_allclose(batched.imag, one_by_one.imag, rtol=0,
                                       atol=1e-13 * scale)
    finally:
        batched_module._shared_real = original
    assert taken and all(taken)


def test_real_parts_that_differ_take_the_general_route():
    import gradcheck.ops._batched as batched_module

    net = Sequential([Conv(3, 3, padding=1), Activation("tanh")], (2, 2, 6, 6))
    rng = np.random.default_rng(3)
    x = rng.standard_normal(net.input_shape)
    flat = [x, *net.flatten_params(net.init_params(rng=rng))]
    pts = _complex_step_points(x, rng)
    pts[1] += 1e-3                                    # one point moved in its real part
    assert batched_module._shared_real(net, 0, "x", pts, [pts, *flat[1:]],
                                       net.unflatten_params(tuple(flat[1:]))) is None
    big = _complex_step_points(x, rng, scale=1e-3)    # beyond the first-order bound
    assert batched_module._shared_real(net, 0, "x", big, [big, *flat[1:]],
                                       net.unflatten_params(tuple(flat[1:]))) is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layers", [
    [Conv(3, 3, padding=1), Activation("tanh")],
    [Conv(3, 3, padding=1, stride=2), Activation("sigmoid"), Conv(2, 2), Activation("tanh")],
    [Conv(3, 3), Activation("tanh"), Conv(2, 3, padding=1, convention="convolution")],
], ids=["conv tanh", "conv sigmoid conv tanh", "conv tanh conv"])
def test_complex_parts_are_the_complex_outputs_parts(layers, dtype):
    """``f.complex_parts`` hands the differentiator the real and imaginary parts of the
    complex batch ``f`` returns: the same numbers to the bit, the real part once."""
    net = Sequential(layers, (2, 2, 8, 8))
    rng = np.random.default_rng(4)
    flat = [rng.standard_normal(net.input_shape).astype(dtype),
            *(p.astype(dtype) for p in net.flatten_params(net.init_params(rng=rng)))]
    f = net.as_function().f
    for k, name in enumerate(net.names):
        if not batchable(net, name):
            continue
        args = list(flat)
        args[k] = _complex_step_points(flat[k], rng).astype(np.result_type(dtype, np.complex64))
        y = f(*args)
        re, im = f.complex_parts(*args)
        assert re.shape == y.shape[1:] and im.shape == y.shape, name
        assert re.dtype == im.dtype == y.real.dtype and im.flags.c_contiguous, name
        np.testing.assert_array_equal(np.broadcast_to(re, y.shape), y.real, err_msg=name)
        np.testing.assert_array_equal(im, y.imag, err_msg=name)
        # the same points handed over as their parts (the differentiator's route), with
        # and without the largest imaginary part (which spares the first-order tests
        # their passes where it bounds every layer's below the limit)
        for largest in (None, float(np.abs(args[k].imag).max())):
            steps = list(flat)
            steps[k] = ComplexSteps(args[k][0].real.copy(), args[k].imag.copy(), largest)
            re2, im2 = f.complex_parts(*steps)
            assert re2.dtype == im2.dtype == y.real.dtype and im2.flags.c_contiguous, name
            np.testing.assert_array_equal(np.broadcast_to(re2, y.shape), y.real, err_msg=name)
            np.testing.assert_array_equal(im2.copy(), y.imag, err_msg=name)
        big = np.full((2,) + flat[k].shape, 1e-3, dtype=flat[k].dtype)  # every element
        steps[k] = ComplexSteps(flat[k].copy(), big, 1e-3)
        start, arg = net._locate(name)
        after = net.layers[start:] if arg == "x" else net.layers[start + 1:]
        if any(layer.kind == "activation" for layer in after):   # beyond first order
            assert f.complex_parts(*steps) is None, name
        else:                                   # convolutions alone: linear, split
            assert f.complex_parts(*steps) is not None, name
    assert f.complex_parts.takes_complex_steps
    moved = list(flat)
    moved[0] = _complex_step_points(flat[0], rng)
    moved[0][1] += 1e-3                    # real parts that differ: no split
    assert f.complex_parts(*moved) is None
    assert f.complex_parts(*flat) is None  # no batch of points at all
    lossy = Sequential(layers, (2, 2, 8, 8), loss="weighted_sum").as_function().f
    assert lossy.complex_parts(*args) is None    # per-sample losses are not split


def test_differencing_through_the_parts_equals_through_the_complex_outputs():
    """The differentiator reads the parts when ``f`` offers them, the complex batch
    otherwise: the same gradient, error bars and evaluation count to the bit."""
    from gradcheck import numerical_vjp

    net = Sequential([Conv(4, 3, padding=1), Activation("tanh")], (2, 3, 7, 7))
    rng = np.random.default_rng(5)
    flat = [rng.standard_normal(net.input_shape),
            *net.flatten_params(net.init_params(rng=rng))]
    f = net.as_function().f
    R = rng.standard_normal(net.output_shape)
    for k, name in enumerate(net.names):
        st = net.structure(name)

        def split(a, k=k):
            return f(*flat[:k], a, *flat[k + 1:])

        split_used = []

        def parts(a, k=k):
            got = f.complex_parts(*flat[:k], a, *flat[k + 1:])
            split_used.append(got is not None)
            return got

        split.complex_parts = parts

        def stepped(a, k=k):
            return f(*flat[:k], a, *flat[k + 1:])

        steps_used = []

        def step_parts(a, k=k):
            steps_used.append(isinstance(a, ComplexSteps))
            return f.complex_parts(*flat[:k], a, *flat[k + 1:])

        step_parts.takes_complex_steps = True
        stepped.complex_parts = step_parts
        calls = []

        def whole(a, k=k):
            calls.append(np.iscomplexobj(a) and np.ndim(a) == flat[k].ndim + 1)
            return f(*flat[:k], a, *flat[k + 1:])

        for smooth in (True, False):
            runs = [numerical_vjp(g, flat[k], R, colors=st.colors, owners=st.owners,
                                  method="complex", vectorized=True, smooth=smooth)
                    for g in (split, whole, stepped)]
            for field in ("grad", "error", "nfev"):
                for run in runs[1:]:
                    np.testing.assert_array_equal(getattr(runs[0], field),
                                                  getattr(run, field), err_msg=name)
        assert split_used and all(split_used), name   # the first route took the parts
        assert steps_used and all(steps_used), name   # the third: the points as parts
        assert any(calls), name       # the second route did evaluate complex batches


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", [
    dict(padding=1), dict(stride=2, dilation=2, padding=2, convention="convolution")])
@pytest.mark.parametrize("order", ["channel runs", "interleaved", "some at rest", "mixed"])
def test_imaginary_inputs_one_channel_at_a_time_equal_one_convolution(order, options, dtype):
    """The split route convolves each run of points that move one input channel with
    that channel alone: the same numbers as one convolution of every channel."""
    from gradcheck.ops._batched import _input_imag
    from gradcheck.ops.conv import conv_forward

    rng = np.random.default_rng(7)
    B, N, C = 6, 2, 3
    w = rng.standard_normal((4, C, 3, 3)).astype(dtype)
    channels = {"channel runs": [0, 0, 1, 1, 2, 2], "interleaved": [0, 1, 2, 0, 1, 2],
                "some at rest": [-1, 0, 0, 2, -1, -1], "mixed": [0, 0, 1, 1, 2, 2]}[order]
    im = np.zeros((B, N, C, 9, 9), dtype)
    for b, c in enumerate(channels):
        if c >= 0:   # a color's members: every third position of the channel
            im[b, :, c, b % 3::3, ::3] = rng.standard_normal((N, 3, 3)) * 2.0**-30
    if order == "mixed":
        im[3, :, 0, 0, 0] = 1e-9                   # a point moving two channels
    want = conv_forward(im.reshape((B * N, C, 9, 9)), w, **options)
    got = _input_imag(im, w, options, "test_imag", (N,) + want.shape[1:])
    assert got.shape == (B, N) + want.shape[1:] and got.dtype == want.dtype
    np.testing.assert_array_equal(got.reshape(want.shape), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", [
    dict(padding=1), dict(stride=2, dilation=2, padding=2, convention="convolution")])
def test_imaginary_kernels_of_one_entry_each_equal_their_convolutions(options, dtype):
    """A batch of kernels each moving one entry (of some filters) is taken as products
    of that entry with the inputs its tap reads: the numbers of a convolution each (a
    product whose value is zero as +0.0, as the convolution's sum of zeros is)."""
    from gradcheck.ops._batched import _kernel_imag
    from gradcheck.ops.conv import conv_forward

    options = {"stride": 1, "dilation": 1, "groups": 1, "convention": "correlation",
               **options}
    rng = np.random.default_rng(8)
    re = rng.standard_normal((2, 3, 9, 9)).astype(dtype)
    re[0, 1, 2, :] = 0.0                      # inputs at zero: products of zero
    B, c_out = 5, 4
    im = np.zeros((B, c_out, 3, 3, 3), dtype)
    entries = [(0, 0, 0), (1, 2, 1), (2, 1, 2), None, (1, 0, 0)]
    for b, e in enumerate(entries):
        if e is not None:
            filters = [0, 2, 3] if b == 1 else range(c_out)
            for o in filters:
                im[(b, o) + e] = rng.standard_normal() * 2.0**-30 * (-1) ** o
    got = _kernel_imag(re, im, options, "test_kernel")
    assert got is not None and got.shape[:3] == (B, 2, c_out) and got.dtype == dtype
    for b in range(B):
        want = conv_forward(re, im[b], **options)
        np.testing.assert_array_equal(got[b], want)
        assert not np.signbit(got[b][got[b] == 0]).any()     # zeros are +0.0
    im[2, 0, 0, 0, 0] = 1e-9                  # a point moving two entries: not this route
    assert _kernel_imag(re, im, options, "test_kernel") is None
