"""The differentiate stage: the checker's calls into the numerical differentiator.

Every call into :mod:`gradcheck.numdiff` goes through this module, and only through its
public functions. Full mode asks :func:`gradcheck.numdiff.numerical_vjp` for
:math:`\\partial\\langle R, f\\rangle/\\partial\\,\\text{arg}` element by element (colored
by the dependency pattern when one is known); fast mode asks
:func:`gradcheck.numdiff.numerical_jvp` for :math:`\\langle R, J v\\rangle` along each
random direction. What one argument's differentiation needs is one record,
:class:`Target`. Exceptions raised by user code while it is being differenced become
:class:`~gradcheck.UserCodeError`.

A second look
-------------
A mismatch is not final on the first numbers (:func:`second_look`). The elements that
fail are differenced again -- the worst ``RECHECK_FIRST`` first, the rest only if none
of those is confirmed (a real mistake survives the second look, and then one batch is
enough) -- and the policy depends on how the first numbers were made:

- **after the complex step.** The complex step is exact where it applies, but at a kink
  it silently takes one branch -- the one the *complex* evaluation falls on, which need
  not be the branch the real code took (``where(z.real > 0, ...)`` at ``z == 0`` never
  sees the other side, and a sum that is exactly zero in real arithmetic may round to
  ``2e-16`` in complex arithmetic). So before an element is failed on a complex-step
  derivative, it is differenced again with adaptive real differences, which detect kinks.
  Where the real steps contradict the complex step -- they find a kink there, or a value
  outside their own error bar -- their result replaces it; where they agree with it, the
  complex step's far sharper value is kept (the real steps' error bar, ~1e-11 relative
  in float64, would otherwise hide a smaller mistake that the complex step had seen).
- **after real differences.** A step that still straddled a nearby kink can be wrong by
  more than its error bar claims: the mismatches are differenced again with
  ``RECHECK_RETRIES`` step reductions, and a smaller error bar (or a kink found) replaces
  the first value.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from gradcheck._errors import GradcheckError, UserCodeError
from gradcheck._precision import LOW_PRECISION
from gradcheck._record import NamedTuple
from gradcheck.checker._judge import excess
from gradcheck.numdiff import NumericalDerivative, numerical_jvp, numerical_vjp
from gradcheck.numdiff._coloring import n_distinct
from gradcheck.numdiff._evaluate import DEFAULT_MEMORY
from gradcheck.numdiff._stencils import DEFAULT_REAL, stencil
from gradcheck.numdiff._steps import base_steps, offset_spread, typical_size

__all__ = ["Target", "full_numeric", "directional_numeric", "rademacher_directions",
           "recheck_elements", "merge_elements", "second_look", "evaluate", "is_structure",
           "predicted_groups", "subset_target", "coloring_of", "DEFAULT_MEMORY", "Policy",
           "POLICIES"]

#: Mismatching elements differenced again in the first batch of a second look.
RECHECK_FIRST = 16
#: Step reductions allowed when real-difference mismatches are differenced again.
RECHECK_RETRIES = 6
#: How many times one move's change of the worst element (:mod:`._point`) the full
#: measure of the rounding of the point is taken to reach at most, before it is made.
POINT_GENEROUS = 16.0


class Target(NamedTuple):
    """One argument to differentiate: ``C(a) = <cotangent, g(a)>`` at ``a = arg``."""

    g: Callable                # f as a function of this argument alone
    arg: np.ndarray
    cotangent: np.ndarray      # R, float64
    pattern: object = None     # sparse dependency pattern, a structure, or None
    vectorized: bool = False   # g accepts a leading batch of points
    method: str = "auto"
    seed: int = 0
    memory: float = DEFAULT_MEMORY


def _guard(call, what):
    """Run a numerical pass; what ``f`` raises there is the user's error.

    NumPy's floating-point warnings are off meanwhile: probing ``f`` at perturbed points
    and squaring its outputs for error bars may overflow, which the result reports
    (non-finite values count as unchecked elements), and a warning turned into an error
    by ``-W error`` must not be blamed on ``f``.
    """
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return call()
    except GradcheckError:
        raise
    except Exception as exc:  # the function under test failed at a perturbed point
        raise UserCodeError(f"f raised {type(exc).__name__} while {what}: {exc}") from exc


def evaluate(g, x, what):
    """``g(x)``, with a failure of user code reported as :class:`~gradcheck.UserCodeError`."""
    return _guard(lambda: g(x), what)


def is_structure(pattern) -> bool:
    """A geometry-derived structure (``colors`` and ``owners``) rather than a sparse pattern."""
    return hasattr(pattern, "colors") and hasattr(pattern, "owners")


def _structure_options(pattern):
    if pattern is None:
        return {}
    if is_structure(pattern):
        return {"colors": pattern.colors, "owners": pattern.owners,
                "smooth": bool(getattr(pattern, "smooth", False))}
    return {"pattern": pattern}


def predicted_groups(pattern, size) -> int:
    """How many groups of elements full mode will perturb together (a cheap estimate)."""
    if pattern is None:
        return size
    if is_structure(pattern):
        return n_distinct(pattern.colors)
    indptr = getattr(pattern.tocsr(), "indptr", None)
    # no row may hold two elements of a group: the fullest row bounds the groups from below
    return max(1, int(np.diff(indptr).max())) if indptr is not None and indptr.size > 1 else size


def full_numeric(target: Target) -> NumericalDerivative:
    """Every element of the gradient of ``<cotangent, g(arg)>``, with error bars.

    ``target.pattern`` is a sparse dependency pattern, a structure (``colors``/``owners``,
    see :mod:`gradcheck.ops._structure`), or None. A structure that vouches for the
    complex step (built-in layers only) turns ``method="auto"`` into the complex step.
    """
    method = target.method
    if (method == "auto" and getattr(target.pattern, "complex_safe", False)
            and np.asarray(target.arg).dtype.name not in LOW_PRECISION):
        method = "complex"      # float16 and bfloat16 have no complex type
    return _guard(lambda: numerical_vjp(target.g, target.arg, target.cotangent,
                                        vectorized=bool(target.vectorized), method=method,
                                        seed=target.seed, memory=target.memory,
                                        **_structure_options(target.pattern)),
                  "its gradient was differenced element by element")


def rademacher_directions(seed, index, count, size) -> np.ndarray:
    """``count`` random directions of ±1 entries for argument ``index``, seeded."""
    rng = np.random.default_rng([seed, index])
    return rng.choice(np.array([-1.0, 1.0]), size=(count, size))


def directional_numeric(target: Target, directions) -> NumericalDerivative:
    """``<cotangent, J v_k>`` for each row ``v_k`` of ``directions``, with error bars."""
    dirs = np.asarray(directions, dtype=np.float64).reshape((-1,) + target.arg.shape)
    return _guard(lambda: numerical_jvp(target.g, target.arg, dirs, cotangent=target.cotangent,
                                        method=target.method, memory=target.memory,
                                        vectorized=bool(target.vectorized), seed=target.seed),
                  "it was differenced along random directions")


def _subset_options(pattern, index):
    """The dependency options of the elements ``index`` alone (their columns, colors)."""
    if pattern is None or is_structure(pattern):
        options = _structure_options(pattern)
        if options:
            # the subset keeps its elements' colors; owners map sub-positions to ``index``
            def owners(members):
                full = index[np.asarray(members, dtype=np.intp)]
                perm = np.argsort(full, kind="stable")
                own = pattern.owners(full[perm])
                return np.where(own >= 0, perm[np.maximum(own, 0)], -1)

            options.update(colors=np.asarray(pattern.colors)[index], owners=owners)
        return options
    import scipy.sparse as sp

    return {"pattern": sp.csc_matrix(pattern)[:, index]}


class _SubsetStructure(NamedTuple):
    """A structure restricted to some elements: their colors, owners over the subset."""

    colors: np.ndarray
    owners: Callable
    smooth: bool = False
    complex_safe: bool = False


def subset_target(target: Target, index) -> Target:
    """``target`` as a function of the flat elements ``index`` of its argument alone.

    The other elements stay at the point. The result's ``arg`` is ``arg.flat[index]``
    (1-d), its ``g`` puts such a vector (or, with ``vectorized``, a batch of them) back
    in place -- complex values included, for the complex step -- and its pattern is the
    subset's (the structure's colors and owners, or the pattern's columns), so full mode
    on the subset target is a check of those elements: every stage that works on a
    :class:`Target` works on it unchanged.
    """
    index = np.asarray(index, dtype=np.intp)
    arg = target.arg
    base = arg.reshape(-1)

    def g(v):
        v = np.asarray(v)
        dtype = np.result_type(base.dtype, v.dtype)
        if v.ndim == 2:                      # a batch of points (vectorized evaluation)
            x = np.broadcast_to(base, (v.shape[0], base.size)).astype(dtype)
            x[:, index] = v
            return target.g(x.reshape((v.shape[0],) + arg.shape))
        x = base.astype(dtype, copy=True)
        x[index] = v
        return target.g(x.reshape(arg.shape))

    pattern = target.pattern
    if pattern is not None:
        options = _subset_options(pattern, index)
        if "pattern" in options:
            pattern = options["pattern"]
        else:
            pattern = _SubsetStructure(options["colors"], options["owners"],
                                       bool(getattr(pattern, "smooth", False)),
                                       bool(getattr(pattern, "complex_safe", False)))
    return target._replace(g=g, arg=base[index], pattern=pattern)


def coloring_of(pattern, size):
    """One color per element (elements of a color are differenced together), or None
    when every element is differenced on its own (no pattern)."""
    if pattern is None:
        return None
    if is_structure(pattern):
        return np.asarray(pattern.colors).reshape(-1)
    from gradcheck.numdiff._coloring import as_pattern, greedy_colors

    P = as_pattern(pattern, pattern.shape[0], size)
    return greedy_colors(P)


def offset_steps(arg, index):
    """The default base steps of the flat elements ``index`` of an offset argument (one
    whose elements share a common part far above their spread,
    :func:`gradcheck.numdiff._steps.offset_spread`), or None for any other argument.

    A recheck differences a subset of the elements, whose own spread says nothing of the
    argument's: without these steps, a batch norm of ``100 + 1e-3 z`` had its rechecked
    elements differenced with steps of 0.12, a hundred spreads, which read as kinks on a
    smooth function (seed 3 of ``properties/test_known_issues.py``'s tanh of such a batch
    norm: an element marked a kink whose limits hid a 1e-6 error in it).
    """
    a = np.asarray(arg)
    if a.dtype.name in LOW_PRECISION or offset_spread(a) is None:
        return None
    eps, order = float(np.finfo(a.dtype).eps), stencil(DEFAULT_REAL).order
    return base_steps(a, 1.0, eps, order, typical=typical_size(a))[np.asarray(index)]


def recheck_elements(target: Target, index, *, max_retries=2) -> NumericalDerivative:
    """The flat elements ``index`` of ``target.arg`` differenced again by adaptive real
    differences (``method="adaptive"``).

    Only those elements move (the rest of ``arg`` stays fixed), colored by the columns of
    the pattern when one is known. The result is over the subset (shape ``(len(index),)``).
    An argument offset far above its spread starts from :func:`offset_steps`.
    """
    index = np.asarray(index, dtype=np.intp)
    arg = target.arg
    base = arg.reshape(-1)
    step = offset_steps(arg, index)

    def sub(v):
        x = base.copy()
        x[index] = v
        return target.g(x.reshape(arg.shape))

    options = _subset_options(target.pattern, index)
    return _guard(lambda: numerical_vjp(sub, base[index], target.cotangent,
                                        method="adaptive", seed=target.seed, step=step,
                                        max_retries=max_retries, **options),
                  "its mismatching elements were differenced again with real steps")


def merge_elements(num, index, second, take=None) -> NumericalDerivative:
    """``num`` with the flat elements ``index[take]`` replaced by ``second`` (over ``index``).

    ``nfev`` is the sum of both passes; ``method`` names both methods where the second
    replaced any element (``"complex+adaptive"``).
    """
    index = np.asarray(index, dtype=np.intp)
    take = np.ones(index.size, bool) if take is None else np.asarray(take, bool)
    fields = {}
    for name in ("grad", "error", "nondifferentiable", "left", "right", "step"):
        arr = np.array(getattr(num, name), copy=True)
        arr.reshape(-1)[index[take]] = np.asarray(getattr(second, name)).reshape(-1)[take]
        fields[name] = arr
    suffix = f"+{second.method}"
    method = num.method if not take.any() or num.method == second.method \
        or num.method.endswith(suffix) else num.method + suffix
    return dataclasses.replace(num, nfev=int(num.nfev) + int(second.nfev), method=method,
                               **fields)


# --------------------------------------------------------------------------- second look


def _flat(values, index=None) -> np.ndarray:
    flat = np.asarray(values, np.float64).reshape(-1)
    return flat if index is None else flat[index]


def _contradicts(num, batch, second, tolerance) -> np.ndarray:
    """After the complex step: the real steps overrule it only where they contradict it
    (a kink, or a value outside their own error bar)."""
    outside = np.abs(_flat(second.grad) - _flat(num.grad, batch)) > \
        tolerance.numeric(_flat(second.error))
    return np.asarray(second.nondifferentiable, bool).reshape(-1) | outside


def _smaller_bar(num, batch, second, tolerance) -> np.ndarray:
    """After real differences: the second value replaces the first where its error bar is
    smaller, or where it found a kink."""
    return np.asarray(second.nondifferentiable, bool).reshape(-1) | \
        (_flat(second.error) < _flat(num.error, batch))


class Policy(NamedTuple):
    """How a second look treats a kind of first pass (forward mode uses it too)."""

    takes: Callable     # (num, batch, second, tolerance) -> where the second value replaces
    max_retries: int
    note: str           # formatted with done, total


#: The second look after each kind of first pass (keyed by "was it the complex step").
POLICIES = {
    True: Policy(_contradicts, 2, "{done} of {total} mismatching element(s) of the complex "
                                  "step differenced again with real steps"),
    False: Policy(_smaller_bar, RECHECK_RETRIES, "{done} of {total} mismatching element(s) "
                                                 "differenced again with smaller steps"),
}


def _worst_first(judged) -> np.ndarray:
    """Flat indices of the failing elements, the largest excess over tolerance first."""
    over = excess(judged).reshape(-1)
    order = np.flatnonzero(judged.failed.reshape(-1))
    return order[np.argsort(-over[order], kind="stable")]


def second_look(target: Target, num, judged, verdict, tolerance, backward=None):
    """Difference the mismatching elements of ``judged`` again (see the module notes).

    ``verdict(num)`` judges a numerical result (judge and settle kinks); ``tolerance``
    is the argument's :class:`~gradcheck.checker._tolerance.Tolerance`; ``backward``
    (the argument's value -> its analytic gradient) lets the rounding of the point be
    measured on the analytic side too (:mod:`._point`). Only when the differentiator
    chose the method (``method="auto"``). Returns ``(num, judged, note)``.
    """
    if target.method != "auto" or not judged.failed.any():
        return num, judged, ""
    policy = POLICIES[num.method == "complex"]
    order = _worst_first(judged)
    done = widened = 0
    for batch in (order[:RECHECK_FIRST], order[RECHECK_FIRST:]):
        if batch.size == 0:
            break
        second = recheck_elements(target, batch, max_retries=policy.max_retries)
        takes = policy.takes(num, batch, second, tolerance)
        num = merge_elements(num, batch, second, takes)
        judged = verdict(num)
        if num.method.startswith("complex"):
            num, judged, count = _widen_by_point(target, num, judged, verdict,
                                                 batch[~takes], backward)
            widened += count
        done += batch.size
        if judged.failed.reshape(-1)[batch].any():
            break
    note = policy.note.format(done=done, total=order.size)
    if widened:
        note += (f"; the complex step's error bar of {widened} of them widened by the "
                 f"measured rounding of the point")
    return num, judged, note


def _widen_by_point(target, num, judged, verdict, kept, backward=None):
    """The complex step's bar of the elements ``kept`` (flat; their complex value the real
    steps confirmed) that still fail, widened by the rounding of the point
    (:mod:`._point`). Returns ``(num, judged, how many were widened)``."""
    from gradcheck.checker._point import point_rounding

    kept = np.asarray(kept, dtype=np.intp)
    kept = kept[judged.failed.reshape(-1)[kept]]
    if kept.size == 0:
        return num, judged, 0
    # the worst first, with one move: an element off by more than eps**(1/4) of the
    # gradient's size and beyond even POINT_GENEROUS times that is a mistake, not
    # rounding (a wrong gradient costs three passes, not nine; one move alone can leave
    # the rounding of a sum unchanged, hence the first condition)
    worst = kept[np.argmax(excess(judged).reshape(-1)[kept])]
    n = np.abs(np.asarray(num.grad, np.float64)).reshape(-1)
    finite = n[np.isfinite(n)]
    size = n[worst] + (typical_size(finite) if finite.any() else 0.0)
    eps = float(np.finfo(np.asarray(target.arg).dtype).eps)
    spent = 0
    if judged.diff.reshape(-1)[worst] > eps ** 0.25 * size:
        one, spent = point_rounding(target, [worst], backward, probes=1)
        trial = _widened(num, [worst], POINT_GENEROUS * one, spent)
        if verdict(trial).failed.reshape(-1)[worst]:
            return dataclasses.replace(num, nfev=trial.nfev), judged, 0
    nu, nfev = point_rounding(target, kept, backward)
    num = _widened(num, kept, nu, spent + nfev)
    return num, verdict(num), int(np.count_nonzero(nu))


def _widened(num, index, extra, nfev):
    """``num`` with ``extra`` added to the error bars of the flat elements ``index``."""
    error = np.array(num.error, dtype=np.float64, copy=True)
    error.reshape(-1)[np.asarray(index, dtype=np.intp)] += extra
    return dataclasses.replace(num, error=error.astype(np.asarray(num.error).dtype),
                               nfev=int(num.nfev) + int(nfev))
