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
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._tolerance import real_eps
from gradcheck.numdiff._steps import typical_size

__all__ = ["row_magnitudes", "measured_once", "PROBES", "SALT"]

#: Random probes (six calls of ``f`` each): one sample of a rounding error may come out
#: small by chance.
PROBES = 3
#: Mixed with the seed for the probes' random signs.
SALT = 0x40BE5


def _wide(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)


def _is_float(a) -> bool:
    return a.dtype.kind in "fc" or a.dtype.name == "bfloat16"


def _odd(rng, count, shape) -> np.ndarray:
    """Odd integers between about ``count / 2`` and ``3 count / 2``."""
    half = max(int(count) // 2, 1)
    return (2 * rng.integers(half // 2, half // 2 + half, shape) + 1).astype(np.float64)


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
    eps = real_eps(y.dtype) if _is_float(y) else real_eps(np.float64)
    # float16 / bfloat16 arguments of a wider output (ml_dtypes' bfloat16 matmul returns
    # float32): the moves are on the argument's coarse grid, and what they leave is
    # measured in the argument's units, not the output's (a float32 eps turned f's
    # variation over 1-3 bfloat16 ulps into terms of 8 877 on values of 1, and a
    # sign-flipped bfloat16 weight gradient passed)
    coarse = max((real_eps(x.dtype) for x in args if _is_float(x)), default=0.0)
    if coarse >= 2.0 ** -11:
        eps = max(eps, coarse)
    rng = np.random.default_rng([int(seed), SALT])
    units = []
    for x in args:
        if not _is_float(x):
            units.append(None)
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
    worst = np.zeros(y.shape)
    y0 = _wide(y)
    with np.errstate(all="ignore"):
        for _ in range(PROBES):
            signs = [None if u is None else
                     u[0] * _odd(rng, u[1], np.shape(u[0])) * rng.choice([-1.0, 1.0],
                                                                      np.shape(u[0]))
                     for u in units]
            out = []
            for k in (1, -1, 2, -2, 3, -3):
                point = tuple(x if d is None else (_wide(x) + k * d).astype(x.dtype)
                              for x, d in zip(args, signs))
                try:
                    v = _wide(f(*point))
                except Exception:       # user code failing off the point: no measure
                    return np.zeros(y.shape)
                if v.shape != y.shape:
                    return np.zeros(y.shape)
                out.append(v)
            # the second differences at d, 2d, 3d: 3 A1 - 3 A2 + A3 holds neither a kink
            # nor a curvature, a quarter of it the rounding at the former scale (notes)
            a, b, c = (out[i] + out[i + 1] - 2 * y0 for i in (0, 2, 4))
            second = np.abs(3 * a - 3 * b + c) / 4
            worst = np.maximum(worst, np.where(np.isfinite(second), second, 0.0))
    return worst / eps


def measured_once(cache: dict, f, args, y, seed) -> np.ndarray:
    """:func:`row_magnitudes`, made once per ``cache`` (a check's problem keeps one) and
    seed."""
    key = ("rows", int(seed))
    if key not in cache:
        cache[key] = row_magnitudes(f, args, y, seed)
    return cache[key]
