r"""Step sizes: per element, following each input's own scale, powers of two.

The rule
--------
For element :math:`x_j` with typical scale :math:`\tau_j` (option ``scale``; by default
1, or less for an argument whose elements are small, see below) the scale is
:math:`s_j = \max(|x_j|, \tau_j)` and the base step of a stencil of order :math:`p` is

.. math:: h_j = 2^{\operatorname{round}\log_2(\beta\, \varepsilon^{1/(p+1)} s_j)},
          \qquad \beta = 1/2 ,

with :math:`\varepsilon` the machine epsilon of the evaluation dtype. The exponent
balances truncation :math:`\propto h^p` against rounding :math:`\propto \varepsilon/h`:
if :math:`f` is analytic within a radius :math:`\approx s_j` of :math:`x_j` (Cauchy:
:math:`|f^{(m)}| \lesssim m!\,M/s^m`), the total error is smallest at
:math:`h \approx s_j\,\varepsilon^{1/(p+1)}` up to a constant; :math:`\beta` is that
constant as measured (``benchmarks/bench_numdiff.py``: the median error is flat within
a factor of two for :math:`\beta \in [1/4, 1]`). float64, order 5: :math:`h \approx 1.2
\cdot 10^{-3} s_j`; float32: :math:`h \approx 3.5 \cdot 10^{-2} s_j`. Powers of two keep
:math:`x_j + k h_j` exact unless the sum crosses a binade (the actual offsets are used
then). Steps never fall below 16 units in the last place of :math:`x_j`.

Why :math:`\max(|x_j|, \tau_j)`, and what happens when it is wrong
------------------------------------------------------------------
A large input (``1e6``) needs a large step, or the change of :math:`f` drowns in its
rounding; an input near zero takes the typical scale, so that an input ``1e-8`` away
from a ReLU kink is not differenced with an absurd ``1e-11`` step whose rounding error
swamps the answer. By default the typical scale is 1 unless the argument's own size,
its root mean square :math:`r` (:func:`typical_size`), is below half the step that 1
gives: then :math:`\tau = 2 r / (\beta\varepsilon^{1/(p+1)})`, so that the base step is about
:math:`2 r` (``OWN_SIZE``; float32: arguments below 0.017, float64: below 6e-4,
float16: below 0.08). A float32 weight of ``1.5e-6`` feeding inputs of ``2e5`` into a
tanh was differenced with ``h = 2^{-5}`` from a floor of 1, across the whole tanh, where
every node is saturated and the differences look converged. Above that size the floor
stays 1: an argument of size 0.13 differenced with steps of its own size shrank the
steps by 2**3 in float64 and left the rounding bars of a batch norm 2x short
(``properties/test_known_issues.py``). Two situations then call for a *smaller* step,
and both are detected from the evaluations rather than guessed:

* **leaving the domain** (``sqrt`` or ``log`` at ``x = 1e-6`` with ``h = 1e-3``: ``f``
  returns NaN or inf). The element is retried with the step the input's own magnitude
  gives, :math:`\min(h/16,\ 2^{\operatorname{round}\log_2(\beta\varepsilon^{1/(p+1)}|x_j|)})`
  -- boundaries at zero are at distance :math:`|x_j|` -- and shrinks by 16 per retry
  after that. Non-finite values never enter a result.
* **truncation dominating** (the function varies on a scale below :math:`s_j`, or a kink
  lies inside the stencil): the step is cut to where the estimated truncation error
  would be a fifth of the rounding error, :math:`h \cdot (\rho / 5T)^{1/(p+1)}`, clipped
  to :math:`[2^{-10}, 1/2]` per retry. Where the truncation already failed to fall as a
  smooth function's would (a kink), the cut is to a quarter of the kink's distance when
  the straddling pass located it, else :math:`2^{-10}` -- but for a kink at the point,
  no lower than where its one-sided secants still resolve their gap, and at least a
  quarter (see :mod:`._adaptive`).
  A pass with no significant digit -- truncation at least its value, saturated
  values that look like a flat polynomial with a large trend -- is beyond the scale ``f`` varies on,
  where the smooth model's cut does not hold (``tanh(1e6 x)`` at ``x = 1e-7``, whose
  base step is ``1e-3``; logits offset by ``1e5``): it takes the largest cut, at once
  where no truncation sets one, after one retry otherwise (the first cut of a kink
  within the stencil stays the smooth model's, so the kink can still be located).
  Retries never go below 16 units in the last place of :math:`x_j`, and are powers of
  two too (rounded down): a step that is not leaves the sums ``f`` forms from
  :math:`x_j` with a rounding that changes from node to node as a slow sawtooth, which
  the stencil reads as slope (a float32 batch norm of inputs :math:`5 + 0.1 z`: the
  mean's rounding, 12 error bars); a power-of-two step above the sums' ulp leaves it
  the same at every node.

Offset arguments
----------------
An argument whose elements share a common part far above their spread -- inputs
``100 + 1e-3 z`` of a batch norm, which subtracts the common part -- is differenced by
``f`` on the spread, not on :math:`|x_j|`: steps of :math:`\max(|x_j|, 1)` times the
rule's factor are a hundred spreads there (float64), or thousands (float32: ``2**2`` at
100), and read as kinks on a smooth function, or pass with bars 15 to 100 times too
small. Where the root mean square of the argument about its median (:func:`offset_spread`)
is below ``OFFSET_SHARE`` of its own, that spread takes the place of
:math:`\max(|x_j|, \tau_j)` in the rule (real steps, default ``scale`` only; never below
16 ulps of :math:`x_j`). An elementwise ``f`` of such an argument loses digits to the
smaller step (its rounding grows as the step falls) but keeps an honest bar.

Complex step: :math:`h_j = 2^{\operatorname{round}\log_2(\varepsilon |x_j|)}`
(:math:`\varepsilon\tau_j` at zero). No subtraction takes place, so nothing pushes the
step up, and following :math:`|x_j|` keeps the truncation :math:`(h/|x_j|)^2 \approx
\varepsilon^2` relative even for ``sqrt`` at ``1e-6``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BETA", "rel_step", "typical_size", "offset_spread", "base_steps",
           "complex_steps", "direction_steps", "direction_floor", "retry_steps"]

#: Constant in front of eps**(1/(p+1)) (measured, see the module docstring).
BETA = 0.5
#: Bounds of the ratio between a retry's step and the step before it when truncation
#: dominated: at least halved (a smaller cut would not change the verdict of the error
#: model), at most cut by 1024 in one retry (the trend that sets the cut is an
#: extrapolation; a larger cut would trust it too far).
SHRINK_MIN, SHRINK_MAX = 2.0**-10, 0.5
#: By default a base step is at most about this many times the argument's root mean
#: square (see the module docstring; 1 cost one of 40 float16 slips: weights of 0.05
#: differenced with 2**-4 instead of 2**-3 drew bars 7.5x wider for the same value).
OWN_SIZE = 2.0
#: Largest ratio between a retry's step and the step before it where a kink sits at the
#: point and was not located (``kink_floor`` of :func:`retry_steps`).
KINK_SHRINK = 0.25
#: An argument whose root mean square about its median is below this share of its own
#: root mean square is offset: its real steps follow that spread (see the module notes).
OFFSET_SHARE = 2.0**-10
#: Ratio between a retry's step and the step before it after a point left f's domain.
DOMAIN_SHRINK = 1 / 16


def typical_size(x) -> float:
    """The root mean square of ``x``'s finite elements, or 1 where that is 0 (or not
    finite): the size an argument's elements have, as the steps and the checker's
    magnitude probe take it.

    Examples
    --------
    >>> import numpy as np
    >>> typical_size(np.array([1e-6, -7e-6]) * 2**20) == 5e-6 * 2**20   # sqrt(50/2)
    True
    >>> typical_size(np.zeros(3)), typical_size(np.array([np.nan, 2.0]))
    (1.0, 2.0)
    >>> typical_size(np.array([3e300, -4e300])) == 5e300 / 2**0.5   # no overflow
    True
    """
    a = np.asarray(x)
    a = np.abs(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64))
    a = a[np.isfinite(a)]
    top = float(a.max()) if a.size else 0.0
    rms = top * float(np.sqrt(np.mean((a / top) ** 2))) if top > 0 else 0.0
    return rms if rms > 0 and np.isfinite(rms) else 1.0


def offset_spread(x):
    """The root mean square of ``x`` about its median where that is below
    ``OFFSET_SHARE`` of ``x``'s own (an offset argument, see the module notes), else
    None.

    Examples
    --------
    >>> import numpy as np
    >>> x = 100 + 1e-3 * np.array([-1.0, 1.0, -1.0, 1.0])
    >>> round(offset_spread(x), 12), offset_spread(x - 100)
    (0.001, None)
    """
    a = np.asarray(x)
    if a.dtype.kind not in "f" or a.size < 2:
        return None
    flat = a.reshape(-1).astype(np.float64)
    flat = flat[np.isfinite(flat)]
    if flat.size < 2:
        return None
    spread = typical_size(flat - _median(flat))
    return spread if spread < OFFSET_SHARE * typical_size(flat) else None


def _median(flat) -> float:
    """``np.median`` of a 1-D finite float64 array, the same value, without the import
    of ``numpy.ma`` that ``np.median`` makes on its first call (7 ms of a command's
    start-up).

    >>> import numpy as np
    >>> a = np.random.default_rng(0).standard_normal(11)
    >>> bool(_median(a) == np.median(a)), bool(_median(a[:10]) == np.median(a[:10]))
    (True, True)
    """
    n = flat.size
    k = n // 2
    if n % 2:
        return float(np.partition(flat, k)[k])
    part = np.partition(flat, (k - 1, k))
    return float(np.mean(part[k - 1:k + 1]))


def _pow2(a):
    return 2.0 ** np.round(np.log2(a))


def rel_step(eps: float, order: int) -> float:
    """Step relative to the element's scale, ``BETA * eps**(1/(order+1))`` (the name is
    scipy.optimize's for a step relative to ``max(|x|, 1)``)."""
    return BETA * eps ** (1.0 / (order + 1))


def _floor(h, x):
    """At least 16 ulps of ``x`` (in x's own dtype), as a power of two."""
    ulp = np.spacing(np.abs(x)).astype(np.float64)
    return np.maximum(h, 2.0 ** np.ceil(np.log2(16 * np.maximum(ulp, np.finfo(np.float64).tiny))))


def _floor_scale(scale, typical, eps, order):
    """The typical scale :math:`\tau`: ``scale``, capped where ``typical`` (the argument's
    own size, given when the user gave no ``scale``) so that the step it sets,
    ``rel_step * tau``, is at most ``typical``."""
    if typical is None:
        return scale
    return np.minimum(scale, OWN_SIZE * typical / rel_step(eps, order))


def base_steps(x, scale, eps, order, step=None, typical=None):
    """The rule above, or the user's ``step`` (scalar or per element) as given.
    ``typical``: the argument's size (:func:`typical_size`) where ``scale`` is the
    default, None where the user set it."""
    xf = x.reshape(-1)
    if step is not None:
        return np.broadcast_to(np.asarray(step, np.float64), x.shape).reshape(-1).copy()
    s = np.maximum(np.abs(xf).astype(np.float64), _floor_scale(scale, typical, eps, order))
    spread = offset_spread(x) if typical is not None else None
    if spread is not None:
        s = np.minimum(s, spread)
    return _floor(_pow2(rel_step(eps, order) * s), xf)


def complex_steps(x, scale, eps):
    """``eps * m`` with ``m = |x|`` (or ``scale`` at zero), never above ``max(|x|, scale)``."""
    ax = np.abs(x.reshape(-1)).astype(np.float64)
    m = np.where(ax > 0, ax, scale)
    m = np.maximum(m, np.sqrt(np.finfo(x.dtype).tiny))
    return _pow2(eps * m)


def direction_steps(x, V, scale, eps, order, imag=False, typical=None):
    """Step ``t`` along each direction so that no element moves beyond its own step
    (``typical`` as for :func:`base_steps`, real steps only)."""
    if not imag:
        scale = _floor_scale(scale, typical, eps, order)
    s = np.maximum(np.abs(x.reshape(-1)).astype(np.float64), scale)
    spread = offset_spread(x) if typical is not None and not imag else None
    if spread is not None:
        s = np.minimum(s, spread)
    Vs = np.abs(V.reshape(V.shape[0], -1)) / s
    m = Vs.max(axis=1, initial=0.0)
    m = np.where(m > 0, m, 1.0)
    f = eps if imag else rel_step(eps, order)
    t = _pow2(f / m)
    return t if imag else np.maximum(t, direction_floor(x, V))


def direction_floor(x, V):
    """The smallest real step ``t`` along each direction (row of ``V``) that moves every
    element it moves by at least 16 of its ulps, as a power of two (the floor of
    :func:`base_steps` and :func:`retry_steps` for coordinates): below it the points round
    back towards ``x`` -- retries along a direction cut to ``2e-9`` left a float32 batch
    norm of inputs at 100 unmoved, whose differences of 0 then looked conclusive."""
    av = np.abs(V.reshape(V.shape[0], -1)).astype(np.float64)
    ulp = np.spacing(np.abs(x.reshape(-1))).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        need = np.where(av > 0, 16 * ulp / av, 0.0).max(axis=1, initial=0.0)
    return 2.0 ** np.ceil(np.log2(np.maximum(need, np.finfo(float).tiny)))


def retry_steps(h, x_src, rho, tau, nonfinite, eps, order, stuck=None, kink_at=None,
                blind=None, kink_floor=None):
    """Next step for quantities that need one (see the module docstring). ``stuck``
    marks quantities whose truncation did not fall with the last step as a smooth
    function's would: they take a quarter of the distance ``kink_at`` of a kink located
    within the step, else the largest cut, but not below ``kink_floor`` (the smallest
    step at which the one-sided secants of a kink at the point still resolve its gap)
    and at least a quarter; quantities ``blind`` (no significant digit: the step is
    beyond the scale ``f`` varies on) take the largest cut."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.clip((rho / (5 * tau)) ** (1.0 / (order + 1)), SHRINK_MIN, SHRINK_MAX)
        ratio = np.where(np.isfinite(ratio), ratio, SHRINK_MAX)
        if blind is not None:
            ratio = np.where(blind, SHRINK_MIN, ratio)
    if stuck is not None:
        located = np.asarray(kink_at) / (4 * h) if kink_at is not None else np.nan
        with np.errstate(invalid="ignore"):
            cut = SHRINK_MIN
            if kink_floor is not None:
                with np.errstate(divide="ignore"):
                    cut = np.clip(2.0 ** np.ceil(np.log2(np.asarray(kink_floor) / h)),
                                  SHRINK_MIN, KINK_SHRINK)
                cut = np.where(np.isfinite(cut), cut, SHRINK_MIN)
            located = np.where(np.isfinite(located), np.clip(located, SHRINK_MIN, SHRINK_MAX),
                               cut)
        ratio = np.where(stuck, located, ratio)
    smaller = 2.0 ** np.floor(np.log2(h * ratio))
    dom = h * DOMAIN_SHRINK
    if x_src is not None:
        ax = np.abs(x_src).astype(np.float64)
        own = _pow2(np.maximum(rel_step(eps, order) * ax, np.finfo(float).tiny))
        dom = np.where((ax > 0) & (own < dom), own, dom)
        floor = _floor(0.0 * h, x_src)
        smaller, dom = np.maximum(smaller, floor), np.maximum(dom, floor)
    return np.where(nonfinite, dom, smaller)
