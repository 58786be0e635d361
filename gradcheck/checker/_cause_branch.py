"""A generic cause at a kink's side: one branch of a piecewise ``f`` has the wrong slope.

A leaky ReLU's backward with the wrong slope for ``x < 0`` (``0.1`` where ``0.01``
belongs, or the leak dropped) is wrong at every negative input by one factor, and, where
``x`` holds exact zeros, at the kinks too: the backward takes the negative branch there,
and its value lies outside the one-sided derivatives. ``value_mask`` reads a threshold
off the data and needs enough elements to rule out chance (six elements with two zeros
cannot); ``outside_kink_limits`` names the kinks alone. Here the threshold is given, not
read: it is where the checker found the kinks (every failing kink -- or, when none
fails, every kink -- at one value ``x0`` of the argument). The claim: on one side of ``x0`` the analytic gradient is ``c N`` for one
factor ``c`` (every informative element there), at the kinks it is ``c`` times the
derivative from that side, and on the other side it agrees. It must hold at every kink
so placed, explain a clear mismatch, and rest on at least :data:`MIN_EXPLAINED`
elements (the side's and the kinks'). The message names the branch's slope as the
backward has it and as it should be, read off the one-sided derivatives at a kink
(``left / right``: ``0.01`` for a leaky ReLU of slope 0.01).
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._fit import SLACK, Fit, fit_claim, informative

__all__ = ["fit_kink_branch", "MIN_EXPLAINED"]

#: Elements (the side's informative ones and the failing kinks) the factor must hold on.
MIN_EXPLAINED = 3


def _relation(c: float) -> str:
    if abs(c) <= 1e-12:
        return "zero"
    if abs(c + 1) <= 1e-9:
        return "sign"
    return "scaled"


def fit_kink_branch(ev):
    """``A = c N`` where ``x`` is on one side of the failing kinks' ``x0`` (and ``c`` times
    that side's one-sided derivative at the kinks), ``A = N`` on the other side."""
    judged, known = ev.judged, ev.known
    if judged is None or known.x is None or judged.left is None or judged.right is None:
        return None
    x = np.asarray(known.x, np.float64)
    at_kink = np.asarray(judged.nondiff & ~judged.shared, bool)
    kinks = at_kink & np.asarray(judged.failed, bool)
    if not kinks.any():
        # kinks within their wider allowance (a dropped leak of 0.01 is within it) still
        # place the threshold, and must agree with the claim
        kinks = at_kink
    if x.shape != ev.a.shape or not kinks.any() or not ev.keep.any():
        return None
    x0 = np.unique(x[kinks])
    if x0.size != 1:
        return None
    x0 = float(x0[0])
    left = np.asarray(judged.left, np.float64)
    right = np.asarray(judged.right, np.float64)
    info = informative(ev)
    for below in (True, False):
        side = ev.keep & ((x < x0) if below else (x > x0))
        on = side & info
        if not on.any():
            continue
        n, a = ev.n[on], ev.a[on]
        c = float(np.dot(a, n) / np.dot(n, n))
        if abs(c - 1) <= 1e-6:
            continue
        limit, other = (left, right) if below else (right, left)
        tol_k = np.asarray(judged.tolerance, np.float64)[kinks]
        # at a kink the backward takes this branch (c times its derivative) or the other
        took = np.abs(ev.a[kinks] - c * limit[kinks]) <= SLACK * tol_k * (1 + abs(c))
        rest = np.abs(ev.a[kinks] - other[kinks]) <= SLACK * tol_k
        if not (took | rest).all() or int(on.sum() + kinks.sum()) < MIN_EXPLAINED:
            continue
        predicted = np.where(side, c * ev.n, ev.n)
        spread = np.where(side, abs(c) * ev.tol, 0.0)
        fit = fit_claim(ev, predicted, spread)
        if fit is None:
            continue
        return _said(fit, c, below, x0, kinks, left, right, int(on.sum()), int(took.sum()))
    return None


def _said(fit: Fit, c, below, x0, kinks, left, right, count, took) -> Fit:
    where = f"x {'<' if below else '>'} {x0:g}"
    relation = _relation(c)
    # the branch's slope relative to the other one's, from a kink's one-sided derivatives
    i = np.flatnonzero(kinks.ravel())[0]
    near, far = (left.ravel()[i], right.ravel()[i]) if below else (right.ravel()[i],
                                                                    left.ravel()[i])
    slope = ""
    if far != 0 and np.isfinite(near / far):
        true = near / far
        slope = (f" (that branch's slope, relative to the other's, is {c * true:.4g} in the "
                 f"backward where {true:.4g} belongs)")
    what = {"zero": "zero (the branch's derivative dropped, as a ReLU's where a leaky "
                    "ReLU's belongs?)",
            "sign": "the numerical one with its sign flipped",
            "scaled": f"{c:.4g} times the numerical one"}[relation]
    n_kinks = int(kinks.sum())
    if took == n_kinks:
        at = f"at the {n_kinks} kink(s) it is {c:.4g} times the derivative from that side"
    elif took:
        at = (f"at {took} of the {n_kinks} kink(s) it is {c:.4g} times the derivative from "
              f"that side, at the others the derivative from the other side")
    else:
        at = f"at the {n_kinks} kink(s) it is the derivative from the other side"
    text = (f"Where {where} (the {count} element(s) on that side of the kinks at x = {x0:g}) "
            f"the analytic gradient is {what}, and {at}; where x is on the other side it "
            f"agrees. The backward uses the wrong derivative on the {where} branch{slope}.")
    return fit._replace(params={**fit.params, "text": text, "factor": c, "x0": x0,
                                "side": "below" if below else "above", "kinks": n_kinks})
