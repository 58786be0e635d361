"""check_jvp: forward-mode verdicts on NumPy functions and their JVPs.

The JVPs here are written by hand from closed forms (the convolution's as the same
convolution of the tangent, which is what linearity gives); the expected verdicts follow
from how each case is built -- an error planted at a known Jacobian entry, a JVP wrong
where the VJP is right, kinks and ties put exactly on the point -- not from the checker.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gradcheck import (ConfigurationError, UserCodeError, check_jvp, check_vjp, conv_forward)
from gradcheck.checker import Suspect


def _tanh_jvp(t, x):
    return (1 - np.tanh(x) ** 2) * t[0]


def _conv(x, w):
    return conv_forward(x, w, padding=1)


def _conv_jvp(t, x, w):          # bilinear: d(x * w) = dx * w + x * dw
    return conv_forward(t[0], w, padding=1) + conv_forward(x, t[1], padding=1)


def _conv_point(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, 2, 5, 5)).astype(dtype),
            rng.standard_normal((3, 2, 3, 3)).astype(dtype))


def _off_at(k, eps):
    """sin's JVP with one diagonal Jacobian entry (k, k) off by a relative eps."""
    def f_jvp(t, x):
        d = np.cos(x)
        d.reshape(-1)[k] *= 1 + eps
        return d * t[0]
    return f_jvp


# --------------------------------------------------------------------------- right JVPs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_right_jvps_pass_in_their_own_dtype(dtype):
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(dtype)
    report = check_jvp(np.tanh, _tanh_jvp, (x,))
    assert report.passed, str(report)
    assert report.ad_mode == "fwd" and report.dtype == np.dtype(dtype).name
    arg = report["arg0"]
    assert arg.mode == "full" and arg.n_checked == 12 and arg.n_failed == 0
    assert arg.output_index is not None
    x, w = _conv_point(dtype)
    report = check_jvp(_conv, _conv_jvp, (x, w), argnames=("x", "w"))
    assert report.passed, str(report)
    assert [a.n_checked for a in report.arguments] == [x.size, w.size]


def test_tangents_are_one_per_argument_in_its_dtype_and_zero_elsewhere():
    seen = []

    def f_jvp(t, x, w):
        seen.append(tuple((a.dtype, a.shape, float(np.abs(a).sum())) for a in t))
        return w * t[0] + x * t[1]

    x = np.array([1.0, 2.0, 3.0], np.float32)
    w = np.array([0.5, -1.0, 2.0], np.float32)
    assert check_jvp(lambda x, w: x * w, f_jvp, (x, w), mode="full").passed
    assert seen[0] == ((np.float32, (3,), 0.0), (np.float32, (3,), 0.0))   # zero tangents
    columns = seen[1:]
    assert len(columns) == 6                   # one column per element, argument by argument
    assert all(c[0][2] + c[1][2] == 1.0 for c in columns)
    assert [c[0][2] for c in columns] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


# --------------------------------------------------------------------------- wrong JVPs


def test_a_1e5_error_in_one_jacobian_entry_is_caught_and_located():
    x = np.linspace(0.5, 2.0, 7)
    report = check_jvp(np.sin, _off_at(3, 1e-5), (x,))
    arg = report["arg0"]
    assert not report.passed and arg.n_failed == 1
    assert arg.worst_index == (3,) and arg.output_index == (3,)
    assert arg.analytic_at_worst == pytest.approx(np.cos(x[3]) * (1 + 1e-5), rel=1e-12)
    assert arg.diagnosis.cause == "single_element"
    assert "output (3,)" in arg.summary()


def test_an_off_diagonal_entry_is_located_by_column_and_output():
    A = np.arange(1.0, 13.0).reshape(3, 4) / 7
    wrong = A.copy()
    wrong[2, 1] *= 1 + 1e-5                     # the entry d y_2 / d x_1
    report = check_jvp(lambda x: A @ x, lambda t, x: wrong @ t[0], (np.ones(4),))
    arg = report["arg0"]
    assert not report.passed and arg.n_failed == 1
    assert arg.worst_index == (1,) and arg.output_index == (2,)


def test_a_jvp_wrong_where_the_vjp_is_right_fails_only_in_forward_mode():
    x, w = _conv_point()

    def jvp_forgets_w(t, x, w):
        return conv_forward(t[0], w, padding=1)

    def vjp(g, x, w):
        from gradcheck import conv_backward
        gx, gw, _ = conv_backward(g, x, w, padding=1)
        return gx, gw

    assert check_vjp(_conv, vjp, (x, w)).passed
    report = check_jvp(_conv, jvp_forgets_w, (x, w), argnames=("x", "w"))
    assert report["x"].passed and not report["w"].passed
    assert report["w"].n_failed == w.size


def test_a_term_that_does_not_scale_with_the_tangent_is_named():
    x = np.linspace(-1.0, 1.0, 6)
    report = check_jvp(np.sin, lambda t, x: np.cos(x) * t[0] + 1e-4, (x,))
    assert not report.passed
    assert report["arg0"].diagnosis.cause == "jvp_not_linear"
    assert "not linear in the tangents" in report["arg0"].diagnosis.message


def test_sign_and_scale_are_named_against_the_output():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4))
    flipped = check_jvp(np.tanh, lambda t, x: -_tanh_jvp(t, x), (x,))
    assert flipped["arg0"].diagnosis.cause == "sign_flipped"
    doubled = check_jvp(np.tanh, lambda t, x: 2 * _tanh_jvp(t, x), (x,))
    assert doubled["arg0"].diagnosis.cause == "scaled"
    assert doubled["arg0"].diagnosis.evidence["factor"] == pytest.approx(2.0)


def test_a_region_of_the_output_is_named():
    x = np.random.default_rng(3).standard_normal((3, 2, 4, 4))

    def drops_batch_item_1(t, x):
        out = _tanh_jvp(t, x)
        out[1] = 0.0
        return out

    report = check_jvp(np.tanh, drops_batch_item_1, (x,))
    assert report["arg0"].diagnosis.cause == "region"
    assert "batch item 1" in report["arg0"].diagnosis.message


def test_the_callers_suspects_predict_jvps():
    x = np.linspace(0.2, 1.0, 5)

    def suspects(name, tangent):
        return [Suspect("derivative_at_output", "the derivative was taken at the output",
                        (1 - np.tanh(np.tanh(x)) ** 2) * tangent)]

    wrong = lambda t, x: (1 - np.tanh(np.tanh(x)) ** 2) * t[0]  # noqa: E731
    report = check_jvp(np.tanh, wrong, (x,), suspects=suspects)
    assert report["arg0"].diagnosis.cause == "derivative_at_output"


# --------------------------------------------------------------------------- kinks and ties


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_exactly_at_its_kinks(dtype):
    x = np.random.default_rng(4).standard_normal((3, 4)).astype(dtype)
    x.reshape(-1)[[1, 5, 7]] = 0
    relu = lambda x: x * (x > 0)  # noqa: E731
    report = check_jvp(relu, lambda t, x: t[0] * (x > 0), (x,))
    assert report.passed and report["arg0"].n_nondifferentiable == 3
    report = check_jvp(relu, lambda t, x: t[0] * (x >= 0) * (1 + (x == 0)), (x,))  # 2 at 0
    assert not report.passed and report["arg0"].n_failed == 3
    assert report["arg0"].diagnosis.cause == "outside_kink_limits"


def _pool(x):
    w = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))
    return w.max(axis=(-1, -2))


def _pool_jvp(t, x):          # the first maximum of each window takes the tangent
    w = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))
    tw = np.lib.stride_tricks.sliding_window_view(t[0], (2, 2), axis=(2, 3))
    flat = w.reshape(w.shape[:4] + (4,))
    first = flat.argmax(-1)[..., None]
    return np.take_along_axis(tw.reshape(flat.shape), first, -1)[..., 0]


def test_max_pool_and_sort_ties_pass():
    x = np.round(np.random.default_rng(5).standard_normal((1, 2, 5, 5)) * 1.5)
    report = check_jvp(_pool, _pool_jvp, (x,))
    assert report.passed and report["arg0"].n_nondifferentiable > 0
    v = np.array([3.0, 1.0, 3.0, 2.0, 1.0, 2.0])

    def sort_jvp(t, v):
        return t[0][np.argsort(v, kind="stable")] * np.arange(6.0)

    report = check_jvp(lambda v: np.sort(v) * np.arange(6.0), sort_jvp, (v,))
    assert report.passed and report["arg0"].n_nondifferentiable == 6


def test_a_tie_feeding_a_later_layer_is_a_shared_kink():
    # y = max(x0, x1) - 2 max(x1, x2) at x = (1, 1, 1): the first maximum of each window
    # wins, so column x1 is 0 - 2 = -2, the gradient of an active piece -- right, yet
    # outside the one-sided derivatives along x1 alone (0 and -1). Column x0 is at the
    # same output's kink too: the kink is shared, reported and not judged.
    f = lambda x: np.array([max(x[0], x[1]) - 2 * max(x[1], x[2])])  # noqa: E731

    def f_jvp(t, x):
        a = 0 if x[0] >= x[1] else 1
        b = 1 if x[1] >= x[2] else 2
        return np.array([t[0][a] - 2 * t[0][b]])

    report = check_jvp(f, f_jvp, (np.ones(3),))
    assert report.passed, str(report)
    assert "shared with other columns" in report["arg0"].note


# --------------------------------------------------------------------------- modes


def test_fast_mode_judges_each_direction_over_the_output():
    x = np.linspace(0.5, 2.0, 7)
    report = check_jvp(np.sin, lambda t, x: np.cos(x) * t[0], (x,), mode="fast")
    assert report.passed and report["arg0"].mode == "fast"
    assert report["arg0"].n_checked == 8                     # the default directions
    report = check_jvp(np.sin, _off_at(3, 1e-5), (x,), mode="fast", directions=3)
    arg = report["arg0"]
    assert not report.passed and arg.n_failed == 3 and arg.output_index == (3,)
    assert arg.diagnosis.cause == "single_element"


def test_auto_mode_goes_fast_over_budget_when_asked_and_says_so():
    x = np.linspace(-1.0, 1.0, 50)
    report = check_jvp(np.tanh, _tanh_jvp, (x,), budget=10, over_budget="fast")
    assert report.passed and report["arg0"].mode == "fast"
    assert any("50 elements > budget 10" in n for n in report.notes)
    with pytest.raises(ConfigurationError, match=r"over budget"):
        check_jvp(np.tanh, _tanh_jvp, (x,), budget=10, over_budget="refuse")


def test_a_pattern_moves_columns_together_with_the_same_verdict():
    n = 40
    x = np.linspace(-1.0, 1.0, n)
    diagonal = sp.eye(n, dtype=bool, format="csc")
    plain = check_jvp(np.tanh, _tanh_jvp, (x,), mode="full")
    colored = check_jvp(np.tanh, _tanh_jvp, (x,), mode="full", patterns=[diagonal])
    assert plain.passed and colored.passed
    assert colored.nfev < plain.nfev / 5                      # one probe, not forty
    assert "1 probe(s) for 40 columns" in colored["arg0"].note
    wrong = check_jvp(np.sin, _off_at(17, 1e-5), (x,), mode="full", patterns=[diagonal])
    assert not wrong.passed and wrong["arg0"].n_failed == 1
    assert wrong["arg0"].worst_index == (17,)


def test_vectorized_f_is_evaluated_in_batches():
    calls = []

    def f(x):
        calls.append(x.shape)
        return np.tanh(x)

    x = np.linspace(-1.0, 1.0, 6)
    assert check_jvp(f, _tanh_jvp, (x,), vectorized=True, mode="full").passed
    assert any(len(s) == 2 for s in calls)


# --------------------------------------------------------------------------- the report


def test_report_says_forward_mode():
    x = np.linspace(0.5, 2.0, 7)
    report = check_jvp(np.sin, _off_at(3, 1e-5), (x,), name="sine")
    text = str(report)
    assert text.startswith("gradcheck sine: FAILED (forward AD, auto mode")
    assert "worst at index (3,), output (3,)" in text and "Jacobian-vector product" in text
    d = report.to_dict()
    assert d["ad_mode"] == "fwd" and d["checks"][0]["output_index"] == [3]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "sideways"}, r"mode must be one of \('auto', 'full', 'sampled', 'fast'\)"),
    ({"directions": 0}, r"directions must be a positive int"),
    ({"output_role": "kernel"}, r"output_role must be None, one of"),
    ({"wrt": 5}, r"wrt must name arguments"),
])
def test_options_are_validated_as_in_reverse_mode(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        check_jvp(np.tanh, _tanh_jvp, (np.ones(3),), **kwargs)


def test_misbehaving_jvps_are_user_code_errors():
    x = (np.ones(3),)
    with pytest.raises(ConfigurationError, match=r"f_jvp must be callable"):
        check_jvp(np.tanh, None, x)
    with pytest.raises(UserCodeError, match=r"f_jvp must return the output tangent, shaped "
                                            r"like f's output \(3,\); got shape \(2,\)"):
        check_jvp(np.tanh, lambda t, x: np.ones(2), x)
    with pytest.raises(UserCodeError, match=r"f_jvp raised ZeroDivisionError"):
        check_jvp(np.tanh, lambda t, x: 1 / 0, x)
    with pytest.raises(UserCodeError, match=r"f_jvp returned 3 NaN"):
        check_jvp(np.tanh, lambda t, x: np.full(3, np.nan), x)
    with pytest.raises(TypeError):
        check_jvp(np.tanh, _tanh_jvp, x, cotangent=np.ones(3))    # reverse mode's option


def _real_only(fn):
    """``fn`` refusing complex input, as the torch and JAX adapters do: real steps only."""
    def f(*args):
        if any(np.iscomplexobj(a) for a in args):
            raise TypeError("real input only")
        return fn(*args)
    return f


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_false_alarm_with_real_steps_through_relu_zeros_into_a_convolution(dtype):
    # each output sums several ReLUs, some exactly at zero: along a random direction an
    # output crosses several kinks at once (fast mode), and with real steps an output
    # entry's rounding is its terms', not its own (full mode)
    rng = np.random.default_rng(100)
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    x.reshape(-1)[rng.choice(x.size, 4, replace=False)] = 0
    f = _real_only(lambda x, w: np.tanh(conv_forward(np.maximum(x, 0), w, padding=1)))

    def f_jvp(t, x, w):
        tangent = conv_forward(t[0] * (x > 0), w, padding=1) + \
            conv_forward(np.maximum(x, 0), t[1], padding=1)
        return (1 - f(x, w) ** 2) * tangent

    for mode in ("full", "fast"):
        report = check_jvp(f, f_jvp, (x, w), mode=mode)
        assert report.passed, str(report)
    wrong = lambda t, x, w: f_jvp((t[0] * (1 + 1e-5 * (np.arange(x.size) == 40)  # noqa: E731
                                          .reshape(x.shape)), t[1]), x, w)
    if dtype == np.float64:
        report = check_jvp(f, wrong, (x, w), mode="full")
        assert report["arg0"].n_failed == 1 and report["arg0"].worst_index == \
            tuple(int(i) for i in np.unravel_index(40, x.shape))


def test_fast_mode_says_which_mismatches_its_projection_rule_leaves_unjudged():
    # sin is smooth: a 1e-6 error in one entry, judged with real steps over 1200 outputs,
    # hides in some directions' projections; the note must not call f non-differentiable
    # (1e-5 did hide while the real steps' error bars were ten times wider)
    x = np.linspace(0.5, 2.0, 1200).reshape(2, 3, 10, 20)
    report = check_jvp(_real_only(np.sin), _off_at(777, 1e-6), (x,), mode="fast")
    a = report["arg0"]
    assert not report.passed and a.output_index == (1, 0, 8, 17)
    agreed = a.n_checked - a.n_failed
    assert agreed > 0
    assert f"{agreed} mismatching output entr(ies) along the random directions lie on " \
           f"direction(s) whose projection on a seeded cotangent agrees" in a.note
    assert "not differentiable" not in a.note
