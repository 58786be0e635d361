"""The fast convolution (gradcheck.conv_forward / conv_backward) held against routes that
share no code with it: the seed's formulas per channel pair with scipy.signal, the seed's
sparse shared-weight perceptron, values derived by hand, and (optionally) PyTorch."""

from __future__ import annotations

import itertools
import math
import tracemalloc
import zlib

import numpy as np
import pytest

import gradcheck.ops.conv as conv_module
from gradcheck import ConfigurationError, GradcheckError, conv_backward, conv_forward
from gradcheck.ops import reference as ref

from _torch_threads import torch_one_thread  # noqa: F401  (for the torch comparison)

METHODS = ("rot180", "col2im")
CONVENTIONS = ("correlation", "convolution")


# --------------------------------------------------------------------------- helpers


def assert_close(actual, expected, *, rtol=1e-12, what=""):
    """Max abs error <= rtol * (largest |expected|); shapes must match exactly."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), np.finfo(np.float64).tiny)
    err = float(np.max(np.abs(actual - expected), initial=0.0))
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:g} * {scale:.3e}"


def rot180(w):
    """Reverse the spatial axes of a kernel array (axes 2 onward)."""
    return np.flip(w, axis=tuple(range(2, np.ndim(w))))


def _grid():
    """1-3 spatial dims x stride 1-3 x padding 0-2 and the legal words x dilation 1-2 x
    groups 1-3."""
    for nd, stride, padding, dilation, groups in itertools.product(
        (1, 2, 3), (1, 2, 3), (0, 1, 2, "valid", "same", "full"), (1, 2), (1, 2, 3)
    ):
        if padding == "same" and stride != 1:
            continue  # illegal; covered by the bad-call table
        yield nd, stride, padding, dilation, groups


GRID = list(_grid())


def _grid_id(case):
    nd, s, p, d, g = case
    return f"{nd}d-s{s}-p{p}-d{d}-g{g}"


def make_case(nd, stride, padding, dilation, groups, *, dtype=np.float64, seed_extra=""):
    """Small random arrays for one grid point; shapes drawn from a seed fixed by the point.

    Kernel sizes 1-3 per dim; input sizes chosen so that the dilated kernel fits the padded
    input, from the tightest legal size up to a few more (3-D kept tiny).
    """
    rng = np.random.default_rng(zlib.crc32(repr((nd, stride, padding, dilation, groups,
                                                 seed_extra)).encode()))
    kernel = tuple(int(k) for k in rng.integers(1, 4, nd))
    pad = padding if isinstance(padding, int) else 0
    if padding in ("same", "full"):
        pad = None  # any input size is legal
    spread = 3 if nd == 3 else 5
    shape = []
    for k in kernel:
        reach = dilation * (k - 1) + 1
        low = 1 if pad is None else max(1, reach - 2 * pad)
        shape.append(int(low + rng.integers(0, spread)))
    c_in = groups * int(rng.integers(1, 3))
    c_out = groups * int(rng.integers(1, 3))
    batch = 2
    x = rng.standard_normal((batch, c_in, *shape)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // groups, *kernel)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, b, kw, rng


# --------------------------------------------------------------------------- the grid


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("case", GRID, ids=_grid_id)
def test_fast_path_matches_both_references(case, convention):
    x, w, b, kw, rng = make_case(*case)
    kw["convention"] = convention
    y = conv_forward(x, w, b, **kw)
    y_signal = ref.conv_forward_signal(x, w, b, **kw)
    y_matrix = ref.conv_forward_matrix(x, w, b, **kw)
    assert_close(y, y_signal, what="forward vs scipy.signal")
    assert_close(y, y_matrix, what="forward vs sparse matrix")

    grad_y = rng.standard_normal(y.shape)
    expect_signal = ref.conv_backward_signal(grad_y, x, w, **kw)
    expect_matrix = ref.conv_backward_matrix(grad_y, x, w, **kw)
    for method in METHODS:
        got = conv_backward(grad_y, x, w, method=method, **kw)
        for name, g, e_sig, e_mat in zip(("grad_x", "grad_w", "grad_b"), got,
                                         expect_signal, expect_matrix):
            assert_close(g, e_sig, what=f"{method} {name} vs scipy.signal")
            assert_close(g, e_mat, what=f"{method} {name} vs sparse matrix")


@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=(1, 2), padding=((0, 2), (1, 0)), dilation=(2, 1), groups=2),
        dict(stride=(3, 1), padding=(2, 0), dilation=(1, 2), groups=1),
        dict(stride=(2, 3, 1), padding=((1, 0), (0, 1), (2, 2)), dilation=(1, 2, 1), groups=1),
        dict(stride=2, padding=((0, 0),), dilation=2, groups=3),
    ],
    ids=["2d-pairs", "2d-tuples", "3d-mixed", "1d-pair"],
)
def test_per_dimension_arguments_match_references(kw):
    nd = len(kw["padding"]) if isinstance(kw["padding"], tuple) else 2
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 2 * kw["groups"], *([6] * nd)))
    w = rng.standard_normal((kw["groups"], 2, *([2] * nd)))
    y = conv_forward(x, w, **kw)
    assert_close(y, ref.conv_forward_signal(x, w, **kw), what="forward")
    grad_y = rng.standard_normal(y.shape)
    expect = ref.conv_backward_matrix(grad_y, x, w, **kw)
    for method in METHODS:
        for g, e in zip(conv_backward(grad_y, x, w, method=method, **kw), expect):
            assert_close(g, e, what=method)


# torch warns that 'same' with an even kernel copies the input; that is its business.
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("case", GRID, ids=_grid_id)
def test_fast_path_matches_torch(case):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    nd, stride, padding, dilation, groups = case
    x, w, b, kw, rng = make_case(*case, seed_extra="torch")
    # torch has no "full" padding word: it is d*(k-1) zeros on each side.
    t_padding = tuple(dilation * (k - 1) for k in w.shape[2:]) if padding == "full" else padding
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = getattr(functional, f"conv{nd}d")(xt, wt, bt, stride=stride, padding=t_padding,
                                           dilation=dilation, groups=groups)
    grad_y = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(grad_y))
    assert_close(conv_forward(x, w, b, **kw), yt.detach().numpy(), what="forward vs torch")
    for method in METHODS:
        got = conv_backward(grad_y, x, w, method=method, **kw)
        for name, g, t in zip(("grad_x", "grad_w", "grad_b"), got, (xt, wt, bt)):
            assert_close(g, t.grad.numpy(), what=f"{method} {name} vs torch autograd")


EDGE_CASES = {
    # name: (x shape, w shape, keyword arguments)
    "1x1 kernel, no copy needed": ((2, 4, 5, 6), (6, 2, 1, 1), dict(groups=2)),
    "1x1 kernel with padding": ((2, 3, 4, 4), (2, 3, 1, 1), dict(padding=(1, 2))),
    "1x1x1 kernel, stride 2": ((1, 2, 5, 4, 3), (3, 2, 1, 1, 1), dict(stride=2)),
    "kernel as large as the input": ((3, 2, 4, 5), (2, 2, 4, 5), {}),
    "stride larger than the input": ((2, 1, 5), (1, 1, 2), dict(stride=7, padding=1)),
    "only padding is read": ((1, 1, 1), (1, 1, 3), dict(padding=2, stride=4)),
    "same, even kernel, 3-D": ((1, 2, 4, 3, 5), (2, 1, 2, 3, 4), dict(padding="same", groups=2)),
    "depthwise": ((2, 3, 6), (6, 1, 3), dict(groups=3, dilation=2, padding="full")),
    "batch of one, one channel": ((1, 1, 7, 7), (1, 1, 3, 3), dict(stride=(2, 3))),
}


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_shapes(name, convention):
    x_shape, w_shape, kw = EDGE_CASES[name]
    rng = np.random.default_rng(len(name))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    kw = dict(kw, convention=convention)
    y = conv_forward(x, w, b, **kw)
    assert_close(y, ref.conv_forward_signal(x, w, b, **kw), what="forward")
    g = rng.standard_normal(y.shape)
    expect = ref.conv_backward_matrix(g, x, w, **kw)
    for method in ("auto",) + METHODS:
        for a, e in zip(conv_backward(g, x, w, method=method, **kw), expect):
            assert_close(a, e, what=method)


def test_non_contiguous_and_list_inputs():
    """Views with negative or large strides, Fortran order and nested lists all give the
    same numbers as contiguous copies."""
    rng = np.random.default_rng(11)
    base_x = rng.standard_normal((3, 4, 9, 8))
    base_w = rng.standard_normal((4, 6, 3, 3))
    x = base_x[::-1, :, ::2, 1:]                       # negative and step-2 strides
    w = np.asfortranarray(base_w[:, ::3])              # (4, 2, 3, 3), Fortran order
    kw = dict(stride=2, padding=1, groups=2)
    y = conv_forward(x, w, **kw)
    assert_close(y, ref.conv_forward_signal(np.ascontiguousarray(x), np.ascontiguousarray(w),
                                            **kw))
    g = rng.standard_normal(y.shape[::-1]).T           # a transposed view as the error
    expect = ref.conv_backward_signal(np.ascontiguousarray(g), np.ascontiguousarray(x),
                                      np.ascontiguousarray(w), **kw)
    for method in METHODS:
        for a, e in zip(conv_backward(g, x, w, method=method, **kw), expect):
            assert_close(a, e)
    assert_close(conv_forward(x.tolist(), w.tolist(), **kw), y)


# --------------------------------------------------------------------------- the seed's example


# The seed's picture: a 3x3 input, a 2x2 kernel w = [[1, 2], [3, 4]], a 2x2 output. The
# output errors are delta = [[1, 10], [100, 1000]], chosen so that each decimal digit of an
# input pixel's error is exactly one connection.
#
# Cross-correlation (default): y[i, j] = sum_ab w[a, b] x[i + a, j + b]. Pixel (p, q) feeds
# output (i, j) through the shared weight w[p - i, q - j], for i in {p-1, p} and j in
# {q-1, q} inside the 2x2 output:
#   (0,0): out(0,0)·w[0,0] = 1·1                                    =    1   (1 connection)
#   (0,1): out(0,0)·w[0,1] + out(0,1)·w[0,0] = 1·2 + 10·1           =   12   (2)
#   (0,2): out(0,1)·w[0,1] = 10·2                                   =   20   (1)
#   (1,0): out(0,0)·w[1,0] + out(1,0)·w[0,0] = 1·3 + 100·1          =  103   (2)
#   (1,1): out(0,0)·w[1,1] + out(0,1)·w[1,0] + out(1,0)·w[0,1]
#          + out(1,1)·w[0,0] = 4 + 30 + 200 + 1000                  = 1234   (4)
#   (1,2): out(0,1)·w[1,1] + out(1,1)·w[0,1] = 40 + 2000            = 2040   (2)
#   (2,0): out(1,0)·w[1,0] = 100·3                                  =  300   (1)
#   (2,1): out(1,0)·w[1,1] + out(1,1)·w[1,0] = 400 + 3000           = 3400   (2)
#   (2,2): out(1,1)·w[1,1] = 1000·4                                 = 4000   (1)
# True convolution (the seed): y[i, j] = sum_ab w[a, b] x[i + 1 - a, j + 1 - b], so pixel
# (p, q) feeds output (i, j) through w[i + 1 - p, j + 1 - q] -- the kernel rotated by 180°:
#   (0,0): 1·w[1,1] = 4                          (0,1): 1·w[1,0] + 10·w[1,1] = 3 + 40 = 43
#   (0,2): 10·w[1,0] = 30                        (1,0): 1·w[0,1] + 100·w[1,1] = 2 + 400 = 402
#   (1,1): 1·w[0,0] + 10·w[0,1] + 100·w[1,0] + 1000·w[1,1] = 1 + 20 + 300 + 4000 = 4321
#   (1,2): 10·w[0,0] + 1000·w[1,0] = 10 + 3000 = 3010     (2,0): 100·w[0,1] = 200
#   (2,1): 100·w[0,0] + 1000·w[0,1] = 100 + 2000 = 2100   (2,2): 1000·w[0,0] = 1000
# Weight gradient with x = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]: under correlation
# dC/dw[a, b] = sum_ij delta[i, j] x[i + a, j + b]:
#   w[0,0]: 1·0 + 10·1 + 100·3 + 1000·4 = 4310     w[0,1]: 1·1 + 10·2 + 100·4 + 1000·5 = 5421
#   w[1,0]: 1·3 + 10·4 + 100·6 + 1000·7 = 7643     w[1,1]: 1·4 + 10·5 + 100·7 + 1000·8 = 8754
# under convolution dC/dw[a, b] = sum_ij delta[i, j] x[i + 1 - a, j + 1 - b], the same four
# sums in rotated places: [[8754, 7643], [5421, 4310]]. The bias gradient is
# 1 + 10 + 100 + 1000 = 1111 either way.
# Forward with that x: correlation y[0,0] = 0·1 + 1·2 + 3·3 + 4·4 = 27, and each step right
# adds 1+2+3+4 = 10, each step down 3·10 = 30: [[27, 37], [57, 67]]. Convolution uses
# w rotated, [[4, 3], [2, 1]]: y[0,0] = 0·4 + 1·3 + 3·2 + 4·1 = 13: [[13, 23], [43, 53]].
SEED_X = np.arange(9.0).reshape(1, 1, 3, 3)
SEED_W = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
SEED_DELTA = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
SEED_HAND = {
    "correlation": dict(
        y=[[27, 37], [57, 67]],
        grad_x=[[1, 12, 20], [103, 1234, 2040], [300, 3400, 4000]],
        grad_w=[[4310, 5421], [7643, 8754]],
    ),
    "convolution": dict(
        y=[[13, 23], [43, 53]],
        grad_x=[[4, 43, 30], [402, 4321, 3010], [200, 2100, 1000]],
        grad_w=[[8754, 7643], [5421, 4310]],
    ),
}
SEED_CONNECTIONS = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]  # corners one, edges two, centre four


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_seed_example_by_hand(convention, method):
    hand = SEED_HAND[convention]
    y = conv_forward(SEED_X, SEED_W, convention=convention)
    np.testing.assert_array_equal(y[0, 0], hand["y"])
    gx, gw, gb = conv_backward(SEED_DELTA, SEED_X, SEED_W, convention=convention,
                               method=method)
    np.testing.assert_array_equal(gx[0, 0], hand["grad_x"])
    np.testing.assert_array_equal(gw[0, 0], hand["grad_w"])
    np.testing.assert_array_equal(gb, [1111.0])


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_seed_example_each_delta_is_the_sum_over_its_connections(convention):
    """The perceptron view spells each pixel's error out; the fast path must equal it."""
    gx = conv_backward(SEED_DELTA, SEED_X, SEED_W, convention=convention)[0][0, 0]
    pixels = ref.perceptron_deltas(SEED_DELTA, SEED_W, SEED_X.shape, convention=convention)
    counts = np.array([len(p.connections) for p in pixels]).reshape(3, 3)
    np.testing.assert_array_equal(counts, SEED_CONNECTIONS)
    sums = np.array([sum(c.delta * c.weight_value for c in p.connections) for p in pixels])
    np.testing.assert_array_equal(gx.ravel(), sums)
    np.testing.assert_array_equal(gx, SEED_HAND[convention]["grad_x"])


# --------------------------------------------------------------------------- algebra


ADJOINT_CASES = [c for i, c in enumerate(GRID) if i % 7 == 0]


def _inner(a, b):
    return float(a.ravel() @ b.ravel())


def _abs_inner(a, b):
    return float(np.abs(a).ravel() @ np.abs(b).ravel())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ADJOINT_CASES, ids=_grid_id)
def test_adjoint_identities(case, method):
    """<conv(x; w), g> = <x, grad_x(g)> = <w, grad_w(g)> (the layer is bilinear)."""
    x, w, _, kw, rng = make_case(*case, seed_extra="adjoint")
    y = conv_forward(x, w, **kw)
    g = rng.standard_normal(y.shape)
    gx, gw, _ = conv_backward(g, x, w, method=method, bias=False, **kw)
    lhs = _inner(y, g)
    scale = _abs_inner(y, g) + _abs_inner(x, gx) + _abs_inner(w, gw)
    assert abs(lhs - _inner(x, gx)) <= 1e-13 * scale
    assert abs(lhs - _inner(w, gw)) <= 1e-13 * scale


CONVENTION_CASES = [c for i, c in enumerate(GRID) if i % 5 == 0]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CONVENTION_CASES, ids=_grid_id)
def test_convolution_is_correlation_with_rotated_kernel(case, method):
    """conv(x, w) == corr(x, rot180(w)); grad_x the same; grad_w comes back rotated."""
    x, w, b, kw, rng = make_case(*case, seed_extra="mapping")
    y_conv = conv_forward(x, w, b, convention="convolution", **kw)
    y_corr = conv_forward(x, rot180(w), b, **kw)
    np.testing.assert_array_equal(y_conv, y_corr)
    g = rng.standard_normal(y_conv.shape)
    gx_c, gw_c, gb_c = conv_backward(g, x, w, convention="convolution", method=method, **kw)
    gx_r, gw_r, gb_r = conv_backward(g, x, rot180(w), method=method, **kw)
    np.testing.assert_array_equal(gx_c, gx_r)
    np.testing.assert_array_equal(gw_c, rot180(gw_r))
    np.testing.assert_array_equal(gb_c, gb_r)
    # (That the two conventions really differ is pinned by the seed example's hand values.)


@pytest.mark.parametrize("case", GRID[::11], ids=_grid_id)
def test_bias_gradient_is_the_sum_of_the_error(case):
    x, w, b, kw, rng = make_case(*case, seed_extra="bias")
    g = rng.standard_normal(conv_forward(x, w, b, **kw).shape)
    _, _, gb = conv_backward(g, x, w, **kw)
    # Summed channel by channel with Python's math.fsum (exact), not numpy's reduction.
    expected = [math.fsum(g[:, o].ravel()) for o in range(g.shape[1])]
    assert_close(gb, expected, rtol=1e-13)
    # Perturbing b[o] by t moves every output of channel o by exactly t, so the forward
    # pass agrees: (conv(b + t e_o) - conv(b)) . g / t == sum of channel o's error.
    t = 0.5
    bump = np.zeros_like(b)
    bump[0] = t
    moved = (conv_forward(x, w, b + bump, **kw) - conv_forward(x, w, b, **kw)).ravel() @ g.ravel()
    assert abs(moved / t - gb[0]) <= 1e-12 * np.abs(g).sum()
    assert conv_backward(g, x, w, bias=False, **kw)[2] is None


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", GRID[::13], ids=_grid_id)
def test_float32_stays_float32(case, method):
    x, w, b, kw, rng = make_case(*case, dtype=np.float32, seed_extra="f32")
    y = conv_forward(x, w, b, **kw)
    assert y.dtype == np.float32
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = conv_backward(g, x, w, method=method, **kw)
    assert [a.dtype for a in got] == [np.float32] * 3
    assert [a.shape for a in got] == [x.shape, w.shape, b.shape]
    # Accurate to float32 rounding against the float64 reference.
    x64, w64, b64, g64 = (a.astype(np.float64) for a in (x, w, b, g))
    assert_close(y, ref.conv_forward_signal(x64, w64, b64, **kw), rtol=1e-5)
    for a, e in zip(got, ref.conv_backward_signal(g64, x64, w64, **kw)):
        assert_close(a, e, rtol=1e-5)


@pytest.mark.parametrize(
    ("in_dtype", "out_dtype"),
    [(np.float16, np.float32), (np.int64, np.float64), (np.bool_, np.float64),
     (np.complex64, np.complex64), (np.complex128, np.complex128)],
)
def test_dtype_promotion(in_dtype, out_dtype):
    x = np.ones((1, 2, 4, 4), dtype=in_dtype)
    w = np.ones((2, 2, 2, 2), dtype=in_dtype)
    y = conv_forward(x, w)
    assert y.dtype == out_dtype
    gots = conv_backward(np.ones(y.shape, dtype=in_dtype), x, w)
    assert [a.dtype for a in gots] == [out_dtype] * 3
    # All-ones: each output is the sum of 2 channels x 4 taps.
    np.testing.assert_array_equal(y, np.full((1, 2, 3, 3), 8.0))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", GRID[::17], ids=_grid_id)
def test_complex_input(case, method):
    """Complex arrays flow through unconjugated (the holomorphic derivative that
    complex-step differentiation needs): the layer is linear in each argument, so a complex
    call is the real call on the real part plus i times the real call on the imaginary
    part -- and it matches the sparse reference."""
    x, w, b, kw, rng = make_case(*case, seed_extra="complex")
    xi = rng.standard_normal(x.shape)
    gr = rng.standard_normal(conv_forward(x, w, **kw).shape)
    gi = rng.standard_normal(gr.shape)
    xc, gc = x + 1j * xi, gr + 1j * gi
    yc = conv_forward(xc, w, b, **kw)
    assert yc.dtype == np.complex128
    assert_close(yc, conv_forward(x, w, b, **kw) + 1j * conv_forward(xi, w, **kw))
    gx, gw, gb = conv_backward(gc, xc, w, method=method, **kw)
    assert (gx.dtype, gw.dtype, gb.dtype) == (np.complex128,) * 3
    gx_r, gw_r, gb_r = conv_backward(gr, x, w, method=method, **kw)
    gx_i = conv_backward(gi, x, w, method=method, **kw)[0]
    assert_close(gx, gx_r + 1j * gx_i, what="grad_x linear in delta")
    # grad_w is bilinear in (delta, x): (gr + i gi)(x + i xi) expands into four real calls.
    gw_ri = conv_backward(gr, xi, w, **kw)[1]
    gw_ir = conv_backward(gi, x, w, **kw)[1]
    gw_ii = conv_backward(gi, xi, w, **kw)[1]
    assert_close(gw, gw_r - gw_ii + 1j * (gw_ri + gw_ir), what="grad_w bilinear")
    for a, e in zip((gx, gw, gb), ref.conv_backward_matrix(gc, xc, w, **kw)):
        assert_close(a, e, what="vs sparse reference")


# --------------------------------------------------------------------------- chunking


def test_memory_bounded_chunking_gives_identical_results(monkeypatch):
    """With a tiny unfold budget the batch is processed item by item: same numbers, and
    the peak memory of a pass stays far below that of one big unfolded copy."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 4, 20, 20))
    w = rng.standard_normal((4, 2, 3, 3))
    kw = dict(stride=1, padding=1, groups=2)
    y = conv_forward(x, w, **kw)
    g = rng.standard_normal(y.shape)
    big = [conv_forward(x, w, **kw)] + [
        a for m in METHODS for a in conv_backward(g, x, w, method=m, **kw)
    ]

    def peak(fn):
        conv_module._workspace_local.__dict__.pop("pool", None)   # scratch kept from before
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    unfold_bytes = x.size * 9 * 8  # one unfolded copy of the whole batch
    monkeypatch.setattr(conv_module, "UNFOLD_BUDGET_BYTES", 10**9)
    peak_one_chunk = peak(lambda: conv_forward(x, w, **kw))
    monkeypatch.setattr(conv_module, "UNFOLD_BUDGET_BYTES", 1)
    peak_chunked = peak(lambda: conv_forward(x, w, **kw))
    small = [conv_forward(x, w, **kw)] + [
        a for m in METHODS for a in conv_backward(g, x, w, method=m, **kw)
    ]
    for a, e in zip(small, big):
        assert a.dtype == e.dtype
        assert_close(a, e, rtol=1e-14)
    assert peak_one_chunk >= unfold_bytes
    assert peak_chunked < peak_one_chunk - 0.8 * unfold_bytes


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((2, 3, 11, 9), (4, 3, 3, 2), dict(stride=2, padding=1, dilation=(2, 1))),
    ((1, 2, 13), (3, 2, 4), dict(stride=3, padding=2)),
    ((1, 2, 5, 6, 4), (4, 1, 2, 3, 2), dict(padding=1, groups=2)),
    ((2, 2, 7, 7), (2, 2, 1, 1), dict()),
], ids=["2-D strided dilated", "1-D", "3-D grouped", "1x1"])
@pytest.mark.parametrize("budget", [1, 3000])
def test_items_larger_than_the_budget_are_unfolded_in_bands_of_rows(x_shape, w_shape, kw,
                                                                   budget, monkeypatch):
    """One item's windows over budget: bands of one or a few output rows, same numbers."""
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    monkeypatch.setattr(conv_module, "UNFOLD_BUDGET_BYTES", budget)
    y = conv_forward(x, w, b, **kw)
    assert_close(y, ref.conv_forward_signal(x, w, b, **kw), what="forward")
    g = rng.standard_normal(y.shape)
    expect = ref.conv_backward_signal(g, x, w, **kw)
    for method in METHODS:
        for got, want in zip(conv_backward(g, x, w, method=method, **kw), expect):
            assert_close(got, want, what=method)


def test_results_never_share_memory_with_the_reused_scratch():
    """A later call must not change an earlier result (scratch arrays are reused)."""
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((1, 1, 1)), rng.standard_normal((3, 1, 2))
    y = conv_forward(x, w, padding="same")        # crop of the padded error is contiguous
    g = rng.standard_normal(y.shape)
    for method in METHODS:
        first = [a.copy() for a in conv_backward(g, x, w, padding="same", method=method)]
        kept = conv_backward(g, x, w, padding="same", method=method)
        conv_backward(rng.standard_normal(y.shape), x, w, padding="same", method=method)
        conv_forward(rng.standard_normal((1, 1, 1)), w, padding="same")
        for a, b in zip(kept, first):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- bad calls


X = np.ones((1, 1, 3, 3))
W = np.ones((1, 1, 2, 2))
GY = np.ones((1, 1, 2, 2))

BAD_CALLS = [
    ("channels not divisible by groups",
     lambda: conv_forward(np.ones((1, 4, 5, 5)), np.ones((3, 1, 2, 2)), groups=3),
     r"groups=3 must divide the input channels, but x has C_in=4; valid groups here: "
     r"\[1, 2, 4\]"),
    ("out channels not divisible by groups",
     lambda: conv_forward(np.ones((1, 4, 5, 5)), np.ones((3, 2, 2, 2)), groups=2),
     r"groups=2 must divide the output channels, but w has C_out=3; valid groups for "
     r"C_in=4, C_out=3: \[1\]"),
    ("groups zero", lambda: conv_forward(X, W, groups=0),
     r"groups must be a positive int; got 0"),
    ("groups bool", lambda: conv_forward(X, W, groups=True),
     r"groups must be a positive int; got True"),
    ("kernel larger than padded input",
     lambda: conv_forward(X, np.ones((1, 1, 4, 2))),
     r"kernel is larger than the padded input along spatial dim 0: dilated kernel size 4 "
     r"\(kernel 4, dilation 1\) > input 3 \+ padding 0\+0 = 3"),
    ("dilated kernel larger than padded input",
     lambda: conv_forward(X, W, dilation=(1, 3)),
     r"along spatial dim 1: dilated kernel size 4 \(kernel 2, dilation 3\) > input 3"),
    ("stride zero", lambda: conv_forward(X, W, stride=0),
     r"stride must be >= 1 in every spatial dim; got 0"),
    ("stride negative in one dim", lambda: conv_forward(X, W, stride=(1, -2)),
     r"stride must be >= 1 in every spatial dim; got \(1, -2\)"),
    ("stride float", lambda: conv_forward(X, W, stride=1.5),
     r"stride must be an int or a tuple of 2 ints \(one per spatial dim\); got 1\.5"),
    ("stride wrong length", lambda: conv_forward(X, W, stride=(1, 2, 3)),
     r"stride must be an int or a tuple of 2 ints \(one per spatial dim\); got \(1, 2, 3\)"),
    ("dilation zero", lambda: conv_forward(X, W, dilation=0),
     r"dilation must be >= 1 in every spatial dim; got 0"),
    ("dilation negative", lambda: conv_backward(GY, X, W, dilation=-1),
     r"dilation must be >= 1 in every spatial dim; got -1"),
    ("negative padding", lambda: conv_forward(X, W, padding=-1),
     r"padding must be >= 0 in every spatial dim; got -1"),
    ("negative padding pair", lambda: conv_forward(X, W, padding=((0, 1), (-1, 0))),
     r"padding given as pairs must be 2 \(low, high\) pairs of ints >= 0; "
     r"got \(\(0, 1\), \(-1, 0\)\)"),
    ("same with stride 2", lambda: conv_forward(X, W, padding="same", stride=2),
     r"padding='same' needs stride 1 in every spatial dim \(as in PyTorch\); "
     r"got stride \(2, 2\)"),
    ("bad padding word", lambda: conv_forward(X, W, padding="half"),
     r"padding must be an int, a tuple of ints, or one of \('valid', 'same', 'full'\); "
     r"got 'half'"),
    ("x with too few dims", lambda: conv_forward(np.ones((3, 3)), W),
     r"x must have shape \(N, C_in, \*spatial\) with 1 to 3 spatial dims; got shape \(3, 3\)"),
    ("x with too many dims", lambda: conv_forward(np.ones((1,) * 6), np.ones((1,) * 6)),
     r"x must have shape \(N, C_in, \*spatial\) with 1 to 3 spatial dims; "
     r"got shape \(1, 1, 1, 1, 1, 1\)"),
    ("w with wrong ndim", lambda: conv_forward(X, np.ones((1, 2, 2))),
     r"w must have shape \(C_out, C_in/groups, \*kernel\) with 2 kernel dims to match x of "
     r"shape \(1, 1, 3, 3\); got shape \(1, 2, 2\)"),
    ("w.shape[1] mismatch", lambda: conv_forward(np.ones((1, 2, 3, 3)), W),
     r"w.shape\[1\] must be C_in/groups = 2/1 = 2; got w of shape \(1, 1, 2, 2\)"),
    ("zero-size x", lambda: conv_forward(np.ones((0, 1, 3, 3)), W),
     r"x must have no zero-size dimension; got shape \(0, 1, 3, 3\)"),
    ("bias shape mismatch", lambda: conv_forward(X, np.ones((2, 1, 2, 2)), np.ones(3)),
     r"b must have shape \(C_out,\) = \(2,\); got shape \(3,\)"),
    ("grad_y shape mismatch", lambda: conv_backward(np.ones((1, 1, 3, 3)), X, W),
     r"grad_y must have the forward output's shape \(1, 1, 2, 2\) for x \(1, 1, 3, 3\), "
     r"w \(1, 1, 2, 2\), .*; got shape \(1, 1, 3, 3\)"),
    ("non-numeric x", lambda: conv_forward([[["a"]]], W),
     r"x must hold real or complex numbers; got an array of dtype <U1"),
    ("None as x", lambda: conv_forward(None, W),
     r"x must be an array of numbers; got None"),
    ("non-numeric grad_y", lambda: conv_backward(GY.astype(str), X, W),
     r"grad_y must hold real or complex numbers"),
    ("non-numeric bias", lambda: conv_forward(X, W, b="abc"),
     r"b must hold real or complex numbers; got an array of dtype <U3"),
    ("ragged x", lambda: conv_forward([[1.0, 2.0], [3.0]], W),
     r"x must be a rectangular array of numbers; list could not be converted"),
    ("bad convention", lambda: conv_forward(X, W, convention="conv"),
     r"convention must be one of \('correlation', 'convolution'\); got 'conv'"),
    ("bad convention in backward", lambda: conv_backward(GY, X, W, convention=None),
     r"convention must be one of \('correlation', 'convolution'\); got None"),
    ("bad method", lambda: conv_backward(GY, X, W, method="fft"),
     r"method must be one of \('auto', 'rot180', 'col2im'\); got 'fft'"),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in BAD_CALLS],
                         ids=[c[0] for c in BAD_CALLS])
def test_bad_calls_raise_clear_errors(call, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        call()
    assert isinstance(info.value, GradcheckError)
    assert isinstance(info.value, ValueError)
