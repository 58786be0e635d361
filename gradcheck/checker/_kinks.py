r"""Judging elements that sit at non-differentiable points.

The differentiator marks an element non-differentiable when its one-sided derivatives
along its own axis, :math:`\ell_j` and :math:`r_j`, stay apart however small the step.
A backward pass may return anything a one-sided derivative could be there (PyTorch's
ReLU returns 0 at zero, other code 1, a subgradient 1/2), so the rule is: the analytic
value must lie between :math:`\ell_j` and :math:`r_j` (widened by
:meth:`._tolerance.Tolerance.at_kink`), otherwise the element fails (the judge,
:func:`._judge.judge_elements`, applies that rule).

That rule is exact when the kink is the element's own -- two smooth pieces meeting along
one surface, as at a ReLU input or an isolated max-pool tie: every valid value is a
convex combination of the two limits. It is *not* exact when several pieces meet: a
max-pool entry tied in two overlapping windows, or an input reaching two ReLUs that sit
at zero together. The analytic gradient may then be the gradient of a piece that moving
:math:`x_j` alone never enters (it wins one window and loses the other), and lie outside
:math:`[\ell_j, r_j]` while being exactly right. Such an element *shares* its kink: some
output it can change is also changed by another element marked non-differentiable.
Shared kinks are reported (they count in ``n_nondifferentiable``) and named in the
report's note, but not judged, because no per-element bound is known for them. Whether
two elements share an output comes from the dependency pattern when one is known, and
otherwise from one evaluation per non-differentiable element (which outputs move when it
moves): settling kinks is the one stage after the judge that may call ``f`` again, which
is why it is a stage of its own (:func:`settle_kinks`).

A sample (sampled mode) is differenced and judged in parts, and only its elements are
known to sit at kinks or not. Once the parts are merged, its kinks are settled again
across the whole sample (:func:`settle_sample`), as full mode settles them across the
argument -- two elements sharing a kink may fall in different parts -- and an element
outside its limits whose outputs an element *outside* the sample also reaches is
*undecided*: that element may sit at a kink too (full mode would know), so the bound
is not known to hold, and it is reported, not judged. With every element sampled, the
sample's verdict on kinks is full mode's.

A shared kink is not left unjudged altogether (full mode, :func:`judge_tie_groups`): the
elements sharing kinks fall into groups (linked by the outputs they reach together), and
moving a whole group together by the same amount keeps its ties (a max-pool window's
tied maxima stay tied). Along that direction -- the group's sum direction -- ``f`` is
then differentiable, and any right backward's projection on it, the sum of its values
over the group, is the directional derivative (each window's incoming gradient goes to
one winner, or is split between them, but adds up to it). A backward that sends the
gradient to *every* tied maximum (``mask = win == win.max()``) gives twice it for a tie of
two, while each tied element alone lies within its one-sided limits. Each group is
differenced along its sum direction (one directional derivative per group); a group
along whose direction the differentiator sees a kink (ReLUs at zero reached together:
moving the group does not keep them at zero) is left as before, reported, not judged --
and so is a group about to fail whose outputs, moved together by the differentiator's
step along it, show a kink the differences did not (float16: two weights beside one
ReLU 5.5e-3 from zero, each flagged at a kink its steps could not get inside, read
-2.10 along their sum for the right -1.173; :meth:`._ties.TieFinder.crosses`). A
backward sending a max-pool window's gradient to every tied maximum still fails: the
tied window's output moves at one rate either way.

A sample (sampled mode) judges the groups it holds *whole* the same way
(:func:`whole_in_sample`): no element outside the sample reaches an output its members
reach, so none could be tied with them and missing from the group (whose direction would
then not keep the tie). That is known from a dependency pattern, or when every element is
sampled; with a pattern, the sample is first extended around its kinks
(:func:`reaching` names the elements to add). A tied element the differentiator did not
see as a kink (its jumps cancel in ``C``) joins the kinks before groups are formed
(:mod:`._ties`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.checker._judge import Judgement, unusable
from gradcheck.checker._numeric import evaluate, is_structure

__all__ = ["KinkContext", "settle_kinks", "settle_sample", "shared_kinks", "tie_groups",
           "judge_tie_groups", "whole_in_sample", "reaching"]


class KinkContext(NamedTuple):
    """What settling needs to tell which kinks are shared: the dependency pattern of the
    argument if known, else ``g`` (``f`` as a function of the argument) to probe, at
    ``arg`` with output ``y``, moving each element by its numerical ``steps``."""

    pattern: object
    g: Callable
    arg: np.ndarray
    y: np.ndarray
    steps: np.ndarray


def settle_kinks(judged: Judgement, context: KinkContext) -> Judgement:
    """``judged`` with the elements outside their limits at a *shared* kink no longer
    failed (unless they have no usable numerical value) and marked ``shared``."""
    candidates = np.flatnonzero(judged.outside)
    if candidates.size == 0:
        return judged
    shared = np.zeros(judged.outside.shape, bool)
    shared.reshape(-1)[candidates] = shared_kinks(candidates, judged.nondiff.reshape(-1),
                                                  context)
    failed = judged.failed & (~shared | unusable(judged.numeric, judged.error))
    return judged._replace(failed=failed, shared=shared)


def _rows_from_pattern(pattern, columns):
    if is_structure(pattern):   # rows each element owns within its color
        colors = np.asarray(pattern.colors)
        out = []
        for j in columns:
            members = np.flatnonzero(colors == colors[j])
            own = np.asarray(pattern.owners(members))
            out.append(np.flatnonzero(own == int(np.searchsorted(members, j))))
        return out
    import scipy.sparse as sp

    P = sp.csc_matrix(pattern)
    return [P.indices[P.indptr[j]:P.indptr[j + 1]] for j in columns]


def _rows_by_probing(context: KinkContext, columns):
    """Outputs that change when element ``j`` moves by its step, for each ``j``."""
    arg, steps = context.arg, np.asarray(context.steps, np.float64).reshape(-1)
    flat = arg.reshape(-1)
    base = np.asarray(context.y).reshape(-1)
    typical = float(np.sqrt(np.mean(np.abs(flat.astype(np.float64)) ** 2))) or 1.0
    eps = float(np.finfo(arg.dtype).eps)
    out = []
    for j in columns:
        h = max(float(steps[j]) if np.isfinite(steps[j]) else 0.0,
                eps ** (1 / 3) * max(abs(float(flat[j])), typical))
        moved = flat.copy()
        moved[j] = moved[j] + h
        value = np.asarray(evaluate(context.g, moved.reshape(arg.shape),
                                    "the outputs each kink element reaches were probed"))
        out.append(np.flatnonzero(value.reshape(-1) != base))
    return out


def shared_kinks(candidates, nondiff, context: KinkContext) -> np.ndarray:
    """For each flat index in ``candidates``: does it share an output with another kink?

    ``nondiff`` is the flat boolean mask of non-differentiable elements (``candidates``
    among them). With a dependency pattern the answer is read from it; otherwise ``g`` is
    evaluated once per non-differentiable element, moved by its step.
    """
    candidates = np.asarray(candidates, dtype=np.intp)
    if candidates.size == 0:
        return np.zeros(0, bool)
    kinks = np.flatnonzero(nondiff)
    if context.pattern is not None:
        rows = _rows_from_pattern(context.pattern, kinks)
    else:
        rows = _rows_by_probing(context, kinks)
    count = np.zeros(int(np.asarray(context.y).size), dtype=np.intp)
    for r in rows:
        count[r] += 1
    where = {int(k): r for k, r in zip(kinks, rows)}
    return np.array([bool(np.any(count[where[int(j)]] >= 2)) for j in candidates])


def _reached_by(pattern, elements, n_out):
    """Boolean mask over the outputs: reached by any of the flat ``elements`` (a
    boolean mask over the argument), per the dependency pattern (a structure or a
    sparse pattern); None without a pattern (not known)."""
    if pattern is None:
        return None
    if not elements.any():
        return np.zeros(n_out, bool)
    if is_structure(pattern):
        colors = np.asarray(pattern.colors).reshape(-1)
        order = np.argsort(colors, kind="stable")
        cuts = np.flatnonzero(np.diff(colors[order])) + 1
        reached = np.zeros(n_out, bool)
        for members in np.split(order, cuts):
            if not elements[members].any():
                continue
            members = np.sort(members)
            own = np.asarray(pattern.owners(members)).reshape(-1)
            hit = own >= 0
            reached[hit] |= elements[members[own[hit]]]
        return reached
    import scipy.sparse as sp

    P = sp.csr_matrix(pattern)
    return np.asarray(P @ elements.astype(np.float64)).reshape(-1) > 0


def reaching(pattern, outputs, size):
    """Boolean mask over the ``size`` elements: those reaching any output in the boolean
    mask ``outputs``, per the dependency pattern (a structure or a sparse pattern)."""
    out = np.zeros(size, bool)
    if not outputs.any():
        return out
    if is_structure(pattern):
        colors = np.asarray(pattern.colors).reshape(-1)
        order = np.argsort(colors, kind="stable")
        cuts = np.flatnonzero(np.diff(colors[order])) + 1
        for members in np.split(order, cuts):
            members = np.sort(members)
            own = np.asarray(pattern.owners(members)).reshape(-1)
            hit = (own >= 0) & outputs
            out[members[own[hit]]] = True
        return out
    import scipy.sparse as sp

    P = sp.csr_matrix(pattern)
    out[np.unique(P[np.flatnonzero(outputs)].indices)] = True
    return out


def settle_sample(judged: Judgement, index, context: KinkContext):
    """The kinks of a sample settled across the whole sample (see the module notes).

    ``judged`` is over the sampled flat ``index`` (sorted) of the argument, each part's
    kinks already settled within the part (:func:`settle_kinks`); ``context`` is the
    whole argument's (its ``steps`` may be NaN: a default step is used to probe).
    Returns ``(judged, undecided)``: the elements outside their limits at a kink shared
    with another sampled kink element are marked ``shared``, those whose outputs an
    unsampled element reaches are marked ``shared`` too and flagged in ``undecided``
    (a mask over the sample); neither is failed (unless it has no usable value).
    """
    index = np.asarray(index, np.int64)
    undecided = np.zeros(index.size, bool)
    open_ = judged.outside & ~judged.shared
    if not open_.any():
        return judged, undecided
    size = int(np.asarray(context.arg).size)
    n_out = int(np.asarray(context.y).size)
    candidates = index[np.flatnonzero(open_)]
    kinks = index[np.flatnonzero(judged.nondiff)]
    if context.pattern is not None:
        rows = _rows_from_pattern(context.pattern, kinks)
    else:
        rows = _rows_by_probing(context, kinks)
    count = np.zeros(n_out, dtype=np.intp)
    for r in rows:
        count[r] += 1
    where = {int(k): r for k, r in zip(kinks, rows)}
    shared = np.array([bool(np.any(count[where[int(j)]] >= 2)) for j in candidates])
    outside_sample = np.ones(size, bool)
    outside_sample[index] = False
    reached = _reached_by(context.pattern, outside_sample, n_out)
    if reached is None:           # no pattern: any unsampled element may reach any output
        unknown = np.full(candidates.size, bool(outside_sample.any()))
    else:
        unknown = np.array([bool(np.any(reached[where[int(j)]])) for j in candidates])
    undecided[np.flatnonzero(open_)] = ~shared & unknown
    now = judged.shared.copy()
    now[np.flatnonzero(open_)] = shared | unknown
    failed = (judged.failed | judged.outside) & (~now | unusable(judged.numeric, judged.error))
    return judged._replace(failed=failed, shared=now), undecided


def whole_in_sample(index, pattern, size, n_out):
    """For a sample (flat ``index`` of an argument of ``size`` elements, sorted): a test
    ``whole(group)`` of a tie group (positions in the sample) -- no element outside the
    sample reaches an output its members reach, so none could be tied with them and
    missing from it -- or None when no group can be known whole (without a dependency
    pattern, any unsampled element may reach any output; with every element sampled,
    every group is whole)."""
    index = np.asarray(index, np.int64)
    outside_sample = np.ones(size, bool)
    outside_sample[index] = False
    if not outside_sample.any():
        return lambda group: True
    reached = _reached_by(pattern, outside_sample, n_out)
    if reached is None:
        return None

    def whole(group):
        rows = _rows_from_pattern(pattern, index[np.asarray(group)])
        return not any(bool(reached[np.asarray(r, np.intp)].any()) for r in rows)

    return whole


def tie_groups(nondiff, context: KinkContext) -> list:
    """The groups (flat index arrays, two elements or more) of the non-differentiable
    elements in the flat mask ``nondiff`` linked by outputs they both reach."""
    kinks = np.flatnonzero(nondiff)
    if kinks.size < 2:
        return []
    rows = _rows_from_pattern(context.pattern, kinks) if context.pattern is not None \
        else _rows_by_probing(context, kinks)
    parent = list(range(kinks.size))

    def root(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first = {}
    for k, r in enumerate(rows):
        for o in np.asarray(r).reshape(-1):
            o = int(o)
            if o in first:
                parent[root(k)] = root(first[o])
            else:
                first[o] = k
    groups = {}
    for k in range(kinks.size):
        groups.setdefault(root(k), []).append(int(kinks[k]))
    return [np.array(g, np.intp) for g in groups.values() if len(g) > 1]


def judge_tie_groups(judged: Judgement, context: KinkContext, differentiate, tolerance,
                     whole=None, place=None, keeps_tie=None):
    """``(judged, nfev, note)``: each group of shared kinks (:func:`tie_groups`) judged
    along its sum direction (see the module notes). ``differentiate(directions)`` returns
    the numerical directional derivatives of ``C`` (a ``NumericalDerivative``, one entry
    per row); a group whose entry is non-differentiable or unusable is not judged. Its
    members fail when the sum of their analytic values departs from that derivative by
    more than :meth:`.Tolerance.along_directions`. ``whole(group)``, if given, says
    whether a group is known whole (a sample's: no element left out of it could be tied
    with its members); only those are judged. ``place(j)`` names flat element ``j`` in
    the note (default: its index in ``judged``'s shape). ``keeps_tie(group, step)``, if
    given, is asked of a group about to fail (``step``: the differentiator's along its
    direction): where moving it together puts an output at a kink (float16 differences
    along the direction did not see it), the group is not judged -- its difference
    along the direction is no bound on the sum."""
    groups = tie_groups(judged.nondiff.reshape(-1), context)
    if whole is not None:
        groups = [g for g in groups if whole(g)]
    if not groups:
        return judged, 0, ""
    size = judged.analytic.size
    v = np.zeros((len(groups), size))
    for k, g in enumerate(groups):
        v[k, g] = 1.0
    num = differentiate(v)
    a = judged.analytic.reshape(-1)
    proj_a = v @ a
    proj_n = np.asarray(num.grad, np.float64).reshape(-1)
    err = np.asarray(num.error, np.float64).reshape(-1)
    tol = tolerance.along_directions(proj_a, proj_n, err,
                                     tolerance.direction_terms(v, a))
    judged_ok = ~np.asarray(num.nondifferentiable, bool).reshape(-1) & ~unusable(proj_n, err)
    with np.errstate(invalid="ignore"):
        bad = judged_ok & (np.abs(proj_a - proj_n) > tol)
    if keeps_tie is not None:
        step = np.asarray(getattr(num, "step", np.nan), np.float64).reshape(-1)
        step = step if step.size == len(groups) else np.full(len(groups), np.nan)
        for k in np.flatnonzero(bad):
            if not keeps_tie(groups[k], float(step[k])):
                bad[k] = judged_ok[k] = False
    grouped = np.zeros(size, bool)
    for k in np.flatnonzero(judged_ok):
        grouped[groups[k]] = True
    judged = judged._replace(grouped=grouped.reshape(judged.analytic.shape))
    if not bad.any():
        return judged, int(num.nfev), ""
    failed = judged.failed.reshape(-1).copy()
    diff = judged.diff.reshape(-1).copy()
    limit = judged.tolerance.reshape(-1).copy()
    for k in np.flatnonzero(bad):
        g = groups[k]
        failed[g] = True
        diff[g], limit[g] = abs(proj_a[k] - proj_n[k]), tol[k]
    k = int(np.flatnonzero(bad)[np.argmax(np.abs(proj_a - proj_n)[bad] / tol[bad])])
    shape = judged.analytic.shape
    place = place or (lambda j: tuple(int(i) for i in np.unravel_index(j, shape)))
    where = [place(j) for j in groups[k]]
    note = (f"{int(bad.sum())} group(s) of elements sharing a kink (a tie) fail along their "
            f"sum direction, which keeps the tie: e.g. the analytic values at "
            f"{', '.join(map(str, where[:6]))}{' ...' if len(where) > 6 else ''} add up to "
            f"{proj_a[k]:.6g} where moving them together changes C by {proj_n[k]:.6g} "
            f"(allowed {tol[k]:.3g}) -- a backward that sends the gradient to every tied "
            f"element instead of one")
    ties = tuple((groups[k], float(proj_a[k]), float(proj_n[k]), float(tol[k]))
                 for k in np.flatnonzero(bad))
    return judged._replace(failed=failed.reshape(shape),
                           diff=diff.reshape(shape), tolerance=limit.reshape(shape),
                           ties=ties), \
        int(num.nfev), note
