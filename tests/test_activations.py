"""The activation table held against routes that share no code with it: mpmath formulas
differentiated at 40 digits, complex step, central differences, PyTorch's activations,
hand-derived tail limits, and a test that each listed kink really is a jump of σ'."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from gradcheck import ConfigurationError, GradcheckError
from gradcheck.ops.activations import ACTIVATIONS, ACTIVATION_PARAMS, get_activation

# Every table entry plus non-default parameterizations.
CASES = [(name, {}) for name in ACTIVATIONS] + [
    ("leaky_relu", {"alpha": 0.2}),
    ("leaky_relu", {"alpha": 1.0}),
    ("elu", {"alpha": 0.5}),
    ("elu", {"alpha": 2.5}),
    ("hard_tanh", {"min_val": -0.5, "max_val": 2.0}),
]
IDS = [name + "".join(f"-{k}{v}" for k, v in p.items()) for name, p in CASES]

# The kinks, derived by hand (σ' jumps there).
EXPECTED_KINKS = {
    "identity": (), "sigmoid": (), "tanh": (), "softplus": (), "gelu": (), "gelu_tanh": (),
    "silu": (), "swish": (), "softsign": (),
    "relu": (0.0,), "leaky_relu": (0.0,), "elu": (), "hard_tanh": (-1.0, 1.0),
}

# Points of moderate size, none within 0.05 of any kink of any case.
GRID = np.array([-7.3, -3.1, -1.7, -0.83, -0.41, -0.13, 0.07, 0.29, 0.61, 0.97, 1.43, 2.9,
                 6.1])


def away_from_kinks(z, kinks, margin=1e-3):
    return np.array([v for v in z if all(abs(v - k) > margin for k in kinks)])


# --------------------------------------------------------------------------- reference formulas


def mp_formula(name, params):
    """The activation written afresh in mpmath (value only)."""
    mp = pytest.importorskip("mpmath")
    a = mp.mpf(params.get("alpha", {"leaky_relu": 0.01, "elu": 1.0}.get(name, 0)))
    lo, hi = mp.mpf(params.get("min_val", -1)), mp.mpf(params.get("max_val", 1))
    return {
        "identity": lambda z: z,
        "sigmoid": lambda z: 1 / (1 + mp.exp(-z)),
        "tanh": mp.tanh,
        "relu": lambda z: z if z > 0 else mp.mpf(0),
        "leaky_relu": lambda z: z if z > 0 else a * z,
        "elu": lambda z: z if z > 0 else a * (mp.exp(z) - 1),
        "softplus": lambda z: mp.log(1 + mp.exp(z)),
        # erfc keeps the left tail exact at any working precision; erf would cancel
        "gelu": lambda z: z * mp.erfc(-z / mp.sqrt(2)) / 2,
        "gelu_tanh": lambda z: z * (1 + mp.tanh(mp.sqrt(2 / mp.pi)
                                                 * (z + mp.mpf("0.044715") * z ** 3))) / 2,
        "silu": lambda z: z / (1 + mp.exp(-z)),
        "swish": lambda z: z / (1 + mp.exp(-z)),
        "softsign": lambda z: z / (1 + abs(z)),
        "hard_tanh": lambda z: min(max(z, lo), hi),
    }[name]


@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_value_and_derivative_match_mpmath(name, params):
    mp = pytest.importorskip("mpmath")
    act = get_activation(name, **params)
    f = mp_formula(name, params)
    # the tails too: relative accuracy must hold where the derivative is tiny
    z = away_from_kinks(np.concatenate([GRID, [-38.0, -25.0, -12.5, 12.5, 25.0, 38.0]]),
                        act.kinks, margin=0.05)
    # 1 + tanh(u) cancels down to 2e^{-2u}: enough digits to see it at z = -38
    with mp.workdps(1800 if name == "gelu_tanh" else 60):
        want_v = np.array([float(f(mp.mpf(float(v)))) for v in z])
        want_d = np.array([float(mp.diff(f, mp.mpf(float(v)))) for v in z])
    got_v, got_d = act.value(z), act.derivative(z)
    # rtol: a few ulp times the condition number z f'(z)/f(z), which reaches ~60 in the
    # gelu tails (the rounding of z/sqrt(2) is amplified by 2 (z/sqrt 2)^2)
    np.testing.assert_allclose(got_v, want_v, rtol=2e-13, atol=1e-300, err_msg=f"{name} value")
    np.testing.assert_allclose(got_d, want_d, rtol=2e-13, atol=1e-300,
                               err_msg=f"{name} derivative")


@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_float32_matches_mpmath(name, params):
    mp = pytest.importorskip("mpmath")
    act = get_activation(name, **params)
    f = mp_formula(name, params)
    z = away_from_kinks(GRID, act.kinks, margin=0.05).astype(np.float32)
    with mp.workdps(30):
        want_v = np.array([float(f(mp.mpf(float(v)))) for v in z])
        want_d = np.array([float(mp.diff(f, mp.mpf(float(v)))) for v in z])
    got_v, got_d = act.value(z), act.derivative(z)
    assert got_v.dtype == np.float32 and got_d.dtype == np.float32
    np.testing.assert_allclose(got_v, want_v, rtol=3e-6, atol=1e-30)
    np.testing.assert_allclose(got_d, want_d, rtol=3e-6, atol=1e-30)


# --------------------------------------------------------------------------- routes without mpmath


@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_derivative_matches_complex_step(name, params):
    act = get_activation(name, **params)
    assert act.complex_safe
    z = away_from_kinks(np.concatenate([GRID, [-30.0, 30.0]]), act.kinks)
    h = 1e-100
    numeric = act.value(z + 1j * h).imag / h
    # scipy's complex erfc (Faddeeva) is good to ~1e-13 relative in the tails
    rtol = 1e-13 if name == "gelu" else 1e-14
    np.testing.assert_allclose(act.derivative(z), numeric, rtol=rtol, atol=1e-300)
    # the real part of the complex evaluation is the real value
    np.testing.assert_allclose(act.value(z + 1j * h).real, act.value(z), rtol=1e-15)


@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_derivative_matches_central_difference(name, params):
    act = get_activation(name, **params)
    z = away_from_kinks(GRID, act.kinks, margin=0.05)
    h = 1e-5
    numeric = (act.value(z + h) - act.value(z - h)) / (2 * h)
    # truncation ~ h^2 |f'''| / 6 and rounding ~ eps / h: 1e-9 covers both here
    np.testing.assert_allclose(act.derivative(z), numeric, rtol=0, atol=1e-9)


def test_swish_is_silu():
    z = np.linspace(-5, 5, 11)
    np.testing.assert_array_equal(ACTIVATIONS["swish"].value(z), ACTIVATIONS["silu"].value(z))
    np.testing.assert_array_equal(ACTIVATIONS["swish"].derivative(z),
                                  ACTIVATIONS["silu"].derivative(z))


# --------------------------------------------------------------------------- kinks


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_kinks_table(name):
    assert ACTIVATIONS[name].kinks == EXPECTED_KINKS[name]


@pytest.mark.parametrize("name, params, kinks", [
    ("leaky_relu", {"alpha": 0.2}, (0.0,)),
    ("leaky_relu", {"alpha": 1.0}, ()),          # the identity: no jump
    ("elu", {"alpha": 0.5}, (0.0,)),             # slope alpha on the left, 1 on the right
    ("hard_tanh", {"min_val": -0.5, "max_val": 2.0}, (-0.5, 2.0)),
])
def test_kinks_follow_parameters(name, params, kinks):
    assert get_activation(name, **params).kinks == kinks


@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_listed_kinks_are_jumps_and_nothing_else_jumps(name, params):
    """One-sided difference quotients of the value (not the table's derivative) disagree
    at every listed kink and agree at every other point of a fine grid."""
    act = get_activation(name, **params)
    h = 1e-6

    def jump(z):
        z = np.asarray(z, dtype=np.float64)
        right = (act.value(z + h) - act.value(z)) / h
        left = (act.value(z) - act.value(z - h)) / h
        return np.abs(right - left)

    for k in act.kinks:
        assert jump([k])[0] > 1e-3, f"{name}: no jump of σ' at listed kink {k}"
    z = away_from_kinks(np.linspace(-4, 4, 801), act.kinks, margin=1e-4)
    assert np.max(jump(z)) < 1e-4, f"{name}: σ' jumps somewhere not listed"


def test_derivative_at_kink_follows_torch_convention():
    # derived by hand from PyTorch's backward formulas
    assert ACTIVATIONS["relu"].derivative(np.array([0.0]))[0] == 0.0
    assert get_activation("leaky_relu", alpha=0.2).derivative(np.array([0.0]))[0] == 0.2
    assert get_activation("elu", alpha=0.5).derivative(np.array([0.0]))[0] == 0.5
    np.testing.assert_array_equal(ACTIVATIONS["hard_tanh"].derivative(np.array([-1.0, 1.0])),
                                  [0.0, 0.0])


# --------------------------------------------------------------------------- torch


def _torch_fn(name, params):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    return {
        "identity": lambda t: t,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": F.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, params.get("alpha", 0.01)),
        "elu": lambda t: F.elu(t, params.get("alpha", 1.0)),
        "softplus": F.softplus,
        "gelu": lambda t: F.gelu(t, approximate="none"),
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "silu": F.silu,
        "swish": F.silu,
        "softsign": F.softsign,
        "hard_tanh": lambda t: F.hardtanh(t, params.get("min_val", -1.0),
                                          params.get("max_val", 1.0)),
    }[name]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, params", CASES, ids=IDS)
def test_matches_torch(name, params, dtype):
    torch = pytest.importorskip("torch")
    act = get_activation(name, **params)
    # includes the kinks themselves: the derivative there must follow torch's choice
    z = np.concatenate([GRID, [-40.0, -20.0, 20.0, 40.0], act.kinks]).astype(dtype)
    t = torch.tensor(z, requires_grad=True)
    out = _torch_fn(name, params)(t)
    (grad,) = torch.autograd.grad(out.sum(), t)
    # torch computes e.g. sigmoid' as s(1 - s) and tanh' as 1 - tanh^2, exact only to an
    # absolute eps (0 instead of 4e-18 at z = 40); the tails' relative accuracy is held
    # against mpmath above. So: a few eps, relative and absolute.
    tol = 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(act.value(z), out.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(act.derivative(z), grad.numpy(), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- large |z|, dtypes

BIG = [1000.0, 1e30]
# Limits derived by hand: (value at -big, value at +big or None for "= z", σ'(-big), σ'(+big))
LIMITS = {
    "identity": ("z", "z", 1, 1), "sigmoid": (0, 1, 0, 0), "tanh": (-1, 1, 0, 0),
    "relu": (0, "z", 0, 1), "leaky_relu": ("0.01z", "z", 0.01, 1), "elu": (-1, "z", 0, 1),
    "softplus": (0, "z", 0, 1), "gelu": (0, "z", 0, 1), "gelu_tanh": (0, "z", 0, 1),
    "silu": (0, "z", 0, 1), "swish": (0, "z", 0, 1), "softsign": (-1, 1, 0, 0),
    "hard_tanh": (-1, 1, 0, 0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_large_inputs_are_stable(name, dtype):
    act = ACTIVATIONS[name]
    lo_v, hi_v, lo_d, hi_d = LIMITS[name]
    for big in BIG:
        z = np.array([-big, big], dtype=dtype)
        with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise",
                                                    divide="raise"):
            warnings.simplefilter("error")
            v, d = act.value(z), act.derivative(z)
        assert v.dtype == dtype and d.dtype == dtype
        want_v = [float(z[0]) if lo_v == "z" else 0.01 * float(z[0]) if lo_v == "0.01z"
                  else lo_v, float(z[1]) if hi_v == "z" else hi_v]
        # softsign approaches ±1 only as 1/|z|; 1e3 leaves 1e-3
        rtol = 2e-3 if name == "softsign" and big == 1000.0 else 1e-6
        np.testing.assert_allclose(v, want_v, rtol=rtol, atol=1e-30)
        np.testing.assert_allclose(d, [lo_d, hi_d], rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_tail_derivatives_keep_relative_accuracy(name):
    """Where σ' is tiny but representable it is still right to many digits (not just 0):
    the hand-derived asymptotes sech²z ≈ 4e^{-2|z|}, sigmoid'(z) ≈ e^{-|z|}."""
    z = np.array([-30.0, 30.0])
    d = ACTIVATIONS[name].derivative(z)
    if name == "tanh":
        np.testing.assert_allclose(d, 4 * np.exp(-60.0), rtol=1e-12)
    elif name == "sigmoid":
        np.testing.assert_allclose(d, np.exp(-30.0), rtol=1e-12)
    elif name == "softplus":
        np.testing.assert_allclose(d[0], np.exp(-30.0), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_shape_and_dtype_preserved(name, dtype):
    act = ACTIVATIONS[name]
    for shape in [(), (0,), (2, 3, 4)]:
        z = np.full(shape, 0.3, dtype=dtype)
        v, d = act.value(z), act.derivative(z)
        assert isinstance(v, np.ndarray) and isinstance(d, np.ndarray)
        assert v.shape == shape and d.shape == shape
        assert v.dtype == dtype and d.dtype == dtype, (v.dtype, d.dtype)


def test_integer_input_becomes_float64():
    v = ACTIVATIONS["tanh"].value(np.array([0, 1, 2]))
    assert v.dtype == np.float64
    np.testing.assert_allclose(v, np.tanh([0.0, 1.0, 2.0]))


def test_to_dict_and_doc():
    assert get_activation("leaky_relu", alpha=0.1).to_dict() == {"type": "leaky_relu",
                                                                 "alpha": 0.1}
    assert ACTIVATIONS["tanh"].to_dict() == {"type": "tanh"}
    for spec in ACTIVATIONS.values():
        assert spec.doc and "\n" not in spec.doc
    assert set(ACTIVATION_PARAMS) == {"leaky_relu", "elu", "hard_tanh"}


# --------------------------------------------------------------------------- bad calls

BAD = [
    (("tahn",), {}, r"activation name 'tahn' is not known; did you mean 'tanh'\? valid names: identity, sigmoid"),
    (("reLU",), {}, r"activation name 'reLU' is not known; did you mean 'relu'\?"),
    ((3,), {}, r"activation name 3 is not known; valid names:"),
    (("tanh",), {"alpha": 0.1}, r"activation 'tanh' takes no parameters; got alpha=0.1"),
    (("leaky_relu",), {"beta": 2}, r"activation 'leaky_relu' takes parameters alpha; got unknown beta=2"),
    (("leaky_relu",), {"alpha": "0.1"}, r"alpha of activation 'leaky_relu' must be a real number; got '0.1'"),
    (("leaky_relu",), {"alpha": True}, r"alpha of activation 'leaky_relu' must be a real number; got True"),
    (("leaky_relu",), {"alpha": -0.1}, r"alpha of activation 'leaky_relu' must be >= 0; got -0.1"),
    (("elu",), {"alpha": 0}, r"alpha of activation 'elu' must be > 0; got 0.0"),
    (("elu",), {"alpha": math.inf}, r"alpha of activation 'elu' must be finite; got inf"),
    (("hard_tanh",), {"min_val": 1.0, "max_val": -1.0},
     r"min_val of activation 'hard_tanh' must be less than max_val; got min_val=1.0, max_val=-1.0"),
]


@pytest.mark.parametrize("args, kwargs, message", BAD)
def test_bad_calls(args, kwargs, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        get_activation(*args, **kwargs)
    assert isinstance(info.value, GradcheckError)


def test_bad_input_array():
    with pytest.raises(ConfigurationError, match=r"z must hold real or complex numbers"):
        ACTIVATIONS["tanh"].value(np.array(["a"]))
