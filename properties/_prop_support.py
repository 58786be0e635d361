"""Shared pieces of the property suite: reproduction notes and rounding-aware comparisons.

Reproduction: every property calls :func:`note_case` or :func:`note_spec` with what it
drew. Hypothesis prints these notes under a failing example (after shrinking), next to
the ``@reproduce_failure`` blob, so a failure says how to rerun it by hand: the Python
line that rebuilds the exact arrays from their seed, and the configuration as a spec
document that ``gradcheck check`` accepts.
"""

from __future__ import annotations

import numpy as np
from hypothesis import note

from gradcheck.spec import parse_spec

#: A wrong gradient differing from the right one by more than this fraction of the right
#: one's largest magnitude, in some element, must be flagged. The checker's own tolerance
#: on these functions measured at most 2e-13 (float64) and 4e-5 (float32) of that
#: magnitude, and its documentation promises to catch 1e-5 (float64) and 2e-2 (float32)
#: relative errors in one element; these sit well above the first and at or below the
#: second.
VISIBLE = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 5e-3}


def spec_toml(document) -> str:
    """The document in the canonical TOML form that ``gradcheck check`` reads."""
    return parse_spec(document, source="<property>").to_toml()


def note_spec(document, *, header="as a spec") -> None:
    note(f"reproduce {header}: save as repro.toml and run `gradcheck check repro.toml`\n"
         f"{spec_toml(document)}")


def note_case(case, *, activation=None, extra: str = "") -> None:
    """Note the Python line that rebuilds ``case`` and its configuration as a spec."""
    c = case.config
    note("reproduce the arrays: from gradcheck.strategies import ConvConfig; case = "
         f"{c!r}.make_case({case.seed}, dtype={case.x.dtype.name!r})"
         + (f"; activation: {activation.to_dict()!r}" if activation is not None else "")
         + (f"; {extra}" if extra else ""))
    note_spec(c.spec_document(activation=activation, dtype=case.x.dtype, seed=case.seed),
              header="the configuration as a spec (the CLI draws its own values)")


def rounding_bound(scale, terms: int, dtype) -> np.ndarray:
    """``4 * terms * eps * scale``: a bound on the rounding of a sum of ``terms`` products
    whose absolute values sum to ``scale`` (each product and addition rounds once)."""
    eps = float(np.finfo(dtype).eps)
    return 4.0 * max(terms, 1) * eps * np.asarray(scale, dtype=np.float64) + 1e-300


def assert_close(actual, expected, bound, what: str) -> None:
    """``|actual - expected| <= bound`` elementwise, with a message naming the worst element."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    excess = np.abs(actual - expected) - bound
    if excess.size and excess.max() > 0:
        j = np.unravel_index(int(np.argmax(excess)), actual.shape)
        raise AssertionError(
            f"{what}: at {j} {actual[j]!r} != {expected[j]!r} (|diff| "
            f"{abs(actual[j] - expected[j]):.3g} > bound {np.broadcast_to(bound, actual.shape)[j]:.3g})")


def terms_per_output(config) -> int:
    """Products summed into one output of the convolution: ``C_in/groups * prod(kernel)``."""
    return int(np.prod(config.w_shape[1:]))


def terms_per_input(config) -> int:
    """Products summed into one input-gradient entry: at most ``C_out/groups * prod(kernel)``."""
    return int(config.w_shape[0] // config.groups * np.prod(config.w_shape[2:]))
