"""Colored (Curtis-Powell-Reid) evaluation against the one-element-at-a-time route."""

import numpy as np
import pytest
import scipy.sparse as sp

from gradcheck import conv_backward, conv_forward, numerical_jacobian, numerical_vjp
from gradcheck.numdiff._coloring import as_pattern, check_colors, greedy_colors

RNG = np.random.default_rng(11)
XS = (2, 3, 6, 6)
W = RNG.standard_normal((4, 3, 3, 3)) / 3
B = RNG.standard_normal(4) / 4


def conv_tanh(X):
    lead = X.shape[:-4]
    y = conv_forward(X.reshape((-1,) + XS[1:]), W, B, padding=1)
    return np.tanh(y).reshape(lead + (2, 4, 6, 6))


def conv_pattern():
    """Output (n, o, i, j) reads x (n, c, i+a-1, j+b-1): built here by brute force."""
    rows, cols = [], []
    out_idx = np.arange(2 * 4 * 36).reshape(2, 4, 6, 6)
    in_idx = np.arange(np.prod(XS)).reshape(XS)
    for n in range(2):
        for o in range(4):
            for i in range(6):
                for j in range(6):
                    for c in range(3):
                        for a in range(3):
                            for b in range(3):
                                ii, jj = i + a - 1, j + b - 1
                                if 0 <= ii < 6 and 0 <= jj < 6:
                                    rows.append(out_idx[n, o, i, j])
                                    cols.append(in_idx[n, c, ii, jj])
    return sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(288, 216))


def test_greedy_coloring_is_valid_and_reaches_the_clique_bound():
    P = as_pattern(conv_pattern(), 288, 216)
    c = greedy_colors(P)
    check_colors(c, P)
    # 3 channels x a 3x3 block of pixels all share an output: at least 27 colors needed
    assert c.max() + 1 == 27
    for seed in range(20):
        A = sp.random(30, 25, density=0.15, random_state=seed) != 0
        A = sp.hstack([A, A[:, :4]]).tocsc()            # duplicated columns too
        P = as_pattern(A, 30, 29)
        cc = greedy_colors(P)
        Pd = P.toarray()
        for k in range(cc.max() + 1):                   # brute-force orthogonality
            assert Pd[:, cc == k].sum(axis=1).max(initial=0) <= 1


@pytest.mark.parametrize("method", ["adaptive", "auto"])
def test_pattern_route_equals_uncompressed_route_to_rounding(method):
    x = RNG.standard_normal(XS)
    R = RNG.standard_normal((2, 4, 6, 6))
    P = conv_pattern()
    plain = numerical_vjp(conv_tanh, x, R, method=method, vectorized=True)
    colored = numerical_vjp(conv_tanh, x, R, pattern=P, method=method, vectorized=True)
    assert colored.method == plain.method
    assert colored.ncolors == 27 and colored.nfev < plain.nfev / 5
    tol = np.minimum(plain.error, colored.error)
    assert np.all(np.abs(colored.grad - plain.grad) <= tol)
    # and both against the analytic backward pass (an independent route)
    y = conv_forward(x, W, B, padding=1)
    gx, _, _ = conv_backward(R / np.cosh(y) ** 2, x, W, padding=1)
    assert np.mean(np.abs(colored.grad - gx) <= colored.error) >= 0.97
    assert np.max(np.abs(colored.grad - gx) / np.abs(gx)) < (1e-8 if method == "adaptive" else 1e-12)


def test_user_colors_are_checked_and_used():
    x = RNG.standard_normal(XS)
    R = RNG.standard_normal((2, 4, 6, 6))
    P = conv_pattern()
    _, c, i, j = np.indices(XS)
    colors = (c * 9 + (i % 3) * 3 + (j % 3)).reshape(-1)      # from the geometry
    a = numerical_vjp(conv_tanh, x, R, pattern=P, colors=colors, method="adaptive",
                      vectorized=True)
    b = numerical_vjp(conv_tanh, x, R, pattern=P, method="adaptive", vectorized=True)
    assert a.ncolors == 27
    assert np.all(np.abs(a.grad - b.grad) <= np.minimum(a.error, b.error))


def test_each_element_of_a_color_keeps_its_own_step():
    x = 10.0 ** np.linspace(-6, 6, 25)
    R = RNG.standard_normal(25)
    r = numerical_vjp(np.sqrt, x, R, pattern=sp.eye(25, dtype=bool), method="adaptive")
    assert r.ncolors == 1
    truth = R * 0.5 / np.sqrt(x)
    assert np.all(np.abs(r.grad - truth) <= r.error)
    assert np.max(np.abs(r.grad - truth) / np.abs(truth)) < 1e-9
    assert r.step.max() / r.step.min() > 1e10


def test_sparse_jacobian_matches_dense():
    x = RNG.standard_normal(XS)
    P = conv_pattern()
    dense = numerical_jacobian(conv_tanh, x, vectorized=True, method="adaptive")
    sparse = numerical_jacobian(conv_tanh, x, pattern=P, vectorized=True, method="adaptive")
    Jd = dense.jac.reshape(288, 216)
    Js = sparse.jac.reshape(288, 216)
    off = ~P.toarray()
    assert np.all(Js[off] == 0) and np.all(sparse.error.reshape(288, 216)[off] == 0)
    assert np.all(np.abs(Jd[off]) <= dense.error.reshape(288, 216)[off])
    assert np.all(np.abs(Js - Jd) <= np.maximum(sparse.error, dense.error).reshape(288, 216))
