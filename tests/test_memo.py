"""ops._memo: a layer's last result, handed back only for the same call, to the byte."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest

from gradcheck.ops import _memo
from gradcheck.ops._memo import LastCall


def _counted():
    calls = []

    def fn(a, b=None, *, scale=1.0):
        calls.append(1)
        return a * scale if b is None else a * b * scale

    return fn, calls


def test_the_same_call_is_computed_once():
    fn, calls = _counted()
    memo = LastCall()
    a = np.linspace(-1, 1, 7)
    first = memo(fn, a, scale=2.0)
    again = memo(fn, a.copy(), scale=2.0)      # another array, the same bytes
    assert again is first and len(calls) == 1
    np.testing.assert_array_equal(first, 2 * a)


@pytest.mark.parametrize("change", [
    lambda a, b, o: (a + 2.0**-52, b, o),          # one bit of the values
    lambda a, b, o: (a.astype(np.float32), b, o),  # the dtype
    lambda a, b, o: (a.reshape(7, 1), b, o),       # the shape
    lambda a, b, o: (a, None, o),                  # an argument left out
    lambda a, b, o: (a, b, {"scale": 3.0}),        # an option
])
def test_any_difference_computes_again(change):
    fn, calls = _counted()
    memo = LastCall()
    a, b, options = np.linspace(-1, 1, 7), np.arange(7.0), {"scale": 2.0}
    memo(fn, a, b, **options)
    a2, b2, options2 = change(a, b, options)
    got = memo(fn, a2, b2, **options2)
    assert len(calls) == 2
    np.testing.assert_array_equal(got, fn(a2, b2, **options2))


def test_another_function_is_not_answered_from_the_last():
    memo = LastCall()
    a = np.arange(3.0)
    assert memo(np.sin, a)[1] == np.sin(1.0)
    assert memo(np.cos, a)[1] == np.cos(1.0)


def test_kept_results_are_read_only_and_copies_start_empty():
    fn, calls = _counted()
    memo = LastCall()
    got = memo(fn, np.ones(3))
    with pytest.raises(ValueError):
        got[0] = 5.0
    for other in (pickle.loads(pickle.dumps(memo)), copy.deepcopy(memo)):
        other(fn, np.ones(3))
    assert len(calls) == 3


def test_large_calls_are_not_kept(monkeypatch):
    monkeypatch.setattr(_memo, "KEEP_BYTES", 16)
    fn, calls = _counted()
    memo = LastCall()
    memo(fn, np.ones(3)), memo(fn, np.ones(3))
    assert len(calls) == 2


def test_an_activation_changed_after_a_call_is_not_answered_from_the_old_one():
    from gradcheck.ops.activations import get_activation
    from gradcheck.ops.layers import Activation

    act = Activation("tanh")
    z, g = np.linspace(-2, 2, 5), np.ones(5)
    np.testing.assert_allclose(act.backward(g, z)[0], 1 - np.tanh(z) ** 2, rtol=1e-14)
    act.spec = get_activation("sigmoid")
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(act.backward(g, z)[0], s * (1 - s), rtol=1e-14)


def test_a_check_is_the_same_to_the_bit_without_the_kept_results(monkeypatch):
    # the bench layer (conv -> tanh, complex steps through the shared real part), checked
    # with every result kept and with none: numerical values, error bars and verdicts equal
    from gradcheck.spec import build, load_spec
    from gradcheck.spec._run import check_built

    spec = load_spec(Path(__file__).resolve().parent.parent / "specs" / "bench" /
                     "conv_tanh_24.toml")
    kept = [check_built(build(spec)) for _ in range(2)]      # the second one from the first
    monkeypatch.setattr(_memo, "KEEP_BYTES", -1)
    plain = check_built(build(spec))
    for report in kept:
        assert report.passed == plain.passed
        for a, b in zip(report.arguments, plain.arguments):
            for field in ("numeric", "error_estimate", "analytic", "allowed"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
