"""A corpus of hand-written layers, right and wrong, for the diagnosis of any layer.

Every layer is a NumPy forward ``f(*args)`` and a backward ``vjp(g, *args)`` written here,
independently of gradcheck's ops and checker, the way one writes backprop by hand. A
*slip* is one realistic mistake in such a backward (1/N forgotten, the mean terms of a
normalization missing, the softmax Jacobian missing ``p (p·g)``, a clip not masked, an
accumulation written as an assignment, a crop off by one in H only, a backward that
ignores its incoming gradient, …), listed with what a person would call it and the
causes of gradcheck's catalogue that name it. A slip the catalogue has no entry for
lists no cause: the diagnosis must then *describe* the mismatch, never name a wrong
cause. The correct layers are the hard ones (float32, kinks, ties, large and tiny
scales): no cause may be named for them.

Arrays are small (tens to a few hundred elements) so the whole corpus checks in a few
seconds.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

import corpus_local as loc
import corpus_mixing as mix

__all__ = ["Case", "BUGS", "CORRECT", "HELD_OUT", "EXTRAS", "KINDS"]


class Case(NamedTuple):
    """One layer of the corpus.

    ``expect`` maps each argument whose gradient the slip makes wrong to the causes that
    name it (empty: the catalogue has no entry, the mismatch must be described); it is
    empty for a correct layer.
    """

    name: str
    kind: str
    slip: str                      # what a person would call it ("" for a correct layer)
    f: Callable
    vjp: Callable
    args: tuple
    argnames: tuple
    expect: dict


def _rng(*seed):
    return np.random.default_rng(list(seed))


def _away(a, margin=0.15):
    """Push values away from 0 (the kinks of relu-like layers)."""
    return np.where(np.abs(a) < margin, np.sign(a + 1e-12) * margin + a, a)


# ============================================================================ the corpus


def _case(name, kind, slip, f, vjp, args, argnames, expect=None):
    return Case(name, kind, slip, f, vjp, tuple(args), tuple(argnames), dict(expect or {}))


def _with(vjp, slip):
    return lambda g, *a: vjp(g, *a, slip=slip)


def _dense_args(dtype=np.float64, seed=0):
    r = _rng(1, seed)
    return [r.standard_normal(s).astype(dtype) for s in ((6, 5), (5, 5), (5,))]


def _ln_args(dtype=np.float64, scale=1.0):
    r = _rng(2)
    return [(scale * r.standard_normal((6, 8))).astype(dtype),
            (1 + 0.3 * r.standard_normal(8)).astype(dtype), r.standard_normal(8).astype(dtype)]


def _bn_args(dtype=np.float64, scale=1.0):
    r = _rng(3)
    return [(scale * r.standard_normal((5, 3, 4, 4))).astype(dtype),
            (1 + 0.3 * r.standard_normal(3)).astype(dtype), r.standard_normal(3).astype(dtype)]


def _x(shape, seed, dtype=np.float64, scale=1.0, lo=None):
    r = _rng(4, seed)
    x = scale * r.standard_normal(shape)
    if lo is not None:
        x = r.uniform(lo, lo + 3, shape)
    return x.astype(dtype)


def _qkv(d=8, t=5, seed=0, dtype=np.float64):
    r = _rng(5, seed)
    return [r.standard_normal((t, d)).astype(dtype) for _ in range(3)]


def _mha(seed=0):
    r = _rng(6, seed)
    return [r.standard_normal((2, 4, 3, 4)) for _ in range(3)]      # (B, T, H, dh)


def _conv_args(dtype=np.float64, size=5, square=False):
    r = _rng(7)
    c_out = 2 if square else 3
    return [r.standard_normal((2, 2, size, size)).astype(dtype),
            r.standard_normal((c_out, 2, 3, 3)).astype(dtype),
            r.standard_normal(c_out).astype(dtype)]


def _ew(name, slip, causes, x, kind="element-wise", what=""):
    f, vjp = loc.elementwise(name)
    return _case(f"{name}-{slip}", kind, what, f, _with(vjp, slip), [x], ["x"],
                 {"x": causes})


def _bugs():
    D, L, B = ("x", "w", "b"), ("x", "gamma", "beta"), ("x", "gamma", "beta")
    out = [
        # dense
        _case("dense-dw-transposed", "dense", "dW computed as gᵀx (the (out, in) layout)",
              mix.dense_f, _with(mix.dense_vjp, "dw_transposed"), _dense_args(), D,
              {"w": ("axes_permuted",)}),
        _case("dense-db-mean", "dense", "db is the batch mean of g, not its sum",
              mix.dense_f, _with(mix.dense_vjp, "db_mean"), _dense_args(), D, {"b": ("scaled",)}),
        _case("dense-dw-loop-from-1", "dense", "the dW loop over the batch starts at 1",
              mix.dense_f, _with(mix.dense_vjp, "dw_loop_from_1"), _dense_args(), D,
              {"w": ("missing_term_rank_one",)}),
        _case("dense-relu-mask-missing", "dense", "the ReLU's mask not applied to g",
              mix.dense_relu_f, _with(mix.dense_relu_vjp, "relu_mask_missing"), _dense_args()[:2],
              ("x", "w"), {"x": (), "w": ()}),
        _case("mse-l2-decay-missing", "dense", "the weight decay's λw forgotten",
              mix.mse_l2_f, _with(mix.mse_l2_vjp, "decay_missing"),
              [_dense_args()[1][:, :3], _dense_args()[0], _dense_args(seed=1)[0][:, :3]],
              ("w", "x", "t"), {"w": ("missing_term_value",)}),
        _case("mse-two-missing", "dense", "the 2 of d(r²)/dr forgotten",
              lambda w, x, t: mix.mse_l2_f(w, x, t, 0.0),
              lambda g, w, x, t: mix.mse_l2_vjp(g, w, x, t, 0.0, slip="two_missing"),
              [_dense_args()[1][:, :3], _dense_args()[0], _dense_args(seed=1)[0][:, :3]],
              ("w", "x", "t"), {"w": ("scaled",)}),
        _case("mse-l2-two-missing", "dense", "the 2 of d(r²)/dr forgotten (with weight decay)",
              mix.mse_l2_f, _with(mix.mse_l2_vjp, "two_missing"),
              [_dense_args()[1][:, :3], _dense_args()[0], _dense_args(seed=1)[0][:, :3]],
              ("w", "x", "t"), {"w": ()}),
        # layer norm
        _case("layernorm-mean-term", "layer-norm", "the −mean(dx̂) term missing",
              mix.layernorm_f, _with(mix.layernorm_vjp, "mean_term_missing"), _ln_args(), L,
              {"x": ("missing_term_constant",)}),
        _case("layernorm-xhat-term", "layer-norm", "the −x̂·mean(dx̂·x̂) term missing",
              mix.layernorm_f, _with(mix.layernorm_vjp, "xhat_term_missing"), _ln_args(), L,
              {"x": ("missing_term_centered",)}),
        _case("layernorm-both-terms", "layer-norm", "both mean terms missing",
              mix.layernorm_f, _with(mix.layernorm_vjp, "both_terms_missing"), _ln_args(), L,
              {"x": ("missing_term_affine",)}),
        _case("layernorm-dgamma-mean", "layer-norm", "dgamma averaged over the batch",
              mix.layernorm_f, _with(mix.layernorm_vjp, "dgamma_mean"), _ln_args(), L,
              {"gamma": ("scaled",)}),
        _case("layernorm-eps-missing", "layer-norm", "eps left out of σ in the backward",
              mix.layernorm_f, _with(mix.layernorm_vjp, "eps_missing"), _ln_args(), L,
              {"x": ("scaled_per_slice",)}),
        _case("layernorm-dgamma-uses-x", "layer-norm", "dgamma computed with x for x̂",
              mix.layernorm_f, _with(mix.layernorm_vjp, "dgamma_uses_x"), _ln_args(), L,
              {"gamma": ()}),
        # batch norm
        _case("batchnorm-both-terms", "batch-norm", "both mean terms missing",
              mix.batchnorm_f, _with(mix.batchnorm_vjp, "both_terms_missing"), _bn_args(), B,
              {"x": ("missing_term_affine",)}),
        _case("batchnorm-xhat-term", "batch-norm", "the x̂ term missing",
              mix.batchnorm_f, _with(mix.batchnorm_vjp, "xhat_term_missing"), _bn_args(), B,
              {"x": ("missing_term_centered",)}),
        _case("batchnorm-mean-over-batch-only", "batch-norm",
              "the means taken over N, not N·H·W", mix.batchnorm_f,
              _with(mix.batchnorm_vjp, "mean_over_batch_only"), _bn_args(), B,
              {"x": ("missing_term_affine",)}),
        _case("batchnorm-dbeta-mean", "batch-norm", "dbeta averaged, not summed",
              mix.batchnorm_f, _with(mix.batchnorm_vjp, "dbeta_mean"), _bn_args(), B,
              {"beta": ("scaled",)}),
        _case("batchnorm-eps-missing", "batch-norm", "eps left out of σ in the backward",
              mix.batchnorm_f, _with(mix.batchnorm_vjp, "eps_missing"), _bn_args(), B,
              {"x": ("scaled_per_slice",)}),
        # mix.softmax / log-mix.softmax / cross-entropy
        _case("softmax-rank-one-missing", "softmax", "p (p·g) missing from the Jacobian",
              mix.softmax_f, _with(mix.softmax_vjp, "rank_one_missing"), [_x((5, 6), 1)], ("x",),
              {"x": ("missing_term_softmax",)}),
        _case("softmax-rank-one-sign", "softmax", "p (p·g) added, not subtracted",
              mix.softmax_f, _with(mix.softmax_vjp, "rank_one_sign"), [_x((5, 6), 2)], ("x",),
              {"x": ("missing_term_softmax",)}),
        _case("softmax-sum-wrong-axis", "softmax", "p·g summed over the batch axis",
              mix.softmax_f, _with(mix.softmax_vjp, "sum_over_wrong_axis"), [_x((5, 6), 3)],
              ("x",),
              {"x": ()}),
        _case("softmax-temperature-missing", "softmax", "the 1/T of softmax(x/T) forgotten",
              lambda x: mix.softmax_f(x, 3.0),
              lambda g, x: mix.softmax_vjp(g, x, 3.0, slip="temperature_missing"),
              [_x((5, 6), 4, scale=3.0)], ("x",), {"x": ("scaled",)}),
        _case("log-softmax-p-term-missing", "log-softmax", "the −p·sum(g) term missing",
              mix.log_softmax_f, _with(mix.log_softmax_vjp, "p_term_missing"), [_x((5, 6), 5)],
              ("x",), {"x": ("passed_through", "missing_term_softmax")}),
        _case("log-softmax-mean-for-p", "log-softmax", "sum(g)/K subtracted where p·sum(g)",
              mix.log_softmax_f, _with(mix.log_softmax_vjp, "mean_for_p"), [_x((5, 6), 6)], ("x",),
              {"x": ("missing_term_softmax_affine",)}),
        _case("log-softmax-p-term-sign", "log-softmax", "+p·sum(g) where −p·sum(g)",
              mix.log_softmax_f, _with(mix.log_softmax_vjp, "p_term_sign"), [_x((5, 6), 7)],
              ("x",),
              {"x": ("missing_term_softmax",)}),
        _case("cross-entropy-ignores-g", "log-softmax", "dlogits = p − y, g ignored",
              mix.cross_entropy_f, _with(mix.cross_entropy_vjp, "ignores_g"),
              [_x((6, 5), 8)], ("logits",),
              {"logits": ("nonlinear_in_cotangent",)}),
        _case("cross-entropy-divides-by-batch", "log-softmax", "a 1/N the forward has not",
              mix.cross_entropy_f, _with(mix.cross_entropy_vjp, "divides_by_batch"),
              [_x((6, 5), 9)], ("logits",), {"logits": ("scaled",)}),
        _case("cross-entropy-g-summed", "log-softmax", "the incoming gradient summed to a scalar",
              mix.cross_entropy_f, _with(mix.cross_entropy_vjp, "g_summed"),
              [_x((6, 5), 10)], ("logits",),
              {"logits": ("scaled_per_slice",)}),
        _case("cross-entropy-clips-g", "log-softmax", "the incoming gradient clipped to [-1, 1]",
              mix.cross_entropy_f, _with(mix.cross_entropy_vjp, "clips_g"),
              [_x((16, 5), 11)], ("logits",),
              {"logits": ("nonlinear_in_cotangent",)}),
        # attention
        _case("attention-scale-missing", "attention", "1/√d left out of dQ and dK",
              mix.attention_f, _with(mix.attention_vjp, "scale_missing"), _qkv(), ("q", "k", "v"),
              {"q": ("scaled",), "k": ("scaled",)}),
        _case("attention-scale-twice", "attention", "1/d where 1/√d belongs",
              mix.attention_f, _with(mix.attention_vjp, "scale_twice"), _qkv(seed=1), ("q", "k",
              "v"),
              {"q": ("scaled",), "k": ("scaled",)}),
        _case("attention-dv-not-transposed", "attention", "dV = P g where Pᵀ g belongs",
              mix.attention_f, _with(mix.attention_vjp, "dv_not_transposed"),
              _qkv(d=5, seed=2), ("q", "k", "v"), {"v": ("operand_transposed",)}),
        _case("attention-softmax-rank-one", "attention", "the softmax's p (p·dP) missing",
              mix.attention_f, _with(mix.attention_vjp, "softmax_rank_one_missing"), _qkv(seed=3),
              ("q", "k", "v"), {"q": (), "k": ()}),
        _case("mha-heads-reshaped-back", "attention",
              "dQ's heads moved back by reshape, not transpose", mix.mha_f,
              _with(mix.mha_vjp, "heads_reshaped_back"), _mha(), ("q", "k", "v"),
              {"q": ("axes_permuted",)}),
        # pooling
        _case("maxpool-assign", "max-pool", "dx[argmax] = g where += belongs (overlaps)",
              loc.maxpool_f, _with(loc.maxpool_vjp, "assign_not_accumulate"),
              [_x((2, 2, 13, 13), 12)], ("x",), {"x": ("position_mask",)}),
        _case("maxpool-first-in-window", "max-pool", "g routed to the window's first element",
              loc.maxpool_f, _with(loc.maxpool_vjp, "first_in_window"), [_x((1, 2, 9, 9), 13)],
              ("x",), {"x": ()}),
        _case("avgpool-no-division", "average-pool", "the 1/k² forgotten",
              loc.avgpool_f, _with(loc.avgpool_vjp, "no_division"), [_x((2, 2, 6, 6), 14)], ("x",),
              {"x": ("scaled",)}),
        _case("avgpool-divides-by-k", "average-pool", "1/k where 1/k² belongs",
              loc.avgpool_f, _with(loc.avgpool_vjp, "divides_by_k"), [_x((2, 2, 6, 6), 15)],
              ("x",),
              {"x": ("scaled",)}),
        _case("avgpool-assign", "average-pool", "= where += belongs (overlapping windows)",
              lambda x: loc.avgpool_f(x, 3, 2), lambda g, x: loc.avgpool_vjp(g, x, 3, 2,
                                                                     slip="assign_not_accumulate"),
              [_x((1, 2, 9, 9), 16)], ("x",), {"x": ("position_mask",)}),
        _case("avgpool-pad-count", "average-pool", "divided by k² at the padded border",
              loc.avgpool_pad_f, _with(loc.avgpool_pad_vjp, "divides_by_window"),
              [_x((1, 2, 7, 7), 17)], ("x",), {"x": ("position_mask", "region")}),
        # upsampling
        _case("upsample-block-mean", "upsampling", "the block's gradient averaged, not summed",
              loc.upsample_f, _with(loc.upsample_vjp, "block_mean"), [_x((2, 2, 3, 3), 18)],
              ("x",),
              {"x": ("scaled",)}),
        _case("upsample-one-sample", "upsampling", "one element of each block taken",
              loc.upsample_f, _with(loc.upsample_vjp, "one_sample"), [_x((2, 2, 3, 3), 19)],
              ("x",),
              {"x": ()}),
        # padding
        _case("reflect-pad-center-only", "reflect-padding",
              "the reflected borders not folded back", loc.reflect_pad_f,
              _with(loc.reflect_pad_vjp, "center_only"), [_x((1, 2, 10, 10), 20)], ("x",),
              {"x": ("position_mask",)}),
        _case("reflect-pad-symmetric-fold", "reflect-padding",
              "folded back as 'symmetric' (edge included)", loc.reflect_pad_f,
              _with(loc.reflect_pad_vjp, "symmetric_fold"), [_x((1, 2, 10, 10), 21)], ("x",),
              {"x": ("position_mask",)}),
        _case("zero-pad-crop-h", "reflect-padding", "the crop off by one in H only",
              loc.zero_pad_f, _with(loc.zero_pad_vjp, "crop_off_by_one_h"), [_x((2, 2, 5, 5), 22)],
              ("x",), {"x": ("shifted",)}),
        _case("zero-pad-crop-both", "reflect-padding", "the crop off by one in H and W",
              loc.zero_pad_f, _with(loc.zero_pad_vjp, "crop_off_by_one_both"), [_x((2, 2, 5, 5),
              23)],
              ("x",), {"x": ("shifted",)}),
        # sort / top-k
        _case("sort-gather", "sort/top-k", "g[perm] where dx[perm] = g belongs",
              loc.sort_f, _with(loc.sort_vjp, "gather_not_scatter"), [_x((4, 6), 24)], ("x",),
              {"x": ("permuted_within",)}),
        _case("topk-first-k", "sort/top-k", "g written to the first k positions",
              loc.topk_f, _with(loc.topk_vjp, "first_k_positions"), [_x((4, 6), 25)], ("x",),
              {"x": ("permuted_within",)}),
        _case("topk-ascending", "sort/top-k", "the indices of the k smallest used",
              loc.topk_f, _with(loc.topk_vjp, "ascending_indices"), [_x((4, 6), 26)], ("x",),
              {"x": ("permuted_within",)}),
        # element-wise
        _ew("mish", "derivative_at_output", ("derivative_at_output",), _x((4, 5), 27),
            what="mish'(y) where mish'(x) belongs"),
        _ew("sigmoid", "derivative_at_output", ("derivative_at_output",), _x((4, 5), 28),
            what="σ'(σ(x)) where σ'(x) belongs"),
        _ew("gelu_tanh", "derivative_at_output", ("derivative_at_output",), _x((4, 5), 29),
            what="gelu'(y) where gelu'(x) belongs"),
        _ew("clip", "not_masked", ("value_mask", "derivative_missing", "passed_through"), _x((4,
            5), 30, scale=2.0),
            what="clip's flat parts not masked"),
        _ew("relu6", "not_masked", ("value_mask",), _x((4, 5), 31, scale=5.0) + 2,
            what="relu6's flat part above 6 not masked"),
        _ew("abs", "sign_missing", ("value_mask", "passed_through"), _away(_x((4, 5), 32)),
            what="the sign of |x|'s derivative missing"),
        _ew("leaky_relu", "wrong_slope", ("value_mask",), _away(_x((4, 5), 33)),
            what="slope 0.01 where 0.1 belongs"),
        _ew("softplus", "sigmoid_of_minus_x", ("elementwise_relation",), _x((4, 5), 34),
            what="σ(−x) where σ(x) belongs"),
        _ew("square", "two_missing", ("scaled",), _x((4, 5), 35),
            what="x where 2x belongs"),
        _ew("reciprocal", "square_missing", ("elementwise_relation",),
            _x((4, 5), 36, lo=0.5), what="−1/x where −1/x² belongs"),
        _ew("sqrt", "half_missing", ("scaled",), _x((4, 5), 37, lo=0.5),
            what="1/√x where 1/(2√x) belongs"),
        _ew("cube", "power_off_by_one", ("elementwise_relation",), _away(_x((4, 5), 38)),
            what="3x where 3x² belongs"),
        _ew("elu", "uses_output", ("value_mask",), _away(_x((4, 5), 39)),
            what="y where y + α belongs below zero"),
        _ew("residual_tanh", "skip_dropped", ("missing_term_cotangent",), _x((4, 5), 40),
            what="the skip connection's identity dropped"),
        _ew("gelu_tanh", "cubic_term_missing", (), _x((4, 5), 41),
            what="the 3·0.044715x² term of u' forgotten"),
        # convolution
        _case("conv-kernel-not-rotated", "conv", "dx with the kernel not rotated",
              loc.conv_f, _with(loc.conv_vjp, "kernel_not_rotated"), _conv_args(), D,
              {"x": ("kernel_not_rotated",)}),
        _case("conv-db-mean", "conv", "db averaged over N·H·W",
              loc.conv_f, _with(loc.conv_vjp, "db_mean"), _conv_args(), D, {"b": ("scaled",)}),
        _case("conv-kernel-transposed", "conv", "the kernel transposed where rotated",
              loc.conv_f, _with(loc.conv_vjp, "kernel_transposed"), _conv_args(), D,
              {"x": ("transposed",)}),
        _case("conv-channels-swapped", "conv", "w used as (C_in, C_out, …)",
              loc.conv_f, _with(loc.conv_vjp, "channels_swapped"), _conv_args(square=True), D,
              {"x": ("channel_axes_swapped",)}),
        _case("conv-stride-zeros-missing", "conv", "the error not dilated by the stride",
              lambda x, w, b: loc.conv_f(x, w, b, stride=2),
              lambda g, x, w, b: loc.conv_vjp(g, x, w, b, stride=2, slip="stride_zeros_missing"),
              _conv_args(size=7), D, {"x": ("stride_zeros_missing",)}),
        _case("conv-crop-both", "conv", "the padding cropped off by one in H and W",
              lambda x, w, b: loc.conv_f(x, w, b, pad=1),
              lambda g, x, w, b: loc.conv_vjp(g, x, w, b, pad=1, slip="crop_off_by_one"),
              _conv_args(), D, {"x": ("padding_offset",)}),
        _case("conv-last-item-dropped", "conv", "the batch loop stops one item short in dx",
              loc.conv_f, _with(loc.conv_vjp, "last_item_dropped"), _conv_args(), D,
              {"x": ("region", "position_mask")}),
        _case("reverse-not-reversed", "sequence", "the time reversal not undone in backward",
              loc.reverse_f, _with(loc.reverse_vjp, "not_reversed"), [_x((2, 7, 3), 42)],
              ("x",), {"x": ("reversed",)}),
        _case("mse-sign", "dense", "(t − y) where (y − t) belongs",
              lambda w, x, t: mix.mse_l2_f(w, x, t, 0.0),
              lambda g, w, x, t: mix.mse_l2_vjp(g, w, x, t, 0.0, slip="sign"),
              [_dense_args()[1][:, :3], _dense_args()[0], _dense_args(seed=1)[0][:, :3]],
              ("w", "x", "t"), {"w": ("sign_flipped",)}),
        _case("conv-crop-h", "conv", "the padding cropped off by one in H only",
              lambda x, w, b: loc.conv_f(x, w, b, pad=1),
              lambda g, x, w, b: loc.conv_vjp(g, x, w, b, pad=1, slip="crop_off_by_one_h"),
              _conv_args(), D, {"x": ("shifted",)}),
    ]
    return out


def _correct():
    f32, f64 = np.float32, np.float64
    x_ties = np.array([[[[1.0, 1.0, 0.5, 2.0, 2.0, 0.0, 1.0, 1.0, 0.3],
                         [1.0, 1.0, 0.5, 2.0, 2.0, 0.0, 1.0, 1.0, 0.3]] * 4 +
                        [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]]]])
    kinks = np.array([[-1.5, -0.0, 0.0, 0.7, 2.0], [0.0, 1e-9, -1e-9, 3.0, -0.2]])
    out = [
        _case("dense-f32", "dense", "", mix.dense_f, mix.dense_vjp, _dense_args(f32), ("x", "w",
              "b")),
        _case("dense-relu-kinks", "dense", "", mix.dense_relu_f, mix.dense_relu_vjp,
              [np.eye(5)[:4], np.eye(5)[:, :3]], ("x", "w")),
        _case("mse-l2-large", "dense", "", mix.mse_l2_f, mix.mse_l2_vjp,
              [1e3 * _dense_args()[1][:, :3], _dense_args()[0], _dense_args(seed=1)[0][:, :3]],
              ("w", "x", "t")),
        _case("layernorm-f32", "layer-norm", "", mix.layernorm_f, mix.layernorm_vjp, _ln_args(f32),
              ("x", "gamma", "beta")),
        _case("layernorm-large", "layer-norm", "", mix.layernorm_f, mix.layernorm_vjp,
              _ln_args(scale=1e4), ("x", "gamma", "beta")),
        _case("batchnorm-f64", "batch-norm", "", mix.batchnorm_f, mix.batchnorm_vjp, _bn_args(),
              ("x", "gamma", "beta")),
        _case("batchnorm-f32-tiny", "batch-norm", "", mix.batchnorm_f, mix.batchnorm_vjp,
              _bn_args(f32, scale=1e-2), ("x", "gamma", "beta")),
        _case("softmax-tiny", "softmax", "", mix.softmax_f, mix.softmax_vjp,
              [_x((5, 6), 50, scale=1e-6)], ("x",)),
        _case("log-softmax-f32", "log-softmax", "", mix.log_softmax_f, mix.log_softmax_vjp,
              [_x((5, 6), 51, f32, scale=10.0)], ("x",)),
        _case("cross-entropy", "log-softmax", "", mix.cross_entropy_f, mix.cross_entropy_vjp,
              [_x((6, 5), 52)], ("logits",)),
        _case("attention-f32", "attention", "", mix.attention_f, mix.attention_vjp,
              _qkv(seed=4, dtype=f32), ("q", "k", "v")),
        _case("mha", "attention", "", mix.mha_f, mix.mha_vjp, _mha(seed=1), ("q", "k", "v")),
        _case("maxpool-ties", "max-pool", "", loc.maxpool_f, loc.maxpool_vjp, [x_ties], ("x",)),
        _case("avgpool-f32", "average-pool", "", loc.avgpool_f, loc.avgpool_vjp,
              [_x((2, 2, 6, 6), 53, f32)], ("x",)),
        _case("avgpool-pad", "average-pool", "", loc.avgpool_pad_f, loc.avgpool_pad_vjp,
              [_x((1, 2, 7, 7), 54)], ("x",)),
        _case("upsample-large", "upsampling", "", loc.upsample_f, loc.upsample_vjp,
              [_x((2, 2, 3, 3), 55, scale=1e5)], ("x",)),
        _case("reflect-pad", "reflect-padding", "", loc.reflect_pad_f, loc.reflect_pad_vjp,
              [_x((1, 2, 10, 10), 56)], ("x",)),
        _case("sort-ties", "sort/top-k", "", loc.sort_f, loc.sort_vjp,
              [np.array([[0.3, 0.3, -1.0, 2.0, 2.0, 0.1], [1.0, 0.0, 1.0, 0.0, 1.0, 0.5]])],
              ("x",)),
        _case("topk-f32", "sort/top-k", "", loc.topk_f, loc.topk_vjp, [_x((4, 6), 57, f32)],
              ("x",)),
        _case("relu6-kinks", "element-wise", "", loc.elementwise("relu6")[0],
              loc.elementwise("relu6")[1], [np.array([[0.0, 6.0, 3.0], [-1.0, 7.0, 1e-12]])],
              ("x",)),
        _case("abs-kinks", "element-wise", "", loc.elementwise("abs")[0],
              loc.elementwise("abs")[1],
              [kinks], ("x",)),
        _case("tanh-tiny", "element-wise", "", loc.elementwise("tanh")[0],
              loc.elementwise("tanh")[1],
              [_x((4, 5), 58, scale=1e-7)], ("x",)),
        _case("mish-f32", "element-wise", "", loc.elementwise("mish")[0],
              loc.elementwise("mish")[1],
              [_x((4, 5), 59, f32, scale=3.0)], ("x",)),
        _case("conv-f32", "conv", "", loc.conv_f, loc.conv_vjp, _conv_args(f32), ("x", "w", "b")),
        _case("conv-pad", "conv", "", lambda x, w, b: loc.conv_f(x, w, b, pad=1),
              lambda g, x, w, b: loc.conv_vjp(g, x, w, b, pad=1), _conv_args(), ("x", "w", "b")),
    ]
    return out


BUGS = tuple(_bugs())
CORRECT = tuple(_correct())
KINDS = ("dense", "layer-norm", "batch-norm", "softmax", "log-softmax", "attention",
         "max-pool", "average-pool", "upsampling", "reflect-padding", "sort/top-k",
         "element-wise", "conv", "sequence")


# ============================================================================ held out
# Written after the catalogue, with the expected causes set before the first run, and
# not tuned for: they measure how the catalogue does on slips it was not built from.

def _held_out():
    def scale_layer_f(x):
        return 2.0 * x                                    # inverted dropout, keep 0.5

    def lse_f(x):                                         # log-sum-exp pooling per row
        m = x.max(1, keepdims=True)
        return (m + np.log(np.exp(x - m).sum(1, keepdims=True)))[:, 0]

    def embed_f(table, idx=np.array([1, 3, 1, 0, 3, 3])):
        return table[idx]

    def embed_vjp(g, table, idx=np.array([1, 3, 1, 0, 3, 3])):
        d = np.zeros_like(table)
        d[idx] = g                                        # np.add.at belongs: repeats
        return (d,)

    def maxpool2_argmin_vjp(g, x):
        win = loc._windows(x, 2, 2)
        n, c, ho, wo = win.shape[:4]
        arg = win.reshape(n, c, ho, wo, 4).argmin(-1)    # argmin where argmax belongs
        dx = np.zeros_like(x)
        for i in range(ho):
            for j in range(wo):
                di, dj = np.divmod(arg[:, :, i, j], 2)
                for nn in range(n):
                    for cc in range(c):
                        dx[nn, cc, 2 * i + di[nn, cc], 2 * j + dj[nn, cc]] += g[nn, cc, i, j]
        return (dx,)

    def sort_desc_f(x):
        return -np.sort(-x, axis=1)

    def sort_desc_vjp(g, x):
        dx = np.zeros_like(x)
        np.put_along_axis(dx, np.argsort(x, axis=1), g, axis=1)   # ascending perm
        return (dx,)

    def residual_dense_f(x, w):
        return x + x @ w

    def residual_dense_vjp(g, x, w):
        return g @ w.T, x.T @ g                          # the skip's g forgotten in dx

    def bn_ddof_vjp(g, x, gamma, beta):
        mu = x.mean(mix.BN_AXES, keepdims=True)
        var = x.var(mix.BN_AXES, keepdims=True)
        xhat = (x - mu) / np.sqrt(var + mix.BN_EPS)
        dxhat = g * gamma[:, None, None]
        m = x.size // x.shape[1]
        var1 = var * m / (m - 1)                          # the unbiased variance
        dx = (dxhat - dxhat.mean(mix.BN_AXES, keepdims=True)
              - xhat * (dxhat * xhat).mean(mix.BN_AXES,
              keepdims=True)) / np.sqrt(var1 + mix.BN_EPS)
        return dx, (g * xhat).sum(mix.BN_AXES), g.sum(mix.BN_AXES)

    def conv_batch_mean_vjp(g, x, w, b):
        dx, dw, db = loc.conv_vjp(g, x, w, b)
        return dx, dw / x.shape[0], db

    def ew(value, wrong):
        return value, (lambda g, x: (wrong(g, x),))

    out = [
        _case("dense-dx-no-transpose", "dense", "dx = g W where g Wᵀ belongs",
              mix.dense_f, lambda g, x, w, b: (g @ w, x.T @ g, g.sum(0)), _dense_args(seed=2),
              ("x", "w", "b"), {"x": ("operand_transposed",)}),
        _case("dense-residual-skip", "dense", "the residual's identity forgotten in dx",
              residual_dense_f, residual_dense_vjp, _dense_args(seed=3)[:2], ("x", "w"),
              {"x": ("missing_term_cotangent",)}),
        _case("batchnorm-unbiased-var", "batch-norm", "σ from the unbiased variance in backward",
              mix.batchnorm_f, bn_ddof_vjp, _bn_args(), ("x", "gamma", "beta"),
              {"x": ("scaled", "scaled_per_slice")}),
        _case("log-sum-exp-unnormalized", "softmax", "exp(x) where softmax(x) belongs",
              lse_f, lambda g, x: (g[:, None] * np.exp(x),), [_x((5, 6), 60)], ("x",),
              {"x": ("scaled_per_slice",)}),
        _case("softmax-temperature-twice", "softmax", "1/T applied twice",
              lambda x: mix.softmax_f(x, 3.0),
              lambda g, x: (mix.softmax_vjp(g, x, 3.0)[0] / 3.0,), [_x((5, 6), 61, scale=3.0)],
              ("x",), {"x": ("scaled",)}),
        _case("embedding-assign", "dense", "dE[idx] = g where np.add.at belongs (repeats)",
              embed_f, embed_vjp, [_x((5, 4), 62)], ("table",), {"table": ("position_mask",)}),
        _case("maxpool-argmin", "max-pool", "the window's argmin where its argmax belongs",
              lambda x: loc.maxpool_f(x, 2, 2), maxpool2_argmin_vjp, [_x((1, 2, 6, 6), 63)],
              ("x",), {"x": ("permuted_within",)}),
        _case("avgpool-divided-twice", "average-pool", "1/k² applied twice",
              loc.avgpool_f, lambda g, x: (loc.avgpool_vjp(g, x)[0] / 4,), [_x((2, 2, 6, 6), 64)],
              ("x",), {"x": ("scaled",)}),
        _case("sort-descending-perm", "sort/top-k",
              "the ascending permutation for a descending sort",
              sort_desc_f, sort_desc_vjp, [_x((4, 6), 65)], ("x",),
              {"x": ("permuted_within", "reversed")}),
        _case("reflect-pad-subtract", "reflect-padding", "the reflected rows subtracted",
              loc.reflect_pad_f, lambda g, x: (2 * g[:, :, 2:-2, 2:-2] - loc.reflect_pad_vjp(g,
              x)[0],),
              [_x((1, 2, 10, 10), 66)], ("x",), {"x": ("position_mask",)}),
        _case("dropout-scale-missing", "element-wise", "the 1/keep scale left out of dx",
              *ew(lambda x: 2.0 * x, lambda g, x: g.copy()), [_x((4, 5), 67)], ("x",),
              {"x": ("scaled", "passed_through")}),
        _case("tanh-square-missing", "element-wise", "1 − tanh(x) where 1 − tanh²(x)",
              *ew(np.tanh, lambda g, x: g * (1 - np.tanh(x))), [_x((4, 5), 68)], ("x",),
              {"x": ()}),
        _case("exp-passes-g", "element-wise", "exp's backward returns g",
              *ew(np.exp, lambda g, x: g.copy()), [_x((4, 5), 69)], ("x",),
              {"x": ("passed_through",)}),
        _case("log-times-x", "element-wise", "g·x where g/x belongs",
              *ew(np.log, lambda g, x: g * x), [_x((4, 5), 70, lo=0.5)], ("x",),
              {"x": ("elementwise_relation",)}),
        _case("swish-term-missing", "element-wise", "x·σ'(x) term of swish' forgotten",
              *ew(lambda x: x * loc._sig(x), lambda g, x: g * loc._sig(x)), [_x((4, 5), 71)],
              ("x",),
              {"x": ()}),
        _case("sigmoid-sign-typo", "element-wise", "σ(1 + σ) where σ(1 − σ)",
              *ew(loc._sig, lambda g, x: g * loc._sig(x) * (1 + loc._sig(x))), [_x((4, 5), 72)],
              ("x",),
              {"x": ()}),
        _case("conv-dw-batch-mean", "conv", "dW averaged over the batch",
              loc.conv_f, conv_batch_mean_vjp, _conv_args(), ("x", "w", "b"), {"w": ("scaled",)}),
        _case("upsample-blocks-misordered", "upsampling",
              "the 2×2 blocks reshaped in the wrong order",
              loc.upsample_f, lambda g, x: (g.reshape(x.shape[0], x.shape[1], 2, x.shape[2], 2,
                                                  x.shape[3]).sum((2, 4)),),
              [_x((2, 2, 3, 3), 73)], ("x",), {"x": ()}),
        _case("attention-no-softmax-backward", "attention", "dS = dP: the softmax skipped",
              mix.attention_f, lambda g, q, k, v: _attention_no_softmax(g, q, k, v),
              _qkv(seed=5), ("q", "k", "v"), {"q": (), "k": ()}),
    ]
    return out


def _attention_no_softmax(g, q, k, v):
    d = q.shape[-1]
    p = mix.softmax(q @ k.T / np.sqrt(d), axis=1)
    ds = g @ v.T
    return ds @ k / np.sqrt(d), ds.T @ q / np.sqrt(d), p.T @ g


HELD_OUT = tuple(_held_out())


# ============================================================================ examples
# For the causes no slip above shows: a mismatch at one element, at a kink, and where f
# overflows next to the point. Used by the catalogue's examples (docs/diagnosis.md).

def _extras():
    def nudged_dense(g, x, w, b):
        dx, dw, db = mix.dense_vjp(g, x, w, b)
        dx = dx.copy()
        dx[2, 3] *= np.float32(1.001)                     # one element off by 0.1%
        return dx, dw, db

    def centered(x, b):               # a bias before a centering over the batch: it cancels
        z = x + b
        return z - z.mean(axis=0, keepdims=True)

    def centered_vjp(g, x, b):        # db = sum(g): the bias gradient as if nothing followed
        return g - g.mean(axis=0, keepdims=True), g.sum(axis=0)

    relu_x = np.array([[-1.0, 0.0, 2.0], [0.5, 0.0, -0.3]])
    return (
        _case("bias-before-centering", "batch-norm",
              "a bias before a centering given the gradient sum(g) (the centering cancels it)",
              centered, centered_vjp, [_rng(7).standard_normal((6, 4)), np.zeros(4)],
              ("x", "b"), {"b": ("gradient_where_none",)}),
        _case("dense-f32-one-element", "dense", "one element of dx off by 0.1% (float32)",
              mix.dense_f, nudged_dense, _dense_args(np.float32), ("x", "w", "b"),
              {"x": ("single_element",)}),
        _case("relu-two-at-kink", "element-wise", "a ReLU backward returning 2 at x = 0",
              lambda x: np.maximum(x, 0),
              lambda g, x: (g * np.where(x > 0, 1.0, np.where(x == 0, 2.0, 0.0)),),
              [relu_x], ("x",), {"x": ("outside_kink_limits",)}),
        _case("leaky-relu-slope-at-zeros", "element-wise",
              "a leaky ReLU's backward with slope 0.1 where 0.01 belongs, x with exact zeros "
              "(float32)",
              lambda x: np.where(x > 0, x, np.float32(0.01) * x),
              lambda g, x: ((g * np.where(x > 0, 1.0, 0.1)).astype(np.float32),),
              [relu_x.astype(np.float32)], ("x",), {"x": ("kink_branch",)}),
        _case("exp-near-overflow", "element-wise", "exp at 709.5: f overflows next to the point",
              np.exp, lambda g, x: (g * np.exp(x),), [np.array([1.0, 709.5])], ("x",),
              {"x": ("no_numerical_derivative",)}),
        _case("dense-no-db", "dense", "the bias gradient forgotten: backward returns None",
              mix.dense_f, lambda g, x, w, b: (*mix.dense_vjp(g, x, w, b)[:2], None),
              _dense_args(np.float64), ("x", "w", "b"), {"b": ("no_gradient_returned",)}),
    )


EXTRAS = tuple(_extras())
