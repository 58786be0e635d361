"""Kinks, ties and the complex step: resolved correctly or flagged with honest limits,
and complex step only where the function really supports it."""

import numpy as np
import pytest

from gradcheck import ConfigurationError, numerical_grad, numerical_jvp, numerical_vjp


def relu(x):
    return np.maximum(x, 0)


def within(res, truth):
    """The analytic value lies within the numerical error bar (interval if flagged)."""
    return np.abs(res.grad - truth) <= res.error


# ---------------------------------------------------------------------- ReLU and abs


@pytest.mark.parametrize("method", ["auto", "adaptive"])
def test_relu_at_the_kink_is_flagged_with_its_one_sided_limits(method):
    x = np.array([0.0, 0.7, -0.3])
    R = np.array([3.0, -1.0, 2.0])
    r = numerical_vjp(relu, x, R, method=method)
    assert r.nondifferentiable.tolist() == [True, False, False]
    assert sorted([r.left[0], r.right[0]]) == pytest.approx([0.0, 3.0], abs=1e-6)
    assert r.grad[1:] == pytest.approx([-1.0, 0.0], abs=1e-12)
    for analytic_at_zero in (0.0, 3.0, 1.5):      # any convention for relu'(0) passes
        assert within(r, np.array([analytic_at_zero, -1.0, 0.0])).all()
    assert not within(r, np.array([4.0, -1.0, 0.0]))[0]


@pytest.mark.parametrize("method", ["auto", "adaptive"])
def test_relu_within_1e8_of_the_kink_resolves_or_flags(method):
    rng = np.random.default_rng(3)
    W = rng.standard_normal((5, 6))
    x = np.array([1e-8, -1e-8, 3e-9, -4e-9, 0.5, -0.5])

    def f(v):
        return np.tanh(relu(v) @ W.T)

    R = rng.standard_normal(5)
    r = numerical_vjp(f, x, R, method=method)
    z = relu(x) @ W.T
    truth = (W.T @ (R / np.cosh(z) ** 2)) * (x > 0)
    assert within(r, truth).all()
    resolved = ~r.nondifferentiable
    assert np.all(np.abs(r.grad - truth)[resolved] < 1e-6)
    if method == "auto":     # the complex step never crosses a kink 1e-8 away
        assert r.method == "complex" and not r.nondifferentiable.any()
        np.testing.assert_allclose(r.grad, truth, rtol=1e-13, atol=1e-15)


def test_abs_rejects_complex_step_and_flags_zero():
    r = numerical_grad(lambda v: np.sum(np.abs(v)), np.array([-2.0, 0.0, 3.0, 1e-8]))
    assert r.method == "adaptive"
    assert r.complex_check == "rejected: f returned real values for complex input"
    assert r.nondifferentiable[1] and (r.left[1], r.right[1]) == pytest.approx((-1, 1))
    assert within(r, np.array([-1.0, 0.0, 1.0, 1.0])).all()


# ------------------------------------------------------------------------ max / ties


def window_max(v):
    return v.reshape(v.shape[:-1] + (-1, 4)).max(axis=-1)


@pytest.mark.parametrize("method", ["auto", "adaptive"])
def test_max_pool_near_ties_resolve_correctly_or_are_flagged(method):
    # window 1: entries 1e-9 apart (a step of 1e-6 would cross the tie: one-sided
    # differences 0 and 1, a central difference of 0.5); window 2: an exact tie.
    x = np.array([1.0, 1.0 + 1e-9, 0.3, -0.2, 2.0, 2.0, 1.0, 0.0])
    r = numerical_vjp(window_max, x, np.array([1.0, 1.0]), method=method, seed=1)
    winner = np.array([0, 1, 0, 0, 0, 0, 0, 0.0])
    for tie_owner in (np.array([0, 0, 0, 0, 1, 0, 0, 0.0]), np.array([0, 0, 0, 0, 0, 1, 0, 0.0])):
        assert within(r, winner + tie_owner).all()
    assert r.nondifferentiable[4] and r.nondifferentiable[5]
    ok = ~r.nondifferentiable     # resolved elements carry the winner's derivative, not 0.5
    np.testing.assert_allclose(r.grad[ok], winner[ok], atol=1e-6)


# ---------------------------------------------------------------------- complex step


def test_complex_step_accepted_for_analytic_code_with_comparisons():
    x = np.array([-1.5, -0.2, 0.4, 2.0])
    r = numerical_grad(lambda v: np.sum(np.tanh(relu(v)) ** 2), x)
    assert (r.method, r.complex_check) == ("complex", "accepted")
    t = np.tanh(relu(x))
    np.testing.assert_allclose(r.grad, 2 * t * (1 - t**2) * (x > 0), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("f, reason", [
    # complex output, but abs() takes the modulus: Im parts are wrong, plausibly so
    (lambda v: np.sum(v * np.abs(v)), "complex step disagrees with real differences"),
    # the real part only
    (lambda v: np.sum(np.exp(v.real) + 0 * v), "complex step disagrees"),
    # a ufunc without a complex loop
    (lambda v: np.sum(np.heaviside(v, 0.5) * v**2), "f raised TypeError on complex input"),
    # a cast to float drops the imaginary part
    (lambda v: np.sum(np.asarray(v, dtype=float) ** 3), "f returned real values for complex input"),
])
def test_complex_step_rejected_when_code_breaks_it(f, reason):
    x = np.array([0.3, -1.2, 2.5])
    r = numerical_grad(f, x)
    assert r.method == "adaptive" and r.complex_check.startswith("rejected: " + reason)
    real = numerical_grad(f, x, method="adaptive")
    np.testing.assert_array_equal(r.grad, real.grad)


def test_complex_step_works_with_colors_and_saturation():
    import scipy.sparse as sp
    x = np.array([30.0, -25.0, 0.5, 1e-3, -2.0, 12.0])
    R = np.arange(1.0, 7.0)
    r = numerical_vjp(np.tanh, x, R, pattern=sp.eye(6, dtype=bool))
    truth = R / np.cosh(x) ** 2           # includes 4e-26: real differences return 0
    assert r.method == "complex" and r.ncolors == 1
    np.testing.assert_allclose(r.grad, truth, rtol=1e-13)
    real = numerical_vjp(np.tanh, x, R, method="adaptive")
    assert within(real, truth).all() and real.grad[0] == 0.0


def test_forced_complex_on_real_only_code_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="method='complex' needs f to return complex"):
        numerical_grad(lambda v: np.sum(np.abs(v)), np.ones(3), method="complex")


def test_elements_where_complex_arithmetic_overflows_fall_back_to_real_differences():
    x = np.array([-800.0, -3.0, 0.5, 40.0, 1.0, 2.0, -1.0, 0.1])

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))    # complex exp(800) overflows to nan; real gives 0

    with np.errstate(over="ignore", invalid="ignore"):
        r = numerical_vjp(sigmoid, x, np.ones(8), seed=1)
        truth = np.exp(-x) / (1 + np.exp(-x)) ** 2
    truth[0] = 0.0                     # 1e-348 underflows
    assert r.method == "complex" and r.complex_check.endswith(
        "1 entries by adaptive differences (complex step not finite)")
    assert np.all(np.isfinite(r.grad)) and within(r, truth).all()
    np.testing.assert_allclose(r.grad[1:], truth[1:], rtol=1e-14)


# ------------------------------------------------------------- kinks near the point


@pytest.mark.parametrize("dtype, distance, precision", [(np.float64, 3e-7, 1e-8),
                                                         (np.float32, 2e-3, 1e-3)])
def test_a_kink_within_the_first_step_is_located_and_stepped_inside(dtype, distance,
                                                                      precision):
    # relu(x - c) with the kink at distance d above x: the first stencil straddles it;
    # the secants of the straddling pass locate it and the retry steps inside, so the
    # right derivative (0 below the kink) comes out at the dtype's precision
    x = np.array([0.5], dtype)
    c = float(x[0]) + distance

    def f(v):
        return np.maximum(v - c, 0) + 0.25 * v

    r = numerical_grad(lambda v: np.sum(f(v)), x, method="adaptive")
    assert not r.nondifferentiable[0]
    assert abs(r.grad[0] - 0.25) <= r.error[0] < precision * 0.25
    # the center, twelve points measuring f's rounding (three probes), three passes (two
    # retries) at most
    assert r.step[0] < distance / 3 and r.nfev <= 1 + 12 + 3 * 5


def test_the_complex_step_sees_a_branch_on_the_real_part_exactly_at_zero():
    # regression: x + ih and x - 3ih both have real part 0, so where(x.real > 0) took one
    # branch for both; the two points' real parts now straddle zero
    r = numerical_grad(lambda v: np.sum(np.where(v.real > 0, v, 0)), np.array([0.0, 1.0]))
    assert r.method == "complex" and r.nondifferentiable.tolist() == [True, False]
    assert (r.left[0], r.right[0]) == (0.0, 1.0) and r.grad[1] == 1.0


def test_linear_maps_get_no_kink_flags_along_directions():
    # numerical_jvp without a cotangent judges every output entry on its own; rounding of
    # entries formed from cancelling terms kept one-sided derivatives of linear maps up
    # to 1e-11 apart (float64) and were flagged as kinks (9 entries of 52 626 over
    # float32 and float64 maps). A kink now needs its one-sided derivatives sqrt(eps) of
    # the larger apart. (float32 maps still had 3 such entries, with gaps up to 5e-3.)
    flagged = 0
    for s in range(1, 400, 2):                    # float64 draws of the measured loop
        r = np.random.default_rng(s)
        n, m, k = r.integers(2, 40), r.integers(2, 60), r.integers(1, 8)
        A = r.standard_normal((m, n))
        x = r.standard_normal(n) * r.choice([1e-3, 1, 1e3])
        V = r.choice([-1.0, 1.0], (k, n)) if s % 3 else r.standard_normal((k, n))
        res = numerical_jvp(lambda v: A @ v, x, V, method="adaptive")
        flagged += int(res.nondifferentiable.sum())
        np.testing.assert_allclose(res.jvp, V @ A.T, rtol=1e-6, atol=1e-6 * np.abs(x).max())
    assert flagged == 0
