"""The fast convolution equals both slow references, on configurations nobody picked.

The references share no arithmetic with the fast path: one ``scipy.signal`` call per
channel pair written as the seed's formulas (input error by a full convolution with the
rotated kernel), and the layer as a sparse shared-weight perceptron matrix. Both are
computed in float64 from the same values; the allowed difference is the rounding bound
of the sums involved (:func:`_prop_support.rounding_bound`), scaled by the same sums taken
over absolute values (from the signal reference).
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
from hypothesis import given
from hypothesis import strategies as st

from gradcheck.ops.reference import (
    conv_backward_matrix,
    conv_backward_signal,
    conv_forward_matrix,
    conv_forward_signal,
)
from gradcheck.strategies import conv_cases

CASES = conv_cases(dtype=st.sampled_from(["float64", "float32"]))


def _f64(*arrays):
    return tuple(None if a is None else np.asarray(a, dtype=np.float64) for a in arrays)


def _bounds(case):
    """Rounding bounds for y, gx, gw, gb of the fast path in the case's dtype."""
    c, dt = case.config, case.x.dtype
    x, w, g = _f64(case.x, case.w, case.grad_y)
    opts = c.options()
    y_abs = conv_forward_signal(np.abs(x), np.abs(w), **opts)
    gx_abs, gw_abs, _ = conv_backward_signal(np.abs(g), np.abs(x), np.abs(w), **opts)
    positions = int(np.prod(c.y_shape)) // c.w_shape[0]   # N * prod(out)
    bias = 0.0 if case.b is None else np.abs(case.b.astype(np.float64)).reshape(
        (1, -1) + (1,) * c.nd)
    return (rounding_bound(y_abs + bias, terms_per_output(c) + 1, dt),
            rounding_bound(gx_abs, terms_per_input(c), dt),
            rounding_bound(gw_abs, positions, dt),
            rounding_bound(np.abs(g).sum(axis=(0, *range(2, g.ndim))), positions, dt))


def _check_against(case, forward, backward, name):
    c = case.config
    x, w, b, g = _f64(case.x, case.w, case.b, case.grad_y)
    opts = c.options()
    y_ref = forward(x, w, b, **opts)
    gx_ref, gw_ref, gb_ref = backward(g, x, w, **opts)
    by, bx, bw, bb = _bounds(case)
    y = c.forward(case.x, case.w, case.b)
    gx, gw, gb = c.backward(case.grad_y, case.x, case.w)
    assert y.dtype == case.x.dtype and gx.dtype == case.x.dtype and gw.dtype == case.x.dtype
    assert_close(y, y_ref, by, f"forward vs {name}")
    assert_close(gx, gx_ref, bx, f"grad_x vs {name}")
    assert_close(gw, gw_ref, bw, f"grad_w vs {name}")
    if c.bias:
        assert_close(gb, gb_ref, bb, f"grad_b vs {name}")
    else:
        assert gb is None


@given(CASES)
def test_fast_path_equals_the_seed_formulas_with_scipy_signal(case):
    """Forward, input error (full convolution with rot180), weight and bias gradients."""
    note_case(case)
    _check_against(case, conv_forward_signal, conv_backward_signal, "scipy.signal route")


@given(CASES)
def test_fast_path_equals_the_sparse_shared_weight_matrix(case):
    """y = W x, grad_x = W^T delta, grad_w summed over the connections sharing a weight."""
    note_case(case)
    _check_against(case, conv_forward_matrix, conv_backward_matrix, "sparse matrix route")


@given(CASES)
def test_both_input_gradient_routes_agree(case):
    """The rot180 full convolution and the col2im scatter-add give the same grad_x."""
    note_case(case)
    c = case.config
    _, bx, _, _ = _bounds(case)
    rot = c.backward(case.grad_y, case.x, case.w, method="rot180")[0]
    col = c.backward(case.grad_y, case.x, case.w, method="col2im")[0]
    assert_close(rot, col, 2 * bx, "rot180 route vs col2im route")
