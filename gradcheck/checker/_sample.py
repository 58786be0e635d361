r"""Which elements a sampled check differences one by one, and how many.

Above the budget, ``mode="auto"`` checks a *sample* of single elements of an argument
(plus random directions over the rest, :mod:`gradcheck.checker._argument`). The sample
is deterministic for a seed and is drawn in tiers, each tier taken whole before the next
while the budget lasts, so that a small sample already sees every place a bug likes to
hide:

===========  =============================================================================
tier         elements (``N, C, *spatial`` input; ``C_out, C_in, *kernel`` weight)
===========  =============================================================================
cover        every batch item and every channel at least once (the pairs ``(k mod N,
             k mod C)``, ``k < max(N, C)``), each at a corner of the spatial grid;
             for a weight, every output channel and every input channel with all their
             taps (the pairs ``(k mod C_out, k mod C_in)``)
patch        a block of 5 x 5 positions (3 x 3 x 3 in 3-d) at the centre of the grid,
             for the first pair: where a shift by one or two can be seen
corners      the other corners, for each of those pairs (closed under flips and
             transposes, so a kernel not rotated can be seen)
borders      the first two and last two positions along each spatial axis (the other
             axes at a random position), for each of those pairs -- where padding and
             stride bugs show; for a weight, the other channel pairs with all their taps
random       elements drawn uniformly over the whole tensor
===========  =============================================================================

A bias gets every element of its channel axis first; an argument without a known layout
a corner, a patch at its centre and its other corners (every axis taken as spatial); then
random ones.

How many
--------
An element differenced on its own costs about
:data:`~gradcheck.checker._plan.PREDICTED_EVALS_PER_GROUP` evaluations of ``f``. The
sample of one argument is sized to take about ``SAMPLE_SHARE`` of the time budget
(a quarter: a layer whose input and weight are both over budget is checked within about
the budget, the rest of which goes to the directions, the second look and the
diagnosis), at least ``MIN_SAMPLE`` and at most ``MAX_SAMPLE`` elements; the first
quarter of it, once differenced, measures what an element really costs (a complex
evaluation may cost many real ones), and the rest is cut to what fits, which the report
says (:func:`gradcheck.checker._argument.check_sampled`). Where the
dependency structure is known (built-in layers: ``colors``, see
:mod:`gradcheck.ops._structure`) elements of one color share their evaluations: the
budget then counts colors, not elements, and a candidate whose color is already in the
sample comes for free -- every batch item at a position costs what one does.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from gradcheck._record import NamedTuple

__all__ = ["Sample", "choose_sample", "sample_candidates", "first_part", "groups_that_fit",
           "cut_note", "SAMPLE_SHARE", "MIN_SAMPLE", "MAX_SAMPLE"]

#: Share of ``time_budget`` the sample of one argument is sized to take.
SAMPLE_SHARE = 0.25
#: Fewest groups of elements (elements, for a black box) a sample holds, whatever f costs.
MIN_SAMPLE = 16
#: Most elements a sample holds (its bookkeeping and diagnosis stay small).
MAX_SAMPLE = 4096


class Sample(NamedTuple):
    """The sampled elements, in the order of the tiers (flat indices), with the group each
    one is differenced in (``0, 1, ...`` in order of first use: each element its own
    group for a black box, one group per color with a structure)."""

    index: np.ndarray
    group: np.ndarray
    seconds: float = math.inf   # what the sample may take (its share of the time budget)

    @property
    def groups(self) -> int:
        """How many groups of evaluations the whole sample costs."""
        return int(self.group.max()) + 1 if self.group.size else 0

    def first(self, groups: int) -> np.ndarray:
        """The flat indices of the elements in the first ``groups`` groups."""
        return self.index[self.group < groups]

    def between(self, start: int, stop: int) -> np.ndarray:
        """The flat indices of the elements in groups ``start`` to ``stop - 1``."""
        return self.index[(self.group >= start) & (self.group < stop)]


def _cover(sizes) -> list:
    """``max(sizes)`` tuples ``(k mod s for s in sizes)``: every value of every axis once."""
    if not sizes:
        return [()]
    return [tuple(k % s for s in sizes) for k in range(max(sizes))]


def _corners(sizes) -> list:
    return list(dict.fromkeys(itertools.product(*[(0, s - 1) for s in sizes])))


def _borders(sizes, rng) -> list:
    """The first two and last two positions along each axis, the others at random."""
    out = []
    for axis, s in enumerate(sizes):
        for at in dict.fromkeys(i for i in (0, 1, s - 2, s - 1) if 0 <= i < s):
            pos = [int(rng.integers(n)) for n in sizes]
            pos[axis] = at
            out.append(tuple(pos))
    return list(dict.fromkeys(out))


def _patch(sizes) -> list:
    """A block of positions at the centre: 5 per axis (3 per axis in 3-d and above)."""
    if not sizes:
        return []
    side = 5 if len(sizes) <= 2 else 3
    ranges = []
    for s in sizes:
        lo = max(0, min(s // 2 - side // 2, s - side))
        ranges.append(range(lo, min(s, lo + side)))
    return list(itertools.product(*ranges))


def _element(shape, cover_axes, group, pos_axes, pos) -> tuple:
    idx = [0] * len(shape)
    for a, v in zip(cover_axes, group):
        idx[a] = v
    for a, v in zip(pos_axes, pos):
        idx[a] = v
    return tuple(idx)


def _layout(shape, role):
    """(cover axes, position axes) of the tensor; the other axes are drawn at random."""
    cover = ([role.batch_axis] if role.batch_axis is not None else []) + list(role.channel_axes)
    cover = [a for a in cover if a < len(shape)]
    positions = [a for a in role.spatial_axes if a < len(shape)]
    if not cover and not positions:
        positions = list(range(len(shape)))          # no layout: corners of the whole array
    return cover, positions


def sample_candidates(shape, role, seed: int, index: int) -> np.ndarray:
    """The flat indices of the candidates, in the order of the tiers (see the module
    notes), without repeats; ``seed`` and the argument's ``index`` seed the random ones."""
    shape = tuple(int(n) for n in shape)
    size = math.prod(shape)
    rng = np.random.default_rng([int(seed), int(index), 0x5A3B])
    cover_axes, pos_axes = _layout(shape, role)
    other = [a for a in range(len(shape)) if a not in cover_axes and a not in pos_axes]
    groups = _cover([shape[a] for a in cover_axes])
    sizes = [shape[a] for a in pos_axes]
    tiers = []

    def add(group, pos):
        idx = list(_element(shape, cover_axes, group, pos_axes, pos))
        for a in other:
            idx[a] = int(rng.integers(shape[a]))
        tiers.append(idx)

    if role.kind == "weight" and pos_axes:
        taps = list(itertools.product(*[range(s) for s in sizes]))
        for g in groups:
            for t in taps:
                add(g, t)
        everything = list(itertools.product(*[range(shape[a]) for a in cover_axes]))
        if len(everything) * len(taps) <= 4 * MAX_SAMPLE:
            for i in rng.permutation(len(everything)):
                for t in taps:
                    add(everything[i], t)
    else:
        corners = _corners(sizes)
        for k, g in enumerate(groups):
            add(g, corners[k % len(corners)])
        for pos in _patch(sizes):
            add(groups[0], pos)
        for g in groups:
            for c in corners:
                add(g, c)
        for g in groups:
            for b in _borders(sizes, rng):
                add(g, b)
    flat = (np.ravel_multi_index(np.array(tiers, dtype=np.int64).T, shape) if tiers
            else np.zeros(0, np.int64))
    drawn = rng.integers(size, size=min(size, 2 * MAX_SAMPLE))
    allc = np.concatenate([flat.astype(np.int64), drawn.astype(np.int64)])
    _, first = np.unique(allc, return_index=True)
    return allc[np.sort(first)]


def choose_sample(shape, role, *, seed: int, index: int, groups_allowed: int,
                  colors=None) -> Sample:
    """The sample of an argument of ``shape``: candidates in tier order, as long as the
    groups they need stay within ``groups_allowed`` (each element its own group, or, with
    ``colors``, one group per color) and the elements within :data:`MAX_SAMPLE`."""
    size = math.prod(int(n) for n in shape)
    limit = max(int(groups_allowed), MIN_SAMPLE)
    candidates = sample_candidates(shape, role, seed, index)
    if size <= MAX_SAMPLE:      # every element is a candidate, the drawn ones first
        candidates = np.concatenate([candidates, np.setdiff1d(np.arange(size), candidates)])
    if colors is None:
        chosen = candidates[:min(limit, MAX_SAMPLE)]
        return Sample(chosen, np.arange(chosen.size))
    colors = np.asarray(colors).reshape(-1)
    order: dict = {}
    picked, group = [], []
    for j in candidates.tolist():
        c = int(colors[j])
        if c not in order:
            if len(order) >= limit:
                continue
            order[c] = len(order)
        picked.append(j)
        group.append(order[c])
        if len(picked) >= MAX_SAMPLE:
            break
    return Sample(np.array(picked, dtype=np.int64), np.array(group, dtype=np.int64))


# --------------------------------------------------------------------------- within time


def first_part(sample: Sample) -> int:
    """Groups differenced before the time they take is known: a quarter of the plan's,
    at least ``MIN_SAMPLE``."""
    return min(sample.groups, max(MIN_SAMPLE, math.ceil(sample.groups / 4)))


def groups_that_fit(sample: Sample, first: int, seconds: float) -> tuple[int, float]:
    """``(more, per_group)``: how many groups after the first ``first`` fit in the
    sample's share of the time budget, now that those took ``seconds`` (never more than
    planned: the prediction from one call of ``f`` misses what a method costs, e.g. a
    complex evaluation), and the time one group took."""
    per_group = seconds / first
    more = min(sample.groups - first,
               max(0, math.floor((sample.seconds - per_group * first) / per_group))
               if per_group > 0 else sample.groups - first)
    return more, per_group


def cut_note(kept: int, sample: Sample, per_group: float) -> str:
    """What the report says when the sample was cut to ``kept`` elements for time."""
    return (f"the sample was cut to {kept} of the {sample.index.size} planned elements: "
            f"differencing took {per_group:.2g} s per group, more than one call of f "
            f"predicted")
