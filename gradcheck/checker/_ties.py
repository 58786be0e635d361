r"""Exact ties the differentiator could not resolve as kinks.

The differentiator marks element :math:`j` non-differentiable when the one-sided
derivatives of the scalar :math:`C = \langle R, f\rangle` along :math:`x_j` stay apart.
An element tied in *several* outputs (a max-pool entry tied for the maximum of two
overlapping windows) has one-sided derivatives that differ by the sum of those outputs'
jumps weighted by the cotangent, and that sum can nearly cancel: one such float32 entry
had one-sided derivatives 1.722039 and 1.722524 (0.03% apart, below float32's
differencing noise), so it was judged as a smooth element, and its right analytic value
(1.7732: the gradient of a piece that moving :math:`x_j` alone never enters) failed,
while its tie partners' group (:func:`._kinks.judge_tie_groups`), summed without it,
failed along a direction that did not keep the tie.

Cancellation is in :math:`C`, not in the outputs: output by output, the tie is plain
(moving a tied maximum up moves its window's output, moving it down does not). So an
element joins the kinks when

1. its value is *exactly* equal to that of a kink element it shares an output with (the
   ties of a max, a max-pool, a sort are between equal values), and
2. output by output it is at a kink there: some output the two share changes at a rate
   on one side of :math:`x_j` that differs from the other side's by more than half the
   larger, and by more than rounding (``ONE_SIDED_ULPS`` units of the output's last
   place; in float16 and bfloat16, whose move of :math:`\sqrt{\epsilon}` is only 32 and
   11 such units, a quarter of the move: float16 max-pools of small integers failed a
   right backward on 6 of seeds 0-11 and 22 of 100-159, none now, while a backward
   sending the gradient to every tied maximum still fails on all 72) -- two
   evaluations of ``f``, with :math:`x_j` moved up and down by
   :math:`\sqrt{\epsilon}` times its magnitude (at least the argument's root mean
   square); with a dependency pattern, elements reaching disjoint outputs are moved
   together, two evaluations per batch.

Ties are looked for only when an element or a tie group would otherwise fail
(:func:`settle_with_ties`, :func:`judge_groups_with_ties`): a joined element only moves a
failure from the element to its group's sum, so a passing check spends nothing on them.

Joined elements grow the set step by step (a partner of a joined element may join too).
An element equal in value but not at a kink of a shared output (a non-maximum of the
window) does not join, so a backward that sends a window's gradient to it still fails
there. A joined element is then a kink element like the others: outside its limits (its
unresolved one-sided derivatives, equal to its numerical value within its tolerance) it
is not failed when its kink is shared (:func:`._kinks.settle_kinks`), and it belongs to
its tie group, judged along the group's sum (:func:`._kinks.judge_tie_groups`).
"""

from __future__ import annotations

import numpy as np

from gradcheck._precision import machine_eps
from gradcheck.checker._judge import Judgement
from gradcheck.checker._kinks import _rows_from_pattern, judge_tie_groups, settle_kinks
from gradcheck.checker._numeric import evaluate

__all__ = ["TieFinder", "ONE_SIDED_ULPS", "settle_with_ties", "judge_groups_with_ties",
           "joined_note"]

#: An output's change on one side of ``x_j`` must exceed this many units in the last place
#: of the output (its float resolution) before a one-sided change counts as a kink.
ONE_SIDED_ULPS = 64


class TieFinder:
    """Finds, for one argument (a :class:`._kinks.KinkContext`), the elements tied
    exactly with its kink elements (see the module notes); probes of ``f`` are cached
    across calls, and counted in ``nfev``."""

    def __init__(self, context):
        self.context = context
        self.flat = np.asarray(context.arg).reshape(-1)
        self.base = np.asarray(context.y).reshape(-1)
        self.nfev = 0
        self._rows = {}
        self._onesided = {}
        magnitude = np.abs(self.flat).astype(np.float64)
        self._scale = float(np.sqrt(np.mean(magnitude ** 2))) if magnitude.size else 1.0
        self._eps = machine_eps(self.flat.dtype)    # bfloat16's too (float64's if not float)
        # a move of sqrt(eps) of an output's size is 1/sqrt(eps) ulps of it: 32 in
        # float16, short of ONE_SIDED_ULPS; there a quarter of that move counts
        self._ulps = min(ONE_SIDED_ULPS, 0.25 / np.sqrt(self._eps))

    def _step(self, j):
        return np.sqrt(self._eps) * max(abs(float(self.flat[j].real)), self._scale or 1.0)

    def _moved(self, members, sign):
        """``f`` with the flat elements ``members`` each moved by ``sign`` times its
        step: ``(outputs, how far each member moved)``."""
        moved = self.flat.copy()
        for j in members:
            moved[j] = moved[j] + sign * self._step(j)
        by = np.abs(moved[members].real.astype(np.float64) -
                    self.flat[members].real.astype(np.float64))
        value = np.asarray(evaluate(self.context.g, moved.reshape(self.context.arg.shape),
                                    "ties were probed output by output"))
        self.nfev += 1
        value = value.reshape(-1)
        return value.astype(np.complex128 if np.iscomplexobj(value) else np.float64), by

    def _onesided_of(self, rows, up, hu, down, hd):
        """The outputs among ``rows`` whose rates of change on the two sides differ (by
        more than half the larger, and by more than rounding)."""
        y = self.base[rows].astype(up.dtype)
        u, d = up[rows], down[rows]
        du, dd = u - y, y - d
        if not (hu > 0 and hd > 0):
            return np.zeros(0, np.intp)
        with np.errstate(invalid="ignore", over="ignore"):
            su, sd = du / hu, dd / hd
            ulp = self._eps * np.maximum.reduce([np.abs(y), np.abs(u), np.abs(d)])
            big = np.maximum(np.abs(du), np.abs(dd)) > self._ulps * ulp
            apart = np.abs(su - sd) > 0.5 * np.maximum(np.abs(su), np.abs(sd))
        return np.asarray(rows)[big & apart & np.isfinite(su) & np.isfinite(sd)]

    def _probe(self, j):
        """Move ``x_j`` alone up and down: the outputs it reaches, those at a kink."""
        if j in self._onesided:
            return
        (up, hu), (down, hd) = self._moved([j], 1.0), self._moved([j], -1.0)
        if j not in self._rows:
            y = self.base.astype(up.dtype)
            self._rows[j] = np.flatnonzero((up != y) | (down != y))
        self._onesided[j] = self._onesided_of(self._rows[j], up, float(hu[0]), down,
                                              float(hd[0]))

    def _probe_together(self, elements):
        """With a dependency pattern: the ``elements`` probed in batches whose members
        reach disjoint outputs (an output's change then has one owner), two evaluations
        of ``f`` per batch instead of two per element."""
        batches = []          # (members, outputs they reach)
        for j in elements:
            if j in self._onesided:
                continue
            rows = self._rows[j]
            for members, taken in batches:
                if not taken[rows].any():
                    members.append(j)
                    taken[rows] = True
                    break
            else:
                taken = np.zeros(self.base.size, bool)
                taken[rows] = True
                batches.append(([j], taken))
        for members, _ in batches:
            (up, hu), (down, hd) = self._moved(members, 1.0), self._moved(members, -1.0)
            for k, j in enumerate(members):
                self._onesided[j] = self._onesided_of(self._rows[j], up, float(hu[k]),
                                                      down, float(hd[k]))

    def _reach(self, elements):
        """Know the outputs each of the flat ``elements`` reaches: from the dependency
        pattern (one pass for all), else by probing each (up and down)."""
        todo = [j for j in elements if j not in self._rows]
        if not todo:
            return
        if self.context.pattern is not None:
            for j, r in zip(todo, _rows_from_pattern(self.context.pattern, todo)):
                self._rows[j] = np.asarray(r, np.intp)
        else:
            for j in todo:
                self._probe(j)

    def crosses(self, group, step=None) -> bool:
        """Whether moving the flat elements of ``group`` together (each by ``step``, the
        differentiator's step along the group's direction; default the probes' own, up
        and down) puts an output they reach at a kink: the group's sum direction does
        not keep what they share (ReLUs near zero reached together, not a tie), and the
        difference along it is no bound on their sum. Two evaluations of ``f``."""
        members = np.asarray(group, np.intp)
        h = np.sqrt(self._eps) * max(float(np.max(np.abs(self.flat[members].real))),
                                     self._scale or 1.0)
        if step is not None and np.isfinite(step) and step > 0:
            h = float(step)
        sides = []
        for sign in (1.0, -1.0):
            moved = self.flat.copy()
            moved[members] = moved[members] + sign * h
            by = np.abs(moved[members].real.astype(np.float64)
                        - self.flat[members].real.astype(np.float64))
            value = np.asarray(evaluate(self.context.g, moved.reshape(self.context.arg.shape),
                                        "a tie group was moved together"))
            self.nfev += 1
            value = value.reshape(-1)
            sides.append((value.astype(np.complex128 if np.iscomplexobj(value) else np.float64),
                          float(np.mean(by))))
        (up, hu), (down, hd) = sides
        y = self.base.astype(up.dtype)
        rows = np.flatnonzero((up != y) | (down != y))
        return bool(self._onesided_of(rows, up, hu, down, hd).size)

    # -- the closure ---------------------------------------------------------------------
    def joined(self, nondiff) -> np.ndarray:
        """Flat indices of the elements not in the flat mask ``nondiff`` that join it:
        ring by ring, the elements of a member's value that reach an output a member of
        that value reaches, and are at a kink of such an output."""
        nondiff = np.asarray(nondiff, bool).reshape(-1)
        kinks = np.flatnonzero(nondiff)
        if kinks.size == 0:
            return np.zeros(0, np.intp)
        values = self.flat
        open_ = set(np.flatnonzero(~nondiff & np.isin(values, values[kinks])).tolist())
        members = set(kinks.tolist())
        self._reach(sorted(members | open_))
        found = []
        while open_:
            new = []
            for value in np.unique(values[sorted(open_)]):
                hit = np.zeros(self.base.size, bool)
                for m in members:
                    if values[m] == value:
                        hit[self._rows[m]] = True
                ring = [c for c in sorted(open_)
                        if values[c] == value and hit[self._rows[c]].any()]
                if self.context.pattern is not None:
                    self._probe_together(ring)
                for c in ring:
                    self._probe(c)                  # known already unless alone
                    if hit[self._onesided[c]].any():
                        new.append(c)
            if not new:
                break
            members.update(new)
            open_.difference_update(new)
            found.extend(new)
        return np.array(sorted(found), np.intp)

    def join(self, judged: Judgement) -> Judgement:
        """``judged`` with the joined elements marked non-differentiable; those failing
        as smooth elements are marked ``outside`` (outside their unresolved one-sided
        limits), for :func:`._kinks.settle_kinks` to settle."""
        if judged.left is None or not judged.nondiff.any():
            return judged
        shape = judged.analytic.shape
        new = self.joined(judged.nondiff.reshape(-1))
        if new.size == 0:
            return judged
        at = np.zeros(judged.analytic.size, bool)
        at[new] = True
        at = at.reshape(shape)
        numeric = judged.numeric
        return judged._replace(nondiff=judged.nondiff | at,
                               outside=judged.outside | (at & judged.failed),
                               left=np.where(at, numeric, judged.left),
                               right=np.where(at, numeric, judged.right))


def settle_with_ties(judged: Judgement, context, finder: TieFinder) -> Judgement:
    """Kinks settled (:func:`._kinks.settle_kinks`); if an element still fails, the exact
    ties ``finder`` finds join the kinks and they are settled again. Ties are looked for
    only then: they can only excuse a failure, so a passing judgement spends nothing."""
    settled = settle_kinks(judged, context)
    if not settled.failed.any():
        return settled
    joined = finder.join(settled)
    return settled if joined is settled else settle_kinks(joined, context)


def judge_groups_with_ties(judged: Judgement, context, finder: TieFinder, differentiate,
                           tolerance, whole=None, place=None):
    """:func:`._kinks.judge_tie_groups`; if a group fails, again with the exact ties
    ``finder`` finds joined to the kinks (a group missing a tied member is moved along a
    direction that does not keep the tie). The groups are then judged again, and fail
    only where moving them together keeps what their members share
    (:meth:`TieFinder.crosses`). ``(judged, nfev, note)``."""
    def keeps_tie(group, step=None):
        return not finder.crosses(group, step)

    out, nfev, note = judge_tie_groups(judged, context, differentiate, tolerance, whole,
                                       place)
    if not out.ties:
        return out, nfev, note
    joined = finder.join(judged)
    again = judged if joined is judged else settle_kinks(joined, context)
    out, more, note = judge_tie_groups(again, context, differentiate, tolerance, whole,
                                       place, keeps_tie)
    return out, nfev + more, note


def joined_note(judged: Judgement, num) -> str:
    """The report's note on the elements that joined the kinks (none: empty)."""
    flagged = np.asarray(num.nondifferentiable, bool).reshape(judged.nondiff.shape)
    n = int((judged.nondiff & ~flagged).sum())
    return "" if not n else (
        f"{n} element(s) tied exactly with kink elements (equal values, at a kink of an "
        f"output they share) whose own one-sided derivatives the differentiator could not "
        f"tell apart: counted as kinks, judged with their ties")
