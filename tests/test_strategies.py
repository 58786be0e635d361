"""``gradcheck.strategies``: every bad argument is refused when the strategy is created,
with a message that names it and repeats its value; the import is optional.

What the strategies draw is checked by the property suite (``properties/test_generators.py``).
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import ConfigurationError
from gradcheck.strategies import (
    ConvConfig,
    activations,
    arrays,
    conv_cases,
    conv_configs,
    kink_distance,
    layer_stacks,
    spec_documents,
    specs,
)

NAN = float("nan")

BAD_CALLS = [
    # conv_configs: bounds
    (conv_configs, {"min_dims": 0}, r"^min_dims must be an int from 1 to 3; got 0$"),
    (conv_configs, {"max_dims": 4}, r"^max_dims must be an int from 1 to 3; got 4$"),
    (conv_configs, {"min_dims": 3, "max_dims": 2},
     r"^min_dims=3 must not exceed max_dims=2; raise max_dims or lower min_dims$"),
    (conv_configs, {"min_batch": 0}, r"^min_batch must be an int >= 1; got 0$"),
    (conv_configs, {"max_batch": True}, r"^max_batch must be an int >= 1; got True$"),
    (conv_configs, {"min_batch": 3, "max_batch": 2}, r"^min_batch=3 must not exceed max_batch=2"),
    (conv_configs, {"min_channels": 5}, r"^min_channels=5 must not exceed max_channels=4"),
    (conv_configs, {"max_channels": 2.5}, r"^max_channels must be an int >= 1; got 2\.5$"),
    (conv_configs, {"max_groups": 0}, r"^max_groups must be an int >= 1; got 0$"),
    (conv_configs, {"max_kernel": 0}, r"^max_kernel must be an int >= 1; got 0$"),
    (conv_configs, {"max_stride": "2"}, r"^max_stride must be an int >= 1; got '2'$"),
    (conv_configs, {"max_dilation": 0}, r"^max_dilation must be an int >= 1; got 0$"),
    (conv_configs, {"max_padding": -1}, r"^max_padding must be an int >= 0; got -1$"),
    (conv_configs, {"max_side": 0}, r"^max_side must be an int >= 1; got 0$"),
    (conv_configs, {"max_size": 10},
     (r"^max_size=10 is too small for max_batch=2 and max_channels=4: the smallest arrays "
      r"drawn may have 16 elements; use max_size >= 16 or lower those bounds$")),
    (conv_configs, {"paddings": "same"},
     (r"^paddings must be a non-empty list drawn from \['int', 'tuple', 'pairs', 'valid', "
      r"'same', 'full'\]; got 'same'$")),
    (conv_configs, {"paddings": []}, r"^paddings must be a non-empty list .*; got \[\]$"),
    (conv_configs, {"paddings": ["int", "zero"]},
     r"^paddings must only hold items of \[.*\]; got unknown 'zero' in \['int', 'zero'\]$"),
    (conv_configs, {"paddings": ["int", "int"]},
     r"^paddings must not repeat an item; got \['int', 'int'\]$"),
    (conv_configs, {"conventions": ["convolve"]},
     (r"^conventions must only hold items of \['correlation', 'convolution'\]; got unknown "
      r"'convolve'")),
    (conv_configs, {"bias": "yes"},
     r"^bias must be True, False or None \(None draws both\); got 'yes'$"),
    (conv_configs, {"x_shape": (1, 2)},
     r"^x_shape must be None or \(N, C_in, \*spatial\): 3 to 5 positive ints; got \(1, 2\)$"),
    (conv_configs, {"x_shape": (1, 2, 0)}, r"^x_shape must be None .*; got \(1, 2, 0\)$"),
    # conv_cases
    (conv_cases, {"configs": 5},
     r"^configs must be None or a strategy of ConvConfig such as conv_configs\(\); got 5$"),
    (conv_cases, {"dtype": "float16"},
     (r"^dtype must be float64 or float32 \(a name, a NumPy dtype, or a strategy of them\); "
      r"got 'float16'$")),
    (conv_cases, {"dtype": None}, r"^dtype must be float64 or float32 .*; got None$"),
    (conv_cases, {"magnitude": 0}, r"^magnitude must be a finite number > 0; got 0$"),
    (conv_cases, {"magnitude": NAN}, r"^magnitude must be a finite number > 0; got nan$"),
    (conv_cases, {"magnitude": "1"}, r"^magnitude must be a finite number > 0; got '1'$"),
    # arrays
    (arrays, {"shape": -1},
     r"^shape must be an int >= 0, a tuple of them, or a strategy of tuples; got -1$"),
    (arrays, {"shape": (2, -1)}, r"^shape must be an int >= 0, .*; got \(2, -1\)$"),
    (arrays, {"shape": (2,), "dtype": "int32"}, r"^dtype must be float64 or float32 .*'int32'$"),
    (arrays, {"shape": (2,), "magnitude": -1.0},
     r"^magnitude must be a finite number > 0; got -1\.0$"),
    (arrays, {"shape": (2,), "away_from": "relu"},
     (r"^away_from must be None, an ActivationSpec \(e\.g\. ACTIVATIONS\['relu'\]\) or a list "
      r"of finite kink positions; got 'relu'$")),
    (arrays, {"shape": (2,), "away_from": [0.0, NAN]},
     r"^away_from must be None, .*; got \[0\.0, nan\]$"),
    (arrays, {"shape": (2,), "away_from": [0.0], "distance": 0.0},
     r"^distance must be a finite number > 0 or None; got 0\.0$"),
    (arrays, {"shape": (2,), "distance": 0.1},
     r"^distance=0\.1 needs away_from \(the kinks to keep away from\); got away_from=None$"),
    # activations
    (activations, {"names": ["tanh", "tnah"]},
     r"^names must only hold items of \[.*\]; got unknown 'tnah' in \['tanh', 'tnah'\]$"),
    (activations, {"names": "relu"}, r"^names must be a non-empty list drawn from .*; got 'relu'$"),
    (activations, {"kinks": "yes"}, r"^kinks must be True, False or None .*; got 'yes'$"),
    (activations, {"parameters": None}, r"^parameters must be True or False; got None$"),
    (activations, {"names": ["sigmoid"], "kinks": True},
     (r"^no activation of names=\['sigmoid'\] has kinks=True; valid names with kinks: relu, "
      r"hard_tanh, leaky_relu, elu \(the last two need parameters=True\); without: identity")),
    (activations, {"names": ["elu"], "kinks": True, "parameters": False},
     r"^no activation of names=\['elu'\] has kinks=True with parameters=False; "),
    # layer_stacks
    (layer_stacks, {"min_layers": 0}, r"^min_layers must be an int >= 1; got 0$"),
    (layer_stacks, {"min_layers": 3, "max_layers": 2},
     r"^min_layers=3 must not exceed max_layers=2"),
    (layer_stacks, {"min_dims": 4}, r"^min_dims must be an int from 0 to 3; got 4$"),
    (layer_stacks, {"max_dims": -1}, r"^max_dims must be an int from 0 to 3; got -1$"),
    (layer_stacks, {"max_features": 0}, r"^max_features must be an int >= 1; got 0$"),
    (layer_stacks, {"kinds": ["conv", "pool"]},
     (r"^kinds must only hold items of \['conv', 'activation', 'maxpool', 'avgpool', "
      r"'flatten', 'dense'\]; got unknown 'pool'")),
    (layer_stacks, {"kinds": ["dense"]},
     (r"^kinds=\['dense'\] has no layer for a spatial input \(N, C, \*spatial\); add one of "
      r"\['conv', 'activation', 'maxpool', 'avgpool', 'flatten'\] or use max_dims=0$")),
    (layer_stacks, {"kinds": ["conv", "flatten"], "min_dims": 1},
     (r"^kinds=\['conv', 'flatten'\] has no layer for a flat input \(N, features\), which "
      r"flatten produces; add 'activation' or 'dense'$")),
    (layer_stacks, {"activations": 5},
     (r"^activations must be None or a strategy of ActivationSpec such as "
      r"gradcheck\.strategies\.activations\(\); got 5$")),
    (layer_stacks, {"input_shape": (1,)},
     (r"^input_shape must be None or \(N, C, \*spatial\) / \(N, features\): 2 to 5 positive "
      r"ints; got \(1,\)$")),
    (layer_stacks, {"max_size": 4},
     r"^max_size=4 is too small for max_batch=2 and max_channels=3"),
    # spec_documents / specs
    (spec_documents, {"stacks": 1},
     r"^stacks must be None or a strategy of LayerStack such as layer_stacks\(\); got 1$"),
    (spec_documents, {"dtypes": ["float16"]},
     r"^dtypes must only hold items of \['float64', 'float32'\]; got unknown 'float16'"),
    (spec_documents, {"losses": ["hinge"]},
     (r"^losses must only hold items of \[None, 'weighted_sum', 'mse', "
      r"'softmax_cross_entropy'\]; got unknown 'hinge'")),
    (spec_documents, {"modes": ["slow"]}, r"^modes must only hold items of \['full', "),
    (spec_documents, {"max_seed": -1}, r"^max_seed must be an int >= 0; got -1$"),
    (specs, {"dtypes": []}, r"^dtypes must be a non-empty list drawn from "),
    # helpers
    (kink_distance, {"dtype": "int32"}, r"^dtype must be float64 or float32 .*'int32'$"),
    (kink_distance, {"magnitude": 0.0}, r"^magnitude must be a finite number > 0; got 0\.0$"),
]


def _id(call):
    fn, kwargs, _ = call
    return f"{fn.__name__}-{'-'.join(f'{k}={v!r}' for k, v in kwargs.items())}"


@pytest.mark.parametrize("fn, kwargs, message", BAD_CALLS, ids=[_id(c) for c in BAD_CALLS])
def test_bad_arguments_are_refused_when_the_strategy_is_created(fn, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        fn(**kwargs)


def test_make_case_checks_its_seed_and_dtype():
    config = ConvConfig((1, 1, 3), (1, 1, 2), 1, 0, 1, 1, "correlation", False)
    with pytest.raises(ConfigurationError, match=r"^seed must be an int from 0 to 2\*\*32 - 1; "
                                                 r"got -1$"):
        config.make_case(-1)
    with pytest.raises(ConfigurationError, match=r"^dtype must be float64 or float32 here; "):
        config.make_case(0, dtype=st.just("float64"))


def test_a_strategy_drawing_the_wrong_type_is_named():
    @settings(max_examples=1, database=None)
    @given(conv_cases(configs=st.just((1, 1, 3))))
    def draw(case):
        pass

    with pytest.raises(ConfigurationError,
                       match=r"^configs must draw ConvConfig values; it drew \(1, 1, 3\)"):
        draw()


def test_defaults_are_filled_from_the_other_bounds():
    """max_batch follows min_batch, max_groups follows max_channels."""
    seen = []

    @settings(max_examples=30, database=None, deadline=None)
    @given(conv_configs(min_batch=3, max_channels=1, max_size=64))
    def draw(config):
        seen.append(config)

    draw()
    assert {c.x_shape[0] for c in seen} == {3}
    assert {c.groups for c in seen} == {1}
    assert all(math.prod(c.x_shape) <= 64 for c in seen)


def test_spec_documents_feed_the_fuzz_command():
    from gradcheck._fuzz import spec_strategy

    assert repr(spec_strategy()) == repr(spec_documents())


def test_import_gradcheck_does_not_import_hypothesis_or_the_strategies():
    code = ("import sys, gradcheck, gradcheck.cli, gradcheck.spec; "
            "print(sorted(m for m in sys.modules if m == 'hypothesis' "
            "or m.startswith('gradcheck.strategies')))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_without_hypothesis_the_import_error_names_the_extra():
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "try:\n    import gradcheck.strategies\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == (
        "gradcheck.strategies needs hypothesis, which is not installed; install it with pip "
        "install -e '.[strategies]' in the gradcheck checkout (or the test extra: "
        "'.[test]')"), out.stderr
