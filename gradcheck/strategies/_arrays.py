r"""Activations from the table, and arrays of controlled magnitude kept off their kinks.

Why a distance from the kinks
-----------------------------
A finite difference straddling a kink mixes the two one-sided slopes. The differentiator
(:mod:`gradcheck.numdiff`) first differences element :math:`x_j` with nodes
:math:`-2h \dots 3h`, :math:`h \approx \tfrac12 \varepsilon^{1/6} \max(|x_j|, 1)`, so a kink
farther than :math:`3h` from every value is never inside its first stencil. The default
distance is

.. math:: \operatorname{kink\_distance} = 4\,\varepsilon^{1/6} \max(1, \text{magnitude})

(about :math:`2.7 \times 3h`): :math:`9.8 \times 10^{-3}` in float64 and :math:`0.28` in
float32 for values of magnitude up to 1. It concerns the values themselves, i.e. the
inputs of the activation; a kink reached through a convolution is the checker's business.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from gradcheck._errors import ConfigurationError
from gradcheck._validate import is_int, is_real
from gradcheck.ops.activations import (
    ACTIVATION_PARAMS,
    ACTIVATIONS,
    ActivationSpec,
    get_activation,
)
from gradcheck.strategies._validate import (
    check_dtype,
    check_optional_bool,
    check_real,
    check_subset,
)

__all__ = ["activations", "arrays", "kink_distance", "push_off_kinks"]


def kink_distance(dtype="float64", magnitude: float = 1.0) -> float:
    r"""The default distance :func:`arrays` keeps from kinks: :math:`4\varepsilon^{1/6}\max(1, m)`.

    Examples
    --------
    >>> from gradcheck.strategies import kink_distance
    >>> round(kink_distance("float64"), 4), round(kink_distance("float32"), 3)
    (0.0098, 0.281)
    """
    dt = check_dtype(dtype)
    if isinstance(dt, st.SearchStrategy):
        raise ConfigurationError(f"dtype must be float64 or float32 here; got {dtype!r}")
    magnitude = check_real(magnitude, "magnitude", positive=True)
    return 4.0 * float(np.finfo(dt).eps) ** (1.0 / 6.0) * max(1.0, magnitude)


def _kinks_of(away_from) -> tuple[float, ...]:
    if away_from is None:
        return ()
    if isinstance(away_from, ActivationSpec):
        return tuple(float(k) for k in away_from.kinks)
    if is_real(away_from):
        away_from = (away_from,)
    if isinstance(away_from, (list, tuple)) and all(is_real(k) and np.isfinite(k)
                                                    for k in away_from):
        return tuple(float(k) for k in away_from)
    raise ConfigurationError(
        f"away_from must be None, an ActivationSpec (e.g. ACTIVATIONS['relu']) or a list "
        f"of finite kink positions; got {away_from!r}")


def push_off_kinks(values: np.ndarray, kinks, distance: float) -> np.ndarray:
    """Move every value closer than ``distance`` to a kink to the nearest point that is not.

    Candidates are ``kink ± 1.25 * distance`` (the margin survives rounding to float32);
    a value takes the candidate nearest to it among those at least ``distance`` from every
    kink. Values already far enough are unchanged. Works in float64, returns float64.
    """
    v = np.asarray(values, dtype=np.float64)
    if not kinks or distance <= 0:
        return v.copy()
    k = np.asarray(kinks, dtype=np.float64)
    near = np.min(np.abs(v[..., None] - k), axis=-1) < distance
    if not near.any():
        return v.copy()
    cand = np.concatenate([k - 1.25 * distance, k + 1.25 * distance])
    ok = np.min(np.abs(cand[:, None] - k[None, :]), axis=1) >= distance
    cand = cand[ok]  # never empty: min(k) - 1.25 d and max(k) + 1.25 d always qualify
    out = v.copy()
    idx = np.argmin(np.abs(v[near][:, None] - cand[None, :]), axis=1)
    out[near] = cand[idx]
    return out


def _shape_strategy(shape):
    if isinstance(shape, st.SearchStrategy):
        return shape
    if is_int(shape) and shape >= 0:
        return st.just((int(shape),))
    if isinstance(shape, (tuple, list)) and all(is_int(n) and n >= 0 for n in shape):
        return st.just(tuple(int(n) for n in shape))
    raise ConfigurationError(
        f"shape must be an int >= 0, a tuple of them, or a strategy of tuples; got {shape!r}")


def arrays(shape, *, dtype="float64", magnitude: float = 1.0, away_from=None,
           distance: float | None = None) -> st.SearchStrategy[np.ndarray]:
    r"""Arrays of ``dtype`` with values in ``[-magnitude, magnitude]``, optionally off kinks.

    Drawn from one integer seed (shrinking to 0): ``magnitude *
    numpy.random.default_rng(seed).uniform(-1, 1, shape)``. With ``away_from``, values
    closer than ``distance`` to a kink are moved to ``kink ± 1.25 distance``, on the side
    nearest to them that is clear of every kink (so they may land just outside
    ``[-magnitude, magnitude]``).

    Parameters
    ----------
    shape : int, tuple of int, or a strategy of tuples
    dtype : "float64", "float32", a NumPy dtype, or a strategy of those
    magnitude : float
        Largest ``|value|`` before kinks are avoided, > 0.
    away_from : ActivationSpec or sequence of float, optional
        An activation from the table (its ``kinks``) or kink positions.
    distance : float, optional
        Smallest distance kept from a kink, > 0; defaults to
        :func:`kink_distance` of the dtype and magnitude (see the module notes).

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import given, settings
    >>> from gradcheck.ops.activations import ACTIVATIONS
    >>> from gradcheck.strategies import arrays, kink_distance
    >>> @settings(max_examples=20, deadline=None, database=None)
    ... @given(arrays((3, 4), dtype="float32", away_from=ACTIVATIONS["hard_tanh"]))
    ... def test_off_the_kinks(a):
    ...     gap = np.min(np.abs(a[..., None] - np.array([-1.0, 1.0])))
    ...     assert a.dtype == np.float32 and gap >= kink_distance("float32")
    >>> test_off_the_kinks()
    """
    shapes = _shape_strategy(shape)
    dt = check_dtype(dtype)
    magnitude = check_real(magnitude, "magnitude", positive=True)
    kinks = _kinks_of(away_from)
    distance = check_real(distance, "distance", positive=True, allow_none=True)
    if distance is not None and not kinks:
        raise ConfigurationError(
            f"distance={distance!r} needs away_from (the kinks to keep away from); got "
            f"away_from={away_from!r}")
    dtypes = (dt.map(lambda d: check_dtype(d, "a dtype drawn from dtype"))
              if isinstance(dt, st.SearchStrategy) else st.just(dt))

    @st.composite
    def draw_array(draw):
        shp, d = draw(shapes), draw(dtypes)
        seed = draw(st.integers(0, 2**32 - 1))
        values = magnitude * np.random.default_rng(seed).uniform(-1.0, 1.0, shp)
        if kinks:
            gap = distance if distance is not None else kink_distance(d, magnitude)
            values = push_off_kinks(values, kinks, gap)
        return values.astype(d)

    return draw_array()


# --------------------------------------------------------------------------- activations

#: Names whose kinks depend on a parameter (none at alpha = 1).
_ALPHA_KINKED = ("leaky_relu", "elu")
_ALWAYS_KINKED = ("relu", "hard_tanh")


def _hundredths(lo: int, hi: int, *, exclude=None):
    s = st.integers(lo, hi)
    if exclude is not None:
        s = s.filter(lambda i: i != exclude)
    return s.map(lambda i: i / 100)


def activations(*, names=None, kinks: bool | None = None, parameters: bool = True
                ) -> st.SearchStrategy[ActivationSpec]:
    r"""Activations from the table (:data:`gradcheck.ops.activations.ACTIVATIONS`).

    Each draw is an :class:`~gradcheck.ops.activations.ActivationSpec`: ``value``,
    ``derivative``, ``kinks`` and ``to_dict()`` (its ``[[layer]]`` form). Draws shrink
    towards ``identity``.

    Parameters
    ----------
    names : sequence of str, optional
        Table names to draw from (default: all of them).
    kinks : bool, optional
        True: only activations with kinks (``relu``, ``hard_tanh``, ``leaky_relu`` and
        ``elu`` with ``alpha != 1``); False: only smooth ones (``elu`` only with
        ``alpha = 1``); None: any.
    parameters : bool
        Draw ``alpha``, ``min_val``/``max_val`` (in steps of 0.01: ``alpha`` of
        ``leaky_relu`` in [0, 3], of ``elu`` in (0, 3], ``hard_tanh`` bounds in [-2, 4]);
        False keeps the table's defaults.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from gradcheck.strategies import activations
    >>> @settings(max_examples=20, deadline=None, database=None)
    ... @given(activations(kinks=True))
    ... def test_kinked(act):
    ...     assert act.kinks and act.to_dict()["type"] == act.name
    >>> test_kinked()
    """
    names = tuple(ACTIVATIONS) if names is None else check_subset(names, "names",
                                                                   tuple(ACTIVATIONS))
    kinks = check_optional_bool(kinks, "kinks")
    if not isinstance(parameters, bool):
        raise ConfigurationError(f"parameters must be True or False; got {parameters!r}")
    allowed = []
    for name in names:
        kinked_by_default = bool(ACTIVATIONS[name].kinks)
        if kinks is None:
            allowed.append(name)
        elif kinks:
            if name in _ALWAYS_KINKED or kinked_by_default or (
                    parameters and name in _ALPHA_KINKED):
                allowed.append(name)
        elif name not in _ALWAYS_KINKED and (name == "elu" or not kinked_by_default):
            allowed.append(name)
    if not allowed:
        raise ConfigurationError(
            f"no activation of names={list(names)!r} has kinks={kinks!r}"
            f"{'' if parameters else ' with parameters=False'}; valid names with kinks: "
            f"relu, hard_tanh, leaky_relu, elu (the last two need parameters=True); "
            f"without: identity, sigmoid, tanh, softplus, gelu, ...")

    @st.composite
    def draw_activation(draw):
        name = draw(st.sampled_from(allowed))
        if name not in ACTIVATION_PARAMS:
            return ACTIVATIONS[name]
        if name == "elu" and kinks is False:
            return get_activation("elu", alpha=1.0)
        if not parameters:
            return ACTIVATIONS[name]
        one = 100 if kinks else None  # alpha = 1 has no kink
        if name == "leaky_relu":
            return get_activation(name, alpha=draw(_hundredths(0, 300, exclude=one)))
        if name == "elu":
            return get_activation(name, alpha=draw(_hundredths(1, 300, exclude=one)))
        lo = draw(_hundredths(-200, 100))
        return get_activation(name, min_val=lo, max_val=lo + draw(_hundredths(10, 300)))

    return draw_activation()
