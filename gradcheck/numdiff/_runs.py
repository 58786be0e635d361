"""How the owners route sums each member's rows: by runs, or sorted by member.

The owners route (:class:`~._targets.VjpTarget`) sums, per member of a group, values of
the rows it owns (each row owned by one member or none). A table says who owns which row;
its *layout* says how the sums are taken:

- :class:`Runs`, where a table's rows come in runs of one length, each run owned by one
  member (or none) and every member owning as many runs -- a filter of a convolution
  followed by elementwise layers owns its output channel, one run per batch item. Each
  run is summed where it lies (no copy), and each member's run sums added up.
- :class:`Sorted` otherwise: the owned rows listed member by member (in row order within
  each), the values gathered in that order and each member's segment summed.

Sums along a run or segment are NumPy's (pairwise, as ``np.add.reduce`` adds): they
depend only on the values summed and their order, not on how many groups are summed at
once, but the two layouts group the additions differently, so the same rows summed by
the two can differ in the last bits -- by no more than the summation's own rounding,
:math:`\\gamma_{n-1} \\sum_i |t_i|` for ``n`` terms ``t_i`` (``tests/test_numdiff_targets``
compares both with correctly rounded sums, ``math.fsum``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

__all__: list[str] = []

#: Shortest run for which the route is taken (shorter runs: sorted segments).
MIN_RUN = 16


class Runs:
    """A table's runs: ``index`` (the owned runs, member by member, in row order within
    each), ``length`` (rows per run), ``per`` (runs per member), ``members`` and
    ``n_runs`` (runs in the table, owned or not)."""

    __slots__ = ("index", "length", "per", "members", "n_runs")

    def __init__(self, index, length, per, members, n_runs):
        self.index, self.length, self.per = index, length, per
        self.members, self.n_runs = members, n_runs

    def sums(self, a, *, square=False):
        """Each member's sum over its rows of ``a`` ``(..., rows)``, or with ``square`` of
        ``a**2`` (nonnegative terms, summed without forming the squares): ``(..., members)``.
        Each run is summed alone, then each member's runs in row order."""
        lead = a.shape[:-1]
        runs = np.ascontiguousarray(a).reshape(lead + (self.n_runs, self.length))
        every = self.index.size == self.n_runs
        if not every:       # some runs owned by none: the owned ones only
            runs = runs[..., self.index, :]
        s = np.einsum("...i,...i->...", runs, runs) if square else np.add.reduce(runs, axis=-1)
        if every:           # summed where they lie: put member by member
            s = s[..., self.index]
        return np.add.reduce(s.reshape(lead + (self.members, self.per)), axis=-1)


class Sorted:
    """A table's owned rows member by member: ``rows`` (row order within each member),
    ``starts`` (where each member that owns any row begins in ``rows``) and ``present``
    (those members' positions)."""

    __slots__ = ("rows", "starts", "present")

    def __init__(self, bins, m):
        owned = np.flatnonzero(bins < m)
        owner = bins[owned]
        # a stable sort; of 16-bit keys a radix sort (one pass), where they fit
        keys = owner.astype(np.int16) if m < 2**15 else owner
        self.rows = owned[np.argsort(keys, kind="stable")]
        counts = np.bincount(owner, minlength=m)
        self.present = np.flatnonzero(counts)
        self.starts = (np.cumsum(counts) - counts)[self.present]


#: Layouts of tables seen (see :func:`known_layout`): by (members, rows, a sample of the
#: table's values), the table's values and its layout, the most recently used last; at
#: most KEEP_BYTES of tables.
_KNOWN: OrderedDict = OrderedDict()
KEEP_BYTES = 8 * 2**20
_LOCK = threading.Lock()     # checks may run in threads


_SAMPLED: dict = {}


def _key(table, m):
    at = _SAMPLED.get(table.size)
    if at is None:      # 64 positions spread without a stride (a table's rows repeat
        # with the layers' shapes, which a stride can follow)
        at = _SAMPLED[table.size] = (
            np.arange(64, dtype=np.uint64) * np.uint64(2654435761)
            % np.uint64(max(table.size, 1))).astype(np.intp)
    sample = table[at].tobytes() if table.size else b""
    return (m, table.size, table.dtype.str, sample)


def known_layout(table, m):
    """The layout found before for a table of the same values (compared in full, no hash
    trusted) and ``m`` members, or None: a structure hands out the same tables in every
    check, as new arrays."""
    key = _key(table, m)
    with _LOCK:
        entry = _KNOWN.get(key)
        if entry is not None:
            _KNOWN.move_to_end(key)
    if entry is None or not np.array_equal(entry[0], table):
        return None
    return entry[1]


def remember_layout(table, m, lay):
    """Keep ``lay`` as the layout of a (checked) table of these values for ``m`` members
    (a copy of them), forgetting the least recently used beyond KEEP_BYTES."""
    if table.nbytes > KEEP_BYTES // 4:
        return
    entry = (np.array(table), lay)
    with _LOCK:
        _KNOWN[_key(table, m)] = entry
        while sum(t.nbytes for t, _ in _KNOWN.values()) > KEEP_BYTES:
            _KNOWN.popitem(last=False)


def layout_of(bins, m, changes):
    """The layout of a table (``bins``: each row's owner position, ``m`` for none;
    ``changes``: how many times it changes from one row to the next): its :class:`Runs`
    where they qualify (:func:`runs_of`), else :class:`Sorted`."""
    runs = runs_of(bins, m, changes)
    return runs if runs is not None else Sorted(bins, m)


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
    return Runs(index, length, int(counts[0]), m, n_runs)
