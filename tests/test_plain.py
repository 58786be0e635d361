"""plain(): the one route from layer, spec and strategy values to JSON/TOML-ready data."""

from __future__ import annotations

import json
from types import MappingProxyType

import numpy as np
import pytest

from gradcheck._plain import plain

CASES = [
    ((2, 1), [2, 1]),
    ([(1, 0), (0, 1)], [[1, 0], [0, 1]]),
    ({"tolerance": MappingProxyType({"input": {"rtol": 1e-3}})},
     {"tolerance": {"input": {"rtol": 1e-3}}}),
    ("same", "same"),
    (None, None),
    (True, True),
    (np.bool_(False), False),
    (np.int64(7), 7),
    (np.float32(0.5), 0.5),
    (np.float64(-2.25), -2.25),
    (3, 3),
    (np.complex128(3.0), 3.0),
    (1 + 2j, {"real": 1.0, "imag": 2.0}),
    (np.complex64(-1j), {"real": 0.0, "imag": -1.0}),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_plain_values(value, expected):
    got = plain(value)
    assert got == expected
    assert type(got) is type(expected)
    assert json.loads(json.dumps(got)) == expected


def test_nested_types_are_plain_all_the_way_down():
    got = plain({"a": (np.int64(1), [np.float32(2.0), (3 + 0j,)]), "b": {"c": (True,)}})
    assert got == {"a": [1, [2.0, [3.0]]], "b": {"c": [True]}}
    assert type(got["a"][0]) is int and type(got["a"][1][0]) is float
    assert type(got["a"][1][1][0]) is float and type(got["b"]["c"][0]) is bool


def test_mapping_keys_are_kept():
    assert plain({1: "x", "y": (1,)}) == {1: "x", "y": [1]}
