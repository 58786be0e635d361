"""gradcheck._record.frozen against the stdlib's dataclass(frozen=True): the same
equality, hash, repr, immutability and dataclasses API, class by class."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import field

import numpy as np
import pytest

from gradcheck._record import frozen


def _pair(body: dict, **options):
    """The same class body made by dataclass(frozen=True) and by frozen."""
    def make(decorate):
        cls = type("Rec", (), {**body, "__module__": __name__, "__qualname__": "Rec"})
        return decorate(cls)

    return (make(dataclasses.dataclass(frozen=True, **options)),
            make(frozen(**options) if options else frozen))


BODIES = {
    "plain": {"__annotations__": {"a": "int", "b": "str"}, "b": "x"},
    "no fields": {"__annotations__": {}},
    "one field": {"__annotations__": {"a": "object"}},
    "options": {"__annotations__": {"a": "int", "hidden": "object", "tag": "str",
                                    "h": "int"},
                "hidden": field(default=None, compare=False, repr=False),
                "tag": field(default="t", repr=False),
                "h": field(default=0, hash=False)},
    "factory": {"__annotations__": {"a": "int", "d": "dict"},
                "d": field(default_factory=dict, compare=False)},
}

VALUES = {
    "plain": [(1,), (1, "y"), (2, "x")],
    "no fields": [()],
    "one field": [(1,), (1.0,), ((1, 2),), ("s",)],
    "options": [(1, [1], "t", 3), (1, {2: 3}, "u", 4), (2, None, "t", 3)],
    "factory": [(1, {"k": 1}), (1, {}), (2,)],
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_frozen_behaves_as_the_stdlib_frozen_dataclass(name):
    std, ours = _pair(BODIES[name])
    assert [f.name for f in dataclasses.fields(ours)] == \
        [f.name for f in dataclasses.fields(std)]
    assert ours.__match_args__ == std.__match_args__
    rows = VALUES[name]
    for args in rows:
        s, o = std(*args), ours(*args)
        assert repr(o) == repr(s)
        assert dataclasses.astuple(o) == dataclasses.astuple(s)
        try:
            expected_hash = hash(s)
        except TypeError:         # an unhashable field value: unhashable both ways
            with pytest.raises(TypeError):
                hash(o)
        else:
            assert hash(o) == expected_hash
        with pytest.raises(dataclasses.FrozenInstanceError):
            o.a = 5
        with pytest.raises(dataclasses.FrozenInstanceError):
            del o.a
        for other in rows:
            assert (o == ours(*other)) == (s == std(*other))
            assert (o != ours(*other)) == (s != std(*other))
        assert o != s and s != o          # another class is never equal, as dataclass
        assert (o == args) is False       # nor a tuple of the same values
    if rows[0]:
        first = ours(*rows[0])
        changed = dataclasses.replace(first, **{dataclasses.fields(ours)[0].name: 9})
        assert dataclasses.fields(ours)[0].name in repr(changed) or "9" not in repr(first)
        assert getattr(changed, dataclasses.fields(ours)[0].name) == 9


def test_arrays_compare_by_identity_first_as_in_a_dataclass():
    std, ours = _pair({"__annotations__": {"a": "object", "b": "int"}})
    a = np.arange(3.0)
    assert (ours(a, 1) == ours(a, 1)) == (std(a, 1) == std(a, 1)) is True
    with pytest.raises(ValueError):           # two equal arrays: ambiguous both ways
        std(a, 1) == std(a.copy(), 1)
    with pytest.raises(ValueError):
        ours(a, 1) == ours(a.copy(), 1)


def test_methods_the_class_writes_are_kept():
    @frozen
    class Named:
        a: int

        def __repr__(self):
            return "mine"

        def __eq__(self, other):
            return True

        def __hash__(self):
            return 7

    assert repr(Named(1)) == "mine" and Named(1) == Named(2) and hash(Named(1)) == 7

    @frozen
    class EqOnly:
        a: int

        def __eq__(self, other):
            return True

    # dataclass(frozen=True) gives a hash over the fields beside an own __eq__
    assert hash(EqOnly(3)) == hash((3,))


def test_eq_false_keeps_identity():
    std, ours = _pair({"__annotations__": {"a": "int"}}, eq=False)
    o = ours(1)
    assert o != ours(1) and o == o and hash(o) == object.__hash__(o)
    assert repr(o) == repr(std(1))


def test_a_record_met_again_inside_itself_is_shown_as_dots():
    @frozen
    class Box:
        items: list

    box = Box([])
    box.items.append(box)
    assert repr(box).endswith(".Box(items=[...])")


def test_records_of_the_package_pickle_and_compare():
    from gradcheck.spec import loads_spec

    spec = loads_spec("[input]\nshape = [1, 2, 4, 4]\n[[layer]]\ntype = 'conv'\n"
                      "out_channels = 2\nkernel = 3\n")
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and repr(again) == repr(spec)
    assert again != dataclasses.replace(spec, name="other")


def test_init_signature_doc_and_errors_are_the_dataclass_ones():
    import inspect

    for name in sorted(BODIES):
        std, ours = _pair(BODIES[name])
        assert str(inspect.signature(ours)) == str(inspect.signature(std)), name
        assert ours.__doc__ == std.__doc__, name        # "Rec(a: 'int', b: 'str' = 'x')"
        assert ours.__init__.__qualname__ == std.__init__.__qualname__
        assert ours.__dataclass_params__.frozen and ours.__dataclass_params__.init
    std, ours = _pair(BODIES["plain"])
    for args, kwargs in (((), {}), ((1, 2, 3), {}), ((1,), {"a": 2}), ((1,), {"c": 2})):
        with pytest.raises(TypeError) as expected:
            std(*args, **kwargs)
        with pytest.raises(TypeError) as got:
            ours(*args, **kwargs)
        assert str(got.value) == str(expected.value)
    assert ours(b="z", a=3) == ours(3, "z") and ours(3).b == "x"


def test_a_default_factory_is_called_for_each_instance():
    _, ours = _pair(BODIES["factory"])
    one, two = ours(1), ours(1)
    assert one.d == {} and one.d is not two.d
    given = {"k": 1}
    assert ours(1, given).d is given


def test_post_init_subclasses_and_what_takes_the_dataclass_way():
    calls = []

    @frozen
    class Base:
        a: int

        def __post_init__(self):
            calls.append(self.a)

    @frozen
    class Child(Base):
        b: int = 2

    assert Child(1) == Child(1, 2) and calls == [1, 1]
    assert [f.name for f in dataclasses.fields(Child)] == ["a", "b"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Child(1).b = 3
    with pytest.raises(TypeError, match="non-default argument 'c' follows default argument"):
        @frozen
        class Bad:
            a: int = 0
            c: int

    with pytest.raises(TypeError, match="cannot inherit frozen dataclass from a non-frozen"):
        @frozen
        class FromMutable(dataclasses.dataclass(type("M", (), {"__annotations__": {"m": int}}))):
            pass

    # keyword-only and init=False fields, and a field named as the shared __init__'s
    # locals, are made by dataclass(frozen=True) itself, with the same behaviour
    for body, args, kwargs in (
            ({"__annotations__": {"a": "int", "k": "int"}, "k": field(default=1, kw_only=True)},
             (1,), {"k": 2}),
            ({"__annotations__": {"a": "int", "n": "int"}, "n": field(default=5, init=False)},
             (1,), {}),
            ({"__annotations__": {"self": "int", "locals": "int"}}, (1, 2), {})):
        std, ours = _pair(body)
        assert repr(ours(*args, **kwargs)) == repr(std(*args, **kwargs))
        assert str(__import__("inspect").signature(ours)) == \
            str(__import__("inspect").signature(std))


# --------------------------------------------------------------------------- NamedTuple


def _typing_class(body):
    """``class Row(typing.NamedTuple)`` with ``body``."""
    import typing

    ns = {"__module__": __name__, "__qualname__": "Row", **body}
    return type(typing._NamedTuple)("Row", (typing._NamedTuple,), ns)


def _our_class(body):
    """``class Row(gradcheck._record.NamedTuple)`` with ``body``."""
    from gradcheck._record import NamedTuple

    ns = {"__module__": __name__, "__qualname__": "Row", **body}
    return type(NamedTuple)("Row", (NamedTuple,), ns)


def test_named_tuple_behaves_as_typing_named_tuple():
    body = {"__annotations__": {"a": "int", "b": "np.ndarray", "c": "str"}, "c": "x",
            "__doc__": "A row.", "twice": lambda self: 2 * self.a}
    std, ours = _typing_class(body), _our_class(body)
    for attr in ("_fields", "_field_defaults", "__doc__", "__match_args__", "__module__",
                 "__qualname__", "__bases__"):
        assert getattr(ours, attr) == getattr(std, attr), attr
    assert list(ours.__annotations__) == list(std.__annotations__) == ["a", "b", "c"]
    for args in ((1, 2), (1, 2, "y")):
        s, o = std(*args), ours(*args)
        assert tuple(o) == tuple(s) and repr(o) == repr(s) and o.twice() == s.twice()
        assert o._asdict() == s._asdict() and o._replace(a=5) == s._replace(a=5)
        assert hash(o) == hash(s) and o == s      # tuples: equal to a tuple of the values
    assert ours._make([1, 2, 3]) == (1, 2, 3) and ours(a=1, b=2).c == "x"
    with pytest.raises(AttributeError):
        ours(1, 2).a = 3
    for bad in ({"__annotations__": {"a": "int", "b": "int"}, "a": 0},
                {"__annotations__": {"a": "int"}, "_make": None}):
        with pytest.raises((TypeError, AttributeError)) as expected:
            _typing_class(bad)
        with pytest.raises(expected.type) as got:
            _our_class(bad)
        assert str(got.value) == str(expected.value)


def test_named_tuples_of_the_package_pickle():
    from gradcheck.checker._plan import Plan

    assert Plan.__bases__ == (tuple,) and Plan.__module__ == "gradcheck.checker._plan"
    row = Plan(*range(len(Plan._fields)))
    assert pickle.loads(pickle.dumps(row)) == row


def test_the_package_makes_its_records_with_the_cheaper_constructions():
    """Every record class of gradcheck is made by gradcheck._record (a module that made
    them with typing.NamedTuple or dataclass(frozen=True) would compile their methods
    and annotations again at each command's start)."""
    import pathlib
    import re

    import gradcheck

    root = pathlib.Path(gradcheck.__file__).parent
    slow = re.compile(r"^from typing import .*\bNamedTuple\b|^\s*@(dataclasses\.)?dataclass\b"
                      r"|typing\.NamedTuple\b", re.MULTILINE)
    offenders = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))
                 if p.name != "_record.py" and slow.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
