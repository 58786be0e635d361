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
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._judge import excess, judge_directions
from gradcheck.checker._numeric import Target, directional_numeric

__all__ = ["bisect_direction", "LEAF"]

#: Elements left when the bisection stops (then differenced one by one).
LEAF = 8


def bisect_direction(target: Target, analytic, direction, tolerance, *,
                     leaf: int = LEAF) -> tuple[np.ndarray, int]:
    """``(elements, nfev)``: the flat indices (at most ``leaf``) the mismatch along
    ``direction`` (flat, shaped like the argument's size) was narrowed to, and the
    evaluations of ``f`` spent."""
    direction = np.asarray(direction, np.float64).reshape(-1)
    members = np.flatnonzero(direction)
    nfev = 0
    while members.size > leaf:
        half = members.size // 2
        parts = (members[:half], members[half:])
        dirs = np.zeros((2, direction.size))
        for row, part in enumerate(parts):
            dirs[row, part] = direction[part]
        num = directional_numeric(target, dirs)
        nfev += int(num.nfev)
        judged = judge_directions(analytic, dirs, num, tolerance)
        members = parts[int(np.argmax(excess(judged)))]
    return members, nfev
