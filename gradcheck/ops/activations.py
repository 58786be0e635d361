r"""Activation functions as a table: value, derivative, and where the kinks are.

Every entry of :data:`ACTIVATIONS` is an :class:`ActivationSpec`: the value
:math:`\sigma(z)`, its derivative :math:`\sigma'(z)` *as a function of the input* ``z``
(the seed's :math:`\sigma'(z^l)`, not of the output), the points where :math:`\sigma'`
jumps (a finite difference straddling one of them is meaningless), and a one-line formula.

Numerics
--------
* Large :math:`|z|` never overflows and never produces NaN, in float32 and float64:
  exponentials are only ever taken of :math:`-|z|` (``sigmoid``, ``softplus``, ``silu``,
  the ``tanh`` derivative), the Gaussian of ``gelu`` is evaluated through ``erfc`` and
  with its argument clamped where it has underflowed anyway, and ``gelu_tanh`` is written
  as :math:`z\,\operatorname{sigmoid}(2u)`. Derivatives in the tails are accurate to
  relative precision, e.g. :math:`\tanh'(z) = 4e^{-2|z|}/(1+e^{-2|z|})^2` rather than
  :math:`1-\tanh^2 z`, which is 0 from :math:`|z| \approx 19` on.
* float32 stays float32, float64 stays float64 (constants are Python floats).
* Complex input: every branch is selected on the *real part* and ``|z|`` is replaced by
  its analytic continuation :math:`\pm z`, so away from the kinks ``value(z + ih)`` equals
  :math:`\sigma(z) + ih\,\sigma'(z) + O(h^2)`: complex-step differentiation works through
  every entry (the field ``complex_safe`` says so per entry; all are True today). At a kink
  complex step silently returns one one-sided derivative, so callers must still look at
  ``kinks``.
* A complex-step input has an imaginary part of a few ulps of the real one. Where every
  :math:`|\operatorname{Im} z| \le 2^{-27}`, ``tanh`` and ``sigmoid`` return
  :math:`\sigma(a) + ib\,\sigma'(a)` (:math:`z = a + ib`) from real arithmetic, several
  times faster than NumPy's complex functions. That *is* the continuation, to rounding:
  the series is :math:`\sigma(a) - \tfrac{b^2}{2}\sigma''(a) + \dots` in the real part
  and :math:`b\sigma'(a) - \tfrac{b^3}{6}\sigma^{(3)}(a) + \dots` in the imaginary
  part, and for both functions :math:`|\sigma''/\sigma| \le 2` and
  :math:`|\sigma^{(3)}/\sigma'| \le 4`, so what is dropped is at most :math:`b^2 \le
  2^{-54}` relative to what is kept: below float64's rounding. Larger imaginary parts
  take NumPy's complex functions.

Derivative at a kink
--------------------
At a kink the derivative takes the value PyTorch's backward uses: ``relu`` 0,
``leaky_relu`` ``alpha`` and ``elu`` ``alpha`` (the left branch), ``hard_tanh`` 0 at both
ends (the outside branch).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._record import NamedTuple
from gradcheck._validate import is_real
from gradcheck.ops._geometry import as_float_array

__all__ = ["ActivationSpec", "ACTIVATIONS", "ACTIVATION_PARAMS", "get_activation"]

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
#: Beyond this |z| the Gaussian factors of gelu have underflowed in float32 and float64.
_GELU_CLAMP = 40.0


class ActivationSpec(NamedTuple):
    """One row of the activation table.

    ``value`` and ``derivative`` map an array of inputs ``z`` to an array of the same
    shape and dtype; ``kinks`` are the inputs where ``derivative`` jumps.
    """

    name: str
    value: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]
    kinks: tuple[float, ...]
    doc: str
    complex_safe: bool = True
    params: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict:
        """``{"type": name, **params}``, the layer-spec form of this activation."""
        return {"type": self.name, **dict(self.params)}


# --------------------------------------------------------------------------- helpers


def _elementwise(fn):
    """Wrap ``fn`` so it accepts array-likes and always returns an ndarray."""

    def wrapped(z):
        return np.asarray(fn(as_float_array(z, "z")))

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _abs(z):
    """|z| for real z; its analytic continuation ±z (sign of the real part) for complex."""
    return np.where(z.real >= 0, z, -z)


#: Largest |Im z| for which a complex input is evaluated to first order (module notes).
FIRST_ORDER_IMAG = 2.0**-27


def _first_order(z, value, slope):
    """``value(a) + i slope(a, b)`` (``slope(a, b) = b value'(a)``) for complex ``z = a +
    ib`` whose every ``|b|`` is at most :data:`FIRST_ORDER_IMAG` (the continuation to
    rounding, see the module notes); None otherwise."""
    if z.dtype.kind != "c" or z.size == 0:
        return None
    b = z.imag
    if not np.max(np.abs(b)) <= FIRST_ORDER_IMAG:
        return None
    a = z.real
    out = np.empty(z.shape, dtype=z.dtype)
    out.real = value(a)
    out.imag = slope(a, b)
    return out


def _tanh_slope(a, b):
    """``b tanh'(a) = b / cosh(a)^2`` (0 where cosh overflows, as the true value has
    underflowed there)."""
    with np.errstate(over="ignore"):
        c = np.cosh(a)
        return b / (c * c)


def _sigmoid(z):
    e = np.exp(-_abs(z))  # in (0, 1]: never overflows
    return np.where(z.real >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_prime(z):
    e = np.exp(-_abs(z))  # sigma' is even: e/(1+e)^2 with e = exp(-|z|)
    return e / ((1 + e) * (1 + e))


def _log1p(w):
    """log(1 + w); for complex w built from real log1p (NumPy's complex log1p loses the
    real part's relative accuracy for tiny |w|, e.g. 1e-3 at |w| = 1e-13)."""
    if w.dtype.kind != "c":
        return np.log1p(w)
    a, b = w.real, w.imag
    # |1 + w|^2 = 1 + (2a + a^2 + b^2), arg(1 + w) = atan2(b, 1 + a)
    return 0.5 * np.log1p(a * (2 + a) + b * b) + 1j * np.arctan2(b, 1 + a)


def _clamp(z, bound):
    return np.where(z.real > bound, bound, np.where(z.real < -bound, -bound, z))


def _gelu_u(z):
    return _GELU_C * (z + _GELU_A * z * z * z)


# --------------------------------------------------------------------------- the table
# Each pair: value, derivative (of the input z). Grouped as smooth / piecewise.

# -- smooth


def identity(z):
    return z


def identity_prime(z):
    return np.ones_like(z)


def sigmoid(z):
    fast = _first_order(z, _sigmoid, lambda a, b: b * _sigmoid_prime(a))
    return _sigmoid(z) if fast is None else fast


def sigmoid_prime(z):
    return _sigmoid_prime(z)


def tanh(z):
    fast = _first_order(z, np.tanh, _tanh_slope)
    return np.tanh(z) if fast is None else fast


def tanh_prime(z):
    e = np.exp(-2 * _abs(z))  # sech^2 z = 4 e^{-2|z|} / (1 + e^{-2|z|})^2
    return 4 * e / ((1 + e) * (1 + e))


def softplus(z):
    # log(1 + e^z) = max(z, 0) + log1p(e^{-|z|})
    return np.where(z.real >= 0, z, 0) + _log1p(np.exp(-_abs(z)))


def softplus_prime(z):
    return _sigmoid(z)


def gelu(z):
    # z * Phi(z), Phi(z) = erfc(-z / sqrt 2) / 2 (erfc keeps the left tail accurate)
    from scipy.special import erfc

    return z * (0.5 * erfc(-z * _SQRT_HALF))


def gelu_prime(z):
    from scipy.special import erfc

    zc = _clamp(z, _GELU_CLAMP)  # phi(40) has underflowed: the clamp changes nothing
    return 0.5 * erfc(-z * _SQRT_HALF) + zc * (_INV_SQRT_2PI * np.exp(-0.5 * zc * zc))


def gelu_tanh(z):
    # z (1 + tanh u) / 2 = z * sigmoid(2u); sigmoid(2u) is exactly 0 or 1 beyond the clamp
    return z * _sigmoid(2 * _gelu_u(_clamp(z, _GELU_CLAMP)))


def gelu_tanh_prime(z):
    zc = _clamp(z, _GELU_CLAMP)
    u2 = 2 * _gelu_u(zc)
    du = _GELU_C * (1 + 3 * _GELU_A * zc * zc)
    return _sigmoid(u2) + zc * (2 * _sigmoid_prime(u2) * du)


def silu(z):
    return z * _sigmoid(z)


def silu_prime(z):
    return _sigmoid(z) + z * _sigmoid_prime(z)


def softsign(z):
    return z / (1 + _abs(z))


def softsign_prime(z):
    d = 1 / (1 + _abs(z))
    return d * d


# -- piecewise (branches chosen on the real part)


def relu(z):
    return np.where(z.real > 0, z, 0)


def relu_prime(z):
    return (z.real > 0).astype(z.dtype)


# Each maker returns (value, derivative, kinks, formula) for its parameters.


def _leaky_relu(alpha):
    def leaky_relu(z):
        return np.where(z.real > 0, z, alpha * z)

    def leaky_relu_prime(z):
        return np.where(z.real > 0, 1, alpha * np.ones_like(z))

    kinks = () if alpha == 1 else (0.0,)
    return leaky_relu, leaky_relu_prime, kinks, f"z if z > 0 else {alpha!r}*z"


def _elu(alpha):
    def elu(z):
        neg = np.where(z.real > 0, 0, z)  # keeps expm1 away from large positive z
        return np.where(z.real > 0, z, alpha * np.expm1(neg))

    def elu_prime(z):
        neg = np.where(z.real > 0, 0, z)
        return np.where(z.real > 0, 1, alpha * np.exp(neg))

    kinks = () if alpha == 1 else (0.0,)
    return elu, elu_prime, kinks, f"z if z > 0 else {alpha!r}*(exp(z) - 1)"


def _hard_tanh(min_val, max_val):
    lo, hi = min_val, max_val

    def hard_tanh(z):
        return np.where(z.real < lo, lo, np.where(z.real > hi, hi, z))

    def hard_tanh_prime(z):
        return ((z.real > lo) & (z.real < hi)).astype(z.dtype)

    return hard_tanh, hard_tanh_prime, (lo, hi), f"clip(z, {lo!r}, {hi!r})"


# --------------------------------------------------------------------------- parameters


class _Param(NamedTuple):
    default: float
    check: Callable[[float], bool]
    valid: str  # what would be valid, for the message


#: Parameters of the parameterized activations: name -> {param: (default, check, valid)}.
ACTIVATION_PARAMS: Mapping[str, Mapping[str, _Param]] = MappingProxyType({
    "leaky_relu": {"alpha": _Param(0.01, lambda a: a >= 0, ">= 0")},
    "elu": {"alpha": _Param(1.0, lambda a: a > 0, "> 0")},
    "hard_tanh": {
        "min_val": _Param(-1.0, lambda a: True, "a finite real number"),
        "max_val": _Param(1.0, lambda a: True, "a finite real number"),
    },
})


_MAKERS = {"leaky_relu": _leaky_relu, "elu": _elu, "hard_tanh": _hard_tanh}


def _build(name: str, **p) -> ActivationSpec:
    """The row of the parameterized activation ``name`` at the (checked) parameters ``p``."""
    value, deriv, kinks, doc = _MAKERS[name](**p)
    return ActivationSpec(name, _elementwise(value), _elementwise(deriv), kinks, doc, True,
                          tuple(p.items()))


def _smooth(name, value, deriv, doc, kinks=()):
    return ActivationSpec(name, _elementwise(value), _elementwise(deriv), kinks, doc)


_silu = _smooth("silu", silu, silu_prime, "z * sigmoid(z)")

#: The activation table, keyed by name (parameterized entries at their defaults).
ACTIVATIONS: Mapping[str, ActivationSpec] = MappingProxyType({
    "identity": _smooth("identity", identity, identity_prime, "z"),
    "sigmoid": _smooth("sigmoid", sigmoid, sigmoid_prime, "1 / (1 + exp(-z))"),
    "tanh": _smooth("tanh", tanh, tanh_prime, "tanh(z)"),
    "relu": _smooth("relu", relu, relu_prime, "max(z, 0)", kinks=(0.0,)),
    "leaky_relu": _build("leaky_relu", alpha=0.01),
    "elu": _build("elu", alpha=1.0),
    "softplus": _smooth("softplus", softplus, softplus_prime, "log(1 + exp(z))"),
    "gelu": _smooth("gelu", gelu, gelu_prime, "z * Phi(z) = z * (1 + erf(z / sqrt(2))) / 2"),
    "gelu_tanh": _smooth("gelu_tanh", gelu_tanh, gelu_tanh_prime,
                         "z * (1 + tanh(sqrt(2/pi) * (z + 0.044715 z^3))) / 2"),
    "silu": _silu,
    "swish": _silu,
    "softsign": _smooth("softsign", softsign, softsign_prime, "z / (1 + |z|)"),
    "hard_tanh": _build("hard_tanh", min_val=-1.0, max_val=1.0),
})


def _suggest(word, choices) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices`` (ignoring case), or ``""``."""
    lowered = {c.lower(): c for c in choices}
    import difflib       # only for a misspelt name

    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1)
    return f"did you mean {lowered[close[0]]!r}? " if close else ""


def get_activation(name: str, **params) -> ActivationSpec:
    """Look up an activation by name, building parameterized ones from ``params``.

    Parameters
    ----------
    name : str
        A key of :data:`ACTIVATIONS` (``"swish"`` is ``"silu"``).
    **params
        ``alpha`` for ``leaky_relu`` (default 0.01, >= 0) and ``elu`` (default 1.0, > 0);
        ``min_val``/``max_val`` for ``hard_tanh`` (default -1, 1).

    Returns
    -------
    ActivationSpec

    Raises
    ------
    ConfigurationError
        Unknown name (the closest valid one is suggested), unknown parameter, or a
        parameter of the wrong type or out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.ops.activations import get_activation
    >>> act = get_activation("leaky_relu", alpha=0.1)
    >>> act.value(np.array([-2.0, 3.0])), act.derivative(np.array([-2.0, 3.0])), act.kinks
    (array([-0.2,  3. ]), array([0.1, 1. ]), (0.0,))
    >>> get_activation("sigmoid").value(np.array([-1000.0, 1000.0], dtype=np.float32))
    array([0., 1.], dtype=float32)
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigurationError(
            f"activation name {name!r} is not known; {_suggest(name, ACTIVATIONS)}"
            f"valid names: {', '.join(ACTIVATIONS)}"
        )
    spec = ACTIVATION_PARAMS.get(name, {})
    if not params:
        return ACTIVATIONS[name]
    unknown = [k for k in params if k not in spec]
    if unknown:
        got = ", ".join(f"{k}={params[k]!r}" for k in unknown)
        if not spec:
            raise ConfigurationError(f"activation {name!r} takes no parameters; got {got}")
        raise ConfigurationError(
            f"activation {name!r} takes parameters {', '.join(spec)}; got unknown {got}"
        )
    values = {}
    for key, param in spec.items():
        value = params.get(key, param.default)
        if not is_real(value):
            raise ConfigurationError(
                f"{key} of activation {name!r} must be a real number; got {value!r}"
            )
        value = float(value)
        if not math.isfinite(value) or not param.check(value):
            valid = param.valid if math.isfinite(value) else "finite"
            raise ConfigurationError(
                f"{key} of activation {name!r} must be {valid}; got {value!r}"
            )
        values[key] = value
    if name == "hard_tanh" and not values["min_val"] < values["max_val"]:
        raise ConfigurationError(
            f"min_val of activation 'hard_tanh' must be less than max_val; got "
            f"min_val={values['min_val']!r}, max_val={values['max_val']!r}"
        )
    return _build(name, **values)
