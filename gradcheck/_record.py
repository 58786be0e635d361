"""Frozen dataclasses that cost less to create: :func:`frozen`.

``@dataclasses.dataclass(frozen=True)`` writes the source of six methods for each class
and compiles each (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``): about 4.4 million instructions a class on CPython 3.11, some 80 million
for the records a ``gradcheck check`` imports -- as much as a tenth of the bench spec's
whole command. :func:`frozen` lets :mod:`dataclasses` write only ``__init__`` and the
two frozen guards, and gives the class ``__eq__``, ``__hash__`` and ``__repr__`` made
from one shared definition each (closures over the field names, nothing compiled), with
the dataclass semantics: equal when of the same class and equal field by field over the
fields with ``compare=True``; the hash of the tuple of the fields with ``hash=True``
(``None``: those compared); the repr ``Name(a=1, b='x')`` of the fields with
``repr=True`` (``...`` for a record met again inside itself). Everything else is the dataclass's own (``dataclasses.fields``,
``replace``, ``asdict``, ``__match_args__``).
"""

from __future__ import annotations

import dataclasses
import reprlib

__all__ = ["frozen"]

_NONE = object()


def frozen(cls=None, /, *, eq: bool = True):
    """``@dataclasses.dataclass(frozen=True, eq=eq)``, with ``__eq__``, ``__hash__``
    (``eq=True``) and ``__repr__`` shared rather than compiled for each class.

    Examples
    --------
    >>> @frozen
    ... class Point:
    ...     x: int
    ...     y: int = 0
    ...     label: str = dataclasses.field(default="", compare=False, repr=False)
    >>> Point(1, 2)
    Point(x=1, y=2)
    >>> Point(1, 2, "a") == Point(1, 2, "b"), hash(Point(1, 2)) == hash((1, 2))
    (True, True)
    >>> dataclasses.replace(Point(1), y=5)
    Point(x=1, y=5)
    """
    if cls is None:
        return lambda c: frozen(c, eq=eq)
    own = dict(cls.__dict__)      # a method the class writes itself is kept, as dataclass does
    cls = dataclasses.dataclass(cls, frozen=True, eq=False, repr=False)
    fields = dataclasses.fields(cls)
    if "__repr__" not in own:
        cls.__repr__ = _repr(tuple(f.name for f in fields if f.repr))
    if eq:
        if "__eq__" not in own:
            cls.__eq__ = _eq(_values(tuple(f.name for f in fields if f.compare)))
        own_hash = own.get("__hash__", _NONE)
        if own_hash is _NONE or (own_hash is None and "__eq__" in own):   # none of its own
            cls.__hash__ = _hash(_values(tuple(
                f.name for f in fields if (f.compare if f.hash is None else f.hash))))
    return cls


def _values(names):
    """``obj -> (obj.a, obj.b, ...)`` over ``names``."""
    def values(obj):
        return tuple([getattr(obj, name) for name in names])

    return values


def _eq(values):
    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash(values):
    def __hash__(self):
        return hash(values(self))

    return __hash__


def _repr(names):
    @reprlib.recursive_repr()
    def __repr__(self):
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__
