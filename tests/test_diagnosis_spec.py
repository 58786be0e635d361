"""The diagnosis of a slip in a ``type = "python"`` layer, checked from a spec: in a
network, behind built-in layers and a loss, the same cause as on the bare layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradcheck.spec import check_spec, loads_spec

LAYERS = Path(__file__).with_name("corpus_python_layers.py")

CASES = [
    # (python layer, its params, input shape, layers after it, loss, expected cause)
    ("LayerNormMeanTermMissing", "{ gamma = [8], beta = [8] }", [6, 8],
     '[[layer]]\ntype = "dense"\nout_features = 3\n', "mse", "missing_term_constant"),
    ("SoftmaxRankOneMissing", "{}", [5, 6], "", "weighted_sum", "missing_term_softmax"),
    ("ReflectPadCenterOnly", "{}", [1, 2, 10, 10],
     '[[layer]]\ntype = "tanh"\n', "weighted_sum", "position_mask"),
    ("BatchNormEpsMissing", "{ gamma = [3], beta = [3] }", [5, 3, 4, 4], "", None,
     "scaled_per_slice"),
    ("CrossEntropyIgnoresG", "{}", [16, 5], "", "weighted_sum", "nonlinear_in_cotangent"),
]


@pytest.mark.parametrize("layer, params, shape, after, loss, cause", CASES,
                         ids=[c[0] for c in CASES])
def test_a_python_layer_slip_is_named_in_a_network(layer, params, shape, after, loss, cause):
    text = (f'[input]\nshape = {shape}\n\n[[layer]]\ntype = "python"\n'
            f'target = "{LAYERS.as_posix()}:{layer}"\nparams = {params}\n\n{after}\n'
            + (f'[loss]\ntype = "{loss}"\n' if loss else "") + '[check]\nmode = "full"\n')
    report = check_spec(loads_spec(text, source=f"{layer}.toml"))
    assert not report.passed
    d = report["input"].diagnosis
    assert d.cause == cause, d.message
    # the slips are in the input's gradient only: the parameters' gradients are right
    assert [a.name for a in report.failures] == ["input"], str(report)
