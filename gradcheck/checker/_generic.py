"""The generic causes: one line per cause, its test of fit and its message.

Generic causes need nothing but the evidence of one failing argument: the analytic
gradient ``A``, the numerical one ``N``, the tolerance ``τ`` the check used, the
argument's value ``x`` and shape, the cotangent ``R``, the sizes of the problem, and --
for the two probes -- the backward and the forward to call again
(:class:`~gradcheck.checker._fit.Known`). They know nothing of what the layer computes,
so they work for any ``f``.

Each entry of :data:`GENERIC_CAUSES` is ``(cause, fit, message)``: ``fit(evidence)``
returns a :class:`~gradcheck.checker._fit.Fit` when the claim fits and explains a
mismatch beyond noise (:func:`gradcheck.checker._fit.fit_claim`), else None;
``message`` is formatted with the fit's parameters. A new cause is a new test of fit
(a function of the evidence) and one more line here; entries are tried in order and the
first that fits is named.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from gradcheck.checker._cause_layout import (
    fit_axes_permuted,
    fit_permuted_within,
    fit_reversed,
    fit_shifted,
)
from gradcheck.checker._cause_masks import fit_position_mask, fit_value_mask
from gradcheck.checker._cause_probes import (
    fit_derivative_at_output,
    fit_nonlinear,
    fit_passed_through,
)
from gradcheck.checker._cause_scale import fit_scale, fit_scale_per_slice, fit_sign
from gradcheck.checker._cause_terms import fit_elementwise_relation, fit_rank_one, missing_term
from gradcheck.checker._describe import describe
from gradcheck.checker._fit import Fit
from gradcheck.checker._report import Diagnosis

__all__ = ["GenericCause", "GENERIC_CAUSES", "RELATION_MEANING", "name_generic",
           "describe_mismatch"]


class GenericCause(NamedTuple):
    """One entry of the table: a cause, its test of fit, its message template."""

    cause: str
    fit: Callable      # (evidence) -> Fit | None
    message: str       # formatted with the Fit's params


#: What ``A = c N h(x)`` means, per ``h``.
RELATION_MEANING = {
    "x": "the derivative is multiplied by x once too often (x·f'(x) where f'(x) belongs?)",
    "1/x": "the derivative is divided by x once too often (d/dx log x = 1/x applied twice?)",
    "x²": "the derivative is multiplied by x² once too often",
    "1/x²": "the derivative is divided by x² once too often",
    "|x|": "the derivative is multiplied by |x| (a magnitude left in)",
    "exp(x)": "an extra factor exp(x): the function's value used where its derivative "
              "belongs, or an exponential left in",
    "exp(-x)": "an extra factor exp(−x): σ(−x) where σ(x) belongs (their ratio is "
               "exp(−x)), or an exponential's sign wrong",
}

_T = "The difference between the analytic and the numerical gradient is "

#: The generic causes, tried in this order.
GENERIC_CAUSES = (
    GenericCause("nonlinear_in_cotangent", fit_nonlinear,
                 "The backward is not linear in its incoming gradient R: called again, it "
                 "{how}. Every vector-Jacobian product is linear in R ({calls} more call(s) "
                 "of the backward were made to test this)."),
    GenericCause("sign_flipped", fit_sign,
                 "The analytic gradient is the numerical one with its sign flipped."),
    GenericCause("scaled", fit_scale,
                 "The analytic gradient is {factor_text} times the numerical one everywhere: "
                 "{meaning}."),
    GenericCause("axes_permuted", fit_axes_permuted,
                 "The analytic gradient is the numerical one {how}."),
    GenericCause("reversed", fit_reversed,
                 "The analytic gradient is the numerical one reversed along {axes_text}: the "
                 "positions along it are taken in the opposite order (a flip missing or "
                 "extra, an index counted from the wrong end)."),
    GenericCause("shifted", fit_shifted,
                 "The analytic gradient is the numerical one shifted by {by:+d} along "
                 "{axes_text} ({formula}; the edge it moves in is not compared): an "
                 "off-by-one in a crop, a padding or an index along that axis."),
    GenericCause("permuted_within", fit_permuted_within,
                 "The analytic gradient holds the numerical values in the wrong places: "
                 "{where} has the same values, reordered ({moved} elements moved): a scatter "
                 "with the wrong indices (a permutation used where its inverse belongs?)."),
    GenericCause("value_mask", fit_value_mask,
                 "All {count} mismatches lie exactly where {where}, and {relation_text}; "
                 "elsewhere it agrees: {meaning}."),
    GenericCause("passed_through", fit_passed_through,
                 "The analytic gradient is the incoming gradient R itself: the backward "
                 "passes R through unchanged, the local derivative never multiplied in."),
    GenericCause("elementwise_relation", fit_elementwise_relation,
                 "The analytic gradient is {factor_text}{h} times the numerical one, element "
                 "by element: {meaning}."),
    GenericCause("derivative_at_output", fit_derivative_at_output,
                 "f is element-wise, and the analytic gradient is R·f'(y): the derivative was "
                 "evaluated at the output y = f(x) instead of at x ({calls} more calls of f "
                 "were made to test this)."),
    GenericCause("position_mask", fit_position_mask,
                 "All {count} mismatches lie in {where}, and {relation_text}; everywhere else "
                 "it agrees: {meaning}."),
    GenericCause("scaled_per_slice", fit_scale_per_slice,
                 "The analytic gradient is the numerical one scaled by {how}."),
    GenericCause("missing_term_cotangent", missing_term("cotangent"),
                 _T + "{coefficient} × the incoming gradient R: a path by which R reaches this "
                 "argument unchanged is missing or counted twice (the identity of a residual "
                 "connection y = x + F(x)?)."),
    GenericCause("missing_term_value", missing_term("value"),
                 _T + "{coefficient} × the argument's own value: a term proportional to it is "
                 "missing or extra (a weight decay or L2 penalty λ·x?)."),
    GenericCause("missing_term_constant", missing_term("constant"),
                 _T + "constant {where} (one value per slice, {coefficient}): a term that is "
                 "the same for every element {where} is missing or extra (the −mean(g) term "
                 "of a normalization {where}?)."),
    GenericCause("missing_term_centered", missing_term("centered"),
                 _T + "proportional to x − mean(x) {where} (coefficient {coefficient} per "
                 "slice): the x̂ term of a normalization {where}, −x̂·mean(g·x̂), is "
                 "missing or wrong."),
    GenericCause("missing_term_affine", missing_term("affine"),
                 _T + "a + b·x {where} (a {offset}, b {coefficient} per slice): the mean terms "
                 "of a normalization {where}, −mean(g) and −x̂·mean(g·x̂), are missing or "
                 "wrong."),
    GenericCause("missing_term_softmax", missing_term("softmax"),
                 _T + "proportional to p = softmax(x) {where} (coefficient {coefficient} per "
                 "slice): the rank-one term p (p·g) of the softmax Jacobian diag(p) − p pᵀ "
                 "is missing (or the p·sum(g) of a log-softmax)."),
    GenericCause("missing_term_softmax_affine", missing_term("softmax_affine"),
                 _T + "a + b·softmax(x) {where}: a uniform weight (a mean) is used where the "
                 "softmax weights p belong (log-softmax's g − p·sum(g)?)."),
    GenericCause("missing_term_rank_one", fit_rank_one,
                 _T + "an outer product u vᵀ over axis {axis} and the other axes (rank one; "
                 "largest singular values {singular_values}): one term of a sum of outer "
                 "products is missing or extra (one batch item's xₙᵀgₙ in a weight "
                 "gradient: a loop that skips an item?)."),
)


def _fit_text(fit: Fit) -> str:
    if not np.isfinite(fit.after):
        return ""
    return (f" (This fits: the largest mismatch goes from {fit.before:.3g} to {fit.after:.2g} "
            f"tolerances.)")


def _diagnosis(entry: GenericCause, fit: Fit, n_failed: int) -> Diagnosis:
    params = dict(fit.params)
    if entry.cause == "elementwise_relation":
        params["meaning"] = RELATION_MEANING[params["h"]]
    if "singular_values" in params:
        params["singular_values"] = ", ".join(f"{v:.3g}" for v in params["singular_values"])
    message = entry.message.format(**params) + _fit_text(fit)
    evidence = {"misfit_before": fit.before, "misfit_after": fit.after,
                "failed_elements": n_failed, **fit.params}
    return Diagnosis(entry.cause, message, evidence)


def name_generic(ev, causes=GENERIC_CAUSES) -> Diagnosis | None:
    """The first entry of ``causes`` whose claim fits ``ev``, as a Diagnosis (or None)."""
    for entry in causes:
        fit = entry.fit(ev)
        if fit is not None:
            return _diagnosis(entry, fit, ev.n_failed)
    return None


def describe_mismatch(ev) -> Diagnosis:
    """``no_known_pattern``, with a description of where the mismatch is and its size."""
    message, evidence = describe(ev)
    return Diagnosis("no_known_pattern", message, evidence)
