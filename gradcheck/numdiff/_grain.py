"""The grid a row's values lie on (its *grain*): the rounding of larger terms seen in the
values themselves.

A row whose values at every point of a group are multiples of a power of two far coarser
than their own precision was formed by rounding terms larger than the values: that grid
over the step is a floor of the error bar (:mod:`._model`). :func:`_grain` finds it for a
block of rows; one evaluation per colour (the complex step's single node) reads it off the
values' trailing zero bits (:func:`_grain_single`), the general case and values that are
not normal numbers go through :func:`_grain_of`.
"""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


#: A row's grid counts as the rounding of larger terms when the values lie on a grid
#: this many bits coarser than their own precision (at least 8 times their ulp).
LOST_BITS = 3


def _quantum(v):
    """The largest power of two that divides each float64 value (inf at zero, NaN where
    not finite)."""
    v = np.asarray(v, np.float64)
    finite = np.isfinite(v)
    m, e = np.frexp(np.where(finite, v, 0.0))
    M = np.abs(m * 2.0**53).astype(np.int64)            # exact: the 53-bit significand
    low = (M & -M).astype(np.float64)
    q = np.where(M != 0, np.ldexp(low, e - 53), np.inf)
    return np.where(finite, q, np.nan)


def _significant_bits(v):
    """Bits from the leading to the last nonzero bit of each value's significand."""
    q = _quantum(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = np.floor(np.log2(np.abs(v))) - np.log2(q) + 1
    return np.where(np.isfinite(bits), bits, 0.0)


def _digits(dtype) -> int:
    """Significand bits of a real float dtype (bfloat16: 8)."""
    dt = np.dtype(dtype)
    if dt.name == "bfloat16":
        return 8
    return int(np.finfo(dt if dt.kind in "fc" else np.float64).nmant) + 1


def _grain(Yk, ks, imag, digits, scratch=None):
    r"""The grid each row's values lie on, per group and row: ``Yk`` is ``(G, nk, rows)``.

    A value that ``f`` formed as a difference of larger terms (``A - 1`` with :math:`A
    \approx 1`, :math:`\operatorname{Im}(a - b)` with both of size :math:`h`) is a
    multiple of the ulp of those terms, however small the result: every value the row
    takes is then a multiple of the grid, and carries up to a grid step of rounding
    that its own magnitude does not show (:mod:`._model`). The grid is the smallest
    power of two that divides the row's values (0 where none changed). It tells
    nothing where the values are simple numbers (at most half the ``digits`` of ``f``'s
    precision) -- for real differences, simple and exactly linear in the node on each
    side of the center (an exact piecewise-linear ``f``: ReLU, a sum, a scaling, whose
    values ``k h c`` are coarse because ``h`` is a power of two); for the complex step's
    imaginary parts, :math:`c h` with a simple :math:`c` on either side of a kink --
    and is 0 there. Nor where the grid
    is within ``LOST_BITS`` of the values' own ulp: nothing cancelled there.

    Most rows are settled by one value's last bits: a normal float64 whose significand
    ends in a set bit among its last ``53 - T`` (``T = digits - LOST_BITS``) spans at
    least ``T`` bits, so the row's grid spans as many (the largest value over the
    smallest grid can only be larger) and is its own rounding: 0. So is a row of zeros
    (no grid). Only the other rows go through the computation below, which gives the
    same 0 for the settled ones.

    With ``scratch`` (a :class:`._scratch.Scratch`), one node's result and work arrays are its
    (``"grain"``, ``"grain work 1"``, ``"grain work 2"``): valid until the next call.
    """
    Yk = np.asarray(Yk, np.float64)
    n_low = 53 - (digits - LOST_BITS)
    if n_low < 1:
        return _grain_of(Yk, ks, imag, digits)
    if Yk.shape[1] == 1:
        return _grain_single(Yk[:, 0], ks, imag, digits, n_low, scratch)
    bits = Yk.view(np.int64)
    settled = ((bits & ((1 << n_low) - 1)) != 0) & ((bits & _EXPONENT) != 0)
    settled = settled.any(axis=1) | ((bits & ~_SIGN) == 0).all(axis=1)   # or all zero
    out = np.zeros(settled.shape)
    rest = np.flatnonzero(~settled)     # (gathered by index: boolean masks are slower)
    if rest.size:
        G, nk, R = Yk.shape
        flat = np.ascontiguousarray(Yk).reshape(-1)
        at = rest if nk == 1 else (rest // R) * (nk * R) + rest % R
        Ysub = np.stack([flat.take(at + a * R) for a in range(nk)])[None]
        out.reshape(-1)[rest] = _grain_of(Ysub, ks, imag, digits)[0]
    return out


#: The exponent field of a float64's bits (0 for zero and subnormal values), and its sign.
_EXPONENT = 0x7FF << 52
_SIGN = -(1 << 63)
#: The smallest and largest normal float64.
_TINY, _HUGE = float(np.finfo(np.float64).tiny), float(np.finfo(np.float64).max)
#: Their bits, and those of infinity (NaN's are above).
_TINY_BITS = int(np.array(_TINY).view(np.int64))
_INF_BITS = int(np.array(np.inf).view(np.int64))


def _grain_single(Y, ks, imag, digits, n_low, scratch=None):
    r""":func:`_grain_of` of rows of one value each (one node: ``Y`` is ``(G, rows)``),
    read off the bits of each value.

    A normal value is :math:`M 2^{e}` with a 53-bit significand :math:`M`; with ``t``
    trailing zero bits in it, its grid is :math:`2^{e + t}` and the value spans
    :math:`\log_2(M / 2^t) \in [52 - t, 53 - t)` bits above the grid. So the grid is its
    own rounding (``t < n_low``: at least ``digits - LOST_BITS`` bits), the value simple
    (``t >= 53 - digits/2``: at most ``digits/2`` bits), or, for ``t`` from ``n_low`` to
    ``K = ceil(52 - digits/2) - 1``, neither: the grain is the grid, :math:`|v|` less
    :math:`|v|` with its last set bit cleared. The one ``t`` in between (``K + 1``:
    the span decides) and the values that are not normal numbers (subnormal, infinite,
    NaN) go through :func:`_grain_of`; a zero has no grid (0).

    In integers: the lowest set bit ``L`` among the significand's last ``K + 2`` bits
    (``low & -low``; 0 where none is set) is :math:`2^t` for ``t <= K + 1``; kept where
    ``n_low <= t <= K`` (one mask: ``L`` is a single bit) and cleared from ``|v|``.
    """
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    top = -(-(104 - digits) // 2) - 1                # K = ceil(52 - digits / 2) - 1
    # the result is formed in place in ``magnitude``; two integer work arrays
    if scratch is None:
        magnitude, low, work = np.empty(Y.shape), np.empty(Y.shape, np.int64), None
    else:
        magnitude = scratch("grain", Y.shape)
        low = scratch("grain work 1", Y.shape, np.int64)
        work = scratch("grain work 2", Y.shape, np.int64)
    np.abs(Y, out=magnitude)
    mbits = magnitude.view(np.int64)
    np.bitwise_and(mbits, (1 << (top + 2)) - 1, out=low)   # the significand's last K + 2
    work = np.negative(low, out=work)
    low &= work                                     # their lowest set bit (0: none)
    # t = K + 1, which the span decides, unless the grid is its own rounding anyway
    edge = top + 1 >= n_low and int(low.max(initial=0)) == 1 << (top + 1)
    # not a normal number (subnormal, infinite, NaN), zeros apart: |v| - 1 as unsigned is
    # below the smallest normal's bits - 1 only for a subnormal (a zero wraps around)
    np.subtract(mbits, 1, out=work)
    odd = (Y.size and (int(work.view(np.uint64).min()) < _TINY_BITS - 1
                       or int(mbits.max()) >= _INF_BITS))
    other = None
    if edge or odd:     # rare: found value by value
        other = low == 1 << (top + 1) if edge else np.zeros(Y.shape, bool)
        if odd:
            other |= ~((magnitude >= _TINY) & (magnitude <= _HUGE)) & (Y != 0)
    low &= ((1 << (top + 1)) - 1) & ~((1 << n_low) - 1)     # n_low <= t <= K, else 0
    np.bitwise_xor(mbits, low, out=work)            # |v| with that bit cleared
    # exact: the two share their leading bits; 0 where no bit was cleared (the others,
    # inf - inf among them, are taken again below)
    with np.errstate(invalid="ignore"):
        magnitude -= work.view(np.float64)
    out = magnitude
    if other is not None:
        rest = np.flatnonzero(other)
        if rest.size:
            flat = Y.reshape(-1)
            out.reshape(-1)[rest] = _grain_of(flat[rest][None, None], ks, imag, digits)[0]
    return out


def _grain_of(Yk, ks, imag, digits):
    """:func:`_grain` computed for every row (``Yk`` is ``(G, nk, rows)``)."""
    Q = _quantum(Yk)
    q = np.fmin.reduce(Q, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = np.log2(np.abs(Yk).max(axis=1) / q)
    k = np.asarray(ks, dtype=np.float64)
    exact = np.ones(q.shape, bool)
    sides = [] if imag else [np.flatnonzero(k < 0), np.flatnonzero(k > 0)]
    for side in sides:
        if side.size < 2:
            continue
        ref = side[np.argmin(np.abs(k[side]))]
        for a in side:
            if a != ref:
                exact &= Yk[:, a] * k[ref] == Yk[:, ref] * k[a]
    simple = exact & ~(bits > digits / 2)
    # a grid within LOST_BITS of the values' own precision is their own rounding (and
    # the chance trailing zeros of a few values): the value's magnitude already says so
    full = ~(bits < digits - LOST_BITS)
    return np.where(simple | full | ~np.isfinite(q), 0.0, q)


# ------------------------------------------------------------------------- elements
