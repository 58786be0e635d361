"""Small checks shared by every public boundary (one home, so each is written once)."""

from __future__ import annotations

import numbers

__all__ = ["is_int"]


def is_int(value) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` to Python, not to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
