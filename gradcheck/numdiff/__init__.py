"""Numerical differentiation with honest error bars.

Public: :func:`numerical_grad`, :func:`numerical_vjp`, :func:`numerical_jacobian`,
:func:`numerical_jvp`, all returning a :class:`NumericalDerivative`. The pieces, each in
its own private module:

- ``_stencils`` -- stencils derived from their nodes (weights, moments, error constants);
- ``_steps`` -- the per-element step rule and how retries shrink it;
- ``_core`` -- adaptive Richardson, single stencils, complex step, and the error model;
- ``_targets`` -- which coordinates move together and who gets each output's change;
- ``_coloring`` -- grouping structurally orthogonal columns of a dependency pattern;
- ``_evaluate`` -- calling ``f`` one point at a time or in memory-bounded batches;
- ``_api`` -- the public functions, their options and the complex-step cross-check.
"""

from gradcheck.numdiff._api import (
    numerical_grad,
    numerical_jacobian,
    numerical_jvp,
    numerical_vjp,
)
from gradcheck.numdiff._result import NumericalDerivative

__all__ = [
    "numerical_grad",
    "numerical_vjp",
    "numerical_jacobian",
    "numerical_jvp",
    "NumericalDerivative",
]
