r"""The rounding of the point: how far a derivative computed at ``x`` may sit from the one
at ``x`` because ``f`` rounds what it forms from ``x``.

A function that subtracts a large common part -- a batch norm of inputs ``100 + 1e-3 z``,
``x - mean(x)`` -- forms its intermediate values with the rounding of ``x``'s size, not
of their own: the mean is off by about ``eps |x|``, which is ``eps |x| / spread``
relative to ``x - mean``. Every derivative computed from such code, the analytic one
and the complex step alike, is the derivative at a point moved by that rounding: off
by about :math:`H\,\varepsilon |x|`, with :math:`H` the change of the derivative per
unit move of the point, which at a spread of 1e-3 is a thousand times the derivative.
Neither the complex step's bar (its two steps share the moved point) nor the analytic
allowance (ulps of the values compared) sees it: float64 tanh of a batch norm of
``100 + 1e-3 z``, analytic and complex step both off by 2e-12 of the gradient from the
exact derivative, and 1e-13 apart, where the complex step's bar said 2e-14.

Measured here (:func:`point_rounding`), only for elements whose complex-step value the
real steps confirmed and which still fail (:func:`gradcheck.checker._numeric.second_look`):
the complex-step derivatives of those elements at the point moved by :math:`\pm\delta`,
:math:`\delta` a random move of every element of the argument by an odd multiple
(about ``MOVE`` ulps, exact in floating point) of the ulp of its size. The second
difference :math:`d(x + \delta) + d(x - \delta) - 2 d(x)` cancels the derivative's
linear change along :math:`\delta` and is, for moves of a few ulps, the difference of
the rounding of the point at three points: half its largest size over ``PROBES``
moves is added to the element's error bar. The analytic gradient is moved the same way
(one call of the backward per point, the check's cotangent, the other arguments at the
point) and its second differences count too: float32 code computes its own ``x - mean``,
whose rounding need not be the complex evaluation's (seed 304 of the float32 corpus
below: the complex step's own change covered a quarter of the analytic side's error;
22 of 72 elements of a right gradient failed). Measured on the case above (seeds 0-4,
``properties/test_known_issues.py``): that half covers the complex step's error
against the exact derivative (at most 0.84 of it), the analytic value then lies within
0.50 of the allowance, and a 1e-6 relative slip in one element is still 26 to 1.2e4
allowances off. float32 batch norms of ``100 + s z``, ``s`` from 1e-4 to 1e-2 (seeds
100-119 of the same file's corpus, and 300-319 held out): no right gradient fails
where 13 and 15 of 20 did (with the steps of offset arguments,
:mod:`gradcheck.numdiff._steps`), a 5% error in x's largest element is caught in 19 and
16 of 20 (each one missed named in the report's notes). In float32 the moves are a visible share of a
spread of 2.5e-4 (8 ulps of 100 are 6e-5): the second difference then holds some of the
derivative's curvature too, which widens the bar, never narrows it. No cap: the real
steps have confirmed the element (a kink within the moves would have shown to them),
and a bar that grows beyond 5% of an element is named in the report's notes
(:func:`gradcheck.checker._notes.coarse_notes`).
"""

from __future__ import annotations

import numpy as np

from gradcheck.numdiff import numerical_vjp
from gradcheck.numdiff._steps import typical_size

__all__ = ["point_rounding", "MOVE", "PROBES", "SALT"]

#: About how many ulps each element moves (odd multiples between MOVE/2 and 3 MOVE/2):
#: enough that the sums ``f`` forms change their rounding, few enough that the
#: derivative's own curvature along the move stays far below it.
MOVE = 8
#: Random moves; the largest second difference is kept (two left a channel of float32
#: batch norm, whose elements share the mean's rounding, with bars 2 to 4 times short).
PROBES = 4
#: Mixed with the check's seed for the moves' random signs.
SALT = 0x9017


def _derivative_at(target, base, index):
    """Complex-step derivatives of the flat elements ``index`` with the argument at
    ``base`` (flat) elsewhere."""
    shape = np.shape(target.arg)

    def sub(v):
        v = np.asarray(v)
        x = base.astype(np.result_type(base.dtype, v.dtype), copy=True)
        x[index] = v
        return target.g(x.reshape(shape))

    got = numerical_vjp(sub, base[index], target.cotangent, method="complex", seed=target.seed)
    return np.asarray(got.grad, np.float64).reshape(-1), int(got.nfev)


def _analytic_at(backward, base, shape, index):
    """The analytic gradient of the flat elements ``index`` with the argument at ``base``
    (flat), or None where ``backward`` is None."""
    if backward is None:
        return None
    return np.asarray(backward(base.reshape(shape)), np.float64).reshape(-1)[index]


def point_rounding(target, index, backward=None, probes=None):
    """Per flat element ``index`` of ``target.arg``, the size of the change of its
    complex-step derivative when the point moves by the rounding ``f`` forms it with
    (the module notes), and the evaluations of ``f`` that took: ``(sizes, nfev)``.
    With ``backward`` (the argument's value -> the analytic gradient there, the rest of
    the check as it is), the analytic gradient's change at the same moved points too,
    the larger of the two per element. Zeros where ``f`` or the backward fails off the
    point. ``probes``: how many moves (default ``PROBES``).

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.checker._numeric import Target
    >>> x = 100 + 1e-3 * np.random.default_rng(0).standard_normal(32)
    >>> f = lambda x: np.tanh((x - x.mean()) / x.std())
    >>> t = Target(f, x, np.ones(32) / 32)
    >>> nu, nfev = point_rounding(t, np.arange(32))
    >>> bool(np.all(nu > 0)), bool(np.all(nu < 1e-6))      # derivatives of order 1e3
    (True, True)
    """
    index = np.asarray(index, dtype=np.intp)
    x = np.asarray(target.arg)
    base = x.reshape(-1)
    eps = float(np.finfo(x.dtype).eps)
    size = np.maximum(np.abs(base).astype(np.float64), typical_size(x))
    unit = eps * 2.0 ** np.floor(np.log2(size))
    rng = np.random.default_rng([int(target.seed), SALT])
    worst, nfev = np.zeros(index.size), 0
    try:
        with np.errstate(all="ignore"):
            d0, nfev = _derivative_at(target, base, index)
            a0 = _analytic_at(backward, base, x.shape, index)
            for _ in range(PROBES if probes is None else probes):
                k = 2 * rng.integers(MOVE // 4, MOVE // 4 + MOVE // 2, base.size) + 1
                move = unit * k * rng.choice([-1.0, 1.0], base.size)
                up, down = ((base + move).astype(x.dtype), (base - move).astype(x.dtype))
                (d_up, n_up), (d_down, n_down) = (_derivative_at(target, p, index)
                                                  for p in (up, down))
                nfev += n_up + n_down
                second = np.abs(d_up + d_down - 2 * d0) / 2
                if a0 is not None:
                    a_up, a_down = (_analytic_at(backward, p, x.shape, index)
                                    for p in (up, down))
                    second = np.fmax(second, np.abs(a_up + a_down - 2 * a0) / 2)
                worst = np.maximum(worst, np.where(np.isfinite(second), second, 0.0))
    except Exception:       # user code failing off the point: no measure
        return np.zeros(index.size), nfev
    return worst, nfev
