"""Outputs far from 1: values near the top of float64's range (1e150 and above, where
squares overflow) and tiny ones (1e-300) are differenced scale-free, and checked."""

import numpy as np
import pytest

from gradcheck import check_vjp, numerical_grad, numerical_vjp

X = np.random.default_rng(0).uniform(0.5, 2.0, 5)
R = np.random.default_rng(1).standard_normal(5)

# (f, its derivative written by hand, wrong factor)
CASES = {
    "exp(200 x)": (lambda x: np.exp(200 * x), lambda x: 200 * np.exp(200 * x), 1.5),
    "1e200 sin x": (lambda x: 1e200 * np.sin(x), lambda x: 1e200 * np.cos(x), 1.5),
    "1e300 sin x": (lambda x: 1e300 * np.sin(x), lambda x: 1e300 * np.cos(x), 1.5),
    "1e-300 sin x": (lambda x: 1e-300 * np.sin(x), lambda x: 1e-300 * np.cos(x), 3.0),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("method", ["adaptive", "auto"])
def test_far_outputs_have_finite_error_bars_that_cover_the_true_error(name, method):
    f, df, _ = CASES[name]
    num = numerical_vjp(f, X, R, method=method)
    true = R * df(X)
    assert np.all(np.isfinite(num.grad)) and np.all(np.isfinite(num.error))
    assert np.all(num.error > 0)
    assert np.all(np.abs(num.grad - true) <= num.error)
    # and the bars are bars, not the whole value (exp(200 x)'s are 1e-6 relative at
    # ordinary scales too: the same function times 2**-400 gets the same relative bars)
    assert np.all(num.error < 1e-5 * np.abs(true))
    if name == "exp(200 x)":
        low = numerical_vjp(lambda x: f(x) * 2.0 ** -400, X, R, method=method)
        np.testing.assert_allclose(low.error * 2.0 ** 400, num.error, rtol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_far_outputs_a_right_gradient_passes_and_a_wrong_factor_is_named(name):
    f, df, factor = CASES[name]
    assert check_vjp(f, lambda g, x: (g * df(x),), (X,)).passed
    wrong = check_vjp(f, lambda g, x: (factor * g * df(x),), (X,))
    assert not wrong.passed
    assert "constant factor" in str(wrong)


def test_the_complex_step_is_not_tried_where_its_imaginary_parts_would_be_subnormal():
    # 1e-300 sin(x + i h) has an imaginary part near 1e-316: subnormal, few digits
    num = numerical_vjp(lambda x: 1e-300 * np.sin(x), X, R)
    assert num.method != "complex" and "subnormal" in num.complex_check


def test_a_large_scalar_gradient_scales_back():
    x = np.array([0.3, -0.7, 1.1])
    num = numerical_grad(lambda v: 1e250 * np.sum(v ** 3), x, method="adaptive")
    true = 1e250 * 3 * x ** 2
    assert np.all(np.abs(num.grad - true) <= num.error)
    assert np.all(num.error < 1e-8 * np.abs(true))


def test_values_too_far_apart_are_not_rescaled_into_the_subnormal_range():
    # exp at 1 and at 709.5: bringing 1.6e308 down would push e into the subnormal range
    # (the complex step then read 2.0 for 0.7 e = 1.903 with a bar of 4e-16); the values
    # stay as they are, the first element is right, the second says it cannot be had
    x = np.array([1.0, 709.5])
    R = np.array([0.7, -1.3])
    for method in ("auto", "adaptive"):
        with np.errstate(all="ignore"):
            num = numerical_vjp(np.exp, x, R, method=method)
        assert abs(num.grad[0] - 0.7 * np.e) <= num.error[0] < 1e-10
        assert not np.isfinite(num.error[1])
