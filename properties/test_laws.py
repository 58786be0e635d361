"""Metamorphic laws of the convolution, forward and backward, on drawn configurations.

Each law relates two calls of the library that compute different things (a batch and its
items, a padded and an unpadded input, a 1-D layer and the same layer with a unit axis
...), so none of them can hold by the code agreeing with itself. Comparisons allow the
rounding of the sums involved (:func:`_prop_support.rounding_bound`), in float64.
"""

from __future__ import annotations

import numpy as np
from _prop_support import (
    assert_close,
    note_case,
    rounding_bound,
    terms_per_input,
    terms_per_output,
)
from hypothesis import assume, given
from hypothesis import strategies as st

from gradcheck import conv_backward, conv_forward
from gradcheck.strategies import ConvConfig, conv_cases, conv_configs

F64 = np.float64
CASES = conv_cases()
SEEDS = st.integers(0, 2**32 - 1)
SCALARS = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False)


def _flip(w):
    return w[(slice(None), slice(None)) + (slice(None, None, -1),) * (w.ndim - 2)]


def _abs_y(c, x, w):
    return conv_forward(np.abs(x), np.abs(w), **c.options())


def _abs_grads(c, g, x, w):
    gx, gw, _ = conv_backward(np.abs(g), np.abs(x), np.abs(w), **c.options())
    return gx, gw


def _positions(c) -> int:
    return int(np.prod(c.y_shape)) // c.w_shape[0]


# --------------------------------------------------------------------------- linearity


@given(CASES)
def test_adjoint_identity(case):
    """<conv(x, w), g> = <x, grad_x(g)> = <w, grad_w(g)>: the backward is the forward's adjoint."""
    note_case(case)
    c, x, w, g = case.config, case.x, case.w, case.grad_y
    y = c.forward(x, w)
    gx, gw, _ = c.backward(g, x, w)
    scale = float(np.sum(_abs_y(c, x, w) * np.abs(g)))
    bound = rounding_bound(scale, terms_per_output(c) + g.size, F64)
    lhs = float(np.sum(y * g))
    assert_close(np.sum(x * gx), lhs, bound, "<x, grad_x> vs <conv(x, w), g>")
    assert_close(np.sum(w * gw), lhs, bound, "<w, grad_w> vs <conv(x, w), g>")


@given(CASES, SEEDS, SCALARS, SCALARS)
def test_linear_in_x(case, seed, a, b):
    """conv(a x1 + b x2, w) = a conv(x1, w) + b conv(x2, w), and so is grad_w."""
    note_case(case, extra=f"x2 from make_case({seed}), a={a!r}, b={b!r}")
    c, w, g = case.config, case.w, case.grad_y
    x1, x2 = case.x, c.make_case(seed).x
    mix = a * x1 + b * x2
    y_scale = abs(a) * _abs_y(c, x1, w) + abs(b) * _abs_y(c, x2, w) + _abs_y(c, mix, w)
    assert_close(c.forward(mix, w), a * c.forward(x1, w) + b * c.forward(x2, w),
                 rounding_bound(y_scale, terms_per_output(c) + 2, F64), "forward")
    gw = [c.backward(g, xi, w)[1] for xi in (mix, x1, x2)]
    gw_scale = sum(s * _abs_grads(c, g, xi, w)[1] for s, xi in ((1, mix), (abs(a), x1),
                                                                  (abs(b), x2)))
    assert_close(gw[0], a * gw[1] + b * gw[2], rounding_bound(gw_scale, _positions(c) + 2, F64),
                 "grad_w")


@given(CASES, SEEDS, SCALARS, SCALARS)
def test_linear_in_w(case, seed, a, b):
    """conv(x, a w1 + b w2) = a conv(x, w1) + b conv(x, w2), and so is grad_x."""
    note_case(case, extra=f"w2 from make_case({seed}), a={a!r}, b={b!r}")
    c, x, g = case.config, case.x, case.grad_y
    w1, w2 = case.w, c.make_case(seed).w
    mix = a * w1 + b * w2
    y_scale = abs(a) * _abs_y(c, x, w1) + abs(b) * _abs_y(c, x, w2) + _abs_y(c, x, mix)
    assert_close(c.forward(x, mix), a * c.forward(x, w1) + b * c.forward(x, w2),
                 rounding_bound(y_scale, terms_per_output(c) + 2, F64), "forward")
    gx = [c.backward(g, x, wi)[0] for wi in (mix, w1, w2)]
    gx_scale = sum(s * _abs_grads(c, g, x, wi)[0] for s, wi in ((1, mix), (abs(a), w1),
                                                                  (abs(b), w2)))
    assert_close(gx[0], a * gx[1] + b * gx[2],
                 rounding_bound(gx_scale, terms_per_input(c) + 2, F64), "grad_x")


@given(conv_cases(configs=conv_configs(bias=True)), SEEDS)
def test_bias_gradient_is_the_sum_of_delta(case, seed):
    """Raising b[o] by 1 raises channel o of y by 1, so grad_b[o] = sum of delta over n and
    positions -- whatever x and w are."""
    note_case(case, extra=f"other x, w from make_case({seed})")
    c, x, w, b, g = case.config, case.x, case.w, case.b, case.grad_y
    gb = c.backward(g, x, w)[2]
    other = c.make_case(seed)
    assert np.array_equal(c.backward(g, other.x, other.w)[2], gb)
    y = c.forward(x, w, b)
    y_scale = _abs_y(c, x, w) + 1.0 + np.abs(b).reshape((1, -1) + (1,) * c.nd)
    for o in range(c.w_shape[0]):
        bumped = b.copy()
        bumped[o] += 1.0
        dy = c.forward(x, w, bumped) - y
        expected = np.zeros_like(dy)
        expected[:, o] = 1.0
        assert_close(dy, expected, rounding_bound(2 * y_scale, terms_per_output(c) + 2, F64),
                     f"y(b + e_{o}) - y(b)")
        assert_close(gb[o], np.sum(g * expected),
                     rounding_bound(np.sum(np.abs(g[:, o])), _positions(c), F64), f"grad_b[{o}]")


# --------------------------------------------------------------------------- conventions


@given(CASES)
def test_convolution_is_correlation_with_the_rotated_kernel(case):
    """convention="convolution" with w is "correlation" with rot180(w): same y and grad_x,
    and its grad_w is the correlation's grad_w rotated back."""
    note_case(case)
    c, x, w, g = case.config, case.x, case.w, case.grad_y
    conv = c._replace(convention="convolution")
    corr = c._replace(convention="correlation")
    y_bound = rounding_bound(_abs_y(corr, x, _flip(w)), terms_per_output(c), F64)
    gx_abs, gw_abs = _abs_grads(corr, g, x, _flip(w))
    assert_close(conv.forward(x, w), corr.forward(x, _flip(w)), y_bound, "forward")
    gx_conv, gw_conv, _ = conv.backward(g, x, w)
    gx_corr, gw_corr, _ = corr.backward(g, x, _flip(w))
    assert_close(gx_conv, gx_corr, rounding_bound(gx_abs, terms_per_input(c), F64), "grad_x")
    assert_close(gw_conv, _flip(gw_corr), rounding_bound(_flip(gw_abs), _positions(c), F64),
                 "grad_w")


# --------------------------------------------------------------------------- structure


def _with_unit_axis(c: ConvConfig, axis: int, stride: int, dilation: int) -> ConvConfig:
    """The same layer with a size-1 spatial axis inserted at spatial position ``axis``."""
    def insert(value, unit):
        if isinstance(value, str):
            return value
        t = tuple(value) if isinstance(value, tuple) else (value,) * c.nd
        return t[:axis] + (unit,) + t[axis:]

    at = 2 + axis
    return c._replace(x_shape=c.x_shape[:at] + (1,) + c.x_shape[at:],
                      w_shape=c.w_shape[:at] + (1,) + c.w_shape[at:],
                      stride=insert(c.stride, stride), dilation=insert(c.dilation, dilation),
                      padding=insert(c.padding, (0, 0) if isinstance(c.padding, tuple) and
                                     c.padding and isinstance(c.padding[0], tuple) else 0))


@given(conv_cases(configs=conv_configs(max_dims=2)), st.data())
def test_lower_rank_is_a_unit_axis_of_higher_rank(case, data):
    """A 1-D (2-D) layer equals the 2-D (3-D) layer with a unit axis added to x and w --
    whatever stride and dilation that axis has -- forward and backward."""
    c = case.config
    axis = data.draw(st.integers(0, c.nd), label="axis")
    stride = 1 if c.padding == "same" else data.draw(st.integers(1, 3), label="unit stride")
    up = _with_unit_axis(c, axis, stride, data.draw(st.integers(1, 3), label="unit dilation"))
    note_case(case, extra=f"as {up!r}")
    at = 2 + axis
    x, w, b, g = case.x, case.w, case.b, case.grad_y
    xu, wu, gu = (np.expand_dims(a, at) for a in (x, w, g))
    y = c.forward(x, w, b)
    assert up.y_shape == c.y_shape[:at] + (1,) + c.y_shape[at:]
    assert_close(up.forward(xu, wu, b), np.expand_dims(y, at),
                 rounding_bound(np.expand_dims(_abs_y(c, x, w), at) + 2.0,
                                terms_per_output(c) + 1, F64), "forward")
    gx, gw, gb = c.backward(g, x, w)
    gxu, gwu, gbu = up.backward(gu, xu, wu)
    gx_abs, gw_abs = _abs_grads(c, g, x, w)
    assert_close(gxu, np.expand_dims(gx, at),
                 rounding_bound(np.expand_dims(gx_abs, at), terms_per_input(c), F64), "grad_x")
    assert_close(gwu, np.expand_dims(gw, at),
                 rounding_bound(np.expand_dims(gw_abs, at), _positions(c), F64), "grad_w")
    if c.bias:
        assert_close(gbu, gb, rounding_bound(np.abs(g).sum(axis=(0, *range(2, g.ndim))),
                                             _positions(c), F64), "grad_b")


@given(conv_cases(configs=conv_configs(min_batch=2, max_batch=3)))
def test_batch_items_are_independent(case):
    """Each item of a batch gives the output and input error it gives alone; the weight
    and bias gradients are the sums of the items' ones."""
    note_case(case)
    c, x, w, b, g = case.config, case.x, case.w, case.b, case.grad_y
    y = c.forward(x, w, b)
    gx, gw, gb = c.backward(g, x, w)
    gx_abs, gw_abs = _abs_grads(c, g, x, w)
    one = c._replace(x_shape=(1,) + c.x_shape[1:])
    items = [(x[n:n + 1], g[n:n + 1]) for n in range(x.shape[0])]
    parts = [one.backward(gn, xn, w) for xn, gn in items]
    for n, (xn, _) in enumerate(items):
        assert_close(one.forward(xn, w, b), y[n:n + 1],
                     rounding_bound(_abs_y(one, xn, w) + 2.0, terms_per_output(c) + 1, F64),
                     f"forward of item {n}")
        assert_close(parts[n][0], gx[n:n + 1],
                     rounding_bound(gx_abs[n:n + 1], terms_per_input(c), F64),
                     f"grad_x of item {n}")
    assert_close(sum(p[1] for p in parts), gw,
                 rounding_bound(gw_abs, _positions(c) + x.shape[0], F64), "grad_w")
    if c.bias:
        assert_close(sum(p[2] for p in parts), gb,
                     rounding_bound(np.abs(g).sum(axis=(0, *range(2, g.ndim))),
                                    _positions(c) + x.shape[0], F64), "grad_b")


@given(CASES)
def test_padding_is_zero_extension_and_its_error_is_cropped(case):
    """conv(x, padding=p) = conv(pad(x), padding=0); grad_x is the padded input's error
    with the padding cropped off (the seed's "crop p from the full result")."""
    note_case(case)
    c, x, w, g = case.config, case.x, case.w, case.grad_y
    geom = c.geometry
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(geom.pad_lo, geom.pad_hi)))
    bare = c._replace(x_shape=xp.shape, padding=0)
    assert bare.y_shape == c.y_shape
    assert_close(c.forward(x, w), bare.forward(xp, w),
                 rounding_bound(_abs_y(c, x, w), terms_per_output(c), F64), "forward")
    gx, gw, _ = c.backward(g, x, w)
    gxp, gwp, _ = bare.backward(g, xp, w)
    gx_abs, gw_abs = _abs_grads(c, g, x, w)
    crop = tuple(slice(lo, lo + n) for lo, n in zip(geom.pad_lo, geom.in_shape))
    assert_close(gx, gxp[(slice(None), slice(None)) + crop],
                 rounding_bound(gx_abs, terms_per_input(c), F64), "grad_x")
    assert_close(gw, gwp, rounding_bound(gw_abs, _positions(c), F64), "grad_w")


@given(conv_cases(configs=conv_configs(paddings=("int", "tuple", "pairs", "valid", "full"))))
def test_stride_samples_the_unit_stride_output(case):
    """conv with stride s is conv with stride 1 sampled every s; its grad_x is the stride-1
    grad_x of delta with s-1 zeros inserted between entries (the seed's stride rule)."""
    note_case(case)
    c, x, w, g = case.config, case.x, case.w, case.grad_y
    geom = c.geometry
    unit = c._replace(stride=1)
    take = (slice(None), slice(None)) + tuple(slice(0, s * (o - 1) + 1, s)
                                              for s, o in zip(geom.stride, geom.out_shape))
    assert_close(c.forward(x, w), unit.forward(x, w)[take],
                 rounding_bound(_abs_y(c, x, w), terms_per_output(c), F64), "forward")
    spread = np.zeros(unit.y_shape, dtype=g.dtype)
    spread[take] = g
    gx_abs, gw_abs = _abs_grads(c, g, x, w)
    gx, gw, _ = c.backward(g, x, w)
    gxu, gwu, _ = unit.backward(spread, x, w)
    assert_close(gx, gxu, rounding_bound(gx_abs, terms_per_input(c), F64), "grad_x")
    assert_close(gw, gwu, rounding_bound(gw_abs, _positions(c), F64), "grad_w")


@given(CASES)
def test_dilation_is_a_kernel_with_zeros_between_taps(case):
    """conv with dilation d equals conv with the kernel spread out by d-1 zeros between
    taps; grad_w is the spread kernel's gradient sampled at the taps."""
    note_case(case)
    c, x, w, g = case.config, case.x, case.w, case.grad_y
    geom = c.geometry
    spread_shape = c.w_shape[:2] + geom.effective_kernel
    taps = (slice(None), slice(None)) + tuple(slice(None, None, d) for d in geom.dilation)
    ws = np.zeros(spread_shape, dtype=w.dtype)
    ws[taps] = w
    padding = c.padding if not isinstance(c.padding, str) else tuple(
        zip(geom.pad_lo, geom.pad_hi))
    dense = c._replace(w_shape=spread_shape, dilation=1, padding=padding)
    assert_close(c.forward(x, w), dense.forward(x, ws),
                 rounding_bound(_abs_y(c, x, w), terms_per_output(c), F64), "forward")
    gx, gw, _ = c.backward(g, x, w)
    gxd, gwd, _ = dense.backward(g, x, ws)
    gx_abs, gw_abs = _abs_grads(c, g, x, w)
    assert_close(gx, gxd, rounding_bound(gx_abs, terms_per_input(c), F64), "grad_x")
    assert_close(gw, gwd[taps], rounding_bound(gw_abs, _positions(c), F64), "grad_w")


@given(conv_cases(configs=conv_configs(min_channels=2)))
def test_groups_are_independent_convolutions(case):
    """A grouped convolution is ``groups`` separate convolutions on channel blocks."""
    c, x, w, b, g = case.config, case.x, case.w, case.b, case.grad_y
    assume(c.groups > 1)
    note_case(case)
    k = c.groups
    ci, co = c.x_shape[1] // k, c.w_shape[0] // k
    one = c._replace(x_shape=(c.x_shape[0], ci) + c.x_shape[2:],
                     w_shape=(co,) + c.w_shape[1:], groups=1)
    y = c.forward(x, w, b)
    gx, gw, _ = c.backward(g, x, w)
    gx_abs, gw_abs = _abs_grads(c, g, x, w)
    y_abs = _abs_y(c, x, w) + (0 if b is None else np.abs(b).reshape((1, -1) + (1,) * c.nd))
    for j in range(k):
        xi, oi = slice(j * ci, (j + 1) * ci), slice(j * co, (j + 1) * co)
        bj = None if b is None else b[oi]
        assert_close(one.forward(x[:, xi], w[oi], bj), y[:, oi],
                     rounding_bound(y_abs[:, oi], terms_per_output(c) + 1, F64),
                     f"forward of group {j}")
        gxj, gwj, _ = one.backward(g[:, oi], x[:, xi], w[oi])
        assert_close(gxj, gx[:, xi], rounding_bound(gx_abs[:, xi], terms_per_input(c), F64),
                     f"grad_x of group {j}")
        assert_close(gwj, gw[oi], rounding_bound(gw_abs[oi], _positions(c), F64),
                     f"grad_w of group {j}")
