"""Analytic gradients equal numerical ones, through the checker, on drawn cases.

The analytic side is the library's backward (``conv_backward`` and the activation
table's derivative); the numerical side is the checker's own differentiator. A right
gradient must pass: on random configurations x activations x dtypes, and on inputs placed
right next to an activation's kinks.
"""

from __future__ import annotations

import numpy as np
from _prop_support import note_case, note_spec
from hypothesis import assume, given, note
from hypothesis import strategies as st

from gradcheck import check_layer, check_vjp
from gradcheck.ops.layers import Activation
from gradcheck.strategies import activations, conv_cases
from gradcheck.strategies._arrays import push_off_kinks

DTYPES = st.sampled_from(["float64", "float32"])


@given(conv_cases(dtype=DTYPES), activations())
def test_conv_activation_gradients_match_numerical(case, act):
    """act(conv(x, w, b)): the seed's backward (delta * sigma'(z), full convolution with
    rot180(w), valid correlation for w, sum for b) passes check_vjp for every argument."""
    note_case(case, activation=act)
    c = case.config

    def f(x, w, *b):
        return act.value(c.forward(x, w, *b))

    def f_vjp(g, x, w, *b):
        delta = g * act.derivative(c.forward(x, w, *b))
        grads = c.backward(delta, x, w)
        return grads if c.bias else grads[:2]

    report = check_vjp(f, f_vjp, case.args, argnames=c.as_function()[2])
    assert report.passed, str(report)


@st.composite
def _near_kinks(draw):
    """An activation with kinks and inputs each placed 16 ulps to 1e-1 from one of them
    (never further than a quarter of the gap between two kinks), on either side."""
    act = draw(activations(kinks=True))
    dtype = np.dtype(draw(DTYPES))
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kinks = np.array(act.kinks, dtype=np.float64)
    gap = np.min(np.diff(np.sort(kinks))) if kinks.size > 1 else np.inf
    top = np.log10(min(1e-1, gap / 4))
    at = rng.choice(kinks, n)
    bottom = np.log10(16 * np.spacing(np.maximum(np.abs(at), 1.0).astype(dtype)))
    offsets = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(bottom, top)
    x = (at + offsets).astype(dtype)
    assume(not np.any(np.isin(x.astype(np.float64), kinks)))
    return act, x.reshape(1, n), seed


@given(_near_kinks())
def test_activation_next_to_its_kinks_is_never_flagged(drawn):
    """An activation layer's right derivative passes with every input within 1e-1 (down
    to 16 ulps) of a kink."""
    act, x, seed = drawn
    note(f"activation {act.to_dict()!r}, x = {x.tolist()!r} ({x.dtype}), seed {seed}")
    note_spec({"input": {"shape": list(x.shape), "dtype": x.dtype.name, "loc": 0.0},
               "layer": [act.to_dict()], "check": {"mode": "full"}},
              header="the layer as a spec (the CLI draws its own values)")
    layer = Activation(act.name, **dict(act.params))
    report = check_layer(layer, x)
    assert report.passed, str(report)


#: Closest distance of a pre-activation to a kink in test_conv_activation_near_kinks...:
#: well inside the differentiator's first stencil (3h ~ 4e-3 in float64, 1e-1 in float32,
#: for values of order one).
NEAREST = {np.dtype(np.float64): 1e-3, np.dtype(np.float32): 3e-3}


def near_kink_function(case, act, seed: int, all_near: bool):
    """``(f, f_vjp)`` of ``act(conv(x, w, b) + c)`` where the constant ``c`` puts the
    pre-activations at the case's point 1e-3 (3e-3 in float32) to 1e-1 from a kink, on
    either side: all of them, or one with the rest at least 0.5 from every kink."""
    c, dtype = case.config, case.x.dtype
    rng = np.random.default_rng(seed)
    z0 = c.forward(*case.args).astype(np.float64)
    kinks = np.array(act.kinks)
    gap = np.min(np.diff(np.sort(kinks))) if kinks.size > 1 else np.inf
    top = np.log10(min(1e-1, gap / 4))
    offsets = rng.choice([-1.0, 1.0], z0.shape) * 10.0 ** rng.uniform(
        np.log10(NEAREST[dtype]), top, z0.shape)
    near = rng.choice(kinks, z0.shape) + offsets
    if all_near:
        target = near
    else:
        target = push_off_kinks(rng.uniform(-2.0, 2.0, z0.shape), tuple(kinks), 0.5)
        j = int(rng.integers(z0.size))
        target.flat[j] = near.flat[j]
    shift = (target - z0).astype(dtype)

    def f(x, w, *b):
        return act.value(c.forward(x, w, *b) + shift)

    def f_vjp(g, x, w, *b):
        grads = c.backward(g * act.derivative(c.forward(x, w, *b) + shift), x, w)
        return grads if c.bias else grads[:2]

    return f, f_vjp


@given(conv_cases(dtype=DTYPES), activations(kinks=True), st.integers(0, 2**32 - 1),
       st.booleans())
def test_conv_activation_near_kinks_is_never_flagged(case, act, seed, all_near):
    """act(conv(x, w, b) + c) with pre-activations placed next to kinks (see
    near_kink_function), one or all of them: the right backward passes."""
    note_case(case, activation=act, extra=f"near_kink_function(case, act, seed={seed}, "
                                          f"all_near={all_near})")
    f, f_vjp = near_kink_function(case, act, seed, all_near)
    report = check_vjp(f, f_vjp, case.args, argnames=case.config.as_function()[2])
    assert report.passed, str(report)
