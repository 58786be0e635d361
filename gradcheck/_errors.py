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
    "NondeterministicError",
    "NonFiniteGradientError",
]


class GradcheckError(Exception):
    """Base class of every error gradcheck raises deliberately."""


class ConfigurationError(GradcheckError, ValueError):
    """An argument to a public function is invalid (wrong type, shape, or value)."""


class SpecError(GradcheckError, ValueError):
    """A layer-spec document (TOML, JSON, YAML) is unreadable or invalid.

    Besides the message, the error carries where it is as data, so a program need not
    parse it out of the text (``gradcheck check --json`` lists both):

    ``spec``
        the file (or source label) at fault, or None if not known;
    ``key``
        the dotted key within it, e.g. ``"layer[0].kernel"``, or None when the document
        as a whole is at fault (missing, unreadable, a syntax error).

    Examples
    --------
    >>> from gradcheck.spec import parse_spec
    >>> try:
    ...     parse_spec({"input": {"shape": [1, 1, 4]}, "layer": [{"type": "tnah"}]},
    ...                source="a.toml")
    ... except SpecError as exc:
    ...     print(exc.spec, exc.key)
    a.toml layer[0].type
    """

    def __init__(self, message: str, *, spec: str | None = None, key: str | None = None):
        super().__init__(message)
        self.spec = spec
        self.key = key


class UserCodeError(GradcheckError):
    """User code under test raised, returned the wrong shape, or returned NaN/inf."""


class NonFiniteGradientError(UserCodeError, AssertionError):
    """The analytic gradient has NaN or infinite entries at a finite point where ``f`` is
    finite: a wrong gradient, so also an ``AssertionError`` (what the drop-ins for
    ``jax.test_util.check_grads`` and ``assert_vjp_close`` raise on a wrong gradient).

    ``argname`` names the argument, ``indices`` the first few non-finite entries (tuples),
    ``count`` how many there are.
    """

    def __init__(self, message: str, *, argname: str = "", indices=(), count: int = 0):
        super().__init__(message)
        self.argname, self.indices, self.count = argname, tuple(indices), int(count)


class NondeterministicError(UserCodeError):
    """The code under test returned different outputs for the same arguments.

    ``subject`` names what was called (``"f"``, ``"the network's forward pass"``) and
    ``detail`` says how the outputs differ, so a caller that knows better what ``f`` is
    can name it again without reading the message.
    """

    def __init__(self, detail: str, subject: str = "f"):
        super().__init__(f"{subject} is not deterministic: {detail}")
        self.subject, self.detail = subject, detail
