"""Naming the cause of a mismatch: generic suspects on arrays built by hand, no diagnosis
without evidence, suspects that coincide with the right gradient discarded, and the
recognition of a user's function as a convolution or an activation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcheck import check_layer, check_network, check_vjp, conv_forward
from gradcheck.checker import Suspect, TensorRole
from gradcheck.checker._diagnose import diagnose
from gradcheck.checker._identify import identify_activation, identify_conv
from gradcheck.checker._mistakes import layer_mistakes
from gradcheck.ops.activations import get_activation
from gradcheck.ops.layers import Activation, Conv, Dense, Flatten
from gradcheck.ops.network import Sequential

from _mutants import conv_reference_backward

INPUT = TensorRole.for_array("input", 4)     # (N, C, H, W)
WEIGHT = TensorRole.for_array("weight", 4)   # (C_out, C_in, kh, kw)


def _numeric(shape=(2, 3, 5, 5), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _tol(n):
    return np.full(n.shape, 1e-10)


# --------------------------------------------------------------------------- generic


def test_sign_and_scale():
    n = _numeric()
    assert diagnose(-n, n, _tol(n), role=INPUT).cause == "sign_flipped"
    half = diagnose(0.5 * n, n, _tol(n), role=INPUT)
    assert half.cause == "scaled" and half.evidence["factor"] == pytest.approx(0.5)
    # small factors are not pinned on an axis that merely happens to have that size
    assert "1/2 times" in half.message and "size of axis" not in half.message
    third = diagnose(n / 3, n, _tol(n), role=INPUT)
    assert "1/3 times" in third.message and "size of axis" not in third.message
    big = _numeric((6, 2, 3, 3))
    sixth = diagnose(big / 6, big, _tol(big), role=INPUT)
    assert "1/6 (size of axis 0)" in sixth.message


def test_flip_transpose_and_shift():
    w = _numeric((4, 2, 3, 3))
    flipped = w[:, :, ::-1, ::-1]
    assert diagnose(flipped, w, _tol(w), role=WEIGHT).cause == "kernel_not_rotated"
    one_axis = diagnose(w[:, :, ::-1, :], w, _tol(w), role=WEIGHT)
    assert one_axis.cause == "kernel_not_rotated" and "axis 2 only" in one_axis.message
    transposed = np.swapaxes(w, 2, 3)
    assert diagnose(transposed, w, _tol(w), role=WEIGHT).cause == "transposed"
    x = _numeric()
    shifted = np.zeros_like(x)
    shifted[..., 1:] = x[..., :-1]                      # moved one position along axis 3
    d = diagnose(shifted, x, _tol(x), role=INPUT)
    assert d.cause == "shifted" and "+1 along axis 3" in d.message


def test_regions_and_single_element():
    x = _numeric()
    a = x.copy()
    a[1] = 0
    d = diagnose(a, x, _tol(x), role=INPUT)
    assert d.cause == "region" and d.evidence["region"].startswith("batch item 1")
    a = x.copy()
    a[:, 2] *= 1.1
    d = diagnose(a, x, _tol(x), role=INPUT)
    assert d.evidence["region"].startswith("channel 2") and not d.evidence["analytic_zero_there"]
    a = x.copy()
    a[..., -1, :] = 0
    d = diagnose(a, x, _tol(x), role=INPUT)
    assert d.evidence["region"].startswith("the last 1 position along spatial axis 2")
    a = x.copy()
    a[..., 0, :] = a[..., -1, :] = a[..., :, 0] = a[..., :, -1] = 0
    d = diagnose(a, x, _tol(x), role=INPUT)
    assert d.evidence["region"].startswith("the border")
    a = x.copy()
    a[1, 2, 3, 4] *= 1 + 1e-5
    d = diagnose(a, x, _tol(x), role=INPUT)
    assert d.cause == "single_element" and d.evidence["index"] == [1, 2, 3, 4]
    assert d.evidence["relative_error"] == pytest.approx(1e-5 / (1 + 1e-5), rel=1e-6)


def test_no_known_pattern_without_evidence():
    x = _numeric()
    rng = np.random.default_rng(1)
    for a in (x + 1e-3 * rng.standard_normal(x.shape),        # noise
              x * (1 + 0.1 * rng.standard_normal(x.shape)),   # multiplicative noise
              x[:, :, ::-1, :] * 1.5,                         # two bugs at once
              np.zeros_like(x) + 1.0):                        # something else entirely
        d = diagnose(a, x, _tol(x), role=INPUT)
        assert d.cause == "no_known_pattern", d
    # a claim is named only when it fits within the check's tolerance (x4 slack): a
    # flip that is off by more than that is not a flip
    w = _numeric((4, 2, 3, 3))
    almost = w[:, :, ::-1, ::-1] + 1e-8 * rng.standard_normal(w.shape)
    assert diagnose(almost, w, _tol(w), role=WEIGHT).cause == "no_known_pattern"
    assert diagnose(almost, w, np.full(w.shape, 1e-8), role=WEIGHT).cause == "kernel_not_rotated"


def test_excluded_elements_are_left_out():
    x = _numeric()
    a = 2 * x
    a[0, 0, 0, 0] = 123.0                     # a kink element: its value says nothing
    exclude = np.zeros(x.shape, bool)
    exclude[0, 0, 0, 0] = True
    assert diagnose(a, x, _tol(x), role=INPUT).cause == "no_known_pattern"
    assert diagnose(a, x, _tol(x), role=INPUT, exclude=exclude).cause == "scaled"


def test_diagnosis_is_json_ready():
    x = _numeric()
    d = diagnose(2 * x, x, _tol(x), role=INPUT)
    back = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert back["cause"] == "scaled" and back["evidence"]["factor"] == pytest.approx(2.0)


# --------------------------------------------------------------------------- suspects


def test_caller_suspects_are_tested_first():
    x = _numeric()
    wrong = x.copy()
    wrong[..., 1:] = 0.5 * x[..., 1:]
    s = Suspect("my_bug", "what my layer gets wrong", wrong.copy())
    assert diagnose(wrong, x, _tol(x), role=INPUT, suspects=[s]).cause == "my_bug"


def test_a_suspect_that_predicts_the_right_gradient_is_discarded():
    x = _numeric()
    coincides = Suspect("derivative_at_output", "would be the right gradient", x.copy())
    d = diagnose(-x, x, _tol(x), role=INPUT, suspects=[coincides])
    assert d.cause == "sign_flipped"
    noisy = x + 1e-3 * np.random.default_rng(2).standard_normal(x.shape)
    assert diagnose(noisy, x, _tol(x), role=INPUT, suspects=[coincides]).cause == \
        "no_known_pattern"
    # even when the analytic value sits just outside the tolerance: it fits N as well
    near = x.copy()
    near[0, 0, 0, 0] += 2e-10
    assert diagnose(near, x, _tol(x), role=INPUT, suspects=[coincides]).cause == \
        "single_element"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_derivative_at_output_coincides_for_relu_and_leaky_relu(name, dtype):
    """σ'(σ(z)) = σ'(z) when σ keeps the sign (alpha >= 0): that suspect must never be named."""
    layer = Activation(name, alpha=0.2) if name == "leaky_relu" else Activation(name)
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 4)).astype(dtype)
    g = np.random.default_rng(4).standard_normal(x.shape).astype(dtype)
    at_output = [m for m in layer_mistakes(layer) if m.cause == "derivative_at_output"][0]
    np.testing.assert_array_equal(at_output.backward(g, x)[0], layer.backward(g, x)[0])

    class Missing(Activation):          # the error passed back unchanged
        def backward(self, grad_y, x, *params):
            return (np.array(grad_y, copy=True),)

    class Noisy(Activation):
        def backward(self, grad_y, x, *params):
            right = Activation.backward(self, grad_y, x)[0]
            rng = np.random.default_rng(5)
            return (right + (1e-2 * rng.standard_normal(right.shape)).astype(right.dtype),)

    params = {"alpha": 0.2} if name == "leaky_relu" else {}
    missing = check_layer(Missing(name, **params), x)
    assert missing["x"].diagnosis.cause == "derivative_missing"
    noisy = check_layer(Noisy(name, **params), x)
    assert noisy["x"].diagnosis.cause == "no_known_pattern"
    # the same through check_vjp on a plain function (the activation is recognized)
    spec = get_activation(name, **params)
    report = check_vjp(spec.value, lambda g, x: (g,), (x,))
    assert report.arguments[0].diagnosis.cause == "derivative_missing"
    assert check_vjp(spec.value, lambda g, x: (g * spec.derivative(spec.value(x)),),
                     (x,)).passed


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_noise_in_a_conv_gradient_has_no_known_pattern(dtype):
    rng = np.random.default_rng(6)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((2, 2, 6, 6), (3, 2, 3, 3), (3,)))

    def noisy(g, x, w, b):
        gx, gw, gb = conv_reference_backward(g, x, w, padding=1)
        scale = np.abs(gx).max()
        return gx + (1e-3 * scale * np.random.default_rng(7).standard_normal(gx.shape)
                     ).astype(dtype), gw, gb

    report = check_vjp(lambda x, w, b: conv_forward(x, w, b, padding=1), noisy, (x, w, b),
                       argnames=("x", "w", "b"))
    assert [a.name for a in report.failures] == ["x"]
    assert report["x"].diagnosis.cause == "no_known_pattern"

    class NoisyConv(Conv):
        def backward(self, grad_y, x, *params):
            gx, gw, gb = Conv.backward(self, grad_y, x, *params)
            return gx, gw * (1 + (1e-3 * np.random.default_rng(8).standard_normal(gw.shape)
                                  ).astype(gw.dtype)), gb

    net = Sequential([NoisyConv(3, 3, padding=1), Activation("leaky_relu", alpha=0.2),
                      Flatten(), Dense(2)], (2, 2, 6, 6), loss="mse")
    report = check_network(net, dtype=dtype)
    assert [a.name for a in report.failures] == ["layer0.conv.w"]
    assert report["layer0.conv.w"].diagnosis.cause == "no_known_pattern"


# --------------------------------------------------------------------------- identify


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 2),
                                                            (3, 2, 2, 1), (1, 1, 2, 3)])
def test_identify_conv_recovers_the_geometry(stride, padding, dilation, groups):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3 * groups, 9, 9))
    w = rng.standard_normal((2 * groups, 3, 3, 3))
    b = rng.standard_normal(2 * groups)
    for convention in ("correlation", "convolution"):
        y = conv_forward(x, w, b, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, convention=convention)
        ident = identify_conv((x, w, b), y)
        assert ident is not None
        assert (ident.stride, ident.padding, ident.dilation, ident.groups) == \
            ((stride,) * 2, (padding,) * 2, (dilation,) * 2, groups)
        assert ident.convention == convention and ident.b_index == 2
        assert ident.activation is None


def test_identify_conv_with_an_activation_and_what_it_rejects():
    rng = np.random.default_rng(10)
    x, w, b = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3)), \
        rng.standard_normal(3)
    z = conv_forward(x, w, b, padding=1)
    assert identify_conv((x, w, b), np.tanh(z)) is None                 # not asked for
    ident = identify_conv((x, w, b), np.tanh(z), activations=True)
    assert ident.activation.name == "tanh" and ident.padding == (1, 1)
    leaky = get_activation("leaky_relu", alpha=0.3).value(z)
    assert identify_conv((x, w, b), leaky, activations=True).activation.params == \
        (("alpha", pytest.approx(0.3)),)
    # conv-like shapes, but not a convolution (nor an activation of one)
    assert identify_conv((x, w, b), conv_forward(x ** 2, w, b, padding=1),
                         activations=True) is None
    assert identify_conv((x, w, b), z + 1e-6 * z ** 2, activations=True) is None


def test_identify_activation():
    x = np.linspace(-4, 4, 33)
    assert identify_activation((x,), np.tanh(x)).name == "tanh"
    assert identify_activation((x,), get_activation("elu", alpha=0.5).value(x)).params == \
        (("alpha", pytest.approx(0.5)),)
    assert identify_activation((x,), np.sin(x)) is None
    assert identify_activation((x, x), np.tanh(x)) is None
    assert identify_activation((x,), x) is None          # the identity has no mistakes


def test_a_description_of_values_near_the_largest_float_warns_nothing():
    # |A|, |N| near 1e300: their squares overflow; the ratio and cosine are scale-free
    import warnings

    from gradcheck.checker._describe import describe
    from gradcheck.checker._diagnose import Evidence

    n = np.array([1e300, -2e300, 3e300, 0.5e300])
    a = n * np.array([1.0, 1.0, -1.0, 3.0])            # no cause fits this
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text, details = describe(Evidence(a, n, 1e285))
    # by hand: a·n = (1 + 4 - 9 + 0.75) e600, |a|² = (1 + 4 + 9 + 2.25) e600,
    # |n|² = (1 + 4 + 9 + 0.25) e600
    assert details["cosine"] == pytest.approx(-3.25 / np.sqrt(16.25 * 14.25), rel=1e-12)
    assert details["norm_ratio"] == pytest.approx(np.sqrt(16.25 / 14.25), rel=1e-12)
    assert "overall |A|/|N| = 1.068" in text


def test_a_described_mismatch_counts_as_the_table_does():
    # relu with three exact kinks (right there) and three smooth elements made wrong by
    # unrelated factors: the table says 3/8; the description counts the same, and says
    # the kinks were left out of it
    x = np.array([0.0, 1.0, -2.0, 0.0, 0.5, 0.0, 1.5, -0.3])

    def vjp(g, x):
        d = g * (x > 0) * 1.0
        d[1] *= 1.3
        d[4] *= -0.4
        d[6] *= 3.0
        return (d,)

    report = check_vjp(lambda x: np.maximum(x, 0.0), vjp, (x,), mode="full")
    arg = report["arg0"]
    assert (arg.n_failed, arg.n_checked, arg.n_nondifferentiable) == (3, 8, 3)
    assert "3/8 FAIL" in str(report)
    d = arg.diagnosis
    assert d.cause == "no_known_pattern"
    assert "The mismatch: 3 of 8 elements (3 at kinks, left out here)" in d.message
    assert f"cosine {arg.cosine_similarity:.4g}" in d.message     # the table's, too


def test_values_within_a_wide_tolerance_of_zero_are_not_called_zero():
    # bfloat16: a tolerance of 0.4 reaches values of order 1; an analytic 0.3 against a
    # numerical 0.9 is a mismatch of two nonzero values, an analytic 0 against 0.9 is a
    # gradient that is zero where it should not be
    from types import SimpleNamespace

    from gradcheck.checker._describe import _where

    a = np.array([0.3, 0.0, 1.2, 2.0])
    n = np.array([0.9, 0.9, 1.25, 2.05])
    ev = SimpleNamespace(a=a, n=n, tol=np.full(4, 0.4), known=None)
    failed = np.array([True, True, False, False])
    parts = _where(ev, failed)
    assert "the analytic gradient is zero at 1 of them" in parts, parts
    assert not any("numerical gradient is zero" in p for p in parts), parts


def test_one_failing_element_does_not_say_the_others_agree_when_one_is_as_far_off():
    # float16 tanh(x @ w) with tanh' taken at the output: every element of x's gradient is
    # wrong, only (2, 2) beyond its tolerance; (3, 2) is 18% off the float64 truth within
    # a tolerance of 56% of its value. "every other element agrees" was said.
    import re

    from gradcheck import check_vjp

    def f(x, w):
        return np.tanh(x @ w)

    def wrong(g, x, w):
        gz = g * (1 - np.tanh(np.tanh(x @ w)) ** 2)
        return gz @ w.T, x.T @ gz

    r = np.random.default_rng(0)
    x = r.standard_normal((4, 5)).astype(np.float16)
    w = (r.standard_normal((5, 3)) * 0.5).astype(np.float16)
    report = check_vjp(f, wrong, (x, w), argnames=("x", "w"))
    d = report.arguments[0].diagnosis
    assert d.cause == "single_element" and "every other element agrees" not in d.message
    named = re.search(r"though \((\d+), (\d+)\) is off", d.message)
    assert named, d.message
    # the element named is wrong, by the float64 gradient derived by hand
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    z = x64 @ w64
    from gradcheck.checker._scalarize import seeded_cotangent

    g = seeded_cotangent(0, (4, 3))              # the check's cotangent (seed 0)
    true = (g * (1 - np.tanh(z) ** 2)) @ w64.T
    got = np.asarray(report.arguments[0].analytic, np.float64)
    i, j = int(named[1]), int(named[2])
    assert abs(got[i, j] - true[i, j]) > 0.1 * abs(true[i, j])


def test_the_sign_of_the_failing_elements_is_said_with_the_arguments_own_name():
    # the mismatch of a bias b sits where b > 0: "all where x > 0" read as the input x
    from types import SimpleNamespace

    from gradcheck.checker._describe import _where
    from gradcheck.checker._fit import Known

    b = np.array([0.5, -0.2, 0.7, -0.1])
    ev = SimpleNamespace(a=np.array([2.0, 1.0, 3.0, 1.0]), n=np.array([1.0, 1.0, 1.5, 1.0]),
                         tol=np.full(4, 1e-6), known=Known(x=b, name="b"))
    parts = _where(ev, np.array([True, False, True, False]))
    assert "all where b > 0" in parts, parts


@pytest.mark.parametrize("seed", [3, 4, 5, 11, 13, 29])
def test_a_float16_derivative_at_the_wrong_point_is_named_no_missing_term(seed):
    # float16 tanh(x @ w) with tanh' taken at the output: the slip is known by
    # construction, and it is no missing term. With float16's wide tolerances a fit of
    # many parameters (a + b·x per column, u vᵀ, one value per column) brought the
    # mismatch within 4 tolerances: missing_term_affine (seeds 3, 11), _constant (5),
    # _rank_one (4, 13, 29) were named.
    from gradcheck import check_vjp
    from gradcheck.checker._scalarize import seeded_cotangent

    def f(x, w):
        return np.tanh(x @ w)

    def wrong(g, x, w):
        gz = g * (1 - np.tanh(np.tanh(x @ w)) ** 2)
        return gz @ w.T, x.T @ gz

    r = np.random.default_rng(seed)
    x = r.standard_normal((4, 5)).astype(np.float16)
    w = (r.standard_normal((5, 3)) * 0.5).astype(np.float16)
    report = check_vjp(f, wrong, (x, w), argnames=("x", "w"))
    assert not report.passed
    for arg in report.arguments:
        if arg.diagnosis is not None:
            assert not arg.diagnosis.cause.startswith("missing_term"), str(report)
    # by hand in float64: x's difference (g Δtanh') wᵀ is no outer product -- its second
    # singular value is over 1% of its first (a missing outer product leaves 0)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    z = x64 @ w64
    g = seeded_cotangent(0, (4, 3))              # the check's cotangent (seed 0)
    s = np.linalg.svd((g * ((1 - np.tanh(np.tanh(z)) ** 2) - (1 - np.tanh(z) ** 2))) @ w64.T,
                      compute_uv=False)
    assert s[1] > 0.01 * s[0], s
