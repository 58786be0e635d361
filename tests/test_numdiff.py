"""numerical_grad / _vjp / _jacobian / _jvp: values against analytic derivatives, error
bars, dtypes, steps, vectorized evaluation in bounded chunks, and bad options."""

import json

import numpy as np
import pytest

from gradcheck import (
    ConfigurationError,
    UserCodeError,
    numerical_grad,
    numerical_jacobian,
    numerical_jvp,
    numerical_vjp,
)

RNG = np.random.default_rng(7)
X = RNG.standard_normal(12)
R = RNG.standard_normal(12)


def softplus_sum(x):
    return np.sum(np.log1p(np.exp(x)) * np.cos(x))


def softplus_sum_grad(x):
    s = 1 / (1 + np.exp(-x))
    return s * np.cos(x) - np.log1p(np.exp(x)) * np.sin(x)


# ------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("method, digits", [("auto", 14.5), ("complex", 14.5),
                                            ("adaptive", 11.5), ("central6", 10),
                                            ("central4", 9.5), ("central", 7)])
def test_grad_matches_analytic_with_error_bars(method, digits):
    r = numerical_grad(softplus_sum, X, method=method)
    true = softplus_sum_grad(X)
    err = np.abs(r.grad - true)
    assert np.median(-np.log10(err / np.abs(true) + 1e-300)) > digits
    assert np.mean(r.error >= err) >= 0.9
    assert r.grad.shape == X.shape and r.error.shape == X.shape and r.step.shape == X.shape
    assert not r.nondifferentiable.any() and np.isnan(r.left).all()


def test_auto_uses_complex_step_when_it_applies():
    r = numerical_grad(softplus_sum, X)
    assert (r.method, r.complex_check) == ("complex", "accepted")
    assert r.nfev <= 2 * X.size + 25


def test_adaptive_costs_five_evaluations_per_element_on_smooth_functions():
    r = numerical_grad(softplus_sum, X, method="adaptive")
    assert r.method == "adaptive"
    assert r.nfev <= 5 * X.size + 1 + 5 * 3    # a few retries at most


def test_the_former_name_richardson_still_selects_the_adaptive_stencil():
    old = numerical_grad(softplus_sum, X, method="richardson")
    new = numerical_grad(softplus_sum, X, method="adaptive")
    assert old.method == new.method == "adaptive"
    np.testing.assert_array_equal(old.grad, new.grad)
    np.testing.assert_array_equal(old.error, new.error)


def test_vjp_matches_analytic_and_differences_per_row():
    # tiny gradient entries next to huge outputs: per-row differencing keeps them
    c = 10.0 ** np.linspace(-6, 6, X.size)
    r = numerical_vjp(lambda x: c * np.tanh(x), X, R, method="adaptive")
    true = R * c / np.cosh(X) ** 2
    assert np.all(np.abs(r.grad - true) <= r.error)
    assert np.max(np.abs(r.grad - true) / np.abs(true)) < 1e-9


def test_steps_follow_each_inputs_own_scale():
    x = 10.0 ** np.linspace(-6, 6, 13)
    r = numerical_vjp(np.log, x, np.ones_like(x), method="adaptive")
    np.testing.assert_allclose(r.grad, 1 / x, rtol=1e-9)
    assert np.all(np.abs(r.grad - 1 / x) <= r.error)
    big = x >= 1                       # the step is proportional to x over six decades
    assert np.all((r.step[big] / x[big] > 2.0**-13) & (r.step[big] / x[big] < 2.0**-8))
    assert np.all(r.step[x < 1e-3] < x[x < 1e-3])     # shrunk out of log's domain wall


def test_sqrt_near_zero_shrinks_the_step_instead_of_returning_nan():
    x = np.array([1e-6, 1e-3, 4.0])
    r = numerical_vjp(np.sqrt, x, np.ones(3), method="adaptive")
    np.testing.assert_allclose(r.grad, 0.5 / np.sqrt(x), rtol=1e-8)
    assert r.step[0] < 1e-6 and np.all(np.isfinite(r.error))


def test_user_scale_sets_the_step():
    x = np.array([0.0, 1e-4])
    r1 = numerical_grad(lambda v: np.sum(np.exp(v)), x, method="adaptive", scale=1.0)
    r2 = numerical_grad(lambda v: np.sum(np.exp(v)), x, method="adaptive", scale=1e-3)
    # 0.5 * eps**(1/6) = 1.23e-3 -> 2**-10 ; times 1e-3 -> 2**-20
    np.testing.assert_array_equal(r1.step, 2.0**-10)
    np.testing.assert_array_equal(r2.step, 2.0**-20)
    np.testing.assert_allclose(r2.grad, np.exp(x), rtol=1e-9)


def test_default_scale_caps_the_step_at_twice_the_arguments_root_mean_square():
    exp_sum = lambda v: np.sum(np.exp(v))    # noqa: E731
    # [0, 1e-4]: root mean square 7.07e-5, below half of 1.23e-3 (the step a scale of 1
    # gives): the step is 2 * 7.07e-5 = 1.41e-4 -> 2**-13 (log2 = -12.79)
    r = numerical_grad(exp_sum, np.array([0.0, 1e-4]), method="adaptive")
    np.testing.assert_array_equal(r.step, 2.0**-13)
    np.testing.assert_allclose(r.grad, np.exp([0.0, 1e-4]), rtol=1e-9)
    # [0, 0.01]: root mean square 7.1e-3, above 6.2e-4: the floor stays 1 (2**-10)
    r = numerical_grad(exp_sum, np.array([0.0, 0.01]), method="adaptive")
    np.testing.assert_array_equal(r.step, 2.0**-10)
    # all zeros: the floor is 1
    r = numerical_grad(exp_sum, np.zeros(2), method="adaptive")
    np.testing.assert_array_equal(r.step, 2.0**-10)
    # float32 [0, 1e-3]: 7.07e-4, below half of 0.035 (0.5 * eps32**(1/6)):
    # 1.41e-3 -> 2**-9 (log2 = -9.47)
    r = numerical_grad(exp_sum, np.array([0.0, 1e-3], np.float32), method="adaptive")
    np.testing.assert_array_equal(r.step, 2.0**-9)


def test_jacobian_dense_and_jvp_against_analytic():
    A = RNG.standard_normal((5, 12))

    def f(x):
        return np.sin(x @ A.T)

    J = (np.cos(A @ X))[:, None] * A
    rj = numerical_jacobian(f, X)
    assert rj.jac.shape == (5, 12)
    np.testing.assert_allclose(rj.jac, J, rtol=1e-12, atol=1e-13)
    # the reference is rounded too: cos(A @ x) carries eps * |A||x| in its argument
    assert np.all(np.abs(rj.jac - J) <= rj.error + 1e-15 * np.abs(A))
    v = RNG.standard_normal(12)
    rv = numerical_jvp(f, X, v, method="adaptive")
    np.testing.assert_allclose(rv.jvp, J @ v, rtol=1e-10)
    assert np.all(np.abs(rv.jvp - J @ v) <= rv.error)
    u = RNG.standard_normal(5)
    V = RNG.standard_normal((3, 12))
    rc = numerical_jvp(f, X, V, cotangent=u)
    assert rc.jvp.shape == (3,)
    np.testing.assert_allclose(rc.jvp, V @ (J.T @ u), rtol=1e-12)


# ----------------------------------------------------------------------------- dtype


def test_float32_is_evaluated_in_float32_with_float32_error_bars():
    seen = set()
    W = RNG.standard_normal((6, 12)).astype(np.float32)

    def f(x):
        seen.add(x.dtype)
        return np.tanh(x @ W.T)

    x = X.astype(np.float32)
    R6 = RNG.standard_normal(6)
    for method in ("adaptive", "auto"):
        r = numerical_vjp(f, x, R6, method=method)
        z = W.astype(np.float64) @ x.astype(np.float64)
        true = W.astype(np.float64).T @ (R6 / np.cosh(z) ** 2)
        err = np.abs(r.grad.astype(np.float64) - true)
        assert r.grad.dtype == np.float32
        assert np.median(-np.log10(err / np.abs(true))) > (4.9 if method == "adaptive" else 6)
        assert np.mean(r.error >= err) >= 0.9
        assert np.median(r.error / np.abs(true)) > 1e-8    # float32 rounding, not float64
    assert seen == {np.dtype(np.float32), np.dtype(np.complex64)}


def test_float32_work_behind_a_float64_interface_gets_float32_error_bars():
    W = RNG.standard_normal((6, 12))

    def f(x):       # casts its input: the result is float64 but only float32-accurate
        return np.tanh(W.astype(np.float32) @ x.astype(np.float32)).astype(np.float64)

    R6 = RNG.standard_normal(6)
    true = W.T @ (R6 / np.cosh(W @ X) ** 2)          # closed form in float64
    r = numerical_vjp(f, X, R6)
    err = np.abs(r.grad - true)
    assert not r.nondifferentiable.any()             # float32 noise is not a kink
    assert np.all(r.error >= err)                    # the error bars hold
    assert np.median(err / np.abs(true)) < 1e-3      # and the result is still useful

    def g(x):       # the same map computed in float64 is not mistaken for float32 work
        return np.tanh(W @ x)

    r64 = numerical_vjp(g, X, R6)
    assert np.median(r64.error / np.abs(true)) < 1e-9


# ---------------------------------------------------------------- batches and memory


def test_vectorized_equals_one_point_per_call_and_memory_bounds_the_batch():
    batches = []

    def f(X):
        batches.append(X.shape[0] if X.ndim == 2 else 1)
        return np.tanh(X) * 2.0

    x = RNG.standard_normal(200)
    plain = numerical_vjp(lambda v: np.tanh(v) * 2.0, x, np.ones(200), method="adaptive")
    big = numerical_vjp(f, x, np.ones(200), method="adaptive", vectorized=True)
    assert max(batches) > 200
    batches.clear()
    budget = 64 * 1024
    small = numerical_vjp(f, x, np.ones(200), method="adaptive", vectorized=True,
                          memory=budget)
    point_bytes = x.nbytes + 200 * (8 * 2 + 3 * 8)
    assert max(batches) <= max(5, budget // point_bytes)
    assert max(batches) >= budget // point_bytes // 2
    np.testing.assert_array_equal(small.grad, big.grad)
    np.testing.assert_array_equal(plain.grad, big.grad)
    assert small.nfev == big.nfev == plain.nfev


def test_to_dict_is_json_ready():
    r = numerical_grad(lambda v: np.sum(np.abs(v)), np.array([0.0, 2.0]))
    d = json.loads(json.dumps(r.to_dict()))
    assert d["format"] == 1 and d["method"] == "adaptive"
    assert d["nondifferentiable"] == [True, False] and d["left"][1] is None
    assert d["grad"][1] == pytest.approx(1.0)


# ------------------------------------------------------------------------ bad input


def _scalar(v):
    return np.sum(v**2)


BAD = [
    (dict(method="fancy"), r"method must be one of \('auto', 'complex', 'adaptive', .*\) \(or "
                           r"the former name 'richardson' for 'adaptive'\); got 'fancy'"),
    (dict(scale=-1.0), r"scale must be positive and finite .*got -1.0"),
    (dict(scale=np.ones(3)), r"scale must be a positive number or an array broadcastable"),
    (dict(step=0.0), r"step must be positive and finite .*got 0.0"),
    (dict(vectorized="yes"), r"vectorized must be True or False; got 'yes'"),
    (dict(memory=0), r"memory must be a positive number of bytes .*got 0"),
    (dict(max_retries=-1), r"max_retries must be a non-negative integer; got -1"),
    (dict(seed=True), r"seed must be an integer or None; got True"),
]


@pytest.mark.parametrize("options, message", BAD)
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigurationError, match=message):
        numerical_grad(_scalar, np.ones(4), **options)


@pytest.mark.parametrize("call, error, message", [
    (lambda: numerical_grad(3, np.ones(2)), ConfigurationError, "f must be callable; got int"),
    (lambda: numerical_grad(_scalar, np.ones(2) + 1j), ConfigurationError,
     "x must hold float16, bfloat16, float32 or float64 values .* got dtype complex128"),
    (lambda: numerical_grad(_scalar, [1.0, np.nan]), ConfigurationError,
     "x must be finite; got an array containing NaN or inf"),
    (lambda: numerical_grad(lambda v: v, np.ones(2)), UserCodeError,
     r"f must return a scalar for numerical_grad; it returned an array of shape \(2,\)"),
    (lambda: numerical_grad(lambda v: np.sum(np.log(v)), -np.ones(2)), UserCodeError,
     "f\\(x\\) is not finite at the point given"),
    (lambda: numerical_vjp(np.tanh, np.ones(3), np.ones(4)), ConfigurationError,
     r"cotangent must have shape \(3,\); got \(4,\)"),
    (lambda: numerical_vjp(np.tanh, np.ones(3), np.ones(3), pattern=np.ones((2, 3), bool)),
     ConfigurationError, r"pattern must have shape \(f\(x\).size, x.size\) = \(3, 3\); got \(2, 3\)"),
    (lambda: numerical_vjp(np.tanh, np.ones(3), np.ones(3), colors=[0, 1, 2]),
     ConfigurationError, "colors needs a pattern to be checked against"),
    (lambda: numerical_vjp(lambda v: np.cumsum(v), np.ones(3), np.ones(3),
                           pattern=np.tril(np.ones((3, 3), bool)), colors=[0, 1, 0]),
     ConfigurationError, "colors must not give two elements that share an output row"),
    (lambda: numerical_jvp(np.tanh, np.ones(3), np.ones(4)), ConfigurationError,
     r"v must have shape \(3,\); got \(4,\)"),
    (lambda: numerical_grad(lambda v: np.sum(v), np.ones(2), vectorized=True),
     UserCodeError, "with vectorized=True, f must map a batch"),
    (lambda: numerical_vjp(lambda v: v[:1] if v[0] != 1 else v, np.ones(2), np.ones(2)),
     UserCodeError, r"f returned shape \(1,\) at a perturbed point but \(2,\) at x"),
    (lambda: numerical_vjp(lambda v: v[..., :1] if v.shape[0] > 1 else v, np.ones(2),
                           np.ones(2), vectorized=True),
     UserCodeError, r"with vectorized=True, f returned shape \(\d+, 1\) for a batch"),
    (lambda: numerical_grad(lambda v: float(np.sum(v.real**2)), np.ones(2), method="complex"),
     ConfigurationError, "method='complex' needs f to return complex values"),
])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_bad_calls_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------- error model


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rounding_inside_f_that_the_values_do_not_show_is_read_off_the_data(dtype):
    # the cube (x - 1)^3 written out: near its double root the value and the derivative
    # are tiny while every intermediate is of size 1, so their rounding is 1e4 times what
    # the value's own magnitude suggests; the fit's top coefficients show it
    x = (1 + np.linspace(-0.15, 0.15, 24)).astype(dtype)

    def f(v):
        return ((v - 3) * v + 3) * v - 1

    r = numerical_vjp(f, x, np.ones(24), method="adaptive")
    truth = 3 * (x.astype(np.float64) - 1) ** 2
    err = np.abs(r.grad - truth)
    assert np.mean(err <= r.error) >= 0.9
    assert np.all(err <= 10 * r.error)


def test_a_retry_is_held_to_the_pass_before_it_for_once_differentiable_functions():
    # softsign's second derivative jumps at 0: a stencil over it sees a smooth-looking
    # trend and its error falls like h, not h^5; the bar must still hold
    x = np.concatenate([np.geomspace(1e-4, 1e-1, 20), -np.geomspace(1e-4, 1e-1, 20)])
    for dtype in (np.float64, np.float32):
        xd = x.astype(dtype)
        r = numerical_vjp(lambda v: v / (1 + np.abs(v)), xd, np.ones(40), method="adaptive")
        truth = 1 / (1 + np.abs(xd.astype(np.float64))) ** 2
        assert np.all(np.abs(r.grad - truth) <= 10 * r.error)
        assert np.mean(np.abs(r.grad - truth) <= r.error) >= 0.9


def test_a_retry_at_half_the_step_reuses_the_two_points_it_shares(monkeypatch):
    # tanh(2x) exp(0.3x) at base steps of 2**-10: some elements' truncation is above
    # their rounding and they are retried at half the step, whose nodes -2 and 2 are the
    # points -1 and 1 of the pass before: three new evaluations, not five, and the same
    # result as with five (the values' magnitude, for the rounding bar, is the larger of
    # the two passes': a bar wider by a hair where they differ). Without the extra node
    # of the first pass, which resolves these elements before any retry (below)
    import gradcheck.numdiff._economy as economy

    monkeypatch.setattr(economy, "EXTRA_TRUNCATION", 0.0)
    x = np.linspace(-3.0, 3.0, 25)
    R = np.random.default_rng(0).standard_normal(x.size)

    def f(v):
        return np.tanh(2 * v) * np.exp(0.3 * v)

    truth = R * (2 * (1 - np.tanh(2 * x) ** 2) + 0.3 * np.tanh(2 * x)) * np.exp(0.3 * x)
    calls = []

    def counted(v):
        calls.append(1)
        return f(v)

    runs = {}
    for reuse in (True, False):
        monkeypatch.setattr(economy, "REUSE", reuse)
        calls.clear()
        runs[reuse] = numerical_vjp(counted, x, R, method="adaptive"), len(calls)
    (a, n_a), (b, n_b) = runs[True], runs[False]
    assert np.all(np.abs(a.grad - b.grad) <= 1e-3 * b.error)
    assert np.all((a.error >= b.error * (1 - 1e-12)) & (a.error <= 1.01 * b.error))
    assert np.all(np.abs(a.grad - truth) <= a.error)            # and right, by hand
    assert n_a < n_b and (n_b - n_a) % 2 == 0                    # two points per retry


def _sin5_runs(monkeypatch, settings):
    """sin(5x) on 41 points of [-2, 2] (first steps 2**-10 and 2**-9: many elements'
    truncation a few to a few hundred times their rounding), once per setting of the
    adaptive module's constants: the results with the evaluations counted, the truth by
    hand, and each element's first step (the step rule's)."""
    import gradcheck.numdiff._adaptive as adaptive
    import gradcheck.numdiff._economy as economy
    from gradcheck.numdiff._steps import base_steps

    x = np.linspace(-2.0, 2.0, 41)
    R = np.random.default_rng(0).standard_normal(x.size)
    runs = []
    for setting in settings:
        for name, value in setting.items():
            monkeypatch.setattr(economy if hasattr(economy, name) else adaptive, name, value)
        calls = []

        def counted(v):
            calls.append(1)
            return np.sin(5 * v)

        runs.append((numerical_vjp(counted, x, R, method="adaptive"), len(calls)))
    first = base_steps(x, 1.0, np.finfo(np.float64).eps, 5)
    return runs, R * 5 * np.cos(5 * x), first


def test_a_first_pass_resolved_by_one_more_node_is_not_retried(monkeypatch):
    # a first pass whose truncation is within 256 roundings takes the node -3h too, one
    # evaluation, and keeps that order-6 fit where it resolves the element (EXTRA_NODE):
    # fewer evaluations than the retries it replaces, the same values within the bars,
    # every bar covering the truth, and more elements kept at their first step
    runs, truth, first = _sin5_runs(monkeypatch, [{"EXTRA_TRUNCATION": 256.0},
                                                  {"EXTRA_TRUNCATION": 0.0}])
    (a, n_a), (b, n_b) = runs
    assert n_a < n_b
    assert np.all(np.abs(a.grad - truth) <= a.error)
    assert np.all(np.abs(b.grad - truth) <= b.error)
    assert np.all(np.abs(a.grad - b.grad) <= a.error + b.error)
    assert np.sum(a.step == first) > np.sum(b.step == first)


def test_a_retry_a_half_step_resolves_takes_the_half_step(monkeypatch):
    # truncation within 256 roundings falls by 2**5 at half the step while the rounding
    # doubles: the retry takes exactly half (three new evaluations, with the two points
    # it shares) rather than the smooth model's quarter (five), right all the same
    off = {"EXTRA_TRUNCATION": 0.0}
    runs, truth, first = _sin5_runs(monkeypatch, [{**off, "HALF_STEP": 256.0},
                                                  {**off, "HALF_STEP": 0.0}])
    (a, n_a), (b, n_b) = runs
    assert n_a < n_b
    assert np.all(np.abs(a.grad - truth) <= a.error)
    assert np.all(np.abs(b.grad - truth) <= b.error)
    assert np.all(np.abs(a.grad - b.grad) <= a.error + b.error)
    assert np.sum(a.step < first / 2) < np.sum(b.step < first / 2)
