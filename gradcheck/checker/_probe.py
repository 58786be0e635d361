r"""Finding a black box's dependency structure by probing it, and holding it to it.

A built-in layer knows which outputs each element reaches (:mod:`gradcheck.ops._structure`);
a user's layer says nothing, so each of its elements would be differenced on its own --
131 072 groups for an input of ``[8, 16, 32, 32]``, hours of evaluations. Most such layers
are convolutions in disguise: their structure can be *found*, by moving elements and
watching which outputs move, and *verified* before it is trusted.

Which outputs move
------------------
An output *moved* when it differs, bit for bit, from ``f`` at the point. A probe moves
elements by :math:`\pm\delta_j`, :math:`\delta_j = 2^{-6}\max(|a_j|, 1)` -- a few times
the largest offset the differentiator will use (nodes up to :math:`3h`, :math:`h \approx
2^{-9}` of the same scale), both signs, so an output that a difference could wake (a
ReLU just below zero) is woken by the probe too.

The shapes tried, in order
--------------------------
``window``
    a batch-first argument ``(N, C, *spatial)`` and an output ``(N, O, *spatial')``:
    output ``(n, o, q)`` reads the window ``[S q - P, S q - P + E)`` per spatial dim of
    item ``n`` (of every channel, or of channel ``o`` only). Single elements are probed
    -- the centre, the corners and the middle of every face, in the first and last batch
    items and channels, and a few seeded random ones -- and each one's moved outputs
    must lie in its own item (and channel, unless channels mix); per spatial dim the
    span of the moved positions of input ``i`` must lie within ``[ceil((i + P - E +
    1)/S), floor((i + P)/S)]``, and the smallest ``E`` (then ``S``) for which one
    ``P`` holds for *every* probe is taken: the same window everywhere, up to the
    border -- the structure is consistent with translation, or it is not used.
``filter``
    a parameter whose first axis has the output's channel count: slice ``[o]`` reaches
    output channel ``o`` only. Probed with single elements of the first, last and random
    filters.
``per-sample``
    a batch-first argument of an output of the same batch size: item ``n`` reaches
    item ``n``'s outputs only (batch norm fails this, as it should).

Verified before it is trusted
-----------------------------
A fitted structure is then put to the test it must pass for the differences to be
attributed right: several colors (groups of elements the differentiator will move
together: the first, the last, and seeded random ones, up to :data:`VERIFY_COLORS`) are
each moved at once, every member by :math:`\pm\delta_j` with seeded random signs, and
every output that moved must belong to one of the members (``owners`` not -1): the union
of the members' footprints explains what the combined perturbation moved. For ``filter``
and ``per-sample`` a random half of the filters (items) is moved at once, and only their
channels (items) may move. A structure that fails, or an argument none fits, is checked
as before -- every element on its own, so over the time budget it is sampled -- and the
report says why.

While the differentiator runs, the structure stays on probation: every evaluation is
held to it (:func:`guard`), and a point whose moved outputs are not explained by the
elements it moved stops the check of that argument, which is then checked as without a
structure (:class:`StructureBroken`, caught in :mod:`._check`).

The guard sees outputs moved where no member reaches; it cannot see an output credited to
the wrong member (a window fitted too small credits a neighbour). So once every element
has been differenced, and before anything is judged, the gradient found is held to
``f`` itself (:func:`confirm_structure`): along a few seeded random directions its
projection must match the directional derivative differenced directly, within the
tolerance fast mode allows plus the elements' own error bars. A misattributed difference
shows there at its full size, while both sides agree to about 1e-11 of the projection
in float64; a failure drops the structure as above. Only a full check is differenced
with a probed structure: an argument still over the time budget with it is sampled, or
checked in fast mode, without it, as it was before probing existed.

Probing is tried where a full check would gain by it: a reverse-mode check of an
argument of at least :data:`PROBE_MIN_ELEMENTS` elements, within ``budget``, for which
no structure is known and whose element-by-element full check is predicted to take at
least ``PROBE_WORTH_EVALS`` (:mod:`._plan`) evaluations: a count, not a time, so that a
check takes the same route however loaded the machine is.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.checker._timing import StructureBroken, timed
from gradcheck.ops._structure import (
    Structure,
    filter_structure,
    per_sample_structure,
    window_structure,
)

__all__ = ["probe_structure", "Probed", "StructureBroken", "guard", "cheapest_method",
           "confirm_structure", "PROBE_MIN_ELEMENTS"]

#: Relative size of a probe's move (module notes).
PROBE_STEP = 2.0**-6
#: Seeded random single-element probes besides the centre, corners and faces.
RANDOM_PROBES = 6
#: Colors moved at once to verify a window structure.
VERIFY_COLORS = 6
#: Arguments smaller than this are differenced element by element as they are.
PROBE_MIN_ELEMENTS = 512
#: The largest stride tried when fitting a window.
MAX_STRIDE = 8


class Probed(NamedTuple):
    """What probing found: the structure (or None), what it is, how many evaluations it
    took, and a sentence for the report."""

    structure: Structure | None
    kind: str            # "window", "filter", "per-sample", or "" when none was shown
    nfev: int
    note: str


class _Prober:
    """``g`` around the point ``a``: which outputs move when some elements move."""

    def __init__(self, g, a, y0, seed):
        self.g, self.a, self.y0 = g, np.asarray(a), np.asarray(y0)
        self.flat = self.a.reshape(-1)
        self.delta = PROBE_STEP * np.maximum(np.abs(self.flat.astype(np.float64)), 1.0)
        self.rng = np.random.default_rng([seed, 0x9B0BE])
        self.nfev = 0

    def moved(self, elements, signs=None) -> np.ndarray:
        """Flat indices of the outputs that moved (either sign, or the given signs)."""
        elements = np.asarray(elements, dtype=np.int64)
        found = np.zeros(self.y0.size, dtype=bool)
        for sign in ((1.0, -1.0) if signs is None else (None,)):
            x = self.flat.astype(self.a.dtype, copy=True)
            step = self.delta[elements] * (sign if sign is not None else signs)
            x[elements] = (x[elements].astype(np.float64) + step).astype(self.a.dtype)
            y = np.asarray(self.g(x.reshape(self.a.shape)))
            self.nfev += 1
            if y.shape != self.y0.shape:
                return None
            found |= (y != self.y0).reshape(-1)
        return np.flatnonzero(found)


def _single_probes(shape, rng, batch_axes=2) -> np.ndarray:
    """Flat indices of the centre, corners and face middles (per spatial dim: low, middle,
    high), in the first and last item and channel, plus seeded random elements."""
    lead = shape[:batch_axes]
    spatial = shape[batch_axes:]
    picks = set()
    corners = [(0, n // 2, n - 1) for n in spatial]
    for k, lead_idx in enumerate([(0,) * len(lead), tuple(n - 1 for n in lead)]):
        for pos in np.ndindex(*(3,) * len(spatial)):
            if k and sum(p != 1 for p in pos) > 1:
                continue      # the last item and channel: centre and face middles only
            picks.add(lead_idx + tuple(c[p] for c, p in zip(corners, pos)))
    flat = [np.ravel_multi_index(p, shape) for p in picks]
    size = math.prod(shape)
    flat += list(rng.integers(0, size, RANDOM_PROBES))
    return np.unique(np.asarray(flat, dtype=np.int64))


def _fit_dim(spans, n_in, n_out):
    """Smallest window ``(S, P, E)`` that holds every probe ``(i, lo, hi)`` in one dim."""
    best = None
    max_s = min(MAX_STRIDE, max(1, -(-n_in // max(n_out, 1))) + 1)
    for E in range(1, n_in + 2 * MAX_STRIDE + 1):
        for S in range(1, max_s + 1):
            lo_p = max(S * hi - i for i, lo, hi in spans)
            hi_p = min(S * lo - i + E - 1 for i, lo, hi in spans)
            if lo_p <= hi_p:
                best = (S, lo_p, E)
                break
        if best is not None:
            return best
    return None


def _window(pr, a_shape, y_shape):
    """A window structure fitted to single probes, or ``(None, why)``."""
    if len(a_shape) < 3 or len(y_shape) != len(a_shape) or a_shape[0] != y_shape[0]:
        return None, "not a batch-first array of the output's rank and batch size"
    nd = len(a_shape) - 2
    spans = [[] for _ in range(nd)]
    mixes = a_shape[1] != y_shape[1]
    for j in _single_probes(a_shape, pr.rng):
        moved = pr.moved([j])
        if moved is None:
            return None, "f changed its output's shape at a probe"
        if moved.size == 0:
            continue             # no output moved: no footprint to fit (and none to break)
        src = np.unravel_index(j, a_shape)
        out = np.unravel_index(moved, y_shape)
        if np.any(out[0] != src[0]):
            return None, (f"moving element {tuple(int(v) for v in src)} moved outputs of "
                          f"other batch items")
        mixes = mixes or bool(np.any(out[1] != src[1]))
        for d in range(nd):
            spans[d].append((int(src[2 + d]), int(out[2 + d].min()), int(out[2 + d].max())))
    if not spans[0]:
        return None, "no probe moved any output"
    fit = [_fit_dim(spans[d], a_shape[2 + d], y_shape[2 + d]) for d in range(nd)]
    if any(f is None for f in fit):
        return None, "the moved outputs are not one window translated with the element"
    S, P, E = (tuple(f[k] for f in fit) for k in range(3))
    return window_structure(a_shape, y_shape, S, P, E, mixes), (S, P, E, mixes)


def _verify_colors(pr, structure, seed):
    """Move whole colors at once; every moved output must have an owner among them."""
    colors = np.asarray(structure.colors)
    order = np.argsort(colors, kind="stable")
    bounds = np.flatnonzero(np.diff(colors[order])) + 1
    groups = np.split(order, bounds)
    picks = {0, len(groups) - 1} | set(
        int(k) for k in pr.rng.permutation(len(groups))[:max(0, VERIFY_COLORS - 2)])
    for k in sorted(picks):
        members = np.sort(groups[k])
        signs = pr.rng.choice(np.array([-1.0, 1.0]), members.size)
        moved = pr.moved(members, signs)
        if moved is None:
            return "f changed its output's shape at a probe"
        owned = np.asarray(structure.owners(members)) >= 0
        unexplained = moved[~owned[moved]]
        if unexplained.size:
            return (f"moving the {members.size} elements of color {k} at once moved "
                    f"{unexplained.size} output(s) none of them should reach")
    return None


def _blocks(pr, a_shape, y_shape, axis_a, axis_y, label):
    """Slices ``[k]`` of the argument along ``axis_a`` reach only slice ``k`` of the output
    along ``axis_y``: single elements, then a random half of the slices at once."""
    count = a_shape[axis_a]
    if count < 2 or y_shape[axis_y] != count:
        return f"no {label} axis"
    per = math.prod(a_shape[axis_a + 1:])
    singles = _single_probes((count, per), pr.rng, batch_axes=1)
    for j in singles:
        moved = pr.moved([j])
        if moved is None:
            return "f changed its output's shape at a probe"
        k = np.unravel_index(j, (count, per))[0]
        if np.any(np.unravel_index(moved, y_shape)[axis_y] != k):
            return f"moving an element of {label} {int(k)} moved outputs of other {label}s"
    for _ in range(2):
        chosen = np.flatnonzero(pr.rng.random(count) < 0.5)
        if chosen.size == 0 or chosen.size == count:
            continue
        elements = (chosen[:, None] * per + np.arange(per)).reshape(-1)
        moved = pr.moved(elements, pr.rng.choice(np.array([-1.0, 1.0]), elements.size))
        if moved is None:
            return "f changed its output's shape at a probe"
        reached = np.unique(np.unravel_index(moved, y_shape)[axis_y])
        if not np.isin(reached, chosen).all():
            return f"moving {chosen.size} {label}s at once moved outputs of the others"
    return None


def probe_structure(g, a, y0, *, seed=0) -> Probed:
    """The dependency structure of ``g`` around ``a`` (``y0 = g(a)``), found and verified
    as the module notes say, or a :class:`Probed` without one and the reason."""
    a = np.asarray(a)
    y0 = np.asarray(y0)
    pr = _Prober(g, a, y0, seed)
    reasons = []
    structure, info = _window(pr, a.shape, y0.shape)
    if structure is not None:
        why = _verify_colors(pr, structure, seed)
        if why is None:
            S, P, E, mixes = info
            n = int(np.unique(structure.colors).size)
            return Probed(structure, "window", pr.nfev, (
                f"dependency structure found by probing: windows of extent {E}, stride {S}, "
                f"low padding {P}{', channels mixed' if mixes else ''}; {n} groups of "
                f"elements differenced together ({pr.nfev} evaluations to find and verify)"))
        reasons.append(f"window: {why}")
    else:
        reasons.append(f"window: {info}")
    if a.ndim >= 1 and y0.ndim >= 2:
        why = _blocks(pr, a.shape, y0.shape, 0, 1, "filter")
        if why is None:
            s = filter_structure(a.shape, y0.shape)
            return Probed(s, "filter", pr.nfev, (
                f"dependency structure found by probing: slice [o] reaches output channel "
                f"o only; {math.prod(a.shape[1:])} groups of elements differenced together "
                f"({pr.nfev} evaluations to find and verify)"))
        reasons.append(f"filter: {why}")
    if a.ndim >= 2 and y0.ndim >= 1:
        why = _blocks(pr, a.shape, y0.shape, 0, 0, "batch item")
        if why is None:
            s = per_sample_structure(a.shape, y0.shape)
            return Probed(s, "per-sample", pr.nfev, (
                f"dependency structure found by probing: batch items independent; "
                f"{math.prod(a.shape[1:])} groups of elements differenced together "
                f"({pr.nfev} evaluations to find and verify)"))
        reasons.append(f"per-sample: {why}")
    return Probed(None, "", pr.nfev, (
        "no dependency structure could be shown by probing (" + "; ".join(reasons) +
        f"; {pr.nfev} evaluations)"))


def guard(g: Callable, a, y0, structure) -> Callable:
    """``g`` held to ``structure``: a point that moves only elements of one color must
    move only outputs they own, else :class:`StructureBroken`. Batches of points
    (vectorized ``g``) are checked point by point; points that move elements of several
    colors (random directions) are not checked."""
    a = np.asarray(a)
    base = a.reshape(-1)
    y0f = np.asarray(y0).reshape(-1)
    colors = np.asarray(structure.colors).reshape(-1)

    def check(x, y):
        x = np.asarray(x).reshape(-1)
        changed = (x.real != base) | (x.imag != 0) if np.iscomplexobj(x) else x != base
        members = np.flatnonzero(changed)
        if members.size == 0 or np.any(colors[members] != colors[members[0]]):
            return
        y = np.asarray(y).reshape(-1)
        # a complex step moves the imaginary parts only; its real parts may round
        # differently from real arithmetic wherever they are, moved or not
        moved = y.imag != 0 if np.iscomplexobj(x) and np.iscomplexobj(y) else y != y0f
        owned = np.asarray(structure.owners(members)) >= 0
        stray = np.flatnonzero(moved & ~owned)
        if stray.size:
            raise StructureBroken(
                f"a point that moved {members.size} element(s) of one group moved "
                f"{stray.size} output(s) none of them reaches per the probed structure")

    def guarded(x):
        y = g(x)
        x_arr = np.asarray(x)
        if x_arr.ndim == a.ndim + 1 and x_arr.shape[1:] == a.shape:
            for xb, yb in zip(x_arr, np.asarray(y)):
                check(xb, yb)
        elif x_arr.shape == a.shape:
            check(x_arr, y)
        return y

    return guarded


#: Random directions along which the gradient differenced with a probed structure must
#: match the directional derivative of ``f`` itself.
CONFIRM_DIRECTIONS = 4


def confirm_structure(target, num) -> int:
    """The last test of a probed structure, once every element has been differenced with
    it: along ``CONFIRM_DIRECTIONS`` seeded random ±1 directions ``v`` (zero at the
    elements found non-differentiable), ``<n, v>`` from the numerical gradient ``n``
    must match ``d/dt <R, f(a + t v)>`` differenced directly, within the tolerance fast
    mode gives a projection, widened by the elements' own error bars (``sum_j |v_j|
    E_j``). A misattributed difference -- an output moved by one member of a group and
    credited to another -- shows there at its full size, while the two sides' error bars
    are about 1e-11 of the projection in float64. Raises :class:`StructureBroken`, or
    returns the evaluations it took.
    """
    from gradcheck.checker._numeric import directional_numeric
    from gradcheck.checker._tolerance import Tolerance

    grad = np.asarray(num.grad, np.float64).reshape(-1)
    err = np.asarray(num.error, np.float64).reshape(-1)
    usable = np.isfinite(grad) & np.isfinite(err) & \
        ~np.asarray(num.nondifferentiable, bool).reshape(-1)
    rng = np.random.default_rng([target.seed, 0xC0F1])
    dirs = rng.choice(np.array([-1.0, 1.0]), size=(CONFIRM_DIRECTIONS, grad.size)) * usable
    method = "complex" if str(num.method).startswith("complex") else "adaptive"
    along = directional_numeric(target._replace(method=method), dirs)
    proj_n = dirs @ np.where(usable, grad, 0.0)
    proj_d = np.asarray(along.grad, np.float64).reshape(-1)
    bars = np.asarray(along.error, np.float64).reshape(-1) + np.abs(dirs) @ np.where(
        usable, err, 0.0)
    tolerance = Tolerance.for_dtype(np.asarray(target.arg).dtype)
    tol = tolerance.along_directions(proj_n, proj_d, bars,
                                     np.abs(dirs) @ np.abs(np.where(usable, grad, 0.0)))
    judged = ~np.asarray(along.nondifferentiable, bool).reshape(-1)
    off = judged & ~(np.abs(proj_n - proj_d) <= tol)
    if not judged.any():
        raise StructureBroken("the gradient differenced with it could not be compared "
                              "with f's own directional derivatives: a kink along every "
                              "test direction")
    if off.any():
        k = int(np.flatnonzero(off)[0])
        raise StructureBroken(
            f"the gradient differenced with it does not reproduce f's own derivative along "
            f"random direction {k} ({proj_n[k]:.17g} vs {proj_d[k]:.17g} +- {tol[k]:.2g})")
    return int(along.nfev)


#: The complex step takes two evaluations per group where kinks are not ruled out, real
#: adaptive differences about six: above this cost ratio the real ones are cheaper.
COMPLEX_COST_LIMIT = 3.0


def cheapest_method(g, a, f_seconds, method) -> tuple:
    """``("adaptive", why)`` when ``method="auto"`` and one complex evaluation of ``g``
    costs more than :data:`COMPLEX_COST_LIMIT` real ones (measured here, medians of
    two), else ``("", "")``: the differentiator chooses as it always does. Asked by
    ``mode="auto"`` only, whose time budget is measured anyway (:mod:`._plan`): a
    measured choice depends on how loaded the machine is, so ``mode="full"`` leaves the
    method to the differentiator.

    Real adaptive differences carry error bars of about :math:`10^{-11}` relative in
    float64 and :math:`10^{-5}` in float32 (:mod:`gradcheck.numdiff`): the tolerance is
    ten of them, still orders of magnitude below the errors a check must catch
    (:mod:`._tolerance`), so the verdict stays as sure while the check runs several
    times faster through code whose complex arithmetic is slow (NumPy's ``einsum``).
    """
    a = np.asarray(a)
    if method != "auto" or a.dtype not in (np.float64, np.float32):
        return "", ""
    z = a.astype(np.result_type(a.dtype, np.complex64))
    try:
        y = np.asarray(g(z))
        if not np.iscomplexobj(y):
            return "", ""
        t_complex = timed(lambda: g(z), repeats=2)
        t_real = min(timed(lambda: g(a), repeats=2), f_seconds or np.inf)
    except Exception:    # complex input refused: the differentiator finds out as usual
        return "", ""
    ratio = t_complex / max(t_real, 1e-9)
    if ratio <= COMPLEX_COST_LIMIT:
        return "", ""
    return "adaptive", (f"real differences, not the complex step: one complex evaluation "
                        f"costs about {ratio:.0f} real ones")
