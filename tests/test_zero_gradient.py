"""A passing argument whose gradient is zero up to rounding is said to be so
(:mod:`gradcheck.checker._zero_gradient`); an argument the check can tell from zero is
not, however small its gradient."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp


def _bias_before_norm(dtype):
    """A dense layer with a bias, then a batch norm over the batch (written by hand):
    the bias's true gradient is 0."""
    def f(x, w, b):
        z = x @ w + b
        return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)

    def f_vjp(g, x, w, b):
        z = x @ w + b
        s = np.sqrt(z.var(0) + 1e-5)
        zh = (z - z.mean(0)) / s
        dz = (g - g.mean(0) - zh * (g * zh).mean(0)) / s
        return dz @ w.T, x.T @ dz, dz.sum(0)

    r = np.random.default_rng(0)
    args = [r.standard_normal(s).astype(dtype) for s in ((8, 5), (5, 4), (4,))]
    return f, f_vjp, args


def _zero_notes(report):
    return [n for n in report.notes if "zero up to rounding" in n]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_bias_before_a_normalization_is_said_to_have_no_gradient(dtype):
    f, f_vjp, args = _bias_before_norm(dtype)
    report = check_vjp(f, f_vjp, args, argnames=("x", "w", "b"))
    assert report.passed, str(report)
    notes = _zero_notes(report)
    assert len(notes) == 1 and notes[0].startswith("b: "), report.notes
    assert "f does not change with b" in notes[0] and "bias before a normalization" in notes[0]
    assert "note: b: its gradient is zero up to rounding" in str(report)


def test_exact_zeros_are_said_exactly():
    # a ReLU whose inputs are all negative: both gradients exactly 0
    x = -1.0 - np.arange(6.0)
    report = check_vjp(lambda x: np.maximum(x, 0), lambda g, x: (g * (x > 0),), (x,),
                       argnames=("x",))
    (note,) = _zero_notes(report)
    assert "both gradients are exactly 0" in note and note.startswith("x: ")


def test_small_gradients_the_check_tells_from_zero_are_not_noted():
    x = np.linspace(-1, 1, 7)
    c = 1e-12                           # a tiny gradient, but not rounding: f is c x²
    report = check_vjp(lambda x: c * x ** 2, lambda g, x: (2 * c * x * g,), (x,))
    assert report.passed and not _zero_notes(report)
    f, f_vjp, args = _bias_before_norm(np.float64)
    report = check_vjp(f, f_vjp, args, argnames=("x", "w", "b"))
    assert not any(n.startswith(("x: ", "w: ")) for n in _zero_notes(report))


def test_a_failing_or_missing_zero_gradient_is_left_to_its_own_words():
    f, f_vjp, args = _bias_before_norm(np.float64)

    def db_not_cancelled(g, *a):        # the bias given sum(g): fails, with its cause
        dx, dw, _ = f_vjp(g, *a)
        return dx, dw, g.sum(0)

    report = check_vjp(f, db_not_cancelled, args, argnames=("x", "w", "b"))
    assert not report["b"].passed and not _zero_notes(report)
    assert report["b"].diagnosis.cause == "gradient_where_none"

    def db_none(g, *a):
        dx, dw, _ = f_vjp(g, *a)
        return dx, dw, None

    report = check_vjp(f, db_none, args, argnames=("x", "w", "b"))
    assert report.passed and not _zero_notes(report)
    assert any("no gradient returned" in n for n in report.notes)


def test_a_tolerance_floor_is_not_read_as_rounding():
    # rtol=1 lets every element within |value| of 0 pass: that is the floor, not rounding
    x = np.linspace(-1.0, 1.0, 6)
    report = check_vjp(np.sin, lambda g, x: (2 * g * np.cos(x),), (x,), rtol=1,
                       argnames=("x",))
    assert report.passed and not _zero_notes(report)
    f, f_vjp, args = _bias_before_norm(np.float64)
    report = check_vjp(f, f_vjp, args, argnames=("x", "w", "b"), atol=1e-3)
    assert not _zero_notes(report)


def test_a_torch_conv_bias_before_batch_norm_is_said_to_have_no_gradient():
    torch = pytest.importorskip("torch", reason="the torch adapter needs torch")
    from gradcheck.torch import check_module

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.BatchNorm1d(2))
    report = check_module(net, torch.randn(3, 1, 4))            # float32, as people do
    assert report.passed
    assert [n[:len("0.bias: ")] for n in _zero_notes(report)] == ["0.bias: "]
