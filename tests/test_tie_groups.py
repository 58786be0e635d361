"""Shared kinks judged as groups: along the direction that moves a group of tied elements
together, ``f`` is differentiable, and a backward's values over the group must add up to
that directional derivative.

The max-pool here is the diagnosis corpus's (windows of 3, stride 2: overlapping, so a
tie may span windows); its inputs are small integers, so ties are everywhere. The right
backward sends each window's gradient to one winner (the first); the wrong one to every
tied maximum, which gives a tie of two twice the gradient while each tied element alone
lies within its one-sided limits. The expected sums are hand-derived: a window's
incoming gradient ``g`` reaches the group once (``g``) or once per tied maximum.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp
from gradcheck.checker._scalarize import seeded_cotangent

import corpus_local as loc


def _every_tie_vjp(g, x, k=3, s=2):
    """A max-pool backward with ``mask = win == win.max()``: every tied maximum of a
    window gets its whole gradient."""
    win = loc._windows(x, k, s)
    ho, wo = win.shape[2:4]
    dx = np.zeros_like(x)
    for i in range(ho):
        for j in range(wo):
            w = win[:, :, i, j]
            mask = w == w.max(axis=(-2, -1), keepdims=True)
            dx[:, :, i * s:i * s + k, j * s:j * s + k] += mask * g[:, :, i, j][..., None, None]
    return (dx,)


def _ties(seed):
    return np.random.default_rng(seed).integers(-2, 3, (1, 2, 7, 7)).astype(np.float64)


@pytest.mark.parametrize("seed", range(12))
def test_a_right_max_pool_with_ties_passes(seed):
    report = check_vjp(loc.maxpool_f, loc.maxpool_vjp, (_ties(seed),), seed=seed,
                       mode="full")
    assert report.passed, str(report)


@pytest.mark.parametrize("seed", range(12))
def test_a_max_pool_sending_the_gradient_to_every_tie_fails(seed):
    x = _ties(seed)
    wrong = _every_tie_vjp(np.ones((1, 2, 3, 3)), x)[0]
    right = loc.maxpool_vjp(np.ones((1, 2, 3, 3)), x)[0]
    assert not np.array_equal(wrong, right)       # the point has ties in some window
    report = check_vjp(loc.maxpool_f, _every_tie_vjp, (x,), seed=seed, mode="full")
    a = report.arguments[0]
    assert not report.passed and a.linear is True, str(report)
    # no element alone is outside its limits: only the group judgement sees it
    d = a.diagnosis
    assert d.cause == "outside_kink_limits" and "group(s) of elements tied" in d.message
    # the sums named: the wrong backward's over the group, against the right one's
    group = [tuple(i) for i in d.evidence["group"]]
    cot = seeded_cotangent(seed, loc.maxpool_f(x).shape)
    mine = sum(_every_tie_vjp(cot, x)[0][i] for i in group)
    truth = sum(loc.maxpool_vjp(cot, x)[0][i] for i in group)
    assert d.evidence["analytic_sum"] == pytest.approx(mine)
    assert d.evidence["numeric"] == pytest.approx(truth, rel=1e-6, abs=1e-9)
    assert abs(mine - truth) > 1e-3


def test_relus_at_zero_reached_together_are_not_judged_as_a_group():
    """Moving inputs of a convolution whose outputs sit at zero together does not keep
    them at zero: the differentiator sees a kink along the group's direction, and the
    group is left as before (reported, not judged)."""
    x = np.array([[1.0, -1.0, 0.0, 0.0]])
    w = np.array([[1.0], [1.0], [1.0], [1.0]])

    def f(x):
        return np.maximum(x @ w, 0.0) + np.maximum(x[:, :2] @ w[:2], 0.0)

    def vjp(g, x):       # PyTorch's choice: 0 at zero
        return (g * (x @ w > 0) * w.T + g * (x[:, :2] @ w[:2] > 0) *
                np.concatenate([w[:2].T, np.zeros((1, 2))], axis=1),)

    report = check_vjp(f, vjp, (x,), mode="full")
    assert report.passed, str(report)
