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
