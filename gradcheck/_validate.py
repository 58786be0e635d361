"""Small checks shared by every public boundary (one home, so each is written once)."""

from __future__ import annotations

import numbers

__all__ = ["is_int", "is_real"]


def is_int(value) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` to Python, not to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A real number (int, float, NumPy scalar ...) that is not a bool; may be inf or NaN."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
