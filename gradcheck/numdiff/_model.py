r"""The error model of one pass of real differences: value, rounding and truncation.

A *pass* evaluates every quantity at the nodes :math:`k h` of a stencil for one step
:math:`h` per source. From the node values (taken relative to :math:`f(x)`) the
polynomial fit of :mod:`._stencils` gives the coefficients :math:`b_m \approx f^{(m)}
h^m/m!`, the estimate :math:`b_1/h`, and its error bar, the sum of two terms.

*Rounding.* Each evaluation adds an error of about :math:`\varepsilon\sigma` where
:math:`\sigma` is the root-sum-square magnitude of the terms making up the value (for
``<R, f>``: :math:`\sqrt{\sum_i (R_i f_i)^2}` over the rows the element reaches, because
differences are taken per output row before the rows are summed; for a scalar ``f``:
:math:`|f|`; in both, :math:`f_i` is the largest magnitude seen at the center and the
evaluated points). Through the stencil weights this becomes

.. math:: \rho = \kappa_r\, \varepsilon\, \lVert w \rVert_2\, \sigma / h .

*Truncation.* The fit gives the Taylor terms up to the stencil's degree :math:`d`.
Those above their own rounding noise (:math:`|b_m| > z_s \varepsilon \sigma \lVert
V^{-1}_{m\cdot}\rVert`) are taken to decay geometrically, as the Taylor terms of a
function analytic in a disc of radius :math:`h/q` do; the largest ratio :math:`q =
\max (|b_k|/|b_i|)^{1/(k-i)}` over significant pairs predicts the first two neglected
terms :math:`\hat b_{d+1}, \hat b_{d+2}`, and with the stencil moments

.. math:: T = \kappa_t\,(|\mu_{d+1}|\,\hat b_{d+1} + |\mu_{d+2}|\,\hat b_{d+2}) / h .

The maximum over pairs errs high on purpose. When no two terms stand out of the noise
the function is a low-degree polynomial as far as the data can tell and :math:`T = 0`.

The constants and how they were measured are in :mod:`._core`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from gradcheck.numdiff._stencils import LEFT_NODES, RIGHT_NODES, fit_matrix, moments

__all__ = ["PassEstimate", "Estimate", "estimate_pass", "KAPPA_R", "KAPPA_T"]

#: kappa_r: rounding bar in units of the rounding's scale (see :mod:`._core`, tuning).
KAPPA_R = 1.0
#: kappa_t: safety factor on the predicted truncation.
KAPPA_T = 2.0
#: z_s: a fitted coefficient counts as signal when it exceeds its own rounding noise
#: this many times (three standard deviations of a value's rounding).
SIGNIFICANT = 3.0


# ------------------------------------------------------------------------- records


class _Record:
    """Arrays over all quantities; ``where`` builds a new record taking another's
    entries at a mask (records are frozen: every update is a new record). Fields named
    in ``_per_source`` are not per quantity and are kept."""

    _per_source = ()

    def where(self, mask, other):
        return type(self)(**{f.name: getattr(self, f.name) if f.name in self._per_source
                             else np.where(mask, getattr(other, f.name), getattr(self, f.name))
                             for f in fields(self)})


@dataclass(frozen=True)
class PassEstimate(_Record):
    """What one pass says about each quantity (NaN where the pass did not reach it)."""

    value: np.ndarray      # b_1 / h
    rho: np.ndarray        # rounding term
    tau: np.ndarray        # truncation term
    h: np.ndarray          # step of the quantity's source
    left: np.ndarray       # one-sided derivative from the nodes (-2, -1, 0)
    right: np.ndarray      # one-sided derivative from the nodes (0, 1, 2, 3)
    lrho: np.ndarray       # rounding of ``left``
    rrho: np.ndarray       # rounding of ``right``
    bad: np.ndarray        # a value was not finite

    @classmethod
    def blank(cls, n_q: int) -> "PassEstimate":
        nan = np.full(n_q, np.nan)
        return cls(*(nan,) * 8, bad=np.zeros(n_q, bool))

    @property
    def error(self) -> np.ndarray:
        return np.where(self.bad, np.inf, self.rho + self.tau)


@dataclass(frozen=True)
class Estimate(_Record):
    """A method's result per quantity, and the step kept for every source."""

    value: np.ndarray
    error: np.ndarray
    left: np.ndarray
    right: np.ndarray
    nondiff: np.ndarray
    rho: np.ndarray
    steps: np.ndarray      # per source, not per quantity

    _per_source = ("steps",)

    @classmethod
    def blank(cls, n_q: int, steps) -> "Estimate":
        nan = np.full(n_q, np.nan)
        return cls(value=nan, error=np.full(n_q, np.inf), left=nan, right=nan,
                   nondiff=np.zeros(n_q, bool), rho=np.full(n_q, np.inf),
                   steps=np.asarray(steps, np.float64).copy())


# ------------------------------------------------------------------------- fitting


def table(vals, ks, nodes):
    """Node values (center = 0) in the order of ``nodes``, shape ``(len(nodes), nq)``."""
    F = np.zeros((len(nodes), vals.shape[1]))
    for a, k in enumerate(ks):
        if k in nodes:
            F[nodes.index(k)] = vals[a]
    return F


def fit(F, nodes, u_q):
    """Coefficients ``b`` (rows m = 0..d) from node values; actual nodes where they moved.

    ``u_q`` holds, per quantity, the actual offsets over ``h`` of each node in ``nodes``
    (or None when nominal). Quantities whose nodes are off by more than 1e-13 get their
    own (batched) Vandermonde inverse.
    """
    b = fit_matrix(nodes) @ F
    if u_q is not None:
        off = np.abs(u_q - np.asarray(nodes, np.float64)[:, None]).max(axis=0) > 1e-13
        if off.any():
            un = u_q[:, off].T                                          # (nbad, nn)
            V = un[:, :, None] ** np.arange(len(nodes))[None, None, :]  # (nbad, nn, nn)
            b[:, off] = np.einsum("qmk,kq->mq", np.linalg.inv(V), F[:, off])
    return b


def _node_offsets(values, ks, nodes):
    if values.u is None:
        return None
    u = np.empty((len(nodes), values.src_pos.size))
    for a, k in enumerate(nodes):
        u[a] = 0.0 if k == 0 else values.u[ks.index(k)][values.src_pos]
    return u


def fitted(values, ks, nodes):
    """The coefficients of the fit over ``nodes`` for every quantity of ``values``."""
    return fit(table(values.vals, ks, nodes), nodes, _node_offsets(values, ks, nodes))


def rounding(values, nodes, h, eps):
    """:math:`\\rho` of the derivative row of the fit over ``nodes``."""
    return KAPPA_R * eps * np.linalg.norm(fit_matrix(nodes)[1]) * values.sigma / h


def truncation(b, noise, nodes):
    """Predicted truncation in units of f (see the module docstring); divide by h."""
    d = len(nodes) - 1
    mu = moments(nodes)
    E = np.abs(b)
    sig = E > SIGNIFICANT * noise
    q = np.zeros(b.shape[1])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in range(2, d + 1):
            for i in range(1, k):
                ok = sig[i] & sig[k]
                r = (E[k] / np.where(ok, E[i], 1.0)) ** (1.0 / (k - i))
                q = np.maximum(q, np.where(ok, r, 0.0))
    top = np.zeros(b.shape[1], dtype=np.int64)
    for m in range(1, d + 1):
        top = np.where(sig[m], m, top)
    Etop = E[top, np.arange(b.shape[1])]
    with np.errstate(over="ignore", invalid="ignore"):
        est = sum(abs(mu[m]) * Etop * q ** (m - top) for m in (d + 1, d + 2))
    return np.where((top > 0) & (q > 0), est, 0.0)


def estimate_pass(values, ks, nodes, h, eps):
    """Value, rounding and truncation of one pass over ``nodes``, and the one-sided
    derivatives, as arrays over ``values.q`` (in that order)."""
    b = fitted(values, ks, nodes)
    noise = eps * values.sigma[None, :] * np.linalg.norm(fit_matrix(nodes), axis=1)[:, None]
    rho = rounding(values, nodes, h, eps)
    tau = KAPPA_T * truncation(b, noise, nodes) / h
    if values.position is not None:
        rho = rho + values.position * np.abs(b[1] / h)
    sides = []
    for side in (LEFT_NODES, RIGHT_NODES):
        sides += [fitted(values, ks, side)[1] / h, rounding(values, side, h, eps)]
    return (b[1] / h, rho, tau) + tuple(sides)
