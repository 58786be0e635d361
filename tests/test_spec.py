"""Layer specs: reading, validation, round trips, building, memory refusal, user layers.

Shapes are held against values derived by hand from the output-size formula; round trips
go through independent parsers (tomllib, json, PyYAML); the user-layer adaptor is held
against user modules written here that misbehave on purpose.
"""

from __future__ import annotations

import json
import math
import re
import sys
import textwrap
import tomllib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gradcheck import SpecError, UserCodeError
from gradcheck.spec import (
    Spec,
    build,
    check_built,
    default_spec,
    estimate_bytes,
    load_spec,
    loads_spec,
    parse_spec,
)
from gradcheck.spec._toml import dumps

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "specs").rglob("*") if p.suffix in (".toml", ".json",
                                                                        ".yaml"))


def doc(*layers, shape=(2, 3, 8, 8), **top):
    return {"input": {"shape": list(shape), **top.pop("input", {})}, "layer": list(layers),
            **top}


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_specs_round_trip_through_toml_json_and_yaml(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    if path.suffix in (".yaml", ".yml"):
        pytest.importorskip("yaml")
    spec = load_spec(path.relative_to(ROOT))
    text = spec.to_toml()
    assert tomllib.loads(text) == spec.to_dict()          # the writer against tomllib
    assert loads_spec(text) == spec
    assert loads_spec(spec.to_json(), format="json") == spec
    yaml = pytest.importorskip("yaml")
    assert loads_spec(yaml.safe_dump(spec.to_dict()), format="yaml") == spec


def test_canonical_document_is_a_fixed_point():
    spec = parse_spec(doc({"type": "conv", "out_channels": 4, "kernel": [3, 2], "padding": "same"},
                          {"type": "leaky_relu"}, {"type": "maxpool", "kernel": 2},
                          loss={"type": "mse", "seed": 3},
                          check={"wrt": ["input"], "max_memory": "1GiB", "rtol": 1e-3,
                                 "tolerance": {"layer0.conv.w": {"atol": 1e-9}}}))
    once = spec.to_dict()
    assert parse_spec(once).to_dict() == once
    # defaults are written out explicitly
    assert once["layer"][1] == {"type": "leaky_relu", "alpha": 0.01}
    assert once["layer"][2] == {"type": "maxpool", "kernel": 2, "stride": 2, "padding": 0}
    assert once["check"]["max_memory"] == 2**30
    assert loads_spec(spec.to_toml()) == spec


@pytest.mark.parametrize("value", [
    'a "quoted" \\ backslash', "tab\tnewline\ncr\r", "unicode: δ ⋆ rot180(w) 😀", "del\x7f",
    "ctrl\x01\x1f", "",
])
def test_toml_writer_strings_survive_tomllib(value):
    d = {"name": value, "t": {"key with space": value, "k": [value, value]}}
    assert tomllib.loads(dumps(d)) == d


def test_toml_writer_numbers_and_nesting():
    d = {"a": 1e-300, "b": -0.0, "c": 12345678901234567890, "d": True,
         "t": {"inline": {"x": [1, 2], "y": {"z": 1.5}}, "empty": {}},
         "arr": [{"type": "x", "n": 1}, {"type": "y"}]}
    back = tomllib.loads(dumps(d))
    assert back == d
    inf = tomllib.loads(dumps({"x": float("inf"), "y": float("-inf"), "z": float("nan")}))
    assert inf["x"] == math.inf and inf["y"] == -math.inf and math.isnan(inf["z"])


def test_default_spec_is_specs_small_cnn(monkeypatch):
    monkeypatch.chdir(ROOT)
    shipped, builtin = load_spec("specs/small_cnn.toml"), default_spec()
    assert (shipped.input, shipped.layers, shipped.loss, shipped.check) == \
        (builtin.input, builtin.layers, builtin.loss, builtin.check)


def test_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "my_layer.json"
    path.write_text(json.dumps(doc({"type": "tanh"})))
    assert load_spec(path).name == "my_layer"
    assert load_spec(path).source == str(path)


def test_unknown_suffix_is_sniffed(tmp_path):
    (tmp_path / "a.spec").write_text(json.dumps(doc({"type": "tanh"})))
    (tmp_path / "b.spec").write_text("[input]\nshape = [1, 2]\n[[layer]]\ntype = 'relu'\n")
    assert load_spec(tmp_path / "a.spec").layers[0].type == "tanh"
    assert load_spec(tmp_path / "b.spec").layers[0].type == "relu"


#: Paths whose parsing pathlib and the spec reader must agree on (slashes, dots, suffixes).
_PATH_FORMS = ["", ".", "..", "/", "//", "///", "////a", "//a/b", "/a//b/", "a/./b/.",
               "./a", "a/../b", "spec.toml/", "a/.toml", "a/spec.", "a/..toml", "a.b.TOML",
               "a/b.c/d", "x.tar.gz", ". /.a.", "a/.", "..a..b"]


@pytest.mark.parametrize("label", _PATH_FORMS)
def test_the_reader_names_the_file_pathlib_would(label):
    from pathlib import PurePosixPath

    from gradcheck.spec._read import _as_pathlib_reads, _suffix

    if sys.platform == "win32":
        pytest.skip("POSIX path forms")
    assert _as_pathlib_reads(label) == str(PurePosixPath(label))
    assert _suffix(_as_pathlib_reads(label)) == PurePosixPath(label).suffix


def test_a_path_with_a_trailing_slash_reads_the_file(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(doc({"type": "tanh"})))
    assert load_spec(f"{tmp_path}/a.json/").layers[0].type == "tanh"
    assert load_spec(f"{tmp_path}//./a.json").layers[0].type == "tanh"


def test_a_single_layer_table_is_accepted():
    assert parse_spec({"input": {"shape": [1, 2]}, "layer": {"type": "relu"}}).layers[0].type \
        == "relu"


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("layer, in_shape, expected", [
    # out = (n + lo + hi - d*(k-1) - 1) // s + 1, worked by hand
    ({"type": "conv", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1},
     (2, 3, 8, 8), (2, 4, 4, 4)),                        # (8+2-3)//2+1 = 4
    ({"type": "conv", "out_channels": 6, "kernel": [3, 1], "dilation": [2, 1], "groups": 3},
     (1, 3, 9, 5), (1, 6, 5, 5)),                        # 9-4 = 5; 5-0 = 5
    ({"type": "conv", "out_channels": 2, "kernel": 4, "padding": "same"},
     (1, 1, 7), (1, 2, 7)),
    ({"type": "conv", "out_channels": 2, "kernel": 2, "padding": "full"},
     (1, 1, 3, 3), (1, 2, 4, 4)),                        # 3+2-2+1 = 4
    ({"type": "conv", "out_channels": 1, "kernel": 2, "padding": [[1, 0], [0, 2]]},
     (1, 1, 3, 3), (1, 1, 3, 4)),
    ({"type": "maxpool", "kernel": 2}, (2, 3, 7, 7), (2, 3, 3, 3)),
    ({"type": "avgpool", "kernel": 3, "stride": 1, "padding": 1}, (1, 2, 4, 4, 4),
     (1, 2, 4, 4, 4)),
    ({"type": "flatten"}, (2, 3, 4, 5), (2, 60)),
    ({"type": "gelu"}, (2, 3, 4), (2, 3, 4)),
])
def test_shapes_follow_the_output_size_formula(layer, in_shape, expected):
    spec = parse_spec(doc(layer, shape=in_shape))
    assert spec.shapes == (in_shape, expected)
    assert build(spec).network.output_shape == expected


def test_argument_names_match_the_network():
    spec = default_spec()
    assert spec.argument_names == build(spec).network.names


def test_python_layer_without_output_shape_defers_shape_checks(tmp_path, monkeypatch):
    write_module(tmp_path, "shrink", """
        import numpy as np
        class Shrink:
            def forward(self, x):
                return x[:, :, :2, :2]
            def backward(self, g, x):
                out = np.zeros_like(x); out[:, :, :2, :2] = g; return (out,)
    """)
    monkeypatch.chdir(tmp_path)
    bad = doc({"type": "python", "target": "shrink:Shrink"},
              {"type": "conv", "out_channels": 1, "kernel": 3})
    spec = parse_spec(bad, source="s.toml")          # shape past the python layer unknown
    assert spec.shapes[1:] == (None, None)
    with pytest.raises(SpecError, match=r"^s\.toml: layer\[1\]\.kernel: 3 is larger than the "
                                        r"padded input along spatial dim 0: size 2"):
        build(spec)


# --------------------------------------------------------------------------- drawing


def test_draw_is_seeded_and_follows_loc_and_scale():
    base = doc({"type": "tanh"}, shape=(3, 2, 5, 5))
    x0 = build(parse_spec(base)).x
    assert np.array_equal(x0, build(parse_spec(base)).x)
    moved = build(parse_spec({**base, "input": {**base["input"], "loc": 3.0, "scale": 2.0}})).x
    np.testing.assert_allclose(moved, 3.0 + 2.0 * x0, rtol=0, atol=1e-14)
    other = build(parse_spec({**base, "check": {"seed": 1}})).x
    assert not np.allclose(other, x0)
    pinned = {**base, "input": {**base["input"], "seed": 0}, "check": {"seed": 5}}
    assert np.array_equal(build(parse_spec(pinned)).x, x0)   # input.seed wins


def test_uniform_distribution_stays_in_its_interval():
    spec = parse_spec(doc({"type": "tanh"}, shape=(50, 40),
                          input={"distribution": "uniform", "loc": 1.0, "scale": 0.5}))
    x = build(spec).x
    assert x.min() >= 0.5 and x.max() <= 1.5
    assert x.max() - x.min() > 0.9                         # it fills the interval


def test_away_from_kinks_pushes_inputs_off_the_first_activation_kinks():
    base = doc({"type": "relu"}, shape=(20, 50), input={"scale": 1.0})
    x0 = build(parse_spec(base)).x
    spec = parse_spec({**base, "input": {**base["input"], "away_from_kinks": 0.3}})
    x = build(spec).x
    assert np.all(np.abs(x) >= 0.3)
    far = np.abs(x0) >= 0.3
    assert np.array_equal(x[far], x0[far])                  # untouched away from the kink
    assert np.array_equal(np.sign(x[~far]), np.sign(x0[~far]))


def _low_precision(dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="bfloat16 needs the optional ml_dtypes")


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_dtype_reaches_input_and_parameters(dtype):
    _low_precision(dtype)
    spec = default_spec()
    spec = parse_spec({**spec.to_dict(), "input": {**spec.to_dict()["input"], "dtype": dtype}})
    b = build(spec)
    assert b.x.dtype == dtype
    assert {p.dtype for layer in b.params for p in layer.values()} == {np.dtype(dtype)}


# --------------------------------------------------------------------------- memory


def test_memory_estimate_by_hand():
    spec = parse_spec(doc({"type": "conv", "out_channels": 1, "kernel": 3}, shape=(1, 1, 4, 4)))
    # arguments: x 16 + w 9 + b 1 = 26; activations: y 4 -> 8 * (5*26 + 3*4) bytes
    assert estimate_bytes(spec) == 8 * (5 * 26 + 3 * 4)
    f32 = parse_spec(doc({"type": "conv", "out_channels": 1, "kernel": 3}, shape=(1, 1, 4, 4),
                         input={"dtype": "float32"}))
    assert estimate_bytes(f32) == 4 * (5 * 26 + 3 * 4)


def test_huge_input_is_refused_before_allocating():
    spec = parse_spec(doc({"type": "tanh"}, shape=(10**6, 3, 1024, 1024)), source="big.toml")
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match=r"^big\.toml: input\.shape: \[1000000, 3, 1024, "
                                            r"1024\] \(float64\) through these layers needs "
                                            r"about .* TiB to check"):
            build(spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_memory_limit_from_spec_and_option():
    small = doc({"type": "tanh"}, shape=(4, 1000), check={"max_memory": "100KiB"})
    with pytest.raises(SpecError, match=r"more than the 100\.0 KiB limit \(check\.max_memory\)"):
        build(parse_spec(small))
    build(parse_spec(small), max_memory=10**7)               # the option wins
    with pytest.raises(SpecError, match=r"limit \(--max-memory\)"):
        build(parse_spec(doc({"type": "tanh"}, shape=(4, 1000))), max_memory=1000)


# --------------------------------------------------------------------------- bad documents


@pytest.mark.parametrize("document, message", [
    ([], r"^t: expected a table of keys such as input, layer, loss and check, got \[\]$"),
    ({"layer": [{"type": "relu"}]}, r"^t: input: missing; a spec needs an \[input\] table"),
    ({"input": {"shape": [1, 2]}}, r"^t: layer: missing; a spec needs at least one"),
    ({"input": {"shape": [1, 2]}, "layer": []}, r"^t: layer: expected a non-empty list"),
    ({"input": {}, "layer": [{"type": "relu"}]}, r"^t: input\.shape: missing; \[input\] needs"),
    (doc({"type": "relu"}, shape=(2,)), r"^t: input\.shape: expected a list of 2 to 5 positive"),
    (doc({"type": "relu"}, input={"shape": "2x3"}), r"got \"2x3\"$"),
    (doc({"type": "relu"}, input={"scale": 0}), r"^t: input\.scale: expected a finite number "
                                                r"> 0, got 0$"),
    (doc({"type": "relu"}, input={"seed": -1}), r"^t: input\.seed: expected an int >= 0, got -1$"),
    (doc({"type": "relu"}, input={"distribution": "gauss"}),
     r"^t: input\.distribution: expected one of \"normal\", \"uniform\", got \"gauss\"$"),
    (doc({"type": "relu"}, input={"dtype": "complex128"}),
     r"^t: input\.dtype: expected one of \"float16\", \"bfloat16\", \"float32\", \"float64\", "
     r"got \"complex128\""),
    (doc({"type": "relu"}, input={"dtype": 64}), r"got 64; other dtypes are not supported$"),
    (doc({"type": "relu"}, name=3), r"^t: name: expected a string, got 3$"),
    (doc({"type": "relu"}, check={"seed": 1.5}), r"^t: check\.seed: expected an int >= 0, got 1\.5"),
    (doc({"type": "relu"}, check={"budget": 0}), r"^t: check\.budget: expected a positive int"),
    (doc({"type": "relu"}, check={"rtol": -1}), r"^t: check\.rtol: expected a finite number >= 0"),
    (doc({"type": "relu"}, check={"max_memory": "lots"}), r"^t: check\.max_memory: expected a "
                                                          r"positive number of bytes"),
    (doc({"type": "relu"}, check={"wrt": "input"}), r"^t: check\.wrt: expected a non-empty list"),
    (doc({"type": "relu"}, check={"modes": "full"}), r"^t: check\.modes: unknown key; did you "
                                                     r"mean \"mode\"\?"),
    (doc({"type": "relu"}, loss={"seed": 1}), r"^t: loss\.type: missing; \[loss\] needs type"),
    (doc({"type": "flatten"}, loss={"type": "softmax_cross_entropy"}, shape=(3,)),
     r"^t: input\.shape: expected a list of 2 to 5"),
    (doc("relu"), r"^t: layer\[0\]: expected a table of a layer's type and options, got \"relu\""),
    (doc({"kernel": 3}), r"^t: layer\[0\]\.type: missing; every \[\[layer\]\] needs type"),
    (doc({"Type": "relu"}), r"^t: layer\[0\]\.Type: unknown key; did you mean \"type\"\? \(keys are "
                            r"case-sensitive\); every \[\[layer\]\] needs type \(conv, maxpool, "
                            r"avgpool, flatten, dense, python or an activation name such as "
                            r"tanh\)$"),
    (doc({"kind": "conv", "out_channels": 2, "kernel": 3}),
     r"^t: layer\[0\]\.kind: unknown key; did you mean \"type\"\? \(\"conv\" is a layer "
     r"type\); every \[\[layer\]\] needs type \("),
    (doc({"type": "relu", "TYPE": "relu"}), r"^t: layer\[0\]\.TYPE: unknown key \(keys are "
                                            r"case-sensitive\); this layer's type is given by "
                                            r"type = \"relu\"$"),
    (doc({"type": "conv", "out_channels": 2, "Kernel": 3}),
     r"^t: layer\[0\]\.Kernel: unknown key; did you mean \"kernel\"\? valid keys for a conv "
     r"layer: out_channels, kernel, "),
    (doc({"type": "conv", "kernel": 3}), r"^t: layer\[0\]\.out_channels: missing; a conv layer "
                                         r"needs out_channels \(a positive int\)$"),
    (doc({"type": "conv", "out_channels": True, "kernel": 3}),
     r"^t: layer\[0\]\.out_channels: expected a positive int, got true$"),
    (doc({"type": "conv", "out_channels": 2, "kernel": 3, "bias": "yes"}),
     r"^t: layer\[0\]\.bias: expected true or false, got \"yes\"$"),
    (doc({"type": "conv", "out_channels": 4, "kernel": 3, "groups": 2}),
     r"^t: layer\[0\]\.groups: 2 does not divide the 3 input channels of shape "
     r"\(2, 3, 8, 8\); valid: 1$"),
    (doc({"type": "conv", "out_channels": 4, "kernel": 3, "groups": 3}),
     r"^t: layer\[0\]\.groups: 3 does not divide out_channels = 4; valid: 1, 2, 4$"),
    (doc({"type": "conv", "out_channels": 4, "kernel": 3, "dilation": 4}),
     r"^t: layer\[0\]\.kernel: 3 \(dilated extent 9\) is larger than the padded input"),
    (doc({"type": "conv", "out_channels": 4, "kernel": 3, "padding": [[1, 1]]}),
     r"^t: layer\[0\]\.padding: expected a list of 2 \[low, high\] pairs of ints >= 0"),
    (doc({"type": "conv", "out_channels": 4, "kernel": 3, "padding": "half"}),
     r"^t: layer\[0\]\.padding: expected an int >= 0, a list of them, or one of \"valid\", "
     r"\"same\", \"full\", got \"half\""),
    (doc({"type": "conv", "out_channels": 4, "kernel": 3, "convention": "conv"}),
     r"^t: layer\[0\]\.convention: expected one of \"correlation\", \"convolution\""),
    (doc({"type": "conv", "out_channels": 4, "kernel": 3}, shape=(2, 12)),
     r"^t: layer\[0\]: a conv layer needs an input of shape \(N, C, \*spatial\) with 1 to 3 "
     r"spatial dims, but the input gives shape \(2, 12\)$"),
    (doc({"type": "avgpool", "kernel": 9}), r"^t: layer\[0\]\.kernel: 9 is larger than the "
                                            r"padded input along spatial dim 0: size 8"),
    (doc({"type": "flatten", "start": 1}), r"^t: layer\[0\]\.start: unknown key; a flatten "
                                           r"layer takes no other keys$"),
    (doc({"type": "tanh", "alpha": 1}), r"^t: layer\[0\]\.alpha: unknown key; a tanh layer "
                                        r"takes no other keys$"),
    (doc({"type": "hard_tanh", "min_val": 2.0}),
     r"^t: layer\[0\]\.min_val: 2\.0 must be less than max_val = 1\.0$"),
    (doc({"type": "elu", "alpha": 0}), r"^t: layer\[0\]\.alpha: expected a number > 0, got 0$"),
    (doc({"type": "python"}), r"^t: layer\[0\]\.target: missing; a python layer needs target"),
    (doc({"type": "python", "target": "m:L", "params": {"w": [0, 2]}}),
     r"^t: layer\[0\]\.params\.w: expected a list of 0 to 32 positive ints \(the parameter's "
     r"shape\), got \[0, 2\]$"),
    (doc({"type": "python", "target": "m:L", "params": {"1w": [2]}}),
     r"^t: layer\[0\]\.params\.1w: parameter name \"1w\" is not a valid identifier"),
    (doc({"type": "python", "target": "m:L", "output_shape": []}),
     r"^t: layer\[0\]\.output_shape: expected a list of 1 to 32 positive ints"),
])
def test_bad_documents(document, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(document, source="t")


@pytest.mark.parametrize("dtype, key, value, limit", [
    ("float64", "loc", 1e308, "1e77"),
    ("float64", "loc", -1e78, "1e77"),
    ("float64", "scale", 1e300, "1e77"),
    ("float64", "away_from_kinks", 1e200, "1e77"),
    ("float32", "loc", 1e10, "1e9"),
    ("float32", "scale", 1e39, "1e9"),
])
def test_input_values_too_large_for_a_finite_input(dtype, key, value, limit):
    bad = doc({"type": "tanh"}, input={"dtype": dtype, key: value})
    size = "|loc|" if key == "loc" else key
    with pytest.raises(SpecError, match=(
            rf"^t: input\.{key}: {re.escape(repr(value))} is too large: {re.escape(size)} must "
            rf"be at most {limit} for {dtype} inputs \(1e(77|9) for float(64|32)\), so that the "
            rf"drawn input .* stay finite$")):
        parse_spec(bad, source="t")


@pytest.mark.parametrize("dtype, limit", [("float64", 1e77), ("float32", 1e9), ("float16", 4.0),
                                          ("bfloat16", 1e9)])
def test_input_values_at_the_limit_give_a_finite_input(dtype, limit):
    _low_precision(dtype)
    spec = parse_spec(doc({"type": "conv", "out_channels": 2, "kernel": 3},
                          input={"dtype": dtype, "loc": -limit, "scale": limit},
                          loss={"type": "mse"}))
    b = build(spec)
    assert b.x.dtype == np.dtype(dtype) and np.all(np.isfinite(b.x))
    assert np.abs(b.x).max() > limit                         # really that large
    y = b.network.forward(b.x, b.params).output
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(np.square(y)))   # in its dtype


def test_every_message_is_one_line():
    bad = doc({"type": "conv", "out_channels": 4, "kernel": "a\nb"})
    with pytest.raises(SpecError) as info:
        parse_spec(bad, source="t")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- user layers


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(name, None)


USER_LAYERS = """
    import numpy as np

    class Scale:
        '''y = w * x elementwise over the last axis (w has the shape of one row).'''
        def forward(self, x, w):
            return x * w
        def backward(self, g, x, w):
            return g * w, (g * x).sum(axis=0)

    class Fickle(Scale):
        '''The right shape on the first call only.'''
        calls = 0
        def forward(self, x, w):
            Fickle.calls += 1
            return x * w if Fickle.calls == 1 else (x * w)[:, 1:]

    class SlightlyOff(Scale):
        def backward(self, g, x, w):
            return 1.001 * g * w, (g * x).sum(axis=0)

    class Raises(Scale):
        def backward(self, g, x, w):
            raise ValueError("shapes do not line up")

    class NaN(Scale):
        def forward(self, x, w):
            y = x * w
            y[0, 1] = np.nan
            return y

    class Dropout(Scale):
        def forward(self, x, w):
            return x * w * (np.random.random(x.shape) > 0.5)

    class WrongGradShape(Scale):
        def backward(self, g, x, w):
            return g * w, (g * x)

    class TooFew(Scale):
        def backward(self, g, x, w):
            return (g * w,)

    class NotArray(Scale):
        def forward(self, x, w):
            return "y"

    class WithOptions:
        def __init__(self, factor):
            self.factor = factor
        def forward(self, x):
            return self.factor * x
        def backward(self, g, x):
            return (self.factor * g,)

    class NoBackward:
        def forward(self, x):
            return x

    def broken_import():
        pass
"""


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    write_module(tmp_path, "user_layers_t", USER_LAYERS)
    write_module(tmp_path, "user_broken_t", "import numpy as np\nraise RuntimeError('boom at import')\n")
    write_module(tmp_path, "user_syntax_t", "def f(:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in ("user_layers_t", "user_broken_t", "user_syntax_t"):
        sys.modules.pop(name, None)


def user_doc(target, **layer):
    return doc({"type": "python", "target": f"user_layers_t:{target}",
                "params": {"w": [5]}, **layer}, shape=(4, 5))


def test_user_layer_runs_and_reports_its_output_shape(user_modules):
    before = list(sys.path)
    b = build(parse_spec(user_doc("Scale")))
    assert sys.path == before                                   # the cwd entry is removed again
    assert b.network.output_shape == (4, 5)
    y = b.network.forward(b.x, b.params).output
    np.testing.assert_array_equal(y, b.x * b.params[0]["w"])
    gx, gw = b.network.layers[0].backward(np.ones((4, 5)), b.x, b.params[0]["w"])
    np.testing.assert_array_equal(gw, b.x.sum(axis=0))


def test_a_submodule_of_functions_is_a_target(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg_t"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "scale.py").write_text(textwrap.dedent("""
        def forward(x, w):
            return x * w
        def backward(g, x, w):
            return g * w, (g * x).sum(axis=0)
    """))
    monkeypatch.chdir(tmp_path)
    try:
        b = build(parse_spec(doc({"type": "python", "target": "userpkg_t:scale",
                                  "params": {"w": [5]}}, shape=(4, 5))))
        y = b.network.forward(b.x, b.params).output
        np.testing.assert_array_equal(y, b.x * b.params[0]["w"])
    finally:
        for name in ("userpkg_t", "userpkg_t.scale"):
            sys.modules.pop(name, None)


def test_spec_text_without_a_format_is_sniffed():
    spec = parse_spec(doc({"type": "relu"}, shape=(2, 3)))
    assert loads_spec(spec.to_json()) == spec
    assert loads_spec(spec.to_toml()) == spec


def test_a_user_layer_that_is_not_deterministic_stops_the_check(user_modules):
    from gradcheck.spec import check_spec

    with pytest.raises(UserCodeError, match=r"^the network's forward pass is not "
                                            r"deterministic: two calls with the same "
                                            r"arguments differ by up to "):
        check_spec(parse_spec(user_doc("Dropout")))


def test_user_layer_options_go_to_the_constructor(user_modules):
    spec = doc({"type": "python", "target": "user_layers_t:WithOptions",
                "options": {"factor": 3.0}}, shape=(2, 2))
    b = build(parse_spec(spec))
    np.testing.assert_array_equal(b.network.forward(b.x, b.params).output, 3.0 * b.x)


@pytest.mark.parametrize("target, extra, message", [
    ("Raises", {}, r"^user_layers_t:Raises\.backward raised ValueError: shapes do not line up$"),
    ("NaN", {}, r"^user_layers_t:NaN\.forward returned nan in y at index \(0, 1\) \(1 "
                r"non-finite of 20\) for finite inputs$"),
    ("WrongGradShape", {}, r"^user_layers_t:WrongGradShape\.backward returned grad_w of shape "
                           r"\(4, 5\); expected \(5,\), the shape of w$"),
    ("TooFew", {}, r"^user_layers_t:TooFew\.backward returned 1 values; expected a tuple of 2 "
                   r"arrays \(grad_x, grad_w\)$"),
    ("NotArray", {}, r"^user_layers_t:NotArray\.forward returned y that is not an array of "
                     r"numbers \(got str\)"),
    ("Fickle", {}, r"^user_layers_t:Fickle\.forward returned y of shape \(4, 4\); expected "
                   r"\(4, 5\)$"),
    ("Fickle", {"output_shape": [4, 5]}, r"^user_layers_t:Fickle\.forward returned y of shape "
                                         r"\(4, 4\); expected \(4, 5\)$"),
])
def test_user_code_failures_are_user_code_errors(user_modules, target, extra, message):
    with pytest.raises(UserCodeError, match=message):
        b = build(parse_spec(user_doc(target, **extra)))
        trace = b.network.forward(b.x, b.params)
        b.network.backward(trace, np.ones(trace.output.shape))


def test_a_wrong_output_shape_is_a_spec_error_naming_the_key(user_modules):
    spec = parse_spec(user_doc("Scale", output_shape=[4, 6]), source="t")
    with pytest.raises(SpecError, match=(
            r"^t: layer\[0\]\.output_shape: \[4, 6\] does not match the layer: "
            r"user_layers_t:Scale\.forward returned shape \(4, 5\) for an input of shape "
            r"\(4, 5\); write output_shape = \[4, 5\] or leave the key out$")):
        build(spec)
    # the right shape is accepted, and its batch axis follows the input's
    for declared in ([4, 5], [1, 5]):
        b = build(parse_spec(user_doc("Scale", output_shape=declared), source="t"))
        assert b.network.output_shape == (4, 5)


@pytest.mark.parametrize("target, message", [
    ("nosuch_mod_t:L", r"^t: layer\[0\]\.target: cannot import module \"nosuch_mod_t\": no "
                       r"module named \"nosuch_mod_t\" on the import path \(the current "
                       r"directory .* is on it\)"),
    ("user_broken_t:L", r"^t: layer\[0\]\.target: importing module \"user_broken_t\" raised "
                        r"RuntimeError: boom at import$"),
    ("user_syntax_t:L", r"^t: layer\[0\]\.target: importing module \"user_syntax_t\" failed: "
                        r"SyntaxError: .*\(user_syntax_t\.py, line 1\)$"),
    ("user_layers_t:Scal", r"^t: layer\[0\]\.target: module \"user_layers_t\" has no attribute "
                           r"\"Scal\"; did you mean \"Scale\"\?"),
    ("user_layers_t:Scale.inner", r"^t: layer\[0\]\.target: \"user_layers_t:Scale\" has no "
                                  r"attribute \"inner\""),
    ("user_layers_t:NoBackward", r"^t: layer\[0\]\.target: NoBackward has no backward method; "
                                 r"a python layer needs forward\(x, \*params\) -> y and "
                                 r"backward\(grad_y, x, \*params\) -> \(grad_x, \*grad_params\)$"),
    ("user_layers_t:broken_import", r"^t: layer\[0\]\.target: broken_import has no forward or "
                                    r"backward method"),
    ("user_layers_t:Scale", None),
])
def test_targets_that_cannot_be_used_are_spec_errors(user_modules, target, message):
    from gradcheck.spec import resolve_targets

    spec = parse_spec(doc({"type": "python", "target": target}, shape=(4, 5)), source="t")
    if message is None:
        resolve_targets(spec)
        return
    with pytest.raises(SpecError, match=message):
        resolve_targets(spec)


def test_options_for_a_non_class_target(user_modules):
    from gradcheck.spec import resolve_targets

    spec = parse_spec(doc({"type": "python", "target": "user_layers_t:broken_import",
                           "options": {"a": 1}}, shape=(4, 5)), source="t")
    with pytest.raises(SpecError, match=r"^t: layer\[0\]\.kwargs: broken_import is not a class, "
                                        r"so it takes no kwargs; got \{a = 1\}$"):
        resolve_targets(spec)


def test_constructor_failure_is_a_spec_error(user_modules):
    from gradcheck.spec import resolve_targets

    spec = parse_spec(doc({"type": "python", "target": "user_layers_t:WithOptions"},
                          shape=(4, 5)), source="t")
    with pytest.raises(SpecError, match=r"^t: layer\[0\]\.kwargs: WithOptions\(\*\*kwargs\) "
                                        r"raised TypeError: .*factor.*; give the constructor's "
                                        r"arguments as kwargs = \{name = value, \.\.\.\}$"):
        resolve_targets(spec)


def test_spec_equality_ignores_the_source():
    a = parse_spec(doc({"type": "relu"}), source="a.toml")
    b = parse_spec(doc({"type": "relu"}), source="b.toml")
    assert a == b and isinstance(a, Spec)


# --------------------------------------------------------------------------- files


def test_a_pipe_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match=r"spec\.toml: is not a regular file \(a pipe, socket or "
                                        r"device\); give the path of a spec file$"):
        load_spec(fifo)


def test_an_oversized_file_is_not_read(tmp_path):
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(SpecError, match=r"big\.toml: is 1048579 bytes, more than the 1048576 "
                                        r"bytes a spec file may have"):
        load_spec(big)


def test_yaml_without_pyyaml(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("input:\n  shape: [1, 2]\nlayer:\n  - type: relu\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(SpecError, match=r"s\.yaml: reading YAML needs PyYAML, which is not "
                                        r"installed; pip install -e '\.\[yaml\]' in the gradcheck "
                                        r"checkout, or write the spec as TOML$"):
        load_spec(path)


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"input": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(SpecError, match=r"deep\.json: is nested too deeply to be a spec document"):
        load_spec(path)


def test_per_tensor_tolerance_overrides(user_modules):
    from gradcheck.spec import check_spec

    base = user_doc("SlightlyOff")
    strict = check_spec(parse_spec(base))
    assert [(a.name, a.passed) for a in strict.arguments] == \
        [("input", False), ("layer0.python.w", True)]
    loose = check_spec(parse_spec({**base, "check": {"tolerance": {"input": {"rtol": 0.01}}}}))
    assert [(a.name, a.passed) for a in loose.arguments] == \
        [("input", True), ("layer0.python.w", True)]
    # a loose tolerance on another tensor changes nothing for the input
    other = check_spec(parse_spec({**base, "check": {"tolerance": {
        "layer0.python.w": {"rtol": 0.01}}}}))
    assert [a.passed for a in other.arguments] == [False, True]
    # the command line's rtol applies to every tensor
    assert check_spec(parse_spec(base), rtol=0.01).passed


def test_tolerance_names_are_checked():
    bad = doc({"type": "relu"}, check={"tolerance": {"inptu": {"rtol": 1e-3}}})
    with pytest.raises(SpecError, match=r"^t: check\.tolerance\.inptu: \"inptu\" is not a "
                                        r"tensor of this spec; did you mean \"input\"\?"):
        parse_spec(bad, source="t")
    bad = doc({"type": "relu"}, check={"tolerance": {"input": {"rtl": 1e-3}}})
    with pytest.raises(SpecError, match=r"^t: check\.tolerance\.input\.rtl: unknown key; did "
                                        r"you mean \"rtol\"\? valid keys for a tolerance: rtol, "
                                        r"atol$"):
        parse_spec(bad, source="t")


# --------------------------------------------------------------------------- python init


SCALE_SHIFT = """
    import numpy as np
    class ScaleShift:
        def forward(self, x, gamma, beta):
            return gamma[:, None] * x.T + beta[:, None]
        def backward(self, g, x, gamma, beta):
            return (g.T * gamma).T, (g * x.T).sum(1), g.sum(1)
    class Declared(ScaleShift):
        param_init = {"gamma": "ones", "beta": {"loc": 2.0, "scale": 0.0}}
"""


def test_python_parameters_drawn_by_their_init(tmp_path, monkeypatch):
    write_module(tmp_path, "scaleshift_t", SCALE_SHIFT)
    monkeypatch.chdir(tmp_path)
    layer = {"type": "python", "target": "scaleshift_t:ScaleShift",
             "params": {"gamma": [400], "beta": [400]}}
    spec = parse_spec(doc(layer, shape=(3, 400)), source="s.toml")
    default = build(spec).params[0]
    # drawn like a weight: a 1-d parameter is N(0, 1/4), about half of it negative
    assert 0.3 < np.mean(default["gamma"] < 0) < 0.7
    assert np.std(default["gamma"]) == pytest.approx(0.5, rel=0.15)
    layer["init"] = {"gamma": {"loc": 1.0, "scale": 0.1}, "beta": "zeros"}
    spec = parse_spec(doc(layer, shape=(3, 400)), source="s.toml")
    drawn = build(spec).params[0]
    assert np.all(drawn["beta"] == 0.0)
    # the same normal draw, moved and scaled: 1 + 0.1 z where the default was 0.5 z
    np.testing.assert_allclose(drawn["gamma"], 1.0 + 0.2 * default["gamma"], rtol=1e-12)
    assert spec.layers[0].to_dict()["init"] == {"gamma": {"loc": 1.0, "scale": 0.1},
                                                "beta": "zeros"}
    assert loads_spec(spec.to_toml()) == spec
    # the class's own param_init, and the spec's init over it
    layer = {"type": "python", "target": "scaleshift_t:Declared",
             "params": {"gamma": [4], "beta": [4]}}
    params = build(parse_spec(doc(layer, shape=(3, 4)), source="s.toml")).params[0]
    assert np.all(params["gamma"] == 1.0) and np.all(params["beta"] == 2.0)
    layer["init"] = {"gamma": "zeros"}
    params = build(parse_spec(doc(layer, shape=(3, 4)), source="s.toml")).params[0]
    assert np.all(params["gamma"] == 0.0) and np.all(params["beta"] == 2.0)


@pytest.mark.parametrize("init, message", [
    ({"gama": "ones"}, r"layer\[0\]\.init\.gama: not a parameter of this layer; did you mean "
                       r"\"gamma\"\? params are: gamma, beta"),
    ({"gamma": "one"}, r"layer\[0\]\.init\.gamma: expected one of \"default\", \"zeros\", "
                       r"\"ones\", got \"one\""),
    ({"gamma": {"scale": -1}}, r"layer\[0\]\.init\.gamma\.scale: expected a finite number "
                               r">= 0, got -1"),
    ({"gamma": {"mean": 1}}, r"layer\[0\]\.init\.gamma\.mean: unknown key"),
    ({"gamma": 1.0}, r"layer\[0\]\.init\.gamma: expected \"default\", \"zeros\", \"ones\" or "
                     r"a table \{ loc = number, scale = number >= 0 \}"),
])
def test_bad_python_init_names_the_key(init, message):
    layer = {"type": "python", "target": "m:L", "params": {"gamma": [4], "beta": [4]},
             "init": init}
    with pytest.raises(SpecError, match=r"^s\.toml: " + message):
        parse_spec(doc(layer, shape=(3, 4)), source="s.toml")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_low_precision_spec_is_checked_in_its_own_dtype(dtype):
    _low_precision(dtype)
    spec = parse_spec(doc({"type": "conv", "out_channels": 3, "kernel": 3}, {"type": "tanh"},
                          {"type": "flatten"}, {"type": "dense", "out_features": 2},
                          shape=(2, 2, 5, 5), input={"dtype": dtype, "seed": 0},
                          loss={"type": "mse"}))
    built = build(spec)
    assert built.x.dtype == np.dtype(dtype)
    report = check_built(built)
    assert report.passed, str(report)


def test_bfloat16_without_ml_dtypes_is_a_clear_spec_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    with pytest.raises(SpecError, match=(
            r"^t: input\.dtype: \"bfloat16\" needs the optional ml_dtypes package \(pip install "
            r"-e '\.\[bfloat16\]'\); without it use \"float16\", \"float32\" or \"float64\"$")):
        parse_spec(doc({"type": "tanh"}, input={"dtype": "bfloat16"}), source="t")
