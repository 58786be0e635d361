"""The sample of a sampled check: which elements, in which order, how many.

The expectations are counted by hand from the tiers the module documents (every batch
item and channel at a corner, the other corners, the borders, then random elements; a
weight's channel pairs with all their taps), not read back from the selection.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.checker._diagnose import TensorRole
from gradcheck.checker._sample import MAX_SAMPLE, MIN_SAMPLE, choose_sample, sample_candidates

INPUT = TensorRole.for_array("input", 4)
WEIGHT = TensorRole.for_array("weight", 4)


def _coords(flat, shape):
    return np.stack(np.unravel_index(np.asarray(flat), shape), axis=1)


def test_the_first_elements_cover_every_batch_item_and_channel_at_a_corner():
    shape = (3, 5, 7, 6)
    first = _coords(sample_candidates(shape, INPUT, 0, 0)[:5], shape)   # max(N, C) = 5
    assert set(first[:, 0]) == {0, 1, 2} and set(first[:, 1]) == {0, 1, 2, 3, 4}
    corners = {(0, 0), (0, 5), (6, 0), (6, 5)}
    assert all((int(h), int(w)) in corners for h, w in first[:, 2:])


def test_a_patch_then_every_corner_and_the_borders_of_those_pairs_come_next():
    shape = (3, 5, 7, 6)
    cand = _coords(sample_candidates(shape, INPUT, 0, 0), shape)
    # a 5 x 5 block at the centre of the 7 x 6 grid (rows 1-5, columns 1-5), first pair
    patch = {tuple(int(v) for v in c) for c in cand[5:30]}
    assert patch == {(0, 0, h, w) for h in range(1, 6) for w in range(1, 6)}
    pairs = {(k % 3, k % 5) for k in range(5)}
    corners = {(0, 0), (0, 5), (6, 0), (6, 5)}
    head = {tuple(int(v) for v in c) for c in np.concatenate([cand[:5], cand[30:45]])}
    assert head == {(n, c, h, w) for n, c in pairs for h, w in corners}   # cover + corners
    # then the borders: rows 0, 1, 5, 6 and columns 0, 1, 4, 5 of each pair (at most 8 per
    # pair: fewer where one falls on a corner or in the patch, taken before)
    border = cand[:45 + 5 * 8]
    for n, c in pairs:
        mine = border[(border[:, 0] == n) & (border[:, 1] == c)][:, 2:]
        at = {(int(h), int(w)) for h, w in mine} | corners
        assert all(any(h == r for h, _ in at) for r in (0, 1, 5, 6)), (n, c, at)
        assert all(any(w == col for _, w in at) for col in (0, 1, 4, 5)), (n, c, at)


def test_a_weight_gives_whole_filters_of_every_output_and_input_channel_first():
    shape = (4, 3, 3, 3)
    cand = _coords(sample_candidates(shape, WEIGHT, 0, 1), shape)
    first = cand[:4 * 9]                           # max(C_out, C_in) pairs x 9 taps
    pairs = {(int(o), int(i)) for o, i in first[:, :2]}
    assert pairs == {(k % 4, k % 3) for k in range(4)}
    for o, i in pairs:                             # every tap of each pair
        taps = first[(first[:, 0] == o) & (first[:, 1] == i)][:, 2:]
        assert {tuple(int(v) for v in t) for t in taps} == {(a, b) for a in range(3)
                                                             for b in range(3)}
    # then the other pairs, with all their taps: every element of this small weight
    assert len({tuple(int(v) for v in c) for c in cand}) == 4 * 3 * 9


def test_candidates_are_deterministic_distinct_and_seeded():
    shape = (4, 3, 20, 20)
    a = sample_candidates(shape, INPUT, 0, 0)
    assert np.array_equal(a, sample_candidates(shape, INPUT, 0, 0))
    assert np.unique(a).size == a.size and a.min() >= 0 and a.max() < np.prod(shape)
    b = sample_candidates(shape, INPUT, 1, 0)
    assert not np.array_equal(a, b)
    assert np.array_equal(a[:4], b[:4])            # the corners do not depend on the seed


def test_a_smaller_budget_takes_a_prefix_of_the_same_order():
    shape = (4, 3, 20, 20)
    small = choose_sample(shape, INPUT, seed=0, index=0, groups_allowed=40)
    large = choose_sample(shape, INPUT, seed=0, index=0, groups_allowed=300)
    assert small.index.size == small.groups == 40 and large.index.size == 300
    assert np.array_equal(large.index[:40], small.index)
    assert choose_sample(shape, INPUT, seed=0, index=0, groups_allowed=0).index.size == \
        MIN_SAMPLE


def test_a_small_tensor_within_the_budget_is_sampled_whole_and_a_large_one_capped():
    whole = choose_sample((2, 3, 4, 4), INPUT, seed=0, index=0, groups_allowed=10_000)
    assert np.array_equal(np.sort(whole.index), np.arange(96))
    capped = choose_sample((8, 16, 32, 32), INPUT, seed=0, index=0, groups_allowed=10**9)
    assert capped.index.size == MAX_SAMPLE


def test_with_colors_the_budget_counts_colors_and_shared_ones_come_free():
    shape = (6, 2, 9, 9)
    # colors as a 3x3 convolution's input has them: (channel, row mod 3, column mod 3)
    n, c, h, w = np.indices(shape).reshape(4, -1)
    colors = c * 9 + (h % 3) * 3 + (w % 3)
    sample = choose_sample(shape, INPUT, seed=0, index=0, groups_allowed=17, colors=colors)
    assert np.unique(colors[sample.index]).size == sample.groups == 17
    assert sample.index.size > 3 * sample.groups   # many elements per evaluated color
    assert MIN_SAMPLE < 17 < 18                    # the colors of this tensor
    for g in range(sample.groups):                 # the group numbers are the colors
        assert np.unique(colors[sample.index[sample.group == g]]).size == 1


@pytest.mark.parametrize("shape,role,first", [
    ((5,), TensorRole.for_array("bias", 1), {(0,), (1,), (2,), (3,), (4,)}),
    # no layout: one corner, a 5 x 5 patch at the centre, the other corners
    ((7, 9), TensorRole(), {(0, 0)} | {(h, w) for h in range(1, 6) for w in range(2, 7)}
     | {(0, 8), (6, 0), (6, 8)}),
    ((3, 8), TensorRole.for_array("input", 2), {(k % 3, k) for k in range(8)}),
])
def test_other_layouts_start_from_their_ends_or_their_channels(shape, role, first):
    cand = _coords(sample_candidates(shape, role, 0, 2), shape)
    assert {tuple(int(v) for v in c) for c in cand[:len(first)]} == first
    assert len({tuple(int(v) for v in c) for c in cand}) == cand.shape[0]
