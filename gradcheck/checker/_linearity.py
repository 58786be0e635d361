r"""The linearity stage: the backward is linear in its incoming gradient, on every check.

A vector-Jacobian product is linear in the cotangent whatever ``f`` is,

.. math:: \mathrm{vjp}(aR + bR') = a\,\mathrm{vjp}(R) + b\,\mathrm{vjp}(R'),

and so is a Jacobian-vector product in the tangent. The numerical comparison checks
``vjp(R)`` for the one ``R`` drawn, and a backward that uses ``R`` non-linearly can
return the right gradient for that one: one that clips it (``np.clip(g, -1, 1)``, as
"gradient clipping" inside a backward does) is right whenever every :math:`|R_i| < 1`;
one that ignores it (the textbook ``dlogits = p - y`` of a softmax cross-entropy, the
gradient for an all-ones cotangent) is right when ``R`` is all ones -- the cotangent of
a plain sum -- and ``torch.autograd.gradcheck``, which differentiates with one-hot
cotangents, passes one that keeps only the largest entry of ``g``. So after the scalarize
stage the code under test is called three more times, for every check and whatever the
mode, and each argument's gradients are compared (:func:`linearity`):

``vjp(cR)`` against ``c vjp(R)``
    :math:`c = -2^k` with :math:`k` the integer nearest :math:`\log_2(1024 / \max|R|)`
    (:func:`scale_for`): ``-1024`` for a cotangent whose largest entry is 1, ``-512``
    when it is near 2 (a standard normal ``R`` of a few dozen entries), ``-2048`` near
    0.5; the report names the ``c`` used. A power of
    two, so that scaling is exact in floating point and a linear backward agrees to its
    rounding; large, so that a clip at any threshold up to about a thousand times the
    cotangent's entries is crossed; negative, so that an even function of ``R`` (its
    absolute value, its square) and a threshold at zero (``max(g, 0)``) show too. It is
    made smaller where ``|c|`` times the cotangent or the gradient would come within
    :data:`HEADROOM` of the dtype's largest value (float16), and set to ``-2`` when
    ``vjp(cR)`` overflows anyway (both said in the report's notes).
``vjp(R + R')`` against ``vjp(R) + vjp(R')``
    ``R'`` an independent standard normal scaled to ``R``'s root-mean-square, from a
    stream of its own (:data:`SECOND_SALT`): a backward that is positively homogeneous
    but not additive (one that keeps the largest entry of ``R``, or its positive part
    along some axis) is caught here.

Two calls of a linear map differ by rounding alone -- of forming ``cR`` (none) and ``R +
R'`` in the cotangent's dtype, and of each call's own sums, which a threaded BLAS may
order differently from one call to the next -- and the allowance for that is
:meth:`._tolerance.Tolerance.linear_map` (``64 eps`` of the terms' magnitudes, times
the growth ``G(L)`` of long sums; no numerical derivative is involved). Those magnitudes are the gradients' own and, as a
floor, the resolution of ``C``: ``max_i |R_i m_i| / max(|x_j|, 1)`` with ``m_i`` the
magnitude of output ``i``. A gradient that cancels to zero (a layer norm summed, a
softmax summed, a batch norm's output averaged) is rounding alone, about ``eps`` times
the terms it is formed from and nothing times its own value; so when a test departs
beyond the allowance with ``m_i = |y_i|``, ``m_i`` is measured -- the terms ``f``'s
outputs are formed from, from second differences of ``f`` along random steps far below
any derivative's scale (:func:`._formed.row_magnitudes`, eighteen calls of ``f``, made
only then and shared with the element-wise allowance) -- and the test judged again. A
departure that is the rounding of a cancelling result is within that; one that is not
(a clip, a kept state) is a share of the gradient itself and stays far beyond it. There is no threshold on the departure's share of the
gradient's norm in this verdict: beyond the rounding allowance, the argument fails
(that share only decides which diagnosis is named when the numerical comparison failed
too, :func:`_named_first`). An argument whose gradient departs beyond it fails,
whatever its numerical comparison says, with the cause ``nonlinear_in_cotangent``
(its message in the catalogue's words, :mod:`._causes`, saying how it departs: it
ignores ``R``, uses it through an even function or squared, or otherwise non-linearly,
as clipping or thresholding does). Before that verdict the backward is called once more
with ``R`` itself: when that differs from the first call beyond the same allowance, the
backward is not deterministic (a random draw, state kept between calls), and that is
what the message says (under the same cause, as the catalogue's own test of it does).

The backward's own rounding
---------------------------
A departure still beyond the allowance with the measured magnitudes is judged once more
with the backward's own rounding, measured where the backward is deterministic (a
further call with ``R`` itself returns what the first did): by one call with ``q (R +
R')`` and, if that is not enough, on small splits of each cotangent of the additivity
test (:mod:`._linear_rounding`, which says why and what it leaves failing).

The cost is three calls of the backward per check (four or five when one fails), not
per argument: one call returns every argument's gradient. A cotangent given by the caller
(``cotangent=``) is tested the same way, around it.

"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from gradcheck._errors import UserCodeError
from gradcheck._record import NamedTuple
from gradcheck.checker._linear_rounding import (JITTER, JITTER_BARS, SPLITS, _norm, _rms,
                                                _wide, own_rounding, split_rounding)
from gradcheck.checker._report import ArgumentReport, Diagnosis
from gradcheck.checker._scalarize import _call, _largest_term
from gradcheck.checker._tolerance import Tolerance, longest_sum, real_eps

__all__ = ["Linearity", "linearity", "with_linearity", "scale_for", "SCALE", "HEADROOM",
           "SECOND_SALT", "CALLS"]

#: ``|c|`` for a cotangent whose largest entry is about 1 (see :func:`scale_for`).
SCALE = 2.0 ** 10
#: ``|c|`` times the largest cotangent or gradient entry stays this far below the dtype's
#: largest finite value (the backward's intermediate values may be larger than either).
HEADROOM = 2.0 ** 10
#: Mixed with the seed for the second cotangent's (or tangent's) own random stream.
SECOND_SALT = 0x11AEA5
#: Calls of the backward the stage makes on a right backward.
CALLS = 3

class Linearity(NamedTuple):
    """What the stage found: per argument index, None (linear) or the Diagnosis of a
    departure; the calls made, the scale ``c`` used, notes for the report, and per
    argument index the largest departure of either test in units of its allowance
    (``excess``: at most 1 for a linear backward; what the allowance is measured by)."""

    found: dict
    calls: int
    scale: float
    notes: tuple = ()
    excess: dict = {}


def scale_for(*arrays, dtype) -> float:
    """``c``: ``-2**k`` with ``|c| * max|R|`` about :data:`SCALE` (``k`` between 1 and
    20), made smaller so that ``|c|`` times the largest entry of any of ``arrays``
    stays :data:`HEADROOM` below the largest finite value of ``dtype``; at least 2.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.checker._linearity import scale_for
    >>> scale_for(np.array([0.5, -1.0]), dtype=np.float64)
    -1024.0
    >>> scale_for(np.array([0.5, -1.0]), np.array([300.0]), dtype=np.float16)
    -2.0
    >>> scale_for(np.array([2.8e-4]), dtype=np.float64)    # k capped at 20
    -1048576.0
    """
    sizes = [float(np.max(np.abs(_wide(a)), initial=0.0)) for a in arrays]
    first = sizes[0] if sizes and np.isfinite(sizes[0]) else 0.0
    k = 10 if first == 0.0 else int(np.clip(np.round(np.log2(SCALE / first)), 1, 20))
    largest = float(_finfo_max(dtype)) / HEADROOM
    top = max([s for s in sizes if np.isfinite(s)] + [0.0])
    if top > 0:     # a difference of logarithms: largest / top overflows for top < 2**-10
        k = min(k, int(np.floor(np.log2(largest) - np.log2(top))))
    return -float(2.0 ** max(k, 1))


def _finfo_max(dtype) -> float:
    dtype = np.dtype(dtype)
    try:
        return float(np.finfo(dtype).max)
    except (TypeError, ValueError):     # ml_dtypes' bfloat16
        import ml_dtypes

        return float(ml_dtypes.finfo(dtype).max)


def _second(seed, salt, like, scale) -> np.ndarray:
    """An independent standard normal shaped like ``like``, times ``scale`` (or 1)."""
    return _draw(int(seed), tuple(salt), np.shape(like)) * (
        scale if scale > 0 and np.isfinite(scale) else 1.0)


#: Largest draw (elements) :func:`_draw` keeps for the next check with the same seed.
KEEP_DRAW = 2**20


@functools.lru_cache(maxsize=4)
def _kept_draw(seed, salt, shape) -> np.ndarray:
    draw = np.random.default_rng([seed, *salt, SECOND_SALT]).standard_normal(shape)
    draw.flags.writeable = False
    return draw


def _draw(seed, salt, shape) -> np.ndarray:
    """The standard normal of ``seed`` and ``salt``, shaped ``shape``: the same numbers
    at every call (a generator seeded so), kept for the next call where small."""
    if math.prod(shape) <= KEEP_DRAW:
        return _kept_draw(seed, salt, shape)
    return np.random.default_rng([seed, *salt, SECOND_SALT]).standard_normal(shape)


class _Compare(NamedTuple):
    """One comparison: ``observed`` against ``sum(terms)``, in units of ``allowed``."""

    excess: float          # the largest departure in units of the allowance (inf: NaN)
    at: tuple              # where
    observed: float
    expected: float
    relative: float        # ||observed - expected|| / ||expected||


def _compare(observed, terms, allowed) -> _Compare:
    observed = _wide(observed)
    expected = sum(_wide(t) for t in terms)
    diff = np.abs(observed - expected)
    finite = np.isfinite(observed)
    over = np.where(finite, _in_units(np.where(finite, diff, 0.0), allowed), np.inf)
    if over.size == 0:
        return _Compare(0.0, (), 0.0, 0.0, 0.0)
    j = np.unravel_index(int(np.argmax(over)), over.shape)
    norm = _norm(expected)
    gap = _norm(np.where(finite, diff, 0.0))
    relative = gap / norm if norm else (0.0 if gap == 0 else float("inf"))
    return _Compare(float(over[j]), tuple(int(i) for i in j), _real(observed[j]),
                    _real(expected[j]), relative if np.all(finite) else float("inf"))


def _real(v) -> float:
    v = complex(v)
    return v.real if v.imag == 0 else abs(v)


def _in_units(diff, allowed) -> np.ndarray:
    """``diff / allowed``, 0 where both are 0 and inf where only ``allowed`` is."""
    allowed = np.asarray(allowed, np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(allowed > 0, diff / np.where(allowed > 0, allowed, 1.0),
                       np.where(diff > 0, np.inf, 0.0))
    return out


# --------------------------------------------------------------------------- reverse


def _grads(problem, cotangent, what) -> tuple:
    """``f_vjp(cotangent, *args)``, one array per argument (None: zeros), shapes checked;
    non-finite values are kept (the comparison counts them as departures)."""
    # NumPy's warnings off, as while f is differenced: a scaled cotangent may overflow
    # inside the backward where R did not, which the stage handles (non-finite values
    # are departures, and an overflowing scale is retried at -2)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        grads = _call(problem.f_vjp, f"f_vjp, called again with {what} to test that it "
                      f"is linear in its incoming gradient,", cotangent, *problem.args)
    if len(problem.args) == 1 and isinstance(grads, np.ndarray):
        grads = (grads,)
    if not isinstance(grads, (tuple, list)) or len(grads) != len(problem.args):
        raise UserCodeError(
            f"f_vjp, called again with {what}, returned "
            f"{len(grads) if isinstance(grads, (tuple, list)) else type(grads).__name__} "
            f"where it returned one gradient per argument ({len(problem.args)}) before")
    out = []
    for g, a, name in zip(grads, problem.args, problem.argnames):
        g = np.zeros(a.shape, a.dtype) if g is None else np.asarray(g)
        if g.shape != a.shape or g.dtype.kind not in "fciub" and g.dtype.name != "bfloat16":
            raise UserCodeError(
                f"f_vjp, called again with {what}, returned for {name!r} an array of shape "
                f"{g.shape} and dtype {g.dtype}; the argument has shape {a.shape}")
        out.append(g)
    return tuple(out)


def linearity(problem, options) -> Linearity:
    """The stage in reverse mode: every checked argument of ``problem`` (the scalarized
    check) tested for linearity in the cotangent (see the module notes)."""
    checked = [i for i in options.wrt if problem.args[i].size]
    if problem.f_vjp is None or not checked or problem.y.size == 0:
        return Linearity({}, 0, float("nan"))   # nothing is checked: the report fails
    r = problem.cotangent_f
    dtype = r.dtype
    # a backward may compute in its arguments' precision (a bfloat16 layer rounds R to
    # bfloat16 before using it, whatever dtype it returns): the coarsest one counts
    precisions = [a.dtype for a in problem.args if a.dtype.kind in "fc" or
                  a.dtype.name == "bfloat16"]
    analytic = [problem.analytic[i] for i in checked]
    c = scale_for(r, *analytic, dtype=_coarser(dtype, *(a.dtype for a in analytic)))
    r64 = _wide(r)
    scaled = _grads(problem, (c * r64).astype(dtype), f"{c:g}·R")
    notes, calls = [], 1
    if not all(np.all(np.isfinite(scaled[i])) for i in checked) and c != -2.0:
        was, c = c, -2.0
        scaled = _grads(problem, (c * r64).astype(dtype), f"{c:g}·R")
        calls += 1
        notes.append(f"f_vjp returned NaN or infinite values for {was:g}·R (R the "
                     f"cotangent of the check), so linearity under scaling was tested with "
                     f"-2·R only: a clip of the incoming gradient at a threshold above "
                     f"twice its entries is not seen")
    elif c != scale_for(r, dtype=np.float64):
        notes.append(f"linearity under scaling was tested with {c:g}·R (a larger factor "
                     f"would come near the largest {_coarser(dtype, *(a.dtype for a in analytic))} "
                     f"value): a clip of the incoming gradient at a threshold above "
                     f"{abs(c):g} times its entries is not seen")
    second = _second(options.seed, (), r, _rms(r64)).astype(dtype)
    paired = _grads(problem, second, "a second cotangent R'")
    summed = _grads(problem, (r + second).astype(dtype), "R + R'")
    calls += 2
    # a result whose exact value exceeds the dtype's largest (float16: a gradient of
    # 4e4 for -2·R) is infinite in a right backward too: not tested there, and said
    scaled, summed = list(scaled), list(summed)
    for i in checked:
        a = problem.analytic[i]
        scaled[i], lost = _representable(scaled[i], c * _wide(a))
        summed[i], lost_sum = _representable(summed[i], _wide(a) + _wide(paired[i]))
        for count, what in ((lost, f"{c:g}·R"), (lost_sum, "R + R'")):
            if count:
                notes.append(
                    f"{problem.argnames[i]}: the gradient for {what} exceeds the largest "
                    f"{np.asarray(a).dtype} value at {count} element(s) (its exact value "
                    f"does, so f_vjp returns infinity there): linearity was not tested "
                    f"there with {what}")
    rows = np.abs(_wide(problem.y))
    kept = {}

    def largest(magnitudes):
        """The largest terms of ``<R, f>`` and ``<R', f>`` over ``magnitudes`` (the same
        for every argument: found once per array)."""
        got = kept.get(id(magnitudes))
        if got is None or got[0] is not magnitudes:
            got = kept[id(magnitudes)] = (magnitudes, (_largest_term(r64, magnitudes),
                                                       _largest_term(second, magnitudes)))
        return got[1]

    found, excess = {}, {}
    redo = measured = jitter = split = None
    for i in checked:
        a, x = problem.analytic[i], problem.args[i]
        tol = Tolerance.for_dtype(_coarser(dtype, a.dtype, scaled[i].dtype, *precisions),
                                  atol=options.atol, rtol=options.rtol,
                                  length=longest_sum(problem))
        floor = 1.0 / np.maximum(np.abs(_wide(x)).real, 1.0)
        by_scale, by_sum = _both(tol, largest(rows), floor, c, a, scaled[i],
                                 paired[i], summed[i])
        if max(by_scale.excess, by_sum.excess) > 1:
            # a departure: judged again against the magnitudes f's outputs are formed
            # from, measured (a gradient that cancels to zero is the rounding of terms
            # the size of those, not of its own value)
            measured = problem.formed_from(options.seed)
            by_scale, by_sum = _both(tol, largest(measured), floor,
                                     c, a, scaled[i], paired[i], summed[i])
        if max(by_scale.excess, by_sum.excess) > 1:
            # still beyond: the backward's own rounding, measured, where it is
            # deterministic (see the module notes, "The backward's own rounding")
            if redo is None:
                redo = _grads(problem, r, "R itself")
                calls += 1
            same = _compare(redo[i], [a], tol.linear_map(
                [a], [_largest_term(r64, measured) * floor])).excess <= 1
            if same:
                if jitter is None:
                    both = _wide((r + second).astype(dtype))
                    jitter = _grads(problem, (JITTER * both).astype(dtype),
                                    f"{JITTER:g}·(R + R')")
                    calls += 1
                extra = own_rounding(jitter[i], summed[i])
                by_scale, by_sum = _both(tol, largest(measured), floor, c, a,
                                         scaled[i], paired[i], summed[i], extra)
                if by_scale.excess <= 1 < by_sum.excess:
                    # the additivity test's own rounding, measured on small splits of
                    # its cotangents (the scaling test passed: a power of two is exact)
                    if split is None:
                        split = split_rounding(
                            lambda cot, what: _grads(problem, cot, what),
                            [(r, problem.analytic), (second, paired),
                             ((r + second).astype(dtype), summed)],
                            [options.seed, SECOND_SALT])
                        calls += 6 * SPLITS
                    by_scale, by_sum = _both(
                        tol, largest(measured), floor, c, a, scaled[i], paired[i],
                        summed[i], extra, np.maximum(extra, JITTER_BARS * np.maximum(
                            split[i], _rms(split[i]))))
        excess[i] = max(by_scale.excess, by_sum.excess)
        if excess[i] <= 1:
            found[i] = None
            continue
        if redo is None:
            redo = _grads(problem, r, "R itself")
            calls += 1
        again = _compare(redo[i], [a], tol.linear_map(
            [a], [_largest_term(r64, rows if measured is None else measured) * floor]))
        found[i] = (again, by_scale, by_sum, c, a, scaled[i])
    out = {i: None if v is None else _reverse_diagnosis(*v, calls=calls)
           for i, v in found.items()}
    failed = [problem.argnames[i] for i, d in out.items() if d is not None]
    if failed:
        notes.append(f"{', '.join(failed)}: f_vjp is not linear in its incoming gradient "
                     f"(tested with {calls} more call(s) of f_vjp, with {c:g}·R, R' and "
                     f"R + R'{' and R again' if redo is not None else ''}): failed "
                     f"whatever the numerical comparison says")
    return Linearity(out, calls, c, tuple(notes), excess)


def _representable(observed, exact):
    """``(observed, count)``: ``observed`` (a gradient) with the non-finite entries whose
    ``exact`` value is beyond its dtype's largest finite one replaced by that exact value
    (nothing to compare there: a right backward overflows too), and how many."""
    observed = np.asarray(observed)
    if observed.dtype.kind not in "fc" and observed.dtype.name != "bfloat16":
        return observed, 0
    with np.errstate(invalid="ignore", over="ignore"):
        beyond = ~np.isfinite(_wide(observed)) & np.isfinite(exact) & \
            (np.abs(exact) >= _finfo_max(observed.real.dtype if observed.dtype.kind == "c"
                                         else observed.dtype))
    if not beyond.any():
        return observed, 0
    return np.where(beyond, exact, _wide(observed)), int(beyond.sum())


def _both(tol, terms, floor, c, a, scaled, paired, summed, extra=0.0, extra_sum=None):
    """The two tests of one argument: ``vjp(cR) / c`` against ``vjp(R)`` (dividing by a
    power of two is exact, and the allowance stays at the scale of the gradient for
    ``R``), and ``vjp(R + R')`` against ``vjp(R) + vjp(R')``; ``terms`` the largest
    terms of ``<R, f>`` and ``<R', f>`` over the magnitudes of ``f``'s outputs that set
    the resolution floor (:meth:`.Tolerance.linear_map`);
    ``extra`` added to both allowances (the backward's own rounding, measured), or to the
    first only where ``extra_sum`` is given for the second."""
    res, res2 = terms[0] * floor, terms[1] * floor
    extra_sum = extra if extra_sum is None else extra_sum
    by_scale = _compare(_wide(scaled) / c, [a], tol.linear_map([a], [res]) + extra)
    by_sum = _compare(summed, [a, paired],
                      tol.linear_map([a, paired], [res, res2]) + extra_sum)
    return by_scale, by_sum


def _coarser(*dtypes):
    return max(dtypes, key=lambda d: real_eps(d))


def _where(at) -> str:
    return f" at {at}" if at else ""


def _reverse_diagnosis(again, by_scale, by_sum, c, a, scaled, *, calls) -> Diagnosis:
    from gradcheck.checker._causes import CAUSES

    evidence = {"calls": calls, "scale": c, "departure_scaled": by_scale.excess,
                "departure_summed": by_sum.excess, "departure_again": again.excess,
                "relative_departure": max(by_scale.relative if by_scale.excess > 1 else 0.0,
                                          by_sum.relative if by_sum.excess > 1 else 0.0)}
    cause = next(k for k in CAUSES if k.name == "nonlinear_in_cotangent")
    if again.excess > 1:
        how = (f"returns a different gradient when called twice with the same incoming "
               f"gradient R (off by up to {abs(again.observed - again.expected):.3g}"
               f"{_where(again.at)}, {_times(again.excess)} the rounding allowed): it is not "
               f"deterministic (a random draw, or state kept between calls), and a gradient "
               f"depends on R and the point alone")
        return Diagnosis(cause.name, cause.message.format(how=how, calls=calls),
                         {**evidence, "test": "determinism", "at": list(again.at)})
    if by_scale.excess > 1:
        a64, s64 = _wide(a), _wide(scaled)
        close = lambda expected: _compare(s64, [expected], np.abs(  # noqa: E731
            _wide(expected)) * 1e-3 + 1e-300).excess <= 1
        if close(a64):
            how = (f"returns the same gradient for {c:g}·R as for R: it ignores its incoming "
                   f"gradient (computes the gradient for a fixed cotangent such as all ones "
                   f"or a one-hot, whatever it is given)")
        elif close(-c * a64):
            how = (f"returns for {c:g}·R the gradient for {-c:g}·R: it uses its incoming "
                   f"gradient through an even function (its absolute value or square root "
                   f"of its square)")
        elif close(c * c * a64):
            how = f"returns {c * c:g} times the gradient for {c:g}·R: it uses its incoming " \
                  f"gradient squared"
        else:
            how = (f"returns for {c:g}·R something other than {c:g} times the gradient for "
                   f"R (off by up to {abs(c * (by_scale.observed - by_scale.expected)):.3g}"
                   f"{_where(by_scale.at)}, where {c:g} times it is "
                   f"{c * by_scale.expected:.6g}): "
                   f"it uses its incoming gradient non-linearly (clips, thresholds or "
                   f"normalizes it)")
        test = "scaling"
    else:
        how = (f"returns for R + R' (R' a second random cotangent) something other than the "
               f"sum of the gradients for R and R' (off by up to "
               f"{abs(by_sum.observed - by_sum.expected):.3g}{_where(by_sum.at)}, "
               f"{100 * by_sum.relative:.3g}% of the sum's norm): it uses its incoming "
               f"gradient non-linearly (an absolute value, a threshold, a selection of its "
               f"largest entries)")
        test = "additivity"
    return Diagnosis(cause.name, cause.message.format(how=how, calls=calls),
                     {**evidence, "test": test})


def _times(excess) -> str:
    return "infinitely many times" if not np.isfinite(excess) else f"{excess:.3g} times"


# --------------------------------------------------------------------------- the report


def with_linearity(report: ArgumentReport, index: int, found: Linearity) -> ArgumentReport:
    """``report`` with the stage's verdict on argument ``index``: ``linear`` set, and a
    departure failing it with the stage's diagnosis (the numerical one, if any, kept in
    the evidence)."""
    if report.mode == "skipped" or index not in found.found:
        return report
    diagnosis = found.found[index]
    if diagnosis is None:
        return dataclasses.replace(report, linear=True)
    return dataclasses.replace(report, passed=False, linear=False,
                               diagnosis=_named_first(report.diagnosis, diagnosis))


def _named_first(numerical: Diagnosis | None, linear: Diagnosis) -> Diagnosis:
    """The diagnosis of an argument that is not linear: the stage's, unless the
    numerical comparison failed too and its diagnosis says as much or more -- a cause of
    the same kind, or any cause when the departure is a small share of the gradient
    (below the catalogue's :data:`._cause_probes.MIN_DEPARTURE`: a linear backward with
    a small blemish, whose mismatch is better told by where it is, as the catalogue's
    own linearity test holds)."""
    from gradcheck.checker._cause_probes import MIN_DEPARTURE

    if numerical is None or linear.evidence.get("test") == "determinism":
        return linear
    if numerical.cause == "nonlinear_in_cotangent" or \
            linear.evidence.get("relative_departure", np.inf) < MIN_DEPARTURE:
        return numerical
    return Diagnosis(linear.cause, linear.message,
                     {**linear.evidence, "numerical_cause": numerical.cause})
