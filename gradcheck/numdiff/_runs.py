r"""Owners whose rows come in runs: each member's sums as running sums, member by member.

The owners route (:class:`~._targets.VjpTarget`) sums, per member of a group, values of
the rows it owns, one addition after the other in row order from 0 (as ``np.bincount``
with weights does). Where a table's rows come in runs of one length, each run owned by
one member (or none) and every member owning as many runs -- a filter of a convolution
followed by elementwise layers owns its output channel, one run per batch item -- the
runs are put member by member (one copy of whole runs) and each member's rows summed by
a running sum along them (``np.cumsum``, which adds one value after the other): the same
additions in the same order, the same sums to the bit, at a fraction of a bincount's
cost (whose additions to one bin wait on each other along a run).
"""

from __future__ import annotations

import numpy as np

__all__: list[str] = []

#: Shortest run for which the route is taken (shorter runs: the bincount).
MIN_RUN = 16


class Runs:
    """A table's runs: ``index`` (the runs member by member, in row order within each),
    ``length`` (rows per run) and ``per`` (runs per member)."""

    __slots__ = ("index", "length", "per", "members")

    def __init__(self, index, length, per, members):
        self.index, self.length, self.per, self.members = index, length, per, members

    def arrange(self, a):
        """``a`` ``(..., rows)`` as ``(..., members, per * length)``: each member's rows in
        row order."""
        lead = a.shape[:-1]
        runs = a.reshape(lead + (-1, self.length))[..., self.index, :]
        return runs.reshape(lead + (self.members, self.per * self.length))


def runs_of(bins, m, changes):
    """The :class:`Runs` of a table (``bins``: each row's owner position, ``m`` for none;
    ``changes``: how many times it changes from one row to the next), or None where its
    rows do not come in runs of one length with as many per member.

    Examples
    --------
    >>> r = runs_of(np.repeat([1, 0, 2, 1, 0, 2], 16), 2, 5)
    >>> r.index.tolist(), r.length, r.per
    ([1, 4, 0, 3], 16, 2)
    >>> runs_of(np.repeat([1, 0, 1], 16), 2, 2) is None      # member 0 owns one run, 1 two
    True
    """
    n_runs = changes + 1
    if bins.size % n_runs or bins.size // n_runs < MIN_RUN:
        return None
    length = bins.size // n_runs
    table = bins.reshape(n_runs, length)
    heads = table[:, 0]
    if not (table == heads[:, None]).all():
        return None
    owned = np.flatnonzero(heads < m)
    counts = np.bincount(heads[owned], minlength=m)
    if m == 0 or counts.min() != counts.max() or counts[0] == 0:
        return None
    index = owned[np.argsort(heads[owned], kind="stable")]
    return Runs(index, length, int(counts[0]), m)


def running_sums(a):
    """Sums over the last axis, one addition after the other from +0 (the running sum's
    last value; ``+ 0.0`` turns a sum of negative zeros into +0, as a sum from +0 is)."""
    if a.shape[-1] == 0:
        return np.zeros(a.shape[:-1])
    return np.cumsum(a, axis=-1)[..., -1] + 0.0
