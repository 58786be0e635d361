"""What a check returns: per-argument findings, an overall verdict, and a diagnosis.

Reports are frozen dataclasses. ``str(report)`` is a table a person can read;
``report.to_dict()`` is JSON-ready (NaN and infinities become ``None``) and carries
``"format": REPORT_FORMAT`` so consumers can tell versions apart. The full arrays
(analytic, numerical, error bars, masks) stay on the Python object for plots and
debugging and are left out of ``to_dict``. In forward mode (:func:`~gradcheck.check_jvp`)
an argument's row counts columns of its Jacobian (or random directions), its arrays are
the worst probe's JVPs (shaped like the output), its masks mark the columns that failed
or reached a kink, ``output_index`` says which output entry of the worst column is
worst, and ``max_rel_error`` leaves out passing entries no larger than their tolerance
(a Jacobian's structural zeros, computed as rounding on one side).
"""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any, Mapping

import numpy as np

from gradcheck._record import frozen
from gradcheck.checker._layer_report import LayerResult, culprit_text

__all__ = ["REPORT_FORMAT", "Diagnosis", "ArgumentReport", "CheckReport", "LayerResult"]

#: Version of the ``to_dict`` layout; bumped on any incompatible change.
REPORT_FORMAT = 1


def _json_number(value):
    """A float for JSON: NaN/inf become None, numpy scalars become Python ones."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_value(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _json_number(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    return value if value is None or isinstance(value, str) else str(value)


@frozen
class Diagnosis:
    """The likely cause of a mismatch, with the evidence that supports it.

    ``cause`` is a stable identifier: one of the catalogue's
    (:data:`gradcheck.checker._causes.CAUSES`, listed with examples in
    ``docs/diagnosis.md``) -- generic ones such as ``"scaled"``, ``"shifted"``,
    ``"missing_term_constant"``, ``"value_mask"``, ``"nonlinear_in_cotangent"``,
    layer-aware ones such as ``"kernel_not_rotated"``, ``"stride_zeros_missing"``,
    ``"derivative_at_output"``, ``"no_gradient_returned"`` (the backward gave None where
    the gradient is not zero), and ``"outside_kink_limits"`` (an analytic value outside
    the one-sided derivatives at a kink), ``"no_numerical_derivative"`` (f overflowed or
    was NaN near some elements, which therefore could not be checked) -- or
    ``"no_known_pattern"`` (no cause fits: the message describes where the mismatch is);
    ``message`` is one or two sentences for a person; ``evidence`` holds the numbers
    behind it (e.g. the residual before and after applying the hypothesis).
    """

    cause: str
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"cause": self.cause, "message": self.message,
                "evidence": _json_value(dict(self.evidence))}

    def __str__(self) -> str:
        return self.message


@frozen
class ArgumentReport:
    """Findings for one differentiated argument (one tensor)."""

    name: str
    shape: tuple
    dtype: str
    passed: bool
    mode: str                       # "full", "sampled", "fast" or "skipped"
    n_elements: int
    n_checked: int                  # elements (full, sampled) or random directions (fast)
    n_failed: int
    n_nondifferentiable: int
    max_abs_error: float
    max_rel_error: float            # |a - n| / max(|a|, |n|), 0 where both are 0
    worst_index: tuple | None       # element (full, sampled) or direction number (fast)
    analytic_at_worst: float
    numeric_at_worst: float
    error_estimate_at_worst: float  # the numerical derivative's own error bar there
    tolerance_at_worst: float       # what |a - n| was allowed to be there
    max_error_estimate: float
    cosine_similarity: float
    norm_ratio: float               # ||analytic|| / ||numeric||
    nfev: int
    elapsed_s: float
    diagnosis: Diagnosis | None = None
    note: str = ""
    output_index: tuple | None = None  # forward mode: the output entry of the worst element
    analytic: np.ndarray | None = field(default=None, repr=False, compare=False)
    numeric: np.ndarray | None = field(default=None, repr=False, compare=False)
    error_estimate: np.ndarray | None = field(default=None, repr=False, compare=False)
    failed_mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    nondifferentiable_mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: The allowed |diff| of every element (full mode; sampled: NaN outside the sample), as
    #: the verdict judged it.
    allowed: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: The share of its value an error in each element must exceed to fail for sure
    #: (full and sampled modes; NaN where not judged: :func:`._summarize.resolved_share`).
    resolved_share: np.ndarray | None = field(default=None, repr=False, compare=False)
    n_directions: int = 0           # sampled: random directions over the unsampled rest
    n_directions_failed: int = 0
    #: The largest |diff| / allowed the verdict measured: the worst element's (at a kink,
    #: its distance outside the one-sided limits over what that may be) or a sampled
    #: tensor's directions'; above 1 is a failure (NaN when not measured, inf where no
    #: numerical value was usable).
    worst_excess: float = float("nan")
    #: The backward tested linear in its cotangent by the linearity stage
    #: (:mod:`._linearity`); None: not tested (a skipped argument).
    linear: bool | None = None
    #: The worst element sits at a kink (judged against its one-sided derivatives,
    #: ``limits_at_worst``, not against the central difference), or, in fast mode, the
    #: worst direction crosses one.
    worst_at_kink: bool = False
    limits_at_worst: tuple | None = None
    #: The elements whose numerical derivative is one-sided: ``-1`` the left one, ``1``
    #: the right one (``f`` was not finite on the other side: beyond float16's range),
    #: ``0`` elsewhere (full mode; None: none known). Said in the notes
    #: (:func:`._notes.one_sided_notes`).
    one_sided: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: The elements at kinks on which a slip would not be seen: shared kinks outside
    #: their limits (not judged), and kinks whose limits, widened by what a kink allows,
    #: reach the analytic value with its sign flipped (full mode; None: not known). Said
    #: in the notes (:func:`._notes.kink_notes`), with ``kink_limits``.
    unseen_at_kinks: np.ndarray | None = field(default=None, repr=False, compare=False)
    kink_limits: tuple | None = field(default=None, repr=False, compare=False)
    #: Which real differences were taken, and why, where the differentiator turned down
    #: the complex step (full mode; empty otherwise). Said in the notes.
    route: str = field(default="", repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "mode": self.mode,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "n_elements": int(self.n_elements),
            "n_checked": int(self.n_checked),
            "n_failed": int(self.n_failed),
            "n_nondifferentiable": int(self.n_nondifferentiable),
            "n_directions": int(self.n_directions),
            "n_directions_failed": int(self.n_directions_failed),
            "max_abs_error": _json_number(self.max_abs_error),
            "max_rel_error": _json_number(self.max_rel_error),
            "worst_index": None if self.worst_index is None else [int(i) for i in self.worst_index],
            "analytic_at_worst": _json_number(self.analytic_at_worst),
            "numeric_at_worst": _json_number(self.numeric_at_worst),
            "error_estimate_at_worst": _json_number(self.error_estimate_at_worst),
            "tolerance_at_worst": _json_number(self.tolerance_at_worst),
            "max_error_estimate": _json_number(self.max_error_estimate),
            "cosine_similarity": _json_number(self.cosine_similarity),
            "norm_ratio": _json_number(self.norm_ratio),
            "nfev": int(self.nfev),
            "elapsed_s": _json_number(self.elapsed_s),
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_dict(),
            "note": self.note,
            "linear": self.linear,
            "worst_at_kink": bool(self.worst_at_kink),
            "limits_at_worst": None if self.limits_at_worst is None else
            [_json_number(v) for v in self.limits_at_worst],
            **({} if self.output_index is None else
               {"output_index": [int(i) for i in self.output_index]}),
        }

    def summary(self) -> str:
        """One line: where it is worst, with both values."""
        if self.mode == "skipped":
            return f"{self.name}: skipped ({self.note})" if self.note else f"{self.name}: skipped"
        where = "direction" if self.mode == "fast" else "index"
        idx = "" if self.worst_index is None else f" at {where} {tuple(self.worst_index)}"
        if self.output_index is not None:
            idx += f", output {tuple(self.output_index)}"
        verdict = "ok" if self.passed else f"{self.n_failed}/{self.n_checked} FAIL"
        if self.mode == "sampled":
            verdict = (f"{'ok' if self.passed else 'FAIL'}; {self.n_failed} of "
                       f"{self.n_checked} sampled elements (of {self.n_elements}) failed")
            if self.n_directions_failed:
                verdict += (f", {self.n_directions_failed} of {self.n_directions} "
                            f"directions over the rest failed")
        if self.linear is False:      # the linearity stage failed it, whatever the rest says
            numerically = ("every comparison with the numerical derivative passed"
                           if not self.n_failed and not self.n_directions_failed else verdict)
            verdict = f"FAIL, not linear (see the likely cause); {numerically}"
        # "worst" is the element furthest beyond its own tolerance; its difference is
        # shown, and the largest difference anywhere only when it is another element's
        here = abs(self.analytic_at_worst - self.numeric_at_worst)
        if self.limits_at_worst is not None:
            return self._summary_at_kink(verdict, idx)
        largest = "" if not here < self.max_abs_error else (
            f"; largest |diff| anywhere {self.max_abs_error:.3g}")
        kink = ""
        if self.worst_at_kink:       # fast mode: a direction across a kink
            kink = ", which crosses a kink"
        return (f"{self.name}: {verdict}; worst{idx}{kink}: analytic "
                f"{self.analytic_at_worst:.9g} vs numeric {self.numeric_at_worst:.9g} "
                f"(|diff| {here:.3g}, allowed {self.tolerance_at_worst:.3g}{largest})")

    def _summary_at_kink(self, verdict, idx) -> str:
        """The summary when the worst element sits at a kink: it is judged against the
        one-sided derivatives there, and the central difference across the kink (the
        numerical value) is no measure of it."""
        a = self.analytic_at_worst
        lo, hi = sorted(float(v) + 0.0 for v in self.limits_at_worst)   # no "-0"
        beyond = lo - a if a < lo else a - hi if a > hi else 0.0
        where = f"outside them by {beyond:.3g}" if beyond > 0 else "between them"
        largest = "" if not beyond < self.max_abs_error else (
            f"; largest |diff| anywhere {self.max_abs_error:.3g}")
        return (f"{self.name}: {verdict}; worst{idx}, at a kink: analytic {a:.9g}, one-sided "
                f"derivatives {lo:.9g} and {hi:.9g} ({where}, allowed "
                f"{self.tolerance_at_worst:.3g} outside them; the central difference "
                f"across the kink, {self.numeric_at_worst:.9g}, is not compared{largest})")


_COLUMNS = (
    ("argument", "<"), ("result", "<"), ("max abs err", ">"), ("max rel err", ">"),
    ("num. err bar", ">"), ("failed", ">"), ("kinks", ">"), ("cosine", ">"), ("norm ratio", ">"),
    ("evals", ">"),
)


def _fmt(value: float, spec: str = ".2e") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


@frozen
class CheckReport:
    """Overall result of checking one function (or one layer spec) against its gradient."""

    name: str
    passed: bool
    mode: str
    seed: int
    arguments: tuple[ArgumentReport, ...]
    elapsed_s: float
    nfev: int
    dtype: str = ""
    notes: tuple[str, ...] = ()
    #: A network's layers, each with whether its own backward is right (the culprit
    #: pass, :mod:`gradcheck.checker._culprit`); empty for a function.
    layers: tuple[LayerResult, ...] = ()
    ad_mode: str = "rev"    # "rev" (check_vjp), "fwd" (check_jvp), or both ("fwd+rev")

    def __bool__(self) -> bool:  # pragma: no cover - convenience
        return self.passed

    def __getitem__(self, name: str) -> ArgumentReport:
        for arg in self.arguments:
            if arg.name == name:
                return arg
        raise KeyError(f"no argument named {name!r}; have {[a.name for a in self.arguments]}")

    @property
    def failures(self) -> tuple[ArgumentReport, ...]:
        return tuple(a for a in self.arguments if not a.passed)

    def to_dict(self) -> dict:
        return {
            "format": REPORT_FORMAT,
            "name": self.name,
            "passed": bool(self.passed),
            "mode": self.mode,
            "seed": int(self.seed),
            "dtype": self.dtype,
            "elapsed_s": _json_number(self.elapsed_s),
            "nfev": int(self.nfev),
            "notes": list(self.notes),
            "ad_mode": self.ad_mode,
            "checks": [a.to_dict() for a in self.arguments],
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def table(self) -> str:
        rows = []
        for a in self.arguments:
            if a.mode == "skipped":
                rows.append((a.name, "skipped", "-", "-", "-", "-", "-", "-", "-", "-"))
                continue
            result = "ok" if a.passed else "NOT LINEAR" if a.linear is False and not (
                a.n_failed or a.n_directions_failed) else "MISMATCH"
            rows.append((
                a.name, result, _fmt(a.max_abs_error), _fmt(a.max_rel_error),
                _fmt(a.max_error_estimate), f"{a.n_failed}/{a.n_checked}",
                str(a.n_nondifferentiable), _fmt(a.cosine_similarity, ".6f"),
                _fmt(a.norm_ratio, ".6f"), str(a.nfev),
            ))
        widths = [max(len(c[0]), *(len(r[i]) for r in rows)) if rows else len(c[0])
                  for i, c in enumerate(_COLUMNS)]
        line = lambda cells: "  ".join(  # noqa: E731
            f"{cell:{align}{w}}" for cell, (_, align), w in zip(cells, _COLUMNS, widths))
        out = [line([c[0] for c in _COLUMNS]), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        return "\n".join(out)

    def __str__(self) -> str:
        ad = {"rev": "", "fwd": "forward AD, "}.get(self.ad_mode, f"{self.ad_mode} AD, ")
        head = (f"gradcheck {self.name}: {'PASSED' if self.passed else 'FAILED'} "
                f"({ad}{self.mode} mode, seed {self.seed}, {self.nfev} evaluations, "
                f"{self.elapsed_s:.3g} s)")
        parts = [head, self.table()]
        for a in self.arguments:
            if a.mode != "skipped" and not a.passed:
                parts.append("  " + a.summary())
                if a.diagnosis is not None:
                    parts.append("    likely cause: " + a.diagnosis.message)
        parts.extend(culprit_text(self.layers, self.passed))
        parts.extend("note: " + n for n in self.notes)
        return "\n".join(parts)
