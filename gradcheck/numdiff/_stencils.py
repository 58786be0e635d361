r"""Finite-difference stencils, derived rather than tabulated.

A stencil is a set of nodes :math:`k_0, \dots, k_d` (multiples of the step :math:`h`).
Fitting the polynomial :math:`p(t) = \sum_{m=0}^{d} b_m (t/h)^m` through the values
:math:`f(x + k_i h)` means solving the Vandermonde system :math:`V b = f` with
:math:`V_{im} = k_i^m`. Row :math:`m` of :math:`V^{-1}` gives :math:`b_m` as a linear
combination of the values; :math:`b_m \approx f^{(m)}(x) h^m / m!` and the derivative
estimate is

.. math:: f'(x) \approx \frac{b_1}{h} = \frac{1}{h} \sum_i w_i f(x + k_i h),
          \qquad w = (V^{-1})_{1,\cdot}.

Because :math:`\sum_i w_i k_i^m = \delta_{m1}` for :math:`m \le d`, Taylor expansion
gives the truncation error

.. math:: \frac{b_1}{h} - f'(x) = \sum_{m > d} \mu_m \frac{f^{(m)}(x)}{m!} h^{m-1},
          \qquad \mu_m = \sum_i w_i k_i^m ,

so the stencil's *moments* :math:`\mu_{d+1}, \mu_{d+2}` turn an estimate of the next
Taylor coefficients into an error estimate. For symmetric nodes the odd moments vanish
(central differences are even in :math:`h`); for the nodes ``(-2, -1, 0, 1, 2, 3)`` of
the default ``adaptive`` method the weights are ``(1/20, -1/2, -1/3, 1, -1/4, 1/30)``
with :math:`\mu_6 = 12`, :math:`\mu_7 = 36`.

Weights from the inverse Vandermonde matrix are Fornberg's (1988) weights for these
nodes, computed directly rather than by his recursion (six nodes: the inverse is exact
to rounding). How the ``adaptive`` stencil relates to Richardson extrapolation: its
nodes hold the central differences :math:`D(h)` and :math:`D(2h)`, whose Richardson
combination :math:`(4D(h) - D(2h))/3` is the order-4 stencil on ``(-2, -1, 1, 2)``;
the center and the node :math:`3h` lift the fit to degree 5 (order 5). It is one fitted
stencil, not a sequence of steps: the steps of :mod:`._steps` change only where the
error model asks for a retry.

Rounding: if each value carries an independent error of standard deviation
:math:`\sigma`, the derivative carries :math:`\lVert w \rVert_2 \sigma / h` and
coefficient :math:`b_m` carries :math:`\lVert (V^{-1})_{m,\cdot} \rVert_2 \sigma`. The
center node's error is common to every difference and cancels (:math:`\sum_i w_i = 0`),
so values are taken relative to :math:`f(x)`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gradcheck._record import frozen

__all__ = ["Stencil", "STENCILS", "REAL_METHODS", "METHODS", "ALIASES", "DEFAULT_REAL",
           "stencil", "fit_matrix", "moments", "rounding_bar"]


@frozen
class Stencil:
    """Nodes (multiples of ``h``) and everything derived from them."""

    name: str
    nodes: tuple          # includes 0 (the shared center) when the fit uses it
    adaptive: bool        # retries with smaller steps, kink detection
    description: str

    @property
    def degree(self) -> int:
        return len(self.nodes) - 1

    @property
    def order(self) -> int:
        """Order of accuracy: the lowest power of ``h`` in the truncation error."""
        mu = moments(self.nodes)
        return next(m - 1 for m in range(self.degree + 1, self.degree + 3) if abs(mu[m]) > 1e-9)

    @property
    def perturbed(self) -> tuple:
        """Nodes that cost an evaluation (the center is shared by all elements)."""
        return tuple(k for k in self.nodes if k != 0)


@lru_cache(maxsize=None)
def fit_matrix(nodes: tuple) -> np.ndarray:
    """``V^{-1}``: row ``m`` maps node values to the coefficient ``b_m``; for integer
    nodes solved in exact rational arithmetic and rounded once (a float64 inverse of
    the one-sided ``(0, 1, .., 5)`` had weights 8.5e-14 off: a derivative of ``f(x) =
    x`` read 1 + 5e-14)."""
    if all(float(k).is_integer() for k in nodes):
        return _exact_inverse(tuple(int(k) for k in nodes))
    k = np.asarray(nodes, dtype=np.float64)
    return np.linalg.inv(np.vander(k, len(k), increasing=True))


def _exact_inverse(nodes: tuple) -> np.ndarray:
    """The inverse of the Vandermonde matrix of integer ``nodes`` by Gauss-Jordan
    elimination over the rationals, each entry then rounded to float64.

    >>> _exact_inverse((-1, 1)).tolist()      # b0 = (f(-1) + f(1)) / 2, b1 = (f(1) - f(-1)) / 2
    [[0.5, 0.5], [-0.5, 0.5]]
    """
    from fractions import Fraction

    n = len(nodes)
    rows = [[Fraction(k) ** m for m in range(n)] + [Fraction(int(i == j)) for j in range(n)]
            for i, k in enumerate(nodes)]
    for c in range(n):
        p = next(r for r in range(c, n) if rows[r][c] != 0)
        rows[c], rows[p] = rows[p], rows[c]
        rows[c] = [v / rows[c][c] for v in rows[c]]
        for r in range(n):
            if r != c and rows[r][c] != 0:
                f = rows[r][c]
                rows[r] = [a - f * b for a, b in zip(rows[r], rows[c])]
    # rows now hold [I | V^-1]: row m of V^-1 maps node values to b_m
    return np.array([[float(v) for v in row[n:]] for row in rows])


@lru_cache(maxsize=None)
def moments(nodes: tuple) -> np.ndarray:
    r"""``mu[m] = sum_i w_i k_i**m`` for ``m = 0 .. degree + 2`` (``w`` = derivative row)."""
    k = np.asarray(nodes, dtype=np.float64)
    w = fit_matrix(nodes)[1]
    mu = np.array([np.sum(w * k**m) for m in range(len(k) + 2)])
    mu[np.abs(mu) < 1e-12] = 0.0
    return mu


#: The stencils by method name. ``adaptive`` is the default for real differences: one
#: order-5 stencil on six nodes, with step reduction and kink detection (:mod:`._adaptive`);
#: the others are single stencils (their truncation error is estimated by repeating them
#: at twice the step, Richardson's estimate, see :mod:`._core`).
STENCILS = {
    s.name: s
    for s in (
        Stencil("adaptive", (-2, -1, 0, 1, 2, 3), True,
                "order-5 stencil on the center and 5 points (-2h .. 3h), step reduction "
                "and kink detection"),
        Stencil("forward", (0, 1), False, "one-sided (f(x+h) - f(x)) / h, order 1"),
        Stencil("backward", (-1, 0), False, "one-sided (f(x) - f(x-h)) / h, order 1"),
        Stencil("central", (-1, 1), False, "(f(x+h) - f(x-h)) / 2h, order 2"),
        Stencil("central4", (-2, -1, 1, 2), False, "5-point central, order 4"),
        Stencil("central6", (-3, -2, -1, 1, 2, 3), False, "7-point central, order 6"),
    )
}

DEFAULT_REAL = "adaptive"
REAL_METHODS = tuple(STENCILS)
METHODS = ("auto", "complex") + REAL_METHODS
#: Former method names, still accepted: ``"richardson"`` was the name of ``"adaptive"``
#: (a fitted stencil, not a sequence of steps extrapolated, hence the new name).
ALIASES = {"richardson": "adaptive"}


def stencil(name: str) -> Stencil:
    return STENCILS[ALIASES.get(name, name)]


def rounding_bar(method: str, step, noise):
    r"""The rounding part of a real-difference error bar, :math:`\lVert w\rVert_2 s / h`.

    ``method`` names a real stencil (as :attr:`NumericalDerivative.method
    <gradcheck.numdiff.NumericalDerivative>` does, possibly as ``"adaptive+..."``), ``step``
    is :math:`h`, ``noise`` the rounding :math:`s` of one value of ``f``. Returns None for
    the complex step, an unknown name or a step that is not positive (no such bar).

    Examples
    --------
    >>> from gradcheck.numdiff import rounding_bar
    >>> float(rounding_bar("central", 0.5, 1e-16))   # weights (-1/2, 1/2): norm 1/sqrt(2)
    1.414213562373095e-16
    >>> rounding_bar("complex", 1e-20, 1e-16) is None
    True
    """
    name = str(method).split("+")[0]
    if name not in STENCILS and name not in ALIASES:
        return None
    h = float(step)
    if not h > 0:
        return None
    return float(np.linalg.norm(fit_matrix(stencil(name).nodes)[1])) * noise / h


#: One-sided sub-stencils of the ``adaptive`` nodes, used for the left and right
#: derivative at a suspected kink.
LEFT_NODES = (-2, -1, 0)
RIGHT_NODES = (0, 1, 2, 3)
