"""``scaled`` named on the agreement of many elements (:func:`gradcheck.checker.
_cause_scale._consistent_scale`): a uniform 10% slip in float16 puts no element beyond
``2 SLACK`` tolerances, yet every element agrees on the factor. One element off, and
right layers, must not be named so."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp
from gradcheck.checker._diagnose import Evidence, diagnose_evidence

F16 = np.float16
SEEDS = range(3000, 3006)


def _dense(seed):
    """tanh(x @ W.T + b) in float16, its backward written by hand."""
    r = np.random.default_rng(seed)
    x = r.standard_normal((6, 8)).astype(F16)
    W = (r.standard_normal((5, 8)) / 3).astype(F16)
    b = (r.standard_normal(5) / 4).astype(F16)

    def f(x, W, b):
        return np.tanh(x @ W.T + b)

    def f_vjp(g, x, W, b, dw_factor=1.0, one=None):
        d = g.astype(F16) * (1 - np.tanh(x @ W.T + b) ** 2)
        dW = (d.T @ x).astype(F16)
        if one is not None:
            dW = dW.copy()
            dW[one] = dW[one] * F16(dw_factor)
        else:
            dW = (dW * F16(dw_factor)).astype(F16)
        return d @ W, dW, d.sum(axis=0)

    return f, f_vjp, (x, W, b)


def _check(seed, **slip):
    f, f_vjp, args = _dense(seed)
    return check_vjp(f, lambda g, *a: f_vjp(g, *a, **slip), args, argnames=("x", "W", "b"),
                     seed=seed)


def test_a_uniform_float16_slip_of_ten_percent_is_scaled():
    named = []
    for seed in SEEDS:
        report = _check(seed, dw_factor=1.1)
        assert not report["W"].passed
        d = report["W"].diagnosis
        named.append(d.cause)
        if d.cause == "scaled":
            assert abs(d.evidence["factor"] - 1.1) < 0.01, d.message
            assert "agree on the factor" in d.message or d.evidence["misfit_before"] > 8
    assert named.count("scaled") >= 5, named


@pytest.mark.parametrize("factor", [1.05, 1.2, 1.5])
def test_one_float16_element_off_is_never_scaled(factor):
    for seed in SEEDS:
        f, f_vjp, args = _dense(seed)
        g = np.abs(f_vjp(np.ones((6, 5), F16), *args)[1].astype(float))
        one = np.unravel_index(int(np.argmax(g)), g.shape)
        report = _check(seed, dw_factor=factor, one=one)
        d = report["W"].diagnosis
        assert d is None or d.cause != "scaled", d.message


def test_right_float16_layers_pass_without_a_cause():
    for seed in SEEDS:
        report = _check(seed)
        assert report.passed and all(a.diagnosis is None for a in report.arguments)


def test_on_bare_arrays_the_rule_needs_agreement_and_significance():
    r = np.random.default_rng(0)
    n = r.standard_normal(64)
    tol = 0.02 * np.abs(n) + 1e-3                  # float16-like: 2% of each value
    noise = r.uniform(-0.1, 0.1, n.size) * tol
    # every element 1.1 x: at most ~5 tolerances each, all agreeing on the factor
    d = diagnose_evidence(Evidence(1.1 * n + noise, n, tol))
    assert d.cause == "scaled" and d.evidence["misfit_before"] < 8
    assert abs(d.evidence["factor"] - 1.1) < 0.005
    # errors of random sign, each as large: no factor explains them
    d = diagnose_evidence(Evidence(n + 0.1 * n * r.choice([-1, 1], n.size), n, tol))
    assert d.cause != "scaled"
    # two elements only off: fewer than MIN_CONSISTENT failures, not a scale
    a = n.copy()
    a[:2] *= 1.1
    d = diagnose_evidence(Evidence(a, n, tol))
    assert d.cause != "scaled"


def test_one_element_beyond_its_tolerance_says_when_the_others_lean_the_same_way():
    r = np.random.default_rng(1)
    n = r.uniform(1.0, 2.0, 12) * r.choice([-1, 1], 12)
    tol = 0.12 * np.abs(n)                      # wide allowances ...
    tol[0] = 0.01 * abs(n[0])                   # ... but one tight one
    noise = r.uniform(-0.002, 0.002, n.size) * np.abs(n)
    # the whole gradient 1.1 x: only element 0 is beyond its tolerance
    d = diagnose_evidence(Evidence(1.1 * n + noise, n, tol))
    assert d.cause == "single_element" and d.evidence["index"] == [0], d.message
    assert "the others lean the same way" in d.message and "scaled by about 1.1" in d.message
    # element 0 alone 1.1 x, the others right up to noise: no such words
    a = n + noise
    a[0] = 1.1 * n[0]
    d = diagnose_evidence(Evidence(a, n, tol))
    assert d.cause == "single_element" and "lean" not in d.message, d.message
    # a one-element argument: a wrong value and a wrong factor look the same
    d = diagnose_evidence(Evidence(np.array([1.1]), np.array([1.0]), np.array([1e-3])))
    assert d.cause == "single_element" and "only element is wrong" in d.message


def test_a_layer_suspect_that_explains_little_of_a_scale_is_not_named():
    # float16-wide allowances (3% of each value): a whole gradient 1.1 x is within SLACK
    # of a suspect's prediction that is N changed at two elements; the suspect "fits"
    # but leaves most of the mismatch, and is not named (it was, as derivative_missing,
    # on a float16 conv + ReLU whose mask was nearly all ones)
    from gradcheck.checker._diagnose import Suspect

    r = np.random.default_rng(2)
    n = r.uniform(1.0, 2.0, 10)
    tol = 0.03 * n
    tol[0] = 0.02 * n[0]
    predicted = n.copy()
    predicted[0] *= 1.05
    predicted[1] *= 1.15
    d = diagnose_evidence(Evidence(1.1 * n, n, tol, suspects=lambda: [
        Suspect("derivative_missing", "the derivative never multiplied in", predicted)]))
    assert d.cause != "derivative_missing", d.message
    # a suspect that explains the mismatch is named as before
    d = diagnose_evidence(Evidence(predicted, n, tol, suspects=lambda: [
        Suspect("derivative_missing", "the derivative never multiplied in", predicted)]))
    assert d.cause == "derivative_missing"


def test_the_nearest_reading_of_a_factor_is_named_when_several_are_within_reach():
    # a bfloat16 weight gradient doubled: the fitted factor 2.016 with an uncertainty of
    # 0.25 reaches both 2 (0.016 away) and √5 = 2.236 (0.22 away, axis 0 of a (5, 3)
    # weight); it was named √5 because square roots were tried before simple fractions
    from gradcheck.checker._cause_scale import name_factor

    assert name_factor(2.016, (5, 3), uncertainty=0.25)[0] == "2"
    assert name_factor(-1.983, (5, 3), uncertainty=0.25)[0] == "-2"
    # a factor nearer √5 than 2 is still read as √5
    assert "√5 (size of axis 0)" in name_factor(2.21, (5, 3), uncertainty=0.25)[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_bfloat16_sign_flip_is_named_sign_flipped(seed):
    # tanh(x @ W.T) in bfloat16 (NumPy, no torch), the weight gradient returned negated:
    # no element is beyond 2 SLACK tolerances, so A = -N was not named as such, and
    # scaled named "-1 times ... its sign is flipped as well" (float16 names sign_flipped)
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 arrays for NumPy")
    B = ml_dtypes.bfloat16
    r = np.random.default_rng(seed)
    x = r.standard_normal((6, 8)).astype(B)
    W = (r.standard_normal((5, 8)) / 3).astype(B)

    def f(x, W):
        return np.tanh(x @ W.T)

    def f_vjp(g, x, W, sign=1):
        d = (g.astype(B) * (1 - np.tanh(x @ W.T) ** 2)).astype(B)
        return d @ W, (sign * (d.T @ x)).astype(B)

    assert check_vjp(f, f_vjp, (x, W), argnames=("x", "W")).passed     # the right one
    report = check_vjp(f, lambda g, x, W: f_vjp(g, x, W, sign=-1), (x, W),
                       argnames=("x", "W"))
    assert not report.passed
    d = report["W"].diagnosis
    assert d.cause == "sign_flipped", d.message
    assert d.evidence["factor"] == -1.0
    # every element of W is off by twice its value: most fail on their own (the measured
    # resolution of bfloat16 arguments used to allow |diff| of 157 on values of 3.8, and
    # only the agreement of all 40 named the flip; 18 of 20 seeds passed)
    assert report["W"].n_failed >= 30, report["W"].n_failed
    assert report["x"].diagnosis is None
