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


# -- exact ties the differentiator cannot resolve ------------------------------------------
# A 2x2 stride-1 max-pool of values in {-0.74, -0.37, 0, 0.37}, times a weight per channel.
# At seed 6, x[1, 2, 2, 2] is a tied maximum of overlapping windows whose one-sided
# derivatives (of C, along x[1, 2, 2, 2] alone) differ by 0.03% -- the windows' jumps
# nearly cancel in C -- which float32 differencing does not resolve as a kink.

def _max_pool_2x2_stride_1(x):
    """``(y, first)``: a 2x2 stride-1 max-pool of (N, C, H, W) and, per window, the flat
    (H*W) index of its first maximum in row-major window order (PyTorch's choice)."""
    n, c, h, w = x.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))
    win = win.reshape(n, c, h - 1, w - 1, 4)
    a = win.argmax(-1)
    rows = np.arange(h - 1)[:, None] + a // 2
    cols = np.arange(w - 1)[None, :] + a % 2
    return np.take_along_axis(win, a[..., None], -1)[..., 0], rows * w + cols


def _pool_case(seed, dtype="float32", route=None):
    """``(f, f_vjp, (x, w))``; ``route`` maps each window (n, c, i, j) to the flat (H*W)
    index its gradient goes to (default: its first maximum)."""
    r = np.random.default_rng(seed)
    x = (r.integers(-2, 2, (2, 3, 6, 6)) * 0.37).astype(dtype)
    w = r.uniform(0.5, 1.5, 3).astype(dtype)

    def f(x, w):
        return _max_pool_2x2_stride_1(x)[0] * w[None, :, None, None]

    def f_vjp(g, x, w):
        y, first = _max_pool_2x2_stride_1(x)
        to = first if route is None else route(x, first)
        gy = g * w[None, :, None, None]
        gx = np.zeros(x.shape[:2] + (x.shape[2] * x.shape[3],))
        for i in np.ndindex(*x.shape[:2]):
            np.add.at(gx[i], to[i].ravel(), gy[i].ravel())
        return gx.reshape(x.shape).astype(x.dtype), (g * y).sum((0, 2, 3)).astype(w.dtype)

    return f, f_vjp, (x, w)


def _tied_maxima(x):
    """Mask of the elements that are a maximum of some 2x2 window whose maximum is
    attained twice or more (by hand, from the windows' values)."""
    n, c, h, w = x.shape
    out = np.zeros(x.shape, bool)
    for b, ch, i, j in np.ndindex(n, c, h - 1, w - 1):
        win = x[b, ch, i:i + 2, j:j + 2]
        top = win == win.max()
        if top.sum() >= 2:
            out[b, ch, i:i + 2, j:j + 2] |= top
    return out


def test_float32_max_pool_with_exact_ties_in_overlapping_windows():
    # 10 of 216 elements failed before exact ties joined the kinks, e.g. x[1, 2, 2, 2]:
    # analytic 1.7732 vs numeric 1.7222 (allowed 0.0059), where the one-sided derivatives
    # by the definition (float64, t = 1e-7) are 1.722039 and 1.722524.
    f, f_vjp, (x, w) = _pool_case(6)
    R = seeded_cotangent(6, f(x, w).shape)
    X, W = x.astype(np.float64), w.astype(np.float64)
    e = np.zeros_like(X)
    e[1, 2, 2, 2] = 1e-7
    C = lambda v: float((R * f(v, W)).sum())           # noqa: E731
    right, left = (C(X + e) - C(X)) / 1e-7, (C(X) - C(X - e)) / 1e-7
    assert abs(right - 1.722039) < 1e-5 and abs(left - 1.722524) < 1e-5
    # the backward is right: along the sum of every element tied at 0.37 in channel
    # (1, 2), the directional derivative equals the sum of the analytic values
    tied = np.zeros_like(X)
    tied[1, 2] = X[1, 2] == np.float64(np.float32(0.37))
    t = 1e-7
    along = (C(X + t * tied) - C(X - t * tied)) / (2 * t)
    assert abs(along - float((f_vjp(R, x, w)[0] * tied).sum())) < 1e-4 * abs(along)
    report = check_vjp(f, f_vjp, (x, w), argnames=("x", "w"), seed=6)
    assert report.passed, str(report)
    a = report.arguments[0]
    assert a.nondifferentiable_mask[1, 2, 2, 2] and "tied exactly" in a.note, str(report)


def _pool_pattern(shape):
    """The max-pool's dependency pattern (outputs x inputs), from its windows."""
    import scipy.sparse as sp

    n, c, h, w = shape
    rows, cols = [], []
    for o, (b, ch, i, j) in enumerate(np.ndindex(n, c, h - 1, w - 1)):
        for di, dj in np.ndindex(2, 2):
            rows.append(o)
            cols.append(np.ravel_multi_index((b, ch, i + di, j + dj), shape))
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)),
                         shape=(n * c * (h - 1) * (w - 1), n * c * h * w))


@pytest.mark.parametrize("with_pattern", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_tied_maximum_left_out_of_the_kinks_joins_them_and_nothing_else_does(
        with_pattern, dtype):
    from gradcheck.checker._kinks import KinkContext
    from gradcheck.checker._ties import TieFinder

    f, _, (x, w) = _pool_case(6, dtype)
    kinks = _tied_maxima(x)
    assert kinks[1, 2, 2, 2]
    kinks[1, 2, 2, 2] = False        # as the float32 differentiator left it
    # equal-valued elements that are no tied maximum sit beside the kinks: they stay out
    assert (~_tied_maxima(x) & np.isin(x, x[kinks])).sum() > 20
    g = lambda v: f(v, w)                               # noqa: E731
    pattern = _pool_pattern(x.shape) if with_pattern else None
    finder = TieFinder(KinkContext(pattern, g, x, g(x), None))
    joined = finder.joined(kinks.reshape(-1))
    assert [np.unravel_index(j, x.shape) for j in joined] == [(1, 2, 2, 2)]
    # with every tied maximum but the ones of one window left out, the closure finds them
    kinks = _tied_maxima(x)
    dropped = kinks[1, 2, 2:4, 2:4].copy()
    kinks[1, 2, 2:4, 2:4] = False
    joined = TieFinder(KinkContext(pattern, g, x, g(x), None)).joined(kinks.reshape(-1))
    back = np.zeros(x.shape, bool)
    back.reshape(-1)[joined] = True
    assert np.array_equal(back[1, 2, 2:4, 2:4], dropped) and back.sum() == dropped.sum()
    if with_pattern:                 # probed in batches: far fewer than 2 per element
        assert finder.nfev < 40, finder.nfev


def _to_non_maximum_of_tied_value(x, first):
    """Route one window's gradient to a non-maximum of it whose value equals a tied
    maximum it shares a window with (the element the join must not excuse); ``(route,
    that element)``."""
    tied = _tied_maxima(x)
    n, c, h, w = x.shape
    for b, ch, i, j in np.ndindex(n, c, h - 1, w - 1):
        win = x[b, ch, i:i + 2, j:j + 2]
        if (win == win.max()).sum() < 2:
            continue
        for di, dj in np.ndindex(2, 2):
            r, s = i + di, j + dj
            if win[di, dj] == win.max() or tied[b, ch, r, s]:
                continue
            around = (b, ch, slice(max(r - 1, 0), r + 2), slice(max(s - 1, 0), s + 2))
            if np.any(x[around][tied[around]] == x[b, ch, r, s]):
                to = first.copy()
                to[b, ch, i, j] = r * w + s
                return to, (b, ch, r, s)
    raise AssertionError("no such window at this point")


@pytest.mark.parametrize("with_pattern", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_window_gradient_sent_to_an_equal_valued_non_maximum_still_fails(dtype,
                                                                           with_pattern):
    f, right_vjp, (x, w) = _pool_case(6, dtype)
    _, elem = _to_non_maximum_of_tied_value(x, _max_pool_2x2_stride_1(x)[1])
    f, f_vjp, args = _pool_case(6, dtype, route=lambda x, first:
                                _to_non_maximum_of_tied_value(x, first)[0])
    options = {"patterns": {"x": _pool_pattern(x.shape)}} if with_pattern else {}
    report = check_vjp(f, f_vjp, args, argnames=("x", "w"), seed=6, **options)
    a = report.arguments[0]
    assert not report.passed and a.failed_mask[elem], str(report)
    report = check_vjp(f, right_vjp, args, argnames=("x", "w"), seed=6, **options)
    assert report.passed, str(report)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_pool_sending_the_gradient_to_every_tie_fails_where_ties_joined(dtype):
    f, _, (x, w) = _pool_case(6, dtype)
    report = check_vjp(f, _every_tie_pool_vjp, (x, w), argnames=("x", "w"), seed=6)
    assert not report.passed and "sum direction" in report.arguments[0].note, str(report)


@pytest.mark.parametrize("with_pattern", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", range(8))
def test_a_right_max_pool_of_few_levels_passes(seed, dtype, with_pattern):
    f, f_vjp, args = _pool_case(seed, dtype)
    options = {"patterns": {"x": _pool_pattern(args[0].shape)}} if with_pattern else {}
    report = check_vjp(f, f_vjp, args, argnames=("x", "w"), seed=seed, **options)
    assert report.passed, str(report)


def _every_tie_pool_vjp(g, x, w):
    """The 2x2 stride-1 pool's backward with ``mask = win == win.max()``."""
    win = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))
    gy = g * w[None, :, None, None]
    gx = np.zeros(x.shape)
    for i, j in np.ndindex(x.shape[2] - 1, x.shape[3] - 1):
        v = win[:, :, i, j]
        top = v == v.max(axis=(-2, -1), keepdims=True)
        gx[:, :, i:i + 2, j:j + 2] += top * gy[:, :, i, j][..., None, None]
    y = _max_pool_2x2_stride_1(x)[0]
    return gx.astype(x.dtype), (g * y).sum((0, 2, 3)).astype(w.dtype)


@pytest.mark.parametrize("with_pattern", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sampled_mode_judges_the_tie_groups_of_a_whole_sample(dtype, with_pattern):
    """Every element sampled: every group is whole, judged along its sum as in full mode
    (before, a sample reported shared kinks without judging them, and the pool sending
    the gradient to every tie passed)."""
    f, right, args = _pool_case(6, dtype)
    options = {"patterns": {"x": _pool_pattern(args[0].shape)}} if with_pattern else {}
    wrong = check_vjp(f, _every_tie_pool_vjp, args, argnames=("x", "w"), seed=6,
                      mode="sampled", **options)
    a = wrong.arguments[0]
    assert not wrong.passed and "sum direction" in a.note, str(wrong)
    assert a.diagnosis.cause == "outside_kink_limits" and "tied" in a.diagnosis.message
    # the group named is the argument's, in its shape, and its sums are the backward's
    group = [tuple(i) for i in a.diagnosis.evidence["group"]]
    assert all(len(i) == 4 for i in group)
    x, w = args
    cot = seeded_cotangent(6, f(x, w).shape)
    assert a.diagnosis.evidence["analytic_sum"] == pytest.approx(
        sum(float(_every_tie_pool_vjp(cot, x, w)[0][i]) for i in group), rel=1e-5)
    assert a.diagnosis.evidence["numeric"] == pytest.approx(
        sum(float(right(cot, x, w)[0][i]) for i in group), rel=1e-3, abs=1e-4)
    report = check_vjp(f, right, args, argnames=("x", "w"), seed=6, mode="sampled",
                       **options)
    assert report.passed, str(report)


def test_a_sample_knows_a_tie_group_whole_only_where_no_unsampled_element_reaches_it():
    from gradcheck.checker._kinks import whole_in_sample

    shape = (1, 1, 6, 6)
    P = _pool_pattern(shape)
    flat = lambda *ij: np.ravel_multi_index((0, 0) + ij, shape)     # noqa: E731
    # sampled: the 5 x 5 block at rows/cols 0..4. An element reaches the windows whose
    # top-left corner is itself or one up/left of it; (1, 1), (1, 2), (2, 2) reach windows
    # within rows/cols 0..3 (all sampled); (3, 4) reaches windows spanning column 5.
    block = np.sort([flat(i, j) for i in range(0, 5) for j in range(0, 5)])
    whole = whole_in_sample(block, P, 36, P.shape[0])
    pos = {int(k): n for n, k in enumerate(block)}
    inner = [pos[flat(1, 1)], pos[flat(1, 2)], pos[flat(2, 2)]]   # windows within 0..3
    edge = [pos[flat(3, 3)], pos[flat(3, 4)]]                      # (3, 4) reaches col 5
    assert whole(inner) and not whole(edge)
    assert whole_in_sample(block, None, 36, P.shape[0]) is None
    assert whole_in_sample(np.arange(36), None, 36, P.shape[0])(edge)


def _large_pool_case(seed, levels):
    """A pool over more elements than a sample holds (4608 > MAX_SAMPLE), of ``levels``
    values: ties everywhere (4 levels) or in places (12)."""
    r = np.random.default_rng(seed)
    x = r.integers(-levels // 2, levels // 2, (1, 2, 48, 48)) * 0.37
    w = r.uniform(0.5, 1.5, 2)
    f, right, _ = _pool_case(seed, "float64")
    return f, right, (x, w)


@pytest.mark.parametrize("levels", [4, 12])
def test_a_partial_sample_of_a_right_pool_with_ties_passes(levels):
    """Sampled elements outside their limits at shared kinks used to count as failures
    when deciding whether a failing direction over the rest was to be bisected, so a
    direction across ties failed a right backward (seed 0, 4 levels; without a pattern
    too, at 16 s a check, measured outside the suite)."""
    f, right, args = _large_pool_case(0, levels)
    report = check_vjp(f, right, args, argnames=("x", "w"), seed=0, mode="sampled",
                       patterns={"x": _pool_pattern(args[0].shape)})
    a = report.arguments[0]
    assert report.passed and a.n_checked < a.n_elements, str(report)


@pytest.mark.parametrize("levels", [4, 12])
def test_a_partial_sample_extended_around_its_kinks_judges_whole_tie_groups(levels):
    f, right, args = _large_pool_case(0, levels)
    options = {"patterns": {"x": _pool_pattern(args[0].shape)}}
    wrong = check_vjp(f, _every_tie_pool_vjp, args, argnames=("x", "w"), seed=0,
                      mode="sampled", **options)
    a = wrong.arguments[0]
    assert not wrong.passed and "around the sample's kinks" in a.note, str(wrong)
    assert a.diagnosis.cause == "outside_kink_limits" and "tied" in a.diagnosis.message
    x, w = args
    group = [tuple(i) for i in a.diagnosis.evidence["group"]]
    cot = seeded_cotangent(0, f(x, w).shape)
    assert a.diagnosis.evidence["numeric"] == pytest.approx(
        sum(float(right(cot, x, w)[0][i]) for i in group), rel=1e-6, abs=1e-9)


def test_the_extension_around_a_samples_kinks_counts_against_its_time_share():
    """On a pool of ties the extension takes as many evaluations again as the sample
    (measured: 226 against 192): it gets what the sample left of its share of
    time_budget, and the report says when it was cut. With a budget of a microsecond
    nothing is left: no element is added, and the partial groups are reported."""
    f, right, args = _large_pool_case(0, 4)
    options = {"patterns": {"x": _pool_pattern(args[0].shape)}}
    tiny = check_vjp(f, right, args, argnames=("x", "w"), seed=0, mode="sampled",
                     time_budget=1e-6, **options)
    a = tiny.arguments[0]
    assert tiny.passed and a.n_checked < a.n_elements, str(tiny)
    assert "the extension of the sample around its kinks was cut for time at 0 of " in a.note
    assert "tie groups it leaves partial are reported, not judged" in a.note
    assert "around the sample's kinks added" not in a.note
    # and the shared kinks' note says why they are not judged, in sampled mode's words
    assert "which do not bound the valid values there: reported, not judged (their tie " \
           "groups are not whole in the sample" in a.note


def test_a_sample_of_every_element_says_its_shared_kinks_as_full_mode_does():
    """A sample holding every element judges every tie group full mode judges: its note
    is full mode's, not the partial sample's."""
    from gradcheck import check_layer
    from gradcheck.ops.layers import MaxPool

    rng = np.random.default_rng(0)
    x = np.repeat(np.repeat(rng.standard_normal((2, 2, 3, 3)), 2, 2), 2, 3) + \
        rng.uniform(-1e-9, 1e-9, (2, 2, 6, 6))
    notes = {}
    for mode in ("full", "sampled"):
        a = check_layer(MaxPool(2, stride=1), x, mode=mode, time_budget=1e-6)["x"]
        assert a.passed and a.n_checked == a.n_elements
        notes[mode] = a.note[a.note.index("element(s) sit at kinks shared"):]
    assert notes["sampled"] == notes["full"]
    assert "judged with their tie groups, along each group's sum" in notes["full"]
    assert "not whole in the sample" not in notes["full"]


def test_the_elements_reaching_some_outputs_agree_from_a_structure_and_a_pattern():
    from gradcheck.checker._kinks import reaching, whole_in_sample
    from gradcheck.ops._structure import window_structure

    shape = (2, 2, 6, 6)
    structure = window_structure(shape, (2, 2, 5, 5), (1, 1), (0, 0), (2, 2), False)
    P = _pool_pattern(shape)
    r = np.random.default_rng(0)
    for _ in range(5):
        outputs = r.random(P.shape[0]) < 0.1
        expect = np.asarray(P[np.flatnonzero(outputs)].sum(0)).ravel() > 0   # by hand
        assert np.array_equal(reaching(P, outputs, P.shape[1]), expect)
        assert np.array_equal(reaching(structure, outputs, P.shape[1]), expect)
        index = np.sort(r.choice(P.shape[1], 100, replace=False))
        group = r.choice(100, 3, replace=False)
        assert whole_in_sample(index, P, P.shape[1], P.shape[0])(group) == \
            whole_in_sample(index, structure, P.shape[1], P.shape[0])(group)


@pytest.mark.parametrize("seed", range(4))
def test_float16_max_pool_with_ties_right_passes_and_every_tie_fails(seed):
    # float16: the probe of a tie moves an element by sqrt(eps) of its size, 32 ulps of
    # the window's output -- short of the 64 ulps a one-sided change needed, so no tie
    # joined the kinks, and a tied maximum given its window's gradient (right, the first
    # winner) failed as a smooth element: 6 of seeds 0-11 and 22 of 100-159 failed the
    # right backward. Both backwards in float16, of the same float16 point.
    x = _ties(seed).astype(np.float16)

    def cast(vjp):
        return lambda g, x: tuple(v.astype(np.float16) for v in vjp(g, x))

    right = check_vjp(loc.maxpool_f, cast(loc.maxpool_vjp), (x,), seed=seed, mode="full")
    assert right.passed, str(right)
    wrong = check_vjp(loc.maxpool_f, cast(_every_tie_vjp), (x,), seed=seed, mode="full")
    assert not wrong.passed, str(wrong)
