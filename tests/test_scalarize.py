"""The scalarize stage's cotangent: a stream of its own, not the test data's.

The most common test input is ``x = default_rng(0).standard_normal(shape)``; were the
default cotangent drawn from ``default_rng(seed)`` too, a shape-preserving layer checked
at seed 0 would get ``R == x``. For a batch norm that puts ``R`` in the null space of the
input gradient (``J^T x = 0`` up to the ``eps`` term): the true input gradient is about
zero, and a backward off by a factor passes. The hand-written batch norm below is the
independent route (its gradient derived by hand, the mean terms written out).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp
from gradcheck.checker._scalarize import COTANGENT_SALT, seeded_cotangent

EPS = 1e-5
AXES = (0, 2, 3)   # per channel, over the batch and the positions


def _normalized(x):
    mean = x.mean(axis=AXES, keepdims=True)
    std = np.sqrt(x.var(axis=AXES, keepdims=True) + EPS)
    return (x - mean) / std, std


def batch_norm(x, gamma):
    """``gamma * (x - mean) / sqrt(var + eps)``, per channel."""
    return gamma[None, :, None, None] * _normalized(x)[0]


def _gamma_grad(g, x):
    return (g * _normalized(x)[0]).sum(axis=AXES)


def batch_norm_vjp(g, x, gamma):
    """``dx = (g' - mean(g') - xhat * mean(g' xhat)) / std`` with ``g' = gamma g``."""
    xhat, std = _normalized(x)
    gg = g * gamma[None, :, None, None]
    gx = (gg - gg.mean(axis=AXES, keepdims=True)
          - xhat * (gg * xhat).mean(axis=AXES, keepdims=True)) / std
    return gx, _gamma_grad(g, x)


def without_mean_terms(g, x, gamma):
    """The slip: the mean and variance treated as constants (``dx = gamma g / std``)."""
    _, std = _normalized(x)
    return g * gamma[None, :, None, None] / std, _gamma_grad(g, x)


def without_gamma(g, x, gamma):
    """The slip: ``gamma`` left out of the input gradient (off by a factor per channel)."""
    xhat, std = _normalized(x)
    gx = (g - g.mean(axis=AXES, keepdims=True)
          - xhat * (g * xhat).mean(axis=AXES, keepdims=True)) / std
    return gx, _gamma_grad(g, x)


SHAPE = (4, 3, 5, 5)
GAMMA = np.array([0.5, 2.0, 1.5])


def _point(dtype):
    x = np.random.default_rng(0).standard_normal(SHAPE)   # the most common test input
    return x.astype(dtype), GAMMA.astype(dtype)


def test_the_default_cotangent_is_drawn_from_the_seed_with_a_salt():
    x = np.random.default_rng(0).standard_normal(SHAPE)
    # f(x) = x: the analytic gradient the checker receives back is R itself
    report = check_vjp(lambda a: a.copy(), lambda g, a: (g,), (x,), seed=3)
    documented = np.random.default_rng([3, COTANGENT_SALT]).standard_normal(SHAPE)
    assert np.array_equal(report.arguments[0].analytic, documented)
    assert np.array_equal(seeded_cotangent(3, SHAPE), documented)
    assert not np.allclose(seeded_cotangent(0, SHAPE), x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_right_batch_norm_passes(dtype):
    assert check_vjp(batch_norm, batch_norm_vjp, _point(dtype), seed=0).passed


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_batch_norm_without_its_mean_terms_fails_at_seed_0(dtype):
    report = check_vjp(batch_norm, without_mean_terms, _point(dtype), seed=0)
    assert not report.passed and not report["arg0"].passed and report["arg1"].passed


def test_the_batch_norm_null_space_no_longer_hides_a_factor():
    """With ``R = x`` (what the old draw gave at seed 0) the true input gradient is about
    zero and, in float32, a factor left out passes; with the default ``R`` it fails."""
    x, gamma = _point(np.float32)
    same_as_x = np.random.default_rng(0).standard_normal(SHAPE)
    blind = check_vjp(batch_norm, without_gamma, (x, gamma), seed=0, cotangent=same_as_x)
    assert blind.passed          # the weakness the own stream removes
    report = check_vjp(batch_norm, without_gamma, (x, gamma), seed=0)
    assert not report.passed and not report["arg0"].passed and report["arg1"].passed
