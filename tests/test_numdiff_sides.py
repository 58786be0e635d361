"""A first pass that straddles a jump of f' or f'' is completed on its smooth side.

The truths are hand-derived derivatives (softsign, ELU, Huber, a ReLU of a line); the
one-sided weights are the textbook ones. See gradcheck/numdiff/_economy.py.
"""

from fractions import Fraction

import numpy as np
import pytest

from gradcheck import numerical_vjp
from gradcheck.numdiff._stencils import fit_matrix


def test_one_sided_weights_are_the_textbook_ones_to_the_last_bit():
    # f'(0) h ~ -137/60 f0 + 5 f1 - 5 f2 + 10/3 f3 - 5/4 f4 + 1/5 f5 (forward, order 5)
    book = [Fraction(-137, 60), 5, -5, Fraction(10, 3), Fraction(-5, 4), Fraction(1, 5)]
    assert fit_matrix((0, 1, 2, 3, 4, 5))[1].tolist() == [float(w) for w in book]
    assert fit_matrix((-5, -4, -3, -2, -1, 0))[1].tolist() == [-float(w) for w in book[::-1]]
    # the central nodes' weights (1/20, -1/2, -1/3, 1, -1/4, 1/30), each rounded once
    central = [Fraction(1, 20), Fraction(-1, 2), Fraction(-1, 3), 1, Fraction(-1, 4),
               Fraction(1, 30)]
    assert fit_matrix((-2, -1, 0, 1, 2, 3))[1].tolist() == [float(w) for w in central]


def _near(at, rng, n=24):
    """``n`` points 1e-4 .. 2e-3 from ``at``, on either side -- within the first stencil
    (steps of 2**-10 reach -2e-3 .. 3e-3) -- and eight spread over [-2, 2] (so that the
    argument is no offset one, whose steps would follow its spread)."""
    near = at + rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-4, np.log10(2e-3), n)
    return np.concatenate([near, rng.uniform(-2, 2, 8)])


CASES = {
    "softsign": (lambda t: t / (1 + np.abs(t)), lambda t: 1 / (1 + np.abs(t)) ** 2, 0.0),
    "elu": (lambda t: np.where(t > 0, t, np.expm1(np.minimum(t, 0))),
            lambda t: np.where(t > 0, 1.0, np.exp(np.minimum(t, 0))), 0.0),
    "huber": (lambda t: np.where(np.abs(t) <= 1, 0.5 * t * t, np.abs(t) - 0.5),
              lambda t: np.where(np.abs(t) <= 1, t, np.sign(t)), 1.0),
}


def _run(monkeypatch, name, sides):
    import gradcheck.numdiff._economy as economy

    if not sides:      # no first pass shows a local jump: every one is retried
        monkeypatch.setattr(economy, "SIDE_SIGNAL", np.inf)
    phi, dphi, at = CASES[name]
    rng = np.random.default_rng(3)
    x = _near(at, rng)
    R = rng.standard_normal(x.size)
    calls = []

    def f(v):
        calls.append(np.asarray(v).shape[0] if np.ndim(v) > 1 else 1)
        return phi(v)

    r = numerical_vjp(f, x, R, method="adaptive", vectorized=True)
    return r, sum(calls), R * dphi(x)


@pytest.mark.parametrize("name", sorted(CASES))
def test_elements_beside_a_jump_of_the_second_derivative_are_right_for_fewer_evaluations(
        monkeypatch, name):
    a, n_a, truth = _run(monkeypatch, name, sides=True)
    b, n_b, _ = _run(monkeypatch, name, sides=False)
    err = np.abs(a.grad - truth)
    assert np.all(err <= a.error)                              # every bar covers
    assert np.median(err / np.abs(truth)) < 1e-10              # a straddling pass: 1e-5
    assert n_a < n_b                                           # two or three points, not five
    # fewer elements retried (first steps 2**-10 and 2**-9 for |x| <= 2)
    assert np.sum(a.step < 2.0**-11) < np.sum(b.step < 2.0**-11)
    assert np.all(np.abs(b.grad - truth) <= b.error)


def test_a_relu_kink_beside_the_point_is_completed_on_the_linear_side(monkeypatch):
    # relu(x - c) with c 3e-4 .. 1.5e-3 from x: the right side is linear, the one-sided fit
    # exact; a kink within a quarter step is left to the retries (reported, not fitted)
    rng = np.random.default_rng(4)
    x = np.array([0.3, 0.5, 0.7, -0.4, 1.1])
    c = x - np.array([-3e-4, 1.5e-3, 9e-4, -1.2e-3, 1e-12])

    def f(v):
        return np.maximum(v - c, 0.0)

    R = rng.standard_normal(x.size)
    r = numerical_vjp(f, x, R, method="adaptive", vectorized=True)
    truth = R * (x > c)
    assert np.all(np.abs(r.grad[:4] - truth[:4]) <= r.error[:4])
    assert np.all(np.abs(r.grad[:4] - truth[:4]) <= 1e-12 * np.abs(R[:4]))
    # the element 1e-12 beside its kink: a kink, its limits (secants, weighted means of
    # the slopes 0 and R on either side) between them and nearly as far apart
    assert r.nondifferentiable[4]
    lo, hi = min(0.0, R[4]), max(0.0, R[4])
    limits = np.array([r.left[4], r.right[4]])
    assert np.all((limits >= lo - 1e-9) & (limits <= hi + 1e-9))
    assert abs(r.left[4] - r.right[4]) > 0.9 * abs(R[4])


def test_an_exact_quadratic_is_not_retried():
    # b_1 and b_2 alone stand out: no trend to read, T = 0 (_model.truncation)
    x = np.linspace(-0.9, 0.9, 19)
    calls = []

    def f(v):
        calls.append(np.asarray(v).shape[0] if np.ndim(v) > 1 else 1)
        return 0.5 * v * v

    R = np.random.default_rng(5).standard_normal(x.size)
    r = numerical_vjp(f, x, R, method="adaptive", vectorized=True)
    assert np.all(np.abs(r.grad - R * x) <= r.error)
    assert np.all(r.step == r.step[0])                        # every element at its first step
    assert sum(calls) <= 5 * x.size + 1 + 12                 # five nodes, f(x), the probe
