"""check_jvp in sampled mode: a sample's Jacobian columns in full, directions over the rest.

The JVPs are written by hand from closed forms (``sin``'s Jacobian is ``diag(cos x)``; a
convolution's JVP is the same convolution of the tangent); each error is planted at a
known Jacobian column, so the column a failure must name, and both values there, follow
from how the case is built. Which elements the sample holds is read from
:func:`sample_candidates` only to make sure a planted error lies outside it (or inside).
A tiny ``time_budget`` keeps each sample at its smallest (:data:`MIN_SAMPLE` elements).
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import scipy.sparse as sp

from gradcheck import check_jvp, conv_forward
from gradcheck.checker._diagnose import TensorRole
from gradcheck.checker._sample import MIN_SAMPLE, sample_candidates

TINY = 1e-6     # seconds: the sample holds MIN_SAMPLE elements
SHAPE = (4, 3, 20, 20)


def _sin_jvp(t, x):
    return np.cos(x) * t[0]


def _sin_jvp_off(bad, factor):
    """sin's JVP with the Jacobian entry (bad, bad) -- column ``bad`` -- times ``factor``."""
    def f_jvp(t, x):
        d = np.cos(x)
        d[bad] *= factor
        return d * t[0]
    return f_jvp


def _sampled(shape, n=MIN_SAMPLE, index=0):
    """The flat indices the smallest sample of an (N, C, *spatial) argument holds."""
    role = TensorRole.for_array("input" if index == 0 else "weight", len(shape))
    return set(sample_candidates(shape, role, 0, index)[:n].tolist())


def _real_only(fn):
    """``fn`` refusing complex input (real steps only, as the framework adapters)."""
    def f(*args):
        if any(np.iscomplexobj(a) for a in args):
            raise TypeError("real input only")
        return fn(*args)
    return f


# --------------------------------------------------------------------------- right JVPs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_right_jvp_passes_on_its_sample_and_directions(dtype):
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(dtype)
    report = check_jvp(np.sin, _sin_jvp, (x,), mode="sampled", time_budget=TINY)
    a = report["arg0"]
    assert report.passed, str(report)
    assert report.ad_mode == "fwd" and a.mode == "sampled" and a.dtype == np.dtype(dtype).name
    assert a.n_checked == MIN_SAMPLE < a.n_elements == 4800 and a.n_failed == 0
    assert a.n_directions == 8 and a.n_directions_failed == 0
    assert report.notes[0].startswith(f"arg0: sampled {MIN_SAMPLE} of 4800 elements (")
    d = report.to_dict()["checks"][0]
    assert d["mode"] == "sampled" and d["n_checked"] < d["n_elements"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_right_convolution_jvp_passes_in_sampled_mode(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 3, 10, 10)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    f = lambda x, w: np.tanh(conv_forward(x, w, padding=1))  # noqa: E731

    def f_jvp(t, x, w):
        d = 1 - np.tanh(conv_forward(x, w, padding=1)) ** 2
        return d * (conv_forward(t[0], w, padding=1) + conv_forward(x, t[1], padding=1))

    for g in (f, _real_only(f)):            # the complex step, and real steps only
        report = check_jvp(g, f_jvp, (x, w), argnames=("x", "w"), mode="sampled",
                           time_budget=TINY)
        assert report.passed, str(report)
        assert [a.mode for a in report.arguments] == ["sampled", "sampled"]
        assert all(a.n_checked < a.n_elements for a in report.arguments)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_exactly_at_its_kinks_in_the_sample_and_outside_it(dtype):
    x = np.random.default_rng(4).standard_normal(SHAPE).astype(dtype)
    inside = [(0, 0, 0, 0), (0, 0, 8, 8), (1, 1, 0, 19)]       # a corner, the patch, a cover
    outside = [(2, 1, 11, 7), (3, 2, 5, 5), (1, 0, 17, 3)]
    sampled = _sampled(SHAPE)
    assert all(np.ravel_multi_index(i, SHAPE) in sampled for i in inside)
    assert not any(np.ravel_multi_index(i, SHAPE) in sampled for i in outside)
    for i in inside + outside:
        x[i] = 0
    relu = lambda x: x * (x > 0)  # noqa: E731
    report = check_jvp(relu, lambda t, x: t[0] * (x > 0), (x,), mode="sampled",
                       time_budget=TINY)
    a = report["arg0"]
    assert report.passed, str(report)
    assert a.n_nondifferentiable == 3
    assert sorted(map(tuple, np.argwhere(a.nondifferentiable_mask))) == sorted(inside)
    # the derivative 2 at the kinks, outside the one-sided limits 0 and 1 of its column
    twice = lambda t, x: t[0] * (x >= 0) * (1 + (x == 0))  # noqa: E731
    report = check_jvp(relu, twice, (x,), mode="sampled", time_budget=TINY)
    a = report["arg0"]
    assert not report.passed and a.n_failed == 3
    assert a.diagnosis.cause == "outside_kink_limits"
    assert "Judged on the sample" in a.diagnosis.message


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_false_alarm_through_relu_zeros_into_a_convolution(dtype):
    # several kinks at once along every random direction, real steps only
    rng = np.random.default_rng(100)
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    x.reshape(-1)[rng.choice(x.size, 12, replace=False)] = 0
    x[0, 0, 0, 0] = x[0, 0, 4, 4] = 0                      # two in the sample
    f = _real_only(lambda x, w: np.tanh(conv_forward(np.maximum(x, 0), w, padding=1)))

    def f_jvp(t, x, w):
        tangent = conv_forward(t[0] * (x > 0), w, padding=1) + \
            conv_forward(np.maximum(x, 0), t[1], padding=1)
        return (1 - f(x, w) ** 2) * tangent

    report = check_jvp(f, f_jvp, (x, w), mode="sampled", time_budget=TINY)
    assert report.passed, str(report)
    assert report["arg0"].n_nondifferentiable >= 2


# --------------------------------------------------------------------------- wrong JVPs


@pytest.mark.parametrize("factor", [1.5, 1 + 1e-5])
def test_one_wrong_column_outside_the_sample_is_found_by_bisection(factor):
    bad = (2, 1, 11, 7)
    assert np.ravel_multi_index(bad, SHAPE) not in _sampled(SHAPE)   # the sample cannot see it
    x = np.random.default_rng(1).standard_normal(SHAPE)
    report = check_jvp(np.sin, _sin_jvp_off(bad, factor), (x,), mode="sampled",
                       time_budget=TINY)
    a = report["arg0"]
    assert not report.passed and a.mode == "sampled" and a.n_failed == 1
    assert a.worst_index == bad and a.output_index == bad        # column and row: diagonal
    assert a.numeric_at_worst == pytest.approx(np.cos(x[bad]), rel=1e-10)
    assert a.analytic_at_worst == pytest.approx(factor * np.cos(x[bad]), rel=1e-13)
    assert a.n_directions_failed >= 1
    assert "bisection narrowed it to" in a.note and "of which 1 fail" in a.note
    assert a.n_checked <= MIN_SAMPLE + 8 < a.n_elements
    assert f"FAIL; 1 of {a.n_checked} sampled elements (of 4800) failed" in a.summary()
    # one wrong entry cannot be told from a sample: described, and said why
    assert a.diagnosis.cause == "no_known_pattern"
    assert "A sample cannot tell one wrong Jacobian entry" in a.diagnosis.message


def test_a_wrong_column_in_the_sample_fails_without_bisection():
    bad = (0, 0, 8, 8)                                         # the patch at the centre
    assert np.ravel_multi_index(bad, SHAPE) in _sampled(SHAPE)
    x = np.random.default_rng(1).standard_normal(SHAPE)
    report = check_jvp(np.sin, _sin_jvp_off(bad, 1 + 1e-5), (x,), mode="sampled",
                       time_budget=TINY)
    a = report["arg0"]
    assert not report.passed and a.n_failed == 1 and a.worst_index == bad
    assert a.n_checked == MIN_SAMPLE and "bisection" not in a.note


def test_a_weight_column_of_a_convolution_is_located():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 3, 10, 10)), rng.standard_normal((5, 3, 3, 3))
    bad = (3, 2, 1, 0)
    assert np.ravel_multi_index(bad, w.shape) not in _sampled(w.shape, index=1)

    def f_jvp(t, x, w):
        tw = t[1].copy()
        tw[bad] *= 1.01                                    # the tangent of one weight
        return conv_forward(t[0], w, padding=1) + conv_forward(x, tw, padding=1)

    report = check_jvp(lambda x, w: conv_forward(x, w, padding=1), f_jvp, (x, w),
                       argnames=("x", "w"), mode="sampled", time_budget=TINY)
    assert report["x"].passed and not report["w"].passed
    a = report["w"]
    assert a.worst_index == bad and a.n_failed == 1
    assert a.output_index[1] == bad[0]                     # an output of its filter
    # y[n, 3, i, j] moves by x[n, 2, i + 1 - 1, j + 0 - 1] per unit of w[3, 2, 1, 0]
    n, _, i, j = a.output_index
    assert a.numeric_at_worst == pytest.approx(x[n, 2, i, j - 1], rel=1e-9)
    assert a.analytic_at_worst == pytest.approx(1.01 * x[n, 2, i, j - 1], rel=1e-12)


def test_a_sign_error_is_named_on_the_sample():
    x = np.random.default_rng(2).standard_normal(SHAPE)
    report = check_jvp(np.sin, lambda t, x: -_sin_jvp(t, x), (x,), mode="sampled",
                       time_budget=TINY)
    a = report["arg0"]
    assert a.n_failed == a.n_checked == MIN_SAMPLE
    assert a.diagnosis.cause == "sign_flipped"
    assert "Judged on the sample: the Jacobian columns of 16 of 4800 elements" in \
        a.diagnosis.message


def test_a_pattern_moves_sampled_columns_together():
    n = 600
    x = np.linspace(-1.0, 1.0, n)
    diagonal = sp.eye(n, dtype=bool, format="csc")
    plain = check_jvp(np.sin, _sin_jvp, (x,), mode="sampled", time_budget=TINY)
    colored = check_jvp(np.sin, _sin_jvp, (x,), mode="sampled", time_budget=TINY,
                        patterns=[diagonal])
    assert plain.passed and colored.passed
    assert plain["arg0"].n_checked == MIN_SAMPLE
    # one color: every candidate comes for free once the first is in
    assert colored["arg0"].n_checked == n and "1 probe(s) for 600 columns" in \
        colored["arg0"].note
    wrong = check_jvp(np.sin, _sin_jvp_off((417,), 1 + 1e-5), (x,), mode="sampled",
                      time_budget=TINY, patterns=[diagonal])
    assert not wrong.passed and wrong["arg0"].worst_index == (417,)


# --------------------------------------------------------------------------- budgets


def test_auto_mode_samples_above_the_budget_and_says_so():
    x = np.random.default_rng(1).standard_normal(SHAPE)
    report = check_jvp(np.sin, _sin_jvp, (x,), budget=1000, time_budget=TINY)
    assert report.passed and report["arg0"].mode == "sampled"
    assert report.notes[0].startswith("arg0: 4800 elements > budget 1000; checked in "
                                      "sampled mode: sampled ")
    bad = (2, 1, 11, 7)
    report = check_jvp(np.sin, _sin_jvp_off(bad, 1 + 1e-5), (x,), budget=1000,
                       time_budget=TINY)
    assert not report.passed and report["arg0"].worst_index == bad


def test_the_predicted_time_counts_the_calls_of_f_jvp():
    # f costs microseconds; f_jvp at least 10 ms a call: 40 columns take 0.4 s of f_jvp
    def slow_jvp(t, x):
        time.sleep(0.01)
        return np.cos(x) * t[0]

    x = np.linspace(-1.0, 1.0, 40)
    report = check_jvp(np.sin, slow_jvp, (x,), time_budget=0.2)
    a = report["arg0"]
    assert report.passed and a.mode == "sampled"
    assert "calls of f_jvp" in report.notes[0] and "> time_budget 0.2 s" in report.notes[0]
    assert check_jvp(np.sin, slow_jvp, (x,), time_budget=1.0)["arg0"].mode == "full"


def test_a_sample_that_takes_longer_than_predicted_is_cut_and_says_so():
    # f's complex evaluations (the complex step) sleep 5 ms, its real ones take
    # microseconds: the sample planned from a real call is cut after its first part,
    # and the directions cover what was cut
    def f(x):
        if np.iscomplexobj(x):
            time.sleep(0.005)
        return np.sin(x)

    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8))
    report = check_jvp(f, _sin_jvp, (x,), mode="sampled", time_budget=0.2)
    a = report["arg0"]
    assert report.passed and a.mode == "sampled" and a.n_directions == 8
    cut = re.search(rf"the sample was cut to {a.n_checked} of the (\d+) planned elements",
                    a.note)
    assert cut and a.n_checked < int(cut.group(1)) <= 128
