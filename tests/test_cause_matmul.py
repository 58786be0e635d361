"""``operand_transposed`` and the transposed 2-D gradient on layers written by hand.

Each buggy backward is a matrix product written here with the other operand (un)
transposed; the expected cause and the names in its message are set by hand. Correct
layers, and products wrong in another way, must not get the cause.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp
from gradcheck.checker._diagnose import Evidence, diagnose_evidence
from gradcheck.checker._fit import Known


def _rng(seed=0):
    return np.random.default_rng(seed)


def _dense(dtype, batch=6, n=4, seed=0):
    r = _rng(seed)
    return r.standard_normal((batch, n)).astype(dtype), r.standard_normal((n, n)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dx_of_x_at_w_with_w_untransposed_names_w(dtype):
    x, w = _dense(dtype)
    report = check_vjp(lambda x, w: x @ w, lambda g, x, w: (g @ w, x.T @ g), (x, w),
                       argnames=("x", "w"))
    assert report["w"].passed and not report["x"].passed
    d = report["x"].diagnosis
    assert d.cause == "operand_transposed", d.message
    assert "g @ w where g @ w.T belongs" in d.message and "Use w.T" in d.message
    assert d.evidence["operand"] == "w" and d.evidence["side"] == "right"


def test_dx_of_torch_layout_linear_with_w_transposed_names_w():
    # y = x @ w.T (torch's Linear, w is (out, in)): dx = g @ w; written g @ w.T
    x, w = _dense(np.float64, seed=1)
    report = check_vjp(lambda x, w: x @ w.T, lambda g, x, w: (g @ w.T, g.T @ x), (x, w),
                       argnames=("x", "w"))
    d = report["x"].diagnosis
    assert d.cause == "operand_transposed", d.message
    assert "g @ w.T where g @ w belongs" in d.message and "Use w " in d.message


def test_left_product_and_batched_leading_axes():
    r = _rng(2)
    w, x = r.standard_normal((4, 4)), r.standard_normal((4, 7))
    report = check_vjp(lambda w, x: w @ x, lambda g, w, x: (g @ x.T, w @ g), (w, x),
                       argnames=("w", "x"))
    d = report["x"].diagnosis
    assert d.cause == "operand_transposed" and d.evidence["side"] == "left", d.message
    assert "w @ g where w.T @ g belongs" in d.message
    # a batch of matrices computed inside f (no argument equals M): named by its size
    a, v = r.standard_normal((2, 3, 3)), r.standard_normal((2, 3, 5))
    report = check_vjp(lambda v: np.tanh(a) @ v, lambda g, v: (np.tanh(a) @ g,), (v,),
                       argnames=("v",))
    d = report["v"].diagnosis
    assert d.cause == "operand_transposed", d.message
    assert "Mᵀ @ g where the true gradient is M @ g" in d.message and "3×3" in d.message


def test_dw_as_g_transposed_at_x_says_which_product():
    x, w = _dense(np.float64, seed=3)
    report = check_vjp(lambda x, w: x @ w, lambda g, x, w: (g @ w.T, g.T @ x), (x, w),
                       argnames=("x", "w"))
    d = report["w"].diagnosis
    assert d.cause == "axes_permuted", d.message
    assert "g.T @ x where x.T @ g belongs" in d.message and "use x.T @ g" in d.message


def test_correct_products_and_other_slips_do_not_get_the_cause():
    x, w = _dense(np.float64, seed=4)
    f = lambda x, w: x @ w                                           # noqa: E731
    assert check_vjp(f, lambda g, x, w: (g @ w.T, x.T @ g), (x, w)).passed
    x32, w32 = _dense(np.float32, seed=4)
    assert check_vjp(f, lambda g, x, w: (g @ w.T, x.T @ g), (x32, w32)).passed
    # a factor of 2: scaled, not a transpose
    d = check_vjp(f, lambda g, x, w: (2 * g @ w.T, x.T @ g), (x, w),
                  argnames=("x", "w"))["x"].diagnosis
    assert d.cause == "scaled"
    # another matrix altogether: a product with R, but not with Mᵀ
    other = _rng(5).standard_normal((4, 4))
    d = check_vjp(f, lambda g, x, w: (g @ other, x.T @ g), (x, w),
                  argnames=("x", "w"))["x"].diagnosis
    assert d.cause != "operand_transposed", d.message
    # a product followed by an activation: N is not one product with R, no operand to name
    h = lambda x, w: np.tanh(x @ w)                                  # noqa: E731

    def wrong(g, x, w):
        d = g * (1 - np.tanh(x @ w) ** 2)
        return d @ w, x.T @ d

    d = check_vjp(h, wrong, (x, w), argnames=("x", "w"))["x"].diagnosis
    assert d.cause != "operand_transposed", d.message


def test_a_batch_smaller_than_w_is_named_from_the_argument_and_else_not_tried():
    # a batch of 2 rows for a 4 x 4 w: N = R M does not determine M, but the argument
    # w gives it outright
    r = _rng(6)
    x, w = r.standard_normal((2, 4)), r.standard_normal((4, 4))
    d = check_vjp(lambda x, w: x @ w, lambda g, x, w: (g @ w, x.T @ g), (x, w),
                  argnames=("x", "w"))["x"].diagnosis
    assert d.cause == "operand_transposed" and "g @ w where g @ w.T belongs" in d.message
    # the matrix computed inside f (not an argument): one cotangent cannot tell it, the
    # mismatch is described, not named (a limit of the claim, said in its module)
    m = np.tanh(w)
    d = check_vjp(lambda x: x @ m, lambda g, x: (g @ m,), (x,),
                  argnames=("x",))["x"].diagnosis
    assert d.cause == "no_known_pattern"


def test_the_claim_on_bare_arrays_and_noise_within_its_slack():
    r = _rng(7)
    g, m = r.standard_normal((8, 5)), r.standard_normal((5, 5))
    n = g @ m
    tol = np.full(n.shape, 1e-9)
    known = Known(cotangent=g)
    d = diagnose_evidence(Evidence(g @ m.T, n, tol, known=known))
    assert d.cause == "operand_transposed" and d.evidence["operand"] is None
    # A = N off by less than the slack: nothing named
    d = diagnose_evidence(Evidence(n + 2e-9, n, tol, known=known))
    assert d.cause == "no_known_pattern"


def test_a_rotated_weight_gradient_is_not_said_to_lack_a_rotation():
    # dW flipped over its kernel axes: no rotation belongs in a weight gradient, so the
    # message says how dW was formed, not that "the kernel was not rotated"
    from gradcheck import conv_backward, conv_forward

    r = _rng(8)
    x, w = r.standard_normal((2, 3, 6, 6)), r.standard_normal((4, 3, 3, 3))

    def bad(g, x, w):
        gx, gw, _ = conv_backward(g, x, w, padding=1)
        return gx, np.flip(gw, (-2, -1))

    report = check_vjp(lambda x, w: conv_forward(x, w, padding=1), bad, (x, w),
                       argnames=("x", "w"))
    d = report["w"].diagnosis
    assert report["x"].passed and d.cause == "kernel_not_rotated", d.message
    assert "the kernel was not rotated" not in d.message
    assert "takes no rotation" in d.message


def test_a_torch_function_gets_the_names_of_its_arguments():
    torch = pytest.importorskip("torch", reason="the torch adapter needs torch")
    from gradcheck.torch import check_function

    class Linear(torch.autograd.Function):       # y = x @ w.T, both grads transposed
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x @ w.T

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return g @ w.T, x.T @ g

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    w = torch.randn(4, 4, dtype=torch.float64, generator=gen)
    report = check_function(Linear.apply, (x, w))
    dx, dw = report["x"].diagnosis, report["w"].diagnosis
    assert dx.cause == "operand_transposed" and "g @ w.T where g @ w belongs" in dx.message
    assert dw.cause == "axes_permuted" and "x.T @ g where g.T @ x belongs" in dw.message
