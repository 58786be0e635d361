r"""The test of fit every generic cause uses, and what a cause may know about the argument.

A *claim* says what the buggy backward pass returned, as a prediction ``P`` made from the
numerical gradient ``N`` (``P = c N``, ``P = N`` with an axis reversed, ``P = N + D`` for
a fitted missing term ``D``, …). Measured in units of the check's own tolerance
:math:`\tau_j`:

.. math:: \text{before} = \max_j \frac{|A_j - N_j|}{\tau_j + s_j}, \qquad
          \text{after} = \max_j \frac{|A_j - P_j|}{\tau_j + s_j}

where :math:`s_j` is the uncertainty ``N``'s error carries into ``P`` (``|c| τ`` for
``P = c N``, ``τ`` moved along for a permutation). In a sampled check ``N`` is known on
the sampled elements only (NaN elsewhere, and left out); a prediction moved from ``N``
(a flip, a shift) is then known where the element it comes from was sampled too, and the
claim is tested on those elements, of which at least ``MIN_EXPLAINED_ON_SAMPLE`` must
mismatch clearly. A claim
is named only when

1. it fits: ``after <= SLACK`` on every element the claim constrains (elements at a kink
   are left out; a shift leaves the edge it shifts in unconstrained); and
2. what it explains is beyond noise: ``before > 2 SLACK`` -- some element is wrong by
   more than twice what the claim itself is allowed to be off. A claim that "fits" a
   mismatch no larger than its own slack (a factor 1.00001 fitted to float32 values,
   one of whose numerical side was off) explains nothing; the mismatch is then only
   described.

A claim fitted with free parameters (a factor per slice, a term per slice) may use at
most one parameter per :data:`MIN_PER_PARAMETER` elements it constrains: with fewer,
anything fits. A fitted term (``A - N`` fitted per slice or as an outer product,
:mod:`._cause_terms`) must besides take the largest mismatch down at least
``2 SLACK``-fold (:func:`explains_most`): where the tolerance is wide (float16), a fit
with a few parameters per slice brings a mismatch of another cause within ``SLACK``
while leaving most of a tolerance per element, which a true missing term (noise left
only) does not.
"""

from __future__ import annotations

from itertools import combinations
from typing import Callable

import numpy as np

from gradcheck._record import NamedTuple

__all__ = ["SLACK", "MIN_PER_PARAMETER", "Known", "Fit", "fit_claim", "misfit", "clear_mismatch",
           "explains_most",
           "slices_along", "informative", "named_sizes", "mismatches_in"]

#: A claim fits when every element agrees within SLACK x the check's tolerance.
SLACK = 4.0
#: Elements a fitted claim must constrain per free parameter.
MIN_PER_PARAMETER = 2
#: Clear mismatches a claim tested on part of a sample (where its prediction is known)
#: must explain.
MIN_EXPLAINED_ON_SAMPLE = 3


class Known(NamedTuple):
    """What the checker knows about one failing argument beyond ``A``, ``N`` and ``τ``.

    Every field may be missing (None, empty); a cause that needs one it lacks is skipped.

    x : ndarray
        The argument's value (thresholds, element-wise relations, terms in ``x``).
    sizes : tuple of (str, int)
        Named sizes to recognise in a factor: every axis of every argument and of ``f``'s
        output and the products of several, e.g. ``("size of axis 0 of x", 8)``
        (:func:`named_sizes`).
    cotangent : ndarray
        The cotangent ``R`` the check used (shape of ``f``'s output).
    backward : callable
        ``backward(R) -> this argument's analytic gradient`` for another cotangent: the
        backward under test, called again (linearity).
    forward : callable
        ``forward(value) -> f's output`` with the other arguments fixed (derivative at the
        output).
    missing : bool
        The backward returned no gradient (None) for the argument: ``A`` is the zeros put
        in its place.
    name : str
        The argument's name (a message may say which product to change).
    others : tuple of (str, ndarray)
        Every argument of ``f`` by name, this one included (an operand a cause may name).
    """

    x: np.ndarray | None = None
    sizes: tuple = ()
    cotangent: np.ndarray | None = None
    backward: Callable | None = None
    forward: Callable | None = None
    missing: bool = False
    name: str | None = None
    others: tuple = ()


class Fit(NamedTuple):
    """A claim that fits: its prediction, the misfit before and after, its parameters."""

    predicted: np.ndarray
    before: float
    after: float
    params: dict


def misfit(a, p, scale) -> float:
    """Largest ``|a - p|`` in units of ``scale`` (0 for no elements)."""
    if np.size(a) == 0:
        return 0.0
    return float(np.max(np.abs(a - p) / np.maximum(scale, np.finfo(float).tiny)))


def fit_claim(ev, predicted, spread=None, where=None, **params) -> Fit | None:
    """The claim ``A = predicted`` against the evidence ``ev`` (see the module notes).

    ``spread`` widens the tolerance where the prediction inherits ``N``'s uncertainty;
    ``where`` (bool, shaped like ``A``) limits the elements the claim constrains.
    Returns a :class:`Fit`, or None when the claim does not fit or explains only noise.
    """
    keep = ev.keep if where is None else (ev.keep & where)
    p = np.asarray(predicted, np.float64)
    known = np.isfinite(p) if spread is None else \
        np.isfinite(p) & np.isfinite(np.broadcast_to(np.asarray(spread, np.float64), p.shape))
    if not known[keep].all():
        # a sampled check: a prediction moved from N is known only where the element it
        # comes from was sampled too; the claim is tested there, and must explain a few
        # clear mismatches there (one or two may agree with a moved value by coincidence:
        # a max-pool's gradient routed to a neighbour)
        keep = keep & known
        if int((clear_mismatch(ev) & keep).sum()) < MIN_EXPLAINED_ON_SAMPLE:
            return None
    if not keep.any():
        return None
    scale = ev.tol[keep]
    if spread is not None:
        scale = scale + np.broadcast_to(np.asarray(spread, np.float64), ev.a.shape)[keep]
    a = ev.a[keep]
    after = misfit(a, p[keep], scale)
    if not after <= SLACK:
        return None
    # beyond noise: measured on all kept elements (where the spread is known), a claim
    # must explain a clear mismatch
    all_kept = ev.keep & known
    full_scale = ev.tol[all_kept] if spread is None else (
        ev.tol + np.broadcast_to(np.asarray(spread, np.float64), ev.a.shape))[all_kept]
    before = misfit(ev.a[all_kept], ev.n[all_kept], full_scale)
    if not before > 2 * SLACK:
        return None
    return Fit(p, before, after, dict(params))


def explains_most(fit, parameters: int = 0, elements: int = 0) -> bool:
    r"""The fit takes the largest mismatch down at least ``2 SLACK``-fold, and more when
    its free parameters are many for the elements it constrains:
    ``before >= 2 SLACK after sqrt(elements / (elements - parameters))`` (least squares
    with :math:`p` parameters on :math:`n` elements leaves noise shrunk by
    :math:`\sqrt{(n - p)/n}`, so ``after`` understates what is left by as much).

    A term fitted to a mismatch it does not describe absorbs part of it and leaves the
    rest: float16 ``tanh(x @ w)`` with tanh' taken at the output, x's gradient fitted by
    ``a + b x`` per column (10 parameters, 20 elements), went from 8.2 to 2.7
    tolerances -- within ``SLACK``, but a third of the mismatch left. A term truly missing
    leaves noise only (a float64 layer norm without its mean term: 6e10 to 0.05).

    >>> explains_most(Fit(None, before=100.0, after=0.5, params={}))
    True
    >>> explains_most(Fit(None, before=8.2, after=2.7, params={}), 10, 20)
    False
    """
    inflate = np.sqrt(elements / (elements - parameters)) if elements > parameters > 0 else 1.0
    return bool(fit.before >= 2 * SLACK * fit.after * inflate)


def clear_mismatch(ev) -> np.ndarray:
    """Elements (kept) wrong by more than SLACK x their tolerance: the ones to explain."""
    return ev.keep & (np.abs(ev.a - ev.n) > SLACK * ev.tol)


def mismatches_in(ev, mask) -> str:
    """How many of the check's failed elements lie in ``mask``, in the words of a cause's
    message: ``"All N mismatches"`` when every one does, N the count the report's header
    gives (the judgement's, kink elements included), else ``"K of the N mismatches"``
    with what the others are (elements at kinks and elements off by less than ``SLACK``
    tolerances are left out of a fit, so they need not lie in its set).

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.checker._diagnose import Evidence
    >>> ev = Evidence(np.array([1.0, 2.0, 3.0]), np.zeros(3), 0.1)
    >>> mismatches_in(ev, np.array([True, True, True]))
    'All 3 mismatches'
    >>> print(mismatches_in(ev, np.array([True, True, False])))
    2 of the 3 mismatches (the other 1: at kinks, or off by less than 4 tolerances)
    """
    judged = getattr(ev, "judged", None)
    failed = ev.failed if judged is None else np.asarray(judged.failed, bool).reshape(
        ev.a.shape)
    total, inside = int(failed.sum()), int((failed & np.asarray(mask, bool)).sum())
    if inside == total:
        return f"All {total} mismatches"
    return (f"{inside} of the {total} mismatches (the other {total - inside}: at kinks, or "
            f"off by less than {SLACK:g} tolerances)")


def informative(ev) -> np.ndarray:
    """Elements (kept) where either side is distinguishable from zero: where a mask could
    show at all (a mask over elements whose gradient is zero on both sides changes
    nothing)."""
    return ev.keep & ((np.abs(ev.a) > SLACK * ev.tol) | (np.abs(ev.n) > SLACK * ev.tol))


def slices_along(shape, axes) -> tuple[np.ndarray, int]:
    """Label every element by its slice when ``axes`` are summed over: ``(labels, count)``.

    ``labels`` has ``shape``; elements that differ only along ``axes`` share a label.
    """
    keep_axes = [i for i in range(len(shape)) if i not in axes]
    if not keep_axes:
        return np.zeros(shape, np.intp), 1
    sub = [shape[i] for i in keep_axes]
    grid = np.indices(shape)[keep_axes]
    labels = np.ravel_multi_index(tuple(grid), sub)
    return labels, int(np.prod(sub))


def named_sizes(shapes) -> tuple:
    """``(label, size)`` for every axis of every named shape, and every product of two or
    more axes of one shape: the sizes a wrong factor may be (a batch, ``N·H·W``).

    >>> named_sizes({"x": (2, 3)})
    (('size of axis 0 of x', 2), ('size of axis 1 of x', 3), ('product of axes 0, 1 of x', 6))
    """
    out = []
    for name, shape in shapes.items():
        shape = tuple(int(n) for n in shape)
        out.extend((f"size of axis {i} of {name}", n) for i, n in enumerate(shape))
        for r in range(2, len(shape) + 1):
            for axes in combinations(range(len(shape)), r):
                out.append((f"product of axes {', '.join(map(str, axes))} of {name}",
                            int(np.prod([shape[i] for i in axes]))))
    return tuple(out)
