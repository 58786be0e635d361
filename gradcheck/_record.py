"""Records that cost less to create: :func:`frozen` (a frozen dataclass) and
:class:`NamedTuple` (``typing.NamedTuple``'s class syntax).

``@dataclasses.dataclass(frozen=True)`` writes the source of six methods for each class
and compiles each (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``): about 4.4 million instructions a class on CPython 3.11, some 80 million
for the records a ``gradcheck check`` imports -- as much as a tenth of the bench spec's
whole command. :func:`frozen` compiles nothing: :mod:`dataclasses` collects the fields
(and gives ``dataclasses.fields``, ``replace``, ``asdict``, ``__match_args__``), and the
methods are made from one shared definition each (closures over the field names; the
``__init__`` a copy of one compiled function with the class's parameter names), with the
dataclass semantics: ``__init__(self, a, b=default, d=<factory>)`` setting every field,
then ``__post_init__()`` if the class has one; assigning or deleting a field raises
:class:`dataclasses.FrozenInstanceError`; equal when of the same class and equal field
by field over the fields with ``compare=True``; the hash of the tuple of the fields with
``hash=True`` (``None``: those compared); the repr ``Name(a=1, b='x')`` of the fields
with ``repr=True`` (``...`` for a record met again inside itself). A class this cannot
make (an ``InitVar``, a keyword-only or ``init=False`` field, a field named as a local
of the shared ``__init__``) is made by ``dataclass(frozen=True)`` as before, with the
shared ``__eq__``, ``__hash__`` and ``__repr__``.

``typing.NamedTuple`` turns each field's annotation into a ``typing.ForwardRef``,
compiling it (the annotations are strings under ``from __future__ import annotations``),
then calls :func:`collections.namedtuple`. :class:`NamedTuple` takes the same class
statement and makes the same :func:`collections.namedtuple` class, keeping the
annotations as written: less than half the cost (0.4 against 0.9 million instructions
for a class of five fields).
"""

from __future__ import annotations

import builtins
import dataclasses
import reprlib
import sys
from types import FunctionType
from typing import TYPE_CHECKING

__all__ = ["frozen", "NamedTuple"]

_NONE = object()


def frozen(cls=None, /, *, eq: bool = True):
    """``@dataclasses.dataclass(frozen=True, eq=eq)``, with its methods shared rather than
    compiled for each class.

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
    made = _made_here(cls, own)
    if made is None:
        cls = dataclasses.dataclass(cls, frozen=True, eq=False, repr=False)
    else:
        cls = made
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


#: Names the shared ``__init__`` uses itself: a field of that name takes the dataclass way.
_RESERVED = frozenset({"self", "_fill", "locals"})


def _made_here(cls, own):
    """``cls`` as a frozen dataclass whose ``__init__``, ``__setattr__`` and
    ``__delattr__`` are shared, or None where it needs the dataclass's own (checked
    before :mod:`dataclasses` sees the class: it takes the ``field()`` values off it)."""
    if _INIT_CODE is None or "__setattr__" in own or "__delattr__" in own or \
            not _plain(cls):
        return None       # (dataclass then raises its "Cannot overwrite attribute" error)
    no_doc = not cls.__dict__.get("__doc__")
    if no_doc:
        cls.__doc__ = "-"       # written below, once __init__ exists (dataclass would now)
    # a subclass of a frozen dataclass must say frozen to dataclass, which then writes
    # the two guards itself; the others get the shared ones below
    guarded = any("__dataclass_fields__" in base.__dict__ for base in cls.__mro__[1:])
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False, frozen=guarded)
    fields = dataclasses.fields(cls)
    if len(fields) != len(cls.__dataclass_fields__):        # _plain let a pseudo-field by
        raise TypeError(f"{cls.__qualname__}: gradcheck._record.frozen takes plain fields")
    seen_default = False
    defaults = []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            defaults.append(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            defaults.append(_FACTORY)
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        else:
            continue
        seen_default = True
    names = tuple(f.name for f in fields)
    params = cls.__dataclass_params__
    params.init = True
    params.frozen = True
    cls.__init__ = _init(cls, fields, names, tuple(defaults))
    if not guarded:
        cls.__setattr__, cls.__delattr__ = _guards(cls, names)
    if no_doc:
        import inspect

        try:
            text_sig = str(inspect.signature(cls)).replace(" -> None", "")
        except (TypeError, ValueError):
            text_sig = ""
        cls.__doc__ = cls.__name__ + text_sig
    return cls


#: Names the shared ``__init__`` uses itself: a field of that name takes the dataclass way.
_RESERVED = frozenset({"self", "_fill", "locals"})

#: Annotations that make a pseudo-field or keyword-only fields: the dataclass way.
_SPECIAL = ("InitVar", "ClassVar", "KW_ONLY")


def _plain(cls) -> bool:
    """Whether every field of ``cls`` (its own and its dataclass bases') is an ordinary
    positional ``__init__`` parameter, and every dataclass base frozen."""
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        text = annotation if isinstance(annotation, str) else repr(annotation)
        value = cls.__dict__.get(name)
        if name in _RESERVED or any(word in text for word in _SPECIAL) or (
                isinstance(value, dataclasses.Field)
                and (not value.init or value.kw_only is True)):
            return False
    for base in cls.__mro__[1:]:
        every = base.__dict__.get("__dataclass_fields__")
        if every is None:
            continue
        fields = dataclasses.fields(base)
        if not base.__dataclass_params__.frozen or len(fields) != len(every) or any(
                not f.init or f.kw_only is True or f.name in _RESERVED for f in fields):
            return False
    return True


class _Factory:
    """The default of a field with a ``default_factory``: shown as ``<factory>``."""

    __slots__ = ()

    def __repr__(self):
        return "<factory>"


_FACTORY = _Factory()


def _init_template(self):
    _fill(self, locals())   # noqa: F821 (each copy's own globals hold _fill)


def _init_code():
    """The template's code, or None where this Python cannot rename its parameters."""
    try:
        code = _init_template.__code__
        probe = code.replace(co_argcount=2, co_nlocals=2, co_varnames=("self", "a"))
        seen = []
        FunctionType(probe, {"_fill": lambda s, given: seen.append(given),
                             "__builtins__": builtins})(0, a=1)
        return code if seen == [{"self": 0, "a": 1}] else None
    except Exception:   # pragma: no cover - a CPython without code.replace's arguments
        return None


def _init(cls, fields, names, defaults):
    """``__init__(self, <names>)`` with ``defaults`` for the last parameters: each field
    set (a default factory called where its field was not given), then
    ``__post_init__()`` if the class has one."""
    plan = tuple((f.name, None if f.default_factory is dataclasses.MISSING
                  else f.default_factory) for f in fields)
    post_init = hasattr(cls, "__post_init__")
    setter = object.__setattr__

    def fill(self, given):
        for name, factory in plan:
            value = given[name]
            if factory is not None and value is _FACTORY:
                value = factory()
            setter(self, name, value)
        if post_init:
            self.__post_init__()

    renamed = {"co_argcount": 1 + len(names), "co_nlocals": 1 + len(names),
               "co_varnames": ("self", *names), "co_name": "__init__"}
    if sys.version_info >= (3, 11):
        renamed["co_qualname"] = f"{cls.__qualname__}.__init__"
    fn = FunctionType(_INIT_CODE.replace(**renamed),
                      {"_fill": fill, "__builtins__": builtins}, "__init__",
                      defaults or None)
    fn.__qualname__ = f"{cls.__qualname__}.__init__"
    fn.__module__ = cls.__module__
    fn.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    return fn


def _guards(cls, names):
    """The ``__setattr__`` and ``__delattr__`` of a frozen dataclass over ``names``."""
    from dataclasses import FrozenInstanceError

    def __setattr__(self, name, value):
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name):
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    __setattr__.__qualname__ = f"{cls.__qualname__}.__setattr__"
    __delattr__.__qualname__ = f"{cls.__qualname__}.__delattr__"
    return __setattr__, __delattr__


_INIT_CODE = _init_code()
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


# --------------------------------------------------------------------------- NamedTuple

#: What a NamedTuple's class body may not set, and what it sets that is not copied
#: (as typing.NamedTuple).
_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                         "_field_defaults", "_make", "_replace", "_asdict", "_source"})
_SPECIAL_KEYS = frozenset({"__module__", "__name__", "__annotations__"})


class _NamedTupleMeta(type):
    """Makes ``class Name(NamedTuple): ...`` a :func:`collections.namedtuple` class, as
    ``typing.NamedTuple`` does, without turning the annotations into ForwardRefs."""

    def __new__(mcls, typename, bases, ns):
        if "_root" in ns:           # NamedTuple itself
            return super().__new__(mcls, typename, bases, ns)
        if bases != (NamedTuple,):
            raise TypeError("can only inherit from a NamedTuple type")
        import collections

        types = ns.get("__annotations__", {})
        default_names = []
        for field_name in types:
            if field_name in ns:
                default_names.append(field_name)
            elif default_names:
                raise TypeError(f"Non-default namedtuple field {field_name} cannot follow "
                                f"default field{'s' if len(default_names) > 1 else ''} "
                                f"{', '.join(default_names)}")
        record = collections.namedtuple(typename, list(types),
                                        defaults=[ns[n] for n in default_names],
                                        module=ns["__module__"])
        record.__annotations__ = record.__new__.__annotations__ = dict(types)
        for key in ns:
            if key in _PROHIBITED:
                raise AttributeError("Cannot overwrite NamedTuple attribute " + key)
            if key not in _SPECIAL_KEYS and key not in record._fields:
                setattr(record, key, ns[key])
        return record


if TYPE_CHECKING:
    from typing import NamedTuple
else:
    class NamedTuple(metaclass=_NamedTupleMeta):
        """``typing.NamedTuple``'s class syntax: ``class Point(NamedTuple): x: int;
        y: int = 0`` is ``collections.namedtuple("Point", ["x", "y"], defaults=[0])``
        with the class body's methods, docstring and annotations (kept as written).

        >>> class Point(NamedTuple):
        ...     x: int
        ...     y: int = 0
        ...     def norm1(self):
        ...         return abs(self.x) + abs(self.y)
        >>> Point(3), Point(3, -4).norm1(), Point._fields, isinstance(Point(1), tuple)
        (Point(x=3, y=0), 7, ('x', 'y'), True)
        """

        _root = True
