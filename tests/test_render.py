"""Text, JSON and JUnit XML renderings of check results, on reports built by hand.

The XML is parsed back with ``xml.etree``; the JSON is serialized strictly (no NaN).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gradcheck.checker import ArgumentReport, CheckReport, Diagnosis
from gradcheck._render import (
    SpecInputError,
    SpecResult,
    summary_line,
    to_json,
    to_junit_xml,
    to_text,
)

NAN = float("nan")


def arg(name, *, passed=True, mode="full", shape=(2, 3), diagnosis=None, note=""):
    failed = 0 if passed else 2
    return ArgumentReport(
        name=name, shape=shape, dtype="float64", passed=passed, mode=mode,
        n_elements=int(np.prod(shape)), n_checked=0 if mode == "skipped" else int(np.prod(shape)),
        n_failed=failed, n_nondifferentiable=0,
        max_abs_error=NAN if mode == "skipped" else (1e-12 if passed else 0.5),
        max_rel_error=NAN if mode == "skipped" else (1e-10 if passed else 0.25),
        worst_index=None if mode == "skipped" else (1, 2),
        analytic_at_worst=1.5 if not passed else 2.0, numeric_at_worst=2.0,
        error_estimate_at_worst=1e-11, tolerance_at_worst=1e-9, max_error_estimate=2e-11,
        cosine_similarity=1.0 if passed else 0.9, norm_ratio=1.0 if passed else 0.8, nfev=24,
        elapsed_s=0.01, diagnosis=diagnosis, note=note)


ROTATED = Diagnosis("kernel_not_rotated", "The kernel was not rotated by 180 degrees.",
                    {"residual_before": 3.2, "residual_after": 1e-12})


def report(name, *args):
    return CheckReport(name=name, passed=all(a.passed for a in args), mode="full", seed=7,
                       arguments=tuple(args), elapsed_s=0.05, nfev=100, dtype="float64")


@pytest.fixture
def results():
    ok = report("net", arg("input"), arg("layer0.conv.w", shape=(4, 3, 3, 3)),
                arg("layer0.conv.b", shape=(4,)))
    bad = report("net", arg("input", passed=False, diagnosis=ROTATED), arg("layer0.python.w"),
                 arg("layer0.python.b", mode="skipped", note="not differentiated"))
    return [
        SpecResult("specs/a.toml", "a", ok, elapsed_s=0.1),
        SpecResult("specs/b.toml", "b", bad, elapsed_s=0.2),
        SpecResult("specs/c.toml", "c", None, error="m:L.backward raised ValueError: no",
                   elapsed_s=0.01, detail="Traceback (most recent call last):\n  ...\nValueError: no\n"),
    ]


# --------------------------------------------------------------------------- JSON


def test_json_has_one_entry_per_tensor_per_spec(results):
    out = to_json(results, elapsed_s=1.25)
    text = json.dumps(out, allow_nan=False)                 # strictly JSON
    back = json.loads(text)
    assert back["format"] == 1 and back["passed"] is False and back["elapsed_s"] == 1.25
    names = [c["name"] for c in back["checks"]]
    assert names == ["specs/a.toml::input", "specs/a.toml::layer0.conv.w",
                     "specs/a.toml::layer0.conv.b", "specs/b.toml::input",
                     "specs/b.toml::layer0.python.w", "specs/b.toml::layer0.python.b",
                     "specs/c.toml"]
    for c in back["checks"]:
        assert {"name", "passed", "max_abs_error", "max_rel_error", "worst_index",
                "diagnosis", "spec", "argument"} <= set(c)
    bad = back["checks"][3]
    assert bad["passed"] is False and bad["worst_index"] == [1, 2]
    assert bad["max_abs_error"] == 0.5 and bad["max_rel_error"] == 0.25
    assert bad["diagnosis"]["cause"] == "kernel_not_rotated"
    assert bad["analytic_at_worst"] == 1.5 and bad["numeric_at_worst"] == 2.0
    assert back["checks"][5]["max_abs_error"] is None       # NaN of a skipped tensor -> null
    err = back["checks"][6]
    assert err["passed"] is False and err["error"].startswith("m:L.backward raised")
    assert back["summary"] == {"checks": 7, "failed": 2, "specs": 3, "errors": 0}
    assert back["errors"] == []
    assert [s["passed"] for s in back["specs"]] == [True, False, False]
    assert back["specs"][0]["seed"] == 7 and back["specs"][0]["mode"] == "full"


def test_json_passed_when_everything_passes(results):
    out = to_json(results[:1], elapsed_s=0.5)
    assert out["passed"] is True and out["summary"]["failed"] == 0


# --------------------------------------------------------------------------- JUnit


def test_junit_xml_parses_and_counts(results):
    root = ET.fromstring(to_junit_xml(results, elapsed_s=2.0))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "1", "1")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["specs/a.toml", "specs/b.toml", "specs/c.toml"]
    cases = root.iter("testcase")
    assert sum(1 for _ in cases) == 7
    failing = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failing] == [("specs/b.toml", "input")]
    failure = failing[0].find("failure")
    assert "analytic 1.5 vs numeric 2" in failure.get("message")
    assert "likely cause: The kernel was not rotated" in failure.text
    skipped = [c for c in root.iter("testcase") if c.find("skipped") is not None]
    assert [c.get("name") for c in skipped] == ["layer0.python.b"]
    error = suites[2].find("testcase/error")
    assert error.get("message") == "m:L.backward raised ValueError: no"
    assert "Traceback" in error.text
    assert suites[1].get("failures") == "1" and suites[1].get("skipped") == "1"


def test_junit_xml_strips_characters_xml_cannot_hold():
    r = SpecResult("x\x01.toml", "x", None, error="bad \x00 byte \x1b[31m")
    root = ET.fromstring(to_junit_xml([r], elapsed_s=0.0))
    assert root.find("testsuite").get("name") == "x?.toml"
    assert root.find(".//error").get("message") == "bad ? byte ?[31m"


# --------------------------------------------------------------------------- text


def test_text_default_has_a_table_per_spec_and_the_failure_details(results):
    text = to_text(results, elapsed_s=1.0)
    assert "gradcheck specs/a.toml: PASSED" in text
    assert "gradcheck specs/b.toml: FAILED" in text
    assert "input: 2/6 FAIL; worst at index (1, 2): analytic 1.5 vs numeric 2" in text
    assert "likely cause: The kernel was not rotated by 180 degrees." in text
    assert "gradcheck specs/c.toml: ERROR (user code): m:L.backward raised ValueError: no" in text
    assert "(rerun with -v for the traceback)" in text
    assert text.rstrip().endswith("gradcheck: 2 of 7 checks FAILED (3 specs, 1.00 s)")


def test_text_quiet_shows_only_failures(results):
    text = to_text(results, elapsed_s=1.0, verbosity=-1)
    assert "specs/a.toml" not in text
    assert "argument" not in text                               # no tables
    assert "likely cause" in text and "ERROR (user code)" in text
    assert to_text(results[:1], elapsed_s=1.0, verbosity=-1) == \
        "gradcheck: all 3 checks passed (1 spec, 1.00 s)\n"


def test_text_verbose_adds_passing_tensors_and_tracebacks(results):
    text = to_text(results, elapsed_s=1.0, verbosity=1)
    assert "layer0.conv.w: ok; worst at index (1, 2)" in text
    assert "ValueError: no" in text and "rerun with -v" not in text


def test_summary_line_counts():
    assert summary_line([], 0.0) == "gradcheck: all 0 checks passed (0 specs, 0.00 s)"


# --------------------------------------------------------------------------- bad specs

BAD = [SpecInputError("specs/d.toml", "layer[0].kernel",
                      "specs/d.toml: layer[0].kernel: expected a positive int, got -3"),
       SpecInputError("specs/e.toml", None, "specs/e.toml: no such file")]


def test_json_lists_bad_specs_apart_and_fails(results):
    out = json.loads(json.dumps(to_json(results[:1], elapsed_s=1.0, errors=BAD),
                                allow_nan=False))
    assert out["passed"] is False                       # the one checked spec passed
    assert out["errors"] == [
        {"spec": "specs/d.toml", "key": "layer[0].kernel",
         "message": "specs/d.toml: layer[0].kernel: expected a positive int, got -3"},
        {"spec": "specs/e.toml", "key": None, "message": "specs/e.toml: no such file"}]
    assert out["summary"] == {"checks": 3, "failed": 0, "specs": 1, "errors": 2}
    assert [s["spec"] for s in out["specs"]] == ["specs/a.toml"]
    assert len(out["checks"]) == 3


def test_junit_xml_has_an_error_testcase_per_bad_spec(results):
    root = ET.fromstring(to_junit_xml(results, elapsed_s=2.0, errors=BAD))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("9", "1", "3")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    for spec, name in (("specs/d.toml", "layer[0].kernel"), ("specs/e.toml", "spec")):
        suite = suites[spec]
        assert (suite.get("tests"), suite.get("errors")) == ("1", "1")
        (case,) = suite.findall("testcase")
        assert (case.get("classname"), case.get("name")) == (spec, name)
        error = case.find("error")
        assert error.get("type") == "SpecError" and error.get("message").startswith(spec + ":")


def test_text_summary_counts_the_specs_not_checked(results):
    text = to_text(results[:1], elapsed_s=1.0, errors=BAD[:1])
    assert text.endswith("gradcheck: all 3 checks passed (1 spec, 1.00 s); 1 spec not checked "
                         "(bad input, exit status 2)\n")
    assert summary_line(results, 1.0, BAD) == (
        "gradcheck: 2 of 7 checks FAILED (3 specs, 1.00 s); 2 specs not checked (bad input, "
        "exit status 2)")
