"""The framework-free part of the adapters, and that ``import gradcheck`` stays light.

Runs without PyTorch or JAX installed.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gradcheck import ConfigurationError
from gradcheck._adapter import (check_nondeterminism, merge_orders, merge_reports,
                                mode_options, pack, unpack, validate_modes, validate_order)


def test_import_gradcheck_imports_neither_torch_nor_jax():
    code = ("import sys, gradcheck, gradcheck.spec, gradcheck.cli\n"
            "bad = [m for m in ('torch', 'jax') if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == ""


def test_pack_and_unpack_are_inverse():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(4, dtype=np.float32)
    v = pack([a, b])
    assert v.shape == (10,) and v.dtype == np.float64
    back = unpack(v, [a.shape, b.shape], [a.dtype, b.dtype])
    np.testing.assert_array_equal(back[0], a)
    np.testing.assert_array_equal(back[1], b)
    assert back[1].dtype == np.float32
    assert pack([a]) is not None and pack([a]).shape == (2, 3)    # one output keeps its shape


@pytest.mark.parametrize("modes, message", [
    (("rev", "sideways"), r"unknown mode\(s\) \['sideways'\]"),
    ((), r"non-empty sequence"),
    ((1,), r"non-empty sequence of 'rev' and 'fwd'"),
])
def test_modes_are_validated(modes, message):
    with pytest.raises(ConfigurationError, match=message):
        validate_modes(modes)


def test_modes_and_orders():
    assert validate_modes("rev") == ("rev",)
    assert validate_modes(["fwd", "rev", "fwd"]) == ("fwd", "rev")     # as given, once each
    assert validate_order(2) == 2
    for bad in (0, 3, 1.0, True):
        with pytest.raises(ConfigurationError, match=r"order must be 1"):
            validate_order(bad)


def test_nondeterminism_rule():
    a = [np.array([1.0, 2.0, 3.0])]
    assert check_nondeterminism(a, [a[0] + 1e-16], ["x"], 0.0)[1] is None   # rounding
    worst, msg = check_nondeterminism(a, [a[0] + np.array([0, 1e-9, 0])], ["x"], 0.0)
    assert worst == pytest.approx(1e-9) and "at index (1,)" in msg
    assert check_nondeterminism(a, [a[0] + 1e-9], ["x"], 1e-8)[1] is None


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_nondeterminism_rule_in_low_precision_uses_the_dtypes_rounding(name):
    # two passes one ulp of the dtype apart are rounding (bfloat16 used to be judged by
    # float64's epsilon: its dtype is of kind "V"); half as much again is not
    if name == "bfloat16":
        dt = np.dtype(pytest.importorskip("ml_dtypes", reason="bfloat16").bfloat16)
        ulp = 2.0 ** -7
    else:
        dt, ulp = np.dtype(np.float16), 2.0 ** -10
    a = np.array([1.0, 1.5, 1.75]).astype(dt)
    b = (a.astype(np.float64) + ulp).astype(dt)
    assert b.astype(np.float64)[0] == 1.0 + ulp
    assert check_nondeterminism([a], [b], ["x"], 0.0)[1] is None
    far = (a.astype(np.float64) * 1.5).astype(dt)
    assert "not deterministic" in check_nondeterminism([a], [far], ["x"], 0.0)[1]


def test_merge_orders_renames_and_combines():
    from gradcheck import check_vjp

    f, ok = np.tanh, lambda g, x: (g * (1 - np.tanh(x) ** 2),)
    wrong = lambda g, x: (g * (1 - np.tanh(x)),)  # noqa: E731
    x = (np.linspace(-1, 1, 4),)
    merged = merge_orders(check_vjp(f, ok, x), check_vjp(f, wrong, x))
    assert [a.name for a in merged.arguments] == ["arg0", "order2.arg0"]
    assert not merged.passed and merged.arguments[0].passed


def test_mode_options_split_and_refuse():
    options = {"seed": 3, "cotangent": np.ones(2), "output_role": "generic"}
    assert set(mode_options(options, "rev", ("rev", "fwd"))) == {"seed", "cotangent"}
    assert set(mode_options(options, "fwd", ("rev", "fwd"))) == {"seed", "output_role"}
    with pytest.raises(ConfigurationError, match=r"cotangent applies to reverse mode \('rev'\) "
                                                 r"only; modes=\('fwd',\)"):
        mode_options({"cotangent": np.ones(2)}, "fwd", ("fwd",))
    with pytest.raises(ConfigurationError, match=r"output_role applies to forward mode"):
        mode_options({"output_role": "input"}, "rev", ("rev",))


def test_merge_reports_prefixes_rows_and_marks_both_modes():
    from gradcheck import check_jvp, check_vjp

    x = (np.linspace(-1, 1, 4),)
    rev = check_vjp(np.tanh, lambda g, x: (g * (1 - np.tanh(x) ** 2),), x)
    fwd = check_jvp(np.tanh, lambda t, x: t[0] * (1 - np.tanh(x)), x)      # wrong
    merged = merge_reports([("", "", rev), ("fwd.", "forward mode", fwd)])
    assert [a.name for a in merged.arguments] == ["arg0", "fwd.arg0"]
    assert merged.ad_mode == "fwd+rev" and not merged.passed and merged.arguments[0].passed
    assert merged.nfev == rev.nfev + fwd.nfev
