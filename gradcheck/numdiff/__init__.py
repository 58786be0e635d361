"""Numerical differentiation with honest error bars.

Public: :func:`numerical_grad`, :func:`numerical_vjp`, :func:`numerical_jacobian`,
:func:`numerical_jvp`, all returning a :class:`NumericalDerivative`; and, for callers that
floor an error bar at a noise level of their own, :func:`rounding_bar`. The pieces, each in
its own private module:

- ``_stencils`` -- stencils derived from their nodes (Fornberg weights, moments);
- ``_steps`` -- the per-element step rule and how retries shrink it;
- ``_model`` -- the error model of one pass of real differences, and the result records;
- ``_core`` -- the methods: adaptive real differences, single stencils, complex step;
- ``_acceptance`` -- when ``method="auto"`` may use the complex step;
- ``_targets`` -- which coordinates move together and who gets each output's change;
- ``_coloring`` -- grouping structurally orthogonal columns of a dependency pattern;
- ``_evaluate`` -- calling ``f`` one point at a time or in memory-bounded batches;
- ``_problem`` -- one validated call: precision, choice of method, result;
- ``_api`` -- the public functions and their options.
"""

from gradcheck.numdiff._api import (
    numerical_grad,
    numerical_jacobian,
    numerical_jvp,
    numerical_vjp,
)
from gradcheck.numdiff._result import NumericalDerivative
from gradcheck.numdiff._stencils import rounding_bar

__all__ = [
    "numerical_grad",
    "numerical_vjp",
    "numerical_jacobian",
    "numerical_jvp",
    "NumericalDerivative",
    "rounding_bar",
]
