"""Turning check results into text for a person, JSON for a program, JUnit XML for CI.

The unit of output is a *check*: one tensor (the input or one parameter) of one spec.
Beside the checks, each spec's *layers*: whether each layer's own backward is right (the
culprit pass of :mod:`gradcheck.checker._culprit`, run when the spec fails). A spec whose
user code failed before any tensor could be checked is one failed check carrying the
error. A spec that could not be checked at all -- bad input: unreadable,
invalid, too large -- is not a check but an *error* (:class:`SpecInputError`), listed
apart. ``gradcheck check --json`` prints :func:`to_json`; ``--junit-xml`` writes
:func:`to_junit_xml`.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from gradcheck._record import NamedTuple

__all__ = ["SpecResult", "SpecInputError", "to_text", "to_json", "to_junit_xml", "summary_line",
           "JSON_FORMAT"]

#: Version of the ``--json`` layout (the checker's ``CheckReport.to_dict`` format).
JSON_FORMAT = 1


class SpecResult(NamedTuple):
    """What checking one spec gave: a report, or the error that stopped it."""

    label: str                  # the spec file as given on the command line
    name: str                   # the spec's name
    report: object | None       # gradcheck.checker.CheckReport
    error: str | None = None    # the user's layer failed (raised, NaN, wrong shape)
    elapsed_s: float = 0.0
    detail: str = ""            # e.g. the user's traceback, shown with -v
    layers: tuple = ()          # LayerResults when there is no report (nothing checked)

    @property
    def passed(self) -> bool:
        return self.error is None and self.report is not None and bool(self.report.passed)

    def check_name(self, argument: str) -> str:
        return f"{self.label}::{argument}"

    @property
    def layer_results(self) -> tuple:
        """One :class:`~gradcheck.checker.LayerResult` per layer of the spec."""
        return tuple(self.report.layers) if self.report is not None else tuple(self.layers)


class SpecInputError(NamedTuple):
    """A spec that could not be checked: bad input (exit status 2)."""

    spec: str | None            # the file as given on the command line
    key: str | None             # the key at fault ("layer[0].kernel"); None: the whole file
    message: str                # the one-line message printed on stderr

    def to_dict(self) -> dict:
        return {"spec": self.spec, "key": self.key, "message": self.message}


def _number(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _counts(results):
    total = failed = 0
    for r in results:
        if r.report is None:
            total, failed = total + 1, failed + 1
            continue
        n_failed = sum(not a.passed for a in r.report.arguments)
        total += len(r.report.arguments)
        # a layer wrong on its own fails a report whose tensors passed: one failed check
        failed += n_failed if n_failed or r.report.passed else 1
    return total, failed


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def summary_line(results: Sequence[SpecResult], elapsed_s: float,
                 errors: Sequence[SpecInputError] = ()) -> str:
    """``gradcheck: all 7 checks passed (1 spec, 0.52 s)``, plus the specs not checked."""
    total, failed = _counts(results)
    specs = _plural(len(results), "spec")
    if not failed:
        line = f"gradcheck: all {total} checks passed ({specs}, {elapsed_s:.2f} s)"
    else:
        line = f"gradcheck: {failed} of {total} checks FAILED ({specs}, {elapsed_s:.2f} s)"
    if errors:
        line += f"; {_plural(len(errors), 'spec')} not checked (bad input, exit status 2)"
    return line


# --------------------------------------------------------------------------- text


def _titled(result: SpecResult):
    import dataclasses

    return dataclasses.replace(result.report, name=result.label)


def to_text(results: Sequence[SpecResult], *, elapsed_s: float, verbosity: int = 0,
            errors: Sequence[SpecInputError] = ()) -> str:
    """The human report: a table per spec, worst entries and likely causes of failures.

    ``verbosity`` -1 (``-q``): failures (with the culprit layer), the report's notes --
    what weakened or qualified a verdict, passing or not -- and the summary line only;
    0: a table per spec; 1 (``-v``): also every tensor's worst entry and the spec's
    description. ``errors`` (their messages went to stderr) are counted in the summary
    line.
    """
    parts = []
    for r in results:
        if r.error is not None:
            parts.append(f"gradcheck {r.label}: ERROR (user code): {r.error}")
            if verbosity > 0 and r.detail:
                parts.append(r.detail.rstrip())
            elif r.detail:
                parts.append("  (rerun with -v for the traceback)")
            continue
        if verbosity < 0:
            parts.append("\n".join(_quiet(r)))
            continue
        block = str(_titled(r))
        if verbosity > 0:
            extra = [f"  {a.summary()}" for a in r.report.arguments if a.passed]
            if extra:
                block += "\n" + "\n".join(extra)
        parts.append(block)
    parts.append(summary_line(results, elapsed_s, errors))
    return "\n\n".join(p for p in parts if p) + "\n"


def _quiet(r: SpecResult) -> list:
    """``-q``: a failing spec's failures and culprit, and any spec's notes (a note says
    what weakened or qualified the verdict: it must not vanish under -q)."""
    from gradcheck.checker._layer_report import culprit_text

    report = r.report
    lines = []
    if not r.passed:
        lines.append(f"gradcheck {r.label}: FAILED")
        for a in report.failures:
            lines.append("  " + a.summary())
            if a.diagnosis is not None:
                lines.append("    likely cause: " + a.diagnosis.message)
        lines += ["  " + line for line in culprit_text(report.layers, report.passed)]
    elif report.notes:
        lines.append(f"gradcheck {r.label}: PASSED, with notes")
    lines += [f"  note: {n}" for n in report.notes]
    return lines


# --------------------------------------------------------------------------- JSON


def _error_check(r: SpecResult) -> dict:
    return {"name": r.label, "spec": r.label, "argument": None, "passed": False,
            "error": r.error, "max_abs_error": None, "max_rel_error": None,
            "worst_index": None, "diagnosis": None}


def to_json(results: Sequence[SpecResult], *, elapsed_s: float,
            errors: Sequence[SpecInputError] = ()) -> dict:
    """One JSON-ready object: ``format``, ``passed``, ``checks``, ``layers``, ``specs``,
    ``errors``, ...

    ``checks`` has one entry per tensor per spec, named ``"SPEC::TENSOR"`` (e.g.
    ``"specs/conv_tanh.toml::layer0.conv.w"``), with every field of the checker's
    per-argument report (``passed``, ``max_abs_error``, ``max_rel_error``,
    ``worst_index``, both values there, ``diagnosis`` when failing, ...). ``layers`` has
    one entry per layer of every spec (``spec``, ``index``, ``type``, ``target`` for a
    python layer, ``passed``, ``alone``: checked on its own, ...). ``specs`` has one
    entry per checked spec; ``errors`` one per spec that could not be checked (``spec``,
    ``key``, ``message``), and any error makes ``passed`` false.
    """
    checks, specs, layers = [], [], []
    for r in results:
        spec_entry = {"spec": r.label, "name": r.name, "passed": r.passed,
                      "elapsed_s": _number(r.elapsed_s), "error": r.error}
        if r.report is None:
            checks.append(_error_check(r))
        else:
            d = r.report.to_dict()
            spec_entry.update({k: d[k] for k in ("mode", "seed", "dtype", "nfev", "notes")})
            for entry in d["checks"]:
                argument = entry["name"]
                entry = {"name": r.check_name(argument), "spec": r.label, "argument": argument,
                         **{k: v for k, v in entry.items() if k != "name"}}
                checks.append(entry)
        layers += [{"spec": r.label, **layer.to_dict()} for layer in r.layer_results]
        specs.append(spec_entry)
    total, failed = _counts(results)
    return {"format": JSON_FORMAT, "passed": failed == 0 and not errors,
            "elapsed_s": _number(elapsed_s),
            "summary": {"checks": total, "failed": failed, "specs": len(results),
                        "errors": len(errors)},
            "checks": checks, "layers": layers, "specs": specs,
            "errors": [e.to_dict() for e in errors]}


# --------------------------------------------------------------------------- JUnit XML

#: Characters XML 1.0 does not allow (compiled by re on first use: JUnit output only).
_XML_INVALID = "[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"


def _clean(text) -> str:
    return re.sub(_XML_INVALID, "?", str(text))


def _layer_cases(suite, r: SpecResult) -> None:
    """A testcase per layer of ``r``'s network."""
    import xml.etree.ElementTree as ET

    from gradcheck.checker._layer_report import culprit_line

    report = r.report
    for layer in r.layer_results:
        elapsed = layer.report.elapsed_s if layer.report is not None else 0.0
        case = ET.SubElement(suite, "testcase", classname=_clean(r.label),
                             name=_clean(layer.label), time=f"{elapsed:.3f}")
        if layer.passed is None:
            ET.SubElement(case, "skipped", message=_clean(layer.note or "not checked"))
        elif layer.passed is False:
            fail = ET.SubElement(case, "failure", type="LayerBackwardWrong",
                                 message=_clean(f"{layer.label}: its backward is wrong"))
            # its own failures; a network of one layer: the network's, which are its own
            failures = (layer.report or report).failures
            lines = [culprit_line(report.layers, report.passed)]
            for a in failures:
                lines.append(f"  {a.summary()}")
                if a.diagnosis is not None:
                    lines.append("    likely cause: " + a.diagnosis.message)
            if layer.report is None and not failures and layer.note:
                lines.append(layer.note)
            fail.text = _clean("\n".join(lines))


def to_junit_xml(results: Sequence[SpecResult], *, elapsed_s: float,
                 errors: Sequence[SpecInputError] = ()) -> str:
    """JUnit XML: a ``<testsuite>`` per spec, a ``<testcase>`` per tensor and per layer.

    A mismatch is a ``<failure>`` whose message is the worst entry with both values and
    whose text adds the likely cause; user code that failed is an ``<error>``; a tensor
    the checker skipped is ``<skipped>``. A layer's testcase (``name="layer 1
    (mylayers:BatchNorm)"``) fails when its own backward is wrong, with the culprit line
    and its failures as text, and is ``<skipped>`` when it could not be checked on its
    own (or at all: the spec's user code failed). A spec that could not be checked (bad input)
    is a suite of one testcase, named after the key at fault (``spec`` when the whole
    file is), holding an ``<error type="SpecError">``.
    """
    import xml.etree.ElementTree as ET

    total, _ = _counts(results)
    user_errors = sum(r.report is None for r in results)
    reports = [r.report for r in results if r.report is not None]
    n_layers = sum(len(r.layer_results) for r in results)
    failures = sum(not a.passed for rep in reports for a in rep.arguments) + \
        sum(layer.passed is False for rep in reports for layer in rep.layers)
    root = ET.Element("testsuites", name="gradcheck", tests=str(total + n_layers + len(errors)),
                      failures=str(failures), errors=str(user_errors + len(errors)),
                      time=f"{elapsed_s:.3f}")
    for e in errors:
        label = _clean(e.spec or "gradcheck")
        suite = ET.SubElement(root, "testsuite", name=label, tests="1", failures="0",
                              errors="1", skipped="0", time="0.000")
        case = ET.SubElement(suite, "testcase", classname=label, name=_clean(e.key or "spec"),
                             time="0.000")
        err = ET.SubElement(case, "error", message=_clean(e.message), type="SpecError")
        err.text = _clean(e.message)
    for r in results:
        suite = ET.SubElement(root, "testsuite", name=_clean(r.label))
        if r.report is None:
            n = len(r.layer_results)
            suite.attrib.update(tests=str(1 + n), failures="0", errors="1", skipped=str(n),
                                time=f"{r.elapsed_s:.3f}")
            case = ET.SubElement(suite, "testcase", classname=_clean(r.label), name="build",
                                 time=f"{r.elapsed_s:.3f}")
            err = ET.SubElement(case, "error", message=_clean(r.error), type="UserCodeError")
            err.text = _clean(r.detail or r.error)
            _layer_cases(suite, r)
            continue
        args, layers = r.report.arguments, r.report.layers
        n_fail = sum(not a.passed for a in args) + sum(l.passed is False for l in layers)
        n_skip = sum(a.mode == "skipped" for a in args) + sum(l.passed is None for l in layers)
        suite.attrib.update(tests=str(len(args) + len(layers)), failures=str(n_fail),
                            errors="0", skipped=str(n_skip), time=f"{r.report.elapsed_s:.3f}")
        for a in args:
            case = ET.SubElement(suite, "testcase", classname=_clean(r.label),
                                 name=_clean(a.name), time=f"{a.elapsed_s:.3f}")
            if a.mode == "skipped":
                ET.SubElement(case, "skipped", message=_clean(a.note or "skipped"))
            elif not a.passed:
                fail = ET.SubElement(case, "failure", message=_clean(a.summary()),
                                     type="GradientMismatch")
                lines = [a.summary()]
                if a.diagnosis is not None:
                    lines.append("likely cause: " + a.diagnosis.message)
                lines.append(f"{a.n_failed} of {a.n_checked} checked elements failed; "
                             f"cosine similarity {a.cosine_similarity:.6f}, norm ratio "
                             f"{a.norm_ratio:.6f}")
                fail.text = _clean("\n".join(lines))
        _layer_cases(suite, r)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
