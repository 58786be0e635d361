r"""Generic causes of a mask: the mismatches lie exactly in a set one can name.

Two families of sets:

- **by the input's value**: every informative element with ``x`` below (or above, or
  outside an interval) a threshold mismatches and no other does -- a clip or a
  saturation not masked, a sign term missing where ``x < 0``. The threshold is read from
  the data (the gap between the mismatching and the agreeing values; 0 when the gap
  holds it; elements off by more than their tolerance but less than ``SLACK`` of them
  place no threshold). Such a set must be unlikely by chance: ``k`` mismatches among ``n``
  informative elements fall into one of the ``k + 1`` patterns tried with probability
  :math:`(k+1)/\binom{n}{k}`, which must stay below :data:`CHANCE`
  (:data:`STRUCTURED_ODDS` times that when the relation on the set has a structure of
  its own: zero, a flipped sign, one factor, nonzero where ``f`` is flat).
- **by position**: every mismatch lies in one index along an axis (a batch item, a
  channel), within a few positions of the ends of some axes (a border: a padding's
  contributions not added back), or on every ``s``-th position along one or two axes
  (where windows taken with stride ``s`` overlap: an accumulation written as an
  assignment). A positional set must be small enough that the mismatches could not fall
  in it by chance: with ``k`` mismatches among the ``n`` informative elements, of which
  ``m`` lie in the set, :math:`(m/n)^k <` :data:`CHANCE`.

On the set, the analytic gradient is then described by the first of: zero (``dropped``),
nonzero where the numerical one is zero (``leaks``), the numerical one with its sign
flipped (``sign``), a constant times it (``scaled``; the constant weighted by each
element's tolerance), or anything else (``wrong``); off
the set it equals the numerical one.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from gradcheck.checker._cause_scale import axis_label
from gradcheck.checker._fit import (SLACK, clear_mismatch, fit_claim, informative,
                                   mismatches_in)
from gradcheck.checker._report import Diagnosis

__all__ = ["single_element", "region", "fit_value_mask", "fit_position_mask", "CHANCE",
           "RELATION_TEXT", "VALUE_MEANING"]

#: Largest chance that the mismatches fall in a named set at random.
CHANCE = 1e-3
#: How much likelier a value set may be when the relation on it is structured.
STRUCTURED_ODDS = 50

#: What a value mask means, by the relation found on it.
VALUE_MEANING = {
    "dropped": "the backward masks out a range of x where f does depend on x (a mask with "
               "the wrong threshold or comparison)",
    "leaks": "a clip or saturation whose flat part is not masked in the backward (the "
             "derivative there is 0)",
    "sign": "a sign term is missing on that range (the derivative of |x| is sign(x))",
    "scaled": "that range's branch has the wrong slope (a leaky slope or a branch's constant)",
    "wrong": "that range's branch of the derivative is wrong",
}

RELATION_TEXT = {
    "dropped": "the analytic gradient is zero there",
    "leaks": "the analytic gradient is nonzero there while f does not depend on those "
             "elements (the numerical gradient is zero)",
    "sign": "the analytic gradient has the wrong sign there",
    "scaled": "the analytic gradient is {factor:.6g} times the numerical one there",
    "wrong": "the analytic gradient is wrong there",
}


def _relation(ev, mask):
    """The first relation on ``mask`` that fits (``A = N`` off the mask), as a Fit."""
    n, tol = ev.n, ev.tol
    inside = mask & ev.keep
    fit = fit_claim(ev, np.where(mask, 0.0, n))
    if fit is not None:
        return fit, "dropped", {}
    off = fit_claim(ev, n, where=~mask)
    if off is None:
        return None
    if np.all(np.abs(n[inside]) <= SLACK * tol[inside]):
        return off, "leaks", {}
    fit = fit_claim(ev, np.where(mask, -n, n))
    if fit is not None:
        return fit, "sign", {}
    # the factor weighted by each element's tolerance: an element whose numerical value
    # is uncertain (next to a kink) must not pull the factor off the sharp ones
    # (a sampled check knows N only where it sampled: the factor comes from those)
    sel = inside & np.isfinite(n) & np.isfinite(ev.a)
    t = tol[sel] / max(float(np.max(tol[sel], initial=0.0)), np.finfo(float).tiny)
    w = n[sel] / np.maximum(t, 1e-150) ** 2
    nn = float(np.dot(w, n[sel]))
    if nn > 0 and np.isfinite(nn):
        c = float(np.dot(ev.a[sel], w) / nn)
        fit = fit_claim(ev, np.where(mask, c * n, n), np.where(mask, abs(c) * tol, 0.0))
        if fit is not None:
            return fit, "scaled", {"factor": c}
    return off, "wrong", {}


def _value_chance(n: int, k: int) -> float:
    """The chance that ``k`` of ``n`` elements chosen at random form one of the ``k + 1``
    patterns tried (all below a threshold, all above, or some at each end)."""
    return (k + 1) / math.comb(n, k)


def _value_sets(x, fail, info):
    """``(text, mask, chance)`` for value sets whose informative part is exactly ``fail``."""
    xs, fs = x[info], fail[info]
    k = int(fs.sum())
    # a range on each side: mismatches all at one value of x (a kink at 0, say) are no range
    if np.unique(xs[fs]).size < 2 or np.unique(xs[~fs]).size < 2:
        return
    chance = _value_chance(xs.size, k)
    order = np.argsort(xs, kind="stable")
    f_sorted, x_sorted = fs[order], xs[order]
    runs = np.flatnonzero(np.diff(f_sorted.astype(np.int8))) + 1   # where F switches
    if runs.size == 1:
        i = runs[0]
        lo, hi = x_sorted[i - 1], x_sorted[i]
        if lo == hi:
            return
        below = bool(f_sorted[0])
        t = 0.0 if lo < 0 < hi else (lo + hi) / 2
        if t == 0:
            yield ("x < 0 (the negative inputs)" if below else "x > 0 (the positive inputs)",
                   x < 0 if below else x > 0, chance)
        else:
            text = f"x {'<' if below else '>'} t for a threshold t between {lo:.4g} and {hi:.4g}"
            yield text, (x < t if below else x > t), chance
    elif runs.size == 2 and f_sorted[0]:
        i, j = runs
        if x_sorted[i - 1] == x_sorted[i] or x_sorted[j - 1] == x_sorted[j]:
            return
        lo = (x_sorted[i - 1] + x_sorted[i]) / 2
        hi = (x_sorted[j - 1] + x_sorted[j]) / 2
        yield (f"x is outside an interval [a, b], a between {x_sorted[i - 1]:.4g} and "
               f"{x_sorted[i]:.4g}, b between {x_sorted[j - 1]:.4g} and {x_sorted[j]:.4g}",
               (x < lo) | (x > hi), chance)


def fit_value_mask(ev):
    """Mismatches exactly where ``x`` is below / above / outside a threshold."""
    known = getattr(ev, "known", None)
    x = None if known is None or known.x is None else np.asarray(known.x, np.float64)
    if not ev.n_failed or x is None or x.shape != ev.a.shape:
        return None
    fail = clear_mismatch(ev)
    # an element off by more than its tolerance but less than SLACK of them is neither a
    # clear mismatch nor an agreement (a slope slip on a small gradient, in float32): it
    # does not place the threshold, and the relation fitted below must hold there too
    unclear = ev.keep & ~fail & (np.abs(ev.a - ev.n) > ev.tol)
    for text, mask, chance in _value_sets(x, fail, informative(ev) & ~unclear):
        found = _relation(ev, mask)
        # a set read off the data must be unlikely by chance; a relation on it with a
        # structure of its own (zero, a sign, one factor, nonzero where f is flat) is
        # evidence too, so the set may be STRUCTURED_ODDS times likelier than a bare
        # "wrong there"
        odds = 1 if found is None or found[1] == "wrong" else STRUCTURED_ODDS
        if found is not None and chance < CHANCE * odds:
            fit, relation, extra = found
            return fit._replace(params={"where": text, "relation": relation, **extra,
                                        "relation_text": RELATION_TEXT[relation].format(**extra),
                                        "meaning": VALUE_MEANING[relation],
                                        "count": int(fail.sum()),
                                        "mismatches": mismatches_in(ev, mask)})
    return None


def _slab(shape, axis, where):
    mask = np.zeros(shape, bool)
    idx = [slice(None)] * len(shape)
    idx[axis] = where
    mask[tuple(idx)] = True
    return mask


def _position_sets(shape, role):
    """``(text, meaning, mask)`` for the positional sets (see the module notes)."""
    nd = len(shape)
    for axis, n in enumerate(shape):
        if n > 1:
            for i in range(n):
                yield (f"index {i} along {axis_label(role, axis)}",
                       "one item or channel is dropped or mangled (a loop bound or an index "
                       "off by one)", _slab(shape, axis, i))
    for width in (1, 2, 3):
        for r in range(2, nd + 1):      # the corners, before the borders that hold them
            for axes in combinations([a for a in range(nd) if shape[a] > 2 * width + 1], r):
                mask = np.ones(shape, bool)
                for a in axes:
                    mask &= _slab(shape, a, np.r_[0:width, shape[a] - width:shape[a]])
                names = " and ".join(axis_label(role, a) for a in axes)
                yield (f"the {width} position{'s' if width > 1 else ''} nearest either end of "
                       f"{names} at once (the corners; the rest of the border agrees)",
                       "the contributions of a padding or an edge are not added back at the "
                       "corners, where two edges meet", mask)
        for r in range(1, nd + 1):
            for axes in combinations([a for a in range(nd) if shape[a] > 2 * width + 1], r):
                mask = np.zeros(shape, bool)
                for a in axes:
                    n = shape[a]
                    mask |= _slab(shape, a, np.r_[0:width, n - width:n])
                names = " and ".join(axis_label(role, a) for a in axes)
                yield (f"the {width} position{'s' if width > 1 else ''} nearest either end of "
                       f"{names} (a border)",
                       "the contributions of a padding or an edge are not added back, or are "
                       "cropped at the wrong place", mask)
    for step in (2, 3, 4):
        for r in (1, 2):
            for axes in combinations([a for a in range(nd) if shape[a] >= 2 * step + 1], r):
                for phase in range(step):
                    for inner in (False, True):
                        mask = np.zeros(shape, bool)
                        for a in axes:
                            at = np.arange(phase, shape[a], step)
                            if inner:          # where two windows overlap: not the ends
                                at = at[(at > 0) & (at < shape[a] - 1)]
                            mask |= _slab(shape, a, at)
                        names = " or ".join(axis_label(role, a) for a in axes)
                        nth = f"{step}{'nd' if step == 2 else 'rd' if step == 3 else 'th'}"
                        yield (f"positions ≡ {phase} (mod {step}) along {names} (every {nth} "
                               f"position{', not the ends' if inner else ''})",
                               f"where windows taken with stride {step} overlap, an "
                               f"accumulation (+=) written as an assignment (=), or an "
                               f"overlap counted once", mask)


def fit_position_mask(ev):
    """All mismatches lie in a small positional set (one index, a border, a period)."""
    if not ev.n_failed:
        return None
    fail = clear_mismatch(ev)
    info = informative(ev)
    k, n_info = int(fail.sum()), int(info.sum())
    if k < 2 or n_info == 0:
        return None
    candidates = []
    for text, meaning, mask in _position_sets(ev.a.shape, getattr(ev, "role", None)):
        if (fail & ~mask).any():
            continue
        m = int((mask & info).sum())
        if m >= n_info or (m / n_info) ** k >= CHANCE:
            continue
        candidates.append((m, text, meaning, mask))
    for m, text, meaning, mask in sorted(candidates, key=lambda c: c[0]):
        found = _relation(ev, mask)
        if found is not None:
            fit, relation, extra = found
            return fit._replace(params={"where": text, "meaning": meaning,
                                        "relation": relation, **extra,
                                        "relation_text": RELATION_TEXT[relation].format(**extra),
                                        "count": k, "mismatches": mismatches_in(ev, mask)})
    return None


# --------------------------------------------------------------------------- where it is wrong
# These two say where, not why: one element, or a region of a tensor whose axes are known
# (a batch item, a channel, a border), and are named for any mismatch, however small.


def single_element(ev):
    """Only one element is wrong."""
    if ev.n_failed != 1:
        return None
    judged = getattr(ev, "judged", None)
    if judged is not None and int(np.count_nonzero(judged.failed)) > 1:
        return None         # elements at kinks fail too: not one element alone
    a, n = ev.a, ev.n
    idx = tuple(int(i) for i in np.argwhere(ev.failed)[0])
    rel = abs(a[idx] - n[idx]) / max(abs(a[idx]), abs(n[idx]), np.finfo(float).tiny)
    values = f"(analytic {a[idx]:.9g}, numeric {n[idx]:.9g}, relative error {rel:.2g})"
    if a.size == 1:
        message = (f"The argument's only element is wrong {values}: with one element, a "
                   f"wrong value and a wrong factor look the same.")
    else:
        message = f"Only element {idx} is wrong {values}; every other element agrees"
        leaning = _leaning(ev, idx)
        message = (message + leaning if leaning else _hidden(ev, idx, rel, message)) + "."
    return Diagnosis(
        "single_element", message,
        {"index": list(idx), "analytic": a[idx], "numeric": n[idx], "relative_error": rel,
         "failed_elements": 1})


def _hidden(ev, idx, rel, message) -> str:
    """``message`` with "agrees" made honest when another element is off by at least half
    the wrong one's relative error but passes within a wider tolerance (in float16 an
    element's tolerance can be ten times its neighbour's): it may be wrong as well."""
    others = ev.keep & ~ev.failed & np.isfinite(ev.n) & np.isfinite(ev.a)
    if not others.any():
        return message
    size = np.fmax(np.abs(ev.a), np.abs(ev.n))
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.where(others & (size > 0), np.abs(ev.a - ev.n) / size, 0.0)
    j = np.unravel_index(int(np.argmax(off)), off.shape)
    if not off[j] >= 0.5 * rel:
        return message
    where = tuple(int(i) for i in j)
    return (message.removesuffix("every other element agrees")
            + f"every other element is within its tolerance, though {where} is off by "
            f"{float(off[j]):.2g} too, within a tolerance {float(ev.tol[j] / size[j]):.2g} "
            f"of its value there: it may be wrong as well")


def _leaning(ev, idx) -> str:
    """``", though ..."`` when the other elements, each within its tolerance, lean the
    way the wrong one is off: their least-squares ratio ``A/N`` is off 1 on the same
    side, by at least half as much and by at least twice its uncertainty from the
    tolerances (a whole gradient scaled by 1.1 in float16 puts one element beyond its
    tolerance and the others just inside); else ``""``."""
    others = ev.keep & ~ev.failed & np.isfinite(ev.n)
    n, a, t = ev.n[others], ev.a[others], ev.tol[others]
    if n.size == 0 or not np.any(n) or ev.n[idx] == 0:
        return ""
    s = float(np.max(np.abs(n)))
    m = n / s
    c = float(np.dot(a / s, m) / np.dot(m, m))
    sigma = float(np.sqrt(np.sum((t / s) ** 2 * m ** 2)) / np.dot(m, m))
    r = float(ev.a[idx] / ev.n[idx])
    if not (np.sign(c - 1) == np.sign(r - 1) and abs(c - 1) >= 0.5 * abs(r - 1)
            and abs(c - 1) >= 2 * sigma):
        return ""
    return (f" within its tolerance, though the others lean the same way (A/N is {r:.4g} "
            f"there and {c:.4g} over the other {n.size}): the whole gradient may be scaled "
            f"by about {r:.3g}, beyond the tolerance at this element only")


def _corners(shape, axes):
    """``(label, mask)`` of the corners of ``axes`` (two or more of them): the blocks
    within ``width`` positions of an end along every one of those axes."""
    if len(axes) < 2:
        return
    for width in (1, 2):
        if any(shape[a] <= 2 * width for a in axes):
            continue
        mask = np.ones(shape, bool)
        for a in axes:
            mask &= _slab(shape, a, np.r_[0:width, shape[a] - width:shape[a]])
        names = " and ".join(str(a) for a in axes)
        size = "×".join([str(width)] * len(axes))
        yield (f"the corners ({'one element' if width == 1 else f'a {size} block'} at each "
               f"corner of spatial axes {names}; the rest of the border agrees)", mask)


def _region_masks(shape, role):
    """Candidate regions (name, boolean mask) for 'one region is zero or wrong'."""
    if role.batch_axis is not None and shape[role.batch_axis] > 1:
        for i in range(shape[role.batch_axis]):
            yield f"batch item {i} (axis {role.batch_axis} = {i})", _slab(shape, role.batch_axis, i)
    for axis in role.channel_axes:
        if shape[axis] > 1:
            what = {0: "output channel", 1: "input channel"}.get(axis, "channel") \
                if role.kind == "weight" else "channel"
            for i in range(shape[axis]):
                yield f"{what} {i} (axis {axis} = {i})", _slab(shape, axis, i)
    # the corners: within `width` positions of an end along every spatial axis at once
    # (tried before the sides and the border, which hold them)
    yield from _corners(shape, role.spatial_axes)
    # one side of the border: the first or last `width` positions along one spatial axis
    for width in (1, 2):
        for a in role.spatial_axes:
            if shape[a] <= 2 * width:
                continue
            where = f"position{'s' if width > 1 else ''}"
            for side, sl in (("first", slice(0, width)), ("last", slice(shape[a] - width, None))):
                yield (f"the {side} {width} {where} along spatial axis {a} (a border)",
                       _slab(shape, a, sl))
    if role.spatial_axes and all(shape[a] >= 3 for a in role.spatial_axes):
        for width in (1, 2):
            if any(shape[a] <= 2 * width for a in role.spatial_axes):
                continue
            inner = np.zeros(shape, bool)
            idx = [slice(None)] * len(shape)
            for a in role.spatial_axes:
                idx[a] = slice(width, shape[a] - width)
            inner[tuple(idx)] = True
            yield f"the border (the outer {width} row{'s' if width > 1 else ''}/column" \
                  f"{'s' if width > 1 else ''} of every spatial axis)", ~inner


def region(ev):
    """All mismatches lie in one region of a tensor whose axes are known."""
    if not ev.n_failed:
        return None
    for label, mask in _region_masks(ev.a.shape, ev.role):
        if mask.all() or not ev.failed[~mask].sum() == 0:
            continue
        inside = mask & ev.keep
        zero = bool(np.all(np.abs(ev.a[inside]) <= SLACK * ev.tol[inside]))
        share = ev.failed.sum() / max(1, inside.sum())
        return Diagnosis(
            "region",
            f"{mismatches_in(ev, mask)} lie in {label}, where the analytic gradient is "
            f"{'zero' if zero else 'wrong'}; everywhere else it agrees. Look for a boundary "
            f"or indexing bug that drops or mangles that part.",
            {"region": label, "analytic_zero_there": zero, "failed_elements": ev.n_failed,
             "failed_share_of_region": float(share)})
    return None
