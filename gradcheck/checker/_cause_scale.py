r"""Generic causes of scale: ``A = c N`` everywhere, or with one factor per slice.

The factor is fitted by least squares, :math:`c = \langle A, N\rangle / \langle N, N
\rangle` (per slice along one axis for :func:`fit_scale_per_slice`), and named when it is
recognisable: a size of the problem (``1/8`` with a batch of 8 is a mean where a sum
belongs), its square root (attention's :math:`1/\sqrt{d}`), 2 or 1/2, a simple fraction.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations

import numpy as np

from gradcheck.checker._fit import MIN_PER_PARAMETER, SLACK, Fit, fit_claim, slices_along

__all__ = ["fit_sign", "fit_scale", "fit_scale_per_slice", "name_factor", "axis_label"]


def axis_label(role, axis: int) -> str:
    """``"axis 1 (channel)"`` when the role says what the axis is, else ``"axis 1"``."""
    if role is not None and role.batch_axis == axis:
        return f"axis {axis} (batch)"
    if role is not None and axis in role.channel_axes:
        return f"axis {axis} (channel)"
    return f"axis {axis}"


def _named_sizes(shape, known) -> list[tuple]:
    """Sizes a factor may be, ``(rank, label, size, axes)``: each axis of this argument,
    products of several of its axes (``axes`` the argument's own axes), and the caller's
    named sizes (other arguments, the output; ``axes`` None), single axes before
    products, and this argument's before the output's before the others' (``rank``)."""
    own = [((False, 0), f"size of axis {i}", int(n), (i,)) for i, n in enumerate(shape)]
    for r in range(2, len(shape) + 1):
        for axes in combinations(range(len(shape)), r):
            own.append(((True, 0), f"product of axes {', '.join(map(str, axes))}",
                        int(np.prod([shape[i] for i in axes])), axes))
    given = [((label.startswith("product"), 1 if label.endswith("the output") else 2),
              label, int(n), None) for label, n in (known.sizes if known else ())]
    ranked = sorted(own + given, key=lambda item: item[0])
    return [item for item in ranked if item[2] > 4]


def _top(v) -> float:
    """The largest magnitude of ``v`` (a scale that keeps squares and dot products of
    huge values finite: they are formed of ``v / _top(v)``)."""
    return float(np.max(np.abs(v), initial=0.0))


def _factor_uncertainty(ev, c) -> float:
    """How far the least-squares factor may be off from the tolerance alone:
    ``SLACK sqrt(sum t² n²) / sum n² (1 + |c|)``, formed of scaled values."""
    n, t = ev.n[ev.keep], ev.tol[ev.keep]
    s = _top(n)
    if s == 0 or not np.isfinite(s):
        return np.inf
    m = n / s
    tm = t * m
    u = _top(tm)
    spread = u * float(np.linalg.norm(tm / u)) if u and np.isfinite(u) else u
    return SLACK * spread / (s * float(np.dot(m, m))) * (1 + abs(c))


def _size_label(sizes, value, close, role) -> str:
    """What a size ``value`` is: the first-ranked label of that size; where several of
    the same rank coincide (axes 0, 2, 3 and 0, 1, 2 of a (4, 3, 3, 3) tensor are all
    36), the one without a channel axis when the role names one (a mean over the batch
    and spatial axes), else all of them, said to coincide."""
    hits = [(rank, label, axes) for rank, label, n, axes in sizes if abs(value - n) <= close * n]
    first = hits[0][0]
    same = [(label, axes) for rank, label, axes in hits if rank == first]
    channels = set(getattr(role, "channel_axes", ()) or ())
    if len(same) > 1 and channels:
        without = [(label, axes) for label, axes in same
                   if axes is not None and not channels & set(axes)]
        same = without or same
    if len(same) == 1:
        return same[0][0]
    names = [label for label, _ in same]
    return (", ".join(names[:-1]) + " or " + names[-1] +
            f": these sizes coincide, so which one is not known")


def _simple_fraction(m: float, close: float):
    """``m`` as a fraction people write (an integer, or p/q with p, q <= 16), or None."""
    frac = Fraction(m).limit_denominator(16)
    if frac == 0 or abs(float(frac) - m) > max(close, 1e-6 * m):
        return None
    return frac if frac.denominator == 1 or frac.numerator <= 16 else None


def _root_text(c: float, n: int, inverse: bool) -> str:
    """``c`` as ``√n`` or ``1/√n``: ``"1/4 = 1/√16"`` when the root is an integer."""
    minus = "-" if c < 0 else ""
    r = int(round(np.sqrt(n)))
    plain = (f"1/{r}" if inverse else f"{r}") if r * r == n else f"{abs(c):.6g}"
    return f"{minus}{plain} = {minus}{'1/' if inverse else ''}√{n}"


def name_factor(c: float, shape, known=None, uncertainty: float = 0.0,
                role=None) -> tuple[str, str]:
    """``(text, meaning)`` for a scale factor ``c``: ``("1/8 (size of axis 0)", "too
    small by ...")``. ``uncertainty`` is how far ``c`` may be off; ``role`` (a
    :class:`~gradcheck.checker._diagnose.TensorRole`) tells coinciding sizes apart.

    >>> name_factor(1 / 36, (4, 3, 3, 3))[0]
    '1/36 (product of axes 0, 1, 2, product of axes 0, 1, 3 or product of axes 0, 2, 3: these sizes coincide, so which one is not known)'
    >>> from gradcheck.checker._diagnose import TensorRole
    >>> name_factor(1 / 36, (4, 3, 3, 3), role=TensorRole.for_array("input", 4))[0]
    '1/36 (product of axes 0, 2, 3)'
    >>> name_factor(0.25, (2, 16))
    ('1/4 = 1/√16 (size of axis 1)', 'a 1/√16 scale applied twice (attention scales by 1/√d, here d = 16)')
    >>> name_factor(463 / 38, (3, 3))[0]
    '12.1842'
    """
    close = max(uncertainty, 1e-9 * abs(c))
    sign = "; its sign is flipped as well" if c < 0 else ""
    m = abs(c)
    sizes = _named_sizes(shape, known)

    def labels(value):
        return _size_label(sizes, value, close, role)

    minus = "-" if c < 0 else ""
    values = sorted({n for _, _, n, _ in sizes})
    # every reading within reach of c; the nearest wins (in bfloat16 the reach is wide:
    # 2.016 is near both 2 and √5 = 2.236), the order below breaking ties
    found = [(v, kind, n) for n in values for v, kind in ((n, "size"), (1 / n, "1/size"))]
    found += [(v, kind, n) for n in values for root in (float(np.sqrt(n)),)
              for v, kind in ((root, "root"), (1 / root, "1/root"))]
    frac = _simple_fraction(m, close)
    if frac is not None:
        found.append((float(frac), "fraction", frac))
    near = [(abs(m - v), i) for i, (v, _, _) in enumerate(found) if abs(m - v) <= close]
    if not near:
        return f"{c:.6g}", (f"a constant factor is wrong ({c:.6g}: a temperature, step or "
                            f"epsilon where it does not belong?)")
    best = min(d for d, _ in near)
    _, kind, n = found[min(i for d, i in near if d <= best + 1e-9 * m)]
    if kind == "size":
        return (f"{minus}{n} ({labels(n)})",
                f"a division by {n} was forgotten (a mean computed as a sum){sign}")
    if kind == "1/size":
        return (f"{minus}1/{n} ({labels(n)})",
                f"divided by {n} where it should not be (a mean where a sum belongs, or "
                f"the 1/{n} applied twice){sign}")
    if kind in ("root", "1/root"):
        inverse = kind == "1/root"
        return (f"{_root_text(c, n, inverse)} ({labels(n)})",
                f"a 1/√{n} scale {'applied twice' if inverse else 'was forgotten'} "
                f"(attention scales by 1/√d, here d = {n}){sign}")
    return _fraction_text(c, n, sign)


def _fraction_text(c, frac, sign) -> tuple[str, str]:
    text = (f"{'-' if c < 0 else ''}"
            + (str(frac.numerator) if frac.denominator == 1
               else f"{frac.numerator}/{frac.denominator}"))
    if frac == 2:
        return text, f"a factor of 2 too many (a term counted twice){sign}"
    if frac == Fraction(1, 2):
        return text, f"a factor of 2 missing (the 2 of d(x²)/dx = 2x?){sign}"
    return text, (f"a constant factor is wrong (a missing or extra mean, sum, or factor "
                  f"of 2){sign}")


def fit_sign(ev):
    """``A = -N`` everywhere: beyond noise at some element, or, where no element alone is
    (bfloat16, whose tolerance reaches values of order 1), on the agreement of many
    elements, by the rule :func:`fit_scale` names a factor on (:func:`_consistent_scale`).
    """
    if not ev.n_failed:
        return None
    fit = fit_claim(ev, -ev.n, ev.tol, factor=-1.0)
    if fit is not None:
        return fit._replace(params={**fit.params, "said": ""})
    fit, said = _consistent_scale(ev, -1.0)
    return None if fit is None else fit._replace(params={**fit.params, "said": said})


def fit_scale(ev):
    """``A = c N`` everywhere for one constant ``c`` (not 1, not -1)."""
    n, a = ev.n[ev.keep], ev.a[ev.keep]
    s = _top(n)
    if not ev.n_failed or s == 0 or not np.isfinite(s) or n.size < MIN_PER_PARAMETER:
        return None                # one element: any factor fits it (a value, not a scale)
    c = float(np.dot(a / s, n / s) / np.dot(n / s, n / s))   # least squares, scaled
    if abs(c) <= 1e-12 or abs(c - 1) <= 1e-9 or abs(c + 1) <= 1e-9:
        return None
    fit = fit_claim(ev, c * ev.n, abs(c) * ev.tol, factor=c)
    said = ""
    if fit is None:
        fit, said = _consistent_scale(ev, c)
    if fit is None:
        return None
    known = getattr(ev, "known", None)
    text, meaning = name_factor(c, ev.a.shape, known, _factor_uncertainty(ev, c),
                                role=getattr(ev, "role", None))
    return fit._replace(params={**fit.params, "factor_text": text, "meaning": meaning + said})


#: Failed elements a scale must explain when no one of them is beyond noise alone.
MIN_CONSISTENT = 3


def _consistent_scale(ev, c):
    r"""``A = c N`` named on the agreement of many elements, when none alone is off by more
    than ``2 SLACK`` tolerances (a 10% slip in float16 is about 6): ``(Fit, said)`` or
    ``(None, "")``. The claim must fit as usual (every element within ``SLACK``); besides,

    - at least :data:`MIN_CONSISTENT` elements failed, and the fit takes the largest
      mismatch down at least ``2 SLACK``-fold (``before >= 2 SLACK after``): the
      mismatch is the factor, not noise around it (one element off, or errors of mixed
      sign, leave as much as they had);
    - ``c`` differs from 1 by at least ``SLACK`` times its uncertainty from the
      tolerances, :math:`\sigma_c = \sqrt{\sum \tau^2 N^2} / \sum N^2` (each
      tolerance taken as a standard deviation, which it bounds).
    """
    known = ev.keep & np.isfinite(ev.n)
    n, a, t = ev.n[known], ev.a[known], ev.tol[known]
    failed = int((ev.failed & known).sum())
    if failed < MIN_CONSISTENT or n.size < MIN_PER_PARAMETER * MIN_CONSISTENT:
        return None, ""
    scale = t * (1 + abs(c))
    with np.errstate(divide="ignore", invalid="ignore"):
        after = float(np.max(np.abs(a - c * n) / scale))
        before = float(np.max(np.abs(a - n) / scale))
    if not (after <= SLACK and before >= 2 * SLACK * after and before > 0):
        return None, ""
    s = _top(n)
    m = n / s
    sigma = float(np.sqrt(np.sum((t / s) ** 2 * m ** 2)) / np.sum(m ** 2))
    if not abs(c - 1) >= SLACK * sigma:
        return None, ""
    said = (f" (no element alone is off by more than {2 * SLACK:g} tolerances, but all "
            f"{n.size} agree on the factor, which differs from 1 by "
            f"{abs(c - 1) / sigma:.3g} times its uncertainty ±{sigma:.2g})")
    return Fit(c * ev.n, before, after, {"factor": c, "consistent_elements": int(n.size)}), said


def _per_slice_factors(ev, axis):
    labels, count = slices_along(ev.a.shape, tuple(i for i in range(ev.a.ndim) if i != axis))
    k = labels[ev.keep]
    an = np.bincount(k, weights=ev.a[ev.keep] * ev.n[ev.keep], minlength=count)
    nn = np.bincount(k, weights=ev.n[ev.keep] ** 2, minlength=count)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(nn > 0, an / np.where(nn > 0, nn, 1.0), 1.0)
    return c, labels


def fit_scale_per_slice(ev):
    """``A = c_k N`` on slice ``k`` along one axis (a factor per channel, per batch item)."""
    if not ev.n_failed:
        return None
    for axis, size in enumerate(ev.a.shape):
        if size < 2 or ev.keep.sum() < MIN_PER_PARAMETER * size:
            continue
        c, labels = _per_slice_factors(ev, axis)
        # every factor is fitted on elements of its own (a sample may leave a slice empty)
        if np.bincount(labels[ev.keep], minlength=size).min() < MIN_PER_PARAMETER:
            continue
        if np.ptp(c) <= 1e-12 * np.max(np.abs(c)):
            continue                       # one factor: a global scale, not this cause
        fit = fit_claim(ev, c[labels] * ev.n, np.abs(c[labels]) * ev.tol)
        if fit is None:
            continue
        role = getattr(ev, "role", None)
        where = axis_label(role, axis)
        off = np.flatnonzero(np.abs(c - 1) > 1e-6)
        if off.size < 2:
            continue                       # one slice off: a mask (a region), named there
        shown = ", ".join(f"{v:.6g}" for v in c[:8]) + (", …" if c.size > 8 else "")
        how = f"a different factor per index along {where}: {shown}"
        near = float(np.max(np.abs(c - 1)))
        if near < 1e-2:
            how += (f" (all within {near:.2g} of 1: a small term such as an epsilon "
                    f"differs between the forward and the backward pass)")
        return fit._replace(params={"axis": axis, "axis_text": where,
                                    "factors": [float(v) for v in c], "how": how})
    return None
