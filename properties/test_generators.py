"""The strategies keep their promises, for bounds that are themselves drawn.

Valid and bounded configurations are what every other property stands on: a strategy
that silently drew nothing but 1x1 kernels, or an invalid geometry now and then, would
make the rest of the suite weaker or flaky.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

from gradcheck import conv_forward
from gradcheck.ops.activations import get_activation
from gradcheck.ops.layers import layer_from_dict
from gradcheck.strategies import (
    PADDINGS,
    ConvConfig,
    activations,
    arrays,
    conv_configs,
    kink_distance,
    layer_stacks,
)


@st.composite
def _bounds(draw):
    """Keyword arguments for conv_configs, valid by construction."""
    min_dims = draw(st.integers(1, 3))
    max_batch = draw(st.integers(1, 3))
    max_channels = draw(st.integers(1, 5))
    return {
        "min_dims": min_dims, "max_dims": draw(st.integers(min_dims, 3)),
        "max_batch": max_batch, "max_channels": max_channels,
        "min_channels": draw(st.integers(1, max_channels)),
        "max_groups": draw(st.integers(1, 5)), "max_kernel": draw(st.integers(1, 5)),
        "max_stride": draw(st.integers(1, 3)), "max_dilation": draw(st.integers(1, 3)),
        "max_padding": draw(st.integers(0, 3)), "max_side": draw(st.integers(1, 9)),
        "max_size": draw(st.integers(max(max_batch, max_channels) * max_channels, 400)),
        "paddings": draw(st.lists(st.sampled_from(PADDINGS), min_size=1, unique=True)),
        "bias": draw(st.sampled_from([None, True, False]))}


@given(_bounds(), st.data())
def test_conv_configs_are_valid_and_within_their_bounds(bounds, data):
    config = data.draw(conv_configs(**bounds), label="config")
    note(f"bounds {bounds}")
    assert isinstance(config, ConvConfig)
    g = config.geometry                       # conv_geometry accepts it
    y = conv_forward(np.ones(config.x_shape), np.ones(config.w_shape), **config.options())
    assert y.shape == config.y_shape and y.size >= 1
    for shape in (config.x_shape, config.w_shape, config.y_shape):
        assert math.prod(shape) <= bounds["max_size"]
    assert bounds["min_dims"] <= g.nd <= bounds["max_dims"]
    assert 1 <= g.batch <= bounds["max_batch"]
    for channels in (g.in_channels, g.out_channels):
        assert bounds["min_channels"] <= channels <= bounds["max_channels"]
        assert channels % g.groups == 0
    assert g.groups <= bounds["max_groups"]
    assert max(g.kernel) <= bounds["max_kernel"] and max(g.stride) <= bounds["max_stride"]
    assert max(g.dilation) <= bounds["max_dilation"] and max(g.in_shape) <= bounds["max_side"]
    form = config.padding if isinstance(config.padding, str) else (
        "int" if isinstance(config.padding, int) else
        "pairs" if isinstance(config.padding[0], tuple) else "tuple")
    assert form in bounds["paddings"]
    if form in ("int", "tuple", "pairs"):
        assert max(g.pad_lo + g.pad_hi) <= bounds["max_padding"]
    if form == "same":
        assert g.stride == (1,) * g.nd and g.out_shape == g.in_shape
    if bounds["bias"] is not None:
        assert config.bias is bounds["bias"]


@given(st.lists(st.integers(1, 6), min_size=3, max_size=5), st.data())
def test_conv_configs_keep_a_given_input_shape(x_shape, data):
    config = data.draw(conv_configs(x_shape=tuple(x_shape), max_size=64), label="config")
    assert config.x_shape == tuple(x_shape)
    assert config.x_shape[1] % config.groups == 0
    assert min(config.y_shape) >= 1
    assert math.prod(config.w_shape) <= 64


@given(st.data(), st.sampled_from(["float64", "float32"]),
       st.floats(1e-3, 1e3, allow_subnormal=False), activations(kinks=True))
def test_arrays_have_their_dtype_magnitude_and_distance_from_kinks(data, dtype, magnitude,
                                                                  act):
    shape = data.draw(st.lists(st.integers(0, 5), max_size=4).map(tuple), label="shape")
    plain = data.draw(arrays(shape, dtype=dtype, magnitude=magnitude), label="plain")
    assert plain.dtype == np.dtype(dtype) and plain.shape == shape
    assert np.all(np.abs(plain) <= magnitude * (1 + 1e-6))
    away = data.draw(arrays(shape, dtype=dtype, magnitude=magnitude, away_from=act),
                     label="away")
    kinks = np.array(act.kinks)
    if away.size:
        gaps = np.abs(away.astype(np.float64)[..., None] - kinks).min(axis=-1)
        assert gaps.min() >= kink_distance(dtype, magnitude)


@given(st.sampled_from([None, True, False]), st.booleans(), st.data())
def test_activations_respect_kinks_and_round_trip_to_layers(kinks, parameters, data):
    act = data.draw(activations(kinks=kinks, parameters=parameters), label="activation")
    if kinks is not None:
        assert bool(act.kinks) is kinks
    d = act.to_dict()
    again = get_activation(d["type"], **{k: v for k, v in d.items() if k != "type"})
    assert again.kinks == act.kinks and again.params == act.params
    assert layer_from_dict(d).to_dict() == d


@given(layer_stacks(max_layers=5, max_dims=3))
def test_layer_stacks_build_with_the_shapes_they_claim(stack):
    net = stack.network()
    assert [tuple(s) for s in net.shapes] == [tuple(s) for s in stack.shapes]
    assert 1 <= len(stack.layers) <= 5
    assert math.prod(stack.input_shape) <= 128
