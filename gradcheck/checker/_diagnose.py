"""The diagnose stage: one route from a failing argument to the likely cause.

A failing check has, for one argument, the analytic gradient ``A`` (what the backward
pass under test returned), the numerical gradient ``N`` (what the function really does,
with error bars) and the tolerance the check used; and the checker knows more or less
about ``f``:

=====================  ===============================================================
what is known of f     where its candidate causes come from
=====================  ===============================================================
a black box            the generic causes only -- and, when ``f`` is recognized as a
                       convolution or an activation by reproducing its output, that
                       op's usual mistakes (:func:`._suspects.function_suspects`)
a built-in layer,      each layer's usual mistakes, planted in that layer and carried
a network of layers    down to every tensor below it (:func:`._suspects.network_suspects`)
a user layer in a      the same, when the user layer is recognized as a convolution or
network                an activation (:func:`._suspects.network_suspects` too)
=====================  ===============================================================

What is known arrives as *suspects*: a callable ``suspects(argname, cotangent)``
returning :class:`Suspect` claims, each a predicted gradient. :func:`check_vjp
<gradcheck.check_vjp>` takes it as an option (a black box by default),
:func:`~gradcheck.check_network` and :func:`~gradcheck.check_layer` pass the network's,
and spec runs go through :func:`~gradcheck.check_network`. Whatever the source, one
route names the cause: :func:`diagnose_judgement` (or :func:`diagnose`, on bare arrays)
builds the :class:`Evidence` and :func:`diagnose_evidence` tries the catalogue of causes
(:data:`gradcheck.checker._causes.CAUSES`), in order, naming the first that fits.
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.checker._fit import SLACK, Fit, Known
from gradcheck.checker._report import Diagnosis

__all__ = ["TensorRole", "Suspect", "Evidence", "Known", "diagnose", "diagnose_judgement",
           "diagnose_evidence", "role_of", "SLACK"]

class TensorRole(NamedTuple):
    """Which axes of a tensor mean what, for suspects that move data around.

    ``batch_axis`` / ``channel_axes`` may be None / empty; ``spatial_axes`` are the axes
    that a kernel flip, transpose or shift acts on.
    """

    kind: str = "generic"            # "input", "weight", "bias", "generic"
    batch_axis: int | None = None
    channel_axes: tuple[int, ...] = ()
    spatial_axes: tuple[int, ...] = ()

    @classmethod
    def for_array(cls, kind: str, ndim: int) -> "TensorRole":
        """Roles of the usual layouts: input ``(N, C, *sp)``, weight ``(C_out, C_in, *k)``."""
        if kind == "input" and ndim >= 3:
            return cls("input", 0, (1,), tuple(range(2, ndim)))
        if kind == "input" and ndim == 2:
            return cls("input", 0, (1,), ())
        if kind == "weight" and ndim >= 3:
            return cls("weight", None, (0, 1), tuple(range(2, ndim)))
        if kind == "weight" and ndim == 2:
            return cls("weight", None, (0, 1), ())
        if kind == "bias":
            return cls("bias", None, (0,), ())
        return cls("generic")


class Suspect(NamedTuple):
    """A caller-supplied claim: ``predicted`` is what the buggy backward would return."""

    cause: str
    message: str
    predicted: np.ndarray


def role_of(role, index: int, arr) -> TensorRole:
    """The :class:`TensorRole` of argument ``index``: as given (a TensorRole or a kind),
    or guessed from the usual layouts, ``(N, C, *sp)`` first, then kernels."""
    if isinstance(role, TensorRole):
        return role
    if role is None:
        if arr.ndim >= 3:
            role = "input" if index == 0 else "weight"
        elif arr.ndim == 1 and index > 0:
            role = "bias"
        else:
            role = "generic"
    return TensorRole.for_array(role, arr.ndim)


class Evidence:
    """What every cause is tested against: one argument's two gradients, the tolerance
    the check used, the elements left out (kinks), the tensor's role, the caller's
    suspects (``suspects()``, computed only if asked), what else is known of the argument
    and of ``f`` (:class:`~gradcheck.checker._fit.Known`: its value, the sizes, the
    cotangent, the backward and forward to call again) and, from a check, its judgement.
    """

    def __init__(self, analytic, numeric, tolerance, *, role: TensorRole = TensorRole(),
                 suspects: Callable[[], Sequence[Suspect]] = tuple, exclude=None,
                 judged=None, known: Known = Known()):
        self.a = np.asarray(analytic, dtype=np.float64)
        self.n = np.asarray(numeric, dtype=np.float64)
        self.tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), self.a.shape)
        self.keep = np.ones(self.a.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
        self.role, self.suspects, self.judged, self.known = role, suspects, judged, known

    @cached_property
    def a_k(self):
        return self.a[self.keep]

    @cached_property
    def n_k(self):
        return self.n[self.keep]

    @cached_property
    def tol_k(self):
        return self.tol[self.keep]

    @cached_property
    def failed(self) -> np.ndarray:
        """Elements (not left out) outside the tolerance."""
        return self.keep & (np.abs(self.a - self.n) > self.tol)

    @cached_property
    def n_failed(self) -> int:
        return int(self.failed.sum())

    @cached_property
    def before(self) -> float:
        """The misfit of ``A = N`` itself (in units of the tolerance)."""
        return _misfit(self.a_k, self.n_k, self.tol_k) if self.a_k.size else 0.0

    def agrees(self, x, y) -> bool:
        """``x`` and ``y`` agree within the slack tolerance, on the elements kept."""
        return bool(np.all(np.abs(np.asarray(x, np.float64)[self.keep]
                                  - np.asarray(y, np.float64)[self.keep]) <= SLACK * self.tol_k))

    def fits(self, predicted, spread=None) -> bool:
        """``A`` agrees with ``predicted``; ``spread`` widens the tolerance (a prediction
        made from ``N`` carries ``N``'s own uncertainty, moved along with it)."""
        t = self.tol_k if spread is None else self.tol_k + np.asarray(spread, np.float64)[self.keep]
        return bool(self.a_k.size) and \
            bool(np.all(np.abs(self.a_k - np.asarray(predicted, np.float64)[self.keep]) <= SLACK * t))

    def record(self, predicted, **extra) -> dict:
        """The evidence of a claim that fits: the misfit before and after applying it."""
        return {"misfit_before": self.before,
                "misfit_after": _misfit(self.a_k, np.asarray(predicted, np.float64)[self.keep],
                                        self.tol_k),
                "failed_elements": self.n_failed, **extra}


def _misfit(a, b, tol) -> float:
    """Largest |a - b| in units of the tolerance (<= SLACK means the claim fits; inf
    when that exceeds the largest float, NaN where the difference is)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.max(np.abs(a - b) / np.maximum(tol, np.finfo(float).tiny)))


class _Counted:
    """A callable that counts its calls (the backward or forward, called again)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def _named(cause, fit: Fit, evidence: Evidence) -> Diagnosis:
    """A cause whose test returned a Fit: its message with the fit's numbers."""
    message = cause.message.format(**fit.params)
    if np.isfinite(fit.after):
        message += (f" (This fits: the largest mismatch goes from {fit.before:.3g} to "
                    f"{fit.after:.2g} tolerances.)")
    return Diagnosis(cause.name, message, {"misfit_before": fit.before,
                                           "misfit_after": fit.after,
                                           "failed_elements": evidence.n_failed, **fit.params})


def diagnose_evidence(evidence: Evidence, *, skip=()) -> Diagnosis:
    """The first cause of the catalogue that fits, else a description of the mismatch
    (``no_known_pattern``). Calls of the backward or the forward made on the way (to test
    a cause) are counted in the diagnosis's evidence, ``calls_made``. The causes named in
    ``skip`` are not tried (a sampled check cannot test some, :mod:`._sampled`)."""
    known = evidence.known
    backward = None if known.backward is None else _Counted(known.backward)
    forward = None if known.forward is None else _Counted(known.forward)
    evidence.known = known._replace(backward=backward, forward=forward)
    # the catalogue of causes is imported on the first failure: a passing check (and
    # the command line's start) needs none of it
    from gradcheck.checker._causes import CAUSES
    from gradcheck.checker._describe import describe

    diagnosis = None
    # the fits divide by tolerances and square and sum gradients: for huge values that
    # overflows to inf (or gives NaN), which no fit accepts (a misfit of inf or NaN is
    # never within SLACK) and the description prints as such -- expected and handled,
    # so NumPy's warnings stay off (as while f is differenced, :mod:`._numeric`)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for cause in CAUSES:
            if cause.name in skip:
                continue
            found = cause.test(evidence)
            if isinstance(found, Fit):
                diagnosis = _named(cause, found, evidence)
            elif found is not None:
                diagnosis = found
            if diagnosis is not None:
                break
        else:
            message, details = describe(evidence)
            diagnosis = Diagnosis("no_known_pattern", message, details)
    calls = {name: probe.calls for name, probe in (("backward", backward), ("forward", forward))
             if probe is not None and probe.calls}
    if calls:
        diagnosis = Diagnosis(diagnosis.cause, diagnosis.message,
                              {**diagnosis.evidence, "calls_made": calls})
    evidence.known = known
    return diagnosis


def diagnose_judgement(judged, *, role: TensorRole, suspects: Callable[[], Sequence[Suspect]],
                       known: Known = Known(), skip=()):
    """The cause of one argument's failures (None when nothing failed).

    ``judged`` is its :class:`~gradcheck.checker._judge.Judgement`; elements at kinks are
    left out of the generic comparisons (their own cause is ``outside_kink_limits``);
    the causes named in ``skip`` are not tried (:func:`diagnose_evidence`).
    """
    if not judged.failed.any():
        return None
    return diagnose_evidence(Evidence(judged.analytic, judged.numeric, judged.tolerance,
                                      role=role, suspects=suspects, exclude=judged.nondiff,
                                      judged=judged, known=known), skip=skip)


def diagnose(
    analytic: np.ndarray,
    numeric: np.ndarray,
    tolerance: np.ndarray,
    *,
    role: TensorRole = TensorRole(),
    suspects: Sequence[Suspect] = (),
    exclude: np.ndarray | None = None,
    known: Known = Known(),
) -> Diagnosis:
    """Name the best-supported cause of ``analytic != numeric``.

    Parameters
    ----------
    analytic, numeric : ndarray
        The two gradients of one argument, same shape.
    tolerance : ndarray
        Per-element allowed ``|analytic - numeric|`` the check used.
    role : TensorRole
        Axis meanings for flips, shifts and regions.
    suspects : sequence of Suspect
        Layer-specific claims supplied by the caller (tested first, in order).
    exclude : ndarray of bool, optional
        Elements to leave out of every comparison (non-differentiable points).
    known : Known, optional
        What else is known: the argument's value, the problem's sizes, the cotangent, the
        backward and forward to call again (each cause that needs one it lacks is skipped).
    """
    found = list(suspects)
    return diagnose_evidence(Evidence(analytic, numeric, tolerance, role=role,
                                      suspects=lambda: found, exclude=exclude, known=known))
