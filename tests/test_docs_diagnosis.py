"""docs/diagnosis.md shows, for every cause, the real message on a slip of the corpus:
each is held against a fresh run (numbers aside, which depend on the machine's rounding)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_vjp
from gradcheck.checker._causes import CAUSES

from diagnosis_corpus import BUGS, EXTRAS, HELD_OUT

DOC = Path(__file__).resolve().parent.parent / "docs" / "diagnosis.md"
CASES = {c.name: c for c in BUGS + HELD_OUT + EXTRAS}
SECTION = re.compile(r"^#### `(?P<cause>\w+)`\n.*?^Example: `(?P<case>[\w-]+)` .*?argument "
                     r"`(?P<arg>\w+)`:\n\n> (?P<message>.*?)\n", re.S | re.M)
NUMBER = re.compile(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?")


def _sections():
    return [m.groupdict() for m in SECTION.finditer(DOC.read_text(encoding="utf-8"))]


def _masked(text):
    return NUMBER.sub("#", text)


def test_every_cause_of_the_catalogue_has_an_example():
    shown = {s["cause"] for s in _sections()}
    layer_aware = {"kernel_not_rotated", "transposed", "channel_axes_swapped",
                   "stride_zeros_missing", "padding_offset", "derivative_at_output",
                   "derivative_missing"}
    assert {c.name for c in CAUSES} - {"suspects"} <= shown
    assert layer_aware <= shown and "no_known_pattern" in shown


@pytest.mark.parametrize("section", _sections(), ids=lambda s: f"{s['cause']}-{s['case']}")
def test_the_example_is_the_real_output(section):
    case = CASES[section["case"]]
    with np.errstate(over="ignore"):       # exp-near-overflow: norms of values near 1e308
        report = check_vjp(case.f, case.vjp, case.args, argnames=case.argnames, mode="full")
    d = report[section["arg"]].diagnosis
    assert d.cause == section["cause"]
    assert _masked(d.message) == _masked(section["message"]), d.message


def test_the_readme_quotes_the_real_messages():
    """Each example in the README's table of causes is cut from a message of the doc
    (itself held against a fresh run above); '…' marks what was left out."""
    readme = (DOC.parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### What the diagnosis names"):]
    table = table[:table.index("\n\nand, where the layer is known")]
    messages = [s["message"] for s in _sections()]
    quotes = [line.split('| "', 1)[1].rsplit('" |', 1)[0]
              for line in table.splitlines() if line.startswith("| `")]
    assert len(quotes) >= 10
    for quote in quotes:
        pieces = [p.strip(" :") for p in quote.split("…") if p.strip(" :")]
        assert any(all(p in m for p in pieces) for m in messages), quote
