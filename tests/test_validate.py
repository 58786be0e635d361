"""The shared checks of gradcheck/_validate.py: what counts as an int and a real number."""

from __future__ import annotations

import fractions

import numpy as np
import pytest

from gradcheck._validate import is_int, is_real


@pytest.mark.parametrize("value", [0, -3, 2**70, np.int64(5), np.uint8(1), np.int32(-2)])
def test_integers_are_ints_and_reals(value):
    assert is_int(value) and is_real(value)


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bools_are_neither(value):
    assert not is_int(value) and not is_real(value)


@pytest.mark.parametrize("value", [1.0, np.float32(2.5), float("nan"), float("inf"),
                                   fractions.Fraction(1, 3)])
def test_non_integral_reals(value):
    assert is_real(value) and not is_int(value)


@pytest.mark.parametrize("value", [1j, np.complex128(1.0), "3", None, [1], (2,),
                                   np.array(3), np.array([1.0])])
def test_other_values_are_neither(value):
    assert not is_int(value) and not is_real(value)
