"""The result every numerical derivative returns."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from gradcheck._record import frozen

__all__ = ["NumericalDerivative", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _jsonable(value):
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return value.tolist()
        flat = [None if not np.isfinite(v) else float(v) for v in value.reshape(-1)]
        return np.array(flat, dtype=object).reshape(value.shape).tolist() if value.ndim else flat[0]
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


@frozen
class NumericalDerivative:
    """A numerical derivative with its error bar, element by element.

    Attributes
    ----------
    grad : ndarray
        The derivative: the gradient (shape of ``x``) for :func:`numerical_grad` and
        :func:`numerical_vjp`, the Jacobian ``(*f(x).shape, *x.shape)`` for
        :func:`numerical_jacobian`, the directional derivative (shape of ``f(x)``, with
        a leading axis per direction when several are given) for :func:`numerical_jvp`.
        Also available as ``jac`` and ``jvp``.
    error : ndarray
        Estimated absolute error of each entry (same shape): rounding plus truncation,
        see :mod:`gradcheck.numdiff._core`. ``inf`` where no finite estimate exists.
    nfev : int
        Points at which ``f`` was evaluated (each point of a batch counts).
    step : ndarray
        Step of every perturbed element (shape of ``x``; one per direction for
        :func:`numerical_jvp`): the real step of the pass that was kept, or the
        imaginary step.
    nondifferentiable : ndarray of bool
        Entries where ``f`` has a kink or tie within reach: the one-sided derivatives
        stayed apart at every step tried.
    left, right : ndarray
        The one-sided derivative estimates at those entries (NaN elsewhere). ``grad`` is
        their midpoint there and ``error`` half their distance plus rounding, so an
        analytic value between them is within the error bar. Also, one of them alone
        (the other NaN) where ``f`` was not finite on the other side at every step tried
        and the entry was differenced on one side (float16 and bfloat16 elements:
        ``exp`` near 11 overflows float16 at ``x + h``); ``grad`` is that side's value.
    method : str
        ``"complex"`` or the real stencil used (``"adaptive"`` by default).
    complex_check : str
        Why the complex step was or was not used: ``"accepted"``, ``"not tried"``,
        ``"forced"`` or ``"rejected: ..."`` with the reason.
    ncolors : int
        Groups of elements perturbed together (the number of elements without a pattern).
    """

    grad: np.ndarray
    error: np.ndarray
    nfev: int
    step: np.ndarray
    nondifferentiable: np.ndarray
    left: np.ndarray
    right: np.ndarray
    method: str
    complex_check: str
    ncolors: int

    @property
    def jac(self) -> np.ndarray:
        return self.grad

    @property
    def jvp(self) -> np.ndarray:
        return self.grad

    def to_dict(self) -> dict:
        """JSON-ready: arrays as nested lists, NaN and inf as ``None``."""
        out = {"format": FORMAT_VERSION}
        for f in fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        return out
