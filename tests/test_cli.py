"""The ``gradcheck`` command line: each command, each output format, exit codes, and a
table of bad inputs with their one-line messages.

Most tests run ``main([...])`` in-process with capsys; a few run the real console script
and ``python -m gradcheck`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradcheck.cli import INTERNAL, MISMATCH, OK, USAGE, main
from gradcheck.ops.losses import LOSSES

ROOT = Path(__file__).resolve().parents[1]

HEAD = "[input]\nshape = [2, 3, 8, 8]\n"
CONV = "[[layer]]\ntype = 'conv'\nout_channels = 4\n"


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


# --------------------------------------------------------------------------- check


def test_check_without_spec_runs_the_builtin_cnn(capsys):
    code, out, err = run(["check"], capsys)
    assert code == OK, out + err
    assert "gradcheck <built-in default>: PASSED" in out
    for name in ("input", "layer0.conv.w", "layer0.conv.b", "layer2.conv.w", "layer5.dense.w"):
        assert f"\n{name} " in out
    assert "all 7 checks passed (1 spec," in out
    assert err == ""                                  # no progress display: not a terminal


def test_check_json_is_one_object_on_stdout(capsys, at_root):
    code, out, err = run(["check", "specs/conv_tanh.toml", "specs/small_cnn.toml", "--json"],
                         capsys)
    assert code == OK and err == ""
    data = json.loads(out)
    assert data["format"] == 1 and data["passed"] is True
    assert isinstance(data["elapsed_s"], float) and data["elapsed_s"] > 0
    names = [c["name"] for c in data["checks"]]
    assert names[:3] == ["specs/conv_tanh.toml::input", "specs/conv_tanh.toml::layer0.conv.w",
                         "specs/conv_tanh.toml::layer0.conv.b"]
    assert len(names) == 3 + 7 and len(set(names)) == 10
    for c in data["checks"]:
        assert c["passed"] is True
        assert c["max_abs_error"] >= 0 and c["max_rel_error"] >= 0
        assert len(c["worst_index"]) == len(c["shape"])


def test_buggy_user_layer_fails_with_the_right_diagnosis(capsys, at_root):
    code, out, _ = run(["check", "specs/examples/user_layer_buggy.toml", "--json"], capsys)
    assert code == MISMATCH
    checks = {c["argument"]: c for c in json.loads(out)["checks"]}
    assert checks["input"]["passed"] is False
    assert checks["input"]["diagnosis"]["cause"] == "kernel_not_rotated"
    # the weight and bias gradients of the buggy layer are right
    assert checks["layer0.python.w"]["passed"] and checks["layer0.python.b"]["passed"]


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_buggy_user_layer_with_any_loss_is_a_mismatch_with_its_diagnosis(loss, capsys, at_root,
                                                                         tmp_path):
    # the layer's input gradient forgets to rotate the kernel, whatever loss follows it:
    # a wrong gradient (exit 1, named), never bad input (exit 2)
    spec = tmp_path / "buggy.toml"
    spec.write_text((ROOT / "specs/examples/user_layer_buggy.toml").read_text()
                    + f'\n[loss]\ntype = "{loss}"\n')
    code, out, err = run(["check", str(spec), "--json"], capsys)
    assert code == MISMATCH, err
    assert err == ""
    checks = {c["argument"]: c for c in json.loads(out)["checks"]}
    assert checks["input"]["passed"] is False
    assert checks["input"]["diagnosis"]["cause"] == "kernel_not_rotated"
    assert checks["input"]["diagnosis"]["message"].startswith(
        "In layer 0 (examples.my_layers:BuggyConvLayer), which computes a correlation")
    assert checks["layer0.python.w"]["passed"] and checks["layer0.python.b"]["passed"]


def test_corrected_user_layer_passes(capsys, at_root):
    code, out, _ = run(["check", "specs/examples/user_layer.toml"], capsys)
    assert code == OK, out
    assert "all 3 checks passed" in out


def test_text_report_of_a_failure_points_at_the_worst_element(capsys, at_root):
    code, out, _ = run(["check", "specs/examples/user_layer_buggy.toml"], capsys)
    assert code == MISMATCH
    assert "input: 144/144 FAIL; worst at index (" in out
    assert "likely cause: In layer 0 (examples.my_layers:BuggyConvLayer)" in out
    assert "the kernel was not rotated" in out
    assert out.rstrip().endswith("s)") and "1 of 3 checks FAILED" in out


def test_junit_xml_one_testcase_per_check_and_per_layer(capsys, at_root, tmp_path):
    path = tmp_path / "report.xml"
    code, _, _ = run(["check", "specs/conv_tanh.toml", "specs/examples/user_layer_buggy.toml",
                      "--junit-xml", str(path), "-q"], capsys)
    assert code == MISMATCH
    root = ET.parse(path).getroot()
    cases = list(root.iter("testcase"))
    # 6 tensors, and the layers: conv and tanh of the first spec, the user's conv
    assert [c.get("name") for c in cases if c.get("name").startswith("layer ")] == \
        ["layer 0 (conv)", "layer 1 (tanh)", "layer 0 (examples.my_layers:BuggyConvLayer)"]
    assert len(cases) == 9 and root.get("tests") == "9" and root.get("failures") == "2"
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == \
        [("specs/examples/user_layer_buggy.toml", "input"),
         ("specs/examples/user_layer_buggy.toml", "layer 0 (examples.my_layers:BuggyConvLayer)")]
    assert "analytic" in failed[0].find("failure").get("message")
    assert failed[1].find("failure").get("type") == "LayerBackwardWrong"
    assert "kernel was not rotated" in failed[1].find("failure").text


def test_seed_and_mode_options_reach_the_checker(capsys):
    code, out, _ = run(["check", "--json", "--seed", "3", "--mode", "fast"], capsys)
    assert code == OK
    spec = json.loads(out)["specs"][0]
    assert spec["seed"] == 3 and spec["mode"] == "fast"
    assert {c["mode"] for c in json.loads(out)["checks"]} == {"fast"}


def test_quiet_and_verbose(capsys, at_root):
    code, out, _ = run(["check", "-q"], capsys)
    assert code == OK and out.startswith("gradcheck: all 7 checks passed") and \
        out.count("\n") == 1
    code, out, _ = run(["check", "specs/conv_tanh.toml", "-v"], capsys)
    assert "layer0.conv.b: ok; worst at index" in out


# --------------------------------------------------------------------------- user code


USER = """
    import numpy as np

    class Raises:
        def forward(self, x):
            return 2 * x
        def backward(self, g, x):
            return (helper(g),)

    def helper(g):
        raise ZeroDivisionError("user bug here")

    class NaNGrad:
        def forward(self, x):
            return 2 * x
        def backward(self, g, x):
            out = 2 * g
            out[0, 0] = np.nan
            return (out,)

    class WrongShape:
        def forward(self, x):
            return 2 * x
        def backward(self, g, x):
            return (2 * g[:, :-1],)
"""


@pytest.fixture
def user_specs(tmp_path, monkeypatch):
    (tmp_path / "cli_user_t.py").write_text(textwrap.dedent(USER))
    sys.modules.pop("cli_user_t", None)
    for name in ("Raises", "NaNGrad", "WrongShape"):
        (tmp_path / f"{name}.toml").write_text(
            f"[input]\nshape = [2, 3]\n[[layer]]\ntype = 'python'\ntarget = 'cli_user_t:{name}'\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("cli_user_t", None)


@pytest.mark.parametrize("name, message", [
    ("Raises", "cli_user_t:Raises.backward raised ZeroDivisionError: user bug here"),
    ("NaNGrad", "cli_user_t:NaNGrad.backward returned nan in grad_x at index (0, 0)"),
    ("WrongShape", "cli_user_t:WrongShape.backward returned grad_x of shape (2, 2); expected "
                   "(2, 3), the shape of x"),
])
def test_user_code_failure_is_exit_1_and_stated(capsys, user_specs, name, message):
    code, out, err = run(["check", f"{name}.toml"], capsys)
    assert code == MISMATCH
    assert f"gradcheck {name}.toml: ERROR (user code): {message}" in out
    assert "Traceback" not in out + err
    code, out, _ = run(["check", f"{name}.toml", "--json"], capsys)
    entry = json.loads(out)["checks"][0]
    assert entry["name"] == f"{name}.toml" and entry["passed"] is False
    assert entry["error"].startswith(message)


def test_user_traceback_with_verbose(capsys, user_specs):
    code, out, _ = run(["check", "Raises.toml", "-v"], capsys)
    assert code == MISMATCH
    assert "Traceback (most recent call last)" in out and "in helper" in out


def test_one_failing_user_spec_does_not_stop_the_others(capsys, user_specs):
    code, out, _ = run(["check", "Raises.toml", "--json", "--seed", "0"], capsys)
    code2, out2, _ = run(["check", "Raises.toml", str(ROOT / "specs/small_cnn.toml"), "--json"],
                         capsys)
    assert code == code2 == MISMATCH
    data = json.loads(out2)
    assert [s["passed"] for s in data["specs"]] == [False, True]
    assert len(data["checks"]) == 1 + 7


# --------------------------------------------------------------------------- bad input


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return name


BAD = [
    # (id, file name, content or None, extra argv, pinned message after "gradcheck: error: ")
    ("missing", "nope.toml", None, [],
     r"nope\.toml: no such file; give the path of a \.toml, \.json or \.yaml spec file"),
    ("directory", "adir", "DIR", [],
     r"adir: is a directory, not a spec file; give the files in it, e\.g\. adir/\*\.toml"),
    ("empty", "empty.toml", "  \n", [],
     r"empty\.toml: is empty; a spec needs an \[input\] table and at least one \[\[layer\]\], "
     r"e\.g\. \[input\] shape = \[2, 3, 8, 8\]"),
    ("binary", "bin.toml", b"\x89PNG\r\n\x1a\n\x00\x00", [],
     r"bin\.toml: is a binary file \(a NUL byte at offset 8\), not a text spec file"),
    ("not utf-8", "latin.toml", b"name = '\xe9'\n", [],
     r"latin\.toml: is not UTF-8 text \(byte 0xe9 at offset 8\); save the spec as UTF-8"),
    # after a byte order mark: the byte and its offset in the file (used to be the byte
    # and offset past the mark: 0x3d at offset 8)
    ("not utf-8 after a BOM", "bom.toml", b"\xef\xbb\xbfname = '\xe9'\n", [],
     r"bom\.toml: is not UTF-8 text \(byte 0xe9 at offset 11\); save the spec as UTF-8"),
    ("toml syntax", "syntax.toml", "[input\nshape = [1]\n", [],
     r"syntax\.toml: invalid TOML: Expected '\]' at the end of a table declaration \(at line 1, "
     r"column 7\)"),
    ("toml bare word", "bare.toml", HEAD + "dtype = float32   # unquoted\n", [],
     r"bare\.toml: invalid TOML: Invalid value \(at line 3, column 9\); a string needs quotes: "
     r"dtype = \"float32\"$"),
    ("json syntax", "syntax.json", '{"input": {"shape": [1, 2]},}', [],
     r"syntax\.json: invalid JSON: Expecting property name enclosed in double quotes \(at line "
     r"1, column 29\)"),
    ("yaml syntax", "syntax.yaml", "input:\n  shape: [1, 2\n", [],
     r"syntax\.yaml: invalid YAML: expected ',' or '\]', but got '<stream end>' \(at line 3, "
     r"column 1\)"),
    ("json list", "list.json", "[1, 2]", [],
     r"list\.json: the document must be a table \(mapping\) of keys such as input, layer, loss "
     r"and check; got a list"),
    ("unknown top key", "top.toml", HEAD + "[[layr]]\ntype = 'tanh'\n", [],
     r"top\.toml: layr: unknown key; did you mean \"layer\"\? valid keys for the top level: "
     r"name, description, input, layer, loss, check, train"),
    ("unknown layer key", "key.toml", HEAD + CONV + "kernal = 3\n", [],
     r"key\.toml: layer\[0\]\.kernal: unknown key; did you mean \"kernel\"\? valid keys for a "
     r"conv layer: out_channels, kernel, stride, padding, dilation, groups, bias, convention"),
    ("wrong-case type key", "case.toml", HEAD + "[[layer]]\nType = 'relu'\n", [],
     r"case\.toml: layer\[0\]\.Type: unknown key; did you mean \"type\"\? \(keys are "
     r"case-sensitive\); every \[\[layer\]\] needs type \(conv, maxpool, avgpool, flatten, dense, "
     r"python or an activation name such as tanh\)"),
    ("unknown layer type", "type.toml", HEAD + "[[layer]]\ntype = 'tnah'\n", [],
     r"type\.toml: layer\[0\]\.type: unknown layer type \"tnah\"; did you mean \"tanh\"\? valid "
     r"types: conv, maxpool, avgpool, flatten, dense, python, identity, sigmoid, tanh, .*"),
    ("a layer type gradcheck does not have", "bn.toml", HEAD + "[[layer]]\ntype = 'batchnorm'\n",
     [], r"bn\.toml: layer\[0\]\.type: unknown layer type \"batchnorm\"; valid types: conv, .*, "
     r"hard_tanh; a layer of another kind \(a batch norm, say\) is a python layer: type = "
     r"\"python\" with target = \"module:Class\" \(your own forward and backward\) or a PyTorch "
     r"class such as target = \"torch\.nn:BatchNorm2d\" with kwargs = \{num_features = C\} "
     r"\(see docs/spec-format\.md, Your own layer\)"),
    ("wrong type", "str.toml", HEAD + CONV + "kernel = '3'\n", [],
     r"str\.toml: layer\[0\]\.kernel: expected a positive int or a list of 2 positive ints, "
     r"got \"3\""),
    ("negative size", "neg.toml", HEAD + CONV + "kernel = -3\n", [],
     r"neg\.toml: layer\[0\]\.kernel: expected a positive int or a list of 2 positive ints, "
     r"got -3"),
    ("zero size", "zero.toml", "[input]\nshape = [2, 0, 8, 8]\n[[layer]]\ntype = 'tanh'\n", [],
     r"zero\.toml: input\.shape: expected a list of 2 to 5 positive ints \(N, C, \*spatial with "
     r"0 to 3 spatial dims\), got \[2, 0, 8, 8\]"),
    ("kernel too large", "big.toml", HEAD + CONV + "kernel = 5\npadding = 0\ndilation = 2\n", [],
     r"big\.toml: layer\[0\]\.kernel: 5 \(dilated extent 9\) is larger than the padded input "
     r"along spatial dim 0: size 8 \+ padding 0\+0 = 8; use a kernel of at most 8 there or more "
     r"padding"),
    ("groups", "groups.toml", HEAD + CONV + "kernel = 3\ngroups = 2\n", [],
     r"groups\.toml: layer\[0\]\.groups: 2 does not divide the 3 input channels of shape "
     r"\(2, 3, 8, 8\); valid: 1"),
    ("dtype", "dtype.toml", "[input]\nshape = [2, 3]\ndtype = 'float8'\n[[layer]]\ntype = 'tanh'\n",
     [], r"dtype\.toml: input\.dtype: expected one of \"float16\", \"bfloat16\", \"float32\", "
         r"\"float64\", got \"float8\"; did "
         r"you mean \"float64\"\?"),
    ("huge loc", "loc.toml", "[input]\nshape = [2, 3]\nloc = 1e308\n[[layer]]\ntype = 'tanh'\n",
     [], r"loc\.toml: input\.loc: 1e\+308 is too large: \|loc\| must be at most 1e77 for "
         r"float64 inputs \(1e9 for float32\), so that the drawn input and the squares and "
         r"products the check forms from it stay finite"),
    ("huge scale", "scale.toml", "[input]\nshape = [2, 3]\ndtype = 'float32'\nscale = 1e300\n"
     "[[layer]]\ntype = 'tanh'\n", [],
     r"scale\.toml: input\.scale: 1e\+300 is too large: scale must be at most 1e9 for float32 "
     r"inputs \(1e77 for float64\), so that the drawn input and the squares and products the "
     r"check forms from it stay finite"),
    ("too large", "huge.toml", "[input]\nshape = [100000, 3, 1024, 1024]\n[[layer]]\ntype = 'tanh'\n",
     ["--max-memory", "8GiB"],
     r"huge\.toml: input\.shape: \[100000, 3, 1024, 1024\] \(float64\) through these layers "
     r"needs about 18\.3 TiB to check \(input, parameters and every layer's output\), more than "
     r"the 8\.0 GiB limit \(--max-memory\); use a smaller shape or raise the limit with "
     r"--max-memory or \[check\] max_memory"),
    ("not importable", "imp.toml", HEAD + "[[layer]]\ntype = 'python'\ntarget = 'no_such_mod_x:L'\n",
     [], r"imp\.toml: layer\[0\]\.target: cannot import module \"no_such_mod_x\": no module "
         r"named \"no_such_mod_x\" on the import path \(the current directory .* is on it\); run "
         r"gradcheck from the directory that holds it"),
    ("no forward", "fwd.toml", HEAD + "[[layer]]\ntype = 'python'\ntarget = 'json:JSONDecoder'\n",
     [], r"fwd\.toml: layer\[0\]\.target: JSONDecoder has no forward or backward method; a python "
         r"layer needs forward\(x, \*params\) -> y and backward\(grad_y, x, \*params\) -> "
         r"\(grad_x, \*grad_params\)"),
    ("dense on images", "dense.toml", HEAD + CONV + "kernel = 3\n[[layer]]\ntype = 'dense'\n"
     "out_features = 2\n", [],
     r"dense\.toml: layer\[1\]: a dense layer needs a 2-D input \(N, features\), but layer\[0\] "
     r"gives shape \(2, 4, 6, 6\); put a \{type = \"flatten\"\} layer before it"),
    ("check mode", "mode.toml", HEAD + "[[layer]]\ntype = 'tanh'\n[check]\nmode = 'quick'\n", [],
     r"mode\.toml: check\.mode: expected one of \"full\", \"sampled\", \"fast\", \"auto\", "
     r"got \"quick\""),
]


#: The key each case of BAD is at fault in (None: the file as a whole), as data.
BAD_KEYS = {
    "missing": None, "directory": None, "empty": None, "binary": None, "not utf-8": None,
    "not utf-8 after a BOM": None,
    "toml syntax": None, "toml bare word": None, "json syntax": None, "yaml syntax": None, "json list": None,
    "unknown top key": "layr", "unknown layer key": "layer[0].kernal",
    "wrong-case type key": "layer[0].Type", "unknown layer type": "layer[0].type",
    "a layer type gradcheck does not have": "layer[0].type",
    "wrong type": "layer[0].kernel", "negative size": "layer[0].kernel",
    "zero size": "input.shape", "kernel too large": "layer[0].kernel",
    "groups": "layer[0].groups", "dtype": "input.dtype", "huge loc": "input.loc",
    "huge scale": "input.scale", "too large": "input.shape",
    "not importable": "layer[0].target", "no forward": "layer[0].target",
    "dense on images": "layer[1]", "check mode": "check.mode",
}


def _bad_case(case, tmp_path, monkeypatch):
    _, name, content, extra, message = case
    if name.endswith(".yaml") and "invalid YAML" in message:
        pytest.importorskip("yaml")
    monkeypatch.chdir(tmp_path)
    if content == "DIR":
        (tmp_path / name).mkdir()
    elif content is not None:
        _write(tmp_path, name, content)
    return name, extra, message


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, case):
    name, extra, message = _bad_case(case, tmp_path, monkeypatch)
    code, out, err = run(["check", name, *extra], capsys)
    assert code == USAGE
    assert out == ""                 # nothing was checked: the line on stderr is all
    assert err.count("\n") == 1 and "Traceback" not in err
    import re

    assert re.fullmatch(r"gradcheck: error: " + message + r"\n", err), err


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_in_the_json_and_junit_with_its_file_and_key(capsys, tmp_path,
                                                                   monkeypatch, case):
    assert set(BAD_KEYS) == {c[0] for c in BAD}
    name, extra, message = _bad_case(case, tmp_path, monkeypatch)
    xml = tmp_path / "out" / "r.xml"
    code, out, err = run(["check", name, *extra, "--json", "--junit-xml", str(xml)], capsys)
    assert code == USAGE and err.count("\n") == 1
    data = json.loads(out)
    assert data["format"] == 1 and data["passed"] is False
    assert data["checks"] == [] and data["specs"] == []
    assert data["summary"] == {"checks": 0, "failed": 0, "specs": 0, "errors": 1}
    assert data["errors"] == [{"spec": name, "key": BAD_KEYS[case[0]],
                               "message": err[len("gradcheck: error: "):-1]}]
    root = ET.parse(xml).getroot()
    assert (root.get("tests"), root.get("errors"), root.get("failures")) == ("1", "1", "0")
    (case_,) = root.iter("testcase")
    assert case_.get("classname") == name
    assert case_.get("name") == (BAD_KEYS[case[0]] or "spec")
    error = case_.find("error")
    assert error.get("type") == "SpecError" and error.get("message") == data["errors"][0]["message"]


def test_wrong_output_shape_of_a_python_layer_is_a_spec_error(capsys, at_root, tmp_path):
    spec = tmp_path / "shape.toml"
    spec.write_text("[input]\nshape = [2, 2, 6, 6]\n[[layer]]\ntype = 'python'\n"
                    "target = 'examples.my_layers:ConvLayer'\n"
                    "params = { w = [3, 2, 3, 3], b = [3] }\noutput_shape = [2, 3, 5, 5]\n")
    code, out, err = run(["check", str(spec)], capsys)
    # a valid 3x3 correlation of a 6x6 input is 4x4: the spec is wrong, not the layer
    assert code == USAGE and out == ""
    assert err == (f"gradcheck: error: {spec}: layer[0].output_shape: [2, 3, 5, 5] does not "
                   f"match the layer: examples.my_layers:ConvLayer.forward returned shape "
                   f"(2, 3, 4, 4) for an input of shape (2, 2, 6, 6); write output_shape = "
                   f"[2, 3, 4, 4] or leave the key out\n")


BAD_TYPE = ("gradcheck: error: bad.toml: layer[0].type: unknown layer type \"tnah\"; did you "
            "mean \"tanh\"? valid types: ")


def test_a_bad_spec_does_not_stop_the_others_but_the_status_stays_2(capsys, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "bad.toml", HEAD + "[[layer]]\ntype = 'tnah'\n")
    good = str(ROOT / "specs/conv_tanh.toml")
    failing = str(ROOT / "specs/examples/user_layer_buggy.toml")
    monkeypatch.syspath_prepend(str(ROOT))
    argv = ["check", good, "bad.toml", failing]
    # text: both good specs reported, the bad one on stderr before any check, exit 2 --
    # bad input wins over the mismatch of the third spec
    code, out, err = run(argv, capsys)
    assert code == USAGE
    assert err.startswith(BAD_TYPE) and err.count("\n") == 1
    assert f"gradcheck {good}: PASSED" in out and f"gradcheck {failing}: FAILED" in out
    assert "; 1 spec not checked (bad input, exit status 2)\n" in out
    assert "gradcheck: 1 of 6 checks FAILED (2 specs, " in out
    # JSON: every check of the good specs, and the bad one under errors
    code, out, err = run(argv + ["--json"], capsys)
    assert code == USAGE and err.startswith(BAD_TYPE)
    data = json.loads(out)
    assert data["passed"] is False
    assert [s["spec"] for s in data["specs"]] == [good, failing]
    assert len(data["checks"]) == 6
    assert [c["passed"] for c in data["checks"] if c["spec"] == good] == [True] * 3
    assert data["errors"] == [{"spec": "bad.toml", "key": "layer[0].type",
                               "message": err[len("gradcheck: error: "):-1]}]
    # JUnit: an <error> testcase for the bad spec beside the others
    code, _, _ = run(argv + ["--junit-xml", "r.xml", "-q"], capsys)
    assert code == USAGE
    root = ET.parse(tmp_path / "r.xml").getroot()
    # 6 tensors + 3 layers (the buggy user layer fails on its own) + the bad spec
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("10", "2", "1")
    outcome = {(c.get("classname"), c.get("name")):
               ("error" if c.find("error") is not None else
                "failure" if c.find("failure") is not None else "ok")
               for c in root.iter("testcase")}
    assert outcome[("bad.toml", "layer[0].type")] == "error"
    assert outcome[(failing, "input")] == "failure"
    assert [v for (spec, _), v in outcome.items() if spec == good] == ["ok"] * 5


def test_a_spec_refused_at_build_time_is_an_error_and_the_others_run(capsys, tmp_path,
                                                                      monkeypatch):
    # the memory estimate is compared once the spec is built: still an error of that spec
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "huge.toml", "[input]\nshape = [100000, 3, 1024, 1024]\n[[layer]]\n"
                                  "type = 'tanh'\n")
    good = str(ROOT / "specs/conv_tanh.toml")
    code, out, err = run(["check", "huge.toml", good, "--max-memory", "8GiB", "--json"],
                         capsys)
    assert code == USAGE
    assert err.startswith("gradcheck: error: huge.toml: input.shape: [100000, 3, 1024, 1024]")
    data = json.loads(out)
    assert [s["spec"] for s in data["specs"]] == [good] and data["specs"][0]["passed"]
    assert [(e["spec"], e["key"]) for e in data["errors"]] == [("huge.toml", "input.shape")]


@pytest.mark.parametrize("argv, message", [
    (["check", "--mode", "slow"],
     "gradcheck check: error: --mode must be one of full, sampled, fast, auto, got 'slow' "
     "(see gradcheck check --help)"),
    (["check", "--mode", "ful"],
     "gradcheck check: error: --mode must be one of full, sampled, fast, auto, got 'ful' "
     "(see gradcheck check --help)"),
    (["check", "--order", "3"],
     "gradcheck check: error: --order must be one of 1, 2, got 3 (see gradcheck check --help)"),
    (["train", "--data", "mnist"],
     "gradcheck train: error: --data must be one of digits, synthetic, got 'mnist' "
     "(see gradcheck train --help)"),
    (["check", "-q", "-v"], "gradcheck check: error: argument -v/--verbose: not allowed with "
                            "argument -q/--quiet (see gradcheck check --help)"),
    (["frobnicate"], "gradcheck: error: COMMAND must be one of check, explain, fuzz, train, "
                     "got 'frobnicate' (see gradcheck --help)"),
])
def test_usage_errors_exit_2(capsys, argv, message):
    # one line naming the option and what is valid: no multi-line usage
    code, out, err = run(argv, capsys)
    assert code == USAGE and out == ""
    assert err == message + "\n"


@pytest.mark.parametrize("argv, message", [
    # negative numbers in any spelling reach the range check ("expected one argument" before)
    (["check", "--rtol", "-1e-3"], "--rtol must be >= 0, got -0.001"),
    (["check", "--rtol=-1e-3"], "--rtol must be >= 0, got -0.001"),
    (["check", "--rtol", "-0.5"], "--rtol must be >= 0, got -0.5"),
    (["check", "--atol", "-2"], "--atol must be >= 0, got -2.0"),
    (["check", "--atol", "-1E+2"], "--atol must be >= 0, got -100.0"),
    (["check", "--rtol", "-.5"], "--rtol must be >= 0, got -0.5"),
    (["check", "--rtol", "-inf"], "--rtol must be a finite number, got -inf"),
    (["check", "--rtol", "nan"], "--rtol must be a finite number, got nan"),
    (["check", "--rtol", "abc"], "--rtol must be a number, got 'abc'"),
    (["check", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["check", "--seed", "-1e3"], "--seed must be an int, got '-1e3'"),
    (["check", "--seed", "1.5"], "--seed must be an int, got '1.5'"),
    (["check", "--budget", "-5"], "--budget must be >= 1, got -5"),
    (["check", "--budget", "0"], "--budget must be >= 1, got 0"),
    (["check", "--time-budget", "-2.5"], "--time-budget must be > 0, got -2.5"),
    (["check", "--time-budget", "0"], "--time-budget must be > 0, got 0.0"),
    (["check", "specs/conv_tanh.toml", "--mode", "full", "--seed", "-3"],
     "--seed must be >= 0, got -3"),
    (["check", "--max-memory", "lots"], "--max-memory must be a positive number of bytes "
                                        "such as 2000000000 or 2GiB, got 'lots'"),
    (["check", "--max-memory", "-1"], "--max-memory must be a positive number of bytes such "
                                      "as 2000000000 or 2GiB, got '-1'"),
    (["check", "--max-memory", "-2GiB"], "--max-memory must be a positive number of bytes "
                                         "such as 2000000000 or 2GiB, got '-2GiB'"),
    (["train", "--max-memory", "0"], "--max-memory must be a positive number of bytes such "
                                     "as 2000000000 or 2GiB, got '0'"),
    (["fuzz", "--examples", "-3"], "--examples must be >= 1, got -3"),
    (["fuzz", "--seed", "-2"], "--seed must be >= 0, got -2"),
])
def test_numeric_options_are_range_checked_in_one_line(capsys, argv, message):
    code, out, err = run(argv, capsys)
    assert (code, out) == (USAGE, "")
    assert err == f"gradcheck: error: {message}\n"


def test_numeric_options_in_range_are_taken(capsys, at_root):
    code, out, err = run(["check", "specs/conv_tanh.toml", "--json", "--rtol", "1e-3",
                          "--atol=0", "--seed", "2", "--budget", "10000", "--time-budget",
                          "30"], capsys)
    assert (code, err) == (OK, "")
    assert json.loads(out)["specs"][0]["seed"] == 2


def test_no_command_and_help(capsys):
    code, _, err = run([], capsys)
    assert code == USAGE and "choose a command: check, explain, fuzz or train" in err
    code, out, _ = run(["--help"], capsys)
    assert code == OK and "check" in out and "explain" in out and "fuzz" in out
    code, out, _ = run(["check", "--help"], capsys)
    assert code == OK and "--junit-xml" in out


@pytest.mark.parametrize("columns", [None, "", "50", "200", "0", "-3", "wide", " 90 "])
def test_help_is_as_wide_as_argparse_makes_it(columns, monkeypatch, capsys):
    import argparse
    import shutil

    from gradcheck import cli

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli._terminal_columns() == shutil.get_terminal_size().columns
    argvs = (["--help"], ["check", "--help"], ["train", "--help"])
    ours = [run(argv, capsys)[1] for argv in argvs]
    monkeypatch.setattr(cli, "_Formatter", argparse.HelpFormatter)   # argparse's own
    assert ours == [run(argv, capsys)[1] for argv in argvs]


def test_junit_xml_creates_missing_parent_directories(capsys, at_root, tmp_path):
    target = tmp_path / "missing-dir" / "deeper" / "r.xml"
    code, _, err = run(["check", "specs/conv_tanh.toml", "--junit-xml", str(target), "-q"],
                       capsys)
    assert code == OK and err == ""
    assert [c.get("name") for c in ET.parse(target).getroot().iter("testcase")] == \
        ["input", "layer0.conv.w", "layer0.conv.b", "layer 0 (conv)", "layer 1 (tanh)"]


def test_unwritable_junit_path_is_a_usage_error_before_any_check(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "sub" / "r.xml"           # its parent would be inside a file
    code, out, err = run(["check", "--junit-xml", str(target)], capsys)
    assert code == USAGE and out == ""            # refused before the built-in check ran
    assert err == (f"gradcheck: error: --junit-xml {target}: cannot create the directory "
                   f"{blocker / 'sub'} (Not a directory); give a writable path\n")
    code, out, err = run(["check", "--junit-xml", str(tmp_path)], capsys)
    assert code == USAGE and out == ""
    assert err == (f"gradcheck: error: --junit-xml {tmp_path}: is a directory; give a file path "
                   f"such as {tmp_path / 'gradcheck.xml'}\n")


def test_a_bug_in_gradcheck_keeps_its_traceback_and_exit_3(capsys, monkeypatch):
    import gradcheck.spec

    def broken(*a, **k):
        raise RuntimeError("internal failure for the test")

    monkeypatch.setattr(gradcheck.spec, "build", broken)
    code, _, err = run(["check"], capsys)
    assert code == INTERNAL
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: internal failure for the test" in err
    assert "this is a bug in gradcheck" in err
    assert err.endswith("\ngradcheck: internal error: this is a bug in gradcheck, not in the "
                        "code under test; please report it with the traceback above\n")


# --------------------------------------------------------------------------- plots


def test_plot_without_matplotlib_is_a_clear_usage_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    code, out, err = run(["check", "--plot", str(tmp_path / "plots")], capsys)
    assert code == USAGE and out == ""
    assert err == ("gradcheck: error: --plot needs matplotlib, which is not installed; install "
                   "the plots extra (pip install -e '.[plots]' in the gradcheck checkout) or leave "
                   "out --plot\n")


def test_plot_writes_pngs_of_failing_tensors(capsys, at_root, tmp_path):
    pytest.importorskip("matplotlib")
    outdir = tmp_path / "plots"
    code, out, _ = run(["check", "specs/examples/user_layer_buggy.toml", "--plot", str(outdir)],
                       capsys)
    assert code == MISMATCH
    # the kernel is not rotated: a difference far above the numerical error bar, so the
    # error-vs-step curve would only be a flat line, and is not drawn
    files = sorted(p.name for p in outdir.iterdir())
    assert files == ["user_layer_buggy__input__gradients.png"]
    for f in files:
        assert (outdir / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {outdir / f}" in out


def test_plot_of_a_fast_mode_failure_says_why_there_is_none(capsys, at_root, tmp_path):
    pytest.importorskip("matplotlib")
    outdir = tmp_path / "plots"
    code, out, _ = run(["check", "specs/examples/user_layer_buggy.toml", "--mode", "fast",
                        "--plot", str(outdir)], capsys)
    assert code == MISMATCH
    assert not any(outdir.iterdir())
    assert ("no plot of specs/examples/user_layer_buggy.toml::input: fast mode checks random "
            "directions, not single elements; rerun with --mode full for a picture\n") in out


def test_step_curve_levels_off_at_the_bug_and_dips_when_right(at_root):
    import numpy as np

    from gradcheck._plot import step_curve
    from gradcheck.spec import build, load_spec

    for path, right in (("specs/examples/user_layer.toml", True),
                        ("specs/examples/user_layer_buggy.toml", False)):
        built = build(load_spec(path))
        steps, numeric, analytic = step_curve(built, "input", (0, 0, 2, 3), seed=0)
        err = np.abs(numeric - analytic)
        mid = (steps > 1e-7) & (steps < 1e-3)
        if right:
            assert err[mid].min() < 1e-8 * max(1.0, abs(analytic))
        else:
            assert err.min() > 1e-3                     # no step makes the bug go away


# --------------------------------------------------------------------------- progress


def test_progress_only_on_a_terminal():
    import io
    import time

    from gradcheck._progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        with Progress(stream, delay=0.0, interval=0.01) as p:
            p.update("checking x.toml (1/1)")
            time.sleep(0.1)
    assert "checking x.toml (1/1)" in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")          # erased at the end
    assert pipe.getvalue() == ""


# --------------------------------------------------------------------------- processes


def test_python_dash_m_gradcheck():
    proc = subprocess.run([sys.executable, "-m", "gradcheck", "check", "--json", "-q"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] is True


def test_console_script_bad_and_good_specs_in_one_run(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + "[[layer]]\ntype = 'conv'\nout_channels = 2\nkernal = 3\n")
    proc = subprocess.run([sys.executable, "-m", "gradcheck", "check", str(bad),
                           "specs/conv_tanh.toml", "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == (f"gradcheck: error: {bad}: layer[0].kernal: unknown key; did you "
                           f"mean \"kernel\"? valid keys for a conv layer: out_channels, "
                           f"kernel, stride, padding, dilation, groups, bias, convention\n")
    data = json.loads(proc.stdout)
    assert data["passed"] is False and len(data["checks"]) == 3
    assert all(c["passed"] for c in data["checks"])
    assert data["errors"] == [{"spec": str(bad), "key": "layer[0].kernal",
                               "message": proc.stderr[len("gradcheck: error: "):-1]}]


def test_console_script_exit_codes():
    exe = shutil.which("gradcheck")
    if exe is None:
        pytest.skip("the gradcheck console script is not installed")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([exe, "check", "specs/examples/user_layer_buggy.toml", "-q"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert proc.returncode == 1 and "FAILED" in proc.stdout
    proc = subprocess.run([exe, "check", "specs/does-not-exist.toml"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("gradcheck: error: specs/does-not-exist.toml: no such file; give the "
                           "path of a .toml, .json or .yaml spec file\n")


# --------------------------------------------------------------------------- fuzz


def _user_conv_documents(st, *, buggy):
    """Spec documents with the example user conv layer (right, or possibly the buggy one)."""
    targets = ["examples.my_layers:ConvLayer"] + (["examples.my_layers:BuggyConvLayer"]
                                                  if buggy else [])

    @st.composite
    def documents(draw):
        n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        k = draw(st.integers(1, 3))
        size = draw(st.integers(k, 5))
        return {"input": {"shape": [n, c, size, size]},
                "layer": [{"type": "python", "target": draw(st.sampled_from(targets)),
                           "params": {"w": [o, c, k, k], "b": [o]}},
                          {"type": draw(st.sampled_from(["tanh", "sigmoid", "identity"]))}],
                "check": {"mode": "full"}}

    return documents()


def test_fuzz_writes_the_shrunk_failing_spec_and_it_reruns(capsys, at_root, tmp_path):
    st = pytest.importorskip("hypothesis.strategies")
    from gradcheck._fuzz import fuzz

    out = tmp_path / "failures"
    code = fuzz(examples=30, seed=1, out=str(out), strategy=_user_conv_documents(st, buggy=True))
    text = capsys.readouterr().out
    assert code == 1 and "a drawn spec FAILED: gradient mismatch: input:" in text
    path = out / "fuzz-seed1.toml"
    assert f"rerun it with: gradcheck check {path}" in text
    spec = __import__("gradcheck.spec", fromlist=["load_spec"]).load_spec(path)
    layer = spec.layers[0].options
    assert layer["target"] == "examples.my_layers:BuggyConvLayer"
    # shrunk: a 2x2 kernel is the smallest that shows a missing rotation
    assert spec.input.shape[0] == 1 and layer["params"]["w"][2:] == [2, 2]
    code, out_text, _ = run(["check", str(path), "-q"], capsys)
    assert code == MISMATCH and "kernel was not rotated" in out_text


def test_fuzz_all_passing(capsys, at_root, tmp_path):
    st = pytest.importorskip("hypothesis.strategies")
    from gradcheck._fuzz import fuzz

    code = fuzz(examples=5, seed=0, out=str(tmp_path / "f"),
                strategy=_user_conv_documents(st, buggy=False))
    assert code == 0
    assert capsys.readouterr().out == "gradcheck fuzz: 5 drawn specs, all passed (seed 0)\n"
    assert not (tmp_path / "f").exists()          # nothing found: no empty directory


def test_fuzz_command_uses_the_public_strategies(capsys, tmp_path):
    pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("gradcheck.strategies")
    if not hasattr(strategies, "spec_documents"):
        pytest.skip("gradcheck.strategies has no spec_documents strategy yet")
    code, out, err = run(["fuzz", "--examples", "3", "--seed", "0", "--out",
                          str(tmp_path / "f")], capsys)
    assert code == OK, out + err
    assert out == "gradcheck fuzz: 3 drawn specs, all passed (seed 0)\n"


def test_check_starts_lean():
    """``gradcheck check`` imports neither hypothesis, matplotlib nor PyYAML."""
    code = ("import sys; from gradcheck.cli import main; rc = main(['check', '-q']); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'hypothesis', 'matplotlib', 'yaml', 'torch'}); print(rc, heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.stdout.splitlines()[-1] == "0 []", proc.stdout + proc.stderr


def test_a_passing_check_imports_no_diagnosis():
    """The cause catalogue and the user-layer loader are imported only when needed."""
    code = ("import sys; from gradcheck.cli import main; "
            "rc = main(['check', '-q', 'specs/conv_tanh.toml']); "
            "print(rc, sorted(m for m in sys.modules if m in {'gradcheck.checker._causes', "
            "'gradcheck.checker._describe', 'gradcheck.spec._user'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.stdout.splitlines()[-1] == "0 []", proc.stdout + proc.stderr


def test_json_and_yaml_specs_check_like_toml(capsys, at_root):
    pytest.importorskip("yaml")
    code, out, _ = run(["check", "specs/examples/conv1d.json", "specs/examples/conv3d.yaml",
                        "--json"], capsys)
    assert code == OK
    data = json.loads(out)
    assert [s["name"] for s in data["specs"]] == ["conv1d", "conv3d"]
    assert data["specs"][0]["seed"] == 1                  # [check] seed = 1 in the JSON file
    shapes = {c["name"]: c["shape"] for c in data["checks"]}
    assert shapes["specs/examples/conv1d.json::layer0.conv.w"] == [4, 2, 5]
    assert shapes["specs/examples/conv3d.yaml::layer0.conv.w"] == [2, 2, 2, 3, 3]


def test_budget_switches_large_tensors_to_sampled_mode(capsys, at_root):
    code, out, _ = run(["check", "specs/conv_tanh.toml", "--mode", "auto", "--budget", "100",
                        "--json"], capsys)
    assert code == OK
    checks = {c["argument"]: c for c in json.loads(out)["checks"]}
    modes = {name: c["mode"] for name, c in checks.items()}
    assert modes == {"input": "sampled", "layer0.conv.w": "sampled", "layer0.conv.b": "full"}


def test_user_activation_layer_with_derivative_at_output_is_named(capsys, tmp_path,
                                                                   monkeypatch):
    # a user's sigmoid whose backward evaluates sigma' at the output a instead of z:
    # the layer is recognized as the table's sigmoid and the mistake named
    (tmp_path / "badsig.py").write_text(textwrap.dedent("""
        import numpy as np
        class BadSig:
            def forward(self, x):
                return 1 / (1 + np.exp(-x))
            def backward(self, g, x):
                s = self.forward(self.forward(x))
                return (g * s * (1 - s),)
    """))
    _write(tmp_path, "s.toml", '[input]\nshape = [2, 3, 4, 4]\n\n[[layer]]\ntype = "conv"\n'
                               'out_channels = 2\nkernel = 3\n\n[[layer]]\ntype = "python"\n'
                               'target = "badsig:BadSig"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["check", "s.toml", "--json"], capsys)
    assert code == MISMATCH
    checks = json.loads(out)["checks"]
    assert {c["diagnosis"]["cause"] for c in checks} == {"derivative_at_output"}
    assert "which computes sigmoid elementwise" in checks[0]["diagnosis"]["message"]
