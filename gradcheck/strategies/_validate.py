"""Argument checks shared by the strategies: each raises one ConfigurationError sentence.

Every strategy validates all of its arguments when it is called, before anything is
drawn, so a bad bound fails at the line that wrote it rather than deep inside a test run.
Messages name the argument, repeat the value and say what would be valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis.strategies import SearchStrategy

from gradcheck._errors import ConfigurationError
from gradcheck._validate import is_int, is_real

__all__ = ["check_int", "check_order", "check_subset", "check_real", "check_dtype",
           "check_optional_bool", "check_strategy", "check_optional_shape", "DTYPES"]

#: The dtypes the strategies draw (the spec format's dtypes).
DTYPES = ("float64", "float32")


def check_int(value, name: str, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``."""
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        valid = (f"an int >= {minimum}" if maximum is None
                 else f"an int from {minimum} to {maximum}")
        raise ConfigurationError(f"{name} must be {valid}; got {value!r}")
    return int(value)


def check_order(lo_name: str, lo, hi_name: str, hi) -> None:
    """``lo <= hi`` for a pair of already checked bounds."""
    if lo > hi:
        raise ConfigurationError(
            f"{lo_name}={lo!r} must not exceed {hi_name}={hi!r}; raise {hi_name} or lower "
            f"{lo_name}")


def check_real(value, name: str, *, positive: bool = False, allow_none: bool = False):
    """A finite real number (> 0 if ``positive``), or None if ``allow_none``."""
    if value is None and allow_none:
        return None
    ok = (is_real(value) and np.isfinite(float(value))
          and (float(value) > 0 if positive else True))
    if not ok:
        valid = "a finite number > 0" if positive else "a finite number"
        if allow_none:
            valid += " or None"
        raise ConfigurationError(f"{name} must be {valid}; got {value!r}")
    return float(value)


def check_subset(value, name: str, valid: Sequence[str]) -> tuple:
    """A non-empty sequence (not a string) of distinct items of ``valid``, as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigurationError(
            f"{name} must be a non-empty list drawn from {list(valid)}; got {value!r}")
    unknown = [v for v in value if v not in valid]
    if unknown:
        raise ConfigurationError(
            f"{name} must only hold items of {list(valid)}; got unknown {unknown[0]!r} in "
            f"{list(value)!r}")
    if len(set(value)) != len(value):
        raise ConfigurationError(f"{name} must not repeat an item; got {list(value)!r}")
    return tuple(value)


def check_optional_bool(value, name: str):
    if value is not None and not isinstance(value, bool):
        raise ConfigurationError(
            f"{name} must be True, False or None (None draws both); got {value!r}")
    return value


def check_optional_shape(value, name: str, *, min_ndim: int, max_ndim: int, what: str):
    """None, or ``min_ndim`` to ``max_ndim`` positive ints as a tuple (``what``: its layout)."""
    if value is None:
        return None
    ok = (isinstance(value, (tuple, list)) and min_ndim <= len(value) <= max_ndim
          and all(is_int(v) and v >= 1 for v in value))
    if not ok:
        raise ConfigurationError(
            f"{name} must be None or {what}: {min_ndim} to {max_ndim} positive ints; got "
            f"{value!r}")
    return tuple(int(v) for v in value)


def check_strategy(value, name: str, *, of: str, default):
    """``value`` if it is a strategy, ``default()`` if it is None (``of`` says what it draws)."""
    if value is None:
        return default()
    if not isinstance(value, SearchStrategy):
        raise ConfigurationError(f"{name} must be None or a strategy of {of}; got {value!r}")
    return value


def check_dtype(value, name: str = "dtype"):
    """``"float64"``/``"float32"`` (or their NumPy dtypes) as a dtype, or a strategy as is."""
    if isinstance(value, SearchStrategy):
        return value
    try:
        dt = None if value is None else np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ConfigurationError(
            f"{name} must be float64 or float32 (a name, a NumPy dtype, or a strategy of "
            f"them); got {value!r}")
    return dt
