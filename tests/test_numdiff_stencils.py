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


def _near_a_minimum(v):
    return np.sum((v - 1) ** 2 + 0.1 * (v - 1) ** 3)


def test_a_derivative_near_zero_is_not_taken_for_fast_decaying_taylor_terms():
    # (x - 1)**2 + 0.1 (x - 1)**3 next to its minimum: f' = b_1 / h is small, b_2 is not,
    # and the ratio b_2 / b_1 (the trend's largest when b_1 was one of its terms) said
    # the Taylor terms barely decay -- truncation far above the rounding, and each
    # element was retried at a smaller step, magnifying its rounding. The trend now
    # starts at b_2; one pass of five points per element, its bar covers.
    x = 1 + np.array([1e-5, -3e-5, 1e-4, -3e-4, 1e-3, 3e-3])
    r = numerical_grad(_near_a_minimum, x, method="adaptive")
    truth = 2 * (x - 1) + 0.3 * (x - 1) ** 2                   # by hand
    assert r.nfev <= 13 + 5 * x.size
    assert np.all(np.abs(r.grad - truth) <= r.error)
    assert np.all(np.abs(r.grad - truth) <= 1e-11)
