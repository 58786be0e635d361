r"""How far an analytic gradient may stray from the numerical one before it is wrong.

Neither side is exact. The numerical derivative comes with its own error bar ``E``
(truncation plus rounding, estimated by the differentiator per element). The analytic
gradient was computed in the function's dtype and carries rounding of its own, which
grows with the number of terms summed and shrinks with nothing. The allowed difference
for element ``j`` is

.. math:: \tau_j = k_{num} E_j + k_{an}\,\varepsilon\,(|n_j| + s + r_j)

where :math:`\varepsilon` is the machine epsilon of the analytic gradient's dtype,
:math:`s` is the root-mean-square of the numerical gradient over the argument (an
element near zero can still carry the rounding of large terms that cancelled),
:math:`r_j = \max_i |R_i f_i| / \max(|x_j|, 1)` is the smallest derivative one term
of the scalarized value :math:`C = \langle R, f\rangle` can express (changing
:math:`x_j` by its own size, or by 1, moves that term by less than its rounding below
that: a gradient that is exactly zero because ``C`` does not depend on :math:`x_j`, say
a bias shared by every logit of a softmax, is computed as rounding of that size; the
largest term, not their sum, so the floor does not grow with the size of ``f``), and
the factors come from this table:

=========  ===============  ==============  ===============
dtype      :math:`k_{num}`  :math:`k_{an}`  :math:`k_{gap}`
=========  ===============  ==============  ===============
float64    10               64              1/10
float32    10               64              1/10
=========  ===============  ==============  ===============

``k_num = 10``: the differentiator's estimate bounds the true error for about 95% of
elements and is rarely more than 10x below it, so ten of it leaves no false alarms
while staying orders of magnitude below any real bug in float64. ``k_an = 64``: a
float32 convolution gradient sums a few hundred products per element; its rounding is
tens of ulps of the typical magnitude. A 1e-5 relative error in one float64 element is
~1e10 ulps and a 2% error in a float32 element ~1e5 ulps: both far outside.

Users may add a floor with ``atol``/``rtol``: :math:`\tau_j \leftarrow \max(\tau_j,
atol + rtol\,\max(|a_j|, |n_j|))`. They are never needed for a right verdict.

At a kink
---------
An element the differentiator marks non-differentiable comes with its one-sided
derivatives :math:`\ell_j, r_j` and an error bar :math:`E_j = |r_j - \ell_j|/2 +
\rho_j` (half their gap plus their rounding). Comparing the analytic value with the
midpoint within :math:`10 E_j` would accept anything within five gaps of the kink --
a ReLU backward returning 2 where the limits are 0 and 1 would pass. So the analytic
value must instead lie in :math:`[\min(\ell_j, r_j) - \kappa_j, \max(\ell_j, r_j) +
\kappa_j]` with

.. math:: \kappa_j = k_{num}\,\rho_j + k_{gap}\,|r_j - \ell_j|
          + k_{an}\,\varepsilon\,(\max(|\ell_j|, |r_j|) + s + r_j)

(here :math:`r_j` in the last term is the resolution above, not the right limit)

``k_gap = 1/10``: the one-sided estimates come from one-sided stencils whose truncation
is not in :math:`\rho_j`. For correct code only one of them matters -- the analytic
value is the derivative of the branch the point lies on, i.e. the estimate on the
point's own side (the other side's stencil may straddle the kink and be far off when the
kink is near but not at the point), or, exactly at the kink, a value between the two.
Measured on ``elu(z; alpha) * cos(z)`` at points within 1e-8 of its kink and exactly on
it: the own-side estimate is within 4e-13 (float64) and 4e-5 (float32) of the gap from
the true one-sided derivative, far inside a tenth of the gap, while a value that is no
one-sided derivative at all (a ReLU backward returning 2 or -1/2) is a whole gap or more
outside. What no rule can see: within a step of a kink, the *other* branch's derivative
(a ReLU backward returning 0 at ``z = 1e-9``) lies between the limits and passes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ToleranceRule", "TOLERANCES", "tolerance_for", "allowed_difference", "kink_allowance",
           "real_eps"]


class ToleranceRule(NamedTuple):
    numeric_factor: float      # k_num: multiples of the numerical error bar
    analytic_ulps: float       # k_an: rounding allowance of the analytic side, in eps
    kink_gap: float = 0.1      # k_gap: share of the one-sided gap allowed beyond the limits


TOLERANCES = {
    np.dtype(np.float64): ToleranceRule(10.0, 64.0, 0.1),
    np.dtype(np.float32): ToleranceRule(10.0, 64.0, 0.1),
}


def real_eps(dtype) -> float:
    """Machine epsilon of ``dtype``'s real precision (float32 for complex64 and float16)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc" and dtype.itemsize <= (8 if dtype.kind == "c" else 4):
        return float(np.finfo(np.float32).eps)
    return float(np.finfo(np.float64).eps)


def tolerance_for(dtype) -> ToleranceRule:
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        dtype = np.dtype(np.float64) if dtype.itemsize >= 16 else np.dtype(np.float32)
    return TOLERANCES.get(dtype, TOLERANCES[np.dtype(np.float64)])


def allowed_difference(analytic, numeric, error, dtype, *, atol=None, rtol=None,
                       resolution=0.0) -> np.ndarray:
    """The per-element tolerance tau described in the module docstring (``resolution``
    is :math:`r_j`)."""
    rule = tolerance_for(dtype)
    eps = real_eps(dtype)
    n = np.abs(numeric)
    scale = float(np.sqrt(np.mean(n * n))) if n.size else 0.0
    tol = rule.numeric_factor * np.asarray(error, dtype=np.float64) + \
        rule.analytic_ulps * eps * (n + scale + resolution)
    if atol is not None or rtol is not None:
        floor = (atol or 0.0) + (rtol or 0.0) * np.maximum(np.abs(analytic), n)
        tol = np.maximum(tol, floor)
    return tol


def kink_allowance(left, right, error, numeric, dtype, *, atol=None, rtol=None,
                   resolution=0.0) -> np.ndarray:
    """How far beyond its one-sided limits an analytic value at a kink may lie (kappa above).

    ``error`` is the differentiator's error bar there (half the gap plus rounding);
    ``numeric`` the whole numerical gradient of the argument (for the scale ``s``).
    """
    rule = tolerance_for(dtype)
    eps = real_eps(dtype)
    n = np.abs(numeric)
    scale = float(np.sqrt(np.mean(n * n))) if n.size else 0.0
    gap = np.abs(np.asarray(right, np.float64) - np.asarray(left, np.float64))
    rounding = np.maximum(np.asarray(error, np.float64) - 0.5 * gap, 0.0)
    kappa = rule.numeric_factor * rounding + rule.kink_gap * gap + \
        rule.analytic_ulps * eps * (np.fmax(np.abs(left), np.abs(right)) + scale + resolution)
    if atol is not None or rtol is not None:
        floor = (atol or 0.0) + (rtol or 0.0) * np.fmax(np.abs(left), np.abs(right))
        kappa = np.maximum(kappa, floor)
    return kappa
