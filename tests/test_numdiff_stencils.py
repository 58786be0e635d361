"""Stencils: weights against hand derivations, and each method's order of accuracy."""

import numpy as np
import pytest

from gradcheck import numerical_grad
from gradcheck.numdiff._stencils import STENCILS, fit_matrix, moments


# Weights written out by hand from Taylor expansions (not from the code under test).
@pytest.mark.parametrize("nodes, weights", [
    ((0, 1), [-1.0, 1.0]),
    ((-1, 1), [-0.5, 0.5]),
    ((-2, -1, 1, 2), [1 / 12, -8 / 12, 8 / 12, -1 / 12]),
    ((-3, -2, -1, 1, 2, 3), [-1 / 60, 9 / 60, -45 / 60, 45 / 60, -9 / 60, 1 / 60]),
    ((-2, -1, 0, 1, 2, 3), [1 / 20, -1 / 2, -1 / 3, 1.0, -1 / 4, 1 / 30]),
])
def test_derivative_weights_match_hand_derivation(nodes, weights):
    np.testing.assert_allclose(fit_matrix(nodes)[1], weights, rtol=1e-12, atol=1e-14)


def test_adaptive_moments_and_orders():
    # sum w k^6 = 3.2 - 0.5 + 1 - 16 + 24.3 = 12 ; sum w k^7 = -6.4 + 0.5 + 1 - 32 + 72.9 = 36
    mu = moments((-2, -1, 0, 1, 2, 3))
    assert mu[6] == pytest.approx(12.0) and mu[7] == pytest.approx(36.0)
    orders = {name: s.order for name, s in STENCILS.items()}
    assert orders == {"adaptive": 5, "forward": 1, "backward": 1, "central": 2,
                      "central4": 4, "central6": 6}


def _f(x):      # every derivative equals the function: the leading error term dominates
    return np.sum(np.exp(x))


def _df(x):
    return np.exp(x)


@pytest.mark.parametrize("method, order, hs", [
    ("forward", 1, 0.02 * 2.0 ** -np.arange(4)),
    ("backward", 1, 0.02 * 2.0 ** -np.arange(4)),
    ("central", 2, 0.02 * 2.0 ** -np.arange(4)),
    ("central4", 4, 0.1 * 2.0 ** -np.arange(4)),
    ("central6", 6, 0.2 * 2.0 ** -np.arange(4)),
    ("adaptive", 5, 0.1 * 2.0 ** -np.arange(4)),
    ("complex", 2, 0.2 * 2.0 ** -np.arange(4)),
])
def test_order_of_accuracy(method, order, hs):
    """log(error) against log(h) on a smooth function has the stencil's slope."""
    x = np.array([0.3])
    errs = []
    for h in hs:
        r = numerical_grad(_f, x, method=method, step=h, max_retries=0)
        errs.append(abs(r.grad[0] - _df(x[0])))
        if method != "complex":   # the estimate must cover the truncation it measures
            assert r.error[0] >= errs[-1]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert slope == pytest.approx(order, abs=0.3)


# ------------------------------------------------- the truncation trend (numdiff/_model)


def test_a_cubic_by_its_double_root_is_not_retried_and_keeps_its_digits():
    # ((x - 3) x + 3) x - 1 = (x - 1)**3: the stencil is exact for a cubic, b_4 and b_5
    # are rounding. The trend from b_1 (3 (x - 1)**2 h, small by the double root) used to
    # predict truncation a thousand times the rounding: every element was retried at a
    # smaller step, which lost digits.
    x = 1 + np.random.default_rng(3).uniform(-0.2, 0.2, 24)
    r = numerical_grad(lambda v: np.sum(((v - 3) * v + 3) * v - 1), x, method="adaptive")
    truth = 3 * (x - 1) ** 2                                    # by hand
    err = np.abs(r.grad - truth)
    assert r.nfev <= 13 + 5 * x.size + 5 * 2                    # at most two retried
    assert np.median(-np.log10(err / truth)) > 10.5
    assert np.mean(err <= r.error) >= 0.9


def test_derivatives_near_zero_of_smooth_functions_are_not_retried():
    # sin at its maxima and a saturated tanh: f' near zero, the Taylor terms above it
    # decay as usual; one pass of five points is enough and its bar covers
    x = np.pi / 2 + np.array([1e-3, -2e-3, 4e-3, 1e-2, -3e-2, 0.1])
    r = numerical_grad(lambda v: np.sum(np.sin(v)), x, method="adaptive")
    assert r.nfev <= 13 + 5 * x.size
    assert np.all(np.abs(r.grad - np.cos(x)) <= r.error)
    z = np.array([4.0, 5.0, -6.0, 7.5])
    r = numerical_grad(lambda v: np.sum(np.tanh(v)), z, method="adaptive")
    assert np.all(np.abs(r.grad - 1 / np.cosh(z) ** 2) <= r.error)
