"""The README's and docs' console examples give the output they show.

Every ``$ gradcheck ...`` line in a ``console`` block of README.md and
docs/spec-format.md is run (in-process, through ``gradcheck.cli.main``, from the
repository root) and its output is matched against the lines that follow it, where
``...`` stands for any text within a line and a line of just ``...`` for any number of
lines; examples naming a spec file that is not in the repository (``huge.toml``) are
illustrations and are skipped. The JSON example of docs/ci.md is held against a real run
of the command it names. The Python examples are doctested separately (pytest collects
the Markdown files with ``--doctest-glob``).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from gradcheck.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SPEC_FORMAT = ROOT / "docs" / "spec-format.md"
CI = ROOT / "docs" / "ci.md"


def _console_examples(text: str):
    """(command, expected lines) for every ``$ gradcheck`` line in console blocks."""
    examples = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        lines = block.rstrip("\n").split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ gradcheck"):
                expected = []
                i += 1
                while i < len(lines) and not lines[i].startswith("$ "):
                    expected.append(lines[i])
                    i += 1
                examples.append((line[2:], expected))
            else:
                i += 1
    return examples


def _pattern(expected):
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = [re.escape(p) for p in line.rstrip().split("...")]
        parts.append(r"[^\n]*".join(pieces) + r"[ \t]*\n")
    return re.compile("".join(parts) + r"(?:\s*)", flags=re.S)


def _runnable(command: str) -> bool:
    """Every file argument of the command exists in the repository (an option's value
    such as ``synthetic`` in ``--data synthetic`` is not a file argument)."""
    files = [a for a in shlex.split(command, comments=True)[2:]
             if not a.startswith("-") and ("/" in a or "." in a)]
    return all((ROOT / f).is_file() for f in files)


EXAMPLES = _console_examples(README.read_text(encoding="utf-8"))
DOC_EXAMPLES = [e for e in _console_examples(SPEC_FORMAT.read_text(encoding="utf-8"))
                if _runnable(e[0])]


def test_readme_has_console_examples():
    commands = [c for c, _ in EXAMPLES]
    assert "gradcheck check" in commands
    assert any("user_layer_buggy" in c for c in commands)


def test_spec_format_has_console_examples():
    commands = [c for c, _ in DOC_EXAMPLES]
    assert "gradcheck check specs/examples/user_layer_buggy.toml" in commands
    assert len(commands) >= 4


@pytest.mark.parametrize(("command", "expected"), EXAMPLES + DOC_EXAMPLES,
                         ids=[f"README: {c}" for c, _ in EXAMPLES]
                         + [f"spec-format: {c}" for c, _ in DOC_EXAMPLES])
def test_console_example(command, expected, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = shlex.split(command, comments=True)[1:]
    status = main(argv)
    out = capsys.readouterr().out
    if not out.endswith("\n"):
        out += "\n"
    assert _pattern(expected).fullmatch(out), (
        f"output of {command!r} does not match the document:\n--- got ---\n{out}"
        f"--- document ---\n" + "\n".join(expected))
    failing = "buggy" in command
    assert status == (1 if failing else 0)


def _close_to_shown(actual, shown) -> bool:
    """``actual`` rounds to ``shown`` at the number of significant digits ``shown`` has."""
    digits = len(re.sub(r"^[-0.]*|e.*$|\.", "", repr(float(shown)))) or 1
    return float(f"{actual:.{digits}g}") == shown


def test_ci_json_example_matches_a_real_run(capsys, monkeypatch):
    text = CI.read_text(encoding="utf-8")
    shown = json.loads(re.search(r"```json\n(.*?)```", text, flags=re.S).group(1))
    command = re.search(r"Abridged, for\s+`(gradcheck check [^`]+ --json)`", text).group(1)
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(command)[1:]) == 1
    real = json.loads(capsys.readouterr().out)
    assert shown["summary"] == real["summary"] and shown["passed"] is real["passed"]
    by_name = {c["name"]: c for c in real["checks"]}
    for check in shown["checks"]:
        got = by_name[check["name"]]
        assert check["passed"] is got["passed"]
        if check["passed"]:
            continue          # a passing tensor's worst element is rounding noise
        for key in ("worst_index", "analytic_at_worst", "numeric_at_worst", "max_abs_error"):
            if isinstance(check[key], list):
                assert check[key] == got[key], key
            else:
                assert _close_to_shown(got[key], check[key]), (key, got[key], check[key])
        assert check["diagnosis"]["cause"] == got["diagnosis"]["cause"]
    assert [s["spec"] for s in shown["specs"]] == [s["spec"] for s in real["specs"]]
    assert len(shown["layers"]) == len(real["layers"])
    for layer, got in zip(shown["layers"], real["layers"]):
        assert {k: v for k, v in layer.items() if k != "..."} == \
            {k: got[k] for k in layer if k != "..."}


def test_ci_errors_example_matches_a_real_run(capsys, monkeypatch, tmp_path):
    text = CI.read_text(encoding="utf-8")
    shown = json.loads(re.findall(r"```json\n(.*?)```", text, flags=re.S)[1])
    command = re.search(r"holds \(`(gradcheck check [^`]+ --json)`\)", text).group(1)
    (tmp_path / "specs").mkdir()
    conv_tanh = (ROOT / "specs/conv_tanh.toml").read_text(encoding="utf-8")
    (tmp_path / "specs/conv_tanh.toml").write_text(conv_tanh, encoding="utf-8")
    assert "\nkernel = " in conv_tanh
    (tmp_path / "bad.toml").write_text(conv_tanh.replace("\nkernel = ", "\nkernal = "),
                                       encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(command)[1:]) == 2
    real = json.loads(capsys.readouterr().out)
    assert real["passed"] is False and real["summary"]["errors"] == 1
    assert real["errors"] == shown
