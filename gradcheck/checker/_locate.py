r"""Locate the element behind a failing direction, by bisection.

A sampled check (:mod:`gradcheck.checker._sample`) differences some elements one by one
and projects the rest onto random directions. When a direction fails but no sampled
element does, the mismatch lies among the elements the direction covers; a report that
says only "direction 3 fails" names no element. Bisection finds one: the direction
:math:`v` restricted to each half of its support gives two projections,
:math:`\langle A - N, v|_{S_1}\rangle + \langle A - N, v|_{S_2}\rangle = \langle A - N,
v\rangle`, and the half whose difference is furthest beyond its own tolerance holds (the
larger part of) the mismatch. After :math:`\log_2(n / \text{LEAF})` rounds of two
directional derivatives each -- about 30 evaluations of ``f`` for ``n = 131072`` with the
complex step, about 140 with real differences -- ``LEAF`` elements remain, and they are
differenced one by one like the sample.

The halves are contiguous runs of the flat index (whole batch items first, then
channels, then rows), so a bug confined to one region is followed into it. When the
mismatch is spread so that neither half exceeds its tolerance, the larger excess is
followed anyway: the elements reached are the best guess, and the report says whether
they fail.

The halving itself (:func:`bisect`) asks only for the excess of each half's difference
over its tolerance: reverse mode projects on the gradient (:func:`bisect_direction`),
forward mode compares the two JVPs entry by entry over the output
(:mod:`gradcheck.checker._forward_sampled`).
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._judge import excess, judge_directions
from gradcheck.checker._numeric import Target, directional_numeric

__all__ = ["bisect", "bisect_direction", "LEAF"]

#: Elements left when the bisection stops (then differenced one by one).
LEAF = 8


def bisect(direction, excesses, *, leaf: int = LEAF) -> tuple[np.ndarray, int]:
    """``(elements, nfev)``: the flat indices (at most ``leaf``) the mismatch along
    ``direction`` (flat, one entry per element) was narrowed to, and the evaluations of
    ``f`` spent. ``excesses(dirs)`` returns, for the two rows of ``dirs`` (the direction
    restricted to each half), how far each one's difference lies beyond its tolerance,
    and the evaluations it spent: ``(excess per row, nfev)``."""
    direction = np.asarray(direction, np.float64).reshape(-1)
    members = np.flatnonzero(direction)
    nfev = 0
    while members.size > leaf:
        half = members.size // 2
        parts = (members[:half], members[half:])
        dirs = np.zeros((2, direction.size))
        for row, part in enumerate(parts):
            dirs[row, part] = direction[part]
        over, used = excesses(dirs)
        nfev += int(used)
        members = parts[int(np.argmax(over))]
    return members, nfev


def bisect_direction(target: Target, analytic, direction, tolerance, *,
                     leaf: int = LEAF) -> tuple[np.ndarray, int]:
    """:func:`bisect` in reverse mode: each half's projection
    :math:`\\langle \\nabla C, v|_S\\rangle` against the analytic gradient's."""
    def excesses(dirs):
        num = directional_numeric(target, dirs)
        return excess(judge_directions(analytic, dirs, num, tolerance)), num.nfev

    return bisect(direction, excesses, leaf=leaf)
