r"""The rounding of a linear backward, measured: the linearity stage's last allowance.

:mod:`._linearity` tests ``vjp(cR) = c vjp(R)`` and ``vjp(R + R') = vjp(R) + vjp(R')``
within an allowance for rounding; a departure beyond it that may still be rounding is
judged once more with the rounding measured here.

The resolution floor divides the terms' rounding by ``max(|x_j|, 1)``, the distance over
which ``f`` is taken to change them; ``f`` may change them faster (a batch norm over a
batch of two varies on each feature's spread, and at order 2, the backward of
``batch_norm(x).sum()`` -- zero by cancellation -- departed by 111% of its norm, 2e-15,
beyond that floor on seeds 3-5). A departure still beyond the allowance with the
measured magnitudes is judged once more with the backward's own rounding, measured:
where a further call with ``R`` itself returns what the first did (deterministic), one
more with ``q (R + R')``, ``q = 1 + 3/1024``, whose products all round differently, and
``JITTER_BARS`` times ``|vjp(q(R + R'))/q - vjp(R + R')|`` (at least its root mean
square) is added to both allowances (the sum's own rounding: one with ``q R`` measured
4.7e-17 where ``vjp(R + R')`` departed by 9.9e-16, on a batch of two at order 2). A
linear backward's two calls differ by rounding alone. A clip of ``R`` at a threshold
moves by 0.3% of what it clips there, eight times which is 2.4%, far below the whole
clipped amount the ``-512 R`` test departs by; an even function of ``R`` or a threshold
at zero does not move at all; a backward that ignores ``R`` moves by 0.3% of itself.

That rounding need not move with a common factor of the cotangent: at order 2 over a
batch of two (torch's ``batch_norm(x).sum()``, shape (2, 3), seed 11) ``q (R + R')``
measured 9e-18 at ``order2.x[0, 2]`` where the additivity test departed by 9.9e-16, and
4e-16 on the scalar ``order2.grad_output`` at seed 26 where it measured 2e-18 -- 6 of 60
seeds failed a right double backward so. A departure still beyond is judged once more
with the additivity test's own rounding, measured at each of its three cotangents ``S``
(``R``, ``R'``, ``R + R'``), where each call's rounding is made: the largest of
``|vjp(S + D) + vjp(S - D) - 2 vjp(S)|`` over :data:`SPLITS` small splits ``D = S delta``
(``delta`` odd multiples of ``2**-10``, up to ``3 * 2**-10``, random signs), summed over
the three, ``JITTER_BARS`` times which is added to the additivity test's allowance (24
more calls, made only then, and only when the scaling test passes: its power of two is
exact, so that its departures are not this rounding). A linear backward gives its
rounding there: the entries of ``S +- D`` differ from ``S``'s in every bit below the
tenth, so their products and sums round afresh. A constant or an offset in the backward
cancels in it; a backward that keeps the largest entry of ``R`` (positively homogeneous,
so the scaling test passes it) keeps the same entry at ``S +- D`` and departs by
nothing; a clip moves by ``delta`` of what it clips, as under ``q``; ``R`` squared by
``2 D**2``, a millionth of itself. Over seeds 0-99 of that batch norm (9 reach this
measure) the largest departure is 0.16 of the allowance, and a double backward with a
non-additive term of 1e-9 of the largest entry of ``R`` still fails
(``tests/test_linearity.py``).
"""

from __future__ import annotations

import numpy as np

from gradcheck._precision import widened as _wide

__all__ = ["JITTER", "JITTER_BARS", "SPLITS", "SPLIT_SALT", "own_rounding",
           "split_rounding"]

#: The cotangent's factor for measuring the backward's own rounding: not a power of two,
#: so that every product with ``R`` rounds differently; near 1, so that a clip of ``R``
#: moves by 0.3% of what it clips (see the module notes).
JITTER = 1 + 3 * 2.0**-10
#: Multiples of that measured rounding allowed (two calls' roundings, three in a sum).
JITTER_BARS = 8.0
#: Draws of the small split that measures the additivity test's own rounding.
SPLITS = 4
#: Mixed with the seed for the split's random stream.
SPLIT_SALT = 0x5B117


def _rms(a) -> float:
    a = np.abs(_wide(a))
    return _norm(a) / np.sqrt(a.size) if a.size else 0.0


def _norm(a) -> float:
    """The 2-norm of ``a``, scaled by its largest entry first (no overflow in the
    squares of huge values; inf when an entry is)."""
    a = np.abs(_wide(a))
    top = float(a.max(initial=0.0))
    if top == 0.0 or not np.isfinite(top):
        return top
    return top * float(np.linalg.norm(a / top))


def own_rounding(jittered, a) -> np.ndarray:
    """``JITTER_BARS`` times ``|vjp(q S) / q - vjp(S)|`` (``q = JITTER``, ``a`` the
    gradient for ``S``), at least its root mean square over the argument: the rounding
    of the backward's own sums."""
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(_wide(jittered) / JITTER - _wide(a))
    d = np.where(np.isfinite(d), d, 0.0)
    return JITTER_BARS * np.maximum(d, _rms(d))


def split_rounding(call, cotangents, seed) -> tuple:
    """Per argument, the rounding of the additivity test, measured: for each of its
    three calls, ``(S, vjp(S))`` in ``cotangents`` (``R``, ``R'`` and ``R + R'``), the
    largest of ``|vjp(S + D) + vjp(S - D) - 2 vjp(S)|`` over :data:`SPLITS` draws of a
    small share ``D = S * delta`` (``delta`` random odd multiples of ``2**-10`` up to
    ``3 * 2**-10``, either sign), summed over the three. A linear backward gives its
    rounding at each cotangent, where that call's rounding is made; a constant or an
    offset in the backward cancels, and a backward that clips, thresholds, selects or
    takes the absolute value of its cotangent departs on so small a split by a small
    share of what it departs by on the test (module notes). ``call(cotangent, what)``
    is the backward, one gradient per argument (``6 * SPLITS`` calls); ``seed`` a
    sequence of integers for the draws."""
    rng = np.random.default_rng([*(int(k) for k in seed), SPLIT_SALT])
    total = None
    for cot, at in cotangents:
        dtype = np.asarray(cot).dtype
        s = _wide(cot)
        worst = [np.zeros(np.shape(g)) for g in at]
        for _ in range(SPLITS):
            delta = (2 * rng.integers(0, 2, s.shape) + 1) * rng.choice([-1.0, 1.0], s.shape)
            d = s * delta * 2.0**-10
            up = call((s + d).astype(dtype), "a cotangent plus a small share D")
            down = call((s - d).astype(dtype), "a cotangent minus D")
            for j, (u, v, t) in enumerate(zip(up, down, at)):
                with np.errstate(invalid="ignore", over="ignore"):
                    gap = np.abs(_wide(u) + _wide(v) - 2 * _wide(t))
                worst[j] = np.maximum(worst[j], np.where(np.isfinite(gap), gap, 0.0))
        total = worst if total is None else [t + w for t, w in zip(total, worst)]
    return tuple(total)
