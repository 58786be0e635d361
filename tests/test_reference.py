"""The reference convolutions (gradcheck.ops.reference) against each other, against the
definition evaluated by plain loops, against the exact Jacobian of the linear map, and
against hand-derived values for the seed's 3x3 / 2x2 example."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.sparse

from gradcheck import ConfigurationError
from gradcheck.ops import reference as ref

CONVENTIONS = ("correlation", "convolution")


def assert_close(actual, expected, *, rtol=1e-12, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), np.finfo(np.float64).tiny)
    err = float(np.max(np.abs(actual - expected), initial=0.0))
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:g} * {scale:.3e}"


def _cases():
    """Random small configurations: 1-3 dims, strides, paddings (ints, pairs, words),
    dilations and groups, each with arrays drawn from its own seed."""
    rng = np.random.default_rng(2024)
    cases = []
    for i, (nd, stride, padding, dilation, groups) in enumerate(itertools.product(
        (1, 2, 3), (1, 2, 3), (0, 2, "valid", "same", "full", "pairs"), (1, 2), (1, 3)
    )):
        if padding == "same" and stride != 1:
            continue
        kernel = tuple(int(k) for k in rng.integers(1, 4, nd))
        if padding == "pairs":
            padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (nd, 2)))
        size = [dilation * (k - 1) + 1 + int(rng.integers(0, 3)) for k in kernel]
        c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        x = rng.standard_normal((2, c_in, *size))
        w = rng.standard_normal((c_out, c_in // groups, *kernel))
        kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        cases.append(pytest.param(x, w, kw, id=f"{i}-{nd}d-s{stride}-p{padding}-d{dilation}"
                                  f"-g{groups}".replace(" ", "")))
    return cases


CASES = _cases()


def _loop_forward(x, w, *, stride, padding, dilation, groups, convention):
    """The definition, one multiply-add at a time (1-D and 2-D only; tiny shapes):
    correlation y[n,o,i] = sum_{c,a} w[o,c,a] x_p[n, g*C_in/g + c, s*i + d*a];
    convolution uses w[o, c, K-1-a] instead."""
    nd = x.ndim - 2
    pad = [(padding, padding)] * nd if isinstance(padding, int) else padding
    xp = np.pad(x, [(0, 0), (0, 0)] + list(pad))
    kernel = w.shape[2:]
    out = [(xp.shape[2 + k] - dilation * (kernel[k] - 1) - 1) // stride + 1 for k in range(nd)]
    y = np.zeros((x.shape[0], w.shape[0], *out))
    c_in_g, c_out_g = w.shape[1], w.shape[0] // groups
    for n, o in itertools.product(range(x.shape[0]), range(w.shape[0])):
        for pos in itertools.product(*[range(m) for m in out]):
            total = 0.0
            for c in range(c_in_g):
                for tap in itertools.product(*[range(k) for k in kernel]):
                    src = tuple(stride * i + dilation * a for i, a in zip(pos, tap))
                    wt = tuple(k - 1 - a for k, a in zip(kernel, tap)) \
                        if convention == "convolution" else tap
                    total += w[(o, c) + wt] * xp[(n, (o // c_out_g) * c_in_g + c) + src]
            y[(n, o) + pos] = total
    return y


# --------------------------------------------------------------------------- the two routes agree


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("x", "w", "kw"), CASES)
def test_signal_and_matrix_routes_agree(x, w, kw, convention):
    rng = np.random.default_rng(x.size)
    b = rng.standard_normal(w.shape[0])
    y_sig = ref.conv_forward_signal(x, w, b, convention=convention, **kw)
    y_mat = ref.conv_forward_matrix(x, w, b, convention=convention, **kw)
    assert_close(y_mat, y_sig, what="forward")
    g = rng.standard_normal(y_sig.shape)
    sig = ref.conv_backward_signal(g, x, w, convention=convention, **kw)
    mat = ref.conv_backward_matrix(g, x, w, convention=convention, **kw)
    for name, a, e in zip(("grad_x", "grad_w", "grad_b"), mat, sig):
        assert_close(a, e, what=name)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("x", "w", "kw"), [
    c for c in CASES if c.values[0].ndim <= 4 and not isinstance(c.values[2]["padding"], str)
][::3])
def test_references_match_the_definition_by_loops(x, w, kw, convention):
    y = _loop_forward(x, w, convention=convention, **kw)
    assert_close(ref.conv_forward_signal(x, w, convention=convention, **kw), y)
    assert_close(ref.conv_forward_matrix(x, w, convention=convention, **kw), y)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("x", "w", "kw"), CASES[::9])
def test_backward_is_the_transposed_jacobian(x, w, kw, convention):
    """The layer is linear in x and in w, so its exact Jacobians are forward passes on
    unit vectors; each backward must be the Jacobian transposed times delta."""
    x, w = x[:1], w                      # one batch item keeps the Jacobian small
    fwd = dict(convention=convention, **kw)
    y = ref.conv_forward_signal(x, w, **fwd)
    jac_x = np.stack([ref.conv_forward_signal(e.reshape(x.shape), w, **fwd).ravel()
                      for e in np.eye(x.size)], axis=1)
    jac_w = np.stack([ref.conv_forward_signal(x, e.reshape(w.shape), **fwd).ravel()
                      for e in np.eye(w.size)], axis=1)
    # The sparse picture is the Jacobian itself; each entry is one weight times one, exact.
    np.testing.assert_array_equal(ref.conv_matrix(x.shape, w, **fwd).toarray(), jac_x)
    g = np.random.default_rng(1).standard_normal(y.shape)
    for route in (ref.conv_backward_signal, ref.conv_backward_matrix):
        gx, gw, _ = route(g, x, w, **fwd)
        assert_close(gx.ravel(), jac_x.T @ g.ravel(), what=f"{route.__name__} grad_x")
        assert_close(gw.ravel(), jac_w.T @ g.ravel(), what=f"{route.__name__} grad_w")


# --------------------------------------------------------------------------- conv_matrix


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("x", "w", "kw"), CASES[::3])
def test_conv_matrix_times_x_is_the_signal_forward(x, w, kw, convention):
    big_w = ref.conv_matrix(x.shape, w, convention=convention, **kw)
    assert isinstance(big_w, scipy.sparse.csr_matrix)
    y = ref.conv_forward_signal(x, w, convention=convention, **kw)
    assert big_w.shape == (y.size, x.size)
    assert_close(big_w @ x.ravel(), y.ravel())
    # Every stored entry is one of the shared weights, and each weight is reused.
    assert set(np.unique(big_w.data)) <= set(w.ravel())
    conn = ref.connections(x.shape, w.shape, convention=convention, **kw)
    assert big_w.nnz == len(conn.output)
    # The "which weight" matrix has one 1 per connection.
    which = conn.weight_matrix()
    assert which.shape == (w.size, len(conn.output))
    np.testing.assert_array_equal(np.asarray(which.sum(axis=0)).ravel(), 1)


def test_conv_matrix_complex_weights():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 5)) + 1j * rng.standard_normal((1, 2, 5))
    w = rng.standard_normal((2, 2, 3)) + 1j * rng.standard_normal((2, 2, 3))
    big_w = ref.conv_matrix(x.shape, w, stride=2, padding=1)
    assert big_w.dtype == np.complex128
    y = ref.conv_forward_signal(x, w, stride=2, padding=1)
    assert_close(big_w @ x.ravel(), y.ravel())
    # No conjugation anywhere: complex = real part + i imaginary part, by linearity in x.
    assert_close(y, ref.conv_forward_signal(x.real, w, stride=2, padding=1)
                 + 1j * ref.conv_forward_signal(x.imag, w, stride=2, padding=1))


# --------------------------------------------------------------------------- the seed example


# Hand derivation (see tests/test_conv.py for the connection-by-connection sums): 3x3 input
# x = arange(9), kernel w = [[1, 2], [3, 4]], output errors delta = [[1, 10], [100, 1000]].
SEED_X = np.arange(9.0).reshape(1, 1, 3, 3)
SEED_W = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
SEED_DELTA = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
SEED_HAND = {
    # y[0,0] = 0*1 + 1*2 + 3*3 + 4*4 = 27; +10 per step right, +30 per step down.
    "correlation": dict(y=[[27, 37], [57, 67]],
                        grad_x=[[1, 12, 20], [103, 1234, 2040], [300, 3400, 4000]],
                        grad_w=[[4310, 5421], [7643, 8754]]),
    # kernel rotated: [[4, 3], [2, 1]]; y[0,0] = 0*4 + 1*3 + 3*2 + 4*1 = 13.
    "convolution": dict(y=[[13, 23], [43, 53]],
                        grad_x=[[4, 43, 30], [402, 4321, 3010], [200, 2100, 1000]],
                        grad_w=[[8754, 7643], [5421, 4310]]),
}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_seed_example_both_references_by_hand(convention):
    hand = SEED_HAND[convention]
    for fwd in (ref.conv_forward_signal, ref.conv_forward_matrix):
        np.testing.assert_array_equal(fwd(SEED_X, SEED_W, convention=convention)[0, 0],
                                      hand["y"])
    for bwd in (ref.conv_backward_signal, ref.conv_backward_matrix):
        gx, gw, gb = bwd(SEED_DELTA, SEED_X, SEED_W, convention=convention)
        np.testing.assert_array_equal(gx[0, 0], hand["grad_x"])
        np.testing.assert_array_equal(gw[0, 0], hand["grad_w"])
        np.testing.assert_array_equal(gb, [1111.0])


def test_seed_example_matrix_by_hand():
    # Output (i, j) reads x[i:i+2, j:j+2] with weights 1, 2, 3, 4 (row-major), so row
    # 2i+j of W has 1 at input 3i+j, 2 at 3i+j+1, 3 at 3(i+1)+j, 4 at 3(i+1)+j+1.
    expected = np.zeros((4, 9))
    for i, j in itertools.product(range(2), range(2)):
        for (a, b), value in zip(itertools.product(range(2), range(2)), (1, 2, 3, 4)):
            expected[2 * i + j, 3 * (i + a) + (j + b)] = value
    np.testing.assert_array_equal(ref.conv_matrix((1, 1, 3, 3), SEED_W).toarray(), expected)
    # Under true convolution each row holds the rotated kernel 4, 3, 2, 1.
    np.testing.assert_array_equal(
        ref.conv_matrix((1, 1, 3, 3), SEED_W, convention="convolution").toarray(),
        np.where(expected, 5 - expected, 0),
    )


# Which output node and which shared weight each pixel's connections use, under
# correlation: pixel (p, q) -> output (i, j) through w[p - i, q - j].
SEED_LINKS = {
    (0, 0): [((0, 0), (0, 0))],
    (0, 1): [((0, 0), (0, 1)), ((0, 1), (0, 0))],
    (0, 2): [((0, 1), (0, 1))],
    (1, 0): [((0, 0), (1, 0)), ((1, 0), (0, 0))],
    (1, 1): [((0, 0), (1, 1)), ((0, 1), (1, 0)), ((1, 0), (0, 1)), ((1, 1), (0, 0))],
    (1, 2): [((0, 1), (1, 1)), ((1, 1), (0, 1))],
    (2, 0): [((1, 0), (1, 0))],
    (2, 1): [((1, 0), (1, 1)), ((1, 1), (1, 0))],
    (2, 2): [((1, 1), (1, 1))],
}


def test_perceptron_deltas_seed_example():
    pixels = ref.perceptron_deltas(SEED_DELTA, SEED_W, SEED_X.shape)
    assert [p.pixel for p in pixels] == [(0, 0, p, q) for p in range(3) for q in range(3)]
    for p in pixels:
        links = [(c.output[2:], c.weight[2:]) for c in p.connections]
        assert links == SEED_LINKS[p.pixel[2:]]
        for c in p.connections:
            assert c.delta == SEED_DELTA[c.output]
            assert c.weight_value == SEED_W[(0, 0) + c.weight[2:]]
            assert c.product == c.delta * c.weight_value
    np.testing.assert_array_equal(np.array([p.delta for p in pixels]).reshape(3, 3),
                                  SEED_HAND["correlation"]["grad_x"])
    # JSON-ready for the CLI.
    doc = json.loads(json.dumps([p.to_dict() for p in pixels]))
    assert doc[4]["delta"] == 1234.0 and len(doc[4]["connections"]) == 4
    assert doc[4]["connections"][0] == {"output": [0, 0, 0, 0], "weight": [0, 0, 1, 1],
                                        "delta": 1.0, "weight_value": 4.0, "product": 4.0}


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("x", "w", "kw"), CASES[1::10])
def test_perceptron_deltas_sum_to_the_signal_grad_x(x, w, kw, convention):
    g = np.random.default_rng(9).standard_normal(
        ref.conv_forward_signal(x, w, convention=convention, **kw).shape)
    pixels = ref.perceptron_deltas(g, w, x.shape, convention=convention, **kw)
    gx = ref.conv_backward_signal(g, x, w, convention=convention, **kw)[0]
    assert_close(np.array([p.delta for p in pixels]).reshape(x.shape), gx)
    conn = ref.connections(x.shape, w.shape, convention=convention, **kw)
    counts = np.bincount(conn.input, minlength=x.size)
    np.testing.assert_array_equal([len(p.connections) for p in pixels], counts)


def test_perceptron_deltas_complex_is_json_ready():
    delta = np.array([[[1.0 + 2.0j, 3.0]]])
    pixels = ref.perceptron_deltas(delta, np.array([[[2.0, 1.0]]]), (1, 1, 3))
    # pixel 1 feeds output 0 through w[1] and output 1 through w[0]: (1+2i)*1 + 3*2.
    assert pixels[1].delta == 7.0 + 2.0j
    doc = json.loads(json.dumps(pixels[1].to_dict()))
    assert doc["delta"] == {"real": 7.0, "imag": 2.0}
    assert [c["product"] for c in doc["connections"]] == [{"real": 1.0, "imag": 2.0}, 6.0]


def test_perceptron_deltas_unreached_pixel():
    # Stride 3 with a 1-tap kernel over 7 inputs reads positions 0, 3, 6 only.
    pixels = ref.perceptron_deltas(np.array([[[1.0, 2.0, 3.0]]]), np.array([[[2.0]]]),
                                   (1, 1, 7), stride=3)
    assert [len(p.connections) for p in pixels] == [1, 0, 0, 1, 0, 0, 1]
    assert [p.delta for p in pixels] == [2.0, 0.0, 0.0, 4.0, 0.0, 0.0, 6.0]


def test_unreached_rows_get_zero_error_in_both_references():
    # Input 6, kernel 2, stride 3: windows cover positions 0-1 and 3-4; 2 and 5 get none.
    x = np.arange(6.0).reshape(1, 1, 6)
    w = np.array([[[1.0, 2.0]]])
    g = np.array([[[1.0, 1.0]]])
    for bwd in (ref.conv_backward_signal, ref.conv_backward_matrix):
        gx, gw, gb = bwd(g, x, w, stride=3)
        np.testing.assert_array_equal(gx[0, 0], [1, 2, 0, 1, 2, 0])
        np.testing.assert_array_equal(gw[0, 0], [0 + 3, 1 + 4])
        np.testing.assert_array_equal(gb, [2.0])


# --------------------------------------------------------------------------- dtypes and errors


def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    g = np.ones((1, 2, 3, 3), dtype=np.float32)
    assert ref.conv_forward_signal(x, w).dtype == np.float32
    assert ref.conv_forward_matrix(x, w).dtype == np.float32
    for bwd in (ref.conv_backward_signal, ref.conv_backward_matrix):
        assert [a.dtype for a in bwd(g, x, w)] == [np.float32] * 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ref.conv_forward_signal(np.ones((1, 1, 3)), np.ones((1, 1, 2)),
                                         convention="flip"),
         r"convention must be one of \('correlation', 'convolution'\); got 'flip'"),
        (lambda: ref.conv_matrix((1, 1, 3), np.ones((1, 1, 2)), convention=None),
         r"convention must be one of .*; got None"),
        (lambda: ref.conv_backward_signal(np.ones((1, 1, 3)), np.ones((1, 1, 3)),
                                          np.ones((1, 1, 2))),
         r"grad_y must have the forward output's shape \(1, 1, 2\); got shape \(1, 1, 3\)"),
        (lambda: ref.conv_backward_matrix(np.ones((1, 1, 3)), np.ones((1, 1, 3)),
                                          np.ones((1, 1, 2))),
         r"grad_y must have the forward output's shape \(1, 1, 2\); got shape \(1, 1, 3\)"),
        (lambda: ref.perceptron_deltas(np.ones((1, 1, 1)), np.ones((1, 1, 2)), (1, 1, 3)),
         r"delta must have the forward output's shape \(1, 1, 2\); got shape \(1, 1, 1\)"),
        (lambda: ref.conv_forward_signal(np.ones((1, 2, 3)), np.ones((1, 1, 2)), groups=2),
         r"groups=2 must divide the output channels"),
    ],
    ids=["convention", "convention-matrix", "grad_y-signal", "grad_y-matrix", "delta",
         "groups"],
)
def test_reference_bad_calls(call, message):
    with pytest.raises(ConfigurationError, match=message):
        call()
