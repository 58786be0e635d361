"""Typed readers for spec values: each returns the canonical value or raises a one-line
:class:`~gradcheck.SpecError` of the form ``FILE: KEY: expected VALID, got FOUND``."""

from __future__ import annotations

import math
import re

from gradcheck._errors import SpecError
from gradcheck._validate import is_int, is_real

__all__ = ["Ctx", "show", "suggest"]

_MAX_SHOWN = 60


def show(value) -> str:
    """A value the way the spec file spells it (TOML-like), shortened if long."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, str):
        import json     # (values are shown only in error messages)

        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + "}"
    else:
        text = f"{value} (a {type(value).__name__})"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def suggest(word, choices) -> str:
    """``'did you mean "x"? '`` for the closest of ``choices``, or ``''``."""
    import difflib       # only for a misspelt word
    import json

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {json.dumps(close[0])}? " if close else ""


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Ctx:
    """The file being validated: builds messages that start with its name."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> SpecError:
        text = f"{self.source}: {key}: {message}" if key else f"{self.source}: {message}"
        return SpecError(text, spec=self.source, key=key or None)

    def expected(self, key: str, valid: str, found) -> SpecError:
        return self.fail(key, f"expected {valid}, got {show(found)}")

    # ------------------------------------------------------------------ tables and keys

    def table(self, key: str, value, what: str) -> dict:
        if not isinstance(value, dict):
            raise self.expected(key, f"a table of {what}", value)
        return value

    def keys(self, prefix: str, table: dict, allowed, owner: str):
        """Reject any key of ``table`` not in ``allowed``, suggesting the closest one."""
        for key in table:
            if key not in allowed:
                if allowed:
                    valid = f"valid keys for {owner}: {', '.join(allowed)}"
                else:
                    valid = f"{owner} takes no other keys"
                raise self.fail(f"{prefix}{key}", f"unknown key; {suggest(key, allowed)}{valid}")

    def required(self, key: str, table: dict, name: str, valid: str, owner: str):
        if name not in table:
            raise self.fail(key, f"missing; {owner} needs {name} ({valid})")
        return table[name]

    # ------------------------------------------------------------------ scalars

    def integer(self, key, value, *, minimum=None, valid=None):
        if minimum == 1:
            valid = valid or "a positive int"
        elif minimum is not None:
            valid = valid or f"an int >= {minimum}"
        else:
            valid = valid or "an int"
        if not is_int(value) or (minimum is not None and value < minimum):
            raise self.expected(key, valid, value)
        return int(value)

    def real(self, key, value, *, minimum=None, strict=False, valid=None):
        if valid is None:
            valid = "a finite number"
            if minimum is not None:
                valid = f"a finite number {'>' if strict else '>='} {minimum:g}"
        ok = is_real(value) and math.isfinite(value)
        if ok and minimum is not None:
            ok = value > minimum if strict else value >= minimum
        if not ok:
            raise self.expected(key, valid, value)
        return float(value)

    def boolean(self, key, value):
        if not isinstance(value, bool):
            raise self.expected(key, "true or false", value)
        return value

    def string(self, key, value):
        if not isinstance(value, str):
            raise self.expected(key, "a string", value)
        return value

    def choice(self, key, value, choices, *, what="one of"):
        if not isinstance(value, str) or value not in choices:
            import json

            hint = suggest(value, choices) if isinstance(value, str) else ""
            listed = ", ".join(json.dumps(c) for c in choices)
            raise self.fail(key, f"expected {what} {listed}, got {show(value)}"
                            + (f"; {hint.rstrip()}" if hint else ""))
        return value

    # ------------------------------------------------------------------ shapes and sizes

    def shape(self, key, value, *, min_ndim=0, max_ndim=32, what="dimensions"):
        ok = (isinstance(value, list) and min_ndim <= len(value) <= max_ndim
              and all(is_int(v) and v >= 1 for v in value))
        if not ok:
            count = (f"{min_ndim} to {max_ndim}" if min_ndim != max_ndim else str(min_ndim))
            raise self.expected(key, f"a list of {count} positive ints ({what})", value)
        return tuple(int(v) for v in value)

    def int_or_list(self, key, value, nd, *, minimum):
        """An int, or a list with one int per spatial dim (``nd`` of them if known)."""
        word = "positive int" if minimum == 1 else f"int >= {minimum}"
        if nd is None:
            valid = f"a {word} or a list of 1 to 3 {word}s"
        else:
            valid = f"a {word} or a list of {_plural(nd, word)}"
        if is_int(value):
            if value < minimum:
                raise self.expected(key, valid, value)
            return int(value)
        counts = range(1, 4) if nd is None else (nd,)
        if (isinstance(value, list) and len(value) in counts
                and all(is_int(v) and v >= minimum for v in value)):
            return [int(v) for v in value]
        raise self.expected(key, valid, value)

    def memory(self, key, value) -> int:
        try:
            return parse_bytes(value)
        except ValueError:
            raise self.expected(key, 'a positive number of bytes, e.g. 2000000000 or "2GiB"',
                                value) from None


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4,
          "tb": 1000**4, "tib": 1024**4}
_SIZE = r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$"    # compiled on first use (re's cache)


def parse_bytes(value) -> int:
    """``2000``, ``"512MiB"``, ``"2 GB"``, ``"1.5GiB"`` -> bytes (positive int).

    >>> parse_bytes("1.5 KiB"), parse_bytes(4096), parse_bytes("2GB")
    (1536, 4096, 2000000000)
    """
    if is_int(value) and value > 0:
        return int(value)
    if isinstance(value, str):
        m = re.match(_SIZE, value, re.IGNORECASE)
        if m and m.group(2).lower() in _UNITS:
            size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
            if size > 0:
                return size
    raise ValueError(value)


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``.

    >>> format_bytes(512), format_bytes(3 * 2**30)
    ('512 B', '3.0 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover
