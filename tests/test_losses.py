"""Losses held against hand values, formulas written here, central differences, complex
step, and (optionally) torch's mse_loss / cross_entropy with autograd."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gradcheck import ConfigurationError
from gradcheck.ops.losses import LOSSES, get_loss

SHAPES = {"weighted_sum": (3, 2, 4), "mse": (3, 5), "softmax_cross_entropy": (3, 4, 2, 2)}


def test_weighted_sum_uses_seeded_standard_normal():
    loss = get_loss("weighted_sum", (2, 3), seed=7)
    np.testing.assert_array_equal(loss.weights, np.random.default_rng(7).standard_normal((2, 3)))
    y = np.arange(6.0).reshape(2, 3)
    assert loss.value(y) == pytest.approx(float(np.sum(loss.weights * y)), rel=1e-15)
    np.testing.assert_array_equal(loss.grad(y), loss.weights)
    np.testing.assert_allclose(loss.per_sample(y), (loss.weights * y).sum(axis=1), rtol=1e-15)


def test_mse_hand_example():
    loss = get_loss("mse", (2, 1), seed=0)
    t = loss.target
    y = t + np.array([[1.0], [-3.0]])
    assert loss.value(y) == pytest.approx((1 + 9) / 2, rel=1e-14)       # mean over 2 elements
    np.testing.assert_allclose(loss.grad(y), [[1.0], [-3.0]], rtol=1e-14)  # 2 (y - t) / 2
    np.testing.assert_allclose(loss.per_sample(y), [0.5, 4.5], rtol=1e-14)


def test_cross_entropy_hand_example_and_stability():
    loss = get_loss("softmax_cross_entropy", (1, 2), seed=0)
    big = np.array([[1000.0, 1000.0]])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise"):
        warnings.simplefilter("error")
        assert loss.value(big) == pytest.approx(np.log(2.0), rel=1e-15)
        g = loss.grad(big)
    want = np.array([[0.5, 0.5]])
    want[0, loss.targets[0]] -= 1
    np.testing.assert_allclose(g, want, rtol=1e-15)
    # a confident wrong answer: loss = margin exactly (log(1 + e^-2000) underflows to 0)
    logits = np.zeros((1, 2))
    logits[0, 1 - loss.targets[0]] = 2000.0
    assert loss.value(logits) == pytest.approx(2000.0, rel=1e-15)
    with np.errstate(all="raise", under="ignore"):
        assert loss.value(-logits) == 0.0


def _numeric_grad(fn, y, h=1e-6):
    g = np.zeros_like(y)
    for j in np.ndindex(*y.shape):
        e = np.zeros_like(y)
        e[j] = h
        g[j] = (fn(y + e) - fn(y - e)) / (2 * h)
    return g


@pytest.mark.parametrize("name", list(LOSSES))
def test_grad_matches_central_differences_and_per_sample_sums(name):
    loss = get_loss(name, SHAPES[name], seed=3)
    y = np.random.default_rng(1).standard_normal(SHAPES[name]) * 2
    np.testing.assert_allclose(loss.grad(y), _numeric_grad(loss.value, y), rtol=0, atol=1e-9)
    ps = loss.per_sample(y)
    assert ps.shape == (SHAPES[name][0],)
    assert loss.value(y) == float(ps.sum())
    # item n of per_sample depends on y[n] only
    y2 = y.copy()
    y2[1, 0] += 1.0    # one entry: a shift of all of y[1]'s logits leaves cross-entropy unchanged
    changed = loss.per_sample(y2) != ps
    np.testing.assert_array_equal(changed, [False, True, False])


@pytest.mark.parametrize("name", list(LOSSES))
def test_vjp_matches_central_differences(name):
    loss = get_loss(name, SHAPES[name], seed=4)
    y = np.random.default_rng(2).standard_normal(SHAPES[name])
    c = np.array([0.3, -1.2, 2.0])
    numeric = _numeric_grad(lambda v: float(np.dot(c, loss.per_sample(v))), y)
    np.testing.assert_allclose(loss.vjp(c, y), numeric, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", list(LOSSES))
def test_complex_step(name):
    loss = get_loss(name, SHAPES[name], seed=5)
    y = np.random.default_rng(3).standard_normal(SHAPES[name])
    h = 1e-50
    numeric = np.zeros_like(y)
    for j in np.ndindex(*y.shape):
        yc = y.astype(complex)
        yc[j] += 1j * h
        numeric[j] = loss.value(yc).imag / h
    np.testing.assert_allclose(loss.grad(y), numeric, rtol=1e-13, atol=1e-16)


def test_mse_matches_torch():
    torch = pytest.importorskip("torch")
    loss = get_loss("mse", (4, 3, 2), seed=1)
    y = np.random.default_rng(0).standard_normal((4, 3, 2))
    ty = torch.tensor(y, requires_grad=True)
    tv = torch.nn.functional.mse_loss(ty, torch.tensor(loss.target))
    (tg,) = torch.autograd.grad(tv, ty)
    assert loss.value(y) == pytest.approx(tv.item(), rel=1e-14)
    np.testing.assert_allclose(loss.grad(y), tg.numpy(), rtol=1e-14)


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3, 2)])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_cross_entropy_matches_torch(shape, scale):
    torch = pytest.importorskip("torch")
    loss = get_loss("softmax_cross_entropy", shape, seed=2)
    y = np.random.default_rng(0).standard_normal(shape) * scale
    ty = torch.tensor(y, requires_grad=True)
    tv = torch.nn.functional.cross_entropy(ty, torch.tensor(loss.targets))
    (tg,) = torch.autograd.grad(tv, ty)
    assert loss.value(y) == pytest.approx(tv.item(), rel=1e-13)
    np.testing.assert_allclose(loss.grad(y), tg.numpy(), rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize("name", list(LOSSES))
def test_seeded_data_is_deterministic_and_seed_dependent(name):
    a, b, c = (get_loss(name, SHAPES[name], seed=s) for s in (0, 0, 1))
    y = np.random.default_rng(9).standard_normal(SHAPES[name])
    assert a.value(y) == b.value(y) != c.value(y)
    assert a.to_dict() == {"type": name, "seed": 0} and a.name == name


@pytest.mark.parametrize("name", list(LOSSES))
def test_dtype_preserved(name):
    loss = get_loss(name, SHAPES[name], dtype=np.float32)
    y = np.random.default_rng(1).standard_normal(SHAPES[name]).astype(np.float32)
    assert loss.grad(y).dtype == np.float32
    assert loss.per_sample(y).dtype == np.float32
    assert isinstance(loss.value(y), float)
    assert loss.vjp(np.ones(3, np.float32), y).dtype == np.float32
    # float64 data used on float32 output: cast to the output's dtype
    assert get_loss(name, SHAPES[name]).grad(y).dtype == np.float32


def test_data_is_read_only():
    loss = get_loss("weighted_sum", (2, 2))
    with pytest.raises(ValueError):
        loss.weights[0, 0] = 1.0
    with pytest.raises(AttributeError, match="loss 'weighted_sum' has no target"):
        loss.target


BAD = [
    (lambda: get_loss("mes", (2, 3)), r"loss name 'mes' is not known; did you mean 'mse'\? valid names: weighted_sum, mse, softmax_cross_entropy"),
    (lambda: get_loss("mse", (2, 0)), r"loss 'mse': output_shape must be a non-empty tuple of positive ints \(batch first\); got \(2, 0\)"),
    (lambda: get_loss("mse", ()), r"output_shape must be a non-empty tuple of positive ints"),
    (lambda: get_loss("softmax_cross_entropy", (5,)), r"loss 'softmax_cross_entropy': output_shape must be \(N, classes, \*spatial\) with classes on axis 1; got \(5,\)"),
    (lambda: get_loss("mse", (2, 3), seed=-1), r"loss 'mse': seed must be an int >= 0; got -1"),
    (lambda: get_loss("mse", (2, 3), dtype="int8"), r"loss 'mse': dtype must be float16, bfloat16, float32 or float64; got 'int8'"),
    (lambda: get_loss("mse", (2, 3)).value(np.zeros((3, 2))), r"loss 'mse': y must have shape \(2, 3\); got shape \(3, 2\)"),
    (lambda: get_loss("mse", (2, 3)).vjp(np.ones(3), np.zeros((2, 3))), r"loss 'mse': cotangent must have shape \(2,\) \(one entry per batch item\); got shape \(3,\)"),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_calls(call, message):
    with pytest.raises(ConfigurationError, match=message):
        call()


@pytest.mark.parametrize("margin", [0.0, 5.0, 15.0, 30.0, -30.0])
def test_cross_entropy_keeps_relative_accuracy_at_confident_logits(margin):
    # a sample classified right by a wide margin has a tiny loss and p_t close to 1: the
    # loss and p_t - 1 must keep their relative accuracy (log(sum(exp(y))) - y_t and
    # softmax - 1 would leave rounding of order eps, i.e. a relative error eps / loss)
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    loss = get_loss("softmax_cross_entropy", (3, 5), seed=0)
    y = np.random.default_rng(4).standard_normal((3, 5))
    y[np.arange(3), loss.targets] += margin
    for n in range(3):
        t = int(loss.targets[n])
        total = mp.fsum(mp.exp(mp.mpf(v)) for v in y[n])
        ce = mp.log(total) - mp.mpf(y[n, t])
        assert loss.per_sample(y)[n] == pytest.approx(float(ce / 3), rel=4e-16)
        for k in range(5):
            want = mp.exp(mp.mpf(y[n, k])) / total - (1 if k == t else 0)
            # (exp of a log-softmax near -30 carries ~30 eps of relative error)
            assert loss.grad(y)[n, k] == pytest.approx(float(want / 3), rel=1e-14, abs=1e-300)
