"""gradcheck.jax: verdicts on JAX functions and custom_vjp rules, pytrees, check_grads.

Expected verdicts follow from how each case is built: a planted error at a known
element, a backward that JAX cannot differentiate again, closed forms.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gradcheck.jax needs JAX (pip install jax)")
jnp = jax.numpy

from gradcheck import ConfigurationError, UserCodeError  # noqa: E402
from gradcheck.jax import check_function, check_grads  # noqa: E402


def _custom(fwd_value, bwd):
    @jax.custom_vjp
    def f(x):
        return fwd_value(x)

    f.defvjp(lambda x: (fwd_value(x), x), bwd)
    return f


softplus = _custom(lambda x: jnp.logaddexp(x, 0.0), lambda x, g: (g * jax.nn.sigmoid(x),))


def test_a_right_custom_vjp_passes_in_float32_at_both_orders():
    x = jnp.linspace(-3.0, 3.0, 9)
    report = check_function(softplus, (x,), order=2)
    assert report.passed and report.dtype == "float32"
    assert [a.name for a in report.arguments] == ["x", "order2.x", "order2.grad_output"]


def test_pytrees_are_named_by_path_and_ints_pass_through():
    def f(params, x, n):
        return jnp.tanh(x @ params["w"] + params["b"]) ** n

    params = {"w": jnp.full((3, 2), 0.3), "b": jnp.array([0.1, -0.2])}
    x = jnp.arange(12.0).reshape(4, 3) / 10
    report = check_function(f, (params, x, 2))
    assert report.passed
    assert [a.name for a in report.arguments] == ["params['b']", "params['w']", "x"]


def test_kinks_and_ties_pass():
    relu = _custom(lambda x: jnp.maximum(x, 0.0), lambda x, g: (g * (x > 0),))
    assert check_function(relu, (jnp.array([-1.0, 0.0, 2.0, 0.0]),)).passed
    values = jnp.array([3.0, 1.0, 3.0, 2.0, 1.0])
    assert check_function(lambda v: jnp.sort(v) * jnp.arange(5.0), (values,)).passed
    tied = jnp.round(jnp.asarray(np.random.default_rng(0).standard_normal((4, 6))) * 2)
    assert check_function(lambda t: jnp.max(t.reshape(4, 3, 2), axis=-1), (tied,)).passed


def test_a_1e5_error_in_one_element_is_caught_in_float64():
    with jax.enable_x64(True):
        x = jnp.linspace(0.5, 2.0, 7, dtype=jnp.float64)
        off = _custom(jnp.sin, lambda x, g: (g * jnp.cos(x) * (1 + 1e-5 * (jnp.arange(7) == 3)),))
        report = check_function(off, (x,))
    assert not report.passed and report["x"].n_failed == 1
    assert report["x"].worst_index == (3,) and report.dtype == "float64"


def test_check_grads_drop_in():
    check_grads(jnp.sin, (jnp.arange(4.0),), order=2, modes=("rev",))
    check_grads(jnp.sin, (jnp.arange(4.0),), 1, ["rev"], atol=1e-6, rtol=1e-6, eps=1e-3)
    wrong = _custom(jnp.sin, lambda x, g: (-g * jnp.cos(x),))
    with pytest.raises(AssertionError, match=r"FAILED") as info:
        check_grads(wrong, (jnp.linspace(-1.0, 1.0, 5),), order=1, modes=("rev",))
    assert info.value.report["x"].diagnosis.cause == "sign_flipped"
    check_grads(jnp.sin, (jnp.arange(4.0),), order=1)              # jax's default modes
    with pytest.raises(ConfigurationError, match=r"unknown mode\(s\) \['jvp'\]"):
        check_grads(jnp.sin, (jnp.arange(4.0),), 1, modes=("jvp",))


def test_second_order_catches_a_backward_wrong_only_in_its_own_derivative():
    # first order right; stop_gradient hides d/dx of the backward from jax.vjp
    cube = _custom(lambda x: x ** 3,
                   lambda x, g: (3 * g * jax.lax.stop_gradient(x) ** 2,))
    x = jnp.linspace(0.5, 2.0, 6)
    check_grads(cube, (x,), order=1, modes=("rev",))
    with pytest.raises(AssertionError) as info:
        check_grads(cube, (x,), order=2, modes=("rev",))
    report = info.value.report
    assert report["x"].passed and not report["order2.x"].passed
    assert report["order2.grad_output"].passed


def test_a_backward_that_leaves_jax_fails_at_order_2_with_a_sentence():
    npbwd = _custom(jnp.sin, lambda x, g: (jnp.asarray(np.asarray(g) * np.cos(np.asarray(x))),))
    x = jnp.linspace(-1.0, 1.0, 5)
    assert check_function(npbwd, (x,)).passed
    with pytest.raises(UserCodeError, match=r"JAX cannot differentiate the backward of f "
                                            r"again .*leaves JAX"):
        check_function(npbwd, (x,), order=2)


@pytest.mark.parametrize("args, message", [
    ([jnp.arange(3)], r"no floating-point array among args"),
    ((jnp.array([1.0, jnp.nan]),), r"contains NaN or infinity"),
    ((jnp.ones(2, dtype=jnp.float8_e5m2),), r"checked in float16, bfloat16, float32 or "
                                            r"float64"),
    (jnp.ones(3), r"args must be a tuple of arguments"),
])
def test_bad_args_are_configuration_errors(args, message):
    with pytest.raises(ConfigurationError, match=message):
        check_function(jnp.sin, args)


# --------------------------------------------------------------------------- forward mode


def _custom_jvp(value, tangent):
    """``value(x)`` with the forward rule ``tangent(x, t)`` (JAX transposes it for jax.vjp)."""
    @jax.custom_jvp
    def f(x):
        return value(x)

    f.defjvp(lambda p, t: (value(p[0]), tangent(p[0], t[0])))
    return f


def test_forward_mode_catches_a_jvp_term_the_reverse_check_cannot_see():
    # a term that does not scale with the tangent: jax.vjp transposes the linear part only,
    # so the VJP is right and a reverse check passes; the JVP itself is wrong
    sine = _custom_jvp(jnp.sin, lambda x, t: jnp.cos(x) * t + 1e-4 * jnp.cos(x))
    with jax.enable_x64(True):
        x = jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float64)
        check_grads(sine, (x,), order=1, modes=("rev",))
        with pytest.raises(AssertionError, match=r"fwd\.x") as info:
            check_grads(sine, (x,), order=1)                        # jax's default modes
    report = info.value.report
    assert [a.name for a in report.arguments] == ["fwd.x", "x"]
    assert report["x"].passed and not report["fwd.x"].passed
    assert report["fwd.x"].diagnosis.cause == "jvp_not_linear"


def test_a_1e5_error_in_one_jacobian_entry_is_caught_in_forward_mode():
    with jax.enable_x64(True):
        x = jnp.linspace(0.5, 2.0, 7, dtype=jnp.float64)
        off = _custom_jvp(jnp.sin, lambda x, t: jnp.cos(x) * t *
                          (1 + 1e-5 * (jnp.arange(7) == 3)))
        report = check_function(off, (x,), modes=("fwd",))
    arg = report["fwd.x"]
    assert not report.passed and arg.n_failed == 1
    assert arg.worst_index == (3,) and arg.output_index == (3,)


def test_forward_mode_over_a_small_budget_samples_and_locates_a_wrong_column():
    bad, shape = (1, 0, 8, 17), (2, 3, 10, 20)
    wrong = jnp.zeros(shape).at[bad].set(1e-5)
    off = _custom_jvp(jnp.sin, lambda x, t: jnp.cos(x) * t * (1 + wrong))
    small = dict(modes=("fwd",), budget=100, time_budget=1e-6)
    with jax.enable_x64(True):
        x = jnp.linspace(0.5, 2.0, 1200, dtype=jnp.float64).reshape(shape)
        right = check_function(jnp.sin, (x,), **small)
        report = check_function(off, (x,), **small)
    a = right["fwd.x"]
    assert right.passed and a.mode == "sampled" and a.n_checked < a.n_elements == 1200
    a = report["fwd.x"]
    assert not report.passed and a.mode == "sampled" and a.n_failed == 1
    assert a.worst_index == bad and a.output_index == bad
    assert a.numeric_at_worst == pytest.approx(float(np.cos(x[bad])), rel=1e-9)
    assert "bisection narrowed it to" in a.note


def test_forward_mode_has_no_false_alarm_in_float32_at_kinks_and_ties():
    x = jnp.linspace(-3.0, 3.0, 9)
    check_grads(jnp.tanh, (x,), order=2)                            # fwd and rev, float32
    check_grads(jax.nn.softplus, (x,), order=1, modes=("fwd",))
    assert check_function(jax.nn.relu, (jnp.array([-1.0, 0.0, 2.0, 0.0]),),
                          modes=("fwd",)).passed
    values = jnp.array([3.0, 1.0, 3.0, 2.0, 1.0])
    assert check_function(lambda v: jnp.sort(v) * jnp.arange(5.0), (values,),
                          modes=("fwd",)).passed
    tied = jnp.round(jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 5, 5))) * 1.5)
    pool = lambda t: jax.lax.reduce_window(t, -jnp.inf, jax.lax.max, (1, 1, 2, 2),  # noqa: E731
                                           (1, 1, 1, 1), "VALID")
    report = check_function(pool, (tied,), modes=("fwd",))
    assert report.passed and report["fwd.t"].n_nondifferentiable > 0


def test_order_2_forward_over_forward_catches_a_rule_wrong_in_its_own_derivative():
    # first order right; stop_gradient hides d/dx of the rule 3 x^2 t from jax.jvp
    cube = _custom_jvp(lambda x: x ** 3, lambda x, t: 3 * jax.lax.stop_gradient(x) ** 2 * t)
    x = jnp.linspace(0.5, 2.0, 5)
    check_grads(cube, (x,), order=1, modes=("fwd",))
    with pytest.raises(AssertionError) as info:
        check_grads(cube, (x,), order=2, modes=("fwd",))
    report = info.value.report
    assert [a.name for a in report.arguments] == ["fwd.x", "fwd.order2.jvp.x",
                                                  "fwd.order2.jvp.tangent.x"]
    assert report["fwd.x"].passed and report["fwd.order2.jvp.tangent.x"].passed
    assert not report["fwd.order2.jvp.x"].passed


def test_order_2_in_both_modes_checks_both_maps_in_both_modes():
    report = check_function(jnp.tanh, (jnp.linspace(-1.0, 1.0, 4),), order=2,
                            modes=("rev", "fwd"))
    assert report.passed and report.ad_mode == "fwd+rev"
    assert [a.name for a in report.arguments] == [
        "x", "fwd.x", "order2.x", "order2.grad_output", "fwd.order2.x",
        "fwd.order2.grad_output", "order2.jvp.x", "order2.jvp.tangent.x",
        "fwd.order2.jvp.x", "fwd.order2.jvp.tangent.x"]


def test_a_custom_vjp_function_has_no_forward_mode_and_is_told_so():
    with pytest.raises(UserCodeError, match=r"custom_vjp function has no forward mode in "
                                            r"JAX: check it with modes=\('rev',\)") as e:
        check_grads(softplus, (jnp.linspace(-1.0, 1.0, 3),), order=1)
    # JAX's own sentence is quoted mid-sentence: its full stop is not kept before ';'
    assert ".;" not in str(e.value) and "; a custom_vjp" in str(e.value)


def test_forward_mode_on_pytrees():
    def f(params, x):
        return jnp.tanh(x @ params["w"] + params["b"])

    params = {"w": jnp.full((3, 2), 0.3), "b": jnp.array([0.1, -0.2])}
    report = check_function(f, (params, jnp.arange(12.0).reshape(4, 3) / 10), modes=("fwd",))
    assert report.passed
    assert [a.name for a in report.arguments] == ["fwd.params['b']", "fwd.params['w']",
                                                  "fwd.x"]
