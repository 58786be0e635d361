"""The exceptions gradcheck raises on purpose.

Every error the package raises for bad input derives from :class:`GradcheckError`, so a
caller (the CLI among them) can tell "you asked for something impossible" apart from a
bug.  Messages are one sentence: they name the argument (or file and key), repeat the
value that was found, and say what would be valid.
"""

from __future__ import annotations

__all__ = [
    "GradcheckError",
    "ConfigurationError",
    "SpecError",
    "UserCodeError",
]


class GradcheckError(Exception):
    """Base class of every error gradcheck raises deliberately."""


class ConfigurationError(GradcheckError, ValueError):
    """An argument to a public function is invalid (wrong type, shape, or value)."""


class SpecError(GradcheckError, ValueError):
    """A layer-spec document (TOML, JSON, YAML) is unreadable or invalid."""


class UserCodeError(GradcheckError):
    """User code under test raised, returned the wrong shape, or returned NaN/inf."""
