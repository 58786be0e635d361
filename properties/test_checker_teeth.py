"""The checker has teeth: deliberately wrong backward passes are flagged, right ones are not.

For a drawn configuration, a mutant (``_prop_mutants.py``) returns what a buggy layer would
return. A mutant is only held against the checker where it truly changes the gradient:
``assume`` keeps the examples in which some argument's wrong gradient differs from the
right one, in some element, by more than ``VISIBLE[dtype]`` times the right gradient's
largest magnitude (far above rounding and above the checker's measured tolerance; see
``_prop_support.VISIBLE``). Then every argument whose gradient is visibly wrong must fail,
and every argument the mutant left alone must pass -- in the same report.
"""

from __future__ import annotations

import numpy as np
from _prop_mutants import CONV_MUTANTS, one_element_perturbed, scaled
from _prop_support import VISIBLE, note_case
from hypothesis import assume, event, given
from hypothesis import strategies as st

from gradcheck import check_vjp
from gradcheck.ops.activations import ACTIVATIONS
from gradcheck.strategies import activations, conv_cases, conv_configs

DTYPES = st.sampled_from(["float64", "float32"])
SEEDS = st.integers(0, 2**32 - 1)


def _right(c, x, w, g):
    gx, gw, gb = c.backward(g, x, w)
    return {"x": gx, "w": gw, **({"b": gb} if c.bias else {})}


def _visible(wrong, right) -> bool:
    limit = VISIBLE[np.dtype(right.dtype)] * float(np.max(np.abs(right)))
    return bool(np.max(np.abs(wrong.astype(np.float64) - right.astype(np.float64))) > limit)


def _assert_flagged(case, mutant, *, f=None, right=None, label):
    """Run the check with ``mutant(g) -> {name: wrong}`` and assert the verdicts."""
    c = case.config
    f_plain, _, names = c.as_function()
    f = f or f_plain
    right = right or (lambda g, *args: _right(c, args[0], args[1], g))
    wrong = mutant(case.grad_y)
    assume(wrong is not None)
    base = right(case.grad_y, *case.args)
    visible = {n for n in wrong if _visible(wrong[n], base[n])}
    assume(visible)

    def f_vjp(g, *args):
        grads = {**right(g, *args), **mutant(g)}
        return tuple(grads[n] for n in names)

    report = check_vjp(f, f_vjp, case.args, argnames=names, cotangent=case.grad_y)
    for n in names:
        if n in visible:
            assert not report[n].passed, (
                f"{label}: the wrong gradient of {n} passed\n{report}")
            cause = report[n].diagnosis.cause if report[n].diagnosis else None
            event(f"{label} diagnosed as {cause}")
        elif n not in wrong:
            assert report[n].passed, f"{label}: the right gradient of {n} failed\n{report}"


def _conv_mutant_test(name, configs):
    @given(conv_cases(configs=configs, dtype=DTYPES), SEEDS)
    def test(case, seed):
        note_case(case, extra=f"mutant {name}, rng seed {seed}")
        c, x, w = case.config, case.x, case.w
        _assert_flagged(case, lambda g: CONV_MUTANTS[name](c, x, w, g,
                                                           np.random.default_rng(seed)),
                        label=name)

    test.__name__ = f"test_checker_flags_{name}"
    test.__doc__ = f"A backward pass with {name.replace('_', ' ')} is flagged."
    return test


test_checker_flags_kernel_not_rotated = _conv_mutant_test(
    "kernel_not_rotated", conv_configs())
test_checker_flags_stride_zeros_missing = _conv_mutant_test(
    "stride_zeros_missing",
    conv_configs(paddings=("int", "tuple", "pairs", "valid", "full")).filter(
        lambda c: max(c.geometry.stride) > 1))
test_checker_flags_padding_offset = _conv_mutant_test("padding_offset", conv_configs())
test_checker_flags_wrong_channel_axis = _conv_mutant_test(
    "wrong_channel_axis",
    conv_configs(min_channels=2).filter(
        lambda c: c.w_shape[0] // c.groups == c.w_shape[1] > 1))


@given(conv_cases(dtype=DTYPES), SEEDS)
def test_checker_flags_a_scaled_gradient(case, seed):
    """One argument's gradient times 2, 1/2, -1 or 1 +- 1% is flagged."""
    note_case(case, extra=f"mutant scaled, rng seed {seed}")
    c, x, w = case.config, case.x, case.w
    _assert_flagged(case, lambda g: scaled(c, x, w, g, np.random.default_rng(seed),
                                           _right(c, x, w, g)), label="scaled")


@given(conv_cases(dtype=DTYPES), SEEDS)
def test_checker_flags_one_wrong_element(case, seed):
    """One element of one gradient off by 4 * VISIBLE of the gradient's magnitude is flagged."""
    note_case(case, extra=f"mutant one_element_perturbed, rng seed {seed}")
    c, x, w = case.config, case.x, case.w
    size = 4 * VISIBLE[case.x.dtype]
    _assert_flagged(case, lambda g: one_element_perturbed(
        c, x, w, g, np.random.default_rng(seed), _right(c, x, w, g), size=size),
        label="one_element_perturbed")


SMOOTH = activations(names=[n for n in ACTIVATIONS if n != "identity"], kinks=False)


@given(conv_cases(dtype=DTYPES), SMOOTH)
def test_checker_flags_the_derivative_taken_at_the_wrong_point(case, act):
    """conv -> activation whose backward uses sigma'(a) at the output a = sigma(z) instead
    of sigma'(z) is flagged (smooth activations: the mistake shows everywhere)."""
    note_case(case, activation=act, extra="mutant derivative_at_output")
    c = case.config

    def f(x, w, *b):
        return act.value(c.forward(x, w, *b))

    def through(g, x, w, *b, at_output):
        z = c.forward(x, w, *b)
        point = act.value(z) if at_output else z
        return _right(c, x, w, g * act.derivative(point))

    _assert_flagged(case, lambda g: through(g, *case.args, at_output=True), f=f,
                    right=lambda g, *args: through(g, *args, at_output=False),
                    label="derivative_at_output")
