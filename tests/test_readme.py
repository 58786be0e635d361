"""The README's console examples give the output the README shows.

Every ``$ gradcheck ...`` line in a ``console`` block of README.md is run (in-process,
through ``gradcheck.cli.main``, from the repository root) and its output is matched
against the lines that follow it, where ``...`` stands for any text within a line and a
line of just ``...`` for any number of lines. The Python examples are doctested
separately (pytest collects README.md with ``--doctest-glob``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gradcheck.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


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


EXAMPLES = _console_examples(README.read_text(encoding="utf-8"))


def test_readme_has_console_examples():
    commands = [c for c, _ in EXAMPLES]
    assert "gradcheck check" in commands
    assert any("user_layer_buggy" in c for c in commands)


@pytest.mark.parametrize(("command", "expected"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_console_example(command, expected, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = shlex.split(command)[1:]
    status = main(argv)
    out = capsys.readouterr().out
    if not out.endswith("\n"):
        out += "\n"
    assert _pattern(expected).fullmatch(out), (
        f"output of {command!r} does not match the README:\n--- got ---\n{out}"
        f"--- README ---\n" + "\n".join(expected))
    failing = "buggy" in command
    assert status == (1 if failing else 0)
