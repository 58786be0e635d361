"""The generic causes on hand-derived cases: each named when its claim holds, with the
fitted numbers; none named for noise, for a mismatch within its own slack, or for a
mismatch of another shape."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.checker._cause_probes import fit_nonlinear
from gradcheck.checker._causes import CAUSES
from gradcheck.checker._diagnose import Evidence, TensorRole, diagnose_evidence
from gradcheck.checker._fit import SLACK, Known, named_sizes

TOL = 1e-10


def _n(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _name(a, n, **kw):
    tol = kw.pop("tol", np.full(np.shape(n), TOL))
    return diagnose_evidence(Evidence(a, n, tol, **kw))


def _named(ev):
    """The cause named for ``ev``, or None when the mismatch is only described."""
    d = diagnose_evidence(ev)
    return None if d.cause == "no_known_pattern" else d


def _softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# --------------------------------------------------------------------------- the table


def test_every_entry_has_a_unique_cause_and_a_test():
    names = [c.name for c in CAUSES]
    assert len(names) == len(set(names))
    assert all(callable(c.test) for c in CAUSES)
    # no entry claims anything when nothing failed
    n = _n((3, 4, 5))
    ev = Evidence(n, n, np.full(n.shape, TOL), known=Known(x=n, cotangent=n))
    assert all(c.test(ev) is None for c in CAUSES)


# --------------------------------------------------------------------------- scale and sign


def test_sign_and_scale_with_the_factor_named():
    n = _n((8, 5))
    assert _name(-n, n).cause == "sign_flipped"
    known = Known(sizes=named_sizes({"x": (8, 3)}))
    d = _name(n / 8, n, known=known)
    assert d.cause == "scaled" and d.evidence["factor"] == pytest.approx(1 / 8)
    assert "1/8 (size of axis 0" in d.message and "mean where a sum belongs" in d.message
    d = _name(8 * n, n, known=known)
    assert "division by 8 was forgotten" in d.message
    # a product of several axes: N·H·W of a batch-norm's input
    d = _name(n / 80, n, known=Known(sizes=named_sizes({"x": (5, 3, 4, 4)})))
    assert "1/80 (product of axes 0, 2, 3 of x)" in d.message
    # attention's 1/√d: √8 is no simple fraction
    d = _name(np.sqrt(8) * n, n, known=Known(sizes=named_sizes({"q": (5, 8)})))
    assert "√8" in d.message and "1/√8 scale was forgotten" in d.message
    assert "a factor of 2 missing" in _name(n / 2, n).message
    d = _name(0.3125 * n, n)
    assert d.evidence["factor"] == pytest.approx(0.3125) and "5/16" in d.message


def test_a_factor_within_its_own_slack_is_not_named():
    """The float32 case of the issue: one element's numerical side off by 1e-5 (beyond its
    tolerance, within SLACK of it); the least-squares factor 1.00001 'fits' but explains
    only noise, so no scale is named -- only where the mismatch is."""
    a = _n((4, 6)).astype(np.float32).astype(np.float64)
    n = a.copy()
    n[2, 3] = a[2, 3] / 1.00001
    tol = 6e-6 * np.abs(a) + 1e-7        # the numerical side's float32 error bar
    ev = Evidence(a, n, tol)
    assert ev.n_failed == 1
    d = diagnose_evidence(ev)
    assert d.cause == "single_element" and d.evidence["index"] == [2, 3]
    n[1, 1] = a[1, 1] * 1.00001          # two such elements: described, not scaled
    d = diagnose_evidence(Evidence(a, n, tol))
    assert d.cause == "no_known_pattern" and "2 of 24 elements" in d.message


def test_per_slice_scale():
    n = _n((4, 3, 5))
    c = np.array([1.0, 0.5, 2.0])
    d = _name(n * c[:, None], n, role=TensorRole("input", 0, (1,), (2,)))
    assert d.cause == "scaled_per_slice" and d.evidence["axis"] == 1
    assert d.evidence["factors"] == pytest.approx(c)
    assert "axis 1 (channel)" in d.message and "0.5" in d.message
    # factors close to 1: an epsilon in one pass only
    c = 1 + np.array([1e-4, 3e-4, 2e-4, 5e-5])
    d = _name(n * c[:, None, None], n)
    assert d.cause == "scaled_per_slice" and "epsilon" in d.message


# --------------------------------------------------------------------------- layout


def test_axes_transposed_and_reshaped_where_a_transpose_belongs():
    w = _n((5, 5))
    d = _name(w.T, w)
    assert d.cause == "axes_permuted" and "axes 0 and 1 swapped" in d.message
    x = _n((2, 3, 4, 5))
    nhwc = x.transpose(0, 2, 3, 1)              # a gradient computed in NHWC ...
    d = _name(nhwc.reshape(x.shape), x)         # ... reshaped, not transposed, to NCHW
    assert d.cause == "axes_permuted" and "(0, 2, 3, 1)" in d.message
    assert "reshape where the transpose (0, 3, 1, 2) belongs" in d.message


def test_reversed_axis():
    x = _n((2, 3, 7))
    d = _name(x[:, :, ::-1], x)
    assert d.cause == "reversed" and d.evidence["axes"] == [2]


def test_shift_along_one_axis_leaves_its_edge_uncompared():
    x = _n((2, 2, 6, 6))
    a = np.empty_like(x)
    a[:, :, :-1] = x[:, :, 1:]                  # a crop off by one in H only
    a[:, :, -1] = 7.0                           # whatever lay beyond the edge
    d = _name(a, x)
    assert d.cause == "shifted" and d.evidence["axes"] == [2] and d.evidence["by"] == -1
    assert "i2 + 1" in d.message


def test_a_mismatch_only_in_the_edge_a_shift_leaves_out_is_not_a_shift():
    # N constant along the axis: moved by one it is N again, and A = shift(N) holds
    # everywhere but the one element that lies in the edge, the only one that is wrong
    n = np.ones(5)
    a = n.copy()
    a[0] = 5.0
    d = _name(a, n)
    assert d.cause == "single_element" and d.evidence["index"] == [0]


def test_a_gradient_where_the_numerical_one_is_zero_everywhere():
    # f = sin(x) + 0*b: b does not change f, but the backward returns sum(g) for b[0]
    from gradcheck import check_vjp

    x = np.array([0.3, -1.2, 0.7])
    report = check_vjp(lambda x, b: np.sin(x) + 0 * b,
                       lambda g, x, b: (g * np.cos(x), np.array([g.sum(), 0.0, 0.0])),
                       (x, np.zeros(3)), argnames=("x", "b"))
    assert report["x"].passed and not report["b"].passed
    d = report["b"].diagnosis
    assert d.cause == "gradient_where_none" and d.evidence["index"] == [0]
    assert d.message.startswith("The numerical gradient is zero at every element")
    assert "nonzero at 1 of 3 element(s)" in d.message
    # an A that is right where N is nonzero is not this cause
    n = _n((4, 5))
    a = n.copy()
    a[0, 0] += 1.0
    assert _name(a, n).cause == "single_element"


def test_values_permuted_within_rows():
    n = _n((4, 6))
    rng = np.random.default_rng(3)
    a = np.stack([row[rng.permutation(6)] for row in n])
    d = _name(a, n)
    assert d.cause == "permuted_within" and d.evidence["axis"] == 1


# --------------------------------------------------------------------------- missing terms


def _row_term(x, per_row):
    return per_row[:, None] * x


@pytest.mark.parametrize("basis, cause", [
    ("constant", "missing_term_constant"),
    ("centered", "missing_term_centered"),
    ("affine", "missing_term_affine"),
    ("softmax", "missing_term_softmax"),
    ("softmax_affine", "missing_term_softmax_affine"),
])
def test_a_missing_term_per_row(basis, cause):
    x, n = _n((5, 7), 1), _n((5, 7), 2)
    a_, b_ = _n(5, 3), _n(5, 4)
    p = _softmax(x, 1)
    term = {"constant": a_[:, None] * np.ones_like(x),
            "centered": _row_term(x - x.mean(1, keepdims=True), b_),
            "affine": a_[:, None] + _row_term(x, b_),
            "softmax": _row_term(p, b_),
            "softmax_affine": a_[:, None] + _row_term(p, b_)}[basis]
    d = _name(n + term, n, known=Known(x=x))
    assert d.cause == cause and d.evidence["axes"] == [1], d
    assert d.evidence["misfit_after"] <= SLACK


def test_a_missing_term_constant_along_the_normalized_axes_of_a_batch_norm():
    x, n = _n((4, 3, 3, 3), 1), _n((4, 3, 3, 3), 2)
    per_channel = np.array([0.3, -0.2, 0.5])[None, :, None, None]
    d = _name(n + per_channel, n, known=Known(x=x))
    assert d.cause == "missing_term_constant" and d.evidence["axes"] == [0, 2, 3]


def test_missing_terms_in_the_value_and_in_the_cotangent():
    w, n = _n((4, 3), 1), _n((4, 3), 2)
    d = _name(n - 0.01 * w, n, known=Known(x=w))
    assert d.cause == "missing_term_value" and "-0.01" in d.message
    r = _n((4, 3), 3)
    d = _name(n - r, n, known=Known(x=w, cotangent=r))
    assert d.cause == "missing_term_cotangent" and "residual" in d.message


def test_rank_one_difference():
    n = _n((6, 5), 1)
    u, v = _n(6, 2), _n(5, 3)
    d = _name(n - np.outer(u, v), n)
    assert d.cause == "missing_term_rank_one"
    # a difference in one row only is a mask, not an outer product
    a = n.copy()
    a[2] += 1.0
    assert _name(a, n).cause != "missing_term_rank_one"


# --------------------------------------------------------------------------- element-wise


def test_elementwise_relations():
    x = np.random.default_rng(5).uniform(0.5, 2.0, (4, 5))
    n = _n((4, 5), 6)
    d = _name(n * x, n, known=Known(x=x))
    assert d.cause == "elementwise_relation" and d.evidence["h"] == "x"
    d = _name(-2 * n / x, n, known=Known(x=x))
    assert d.evidence["h"] == "1/x" and d.evidence["factor"] == pytest.approx(-2)
    d = _name(n * np.exp(-x), n, known=Known(x=x))
    assert d.evidence["h"] == "exp(-x)"


def test_derivative_at_the_output_of_an_elementwise_f():
    def f(v):
        return v / (1 + v * v)                   # not in the activation table

    def fp(v):
        return (1 - v * v) / (1 + v * v) ** 2

    x, r = _n((3, 4), 1), _n((3, 4), 2)
    n, a = r * fp(x), r * fp(f(x))
    d = _name(a, n, tol=1e-9 + 1e-9 * np.abs(n), known=Known(x=x, cotangent=r, forward=f))
    assert d.cause == "derivative_at_output"


def test_value_masks():
    x = np.linspace(-3, 3, 24).reshape(4, 6) + 0.01
    r = _n((4, 6), 1)
    clip_right = r * (np.abs(x) < 1)
    d = _name(r, clip_right, known=Known(x=x, cotangent=r))
    assert d.cause == "value_mask" and d.evidence["relation"] == "leaks"
    assert "outside an interval" in d.message
    d = _name(r, r * np.sign(x), known=Known(x=x, cotangent=r))
    assert d.cause == "value_mask" and d.evidence["relation"] == "sign"
    assert "x < 0" in d.message
    leaky = r * np.where(x > 0, 1.0, 0.2)
    d = _name(r * np.where(x > 0, 1.0, 0.02), leaky, known=Known(x=x))
    assert d.evidence["relation"] == "scaled" and d.evidence["factor"] == pytest.approx(0.1)
    relu6 = r * ((x > 0) & (x < 2))
    d = _name(r * (x > 0), relu6, known=Known(x=x))
    assert d.cause == "value_mask" and "between 1.967 and 2.227" in d.message


def test_position_masks():
    x = _n((2, 3, 8, 8))
    a = x.copy()
    a[:, :, [0, 1, 6, 7], :] *= 0.5
    a[:, :, :, [0, 1, 6, 7]] *= 0.5
    d = _name(a, x)
    assert d.cause == "position_mask" and "2 positions nearest either end" in d.message
    a = x.copy()
    a[:, :, 2::2] = 0                       # every 2nd row from 2 dropped
    d = _name(a, x)
    assert d.cause == "position_mask" and "mod 2" in d.message
    assert d.evidence["relation"] == "dropped"
    a = x.copy()
    a[:, 1] *= -1                            # one channel with the wrong sign (no role:
    d = _name(a, x)                          # the axis is not known to be a channel)
    assert d.cause == "position_mask" and d.evidence["relation"] == "sign"
    assert "index 1 along axis 1" in d.message


# --------------------------------------------------------------------------- linearity


def test_a_backward_that_ignores_its_incoming_gradient():
    r = _n(6, 1)
    fixed = _n((6, 4), 2)
    calls = []

    def backward(cot):
        calls.append(cot)
        return fixed                             # e.g. softmax-CE's "p - y"

    n = r[:, None] * fixed
    d = _name(fixed, n, known=Known(cotangent=r, backward=backward))
    assert d.cause == "nonlinear_in_cotangent" and "ignores its incoming" in d.message
    assert d.evidence["calls"] == len(calls) == 2          # 2R, then R again
    assert np.array_equal(calls[0], 2 * r)


def test_a_backward_that_clips_or_squares_its_incoming_gradient():
    r = 2 * _n(8, 1)
    j = _n((8, 3), 2)
    d = _name(np.clip(r, -1, 1)[:, None] * j, r[:, None] * j,
              known=Known(cotangent=r, backward=lambda c: np.clip(c, -1, 1)[:, None] * j))
    assert d.cause == "nonlinear_in_cotangent" and "non-linearly" in d.message
    d = _name((r * r)[:, None] * j, r[:, None] * j,
              known=Known(cotangent=r, backward=lambda c: (c * c)[:, None] * j))
    assert "squared" in d.message
    d = _name(np.abs(r)[:, None] * j, r[:, None] * j,
              known=Known(cotangent=r, backward=lambda c: np.abs(c)[:, None] * j))
    assert "even function" in d.message and d.evidence["calls"] == 2


def test_a_linear_backward_is_not_called_nonlinear():
    r, j = _n(8, 1), _n((8, 3), 2)
    n = r[:, None] * j
    calls = []

    def backward(c):                              # linear, but the wrong Jacobian
        calls.append(1)
        return 1.5 * c[:, None] * j

    ev = Evidence(1.5 * n, n, np.full(n.shape, TOL), known=Known(cotangent=r, backward=backward))
    assert fit_nonlinear(ev) is None and len(calls) == 4      # 2R, -R, R', R + R'
    assert diagnose_evidence(ev).cause == "scaled"            # named before any call


def test_a_small_departure_from_linearity_is_not_named():
    """A linear backward with a little fixed noise added departs from linearity by far
    less than the gradient: where the mismatch is says more than 'not linear'."""
    r, j = _n(8, 1), _n((8, 3), 2)
    noise = 1e-3 * _n((8, 3), 3)

    def backward(c):
        return c[:, None] * j + noise

    ev = Evidence(backward(r), r[:, None] * j, np.full(j.shape, TOL),
                  known=Known(cotangent=r, backward=backward))
    assert fit_nonlinear(ev) is None
    big = Evidence(r[:, None] * j + 1.0, r[:, None] * j, np.full(j.shape, TOL),
                   known=Known(cotangent=r, backward=lambda c: c[:, None] * j + 1.0))
    d = diagnose_evidence(big)                    # a term added outside the product with R
    assert d.cause == "nonlinear_in_cotangent" and "L(R) + c" in d.message


def test_a_nondeterministic_backward():
    r, j = _n(8, 1), _n((8, 3), 2)
    rng = np.random.default_rng(0)

    def backward(c):
        return c[:, None] * j * rng.uniform(0.5, 1.5, j.shape)

    d = _name(backward(r), r[:, None] * j, known=Known(cotangent=r, backward=backward))
    assert d.cause == "nonlinear_in_cotangent" and "not deterministic" in d.message


# --------------------------------------------------------------------------- no false causes


@pytest.mark.parametrize("seed", range(60))
def test_unstructured_mismatches_name_no_cause(seed):
    """Wrong values on a random set of elements (absolute or relative errors), or one
    blip over noise within the slack, at random sizes: no cause fits. (Measured on 1500
    seeds: none named.)"""
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(2, 8, size=rng.integers(1, 5)))
    n, x, r = (rng.standard_normal(shape) for _ in range(3))
    wrong = rng.random(shape) < rng.uniform(0.02, 1.0)
    if seed % 3 == 0:
        a = np.where(wrong, n + rng.standard_normal(shape), n)
    elif seed % 3 == 1:
        a = np.where(wrong, n * (1 + 0.3 * rng.standard_normal(shape)), n)
    else:
        a = n + rng.uniform(-3, 3, shape) * TOL
        a.flat[rng.integers(a.size)] += 1.0
    ev = Evidence(a, n, np.full(shape, TOL), known=Known(x=x, cotangent=r))
    if ev.n_failed > 1:
        assert _named(ev) is None


@pytest.mark.parametrize("seed", range(10))
def test_noise_within_the_slack_names_no_cause(seed):
    rng = np.random.default_rng(seed)
    n = rng.standard_normal((4, 5, 3))
    tol = 1e-6 * (np.abs(n) + 0.1)
    a = n + rng.uniform(-2, 2, n.shape) * tol         # up to twice the tolerance
    ev = Evidence(a, n, tol, known=Known(x=rng.standard_normal(n.shape)))
    assert ev.n_failed > 1 and _named(ev) is None


def test_the_description_says_where_and_how_large():
    n = _n((4, 6, 5))
    a = n.copy()
    a[1, 2:4] += _n((2, 5), 3)
    a[3, 5, :2] += 1.0
    d = _name(a, n)
    assert d.cause == "no_known_pattern"
    assert "12 of 120 elements" in d.message
    assert "only at indices 1, 3 of axis 0" in d.message
    assert "indices 2, 3, 5 of axis 1" in d.message
    assert d.evidence["failed_elements"] == 12


def test_the_description_names_the_one_index_an_axis_is_spared_at():
    # mismatches at every index of axis 2 but 8 (of 9), at random: the index without a
    # mismatch is the one to name, not a list of the eight with one
    rng = np.random.default_rng(5)
    n = _n((2, 3, 9))
    a = n + rng.standard_normal(n.shape)
    a[:, :, 8] = n[:, :, 8]
    d = _name(a, n)
    assert d.cause == "no_known_pattern", d.message
    assert "all but index 8 of axis 2 (of 9)" in d.message
    assert "of axis 0" not in d.message and "of axis 1" not in d.message


def test_a_forgotten_1_over_m_names_the_normalized_axes_when_sizes_coincide():
    # batch norm over axes 0, 2, 3 of a (4, 3, 3, 3) input, its backward without the / m
    # (m = 4·3·3 = 36): products of axes 0, 1, 2 and 0, 1, 3 are 36 too
    from gradcheck import check_vjp

    def bn(x):
        mu, var = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5)

    def bn_vjp_without_1_over_m(g, x):
        inv = 1 / np.sqrt(x.var((0, 2, 3), keepdims=True) + 1e-5)
        xh = (x - x.mean((0, 2, 3), keepdims=True)) * inv
        m = x.size // x.shape[1]
        s1, s2 = g.sum((0, 2, 3), keepdims=True), (g * xh).sum((0, 2, 3), keepdims=True)
        return (inv * (m * g - s1 - xh * s2),)              # the slip: no / m

    x = _n((4, 3, 3, 3), 3)
    d = check_vjp(bn, bn_vjp_without_1_over_m, (x,), argnames=("x",))["x"].diagnosis
    assert d.cause == "scaled" and d.evidence["factor"] == pytest.approx(36)
    assert "36 (product of axes 0, 2, 3)" in d.message
    # with nothing to tell them apart, the coinciding sizes are all said
    d = _name(36 * x, x)
    assert ("product of axes 0, 1, 2, product of axes 0, 1, 3 or product of axes 0, 2, 3: "
            "these sizes coincide") in d.message


def test_factors_read_as_people_write_them():
    n = _n((3, 16))
    d = _name(n / 4, n)                        # 1/√16 of a head size 16
    assert "1/4 = 1/√16 (size of axis 1)" in d.message
    assert "attention scales by 1/√d, here d = 16" in d.message
    d = _name(463 / 38 * n, n)                 # no fraction people write
    assert "12.1842 times the numerical one" in d.message and "463/38" not in d.message


def test_an_all_zero_gradient_is_no_element_wise_relation():
    # A = 0 everywhere "fits" A = 0·x·N; that explains nothing: no relation is named
    x = np.linspace(0.5, 2.0, 6)
    r = _n(6, 4)
    d = _name(np.zeros(6), r * x, known=Known(x=x, cotangent=r))
    assert d.cause != "elementwise_relation" and "0·" not in d.message


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("true_slope, used_slope", [(0.2, 0.1), (0.01, 0.02), (0.3, 0.2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_leaky_slope_slip_with_exact_zeros_in_x_is_named_for_the_slope(
        dtype, true_slope, used_slope, seed):
    # a leaky ReLU whose backward uses the wrong negative slope, at an x holding exact
    # zeros (the kink): the mismatches are every negative element, the analytic gradient
    # used_slope / true_slope times the numerical one there (by hand: d/dx of slope*x);
    # the two kink elements are no reason to name the kink instead
    from gradcheck import check_vjp

    def f(x):
        return np.where(x > 0, x, np.asarray(true_slope, x.dtype) * x)

    def f_vjp(g, x):
        return (g * np.where(x > 0, 1.0, used_slope).astype(x.dtype),)

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 8, 6, 6)).astype(dtype)
    x.flat[rng.choice(x.size, 3, replace=False)] = 0
    d = check_vjp(f, f_vjp, (x,), argnames=("x",))["x"].diagnosis
    assert d.cause == "value_mask", d.message
    assert d.evidence["relation"] == "scaled" and "x < 0" in d.message
    assert d.evidence["factor"] == pytest.approx(used_slope / true_slope, rel=1e-3)


def test_a_slope_slip_is_fitted_with_the_uncertain_elements_next_to_the_kink_weighed_less():
    # float64, many elements: a few negative elements within a step of the kink carry a
    # wide numerical error bar; the factor on x < 0 is still 2 (0.2 used, 0.1 true),
    # not "wrong there"
    from gradcheck import check_vjp

    def f(x):
        return np.where(x > 0, x, 0.1 * x)

    def f_vjp(g, x):
        return (g * np.where(x > 0, 1.0, 0.2),)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 32, 32))
    x.flat[rng.choice(x.size, 5, replace=False)] = 0
    d = check_vjp(f, f_vjp, (x,), argnames=("x",))["x"].diagnosis
    assert d.cause == "value_mask" and d.evidence["relation"] == "scaled", d.message
    assert d.evidence["factor"] == pytest.approx(2.0, rel=1e-9)


def test_mismatches_only_at_the_corners_are_called_the_corners_not_the_border():
    # an input gradient (role known: region) and a bare array (position mask), wrong at
    # the four corners of the spatial axes only
    n = _n((2, 3, 6, 6))
    a = n.copy()
    a[:, :, [0, 0, -1, -1], [0, -1, 0, -1]] = 0.0
    d = _name(a, n, role=TensorRole.for_array("input", 4))
    assert d.cause == "region" and "the corners" in d.message and "the border (" not in d.message
    bare = _n((5, 7, 7))
    a = bare.copy()
    a[:, [0, 0, -1, -1], [0, -1, 0, -1]] *= 2
    d = _name(a, bare)
    assert d.cause == "position_mask" and "(the corners;" in d.message
    # a whole border is still a border
    a = n.copy()
    a[:, :, [0, -1], :] = 0.0
    a[:, :, :, [0, -1]] = 0.0
    d = _name(a, n, role=TensorRole.for_array("input", 4))
    assert d.cause == "region" and "the border (" in d.message and "corners" not in d.message


def test_a_transposed_weight_gradient_is_not_said_to_lack_a_rotation():
    # dW with its kernel axes swapped: the weight gradient has no rotation in it, so the
    # message says what differs (its kernel axes' order), not "instead of rotated"
    from gradcheck import check_vjp, conv_backward, conv_forward

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))

    def bad(g, x, w):
        gx, gw, _ = conv_backward(g, x, w, padding=1)
        return gx, np.swapaxes(gw, -1, -2)

    report = check_vjp(lambda x, w: conv_forward(x, w, padding=1), bad, (x, w),
                       argnames=("x", "w"))
    assert report["x"].passed
    d = report["w"].diagnosis
    assert d.cause == "transposed"
    assert "the weight gradient came out transposed" in d.message
    assert "instead of rotated" not in d.message
    # an input gradient transposed keeps the rotation wording
    n = _n((2, 3, 5, 5))
    d = _name(np.swapaxes(n, 2, 3), n, role=TensorRole.for_array("input", 4))
    assert d.cause == "transposed" and "instead of rotated" in d.message


def test_a_masks_count_is_the_checks_and_names_the_failures_outside_it():
    """A cause's "All N mismatches" counts what the report's header counts: every failed
    element, kink elements included; those outside the fitted set are said apart."""
    from gradcheck.checker._diagnose import Evidence
    from gradcheck.checker._fit import mismatches_in
    from gradcheck.checker._judge import Judgement

    a = np.array([1.0, 2.0, 3.0, 0.5])
    n = np.array([1.0, 0.2, 0.3, 0.0])
    failed = np.array([False, True, True, True])       # element 3 fails at a kink
    kink = np.array([False, False, False, True])
    z = np.zeros(4, bool)
    judged = Judgement(a, n, np.zeros(4), np.full(4, 0.01), np.abs(a - n), failed, kink,
                       kink, z)
    ev = Evidence(a, n, 0.01, exclude=kink, judged=judged)
    assert ev.n_failed == 2                              # the fit's own count leaves it out
    assert mismatches_in(ev, np.array([False, True, True, True])) == "All 3 mismatches"
    assert mismatches_in(ev, np.array([False, True, True, False])) == (
        "2 of the 3 mismatches (the other 1: at kinks, or off by less than 4 tolerances)")


def test_a_mismatch_of_two_like_directions_is_not_named_an_outer_product():
    # A float32 layer norm whose backward takes eps = 1e-3 where the forward takes 1e-5:
    # the difference of the two backward passes (float64, by hand) has a second singular
    # value over half its first -- no outer product. Named missing_term_rank_one once, the
    # rank-one fit being within float32's wide tolerance (3.6 tolerances).
    from gradcheck import check_vjp

    def ln(x, eps=1e-5):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)

    def ln_vjp(eps):
        def vjp(g, x):
            s = np.sqrt(x.var(-1, keepdims=True) + eps)
            xh = (x - x.mean(-1, keepdims=True)) / s
            return ((g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True)) / s,)
        return vjp

    from gradcheck.checker._scalarize import seeded_cotangent

    x = np.random.default_rng(0).standard_normal((4, 16))
    g = seeded_cotangent(0, x.shape)                 # the check's cotangent at seed 0
    s = np.linalg.svd(ln_vjp(1e-3)(g, x)[0] - ln_vjp(1e-5)(g, x)[0], compute_uv=False)
    assert s[1] > s[0] / 2, s
    report = check_vjp(ln, ln_vjp(1e-3), (x.astype(np.float32),))
    assert not report.passed
    assert report["arg0"].diagnosis.cause != "missing_term_rank_one", str(report)
