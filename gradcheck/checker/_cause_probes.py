r"""Causes that ask the code again: the backward with other cotangents, the forward at
other points.

**Linearity.** A vector-Jacobian product is linear in the cotangent,
:math:`\mathrm{vjp}(aR + bR') = a\,\mathrm{vjp}(R) + b\,\mathrm{vjp}(R')`, whatever ``f``
is. A backward that ignores its incoming gradient (returns the gradient for an all-ones
or a one-hot cotangent whatever it is given), or uses it non-linearly (clips or
normalizes it), breaks that, and one or two more calls show it: ``vjp(2R)`` against
``2 vjp(R)``, ``vjp(-R)`` against ``-vjp(R)``, and ``vjp(R + R')`` against
``vjp(R) + vjp(R')``. Scaling by 2 and negating are exact in floating point, so for a
linear backward the first two agree to a few roundings; the sum agrees to the rounding
of the terms. A departure is named only when it is a sizeable share of the gradient
(:data:`MIN_DEPARTURE`); an affine backward ``L(R) + c`` is told apart (a term added
outside the product with ``R``). A checker that differentiates with one-hot cotangents (as
``torch.autograd.gradcheck`` does) passes a backward that returns the one-hot gradient;
the random cotangent here and these calls do not. The calls are made only when a check
has failed, and the diagnosis says how many were made.

**Derivative at the output.** For an element-wise ``f`` (``y = f(x)`` of ``x``'s shape,
``N = R f'(x)``), a backward that evaluates the derivative at the output returns
:math:`R\,f'(y)`. Four calls of ``f`` (central differences at ``x`` and at ``y``) test
it: the first pair confirms ``f`` is element-wise, the second predicts the buggy value.

**Passed through.** ``A = R``: the local derivative was never multiplied in (no call).
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._fit import SLACK, Fit, fit_claim, misfit
from gradcheck.checker._tolerance import reduction_growth

__all__ = ["fit_nonlinear", "fit_derivative_at_output", "fit_passed_through"]

#: Seed of the second cotangent used to test additivity.
SECOND_COTANGENT_SEED = 12345
#: Smallest departure from linearity named, as a share of the gradient's norm: a
#: backward that uses its cotangent non-linearly (ignores, clips, squares it) departs by
#: tens of percent; a linear backward with a small blemish (a little noise added, one
#: element changed) departs by far less, and its mismatch is better told by where it is.
MIN_DEPARTURE = 0.1


def _eps(arr) -> float:
    dt = np.asarray(arr).dtype
    return float(np.finfo(dt).eps) if dt.kind == "f" else float(np.finfo(np.float64).eps)


def _rounding(eps, *arrays):
    """Allowed difference between two ways of computing the same linear map."""
    total = sum(np.abs(a) for a in arrays)
    return 64 * eps * (total + max(float(np.max(np.abs(a), initial=0.0)) for a in arrays))


def fit_nonlinear(ev):
    """The backward, called again with ``2R``, ``-R``, ``R + R'``, is not linear in ``R``."""
    known = getattr(ev, "known", None)
    if not ev.n_failed or known is None or known.backward is None or known.cotangent is None:
        return None
    r = np.asarray(known.cotangent)
    calls = 0

    def run(cot):
        nonlocal calls
        calls += 1
        out = np.asarray(known.backward(np.asarray(cot, dtype=r.dtype)))
        if out.shape != ev.a.shape or out.dtype.kind not in "fiu":
            raise ValueError("not a gradient of the argument's shape")
        return out

    try:
        return _linearity(ev, r, run, lambda: calls)
    except Exception:   # the backward under test failed when called again: untestable
        return None


def _departure(x, y) -> float:
    """How far ``x`` is from ``y``, as a share of ``y``'s norm."""
    ny = float(np.linalg.norm(y))
    return float(np.linalg.norm(x - y)) / ny if ny else float(np.linalg.norm(x) > 0)


def _linearity(ev, r, run, calls):
    """The calls of :func:`fit_nonlinear` (``calls()``: how many so far)."""
    a1 = ev.a

    def named(observed, expected, how):
        return Fit(a1, misfit(observed, expected, _rounding(eps, observed, expected)),
                   float("nan"), {"how": how, "calls": calls(),
                                  "departure": _departure(observed, expected)})

    def departs(observed, expected):
        """Beyond rounding, and by a sizeable share of the gradient."""
        return (misfit(observed, expected, _rounding(eps, observed, expected)) > 2 * SLACK
                and _departure(observed, expected) > MIN_DEPARTURE)

    raw2 = run(2 * r)
    # the checker's long-sum growth, L the largest array the check sees (_tolerance)
    eps = _eps(raw2) * reduction_growth(max((n for _, n in ev.known.sizes), default=0))
    a2 = np.asarray(raw2, np.float64)
    if departs(a2, 2 * a1):
        again = np.asarray(run(r), np.float64)
        if departs(again, a1):
            return named(a2, 2 * a1, "returns a different gradient when called twice with the "
                         "same cotangent: it is not deterministic (a random draw, or state "
                         "kept between calls)")
        if misfit(a2, a1, _rounding(eps, a2, a1)) <= SLACK:
            return named(a2, 2 * a1, "returns the same gradient for 2R as for R: it ignores "
                         "its incoming gradient (computes the gradient for a fixed cotangent "
                         "such as all ones or a one-hot, whatever it is given)")
        if misfit(a2, 4 * a1, _rounding(eps, a2, 4 * a1)) <= SLACK:
            return named(a2, 2 * a1, "returns 4 times the gradient for 2R: it uses its "
                         "incoming gradient squared")
        a3 = np.asarray(run(-r), np.float64)
        offset = (a1 + a3) / 2                   # an affine backward: L(R) + c
        if misfit(a2 - 2 * a1, -offset, _rounding(eps, a2, 2 * a1, a3)) <= SLACK:
            return named(a2, 2 * a1, f"returns L(R) + c, with a term c that does not scale "
                         f"with R (up to {float(np.max(np.abs(offset))):.3g}): something is "
                         f"added to the gradient outside the product with R (a "
                         f"regularizer's gradient or a bias term?)")
        return named(a2, 2 * a1, f"returns for 2R something other than twice the gradient for "
                     f"R (off by up to {float(np.max(np.abs(a2 - 2 * a1))):.3g}): it uses "
                     f"its incoming gradient non-linearly (clips, normalizes or thresholds "
                     f"it)")
    a3 = np.asarray(run(-r), np.float64)
    if departs(a3, -a1):
        return named(a3, -a1, "returns for -R something other than minus the gradient for R: "
                     "it uses its incoming gradient through an even function (its absolute "
                     "value or square)")
    second = np.random.default_rng(SECOND_COTANGENT_SEED).standard_normal(r.shape)
    second = second.astype(r.dtype)
    a4 = np.asarray(run(second), np.float64)
    a5 = np.asarray(run(r + second), np.float64)
    if departs(a5, a1 + a4):
        return named(a5, a1 + a4, f"returns for R + R' something other than the sum of the "
                     f"gradients for R and R' (off by up to "
                     f"{float(np.max(np.abs(a5 - a1 - a4))):.3g}): it uses its incoming "
                     f"gradient non-linearly")
    return None


def fit_passed_through(ev):
    """``A = R``: the incoming gradient returned unchanged."""
    known = getattr(ev, "known", None)
    r = None if known is None else known.cotangent
    if not ev.n_failed or r is None or np.shape(r) != ev.a.shape:
        return None
    return fit_claim(ev, np.asarray(r, np.float64))


def _central(forward, at, dtype):
    """Element-wise central differences of ``forward`` at ``at`` (all elements at once),
    and the step used."""
    x = np.asarray(at, np.float64)
    h = np.cbrt(np.finfo(dtype).eps) * np.maximum(np.abs(x), 1.0)
    hi = np.asarray(forward((x + h).astype(dtype)), np.float64)
    lo = np.asarray(forward((x - h).astype(dtype)), np.float64)
    step = (x + h).astype(dtype).astype(np.float64) - (x - h).astype(dtype).astype(np.float64)
    return (hi - lo) / step


def fit_derivative_at_output(ev):
    """An element-wise ``f`` whose backward evaluates ``f'`` at the output ``y = f(x)``."""
    known = getattr(ev, "known", None)
    if (not ev.n_failed or known is None or known.forward is None or known.x is None
            or known.cotangent is None or np.shape(known.cotangent) != ev.a.shape):
        return None
    x = np.asarray(known.x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    r = np.asarray(known.cotangent, np.float64)
    y = np.asarray(known.forward(x), np.float64)
    if y.shape != x.shape:
        return None
    at_x = r * _central(known.forward, x, dtype)
    # f is element-wise (its Jacobian's row sums are its diagonal) when R f'(x) is N
    off = np.abs(at_x - ev.n)[ev.keep]          # on the elements compared (a sample's)
    scale = float(np.max(np.abs(ev.n[ev.keep]), initial=0.0)) or 1.0
    if off.size == 0 or np.any(off > 1e-3 * scale + SLACK * ev.tol[ev.keep]):
        return None
    predicted = r * _central(known.forward, y, dtype)
    spread = 10 * off.max() + np.zeros(ev.a.shape)
    fit = fit_claim(ev, predicted, spread)
    return None if fit is None else fit._replace(params={"calls": 5})
