"""A small TOML writer for spec documents (the standard library only reads TOML).

It writes what :meth:`gradcheck.spec.Spec.to_dict` produces: top-level scalars, then
tables (``[input]``, ``[loss]``, ``[check]``) and arrays of tables (``[[layer]]``), with
nested mappings inside them as inline tables. Values are strings, ints, floats (``inf``
and ``nan`` included), booleans, lists and mappings of those; ``None`` entries are left
out (TOML has no null).
"""

from __future__ import annotations

import json
import math
import re
from typing import Mapping

__all__ = ["dumps"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else _string(key)


def _string(value: str) -> str:
    # JSON string escapes are TOML basic-string escapes, except that TOML also forbids a
    # raw DEL and has no surrogate escapes (ensure_ascii=False keeps astral characters raw).
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = [f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}" if items else "{}"
    raise TypeError(f"cannot write a {type(value).__name__} as a TOML value: {value!r}")


def _is_table_array(value) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, Mapping) for v in value)


def _body(table: Mapping) -> list[str]:
    return [f"{_key(k)} = {_value(v)}" for k, v in table.items() if v is not None]


def dumps(document: Mapping) -> str:
    """``document`` as TOML text; ``tomllib.loads(dumps(d)) == d`` for spec documents.

    Examples
    --------
    >>> print(dumps({"name": "demo", "input": {"shape": [1, 1, 3, 3]},
    ...              "layer": [{"type": "conv", "out_channels": 1, "kernel": 2}]}))
    name = "demo"
    <BLANKLINE>
    [input]
    shape = [1, 1, 3, 3]
    <BLANKLINE>
    [[layer]]
    type = "conv"
    out_channels = 1
    kernel = 2
    <BLANKLINE>
    """
    scalars = {k: v for k, v in document.items()
               if not isinstance(v, Mapping) and not _is_table_array(v)}
    lines = _body(scalars)
    for key, value in document.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{_key(key)}]", *_body(value)]
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{_key(key)}]]", *_body(item)]
    if lines and lines[0] == "":
        lines = lines[1:]
    return "\n".join(lines) + "\n"
