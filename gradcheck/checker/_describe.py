"""What a mismatch looks like, when no cause fits: where it is and how large.

Where: how many elements, and along which axes they are confined (the indices that hold
a mismatch, when not all do), on which side of zero ``x`` is there, where either side is
zero. How large: the worst element with both values and its excess over the tolerance,
the typical size of ``|A - N|`` relative to ``|N|`` at the mismatches, and the overall
norm ratio and cosine of the two gradients.
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._fit import SLACK

__all__ = ["describe"]


def _indices(idx) -> str:
    idx = [int(i) for i in idx]
    if len(idx) > 6:
        return f"{len(idx)} indices ({', '.join(map(str, idx[:3]))}, …, {idx[-1]})"
    return ("index " if len(idx) == 1 else "indices ") + ", ".join(map(str, idx))


def _along_axis(hit, n) -> str:
    """The indices of an axis (of ``n``) that hold a mismatch: named, or, when they are
    most of the axis, the ones that do not.

    >>> _along_axis([0, 1, 2, 3, 4, 5, 6, 7], 9)
    'all but index 8'
    >>> _along_axis([2, 5], 9)
    'only at indices 2, 5'
    """
    missing = np.setdiff1d(np.arange(n), hit)
    if missing.size < len(hit):
        return f"all but {_indices(missing)}"
    return f"only at {_indices(hit)}"


def _where(ev, failed) -> list[str]:
    parts = []
    if failed.sum() == 1:
        return []                        # the worst element says where
    for axis, n in enumerate(ev.a.shape):
        if n < 2:
            continue
        hit = np.flatnonzero(np.any(np.moveaxis(failed, axis, 0).reshape(n, -1), axis=1))
        if 0 < hit.size < n:
            parts.append(f"{_along_axis(hit, n)} of axis {axis} (of {n})")
    known = getattr(ev, "known", None)
    x = None if known is None or known.x is None else np.asarray(known.x, np.float64)
    if x is not None and x.shape == ev.a.shape and failed.sum() > 1:
        xs = x[failed]
        own = getattr(known, "name", None) or "x"        # the argument's own values
        if np.all(xs < 0):
            parts.append(f"all where {own} < 0")
        elif np.all(xs > 0):
            parts.append(f"all where {own} > 0")
    # zero: within the tolerance of 0 and an order of magnitude below the other side (in
    # float16 or bfloat16 a tolerance can reach values of order 1, not zero)
    zero_a = failed & (np.abs(ev.a) <= SLACK * ev.tol) & (np.abs(ev.a) <= np.abs(ev.n) / 10)
    zero_n = failed & (np.abs(ev.n) <= SLACK * ev.tol) & (np.abs(ev.n) <= np.abs(ev.a) / 10)
    if zero_a.any():
        parts.append(f"the analytic gradient is zero at {int(zero_a.sum())} of them")
    if zero_n.any():
        parts.append(f"the numerical gradient is zero at {int(zero_n.sum())} of them")
    return parts


def _ratio_and_cosine(a, n) -> tuple[float, float]:
    """``|a|/|n|`` and the cosine of ``a`` and ``n``, both scale-free: computed on the
    vectors divided by their largest entry, so values near the dtype's largest number
    (whose squares overflow) give the right numbers, not an overflow."""
    a, n = a[np.isfinite(a) & np.isfinite(n)], n[np.isfinite(a) & np.isfinite(n)]
    big = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(n), initial=0.0)))
    if big > 0:
        a, n = a / big, n / big
    na, nn = float(np.linalg.norm(a)), float(np.linalg.norm(n))
    ratio = na / nn if nn else float("inf")
    cosine = float(np.dot(a, n) / (na * nn)) if na and nn else 0.0
    return ratio, cosine


def describe(ev) -> tuple[str, dict]:
    """``(message, evidence)`` describing the mismatch of ``ev`` (see the module notes).

    >>> from gradcheck.checker._diagnose import Evidence
    >>> big = np.array([1e300, -2e300, 3e300])           # their squares overflow
    >>> text, details = describe(Evidence(big * [1, 1, -1], big, 1e285))
    >>> details["norm_ratio"], round(details["cosine"], 6)
    (1.0, -0.285714)
    """
    failed = ev.failed
    # counted as the report's table counts (failed of checked, kinks included), the
    # kinks said apart: they are left out of the description
    k, total, kinks = int(failed.sum()), int(ev.a.size), int((~ev.keep).sum())
    a, n = ev.a, ev.n
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        diff = np.abs(a - n)   # may be inf for values near the largest float: said as inf
        excess = np.where(failed, diff / np.maximum(ev.tol, np.finfo(float).tiny), -1.0)
        rel = diff[failed] / np.maximum(np.abs(n[failed]), np.finfo(float).tiny)
    worst = np.unravel_index(int(np.argmax(excess)), a.shape) if a.size else ()
    idx = tuple(int(i) for i in worst)
    typical = float(np.median(rel)) if rel.size else 0.0
    ratio, cosine = _ratio_and_cosine(a[ev.keep], n[ev.keep])
    where = _where(ev, failed)
    text = (f"No known cause fits. The mismatch: {k} of {total} elements"
            + (f" ({kinks} at kinks, left out here)" if kinks else ""))
    if k > 1:
        text += ("; " + "; ".join(where) if where else ", spread over every axis") + ". "
    else:
        text += ". "
    if k:
        text += (f"{'Largest' if k > 1 else 'It is'} at {idx}: analytic {a[worst]:.6g}, "
                 f"numeric {n[worst]:.6g} "
                 f"(|diff| {diff[worst]:.3g}, {excess[worst]:.3g} × the "
                 f"tolerance); ")
        text += (f"|A − N| is typically {typical:.2g} × |N| at the mismatches; " if
                 k > 1 and np.isfinite(typical) and typical < 1e6 else "")
    text += f"overall |A|/|N| = {ratio:.4g}, cosine {cosine:.4g}."
    evidence = {"misfit_before": float(excess.max()) if k else 0.0, "failed_elements": k,
                "largest_numeric": float(np.max(np.abs(n[ev.keep]))) if ev.keep.any() else 0.0,
                "where": where, "worst_index": list(idx), "typical_relative_error": typical,
                "norm_ratio": ratio, "cosine": cosine}
    return text, evidence
