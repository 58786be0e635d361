"""A leaky ReLU whose backward has the wrong slope for x < 0 (written here by hand):
with exact zeros in x (kinks) it is ``kink_branch`` -- the threshold is where the kinks
are, the factor holds on the negative side and at the kinks, and the message gives the
slope as the backward has it and as it should be -- in float64 and float32, on six
elements (where ``value_mask``, tried first, cannot rule out chance); on many elements
``value_mask`` may name it first, and without zeros it is ``value_mask``. It was named
``outside_kink_limits`` (the two kinks alone) or left described in float32."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp


def _leaky(dtype, alpha, bad, shape, zeros, seed, ge=False):
    r = np.random.default_rng([5, zeros, seed])
    x = r.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    at = r.permutation(x.size)
    flat[at[zeros:zeros + 2]] = -np.abs(flat[at[zeros:zeros + 2]]) - 0.1   # two negatives
    flat[at[:zeros]] = 0

    def f(x):
        return np.where(x > 0, x, dtype(alpha) * x)

    def f_vjp(g, x):
        keep = (x >= 0) if ge else (x > 0)
        return ((g * np.where(keep, 1.0, bad)).astype(dtype),)

    return check_vjp(f, f_vjp, (x,), argnames=("x",))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("alpha, bad", [(0.01, 0.1), (0.2, 0.1), (0.1, 0.0), (0.01, 1e-4)])
@pytest.mark.parametrize("shape, zeros", [((2, 3), 2), ((4, 6), 2), ((4, 6), 6)])
def test_a_wrong_leaky_slope_with_zeros_in_x_is_the_branch(dtype, alpha, bad, shape, zeros):
    for seed in range(2):
        for ge in (False, True):        # the backward takes either branch at x = 0
            report = _leaky(dtype, alpha, bad, shape, zeros, seed, ge)
            d = report["x"].diagnosis
            assert not report.passed
            if d.cause == "value_mask":     # enough elements to read the threshold off
                assert np.prod(shape) > 6 and "where x < 0" in d.message, d.message
                if bad:
                    assert d.evidence["factor"] == pytest.approx(bad / alpha, rel=1e-3)
                continue
            assert d.cause == "kink_branch", d.message
            assert d.message.startswith("Where x < 0 ")
            assert abs(d.evidence["factor"] - bad / alpha) <= 1e-3 * bad / alpha + 1e-6
            if bad:
                assert f"is {bad:.4g} in the backward where {alpha:.4g} belongs" in d.message
            else:
                assert "the analytic gradient is zero" in d.message


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_without_zeros_it_is_a_value_mask(dtype):
    report = _leaky(dtype, 0.01, 0.1, (4, 6), 0, 0)
    d = report["x"].diagnosis
    assert d.cause == "value_mask" and "10 times the numerical one there" in d.message


def test_a_right_leaky_relu_with_zeros_passes():
    for ge in (False, True):
        report = _leaky(np.float32, 0.01, 0.01, (4, 6), 6, 0, ge)
        assert report.passed and report["x"].diagnosis is None
