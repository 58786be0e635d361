"""The checker's verdicts: hard correct cases pass with no options, kinks follow their rule,
reports locate the worst element, fast mode and its blind spot, bad options and failing
user code.

Expected values come from routes independent of the checker: closed-form derivatives,
the mutants of :mod:`tests._mutants`, and the library's own layers only where they are
the code under check (a correct layer must pass).
"""

from __future__ import annotations

import json

import time

import numpy as np
import pytest

import gradcheck
from gradcheck import (
    ConfigurationError,
    UserCodeError,
    assert_vjp_close,
    check_grad,
    check_layer,
    check_network,
    check_vjp,
    conv_backward,
    conv_forward,
    numerical_grad,
)
from gradcheck._errors import NondeterministicError
from gradcheck.checker import REPORT_FORMAT
from gradcheck.checker._sample import MIN_SAMPLE
from gradcheck.ops.activations import ACTIVATIONS
from gradcheck.ops.layers import Activation, AvgPool, Conv, Dense, Flatten, MaxPool
from gradcheck.ops.losses import LOSSES
from gradcheck.ops.network import Sequential

from _mutants import conv_reference_backward
from test_mutants import MutantConv, _median_index


def _seed_cotangent(seed, shape):
    """The default cotangent as the checker documents it: the seed's own salted stream."""
    return np.random.default_rng([seed, 0xC07A4E47]).standard_normal(shape)

DTYPES = (np.float64, np.float32)
dtype_ids = lambda d: np.dtype(d).name  # noqa: E731


def _relu_where(x):
    return np.where(x.real > 0, x, 0)


def _relu_vjp(at_zero):
    def f_vjp(g, x):
        d = (x > 0).astype(x.dtype)
        d[x == 0] = at_zero
        return (g * d,)
    return f_vjp


# --------------------------------------------------------------------------- hard cases


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "hard_tanh"])
def test_inputs_within_1e_8_of_a_kink_pass(name, dtype):
    rng = np.random.default_rng(3)
    kink = 1.0 if name == "hard_tanh" else 0.0
    x = kink + rng.choice([-1.0, 1.0], (2, 3, 5, 5)) * rng.uniform(0, 1e-8, (2, 3, 5, 5))
    layer = Activation(name, alpha=0.3) if name in ("leaky_relu", "elu") else Activation(name)
    report = check_layer(layer, x.astype(dtype))
    assert report.passed, str(report)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_conv_outputs_within_1e_8_of_relu_kinks_pass(dtype):
    """Kinks reached through a convolution: z = conv(x) + b sits within 1e-8 of zero."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 1, 5, 5))
    w = rng.standard_normal((3, 1, 3, 3))
    z = conv_forward(x, w)
    b = -z[0, :, 1, 1] + rng.uniform(-1e-8, 1e-8, 3)       # three channels at a kink at once
    net = Sequential([Conv(3, 3), Activation("relu")], (2, 1, 5, 5))
    params = [{"w": w.astype(dtype), "b": b.astype(dtype)}, {}]
    report = check_network(net, x.astype(dtype), params)
    assert report.passed, str(report)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("pool", [MaxPool(2), MaxPool(2, stride=1),
                                  MaxPool(3, stride=2, padding=1)], ids=repr)
def test_max_pool_windows_differing_by_1e_9_pass(pool, dtype, seed):
    """Blocks of equal values plus 1e-9 noise: near-ties in every window, overlapping or not."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((2, 2, 3, 3))
    x = np.repeat(np.repeat(base, 2, axis=2), 2, axis=3) + rng.uniform(-1e-9, 1e-9, (2, 2, 6, 6))
    report = check_layer(pool, x.astype(dtype), seed=seed)
    assert report.passed, str(report)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_max_pool_ties_through_a_plain_function_pass(dtype):
    """No dependency pattern: which outputs a kink element reaches is found by probing."""
    pool = MaxPool(2, stride=1)
    x = np.repeat(np.repeat(np.random.default_rng(5).standard_normal((1, 1, 3, 3)), 2, 2), 2, 3)
    report = check_vjp(pool.forward, lambda g, x: pool.backward(g, x), (x.astype(dtype),))
    assert report.passed, str(report)
    assert report.arguments[0].n_nondifferentiable > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "silu", "gelu", "elu",
                                  "softsign"])
def test_saturated_activations_pass(name, dtype):
    rng = np.random.default_rng(6)
    x = 30 * rng.choice([-1.0, 1.0], (2, 3, 4, 4)) + rng.standard_normal((2, 3, 4, 4))
    report = check_layer(Activation(name), x.astype(dtype))
    assert report.passed, str(report)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_tiny_shapes_pass(dtype):
    """The seed's example: a 3x3 input and a 2x2 kernel, as a layer and as a plain function."""
    assert check_layer(Conv(1, 2), input_shape=(1, 1, 3, 3), dtype=dtype).passed
    x = np.arange(9.0).reshape(1, 1, 3, 3).astype(dtype) / 9
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype)
    report = check_vjp(lambda x, w: conv_forward(x, w),
                       lambda g, x, w: conv_reference_backward(g, x, w, bias=False)[:2], (x, w))
    assert report.passed, str(report)
    assert report.arguments[0].n_checked == 9 and report.arguments[1].n_checked == 4


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("scale", [1e3, 1e6])
def test_large_magnitude_inputs_pass(scale, dtype):
    rng = np.random.default_rng(7)
    x = (scale * rng.standard_normal((2, 2, 6, 6))).astype(dtype)
    params = {"w": (scale * rng.standard_normal((3, 2, 3, 3))).astype(dtype),
              "b": (scale * rng.standard_normal(3)).astype(dtype)}
    for layer, p in ((Conv(3, 3, padding=1), params), (Conv(3, 3, padding=1), None),
                     (MaxPool(2), None), (AvgPool(3, stride=1, padding=1), None),
                     (Activation("tanh"), None), (Activation("relu"), None)):
        report = check_layer(layer, x, p)
        assert report.passed, str(report)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_realistic_conv_layers_pass(dtype):
    """Every element of realistic layers passes. mode="full" is named: under "auto" the
    first layer's x and w are checked in full only while 864 evaluations at the measured
    time of one call of f (the faster of the first two) fit the 60 s time budget, and on
    a busy machine those calls measured 80-90 ms (0.4 ms once warm), so auto sampled
    them: what was checked followed the machine's load. How auto mode chooses is tested
    on a virtual clock (test_timing.py)."""
    for layer, shape in ((Conv(16, 3, padding=1), (2, 16, 16, 16)),
                         (Conv(16, 5, stride=2, padding=2, groups=4), (2, 16, 20, 20)),
                         (Conv(8, 3, dilation=2, padding="same"), (2, 8, 32))):
        report = check_layer(layer, input_shape=shape, dtype=dtype, mode="full")
        assert report.passed, str(report)
        assert all(a.mode == "full" and a.n_checked == a.n_elements
                   for a in report.arguments)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_passes(name, dtype):
    assert check_layer(Activation(name), input_shape=(2, 3, 4, 4), dtype=dtype).passed


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_networks_with_every_layer_and_loss_pass(loss, dtype):
    net = Sequential([Conv(4, 3, padding=1), Activation("relu"), MaxPool(2),
                      Conv(4, 3, stride=2, padding=1, groups=2), Activation("tanh"),
                      AvgPool(2), Flatten(), Dense(5), Activation("sigmoid"), Dense(3)],
                     (2, 2, 8, 8), loss=loss)
    report = check_network(net, dtype=dtype)
    assert report.passed, str(report)
    assert len(report.arguments) == 9


# --------------------------------------------------------------------------- kinks


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("relu", [_relu_where, lambda x: np.maximum(x, 0)],
                         ids=["where", "maximum"])
@pytest.mark.parametrize("at_zero,passes", [(0.0, True), (0.5, True), (1.0, True),
                                            (2.0, False), (-0.5, False)])
def test_a_kink_value_passes_between_the_one_sided_limits_and_fails_outside(
        relu, at_zero, passes, dtype):
    """ReLU at exactly 0 has one-sided derivatives 0 and 1: 0, 1/2 and 1 are valid there."""
    x = np.array([-1.5, 0.0, 0.7, 2.0], dtype)
    report = check_vjp(relu, _relu_vjp(at_zero), (x,))
    a = report.arguments[0]
    assert report.passed is passes, str(report)
    if at_zero != 0.0:                       # a value the complex step's branch does not give
        assert a.n_nondifferentiable == 1
    if not passes:
        r1 = float(_seed_cotangent(0, 4).astype(dtype)[1])  # seed 0's R
        assert a.n_failed == 1 and a.worst_index == (1,)
        assert a.diagnosis.cause == "outside_kink_limits"
        assert sorted([a.diagnosis.evidence["left"], a.diagnosis.evidence["right"]]) == \
            pytest.approx(sorted([0.0, r1]), abs=1e-6)
        assert a.analytic_at_worst == pytest.approx(at_zero * r1, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_abs_at_zero(dtype):
    x = np.array([-1.0, 0.0, 3.0], dtype)
    assert check_vjp(np.abs, lambda g, x: (g * np.sign(x),), (x,)).passed
    wrong = check_vjp(np.abs, lambda g, x: (g * np.where(x == 0, 1.5, np.sign(x)),), (x,))
    assert not wrong.passed and wrong.arguments[0].worst_index == (1,)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_many_isolated_kinks_are_each_judged(dtype):
    """Kinks that share no output are held to their limits, with or without a pattern."""
    x = np.zeros((2, 3, 4, 4), dtype)
    x[0, 0] = 1.0
    layer_bad = type("Relu2AtZero", (Activation,), {
        "backward": lambda self, g, x: (g * np.where(x > 0, 1.0, np.where(x == 0, 2.0, 0.0))
                                        .astype(x.dtype),)})("relu")
    by_layer = check_layer(layer_bad, x)                         # pattern known
    by_function = check_vjp(_relu_where, _relu_vjp(2.0), (x,))    # outputs probed
    for report in (by_layer, by_function):
        a = report.arguments[0]
        assert not report.passed
        np.testing.assert_array_equal(a.failed_mask, x == 0)      # exactly the kinks fail
        # the complex step sees every kink at zero (its two points' real parts are moved to
        # either side of it); the worst 16 were differenced again with real steps, which
        # confirmed the mismatch, so the rest were not redone
        assert a.n_nondifferentiable == 80
        assert a.note == "16 of 80 mismatching element(s) of the complex step differenced " \
                         "again with real steps"
        assert a.diagnosis.cause == "outside_kink_limits"
    assert check_vjp(_relu_where, _relu_vjp(0.5), (x,)).passed


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_shared_kinks_are_not_judged_one_by_one(dtype):
    """An entry tied in two overlapping windows may get a value outside its own limits:
    it is judged with its tie group, along the group's sum, and the note says so (it
    said "reported, not judged", untrue of full mode, which judges the groups)."""
    rng = np.random.default_rng(0)
    x = np.repeat(np.repeat(rng.standard_normal((2, 2, 3, 3)), 2, 2), 2, 3) + \
        rng.uniform(-1e-9, 1e-9, (2, 2, 6, 6))
    report = check_layer(MaxPool(2, stride=1), x.astype(dtype))
    a = report["x"]
    assert report.passed, str(report)
    assert a.n_nondifferentiable > 0
    assert "which do not bound the valid values there: judged with their tie groups, " \
           "along each group's sum (which keeps the tie), not one by one" in a.note
    assert "reported, not judged" not in a.note
    assert a.to_dict()["note"] == a.note
    # the counterfactual: held to its own one-sided limits, the correct backward would fail
    n_shared = int(a.note.split(" element(s) sit at kinks shared")[0].rsplit(" ", 1)[-1])
    assert n_shared > 0


def test_the_kink_of_a_real_part_relu_is_reported():
    # regression: the complex step used to keep x == 0 on one branch of where(x.real > 0)
    # (both +ih and -3ih have real part 0) and never mark the element
    res = numerical_grad(lambda x: np.sum(_relu_where(x)), np.array([0.0, 1.0]))
    assert bool(res.nondifferentiable[0])
    report = check_vjp(_relu_where, _relu_vjp(0.0), (np.array([-1.5, 0.0, 0.7]),))
    assert report.arguments[0].n_nondifferentiable == 1


# --------------------------------------------------------------------------- report


def _planted(dtype, rel=1e-3):
    """sin(x) * w with one gradient entry of x off by ``rel`` at (1, 2)."""
    x = np.linspace(-2, 2, 12).reshape(3, 4).astype(dtype)
    w = np.linspace(0.5, 1.5, 12).reshape(3, 4).astype(dtype)

    def f(x, w):
        return np.sin(x) * w

    def f_vjp(g, x, w):
        gx = g * np.cos(x) * w
        gx[1, 2] *= 1 + rel
        return gx, g * np.sin(x)

    return f, f_vjp, (x, w)


@pytest.mark.parametrize("factor, passes", [(1.0, True), (0.5, False), (1.25, False)])
def test_a_step_straddling_a_nearby_kink_gets_a_second_look(factor, passes):
    # float32 hard_tanh 1.56e-4 below its upper kink: the first real differences straddle
    # the kink (0.80 where the slope is 1); smaller steps settle it, and a wrong
    # derivative still fails -- with the default method and with real differences alone
    # (which locate the kink from the straddling pass and step inside it)
    act = ACTIVATIONS["hard_tanh"]
    x = np.array([0.9998441], dtype=np.float32)
    for method in ("auto", "adaptive"):
        report = check_vjp(act.value, lambda g, x: (factor * g * act.derivative(x),), (x,),
                           cotangent=np.ones(1), method=method)
        assert report.passed is passes, str(report)
        assert report["arg0"].n_nondifferentiable == 0


def test_two_kinks_straddling_the_point_within_1e_12():
    # the first ReLU is active (kink 1.1e-12 below), the second not (2.3e-12 above): the
    # derivative at the point is the first weight, 0.640
    offsets = np.array([1.0718240603363204e-12, -2.3412151639616435e-12])
    weights = np.array([0.6404226504432821, -0.535669373161111])

    def f(b):
        return np.maximum(offsets + (b[0] - 0.25), 0.0)

    def f_vjp(g, b):
        return (np.array([np.sum(g * (offsets + (b[0] - 0.25) > 0))]),)

    assert check_vjp(f, f_vjp, (np.array([0.25]),), cotangent=weights).passed

    def f_vjp_wrong(g, b):     # twice the active slope: outside both one-sided limits
        return (2 * f_vjp(g, b)[0],)

    assert not check_vjp(f, f_vjp_wrong, (np.array([0.25]),), cotangent=weights).passed


def test_a_gradient_that_is_zero_by_invariance_passes():
    # one filter, flattened into the logits of a softmax: its bias moves every logit alike
    # and the loss not at all; both gradients of it are rounding (found by the thorough
    # property profile: -1.4e-17 analytic vs 9.3e-18 numeric failed)
    net = Sequential([Conv(1, 1, padding="same"), Flatten()], (1, 1, 1, 2),
                     loss="softmax_cross_entropy")
    x = np.array([[[[0.12573022, -0.13210486]]]])
    params = [{"w": np.array([[[[0.10296768]]]]), "b": np.array([0.1142761])}, {}]
    report = check_network(net, x, params, mode="full")
    assert report.passed, str(report)


def test_outputs_near_1e200_are_compared_and_a_wrong_factor_named():
    # f(x) ~ 1e200: the error bars squared it, and every element had no usable numerical
    # derivative (once that passed a wrong factor, 0.5 instead of 2/3); f's values are now
    # rescaled by a power of two, and the complex step's bar for the argument's rounding
    # is held to sqrt(eps) relative (it was eps |x| = 1e84 relative here)
    x = np.array([1e100, 2e100, -3e100])

    def f(x):
        return np.atleast_1d(np.mean((x - 1.0) ** 2))

    def f_vjp(ct, x):
        return (ct[0] * 0.5 * (x - 1.0),)

    report = check_vjp(f, f_vjp, (x,), mode="full")
    a = report["arg0"]
    assert not report.passed and a.n_failed == 3
    assert "constant factor" in a.diagnosis.message
    right = check_vjp(f, lambda ct, x: (ct[0] * 2 / 3 * (x - 1.0),), (x,), mode="full")
    assert right.passed, str(right)


@pytest.mark.parametrize("level", [1e-12, 1e-6, 1e-2])
def test_a_function_that_is_not_deterministic_is_refused(level):
    # noise in f makes every difference meaningless: without this refusal every element
    # looked like a kink and a 1% wrong gradient passed
    noise = np.random.default_rng(1)
    x = np.random.default_rng(0).standard_normal(20)

    def f(x):
        return np.tanh(x) + level * noise.standard_normal(x.shape)

    def f_vjp(ct, x):
        return (1.01 * ct / np.cosh(x) ** 2,)

    with pytest.raises(UserCodeError, match=r"^f is not deterministic: two calls with the "
                                            r"same arguments differ by up to .* at output "
                                            r"index \(\d+,\)"):
        check_vjp(f, f_vjp, (x,), mode="full")


def test_a_nondeterministic_function_is_told_apart_by_its_type():
    # callers that know what f is rename it from the exception's fields, not its text
    noise = np.random.default_rng(2)

    def f(x):
        return x + 1e-3 * noise.standard_normal(x.shape)

    with pytest.raises(NondeterministicError) as info:
        check_vjp(f, lambda ct, x: (ct,), (np.ones(4),))
    assert isinstance(info.value, UserCodeError) and info.value.subject == "f"
    assert str(info.value) == "f is not deterministic: " + info.value.detail
    net = Sequential([Dense(2)], (2, 3))
    net.layers[0].forward = lambda x, w, b: x @ w.T + b + 1e-3 * noise.standard_normal((2, 2))
    with pytest.raises(NondeterministicError) as info:
        check_network(net)
    assert info.value.subject == "the network's forward pass"
    assert str(info.value).startswith("the network's forward pass is not deterministic: two "
                                      "calls with the same arguments differ by up to ")


def test_rounding_level_differences_between_calls_are_tolerated():
    calls = []
    x = np.random.default_rng(0).standard_normal(20)

    x[0] = 1e-10

    def f(x):   # every other call off by rounding, as a reordered sum can be (an output
        calls.append(1)          # near zero by rounding of the typical output size)
        y = np.tanh(x)
        if len(calls) % 2:
            y = np.nextafter(y, np.inf)
            y[0] += 4 * np.finfo(float).eps
        return y

    report = check_vjp(f, lambda ct, x: (ct / np.cosh(x) ** 2,), (x,), mode="full")
    assert report.passed, str(report)


@pytest.mark.parametrize("factor, passes", [(1.0, True), (1.01, False)])
def test_float32_work_behind_a_float64_interface_is_judged(factor, passes):
    rng = np.random.default_rng(5)
    W, x = rng.standard_normal((5, 7)), rng.standard_normal(7)

    def f(x):
        return np.tanh(W.astype(np.float32) @ x.astype(np.float32)).astype(np.float64)

    def f_vjp(ct, x):       # the float64 closed form, scaled by the planted factor
        return (factor * W.T @ (ct / np.cosh(W @ x) ** 2),)

    report = check_vjp(f, f_vjp, (x,), mode="full")
    assert report.passed is passes
    assert report["arg0"].n_nondifferentiable == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_failing_report_points_at_the_worst_element_with_both_values(dtype):
    f, f_vjp, args = _planted(dtype, rel=0.05)
    report = check_vjp(f, f_vjp, args, argnames=("x", "w"), seed=3)
    x, w = (a.astype(np.float64) for a in args)
    R = _seed_cotangent(3, (3, 4)).astype(dtype).astype(np.float64)
    true = R * np.cos(x) * w                          # closed form, not the checker's
    a = report["x"]
    assert not report.passed and report["w"].passed
    assert a.worst_index == (1, 2) and a.n_failed == 1
    assert a.analytic_at_worst == pytest.approx(true[1, 2] * 1.05, rel=1e-5)
    assert a.numeric_at_worst == pytest.approx(true[1, 2], rel=1e-5)
    assert a.max_abs_error == pytest.approx(abs(0.05 * true[1, 2]), rel=1e-3)
    assert a.max_rel_error == pytest.approx(0.05 / 1.05, rel=1e-3)
    assert a.diagnosis.cause == "single_element" and a.diagnosis.evidence["index"] == [1, 2]
    text = str(report)
    assert text.startswith("gradcheck f: FAILED (auto mode, seed 3, ")
    assert (f"x: 1/12 FAIL; worst at index (1, 2): analytic {a.analytic_at_worst:.9g} vs "
            f"numeric {a.numeric_at_worst:.9g}") in text
    assert "likely cause: Only element (1, 2) is wrong" in text
    header = text.splitlines()[1].split()
    assert header[:4] == ["argument", "result", "max", "abs"]
    assert "MISMATCH" in text.splitlines()[3] and text.splitlines()[4].split()[1] == "ok"


def test_report_to_dict_is_strict_json_with_a_format():
    f, f_vjp, args = _planted(np.float64)
    # an empty argument is the one left skipped (a None gradient is checked as zeros)
    skipped = check_vjp(lambda x, w, e: f(x, w), lambda g, x, w, e: (*f_vjp(g, x, w), None),
                        (*args, np.zeros((0, 3))))
    for report in (check_vjp(f, f_vjp, args), skipped,
                   check_vjp(f, f_vjp, args, mode="fast")):
        d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
        assert d["format"] == REPORT_FORMAT == 1
        assert d["passed"] is False and isinstance(d["checks"], list)
        for c in d["checks"]:
            assert {"name", "passed", "max_abs_error", "max_rel_error", "worst_index",
                    "analytic_at_worst", "numeric_at_worst", "n_nondifferentiable",
                    "cosine_similarity", "norm_ratio", "nfev", "elapsed_s"} <= set(c)
    assert skipped.to_dict()["checks"][2]["mode"] == "skipped"
    assert skipped.to_dict()["checks"][2]["max_abs_error"] is None


def test_cosine_and_norm_ratio():
    x = np.linspace(-1, 1, 10)
    cases = {"right": (lambda g, x: (g * np.cos(x),), 1.0, 1.0),
             "sign": (lambda g, x: (-g * np.cos(x),), -1.0, 1.0),
             "doubled": (lambda g, x: (2 * g * np.cos(x),), 1.0, 2.0)}
    for name, (f_vjp, cosine, ratio) in cases.items():
        a = check_vjp(np.sin, f_vjp, (x,)).arguments[0]
        assert a.cosine_similarity == pytest.approx(cosine, abs=1e-12), name
        assert a.norm_ratio == pytest.approx(ratio, rel=1e-12), name
    a = check_vjp(np.sin, lambda g, x: (g * np.sin(x),), (x,)).arguments[0]
    assert -1 < a.cosine_similarity < 1


def _stable(report):
    d = report.to_dict()
    d.pop("elapsed_s")
    for c in d["checks"]:
        c.pop("elapsed_s")
    return d


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_verdict_is_deterministic_for_a_seed(mode):
    f, f_vjp, args = _planted(np.float32, rel=0.05)
    first, second = (check_vjp(f, f_vjp, args, seed=11, mode=mode) for _ in range(2))
    assert _stable(first) == _stable(second)
    assert str(first).split("evaluations")[1].split("\n", 1)[1] == \
        str(second).split("evaluations")[1].split("\n", 1)[1]
    other = check_vjp(f, f_vjp, args, seed=12, mode=mode)
    assert other.passed == first.passed is False           # the verdict does not depend on it
    if mode == "full":                                     # nor where the bug is
        assert other["arg0"].worst_index == first["arg0"].worst_index == (1, 2)
    assert other["arg0"].analytic_at_worst != first["arg0"].analytic_at_worst  # R differs


def test_networks_are_deterministic_for_a_seed():
    net = Sequential([Conv(2, 3), Activation("relu"), Flatten(), Dense(2)], (2, 1, 5, 5),
                     loss="mse")
    assert _stable(check_network(net, seed=4)) == _stable(check_network(net, seed=4))


def test_assert_vjp_close_carries_the_report():
    f, f_vjp, args = _planted(np.float64)
    with pytest.raises(AssertionError, match=r"gradcheck f: FAILED") as info:
        assert_vjp_close(f, f_vjp, args)
    assert info.value.report["arg0"].worst_index == (1, 2)
    assert assert_vjp_close(np.sin, lambda g, x: (g * np.cos(x),), (np.ones(3),)).passed


def test_check_grad():
    loss = lambda w: float(np.sum(np.exp(w)))  # noqa: E731
    w = np.array([0.1, -0.3, 2.0])
    assert check_grad(loss, np.exp, (w,)).passed
    report = check_grad(loss, lambda w: np.exp(w) * 1.0001, (w,))
    assert not report.passed and report.arguments[0].diagnosis.cause == "scaled"


# --------------------------------------------------------------------------- fast mode


GROSS = {
    "not_rotated": dict(mistake="not_rotated"),
    "channel_swap": dict(mistake="channel_swap"),
    "no_stride_zeros": dict(mistake="no_stride_zeros"),
    "crop_offset": dict(mistake="crop_offset"),
    "x_times_2": dict(damage=lambda gx, gw, gb, t: (gx * t(2), gw, gb)),
    "sign": dict(damage=lambda gx, gw, gb, t: (-gx, gw, gb)),
    "w_over_batch": dict(damage=lambda gx, gw, gb, t: (gx, gw / t(gx.shape[0]), gb)),
    "weight_flipped": dict(damage=lambda gx, gw, gb, t: (gx, gw[:, :, ::-1, ::-1].copy(), gb)),
}


@pytest.mark.parametrize("name,dtype", [(n, DTYPES[i % 2]) for i, n in enumerate(GROSS)],
                         ids=[f"{n}-{dtype_ids(DTYPES[i % 2])}" for i, n in enumerate(GROSS)])
def test_fast_mode_catches_gross_mutants_in_far_fewer_evaluations(name, dtype):
    opts = dict(stride=2, padding=1)
    rng = np.random.default_rng(8)
    args = tuple(a.astype(dtype) for a in (rng.standard_normal((2, 3, 9, 9)),
                                            rng.standard_normal((3, 3, 3, 3)),
                                            rng.standard_normal(3)))
    mistake, damage = GROSS[name].get("mistake"), GROSS[name].get("damage")

    def f_vjp(g, x, w, b):
        out = conv_reference_backward(g, x, w, mistake=mistake, **opts)
        return damage(*out, x.dtype.type) if damage else out

    f = lambda x, w, b: conv_forward(x, w, b, **opts)  # noqa: E731
    full = check_vjp(f, f_vjp, args, mode="full")
    fast = check_vjp(f, f_vjp, args, mode="fast")
    assert not full.passed and not fast.passed
    assert {a.name for a in fast.failures} == {a.name for a in full.failures}
    assert fast.nfev * 10 <= full.nfev
    assert all(a.mode == "fast" and a.n_checked == 8 for a in fast.arguments)


@pytest.mark.parametrize("dtype,rel", [(np.float32, 2e-2), (np.float64, 1e-11)],
                         ids=["float32-2%", "float64-1e-11"])
def test_fast_mode_blind_spot_one_element_in_a_large_tensor(dtype, rel):
    """As documented in gradcheck.checker._check: full mode sees it, fast mode does not."""
    chosen = []       # one element, chosen on the first call: the backward stays linear

    def damage(gx, gw, gb, t):
        chosen.extend([] if chosen else [_median_index(gx)])
        gx.reshape(-1)[chosen[0]] *= 1 + rel
        return gx, gw, gb

    layer = MutantConv(8, 3, padding=1, damage=damage)
    # the slip and the blind spot are x's: full mode checks x alone (w and b, right, took
    # a third of the time and nothing was asserted of them); fast mode checks all three
    full = check_layer(layer, input_shape=(2, 8, 24, 24), dtype=dtype, mode="full",
                       wrt=("x",))
    fast = check_layer(layer, input_shape=(2, 8, 24, 24), dtype=dtype, mode="fast")
    assert not full.passed and full["x"].n_failed == 1
    assert fast.passed
    assert "may go unseen in fast mode" in fast["x"].note


def test_budget_switches_to_sampled_or_fast_mode_or_refuses():
    layer = Conv(4, 3)
    report = check_layer(layer, input_shape=(1, 4, 8, 8), budget=200)
    assert [a.mode for a in report.arguments] == ["sampled", "full", "full"]
    # f is fast: the time budget affords every element of x, so no direction is left over
    assert report["x"].n_checked == report["x"].n_elements == 256
    assert report.notes[0].startswith("x: 256 elements > budget 200; checked in sampled "
                                      "mode: sampled 256 of 256 elements (")
    report = check_layer(layer, input_shape=(1, 4, 8, 8), budget=200, over_budget="fast")
    assert [a.mode for a in report.arguments] == ["fast", "full", "full"]
    assert report.notes == ("x: 256 elements > budget 200; checked in fast mode",)
    with pytest.raises(ConfigurationError, match=(
            r"^argument 'x' is over budget: 256 elements > budget 200; raise "
            r"budget/time_budget, pass mode='sampled' or mode='fast', or "
            r"over_budget='sampled' or 'fast'$")):
        check_layer(layer, input_shape=(1, 4, 8, 8), budget=200, over_budget="refuse")
    assert all(a.mode == "full" for a in check_layer(layer, input_shape=(1, 4, 8, 8),
                                                     budget=200, mode="full").arguments)


def test_time_budget_switches_a_slow_full_check_to_sampled_or_fast_mode():
    # f is made slow on purpose; 108 weights, one per group without a pattern, would take
    # ~108 * 6 * 20 ms: over a 1 s budget, so a sample (or, asked, fast mode) with a note
    # saying why
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5))
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3))

    def f(x, w):
        time.sleep(0.02)
        return conv_forward(x, w)

    def f_vjp(g, x, w):
        return conv_backward(g, x, w)[:2]

    report = check_vjp(f, f_vjp, (x, w), argnames=("x", "w"), time_budget=1.0, wrt="w",
                       suspects=lambda *a: [])
    # a quarter of the budget affords two elements: the sample holds the fewest allowed
    assert report["w"].mode == "sampled" and report.passed
    assert report["w"].n_checked == MIN_SAMPLE < 108 and report["w"].n_directions == 8
    assert "full check would take about" in report.notes[0]
    assert "checked in sampled mode: sampled 16 of 108 elements" in report.notes[0]
    report = check_vjp(f, f_vjp, (x, w), argnames=("x", "w"), time_budget=1.0, wrt="w",
                       suspects=lambda *a: [], over_budget="fast")
    assert report["w"].mode == "fast" and report.passed
    assert "full check would take about" in report.notes[0]
    assert check_vjp(f, f_vjp, (x, w), wrt=1, mode="full", suspects=lambda *a: []).passed


def test_fast_mode_on_a_million_parameters():
    layer = Conv(384, 3, padding=1)
    report = check_layer(layer, input_shape=(1, 320, 6, 6), dtype=np.float32, mode="fast")
    assert report["w"].n_elements == 384 * 320 * 9 > 1_000_000
    assert report.passed, str(report)


def _corpus_case(name):
    from diagnosis_corpus import BUGS, CORRECT, HELD_OUT

    return next(c for c in BUGS + CORRECT + HELD_OUT if c.name == name)


@pytest.mark.parametrize("name", ["maxpool-ties", "dense-relu-kinks", "relu6-kinks"])
def test_fast_mode_reports_a_direction_across_ties_as_a_kink(name):
    """A right max-pool on tied inputs (and right ReLUs at their kinks) failed fast mode
    at some seeds (maxpool-ties at 0, 1 and 4): a random direction crossed several kinks
    at once, where the projection is no directional derivative. Full mode passes them; so
    does fast mode now at every seed, saying what it did not judge."""
    case = _corpus_case(name)
    assert check_vjp(case.f, case.vjp, case.args, argnames=case.argnames,
                     mode="full").passed
    notes = []
    for seed in range(8):
        report = check_vjp(case.f, case.vjp, case.args, argnames=case.argnames,
                           mode="fast", seed=seed)
        assert report.passed, (seed, str(report))
        notes += [a.note for a in report.arguments]
    assert any("cross kinks" in n and "reported, not judged" in n for n in notes)


@pytest.mark.parametrize("name", ["maxpool-first-in-window", "maxpool-assign",
                                  "maxpool-argmin", "dense-relu-mask-missing",
                                  "relu6-not_masked"])
def test_fast_mode_still_fails_a_wrong_max_pool_or_relu_at_every_seed(name):
    case = _corpus_case(name)
    for seed in range(8):
        assert not check_vjp(case.f, case.vjp, case.args, argnames=case.argnames,
                             mode="fast", seed=seed).passed, seed


# --------------------------------------------------------------------------- bad options


def _f(x, w):
    return x * w


def _f_vjp(g, x, w):
    return g * w, g * x


ARGS = (np.ones(3), np.ones(3))

BAD_OPTIONS = [
    (dict(f=3), r"^f must be callable; got int$"),
    (dict(f_vjp="g"), r"^f_vjp must be callable; got str$"),
    (dict(args=np.ones(3)), r"^args must be a tuple or list of arrays \(one per argument of f\); "
                            r"for a single array pass \(x,\); got ndarray$"),
    (dict(args=()), r"^args must hold at least one array; got an empty sequence$"),
    (dict(args=(np.ones(2), "ab")), r"^argument 'arg1' must hold real numbers; got dtype <U2$"),
    (dict(args=(np.array([1.0, np.nan]), np.ones(2))),
     r"^argument 'arg0' contains NaN or infinity; a gradient check needs finite inputs$"),
    (dict(argnames=("x",)), r"^argnames must be 2 strings, one per argument; got \('x',\)$"),
    (dict(argnames=("x", "x")), r"^argnames must be distinct; got \('x', 'x'\)$"),
    (dict(wrt=2), r"^wrt must name arguments by index \(0\.\.1\) or by name \(arg0, arg1\); "
                  r"got 2$"),
    (dict(wrt="y"), r"^wrt must name arguments .*; got 'y'$"),
    (dict(mode="slow"), r"^mode must be one of \('auto', 'full', 'sampled', 'fast'\); got "
                        r"'slow'$"),
    (dict(seed=-1), r"^seed must be a non-negative int; got -1$"),
    (dict(seed=1.5), r"^seed must be a non-negative int; got 1\.5$"),
    (dict(atol=-1.0), r"^atol must be None or a finite number >= 0; got -1\.0$"),
    (dict(rtol=float("nan")), r"^rtol must be None or a finite number >= 0; got nan$"),
    (dict(budget=0), r"^budget must be a positive int \(elements\); got 0$"),
    (dict(over_budget="skip"), r"^over_budget must be one of \('sampled', 'fast', 'refuse'\); "
                               r"got 'skip'$"),
    (dict(directions=0), r"^directions must be a positive int; got 0$"),
    (dict(method=3), r"^method must be a string; got 3$"),
    (dict(vectorized={"z": True}), r"^vectorized has unknown argument names \['z'\]; "
                                   r"valid: arg0, arg1$"),
    (dict(vectorized=[True]), r"^vectorized must have one entry per argument \(2\); got 1$"),
    (dict(roles={"arg0": "kernel"}), r"^roles\['arg0'\] must be 'input', 'weight', 'bias', "
                                     r"'generic' or a TensorRole; got 'kernel'$"),
    (dict(patterns={"arg1": 5}), r"^patterns\['arg1'\] must be None, a scipy\.sparse matrix"),
    (dict(suspects=3), r"^suspects must be None or a callable\(argname\); got 3$"),
    (dict(cotangent=np.ones(4)), r"^cotangent must have the shape of f's output "
                                 r"\(3,\); got shape \(4,\)$"),
    (dict(cotangent=np.full(3, np.nan)), r"^cotangent must be finite; got 3 NaN or infinite "
                                         r"value\(s\) of 3$"),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS,
                         ids=[",".join(o) for o, _ in BAD_OPTIONS])
def test_bad_options_of_check_vjp(options, message):
    options = dict(options)
    f = options.pop("f", _f)
    f_vjp = options.pop("f_vjp", _f_vjp)
    args = options.pop("args", ARGS)
    with pytest.raises(ConfigurationError, match=message):
        check_vjp(f, f_vjp, args, **options)


def test_bad_options_of_check_grad_check_network_check_layer():
    with pytest.raises(ConfigurationError, match=r"^loss must be callable; got int$"):
        check_grad(1, np.exp, (np.ones(2),))
    with pytest.raises(ConfigurationError, match=r"^grad must be callable; got NoneType$"):
        check_grad(np.sum, None, (np.ones(2),))
    with pytest.raises(ConfigurationError, match=r"^mode must be one of"):
        check_grad(np.sum, np.ones_like, (np.ones(2),), mode="quick")
    with pytest.raises(ConfigurationError, match=(
            r"^net must be a gradcheck\.ops\.network\.Sequential; got list$")):
        check_network([Conv(2, 3)])
    net = Sequential([Conv(2, 3)], (1, 1, 5, 5))
    with pytest.raises(ConfigurationError, match=r"^budget must be a positive int"):
        check_network(net, budget=-3)
    with pytest.raises(ConfigurationError, match=r"^check_layer needs x or input_shape$"):
        check_layer(Conv(2, 3))


# --------------------------------------------------------------------------- user code


def _boom(*a):
    raise ValueError("no such thing")


def test_user_code_failures_become_user_code_errors():
    x = (np.array([0.5, 1.5]),)
    cases = [
        (_boom, lambda g, x: (g,), r"^f raised ValueError: no such thing$"),
        (np.sin, _boom, r"^f_vjp raised ValueError: no such thing$"),
        (np.sin, lambda g, x: (g[:1],),
         r"^f_vjp's gradient for 'arg0' has shape \(1,\), but the argument has shape \(2,\)$"),
        (np.sin, lambda g, x: (g, g),
         r"^f_vjp must return one gradient per argument \(1: arg0\); got 2 values$"),
        (np.sin, lambda g, x: "grad",
         r"^f_vjp must return one gradient per argument \(1: arg0\); got str$"),
        (np.sin, lambda g, x: (g * np.nan,),
         r"^f_vjp's gradient for 'arg0' returned 2 NaN or infinite value\(s\) of 2, at "
         r"index \(0,\), \(1,\)$"),
        (np.log, lambda g, x: (g / x,), None),   # fine: the point is inside the domain
        (lambda x: np.where(x < 1, np.inf, x), lambda g, x: (g,),
         r"^f returned 1 NaN or infinite value\(s\) of 2$"),
        (lambda x: np.sin(x) if np.all(x.real <= 1.5) else _boom(), lambda g, x: (g * np.cos(x),),
         r"^f raised ValueError while its gradient was differenced element by element: no "
         r"such thing$"),
        (lambda x: "y", lambda g, x: (g,), r"^f must return numbers; got an array of dtype <U1$"),
        # a forward returning a tuple is the forward's fault, not the gradients' shape
        (lambda x: (np.sin(x),), lambda g, x: (g * np.cos(x),),
         r"^f returned a tuple of 1 item\(s\), not an array: f must return its output as "
         r"one array \('return y', not 'return y,' nor 'return y, extra'\)$"),
        (lambda x: (np.sin(x), x), lambda g, x: (g * np.cos(x),),
         r"^f returned a tuple of 2 item\(s\), not an array"),
        (lambda x: [np.sin(x)], lambda g, x: (g * np.cos(x),),
         r"^f returned a list of 1 item\(s\), not an array"),
        (np.sin, lambda g, x: ((g * np.cos(x),),),
         r"^f_vjp's gradient for 'arg0' returned a tuple of 1 item\(s\), not an array"),
    ]
    for f, f_vjp, message in cases:
        if message is None:
            assert check_vjp(f, f_vjp, x).passed
            continue
        with pytest.raises(UserCodeError, match=message):
            check_vjp(f, f_vjp, x)
    with pytest.raises(UserCodeError, match=r"^loss must return a scalar; got an array of "
                                            r"shape \(2,\)$"):
        check_grad(lambda w: w * 2, lambda w: 2 * np.ones_like(w), x)


def test_public_names():
    for name in ("check_vjp", "check_grad", "assert_vjp_close", "check_layer", "check_network",
                 "CheckReport", "ArgumentReport", "Diagnosis"):
        assert name in gradcheck.__all__


def test_complex_argument_is_refused_and_nothing_checked_never_passes():
    with pytest.raises(ConfigurationError, match=r"argument 'arg0' has dtype complex128; "
                                                 r"gradients are checked for real arguments"):
        check_vjp(lambda x: x ** 2, lambda g, x: (2 * g * x + 1,), (np.ones(3) + 1j,))
    empty = check_vjp(lambda x: x ** 2, lambda g, x: (2 * g * x,), (np.zeros(0),))
    assert not empty.passed and "no argument was checked" in empty.notes[0]
    none = check_vjp(lambda x: x ** 2, lambda g, x: (None,), (np.ones(3),))
    assert not none.passed


def test_cosine_and_norm_ratio_leave_out_the_elements_at_kinks():
    # relu with two exact kinks: there the numerical value is a difference across the kink
    # (about R/2), the analytic one 0, both right; elsewhere the two agree -- so as
    # vectors over the smooth elements the gradients are equal: cosine 1, ratio 1
    x = np.array([0.0, 1.0, -2.0, 0.0, 0.5])
    report = check_vjp(lambda x: np.maximum(x, 0.0), lambda g, x: (g * (x > 0),), (x,),
                       mode="full")
    arg = report["arg0"]
    assert report.passed and arg.n_nondifferentiable == 2
    assert arg.cosine_similarity == pytest.approx(1.0, abs=1e-12)
    assert arg.norm_ratio == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- huge values


HUGE = 1e150     # its square is finite, the sum of a few hundred squares is not


@pytest.mark.parametrize("mode", ["full", "sampled", "fast"])
def test_huge_values_raise_no_warning_and_keep_their_verdict(mode):
    """With every warning an error, a layer whose values are near the square root of the
    largest float is judged without a RuntimeWarning from the checker (its arithmetic
    overflowed in the tolerance, the linearity stage, the judge and the diagnosis), and
    the verdicts are the closed form's: 1e150 sin(x) has the gradient 1e150 R cos(x); one
    1.5 times that is scaled by 1.5; an unused argument's gradient is zero (1e160 is
    wrong beyond what C, of size 1e150, can resolve)."""
    import warnings

    x = np.linspace(-3, 3, 40).reshape(5, 8)
    f = lambda x, w: HUGE * np.sin(x) + 0 * w.sum()   # noqa: E731
    opts = dict(argnames=("x", "w"), mode=mode, time_budget=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        right = check_vjp(f, lambda g, x, w: (HUGE * g * np.cos(x), np.zeros(3)),
                          (x, np.ones(3)), **opts)
        wrong = check_vjp(f, lambda g, x, w: (1.5 * HUGE * g * np.cos(x), np.full(3, 1e160)),
                          (x, np.ones(3)), **opts)
    assert right.passed, str(right)
    assert not wrong["x"].passed and not wrong["w"].passed
    if mode != "fast":                               # fast mode diagnoses nothing
        assert wrong["x"].diagnosis.cause == "scaled"
        assert "3/2 times" in wrong["x"].diagnosis.message


def test_a_fast_direction_without_a_usable_numerical_value_fails_as_full_mode_does():
    """exp(200 x) near x = 3 (values near 1e260): the error bars overflow and no element
    has a usable numerical derivative, so full mode fails it (no_numerical_derivative);
    fast mode's directions passed unchecked, and now fail the same way, saying why."""
    import warnings

    x = np.linspace(-3, 3, 40).reshape(5, 8)
    f, vjp = (lambda x: np.exp(200 * x)), (lambda g, x: (200 * g * np.exp(200 * x),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = check_vjp(f, vjp, (x,), mode="full")
        fast = check_vjp(f, vjp, (x,), mode="fast")
    assert not full.passed and full["arg0"].diagnosis.cause == "no_numerical_derivative"
    assert not fast.passed and "no usable numerical derivative" in fast["arg0"].note


# --------------------------------------------------------------------------- kinks in the report


def _relu(x):
    return np.maximum(x, 0)


def test_a_worst_element_at_a_kink_is_said_to_be_at_a_kink_with_its_one_sided_derivatives():
    # relu at x = 0 with the all-ones cotangent: the one-sided derivatives are 0 and 1 (by
    # hand), the central difference 0.5; a backward giving 0.9 there is valid, and every
    # other element is exact, so the kink element is the one shown, with |0.9 - 0.5| far
    # above the tolerance of a smooth element: the line must say it sits at a kink
    x = np.random.default_rng(0).standard_normal((3, 4))
    x[0, 0] = 0.0
    report = check_vjp(_relu, lambda g, x: (g * np.where(x == 0, 0.9, x > 0),), (x,),
                       argnames=("x",), mode="full", cotangent=np.ones((3, 4)))
    arg = report["x"]
    assert arg.passed and arg.worst_index == (0, 0) and arg.worst_at_kink
    assert arg.limits_at_worst == (pytest.approx(0.0), pytest.approx(1.0))
    line = arg.summary()
    assert "at a kink" in line and "one-sided derivatives 0 and 1 (between them" in line
    assert arg.to_dict()["worst_at_kink"] is True


def test_a_kink_element_outside_its_limits_reports_the_distance_outside():
    x = np.random.default_rng(0).standard_normal((3, 4))
    x[0, 0] = 0.0
    report = check_vjp(_relu, lambda g, x: (g * np.where(x == 0, 1.5, x > 0),), (x,),
                       argnames=("x",), mode="full", cotangent=np.ones((3, 4)))
    line = report["x"].summary()
    assert not report.passed
    assert "at a kink" in line and "outside them by 0.5," in line    # 1.5 - 1, by hand


def test_fast_mode_counts_the_directions_that_cross_a_kink():
    # relu with exact zeros: every random ±1 direction moves the zero elements across
    # the kink, so every direction crosses one; a smooth f has none
    x = np.random.default_rng(0).standard_normal((3, 4))
    x.flat[[2, 5]] = 0.0
    report = check_vjp(_relu, lambda g, x: (g * (x > 0),), (x,), argnames=("x",),
                       mode="fast", directions=6)
    assert report.passed and report["x"].n_nondifferentiable == 6, str(report)
    assert "crosses a kink" in report["x"].summary()
    smooth = check_vjp(np.sin, lambda g, x: (g * np.cos(x),), (x,), argnames=("x",),
                       mode="fast", directions=6)
    assert smooth["x"].n_nondifferentiable == 0
    assert "kink" not in smooth["x"].summary()
