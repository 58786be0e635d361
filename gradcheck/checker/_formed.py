r"""The magnitudes ``f``'s outputs are formed from, measured: the rounding a derivative of
a cancelling result carries.

A derivative computed in floating point carries rounding at the scale of the terms it is
summed from, not of its own value. Where those terms cancel -- a layer norm's or a
softmax's outputs summed, a bias followed by a batch norm, the derivative of a function
that is constant along some direction -- the true derivative is zero or nearly so, and
a right backward returns rounding of order ``eps`` times the terms, which the output's
own value (about zero too) does not show. Two allowances need that scale: the
linearity stage's (:mod:`._linearity`: two calls of a linear backward differ by that
rounding) and the element-wise one (:meth:`._tolerance.Tolerance.elementwise` through
the resolution :math:`r_j`: an analytic value of ``1e-17`` where the numerical one is
exactly 0). One measurement serves both, :func:`row_magnitudes`, made only when a
comparison departs beyond the allowance set by the outputs' own values (eighteen calls
of ``f``), and kept on the check's problem so that no check makes it twice
(:func:`measured_once`).

The measurement: per output of ``f``, ``1/eps`` times the largest of :data:`PROBES`
combinations

.. math:: |3 A_1 - 3 A_2 + A_3| / 4, \quad
          A_k = f(x + k\delta) + f(x - k\delta) - 2 f(x)

of second differences along random :math:`\delta` (each element moved by an odd
multiple, about ``min(1024, eps**-0.25)``, of the ulp of its size or of its argument's
root mean square, the larger). Near the point a second difference is
:math:`a |k\delta| + b k^2 \delta^2 + c k^4 \delta^4` (a kink :math:`a`, a curvature
:math:`b`), so :math:`A_1, A_2, A_3` hold 1, 2, 3 times the kink and 1, 4, 9 times the
curvature, and :math:`3 A_1 - 3 A_2 + A_3` neither. The curvature has to go too: the
smallest move that changes ``x``'s low bits can be a noticeable share of the scale ``f``
varies on (float32 ``x = 100 + 0.0075 N(0, 1)`` under a batch norm: 54 ulps of 100 are 5%
of the spread), and the former :math:`A_1 - A_2/2`, which cancels only a kink, read the
batch norm's curvature as rounding -- an allowance of 1.0 on a gamma gradient of 6, so
that a 5% error in it passed. What is left of ``f``'s variation is
:math:`36 c \delta^4`. The weights of the combination on the seven values of ``f`` sum
to 16 in size, four times those of :math:`A_1 - A_2/2`: the quarter keeps the rounding
measured at the scale it was.
The moves are far above the ulps of the sums ``f`` forms, so that their rounding changes;
exact in floating point, so that no rounding of the points enters; odd, so that the low
bits of every element change -- a step of a power of two leaves them, and with them the
rounding of a mean subtracted, as they were: a standardized row's mean measured 0.
(Fewer ulps per move, ``eps**-0.125`` or ``eps**-0.0625``, changed nothing on the offset
batch norms once the curvature cancels.) What is left is the rounding of ``f`` at seven
points, of the terms each output is formed from. :mod:`gradcheck.numdiff._problem`
measures the same quantity per argument for the numerical side's error bars (a root
mean square, a steadier estimate for a bar, where an allowance wants the largest
sample), with power-of-two steps.

A right derivative rounds at that scale; a wrong one is off by a share of the terms
themselves (a term left out, a sign, a factor), far beyond ``eps`` of them, so an
allowance of 64 ulps of the measured magnitude keeps a wrong gradient of 1e-6 relative
failing in float64 (``tests/test_cancellation.py`` pins both).

The analytic side's own terms
-----------------------------
``f``'s outputs need not show the terms a right gradient rounds at. At order 2, the
backward of torch's ``batch_norm(x).sum()`` over a batch of two is rounding that does
not change as ``x`` moves (0 in most columns, +-2e-16 in one at seed 13: its two rows
are negatives of each other), so its outputs measure next to no terms, while torch's
double backward forms its own zero from terms about the size of the cotangent and
returns rounding of them: ``order2.x[0, 1]`` -3.46e-16 against an allowance of 3.7e-28
(seed 13; 10 of fresh seeds 12-59 failed so). :func:`gradient_magnitudes` measures those
terms the same way, on the backward as a function of its cotangent, the point held, and
then of the point, the cotangent held (*The point's own rounding* below). The cotangent,
in which a backward is linear, is moved by 3 or 5 times ``2**-6`` of each element, drawn
per element (:data:`LINEAR_SHARE`), over :data:`GRADIENT_PROBES` draws. A share changes
every bit of an element, where moves on the grid of the cotangent's root mean square
left the rounding of sums of its smaller entries as it was (``order2.grad_output`` at
seed 24: three draws in ten read 4e-5 of the terms). Its size was chosen on that batch
norm: shares of ``2**-10`` and ``2**-8`` still left the rounding of
``order2.grad_output`` at seed 104 as it was (the value 5 to 25 times the rounding
read); ``2**-6`` with six probes (and the point held) read more than the value on all of
40 draws at seed 104, and at seed 13 a third of it or more on 39 of 40 (the worst a
quarter, 1/4.1: on such a draw a right double backward still fails); ``2**-5`` and
``2**-4``, cotangents up to twice as large, read more than their rounding on the float32
batch norm below and let its 5% slip through. What is left is the rounding of the
backward at seven cotangents, per element of each gradient; the larger of it and the
point's reading below, taken as at least its root mean square over the argument, is the
backward's rounding. The element-wise allowance takes :data:`OWN_BARS` of it as a floor
of the resolution (:meth:`._scalarize.Problem.resolution`), with the outputs' measure,
once an element departs beyond the first allowance: 84 calls of the backward more (36
with the cotangent moved, 48 with the point moved), made once per check. Four, not the
64 ulps of a magnitude: the measure is the rounding itself (the combination's seven or
eight roundings, the largest of six draws), not the size of the terms, and it is large
where the backward truly rounds coarsely -- the gamma gradient of a float32 batch norm
of inputs at 100 with a spread of 0.0075 (``tests/test_cancellation.py``), rounding of
0.6%, where 64 of it let a 5% slip through (at shares of ``2**-10`` and three draws,
three let a right double backward fail on 7 of 300 draws at seed 13, four on none). It
is taken only for elements whose value lies within it (a gradient at the rounding of its
own terms): a value far above its rounding is held to its dtype's ulps, so that a
float64 gradient computed in float32, which rounds at 4e-8 of itself, still fails
(``tests/test_torch.py``). It is an allowance for the backward's rounding, so a wrong
backward is still off by a share of its terms: a gradient as small as that rounding but
not cancelling (``1e-16 logsumexp(x)``) with one element off by 3% of itself fails
alone. A backward that is not linear in its cotangent, or not deterministic, may read a
large rounding here; the linearity stage (:mod:`._linearity`) fails it whatever the
element-wise verdict.

The point's own rounding
------------------------
A backward is linear in its cotangent ``v`` with a map formed from the point: what it
computes is :math:`(J + E)\,v`, ``E`` the rounding of everything it forms from ``x``
alone (the forward's values it reuses, a mean subtracted, an inverse spread). Moving
``v`` changes the rounding of the sums that take ``v`` in, never ``E``: :math:`E v` is
linear in ``v`` and the combination cancels it. At order 2 that is what torch's double
backward of ``batch_norm(x).sum()`` over a batch of two returns: the two rows' ``x -
mean`` do not cancel exactly, their sum is a rounding residue of ``x[0] + x[1]`` (0 or
one ulp, as ``x`` moves), and the double backward differentiates the formula around it,
a fixed linear map of ``v`` of about ``eps`` times the terms ``1 / s^3`` of a feature of
spread ``s``: ``order2.x[1, 1]`` 2.45e-13 at seed 110 (a spread of 0.065), where the
cotangent's moves read 2.6e-14 and four of that failed it. The numerical side, which
differences the backward over the same residue, read 2.32e-13 (the true value is 0).

So the backward is measured a second time as a function of the point (every float
argument moved, the cotangent held), by :func:`_point_roundings`: a quarter of ``|S_1 -
3 S_2 + 3 S_3 - S_4|`` with ``S_k = g(x + k d) + g(x - k d)``. On each side of the point
the values along ``+-k d`` are polynomials in ``k`` to second order (a curvature, a
slope) and what the point itself holds drops out: the combination never takes ``g(x)``,
and a third difference of ``S_1 .. S_4`` leaves no constant, linear or quadratic part of
either side, so a step of the backward exactly at the point -- a leaky ReLU's mask at
exact zeros of ``x``, an arg-max between exact ties -- is not read as rounding (measured
with ``3 A_1 - 3 A_2 + A_3``, which keeps ``g(x)``, such a step was, and a leaky slope
slip was no longer named, ``tests/test_causes.py``); what is left of a smooth backward
``g`` is ``5 d^4`` times its fourth derivative. Its weights sum to 16 in size, as those
of ``3 A_1 - 3 A_2 + A_3``, so a quarter keeps the same scale. The moves are small, 2 to
6 ulps of each element's size (or of its argument's root mean square, the larger;
:data:`POINT_ULPS`), so that a backward varying on a scale of ``N`` ulps reads about
:math:`1.25 (6 / N)^4` of itself, below its own rounding of about ``1 / N`` of itself
wherever ``N`` is above a dozen ulps; and whole numbers of ulps of either parity: a sum
of two elements each moved by an odd number of ulps moves by an even number, and the
rounding of a sum one binade up (the residue above) stays as it was (moved by 3 or 5
ulps, odd, half of the single draws at seed 110 read next to nothing; moved by 2 to 6, a
fifth to a third). :data:`POINT_PROBES` draws of six: on 50 sets of six draws at seed
110 none read less than half the value (of three, 2% read less than a quarter, and
failed it). Seeds 0-500 of that batch norm pass (seed 110 failed before, 1 of 0-200).
"""

from __future__ import annotations

import numpy as np

from gradcheck._precision import widened as _wide
from gradcheck.checker._tolerance import Tolerance, real_eps
from gradcheck.numdiff._steps import typical_size

__all__ = ["row_magnitudes", "gradient_magnitudes", "measured_once",
           "gradients_measured_once", "PROBES", "SALT",
           "GRADIENT_SALT", "GRADIENT_PROBES", "LINEAR_SHARE", "OWN_BARS", "POINT_SALT",
           "POINT_PROBES", "POINT_ULPS"]

#: Random probes (six calls of ``f`` each): one sample of a rounding error may come out
#: small by chance.
PROBES = 3
#: Mixed with the seed for the probes' random signs.
SALT = 0x40BE5
#: Mixed with the seed for the moves of the backward's own measure.
GRADIENT_SALT = 0x6AD5E
#: Random probes of the backward's measure (six calls of the backward each): its
#: elements are often few (a scalar), with no others to pool with (see the module notes).
GRADIENT_PROBES = 6
#: Multiples of the backward's rounding, measured, that the element-wise allowance takes
#: (see the module notes).
OWN_BARS = 4.0
#: The unit of the share of each element of the cotangent the backward's measure moves
#: it by (3 or 5 of them, drawn per element; see the module notes).
LINEAR_SHARE = 2.0 ** -6
#: Mixed with the seed for the moves of the point in the backward's own measure.
POINT_SALT = 0x9F0C3
#: Random probes of the backward's measure with the point moved (eight calls of the
#: backward each; see the module notes).
POINT_PROBES = 6
#: The ulps of each element the point is moved by, about (2 to 6 of them, a whole number
#: drawn per element; see the module notes).
POINT_ULPS = 4


def _is_float(a) -> bool:
    return a.dtype.kind in "fc" or a.dtype.name == "bfloat16"


def _odd(rng, count, shape) -> np.ndarray:
    """Odd integers between about ``count / 2`` and ``3 count / 2``."""
    half = max(int(count) // 2, 1)
    return (2 * rng.integers(half // 2, half // 2 + half, shape) + 1).astype(np.float64)


def _whole(rng, count, shape) -> np.ndarray:
    """Integers, odd and even, between about ``count / 2`` and ``3 count / 2``."""
    half = max(int(count) // 2, 1)
    return rng.integers(half, 3 * half + 1, shape).astype(np.float64)


def _eps_of(y, args) -> float:
    """The eps that turns a rounding of ``y`` into the magnitude of its terms: ``y``'s own,
    or that of the coarsest float16 / bfloat16 argument when coarser."""
    eps = real_eps(y.dtype) if _is_float(y) else real_eps(np.float64)
    # float16 / bfloat16 arguments of a wider output (ml_dtypes' bfloat16 matmul returns
    # float32): the moves are on the argument's coarse grid, and what they leave is
    # measured in the argument's units, not the output's (a float32 eps turned f's
    # variation over 1-3 bfloat16 ulps into terms of 8 877 on values of 1, and a
    # sign-flipped bfloat16 weight gradient passed)
    coarse = max((real_eps(x.dtype) for x in args if _is_float(x)), default=0.0)
    return max(eps, coarse) if coarse >= 2.0 ** -11 else eps


def _roundings(f, args, ys, seed, salt, linear=(), probes=PROBES) -> list | None:
    """Per array of ``ys`` (``f(*args)``'s, a tuple of arrays shaped like ``ys``), the
    largest quarter of ``|3 A_1 - 3 A_2 + A_3|`` over :data:`PROBES` draws of the moves
    (module notes), the arguments numbered in ``linear`` moved by :data:`LINEAR_SHARE` of
    themselves; None where ``f`` raises or returns something unfit off the point."""
    rng = np.random.default_rng([int(seed), salt])
    units = []
    for i, x in enumerate(args):
        if not _is_float(x):
            units.append(None)
            continue
        if i in linear:
            # f is linear in it (a backward in its cotangent): no curvature to stay
            # below, so a share of each element, 3 or 5 LINEAR_SHAREs drawn per element,
            # which changes every bit of it
            units.append((np.abs(_wide(x)) * LINEAR_SHARE, 4))
            continue
        xe = real_eps(x.dtype)
        # at least the argument's root mean square, as numdiff's steps (a fixed 1 moved
        # float32 inputs of size 1e-5 by a fifth of themselves: a tanh fed through
        # weights of 1e5 showed its curvature, read as rounding 1e6 times too large)
        s = np.maximum(np.abs(_wide(x)), typical_size(x))
        # the ulp of max(|x_j|, the argument's typical size): x lies on its grid, so
        # x + k d is exact for d a multiple of it (an odd one, so that the low bits of x
        # change too)
        units.append((xe * 2.0 ** np.floor(np.log2(s)), min(1024.0, xe ** -0.25)))
    worst = [np.zeros(np.shape(y)) for y in ys]
    y0 = [_wide(y) for y in ys]
    with np.errstate(all="ignore"):
        for _ in range(probes):
            signs = [None if u is None else
                     u[0] * _odd(rng, u[1], np.shape(u[0])) * rng.choice([-1.0, 1.0],
                                                                      np.shape(u[0]))
                     for u in units]
            out = []
            for k in (1, -1, 2, -2, 3, -3):
                point = tuple(x if d is None else (_wide(x) + k * d).astype(x.dtype)
                              for x, d in zip(args, signs))
                try:
                    v = [_wide(a) for a in f(*point)]
                except Exception:       # user code failing off the point: no measure
                    return None
                if len(v) != len(y0) or any(a.shape != y.shape for a, y in zip(v, y0)):
                    return None
                out.append(v)
            for j, y in enumerate(y0):
                # the second differences at d, 2d, 3d: 3 A1 - 3 A2 + A3 holds neither a
                # kink nor a curvature, a quarter of it the rounding at the former scale
                a, b, c = (out[i][j] + out[i + 1][j] - 2 * y for i in (0, 2, 4))
                second = np.abs(3 * a - 3 * b + c) / 4
                worst[j] = np.maximum(worst[j], np.where(np.isfinite(second), second, 0.0))
    return worst


def row_magnitudes(f, args, y, seed) -> np.ndarray:
    """Per output of ``f(*args)`` (``y``, its value at the point), the magnitude of the
    terms it is formed from, measured (see the module notes): an array shaped like ``y``,
    float64. Zeros where ``f`` raises or returns something unfit off the point (an
    allowance then stays at the outputs' own values).

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.checker._formed import row_magnitudes
    >>> x = np.random.default_rng(0).standard_normal((2, 64))
    >>> f = lambda x: (x - x.mean(1, keepdims=True)).mean(1) / x.std(1)   # zero
    >>> y = f(x)
    >>> bool(np.all(np.abs(y) < 1e-16))
    True
    >>> bool(np.all(row_magnitudes(f, (x,), y, seed=0) > 1e-2))
    True
    """
    y = np.asarray(y)
    worst = _roundings(lambda *a: (f(*a),), args, (y,), seed, SALT)
    return np.zeros(y.shape) if worst is None else worst[0] / _eps_of(y, args)


def _point_roundings(g, args, ys, seed, probes=POINT_PROBES) -> list | None:
    """Per array of ``ys`` (``g(*args)``'s), the largest quarter of ``|S_1 - 3 S_2 +
    3 S_3 - S_4|``, ``S_k = g(x + k d) + g(x - k d)``, over ``probes`` draws of moves
    ``d`` of 2 to 6 ulps of each float element (module notes, *The point's own
    rounding*); None where ``g`` raises or returns something unfit off the point."""
    rng = np.random.default_rng([int(seed), POINT_SALT])
    units = []
    for x in args:
        if not _is_float(x):
            units.append(None)
            continue
        # the ulp of max(|x_j|, the argument's typical size), as row_magnitudes': x lies
        # on its grid, and x + k d is exact
        s = np.maximum(np.abs(_wide(x)), typical_size(x))
        units.append(real_eps(x.dtype) * 2.0 ** np.floor(np.log2(s)))
    worst = [np.zeros(np.shape(y)) for y in ys]
    shapes = [np.shape(y) for y in ys]
    with np.errstate(all="ignore"):
        for _ in range(probes):
            moves = [None if u is None else
                     u * _whole(rng, POINT_ULPS, np.shape(u)) * rng.choice([-1.0, 1.0],
                                                                     np.shape(u))
                     for u in units]
            sums = []
            for k in (1, 2, 3, 4):
                total = None
                for sign in (1, -1):
                    point = tuple(x if d is None else
                                  (_wide(x) + sign * k * d).astype(x.dtype)
                                  for x, d in zip(args, moves))
                    try:
                        v = [_wide(a) for a in g(*point)]
                    except Exception:       # user code failing off the point: no measure
                        return None
                    if len(v) != len(shapes) or any(a.shape != t
                                                    for a, t in zip(v, shapes)):
                        return None
                    total = v if total is None else [a + b for a, b in zip(total, v)]
                sums.append(total)
            for j in range(len(shapes)):
                # each side's values a polynomial in k up to k**2 (a step or a kink at the
                # point, a curvature) leave S_1 - 3 S_2 + 3 S_3 - S_4 nothing: its weights
                # sum to 16 in size, as 3 A_1 - 3 A_2 + A_3's, and a quarter of that
                # keeps the same scale
                a, b, c, e = (t[j] for t in sums)
                third = np.abs(a - 3 * b + 3 * c - e) / 4
                worst[j] = np.maximum(worst[j], np.where(np.isfinite(third), third, 0.0))
    return worst


def gradient_magnitudes(f_vjp, cotangent, args, grads, seed) -> tuple:
    """Per argument, the rounding of each element of its analytic gradient ``grads[j]``
    (``f_vjp(cotangent, *args)``, None for a gradient not returned), measured as
    :func:`row_magnitudes` measures ``f``'s outputs' -- the backward as a function of its
    cotangent, the point held, and of the point, the cotangent held, the larger (see the
    module notes, *The analytic side's own terms* and *The point's own rounding*) -- at
    least its root mean square over the argument,
    and given in the resolution's units: the magnitude of terms whose ``k_an`` ulps
    (:mod:`._tolerance`) are :data:`OWN_BARS` of it. Zeros where the backward raises or
    returns something unfit off the point.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.checker._formed import gradient_magnitudes
    >>> x = np.random.default_rng(0).standard_normal(6)
    >>> def f_vjp(r, x):                 # of softmax(x).sum(), which is 1: zero by
    ...     s = np.exp(x - x.max())      # cancellation, as the rounding of terms r s_j
    ...     s /= s.sum()
    ...     return s * (r - (r * s).sum())
    >>> r = np.asarray(0.7)
    >>> g = f_vjp(r, x)
    >>> bool(np.all(np.abs(g) < 1e-15))
    True
    >>> (m,) = gradient_magnitudes(f_vjp, r, (x,), (g,), seed=0)
    >>> bool(np.all(m > 1e-3))          # the terms r s_j, not the value 0
    True
    """
    grads = tuple(np.zeros(np.shape(x)) if g is None else np.asarray(g)
                  for g, x in zip(grads, args))
    point = (np.asarray(cotangent), *args)

    def backward_at(r, at):
        out = f_vjp(r.copy(), *at)
        out = (out,) if len(args) == 1 and not isinstance(out, (tuple, list)) else tuple(out)
        return tuple(np.zeros(np.shape(x)) if g is None else np.asarray(g)
                     for g, x in zip(out, args))

    def backward(r):
        return backward_at(r, args)

    worst = _roundings(backward, point[:1], grads, seed, GRADIENT_SALT, linear=(0,),
                       probes=GRADIENT_PROBES)
    if worst is None:
        return tuple(np.zeros(g.shape) for g in grads)
    # the rounding of what the backward forms from the point alone, which enters it as a
    # fixed linear map of the cotangent and no move of the cotangent shows (module notes)
    held = np.asarray(cotangent)
    moved = _point_roundings(lambda *a: backward_at(held, a), args, grads, seed)
    if moved is not None:
        worst = [np.maximum(w, m) for w, m in zip(worst, moved)]
    out = []
    for w, g, x in zip(worst, grads, args):
        # scaled by the largest, so that gradients of 1e300 do not overflow squared
        peak = float(np.max(w)) if w.size else 0.0
        rms = (peak * float(np.sqrt(np.mean((w / peak) ** 2)))
               if 0.0 < peak < np.inf else 0.0)
        w = np.maximum(w, rms)
        # in the resolution's units: the magnitude whose k_an ulps are OWN_BARS roundings
        tol = Tolerance.for_dtype(g.dtype, argument=np.asarray(x).dtype)
        # only for values at that rounding (a gradient zero by cancellation): a value
        # well above its own rounding is held to its dtype's ulps (a float64 gradient
        # computed in float32 rounds at 4e-8 of itself, and must fail)
        at = np.abs(_wide(g)) <= OWN_BARS * w
        out.append(np.where(at, OWN_BARS * w / (tol.rule.analytic_ulps * tol.eps), 0.0))
    return tuple(out)


def measured_once(cache: dict, f, args, y, seed) -> np.ndarray:
    """:func:`row_magnitudes`, made once per ``cache`` (a check's problem keeps one) and
    seed."""
    key = ("rows", int(seed))
    if key not in cache:
        cache[key] = row_magnitudes(f, args, y, seed)
    return cache[key]


def gradients_measured_once(cache: dict, f_vjp, cotangent, args, grads, seed) -> tuple:
    """:func:`gradient_magnitudes`, made once per ``cache`` and seed."""
    key = ("gradients", int(seed))
    if key not in cache:
        cache[key] = gradient_magnitudes(f_vjp, cotangent, args, grads, seed)
    return cache[key]
