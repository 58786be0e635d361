"""Reading a spec file into a plain document (a dict), with one-line errors.

Everything that can go wrong before validation is caught here and reported as a
:class:`~gradcheck.SpecError` naming the file: missing, unreadable, a directory or a
pipe (never opened, so nothing blocks), too large, empty, binary, not UTF-8, or a
TOML / JSON / YAML syntax error with its line and column.
"""

from __future__ import annotations

import os
import stat

from gradcheck._errors import SpecError

__all__ = ["read_document", "parse_text", "FORMATS", "MAX_SPEC_BYTES"]

#: File suffix -> format. Any other suffix: JSON if the text starts with "{", else TOML.
FORMATS = {".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}

#: A spec is a few hundred bytes; anything above this is not one (and is not read).
MAX_SPEC_BYTES = 1 << 20


def read_document(path) -> tuple[dict, str]:
    """Read and parse the spec file at ``path``; return ``(document, format)``."""
    label = os.fspath(path)
    target = _as_pathlib_reads(label)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        raise _fail(label, f"no such file; give the path of a .toml, .json or .yaml "
                        f"spec file") from None
    except OSError as exc:
        raise _fail(label, f"cannot be read ({exc.strerror or exc}); give the path of "
                        f"a readable spec file") from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(label, f"is a directory, not a spec file; give the files in it, "
                        f"e.g. {os.path.join(label, '*.toml')}")
    if not stat.S_ISREG(info.st_mode):
        raise _fail(label, f"is not a regular file (a pipe, socket or device); give "
                        f"the path of a spec file")
    if info.st_size > MAX_SPEC_BYTES:
        raise _fail(label, f"is {info.st_size} bytes, more than the {MAX_SPEC_BYTES} "
                        f"bytes a spec file may have; is this really a spec file?")
    try:
        with open(target, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise _fail(label, f"cannot be read ({exc.strerror or exc}); give the path of "
                        f"a readable spec file") from None
    text = _decode(data, label)
    fmt = FORMATS.get(_suffix(target).lower()) or _sniff(text)
    return parse_text(text, fmt, label), fmt


def _as_pathlib_reads(label: str) -> str:
    """The path ``pathlib.Path(label)`` names, without importing :mod:`pathlib` (some 17
    million instructions, a few percent of a whole ``gradcheck check``) on POSIX: empty
    and ``.`` components dropped (``spec.toml/`` is ``spec.toml``, ``""`` is ``.``), a
    leading ``//`` kept and three or more slashes made one, as
    :class:`pathlib.PurePosixPath` parses. Elsewhere (drives, two separators) pathlib
    itself."""
    if os.name != "posix":
        from pathlib import Path

        return str(Path(label))
    root = ""
    if label.startswith("/"):
        root = "//" if label.startswith("//") and not label.startswith("///") else "/"
    return root + "/".join(p for p in label.split("/") if p and p != ".") or "."


def _suffix(path: str) -> str:
    """``pathlib``'s suffix of ``path``'s last component: from its last dot, where that
    dot is neither the first nor the last character (``.toml`` and ``spec.`` have none)."""
    name = path.rsplit(os.sep, 1)[-1]
    if os.altsep:
        name = name.rsplit(os.altsep, 1)[-1]
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _decode(data: bytes, label: str) -> str:
    nul = data.find(b"\0")
    if nul >= 0:
        raise _fail(label, f"is a binary file (a NUL byte at offset {nul}), not a text "
                        f"spec file")
    # UTF-8 after an optional byte order mark, as the "utf-8-sig" codec reads it (whose
    # module a check need not import); an error names its offset in the file
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        raise _fail(label, f"is not UTF-8 text (byte 0x{data[at]:02x} at offset "
                        f"{at}); save the spec as UTF-8") from None
    if not text.strip():
        raise _fail(label, f"is empty; a spec needs an [input] table and at least one "
                        f"[[layer]], e.g. [input] shape = [2, 3, 8, 8]")
    return text


def _sniff(text: str) -> str:
    return "json" if text.lstrip().startswith("{") else "toml"


def parse_text(text: str, fmt: str | None, label: str = "<spec>") -> dict:
    """Parse ``text`` as ``fmt`` ("toml", "json", "yaml"; None: sniff) into a dict."""
    if not text.strip():
        raise _fail(label, f"is empty; a spec needs an [input] table and at least one "
                        f"[[layer]], e.g. [input] shape = [2, 3, 8, 8]")
    fmt = fmt or _sniff(text)
    try:
        if fmt == "toml":
            doc = _parse_toml(text, label)
        elif fmt == "json":
            doc = _parse_json(text, label)
        elif fmt == "yaml":
            doc = _parse_yaml(text, label)
        else:
            raise _fail(label, f"unknown spec format {fmt!r}; valid formats: toml, json, "
                            f"yaml")
    except RecursionError:
        raise _fail(label, "is nested too deeply to be a spec document") from None
    if not isinstance(doc, dict):
        kind = "a list" if isinstance(doc, list) else f"a {type(doc).__name__}"
        raise _fail(label, f"the document must be a table (mapping) of keys such as "
                        f"input, layer, loss and check; got {kind}")
    return doc


def _parse_toml(text, label):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(label, f"invalid TOML: {_one_line(exc)}{_bare_word(text, exc)}") from None


def _bare_word(text, exc) -> str:
    """'; a string needs quotes: dtype = "float32"' when the invalid value is a bare word."""
    import re

    at = re.search(r"Invalid value \(at line (\d+), column (\d+)\)", str(exc))
    lines = text.splitlines()
    if not at or not 0 < int(at.group(1)) <= len(lines):
        return ""
    line = lines[int(at.group(1)) - 1]
    pair = re.match(r"\s*([A-Za-z0-9_-]+)\s*=\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(#.*)?$", line)
    if not pair:
        return ""
    key, word = pair.group(1), pair.group(2)
    return f'; a string needs quotes: {key} = "{word}"'


def _no_duplicates(pairs):
    doc = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key {key!r}")
        doc[key] = value
    return doc


def _parse_json(text, label):
    import json        # here: a TOML spec (the usual one) does not need it

    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise _fail(label, f"invalid JSON: {exc.msg} (at line {exc.lineno}, column "
                        f"{exc.colno})") from None
    except ValueError as exc:
        raise _fail(label, f"invalid JSON: {exc}; each key may appear once") from None


def _parse_yaml(text, label):
    try:
        import yaml
    except ModuleNotFoundError:
        raise _fail(label, f"reading YAML needs PyYAML, which is not installed; "
                        f"pip install -e '.[yaml]' in the gradcheck checkout, or write the spec as "
                        f"TOML") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or _one_line(exc)
        mark = getattr(exc, "problem_mark", None)
        where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise _fail(label, f"invalid YAML: {problem}{where}") from None


def _fail(label: str, message: str) -> SpecError:
    """The error for the whole file ``label`` (no key: it is not a document yet)."""
    return SpecError(f"{label}: {message}", spec=label)


def _one_line(exc) -> str:
    return " ".join(str(exc).split())
