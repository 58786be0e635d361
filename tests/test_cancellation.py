"""Gradients that cancel to zero: a right backward returns rounding of the terms that
cancel, which the element-wise allowance takes from the magnitudes ``f``'s outputs are
formed from (:mod:`gradcheck.checker._formed`), not from the outputs' own values --
while a wrong gradient there still fails."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_jvp, check_vjp
from gradcheck.checker._formed import row_magnitudes

EPS = 1e-5


def _normalized(x):
    m = x.mean(1, keepdims=True)
    s = np.sqrt(((x - m) ** 2).mean(1, keepdims=True) + EPS)
    return (x - m) / s, s


def layer_norm_mean(x):
    """A layer norm's rows averaged: zero by cancellation, whatever ``x``."""
    return _normalized(x)[0].mean(1)


def layer_norm_mean_vjp(g, x, slip=None):
    """The right backward (the textbook layer-norm backward of the averaged rows); with
    ``slip = (index, share)``, element ``index`` moved by ``share`` of the size of the
    terms it is summed from."""
    xh, s = _normalized(x)
    n = x.shape[1]
    gy = np.repeat(g[:, None], n, 1) / n
    gx = (gy - gy.mean(1, keepdims=True) - xh * (gy * xh).mean(1, keepdims=True)) / s
    if slip is not None:
        index, share = slip
        gx[index] += share * np.abs(gy / s)[index]
    return (gx,)


def layer_norm_mean_jvp(t, x):
    (t,) = t
    xh, s = _normalized(x)
    tm = t - t.mean(1, keepdims=True)
    return (tm - xh * (xh * tm).mean(1, keepdims=True)).mean(1) / s[:, 0]


def test_the_terms_of_a_cancelling_output_are_measured():
    x = np.random.default_rng(0).standard_normal((4, 16))
    y = layer_norm_mean(x)
    rows = row_magnitudes(layer_norm_mean, (x,), y, seed=0)
    # the outputs are rounding (about 1e-17); the terms averaged are of order one, and
    # their rounding after the mean is about eps / 16 of that: measured between
    assert np.all(np.abs(y) < 1e-15)
    assert np.all((rows > 1e-3) & (rows < 1e2)), rows


def _standardized_mean(x):
    return (x - x.mean(1, keepdims=True)).mean(1) / x.std(1)


def _standardized_mean_vjp(g, x):
    """Right: the mean of a centred row is zero whatever x, so is its gradient; what is
    computed is the rounding of the terms that cancel."""
    n = x.shape[1]
    c, s = x - x.mean(1, keepdims=True), x.std(1, keepdims=True)
    gc = np.repeat(g[:, None] / s, n, 1) / n
    gc = gc - gc.mean(1, keepdims=True)
    return (gc - (g * c.mean(1))[:, None] / s ** 2 * c / (n * s),)


def test_the_probe_changes_the_low_bits():
    # steps of a power of two leave the low bits of x, and with them the rounding of a
    # mean subtracted: the second differences of this f were exactly 0
    x = np.random.default_rng(0).standard_normal((2, 64))
    rows = row_magnitudes(_standardized_mean, (x,), _standardized_mean(x), seed=0)
    assert np.all(rows > 1e-2), rows
    failed = [seed for seed in range(12) if not check_vjp(
        _standardized_mean, _standardized_mean_vjp,
        (np.random.default_rng(seed).standard_normal((2, 64)),), seed=seed).passed]
    assert failed == []


def test_a_layer_norm_averaged_has_no_false_alarm():
    failed = [seed for seed in range(36) if not check_vjp(
        layer_norm_mean, layer_norm_mean_vjp,
        (np.random.default_rng(seed).standard_normal((4, 16)),), seed=seed).passed]
    assert failed == []


@pytest.mark.parametrize("dtype, share", [("float64", 1e-6), ("float32", 2e-3)])
def test_a_slip_in_a_cancelling_gradient_still_fails(dtype, share):
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(dtype)
    report = check_vjp(layer_norm_mean,
                       lambda g, x: layer_norm_mean_vjp(g, x, ((2, 5), share)), (x,))
    assert not report.passed, str(report)
    assert report.arguments[0].n_failed == 1 and report.arguments[0].worst_index == (2, 5)


def test_a_layer_norm_averaged_without_its_mean_term_fails():
    x = np.random.default_rng(2).standard_normal((4, 16))

    def forgot(g, x):           # the backward of x / s - xh * mean(...): no mean term
        xh, s = _normalized(x)
        gy = np.repeat(g[:, None], x.shape[1], 1) / x.shape[1]
        return ((gy - xh * (gy * xh).mean(1, keepdims=True)) / s,)

    report = check_vjp(layer_norm_mean, forgot, (x,))
    assert not report.passed and report.arguments[0].n_failed > x.size // 2, str(report)


def test_a_floor_is_not_said_to_let_through_what_the_automatic_tolerance_passes():
    x = np.random.default_rng(0).standard_normal((4, 16))
    report = check_vjp(layer_norm_mean, layer_norm_mean_vjp, (x,), atol=1e-12)
    assert report.passed
    assert any("atol=1e-12 given" in n for n in report.notes), report.notes
    assert not any("automatic tolerance allows" in n for n in report.notes), report.notes


def test_forward_mode_of_a_layer_norm_averaged_has_no_false_alarm():
    failed = [seed for seed in range(12) if not check_jvp(
        layer_norm_mean, layer_norm_mean_jvp,
        (np.random.default_rng(seed).standard_normal((4, 16)),), seed=seed).passed]
    assert failed == []


def _conv_bn(x, w, b):
    """A 1-D convolution (valid, one input channel) and a batch norm over (N, L) per
    channel: the bias is removed by the norm, its true gradient is zero."""
    z = np.stack([np.stack([np.convolve(xi, wc[::-1], "valid") for wc in w]) for xi in x])
    z = z + b[None, :, None]
    m = z.mean((0, 2), keepdims=True)
    s = np.sqrt(((z - m) ** 2).mean((0, 2), keepdims=True) + EPS)
    return z, (z - m) / s, s


def _conv_bn_vjp(g, x, w, b):
    _, zh, s = _conv_bn(x, w, b)
    gz = (g - g.mean((0, 2), keepdims=True)
          - zh * (g * zh).mean((0, 2), keepdims=True)) / s
    k = w.shape[1]
    gw = np.stack([[sum(np.dot(gz[n, c], x[n, i:i + gz.shape[2]]) for n in range(len(x)))
                    for i in range(k)] for c in range(len(w))])
    gx = np.stack([sum(np.convolve(gz[n, c], w[c], "full") for c in range(len(w)))
                   for n in range(len(x))])
    return gx, gw, gz.sum((0, 2))


@pytest.mark.parametrize("seed", range(3))
def test_a_bias_removed_by_a_batch_norm_has_no_false_alarm(seed):
    rng = np.random.default_rng(seed)
    args = (rng.standard_normal((3, 12)), rng.standard_normal((4, 3)),
            rng.standard_normal(4))
    report = check_vjp(lambda x, w, b: _conv_bn(x, w, b)[1], _conv_bn_vjp, args,
                       argnames=("x", "w", "b"), seed=seed)
    assert report.passed, str(report)


@pytest.mark.parametrize("case", ["layer_norm_mean", "batch_norm_sum"])
def test_torch_second_order_of_a_cancelling_function_has_no_false_alarm(case):
    torch = pytest.importorskip("torch", reason="the PyTorch drop-in needs torch")
    import torch.nn.functional as F

    from gradcheck.torch import check_function

    # the cases on which the analytic allowance was about 1e-19 (1e-28) where the
    # analytic value, rounding of the terms that cancel, was 5e-18 (3e-17)
    if case == "layer_norm_mean":
        fn, shape = (lambda x: F.layer_norm(x, (8,)).mean(1)), (4, 8)
    else:
        fn, shape = (lambda x: F.batch_norm(x, None, None, training=True).sum()), (2, 16)
    torch.manual_seed(2)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    report = check_function(fn, (x,), order=2, seed=2)
    assert report.passed, str(report)


def test_jax_forward_second_order_of_a_cancelling_function_has_no_false_alarm():
    jax = pytest.importorskip("jax", reason="the JAX drop-in needs jax")
    import jax.numpy as jnp

    from gradcheck.jax import check_function

    jax.config.update("jax_enable_x64", True)
    try:
        # the derivative of a standardized vector's sum is zero; its own derivative
        # along a tangent was judged with an allowance of exactly 0
        x = jnp.asarray(np.random.default_rng(0).standard_normal(8))
        report = check_function(lambda x: jax.nn.standardize(x, axis=-1).sum(), (x,),
                                order=2, modes=("fwd",))
        assert report.passed, str(report)
    finally:
        jax.config.update("jax_enable_x64", False)


def _tiny_inputs_huge_weights(seed=3):
    """float32 tanh(x @ w.T + b) with x at a scale 1e-5 and w at 1e5: pre-activations of
    order one, each formed from terms |x_nk w_jk| of order one."""
    r = np.random.default_rng(seed)
    s = 1.07e-5
    x = (s * r.standard_normal((3, 4))).astype(np.float32)
    w = (r.standard_normal((3, 4)) / (2 * s)).astype(np.float32)
    b = (0.3 * r.standard_normal(3)).astype(np.float32)
    return x, w, b


def test_the_probe_follows_an_argument_of_a_small_scale():
    x, w, b = _tiny_inputs_huge_weights()

    def f(x, w, b):
        return np.tanh(x @ w.T + b)

    y = f(x, w, b)
    # the largest terms each output is formed from, by hand
    terms = np.maximum((np.abs(x)[:, None, :] * np.abs(w)[None]).max(-1), np.abs(b))
    assert np.all(row_magnitudes(f, (x, w, b), y, seed=3) <= 8 * terms.max())


def test_a_slip_in_the_weights_of_inputs_of_a_small_scale_fails():
    # one element of dC/dw 5% off: the allowance, once an element departs, comes from
    # the measured terms (of order one here), so it must stay far below 5% of dC/dw
    x, w, b = _tiny_inputs_huge_weights()

    def f(x, w, b):
        return np.tanh(x @ w.T + b)

    def f_vjp(g, x, w, b):
        d = (g * (1 - np.tanh(x @ w.T + b) ** 2)).astype(np.float32)
        gw = d.T @ x
        k = np.unravel_index(np.argmax(np.abs(gw)), gw.shape)
        gw[k] *= np.float32(1.05)
        return d @ w, gw, d.sum(0)

    report = check_vjp(f, f_vjp, (x, w, b), argnames=("x", "w", "b"), seed=3)
    assert not report["w"].passed, str(report)


def _offset_batch_norm(seed, n=32, spread=0.015):
    """float32 batch norm over the batch of ``x = 100 + 0.015 N(0, 1)``: the smallest
    move of ``x`` a probe can make exactly (an odd multiple of ulps of 100) is a
    noticeable share of the spread the norm varies on."""
    r = np.random.default_rng(seed)
    x = (100 + spread * r.standard_normal((n, 3))).astype(np.float32)
    gamma = (1 + 0.2 * r.standard_normal(3)).astype(np.float32)
    beta = (0.1 * r.standard_normal(3)).astype(np.float32)

    def f(x, gamma, beta):
        m = x.mean(0)
        return gamma * (x - m) / np.sqrt(((x - m) ** 2).mean(0) + np.float32(EPS)) + beta

    def f_vjp(g, x, gamma, beta, slip=False):
        m = x.mean(0)
        s = np.sqrt(((x - m) ** 2).mean(0) + np.float32(EPS))
        xh = (x - m) / s
        gx = gamma / s * (g - g.mean(0) - xh * (g * xh).mean(0))
        ggamma = (g * xh).sum(0)
        if slip:                # the largest element 5% off
            ggamma[np.argmax(np.abs(ggamma))] *= np.float32(1.05)
        return gx, ggamma, g.sum(0)

    return (x, gamma, beta), f, f_vjp


@pytest.mark.parametrize("seed", [0, 5])
def test_a_slip_in_gamma_of_an_offset_float32_batch_norm_fails(seed):
    # the probe's moves of x (about 54 ulps of 100, 4e-4) are 3% of the spread: the
    # batch norm's curvature showed in the second differences and was read as rounding,
    # an allowance of 6% of the gamma gradient, and a 5% slip passed (now 2-3.5%; the
    # two seeds are ones where it passed before)
    from gradcheck.checker._scalarize import seeded_cotangent

    args, f, f_vjp = _offset_batch_norm(seed)
    x, gamma, _ = args
    names = ("x", "gamma", "beta")
    # (x itself may mismatch here: its numerical derivative at steps of a few ulps of
    # 100 is the numerical side's business, not this allowance's)
    assert check_vjp(f, f_vjp, args, argnames=names, seed=seed)["gamma"].passed
    report = check_vjp(f, lambda g, *a: f_vjp(g, *a, slip=True), args, argnames=names,
                       seed=seed)
    assert not report["gamma"].passed, str(report)
    # by hand: each output is formed from terms of size |gamma| |x| / s (the rounding of
    # x - mean, at the scale of x = 100, carried by 1/s); the allowance is 64 ulps of the
    # gradient's size, of its rms and of the largest such term of <R, f> per unit gamma
    x64 = x.astype(np.float64)
    s = x64.std(0)
    R = seeded_cotangent(seed, x.shape)
    right = (R * (x64 - x64.mean(0)) / np.sqrt(s ** 2 + EPS)).sum(0)
    k = int(np.argmax(np.abs(right)))
    assert report["gamma"].worst_index == (k,)
    terms = np.abs(R) * np.abs(gamma.astype(np.float64)) * np.abs(x64) / s
    hand = 64 * np.finfo(np.float32).eps * (abs(right[k]) + np.sqrt(np.mean(right ** 2))
                                             + terms.max() / max(abs(gamma[k]), 1.0))
    tol = report["gamma"].tolerance_at_worst
    assert tol < 4 * hand, (tol, hand)
    assert tol < 0.05 * abs(right[k]), (tol, right[k])


# --------------------------------------------------------------------------- the analytic
# side's own terms (checker/_formed.gradient_magnitudes)


def _softmax_two_routes(x):
    """The softmax of ``x`` by two routes (with and without the largest entry taken out):
    equal in exact arithmetic, each rounded its own way."""
    e = np.exp(x)
    shifted = np.exp(x - x.max())
    return e / e.sum(), shifted / shifted.sum()


def flat(x):
    """``logsumexp(x) - logsumexp(x)``, taken by one route: exactly 0 at every point."""
    return np.atleast_1d(np.log(np.exp(x).sum()) - np.log(np.exp(x).sum()))


def flat_vjp(g, x):
    """The right backward of :func:`flat` (zero), formed as the difference of the two
    routes' softmax: rounding of the terms ``g s_j``, which ``f``'s outputs (exactly 0
    wherever ``x`` moves) do not show."""
    s1, s2 = _softmax_two_routes(x)
    return (g[0] * s1 - g[0] * s2,)


def test_the_terms_of_a_cancelling_gradient_are_measured():
    x = np.random.default_rng(0).standard_normal(16)
    assert not np.any(row_magnitudes(flat, (x,), flat(x), seed=0))   # f shows nothing
    _assert_the_terms_rounding_is_measured(flat_vjp, x)


def _assert_the_terms_rounding_is_measured(vjp, x):
    """``vjp(0.7, x)``, zero by cancellation, against the rounding gradient_magnitudes
    measures for it."""
    from gradcheck.checker._formed import OWN_BARS, gradient_magnitudes

    g = np.array([0.7])
    (a,) = vjp(g, x)
    assert np.all(np.abs(a) < 1e-16) and np.any(a != 0)
    (m,) = gradient_magnitudes(vjp, g, (x,), (a,), seed=0)
    # in the resolution's units: 64 ulps of m are OWN_BARS measured roundings
    rounding = m * 64 * np.finfo(np.float64).eps / OWN_BARS
    # by hand: the two terms of element j are about 0.7 s_j, and their difference rounds
    # at an ulp or so of that: measured, over the argument, at least a quarter of it and
    # at most ten of the largest; each analytic value within OWN_BARS of it
    terms = 0.7 * _softmax_two_routes(x)[0] * np.finfo(np.float64).eps
    rms = lambda v: float(np.sqrt(np.mean(v * v)))  # noqa: E731
    assert rms(rounding) > 0.25 * rms(terms) and rounding.max() < 10 * terms.max(), \
        (rounding, terms)
    assert np.all(np.abs(a) <= OWN_BARS * rounding)


def test_a_gradient_at_the_rounding_of_its_own_terms_has_no_false_alarm():
    # f is exactly 0 near every point, so the magnitude of the terms its outputs are
    # formed from is 0 and allowed 1e-31 where the backward returns 1e-17; as torch's
    # batch_norm(x).sum() at order 2 over a batch of two (properties/test_known_issues.py)
    failed = [seed for seed in range(24) if not check_vjp(
        flat, flat_vjp, (np.random.default_rng(seed).standard_normal(16),),
        seed=seed).passed]
    assert failed == []


@pytest.mark.parametrize("share", [0.03, -0.05])
def test_a_slip_in_a_gradient_of_the_size_of_that_rounding_still_fails(share):
    # not cancelling: 1e-16 logsumexp(x), whose gradient 1e-16 g softmax(x) is as small
    # as the rounding above; one element off by a few % of itself fails alone
    x = np.random.default_rng(1).standard_normal(16)

    def f(x):
        return np.atleast_1d(1e-16 * np.log(np.exp(x).sum()))

    def f_vjp(g, x, slip=0.0):
        s = _softmax_two_routes(x)[1]
        gx = 1e-16 * g[0] * s
        gx[5] *= 1 + slip
        return (gx,)

    assert check_vjp(f, f_vjp, (x,)).passed
    report = check_vjp(f, lambda g, x: f_vjp(g, x, share), (x,))
    assert not report.passed, str(report)
    assert report.arguments[0].n_failed == 1 and report.arguments[0].worst_index == (5,)


def flat_vjp_formed_at_the_point(g, x, slip=None):
    """The right backward of :func:`flat` (zero), formed from ``x`` alone and then scaled
    by the cotangent: ``(s1 - s2) g``, a fixed linear map of ``g`` whose rounding no move
    of ``g`` changes (as torch's double backward of a batch norm's sum, whose rounding is
    that of ``x - mean``). With ``slip = (index, share)``, element ``index`` moved by
    ``share`` of its terms ``g s_j``."""
    s1, s2 = _softmax_two_routes(x)
    gx = (s1 - s2) * g[0]
    if slip is not None:
        index, share = slip
        gx[index] += share * g[0] * s1[index]
    return (gx,)


def test_the_rounding_a_backward_forms_from_the_point_is_measured():
    # as for flat_vjp; moving g alone reads eps of the value, 1e-33
    _assert_the_terms_rounding_is_measured(flat_vjp_formed_at_the_point,
                                           np.random.default_rng(3).standard_normal(16))


def test_a_gradient_formed_at_the_point_has_no_false_alarm_and_its_slip_fails():
    failed = [seed for seed in range(24) if not check_vjp(
        flat, flat_vjp_formed_at_the_point,
        (np.random.default_rng(seed).standard_normal(16),), seed=seed).passed]
    assert failed == []
    # one element off by 1e-6 of its terms fails alone (by hand: 1e-6 of 0.7 s_j is
    # 1e10 ulps of them)
    x = np.random.default_rng(5).standard_normal(16)
    report = check_vjp(flat, lambda g, x: flat_vjp_formed_at_the_point(g, x, (7, 1e-6)),
                       (x,), seed=5)
    assert not report.passed, str(report)
    assert report.arguments[0].n_failed == 1 and report.arguments[0].worst_index == (7,)


def test_a_step_of_the_backward_at_the_point_is_not_read_as_rounding():
    # a leaky ReLU's backward at an x holding exact zeros takes one value on each side of
    # every zero; the point's measure leaves out g(x) and cancels what is constant on
    # each side: it reads the rounding of forming the combination alone, an ulp or two
    # of 1.1 |r| (where 3 A1 - 3 A2 + A3, which takes g(x), reads (1 + 0.1 - 2 * 0.1)
    # |r| = 0.9 |r| at each zero)
    from gradcheck.checker._formed import _point_roundings

    x = np.random.default_rng(2).standard_normal(12)
    x[::3] = 0.0
    r = np.random.default_rng(4).standard_normal(12)

    def backward(x):
        return (r * np.where(x > 0, 1.0, 0.1),)

    (read,) = _point_roundings(backward, (x,), backward(x), seed=0)
    assert np.all(read <= 4 * np.finfo(np.float64).eps * 1.1 * np.abs(r)), read
