"""A leaky ReLU whose backward has the wrong slope, on inputs with exact zeros (kinks):
the slip is named ``value_mask`` (the negative inputs, with the factor), in float64 and
float32 -- not ``outside_kink_limits`` on the kink elements alone, nor left described.
Layers written here by hand; the expected factor is bad slope / true slope."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("alpha, bad", [(0.01, 0.1), (0.2, 0.1), (0.2, 0.0), (0.01, 1e-4)])
@pytest.mark.parametrize("zeros", [2, 6])
def test_a_wrong_leaky_slope_with_zeros_in_x_is_a_value_mask(dtype, alpha, bad, zeros):
    r = np.random.default_rng([5, zeros])
    x = r.standard_normal((4, 6)).astype(dtype)
    x.reshape(-1)[r.choice(x.size, zeros, replace=False)] = 0

    def f(x):
        return np.where(x > 0, x, dtype(alpha) * x)

    def f_vjp(g, x):
        return ((g * np.where(x > 0, 1.0, bad)).astype(dtype),)

    report = check_vjp(f, f_vjp, (x,), argnames=("x",))
    d = report["x"].diagnosis
    assert not report.passed and d.cause == "value_mask", d.message
    assert "where x < 0" in d.message
    if bad:
        assert f"{bad / alpha:g} times the numerical one there" in d.message, d.message
    else:
        assert "the analytic gradient is zero there" in d.message
