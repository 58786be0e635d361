"""The diagnosis on a corpus of hand-written layers (:mod:`diagnosis_corpus`).

Every slip must fail the check; at least 80% of them get the right named cause; none gets
a wrong one (a slip with no cause says where its mismatch is); no correct layer fails,
and a mismatch within noise (a float32 element off by a factor 1.00001) names no cause.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_vjp

from diagnosis_corpus import BUGS, CORRECT, EXTRAS, HELD_OUT, KINDS


def _check(case, vjp=None):
    """The check of one case through the public entry point, and its diagnoses."""
    report = check_vjp(case.f, vjp or case.vjp, case.args, argnames=case.argnames,
                       mode="full")
    return report, {a.name: a.diagnosis for a in report.arguments if a.diagnosis is not None}


def _verdict(case, found) -> str:
    """'right', 'wrong' or 'described' for a slip's diagnoses."""
    verdicts = []
    for arg, causes in case.expect.items():
        d = found.get(arg)
        if d is None:
            return "missed"
        if d.cause in causes:
            verdicts.append("right")
        elif d.cause == "no_known_pattern":
            verdicts.append("described")
        else:
            return "wrong"
    return "right" if all(v == "right" for v in verdicts) else "described"


@pytest.fixture(scope="module")
def results():
    # exp-near-overflow's report takes norms of values near 1e308: overflow is expected
    with np.errstate(over="ignore"):
        return {case.name: _check(case) for case in BUGS + HELD_OUT + EXTRAS}


@pytest.mark.parametrize("case", BUGS + HELD_OUT + EXTRAS, ids=lambda c: c.name)
def test_a_slip_is_caught_and_never_given_a_wrong_cause(case, results):
    report, found = results[case.name]
    assert not report.passed, f"{case.name}: {case.slip} passed"
    verdict = _verdict(case, found)
    assert verdict != "missed", (case.name, found)
    assert verdict != "wrong", (case.name, {a: d.message for a, d in found.items()})
    for d in found.values():                             # JSON-ready, every number finite
        json.dumps(d.to_dict(), allow_nan=False)
    for arg in case.expect:
        if found[arg].cause == "no_known_pattern":      # described: where and how large
            assert "elements" in found[arg].message and " at (" in found[arg].message


def test_most_slips_get_the_right_named_cause(results):
    tally = collections.Counter(_verdict(c, results[c.name][1]) for c in BUGS + HELD_OUT)
    total = len(BUGS) + len(HELD_OUT)
    assert total >= 40 and {c.kind for c in BUGS} == set(KINDS)
    assert tally["wrong"] == 0 and tally["missed"] == 0
    assert tally["right"] >= 0.8 * total, tally


def test_the_docs_give_these_numbers(results):
    """docs/diagnosis.md's table of measured results is the tally of this run."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "diagnosis.md").read_text(
        encoding="utf-8")
    for label, cases in (("corpus", BUGS), ("held out", HELD_OUT), ("all", BUGS + HELD_OUT)):
        tally = collections.Counter(_verdict(c, results[c.name][1]) for c in cases)
        row = next(line for line in doc.splitlines() if line.startswith(f"| {label}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        right = f"{tally['right']} ({round(100 * tally['right'] / len(cases))}%)"
        assert cells[1:] == [str(len(cases)), right, str(tally["described"]),
                             str(tally["wrong"])], row


@pytest.mark.parametrize("case", CORRECT, ids=lambda c: c.name)
def test_a_correct_layer_passes_and_names_no_cause(case):
    report, found = _check(case)
    assert report.passed and not found, (case.name, str(report))


FLOAT32 = [c for c in CORRECT if any(np.asarray(a).dtype == np.float32 for a in c.args)]


@pytest.mark.parametrize("factor", [1.00001, 1.0001, 1.001])
@pytest.mark.parametrize("case", FLOAT32, ids=lambda c: c.name)
def test_one_float32_element_off_by_a_small_factor_names_no_cause(case, factor):
    """One element of a correct float32 gradient multiplied by ``factor``: a mismatch at
    one element, near the noise. The check may see it (at 1.001 it must); the diagnosis
    may say where it is, never name a cause (the issue's case: a factor 1.00001 on one
    element read "a constant factor is wrong")."""
    ones = case.vjp(np.ones(np.shape(case.f(*case.args)), np.float32), *case.args)
    first = next(i for i, v in enumerate(ones) if v is not None)
    at = int(np.argmax(np.abs(ones[first])))        # one fixed element: still linear in g

    def nudged(g, *args):
        grads = list(case.vjp(g, *args))
        grads[first] = np.array(grads[first], copy=True)
        grads[first].reshape(-1)[at] *= np.float32(factor)
        return tuple(grads)

    report, found = _check(case, nudged)
    assert factor < 1.001 or not report.passed
    for d in found.values():
        assert d.cause in ("single_element", "no_known_pattern"), d.message


@pytest.mark.parametrize("seed", [2, 3, 11])
def test_the_float32_batch_norm_passes_at_other_seeds(seed):
    # Used to fail in full mode at seeds 2, 3 and 11: np.var of a complex array is
    # |z - mean|^2, not analytic, so the complex step loses var's share of the gradient
    # (5% here); the cross-check's real side, along a direction whose elements moved by
    # N(0, 1) shares of their size, was 1% inaccurate and accepted it. Its directions
    # now move every element by its own magnitude.
    (case,) = [c for c in CORRECT if c.name == "batchnorm-f32-tiny"]
    report = check_vjp(case.f, case.vjp, case.args, argnames=case.argnames, mode="full",
                       seed=seed)
    assert report.passed, str(report)
    # the numerical side on its own, against the float64 backward of the same inputs
    from gradcheck import numerical_vjp

    x, gamma, beta = case.args
    R = np.random.default_rng(seed).standard_normal(x.shape)
    num = numerical_vjp(lambda v: case.f(v, gamma, beta), x, R, seed=seed)
    truth = case.vjp(R, *(np.asarray(a, np.float64) for a in case.args))[0]
    assert num.method == "adaptive" and num.complex_check.startswith("rejected")
    assert np.all(np.abs(num.grad - truth) <= 10 * num.error)   # the checker allows ten
