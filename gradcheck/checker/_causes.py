"""The catalogue of causes: one line per cause, its test of fit and its message.

The diagnose stage (:func:`gradcheck.checker._diagnose.diagnose_evidence`) tries the
entries of :data:`CAUSES` in order on the :class:`~gradcheck.checker._diagnose.Evidence`
of one failing argument and names the first that fits; when none does, the mismatch is
described (where it is, how large: ``no_known_pattern``, :mod:`._describe`).

An entry is ``Cause(name, test, message)``. ``test(evidence)`` returns None (the claim
does not fit) or either a :class:`~gradcheck.checker._fit.Fit` -- the claim fits and
explains a mismatch beyond noise (:func:`gradcheck.checker._fit.fit_claim`), and
``message`` is formatted with its numbers -- or a whole
:class:`~gradcheck.checker._report.Diagnosis`, for the entries whose message depends on
more than a few numbers (a known mistake of the layer, a kink). A new cause is a test of
fit (a function of the evidence) and one more line here, after the causes it is more
general than. ``docs/diagnosis.md`` lists every cause with a real example.

======================================  ===============================================
cause                                   claim (``A`` analytic, ``N`` numerical)
======================================  ===============================================
``no_gradient_returned``                the backward gave None (``A = 0``), ``N ≠ 0``
``no_numerical_derivative``             some elements have no usable numerical value
(the caller's suspects)                 ``A`` is what a known mistake of the layer gives
``gradient_where_none``                 ``N = 0`` at every element, ``A ≠ 0``
``sign_flipped``                        ``A = -N``
``scaled``                              ``A = c N`` (``c`` named: a size, √size, 2, ½)
``kernel_not_rotated``                  ``A = flip(N)`` over the spatial axes (or one)
``transposed``                          the last two spatial axes of ``N`` swapped
``shifted``                             ``A[i] = N[i - s]`` along one axis or two
``axes_permuted``                       ``N``'s axes permuted, or reshaped in another order
``reversed``                            ``N`` reversed along some axes
``permuted_within``                     each slice holds ``N``'s values, reordered
``operand_transposed``                  ``A = R Mᵀ`` where ``N = R M`` (or ``Mᵀ R``, ``M R``)
``single_element``                      only one element is wrong
``region``                              wrong in one batch item, channel or border
``nonlinear_in_cotangent``              ``f_vjp`` is not linear in its cotangent ``R``
``value_mask``                          wrong exactly where ``x`` passes a threshold
``kink_branch``                         ``A = c N`` on one side of the kinks, and there
``passed_through``                      ``A = R``
``elementwise_relation``                ``A = c N h(x)``, ``h`` in ``x``, ``1/x``, ``exp(±x)``…
``derivative_at_output``                ``A = R f'(f(x))`` for an element-wise ``f``
``position_mask``                       wrong in one index, near the ends, or periodically
``scaled_per_slice``                    ``A = c_k N`` on slice ``k`` along one axis
``missing_term_cotangent``              ``A - N = c R``
``missing_term_value``                  ``A - N = λ x``
``missing_term_constant``               ``A - N`` constant along some axes
``missing_term_centered``               ``A - N = b (x - mean x)`` per slice
``missing_term_affine``                 ``A - N = a + b x`` per slice
``missing_term_softmax``                ``A - N = s softmax(x)`` per slice
``missing_term_softmax_affine``         ``A - N = a + s softmax(x)`` per slice
``missing_term_rank_one``               ``A - N = u vᵀ``
``outside_kink_limits``                 at a kink, ``A`` outside both one-sided limits
======================================  ===============================================
"""

from __future__ import annotations

from typing import Callable

from gradcheck._record import NamedTuple
from gradcheck.checker._cause_branch import fit_kink_branch
from gradcheck.checker._cause_check import (
    caller_suspects,
    gradient_where_none,
    no_gradient_returned,
    no_numerical_derivative,
    outside_kink_limits,
)
from gradcheck.checker._cause_layout import (
    fit_axes_permuted,
    fit_kernel_flip,
    fit_permuted_within,
    fit_reversed,
    fit_shifted,
    fit_spatial_transpose,
)
from gradcheck.checker._cause_matmul import fit_operand_transposed
from gradcheck.checker._cause_masks import (
    fit_position_mask,
    fit_value_mask,
    region,
    single_element,
)
from gradcheck.checker._cause_probes import (
    fit_derivative_at_output,
    fit_nonlinear,
    fit_passed_through,
)
from gradcheck.checker._cause_scale import fit_scale, fit_scale_per_slice, fit_sign
from gradcheck.checker._cause_terms import fit_elementwise_relation, fit_rank_one, missing_term

__all__ = ["Cause", "CAUSES"]


class Cause(NamedTuple):
    """One entry of the catalogue: a cause, its test of fit, its message template."""

    name: str
    test: Callable     # (Evidence) -> Fit | Diagnosis | None
    message: str = ""  # formatted with a Fit's params ("" when test makes the Diagnosis)


_D = "The difference between the analytic and the numerical gradient is "

#: Tried in this order; the first that fits is named.
CAUSES = (
    Cause("no_gradient_returned", no_gradient_returned),
    Cause("no_numerical_derivative", no_numerical_derivative),
    Cause("suspects", caller_suspects),
    Cause("gradient_where_none", gradient_where_none),
    Cause("sign_flipped", fit_sign,
          "The analytic gradient is the numerical one with its sign flipped{said}."),
    Cause("scaled", fit_scale,
          "The analytic gradient is {factor_text} times the numerical one everywhere: "
          "{meaning}."),
    Cause("kernel_not_rotated", fit_kernel_flip, "{text}"),
    Cause("transposed", fit_spatial_transpose, "{text}"),
    Cause("shifted", fit_shifted,
          "The analytic gradient is the numerical one shifted by {by:+d} along {axes_text} "
          "({formula}; the edge it moves in is not compared): an off-by-one in a crop, a "
          "padding or an index along that axis."),
    Cause("axes_permuted", fit_axes_permuted,
          "The analytic gradient is the numerical one {how}."),
    Cause("reversed", fit_reversed,
          "The analytic gradient is the numerical one reversed along {axes_text}: the "
          "positions along it are taken in the opposite order (a flip missing or extra, an "
          "index counted from the wrong end)."),
    Cause("permuted_within", fit_permuted_within,
          "The analytic gradient holds the numerical values in the wrong places: {where} "
          "has the same values, reordered ({moved} elements moved): a scatter with the "
          "wrong indices (a permutation used where its inverse belongs?)."),
    Cause("operand_transposed", fit_operand_transposed, "{text}"),
    Cause("single_element", single_element),
    Cause("region", region),
    Cause("nonlinear_in_cotangent", fit_nonlinear,
          "The backward is not linear in its incoming gradient R: called again, it {how}. "
          "Every vector-Jacobian product is linear in R ({calls} more call(s) of the "
          "backward were made to test this)."),
    Cause("value_mask", fit_value_mask,
          "{mismatches} lie exactly where {where}, and {relation_text}; elsewhere "
          "it agrees: {meaning}."),
    Cause("kink_branch", fit_kink_branch, "{text}"),
    Cause("passed_through", fit_passed_through,
          "The analytic gradient is the incoming gradient R itself: the backward passes R "
          "through unchanged, the local derivative never multiplied in."),
    Cause("elementwise_relation", fit_elementwise_relation,
          "The analytic gradient is {factor_text}{h} times the numerical one, element by "
          "element: {meaning}."),
    Cause("derivative_at_output", fit_derivative_at_output,
          "f is element-wise, and the analytic gradient is R·f'(y): the derivative was "
          "evaluated at the output y = f(x) instead of at x ({calls} more calls of f were "
          "made to test this)."),
    Cause("position_mask", fit_position_mask,
          "{mismatches} lie in {where}, and {relation_text}; everywhere else it "
          "agrees: {meaning}."),
    Cause("scaled_per_slice", fit_scale_per_slice,
          "The analytic gradient is the numerical one scaled by {how}."),
    Cause("missing_term_cotangent", missing_term("cotangent"),
          _D + "{coefficient} × the incoming gradient R: a path by which R reaches this "
          "argument unchanged is missing or counted twice (the identity of a residual "
          "connection y = x + F(x)?)."),
    Cause("missing_term_value", missing_term("value"),
          _D + "{coefficient} × the argument's own value: a term proportional to it is "
          "missing or extra (a weight decay or L2 penalty λ·x?)."),
    Cause("missing_term_constant", missing_term("constant"),
          _D + "constant {where} (one value per slice, {coefficient}): a term that is the "
          "same for every element {where} is missing or extra (the −mean(g) term of a "
          "normalization {where}?)."),
    Cause("missing_term_centered", missing_term("centered"),
          _D + "proportional to x − mean(x) {where} (coefficient {coefficient} per slice): "
          "the x̂ term of a normalization {where}, −x̂·mean(g·x̂), is missing or wrong."),
    Cause("missing_term_affine", missing_term("affine"),
          _D + "a + b·x {where} (a {offset}, b {coefficient} per slice): the mean terms of "
          "a normalization {where}, −mean(g) and −x̂·mean(g·x̂), are missing or wrong."),
    Cause("missing_term_softmax", missing_term("softmax"),
          _D + "proportional to p = softmax(x) {where} (coefficient {coefficient} per "
          "slice): the rank-one term p (p·g) of the softmax Jacobian diag(p) − p pᵀ is "
          "missing (or the p·sum(g) of a log-softmax)."),
    Cause("missing_term_softmax_affine", missing_term("softmax_affine"),
          _D + "a + b·softmax(x) {where}: a uniform weight (a mean) is used where the "
          "softmax weights p belong (log-softmax's g − p·sum(g)?)."),
    Cause("missing_term_rank_one", fit_rank_one,
          _D + "an outer product u vᵀ over axis {axis} and the other axes (rank one; "
          "largest singular values {singular_text}): one term of a sum of outer products "
          "is missing or extra (one batch item's xₙᵀgₙ in a weight gradient: a loop that "
          "skips an item?)."),
    Cause("outside_kink_limits", outside_kink_limits),
)
