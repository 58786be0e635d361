"""The linearity stage: the backward tested linear in its cotangent on every check.

The backwards here are written by hand; what a right one returns is known in closed form
(``g * cos(x)``, a convolution's reference backward from :mod:`tests._mutants`), and
whether a backward is linear in ``g`` is known by construction (a clip of ``g`` is not;
a wrong factor is). The allowance of the stage is measured on the correct layers of the
diagnosis corpus and the mutant suite's convolutions in three dtypes, not taken on
trust.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_layer, check_vjp, conv_backward, conv_forward
from gradcheck.checker import _check
from gradcheck.checker._linearity import CALLS

from _mutants import conv_reference_backward


def _clipping_sin_vjp(g, x):
    """``sin``'s backward after clipping its incoming gradient to [-1, 1] (gradient
    clipping put in the wrong place): right for every cotangent with ``|R| < 1``."""
    return (np.clip(g, -1.0, 1.0) * np.cos(x),)


@pytest.mark.parametrize("mode", ["full", "sampled", "fast"])
def test_a_backward_that_clips_its_cotangent_fails_even_where_its_numbers_agree(mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5, 6))
    small = rng.uniform(-0.9, 0.9, x.shape)          # every |R| < 1: the clip does nothing
    report = check_vjp(np.sin, _clipping_sin_vjp, (x,), cotangent=small, mode=mode,
                       time_budget=1e-6)
    a = report.arguments[0]
    # the numerical comparison alone passes: the gradient for this R is g * cos(x)
    assert a.n_failed == 0 and a.n_directions_failed == 0, a.summary()
    assert not report.passed and a.linear is False
    assert a.diagnosis.cause == "nonlinear_in_cotangent"
    assert "non-linearly" in a.diagnosis.message
    assert a.diagnosis.evidence["test"] == "scaling"
    # a right backward at the same point and cotangent passes, and is found linear
    right = check_vjp(np.sin, lambda g, x: (g * np.cos(x),), (x,), cotangent=small,
                      mode=mode, time_budget=1e-6)
    assert right.passed and right.arguments[0].linear is True


def test_a_backward_that_ignores_its_cotangent_fails_for_the_all_ones_cotangent():
    """``dlogits = p - y``: the gradient of the summed loss, right for R = 1 only."""
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    onehot = np.eye(5)[labels]

    def f(z):
        z = z - z.max(axis=1, keepdims=True)
        return np.log(np.exp(z).sum(axis=1)) - (z * onehot).sum(axis=1)

    def ignores_g(g, z):
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return (p / p.sum(axis=1, keepdims=True) - onehot,)

    report = check_vjp(f, ignores_g, (logits,), cotangent=np.ones(6), mode="full")
    a = report.arguments[0]
    assert a.n_failed == 0 and not report.passed
    assert a.diagnosis.cause == "nonlinear_in_cotangent"
    assert "ignores its incoming gradient" in a.diagnosis.message


def test_a_backward_that_is_not_deterministic_is_said_to_be():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(50)
    noise = np.random.default_rng(9)

    def jittery(g, x):     # a fresh random draw on every call
        return (g * np.cos(x) + 1e-3 * noise.standard_normal(x.shape),)

    report = check_vjp(np.sin, jittery, (x,), mode="full")
    d = report.arguments[0].diagnosis
    assert not report.passed and d.cause == "nonlinear_in_cotangent"
    assert "not deterministic" in d.message and d.evidence["test"] == "determinism"


def test_a_linear_but_wrong_backward_keeps_its_own_diagnosis():
    x = np.linspace(-2, 2, 30)
    report = check_vjp(np.sin, lambda g, x: (2 * g * np.cos(x),), (x,), mode="full")
    a = report.arguments[0]
    assert not report.passed and a.linear is True
    assert a.diagnosis.cause == "scaled"


def test_the_stage_costs_three_calls_of_the_backward_per_check():
    """Counted: one call for the check's own gradients, three for the stage, whatever
    the number of arguments (one call returns them all)."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    calls = []

    def f_vjp(g, x, w):
        calls.append(1)
        gx, gw, _ = conv_reference_backward(g, x, w, padding=1)
        return gx, gw

    report = check_vjp(lambda x, w: conv_forward(x, w, padding=1), f_vjp, (x, w),
                       mode="full")
    assert report.passed and all(a.linear for a in report.arguments)
    assert CALLS == 3 and len(calls) == 1 + CALLS


def _recorded(monkeypatch):
    """The stage's largest departure per checked argument, in units of its allowance."""
    seen = []
    stage = _check.linearity

    def spy(problem, options):
        found = stage(problem, options)
        seen.extend((str(problem.args[i].dtype), e) for i, e in found.excess.items())
        return found

    monkeypatch.setattr(_check, "linearity", spy)
    return seen


def _correct_backwards():
    """``(name, f, f_vjp, args)``: the diagnosis corpus's correct layers (float64 and
    float32, kinks and ties included) and the mutant suite's unmutated reference
    convolution in every geometry and three dtypes."""
    from diagnosis_corpus import CORRECT
    from test_mutants import GEOMETRIES, _conv_f

    for c in CORRECT:
        yield c.name, c.f, c.vjp, tuple(c.args)
    for geom in GEOMETRIES:
        for dtype in (np.float64, np.float32, np.float16):
            yield (f"conv {geom!r} {np.dtype(dtype).name}", _conv_f(geom),
                   lambda g, x, w, b, o=geom.opts: conv_reference_backward(g, x, w, **o),
                   geom.point(dtype))
    rng = np.random.default_rng(5)
    for dtype in (np.float16, np.float32):     # computed in the dtype itself
        x, w = (rng.standard_normal(s).astype(dtype) for s in ((16, 64), (64, 32)))
        yield (f"dense {np.dtype(dtype).name}", lambda x, w: np.tanh(x @ w),
               lambda g, x, w: ((g * (1 - np.tanh(x @ w) ** 2)) @ w.T,
                                x.T @ (g * (1 - np.tanh(x @ w) ** 2))), (x, w))
        x, w = (rng.standard_normal(s).astype(dtype) for s in ((2, 4, 9, 9), (5, 4, 3, 3)))
        yield (f"conv_backward {np.dtype(dtype).name}",
               lambda x, w: conv_forward(x, w, padding=1, stride=2),
               lambda g, x, w: conv_backward(g, x, w, padding=1, stride=2)[:2], (x, w))


def _builtin_layers():
    from gradcheck.ops.activations import ACTIVATIONS
    from gradcheck.ops.layers import Activation, AvgPool, Conv, Dense, MaxPool

    return [Conv(4, 3, padding=1), Conv(3, 3, stride=2), Dense(6), MaxPool(2), AvgPool(2)] \
        + [Activation(name) for name in ACTIVATIONS]


def test_the_allowance_is_measured_on_right_backwards(monkeypatch):
    """Every right backward here departs from linearity by at most a quarter of the
    stage's allowance (measured: 0.015 in float32 and float64, 0.02 for a dense layer
    computed in float16; 0.10 over the whole test suite's checks, convolutions of a
    million weights through BLAS): no right layer fails the stage, with room to spare."""
    seen = _recorded(monkeypatch)
    worst = {}
    for name, f, f_vjp, args in _correct_backwards():
        report = check_vjp(f, f_vjp, args, mode="fast")
        assert all(a.linear for a in report.arguments), (name, str(report))
        for dtype, e in seen:
            worst[dtype] = max(worst.get(dtype, (0.0, "")), (e, name))
        seen.clear()
    for layer in _builtin_layers():        # the built-in layers, in float16 and float32
        for dtype in (np.float16, np.float32):
            shape = (2, 8) if layer.kind == "dense" else (2, 3, 6, 6)
            report = check_layer(layer, input_shape=shape, dtype=dtype, mode="fast")
            assert all(a.linear for a in report.arguments), (layer, str(report))
            for d, e in seen:
                worst[d] = max(worst.get(d, (0.0, "")), (e, f"{layer!r} {d}"))
            seen.clear()
    assert set(worst) == {"float16", "float32", "float64"}
    assert all(e <= 0.25 for e, _ in worst.values()), worst


# ------------------------------------------------- gradients that cancel to zero


def _layer_norm(x):
    """A layer norm over the last axis, with its inverse standard deviation."""
    xc = x - x.mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt((xc ** 2).mean(-1, keepdims=True) + 1e-5)
    return xc * inv, inv


def _layer_norm_vjp(gy, x):
    """The textbook layer-norm backward (``gy`` the gradient of its output)."""
    xhat, inv = _layer_norm(x)
    return inv * (gy - gy.mean(-1, keepdims=True)
                  - xhat * (gy * xhat).mean(-1, keepdims=True))


def _ln_mean(x):
    """Each row's layer norm averaged: zero at every point (its true gradient is zero),
    but formed from terms of order one."""
    return _layer_norm(x)[0].mean(1)


def _ln_mean_vjp(g, x):
    return (_layer_norm_vjp(np.broadcast_to(g[:, None] / x.shape[1], x.shape), x),)


@pytest.mark.parametrize("seed", range(6))
def test_a_right_backward_whose_gradient_cancels_to_zero_is_linear(seed, monkeypatch):
    """The gradient is rounding alone (about 1e-17, hand-derived zero); the stage judges
    its departures against the rounding of the terms it is formed from, not against its
    own value (which failed every one of these seeds)."""
    seen = _recorded(monkeypatch)
    x = np.random.default_rng(seed).standard_normal((4, 8))
    assert np.max(np.abs(_ln_mean_vjp(np.ones(4), x)[0])) < 1e-14
    for mode in ("full", "sampled", "fast"):
        report = check_vjp(_ln_mean, _ln_mean_vjp, (x,), seed=seed, mode=mode)
        a = report.arguments[0]
        assert a.linear is True, str(report)
        assert a.diagnosis is None or a.diagnosis.cause != "nonlinear_in_cotangent"
    assert max(e for _, e in seen) <= 0.25, seen


def test_a_nonlinear_backward_of_a_normalization_still_fails():
    """Measuring the terms' magnitudes does not hide a real departure: a layer norm
    whose backward clips its incoming gradient at 1 (every |R| below 1, so its numbers
    agree), and one that keeps state between calls."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 8))
    small = rng.uniform(-0.9, 0.9, x.shape)
    f = lambda x: _layer_norm(x)[0]        # noqa: E731
    clipping = lambda g, x: (_layer_norm_vjp(np.clip(g, -1.0, 1.0), x),)   # noqa: E731
    report = check_vjp(f, clipping, (x,), cotangent=small, mode="full")
    a = report.arguments[0]
    assert a.n_failed == 0 and not report.passed and a.linear is False
    assert a.diagnosis.cause == "nonlinear_in_cotangent"
    calls = []

    def stateful(g, x):     # drifts by a little on every call
        calls.append(1)
        return (_layer_norm_vjp(g, x) * (1 + 1e-6 * len(calls)),)

    report = check_vjp(f, stateful, (x,), mode="full")
    d = report.arguments[0].diagnosis
    assert not report.passed and report.arguments[0].linear is False
    assert d.cause == "nonlinear_in_cotangent" and "not deterministic" in d.message
    right = check_vjp(f, lambda g, x: (_layer_norm_vjp(g, x),), (x,), mode="full")
    assert right.passed and right.arguments[0].linear is True


@pytest.mark.parametrize("size", [1e-4, 1e-30, 1e-300])
def test_a_check_whose_cotangent_and_gradients_are_all_small_runs(size):
    """Used to raise OverflowError (found by the thorough profile with fresh randomness:
    the culprit pass checked a 1x1 sigmoid layer with an incoming gradient of 2.8e-4):
    choosing ``c`` divided the largest float64 by the largest entry, which overflows
    below 2**-10. A right backward passes, a clip of the cotangent and a wrong factor
    still fail."""
    x = np.array([0.3, -0.2, 1.1])
    g = np.full(3, size)
    right = check_vjp(np.sin, lambda g, x: (g * np.cos(x),), (x,), cotangent=g)
    assert right.passed and right.arguments[0].linear is True, str(right)
    wrong = check_vjp(np.sin, lambda g, x: (2 * g * np.cos(x),), (x,), cotangent=g)
    assert not wrong.passed and wrong.arguments[0].n_failed == 3
    clip = check_vjp(np.sin, lambda g, x: (np.clip(g, -size, size) * np.cos(x),), (x,),
                     cotangent=g)
    assert not clip.passed and clip.arguments[0].linear is False


def _arguments(exc_or_none):
    report = getattr(exc_or_none, "report", None)
    assert report is not None, exc_or_none
    return report.arguments


def _not_named_nonlinear(run):
    """Run a drop-in check; every argument it reports (orders and modes) is found
    linear and none is failed as not linear. The check as a whole may still fail on
    its numerical comparison (an element whose analytic value is rounding, about 1e-17,
    where the numerical one is exactly 0 -- the analytic rounding allowance's matter,
    not this stage's)."""
    try:
        run()
    except (AssertionError, RuntimeError) as exc:
        arguments = _arguments(exc)
    else:
        return
    for a in arguments:
        assert a.linear in (True, None), str(a)
        assert a.diagnosis is None or a.diagnosis.cause != "nonlinear_in_cotangent", str(a)


@pytest.mark.parametrize("seed", range(2))
def test_torch_normalizations_summed_are_linear(seed):
    torch = pytest.importorskip("torch", reason="the PyTorch drop-in needs torch")
    import torch.nn.functional as F

    import gradcheck.torch

    torch.manual_seed(seed)
    x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    for fn in (lambda x: F.layer_norm(x, (8,)).sum(),
               lambda x: F.batch_norm(x, None, None, training=True).sum(),
               lambda x: F.softmax(x, 1).sum()):
        _not_named_nonlinear(lambda: gradcheck.torch.gradcheck(fn, (x,)))
        _not_named_nonlinear(lambda: gradcheck.torch.gradgradcheck(fn, (x,)))


def test_jax_standardize_summed_is_linear():
    jax = pytest.importorskip("jax", reason="the JAX drop-in needs jax")
    import jax.numpy as jnp

    import gradcheck.jax

    jax.config.update("jax_enable_x64", True)
    try:
        x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8)))
        f = lambda x: jax.nn.standardize(x, axis=1).sum()     # noqa: E731
        _not_named_nonlinear(lambda: gradcheck.jax.check_grads(f, (x,), 1))
        _not_named_nonlinear(lambda: gradcheck.jax.check_grads(f, (x,), 2, modes=("rev",)))
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.fixture
def one_torch_thread():
    """torch's threads at one while a test runs (as gradcheck.torch's checks set them
    for tensors this small; these tests call its problem directly)."""
    torch = pytest.importorskip("torch", reason="the batch norm is torch's own")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch_norm_sum_order_2(seed):
    """The second-order map of torch's ``batch_norm(x).sum()`` over a batch of two, x of
    shape (2, 3) drawn with torch's seed ``seed``: ``(f, f_vjp, point, names)``, f the
    backward (zero by cancellation), f_vjp torch's double backward."""
    torch = pytest.importorskip("torch", reason="the batch norm is torch's own")
    import torch.nn.functional as F

    from gradcheck._adapter import second_order_names
    from gradcheck.torch._problem import TorchProblem

    torch.manual_seed(seed)
    x = torch.randn(2, 3, dtype=torch.float64)
    problem = TorchProblem(lambda x: F.batch_norm(x, None, None, training=True).sum(),
                           (x,), [0], ("x",))
    g = problem.draw_g(seed)
    return (problem.second, problem.second_vjp, problem.point + g,
            second_order_names(problem.argnames, len(g)))


@pytest.mark.parametrize("seed", [11, 23, 24, 26, 38, 43])
def test_torch_order_2_of_a_batch_norm_over_a_batch_of_two_is_linear(seed, one_torch_thread):
    """Used to fail (6 of 60 seeds, shape (2, 3)): the double backward of a gradient
    zero by cancellation is rounding alone, and its departures from additivity (9.9e-16
    at seed 11, 4e-16 on the scalar grad_output at seed 26) were beyond the rounding
    measured by q (R + R'), q = 1 + 3/1024 (9e-18, 2e-18): that rounding does not move
    with a common factor of the cotangent. The split D = (R + R') delta measures it."""
    f, f_vjp, point, names = _batch_norm_sum_order_2(seed)
    report = check_vjp(f, f_vjp, point, argnames=names, roles="generic", seed=seed)
    assert all(a.linear is True for a in report.arguments), str(report)


def _largest_only(r):
    """``r`` with every entry but its largest in size set to zero: positively
    homogeneous (so ``vjp(cR) = c vjp(R)`` holds), not additive."""
    out = np.zeros_like(r)
    k = np.unravel_index(int(np.argmax(np.abs(r))), r.shape)
    out[k] = r[k]
    return out


@pytest.mark.parametrize("blemish, size", [("largest", 1e-3), ("largest", 1e-9),
                                           ("clip", 1e-6), ("offset", 1e-9)])
def test_a_nonlinear_double_backward_of_a_cancelling_gradient_still_fails(blemish, size,
                                                                          one_torch_thread):
    """The split's measure does not hide a departure: torch's double backward of the
    batch norm above plus ``size`` times a non-additive (the largest entry of R alone),
    clipped or constant use of R fails as not linear, where the same double backward
    passes."""
    f, f_vjp, point, names = _batch_norm_sum_order_2(11)
    use = {"largest": _largest_only, "clip": lambda r: np.clip(r, -0.5, 0.5),
           "offset": lambda r: np.ones_like(r)}[blemish]         # offset: ignores R

    def bad(r, *arrays):
        gx, gg = f_vjp(r, *arrays)
        return gx + size * use(np.asarray(r, np.float64)), gg

    report = check_vjp(f, bad, point, argnames=names, roles="generic", seed=11)
    row = report[names[0]]
    assert not report.passed and row.linear is False, str(report)
    assert row.diagnosis.cause == "nonlinear_in_cotangent"
    right = check_vjp(f, f_vjp, point, argnames=names, roles="generic", seed=11)
    assert right[names[0]].linear is True


def test_a_float16_gradient_whose_scaled_value_overflows_is_not_called_nonlinear():
    """Used to fail as not linear with every numerical comparison passing: 20000 x in
    float16 has gradients of 2e4 R, so -2 R (the smallest factor) gives 4e4 to 6.5e4,
    beyond float16's largest value 65504, where a right backward returns infinity. Those
    entries are left out of the test, and the report says so; a clip still fails."""
    x = np.linspace(-1, 1, 8).astype(np.float16)
    R = np.array([0.5, 1.0, 2.0, 3.0, -0.5, -2.5, 1.2, 0.1])
    k = np.float16(20000)

    def f(x):
        return x * k

    right = check_vjp(f, lambda g, x: (g.astype(np.float16) * k,), (x,), cotangent=R)
    assert right.passed and right.arguments[0].linear is True, str(right)
    said = [n for n in right.notes if "exceeds the largest float16 value" in n]
    assert len(said) == 2 and "at 3 element(s)" in said[0], right.notes     # |R| >= 1.64
    clip = check_vjp(f, lambda g, x: (np.clip(g, -1.5, 1.5).astype(np.float16) * k,), (x,),
                     cotangent=np.clip(R, -1.4, 1.4))
    assert not clip.passed and clip.arguments[0].linear is False, str(clip)
