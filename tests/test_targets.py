"""``type = "python"`` targets as people write them, and the spec's second order.

A file path, a module of functions, a class with ``kwargs``; the spec's folder on the
import path (run from another directory); errors naming ``layer[i].target`` /
``layer[i].kwargs``; PyTorch Functions and Modules as targets, ``order = 2``.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from gradcheck.cli import MISMATCH, OK, USAGE, main

ROOT = Path(__file__).resolve().parent.parent

SCALE = textwrap.dedent("""
    import numpy as np

    class Scale:
        def __init__(self, factor=1.0):
            self.factor = factor
        def forward(self, x, w):
            return self.factor * x * w
        def backward(self, g, x, w):
            return self.factor * g * w, self.factor * (g * x).sum(axis=0)
""")
FUNCTIONS = textwrap.dedent("""
    def forward(x, w):
        return x * w
    def backward(g, x, w):
        return g * w, (g * x).sum(axis=0)
""")
TORCH_LAYERS = textwrap.dedent("""
    import torch

    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x * w
        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return g * w, (g * x).sum(0)

    class DetachedScale(Scale):
        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return (g * w).detach(), (g * x).sum(0)

    class Block(torch.nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        def forward(self, x):
            return torch.tanh(self.conv(x))

    class ConvBN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3)
            self.bn = torch.nn.BatchNorm2d(3)     # buffers: running_mean, running_var
        def forward(self, x):
            return self.bn(self.conv(x))
""")


def _spec(layer, shape=(4, 5), check=""):
    lines = [f"[input]\nshape = {list(shape)}\n[[layer]]\ntype = \"python\""]
    lines += [f"{k} = {v}" for k, v in layer.items()]
    return "\n".join(lines) + "\n" + check


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with layers in lib/ and specs in specs/, run from elsewhere."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "scale_t.py").write_text(SCALE)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "fns_t.py").write_text(FUNCTIONS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = list(sys.path)
    yield tmp_path
    assert sys.path == before        # nothing left on the import path
    for name in [m for m in sys.modules if m.startswith(("fns_t", "lib", "_gradcheck_target"))]:
        sys.modules.pop(name, None)


def _run(capsys, path, *args):
    code = main(["check", str(path), "-q", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("layer", [
    {"target": '"../lib/scale_t.py:Scale"', "params": "{ w = [5] }"},
    {"target": '"../lib/scale_t.py:Scale"', "params": "{ w = [5] }", "kwargs": "{ factor = 3.0 }"},
    {"target": '"fns_t"', "params": "{ w = [5] }"},                    # beside the spec
    {"target": '"lib.scale_t:Scale"', "params": "{ w = [5] }"},        # from the project folder
])
def test_targets_resolve_from_another_directory(project, capsys, layer):
    path = project / "specs" / "s.toml"
    path.write_text(_spec(layer))
    code, out, err = _run(capsys, path)
    assert (code, err) == (OK, ""), out + err
    assert "all 2 checks passed" in out


def test_kwargs_reach_the_constructor(project):
    from gradcheck.spec import build, load_spec

    path = project / "specs" / "s.toml"
    path.write_text(_spec({"target": '"../lib/scale_t.py:Scale"', "params": "{ w = [5] }",
                           "kwargs": "{ factor = 3.0 }"}))
    b = build(load_spec(path))
    y = b.network.forward(b.x, b.params).output
    assert (y == 3.0 * b.x * b.params[0]["w"]).all()


@pytest.mark.parametrize("layer, message", [
    ({"target": '"../lib/nosuch.py:Scale"'},
     r"s\.toml: layer\[0\]\.target: no file \"\.\./lib/nosuch\.py\" \(looked for .*\); give "
     r"a path to a \.py file, relative to the spec file's folder"),
    ({"target": '"../lib/scale_t.py:Scale"', "kwargs": "{ factr = 2 }"},
     r"s\.toml: layer\[0\]\.kwargs: Scale\(\*\*kwargs\) raised TypeError: .*factr.*; give the "
     r"constructor's arguments as kwargs = \{name = value, \.\.\.\}"),
    ({"target": '"../lib/scale_t.py:Scale"', "kwargs": "{}", "options": "{}"},
     r"s\.toml: layer\[0\]\.options: the older name of kwargs, given beside kwargs"),
    ({"target": '"not a target"'},
     r"s\.toml: layer\[0\]\.target: expected \"package\.module:Object\", \"package\.module\" "
     r"\(its functions forward and backward\), \"path/to/file\.py:Object\" or "
     r"\"path/to/file\.py\", got \"not a target\""),
    ({"target": '"json"'},
     r"s\.toml: layer\[0\]\.target: module \"json\" has no forward or backward function; a "
     r"python layer needs forward"),
    ({"target": '"nosuch_mod_q"'},
     r"s\.toml: layer\[0\]\.target: cannot import module \"nosuch_mod_q\": no module named "
     r"\"nosuch_mod_q\" on the import path \(the current directory .* is on it, and .*specs, "
     r".*, the spec's folder and its project folder\); put it in one of these folders"),
])
def test_bad_targets_name_the_key(project, capsys, layer, message):
    import re

    path = project / "specs" / "s.toml"
    path.write_text(_spec(layer))
    code, out, err = _run(capsys, path)
    assert code == USAGE and out == ""
    assert re.fullmatch(r"gradcheck: error: .*" + message + r".*\n", err), err


def test_the_example_spec_runs_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, ROOT / "specs" / "examples" / "user_layer.toml")
    assert code == OK, err


# --------------------------------------------------------------------------- PyTorch targets


@pytest.fixture
def torch_project(project):
    torch = pytest.importorskip("torch", reason="PyTorch targets need PyTorch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    (project / "lib" / "tlayers_t.py").write_text(TORCH_LAYERS)
    yield project
    torch.set_num_threads(before)


def test_a_torch_function_and_a_module_class_are_targets(torch_project, capsys):
    path = torch_project / "specs" / "t.toml"
    path.write_text(_spec({"target": '"../lib/tlayers_t.py:Scale"', "params": "{ w = [5] }"}))
    assert _run(capsys, path)[0] == OK
    path.write_text(_spec({"target": '"../lib/tlayers_t.py:Block"',
                           "kwargs": "{ cin = 2, cout = 3 }"}, shape=(2, 2, 5, 5)))
    code = main(["check", str(path), "--json"])
    out, _ = capsys.readouterr()
    import json

    names = [c["name"].split("::")[1] for c in json.loads(out)["checks"]]
    assert code == OK
    assert names == ["input", "layer0.python.conv.weight", "layer0.python.conv.bias"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_module_with_buffers_runs_in_the_specs_dtype(torch_project, capsys, dtype):
    # BatchNorm2d's running_mean/var are buffers: they follow the spec's dtype with the
    # parameters (a float64 spec once failed with "expected scalar type Double")
    path = torch_project / "specs" / "t.toml"
    path.write_text(_spec({"target": '"../lib/tlayers_t.py:ConvBN"'}, shape=(2, 2, 6, 6),
                          check="[check]\nmode = \"full\"\n").replace(
        "shape = [2, 2, 6, 6]", f"shape = [2, 2, 6, 6]\ndtype = \"{dtype}\""))
    code = main(["check", str(path), "--json"])
    out, err = capsys.readouterr()
    import json

    checks = json.loads(out)["checks"]
    assert code == OK, out + err
    assert [c["name"].split("::")[1] for c in checks] == [
        "input", "layer0.python.conv.weight", "layer0.python.conv.bias",
        "layer0.python.bn.weight", "layer0.python.bn.bias"]
    assert {c["dtype"] for c in checks} == {dtype}


def test_order_2_checks_the_double_backward(torch_project, capsys):
    path = torch_project / "specs" / "t.toml"
    path.write_text(_spec({"target": '"../lib/tlayers_t.py:Block"',
                           "kwargs": "{ cin = 2, cout = 2 }"}, shape=(1, 2, 4, 4),
                          check="[check]\norder = 2\n"))
    code, out, err = _run(capsys, path)
    assert code == OK and "all 7 checks passed" in out, out + err
    path.write_text(_spec({"target": '"../lib/tlayers_t.py:DetachedScale"',
                           "params": "{ w = [5] }"}))
    assert _run(capsys, path)[0] == OK                      # order 1 is right
    code = main(["check", str(path), "--order", "2"])
    out, err = capsys.readouterr()
    assert code == MISMATCH
    assert "order2.layer0.python.w: 5/5 FAIL" in out and "cut from torch's graph" in out
    code = main(["check", str(path), "--order", "2", "-q"])   # -q keeps the notes
    out, err = capsys.readouterr()
    assert code == MISMATCH and "  note: order 2: the backward's result for" in out
    assert "cut from torch's graph" in out


@pytest.mark.parametrize("layer, check, message", [
    ({"target": '"../lib/scale_t.py:Scale"', "params": "{ w = [5] }"}, "[check]\norder = 2\n",
     r"check\.order: 2 needs every layer to be a PyTorch autograd\.Function or nn\.Module "
     r"target; layer\[0\] \(\.\./lib/scale_t\.py:Scale\) is a NumPy layer: no framework can "
     r"differentiate its backward again"),
    ({"target": '"../lib/tlayers_t.py:Scale"', "params": "{ w = [5] }"},
     "[[layer]]\ntype = \"tanh\"\n[check]\norder = 2\n",
     r"check\.order: 2 needs .*; layer\[1\] is a built-in tanh layer, written in NumPy"),
    ({"target": '"../lib/tlayers_t.py:Scale"', "params": "{ w = [5] }"},
     "[loss]\ntype = \"mse\"\n[check]\norder = 2\n", r"check\.order: 2 .*leave \[loss\] out"),
    ({"target": '"../lib/tlayers_t.py:Scale"', "params": "{ w = [5] }",
      "kwargs": "{ a = 1 }"}, "", r"layer\[0\]\.kwargs: Scale is a torch\.autograd\.Function"),
    ({"target": '"../lib/tlayers_t.py:Block"', "params": "{ w = [5] }",
      "kwargs": "{ cin = 2, cout = 2 }"}, "",
     r"layer\[0\]\.params: \.\./lib/tlayers_t\.py:Block is an nn\.Module, whose parameters are "
     r"its own \(conv\.weight, conv\.bias\); leave params out"),
    ({"target": '"../lib/tlayers_t.py:Scale"', "params": "{ w = [5] }"}, "[check]\norder = 3\n",
     r"check\.order: expected 1 \(the backward\) or 2"),
])
def test_impossible_orders_and_torch_keys_are_usage_errors(torch_project, capsys, layer,
                                                           check, message):
    import re

    path = torch_project / "specs" / "t.toml"
    shape = (2, 2, 4, 4) if "Block" in layer["target"] else (4, 5)
    path.write_text(_spec(layer, shape=shape, check=check))
    code, out, err = _run(capsys, path)
    assert code == USAGE, out + err
    assert re.search(message, err), err
    assert err.count("\n") == 1


CUBES = textwrap.dedent("""
    import torch

    class Cube(torch.autograd.Function):          # no parameters: apply(x) alone
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3
        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 3 * g * x ** 2

    class HalfCube(Cube):                         # the slip: 1.5 where 3 belongs
        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 1.5 * g * x ** 2
""")


@pytest.mark.parametrize("params", ["", "{}"])
def test_a_torch_function_without_parameters_is_a_target(torch_project, capsys, params):
    (torch_project / "lib" / "cubes_t.py").write_text(CUBES)
    path = torch_project / "specs" / "c.toml"
    layer = {"target": '"../lib/cubes_t.py:Cube"'}
    if params:
        layer["params"] = params
    path.write_text(_spec(layer, shape=(2, 3, 4, 4)))
    code, out, err = _run(capsys, path)
    assert (code, err) == (OK, ""), out + err
    assert "all 1 checks passed" in out
    layer["target"] = '"../lib/cubes_t.py:HalfCube"'
    path.write_text(_spec(layer, shape=(2, 3, 4, 4)))
    code = main(["check", str(path), "--json"])
    out, err = capsys.readouterr()
    import json

    data = json.loads(out)
    assert code == MISMATCH and err == ""
    (check,) = data["checks"]
    assert check["diagnosis"]["cause"] == "scaled"          # 1.5 x² = ½ · 3 x²
    assert check["diagnosis"]["evidence"]["factor"] == pytest.approx(0.5, rel=1e-6)


def test_init_reaches_an_nn_module_and_names_are_checked_when_built(torch_project):
    from gradcheck._errors import SpecError
    from gradcheck.spec import build, load_spec

    path = torch_project / "specs" / "t.toml"
    path.write_text(_spec({"target": '"../lib/tlayers_t.py:Block"',
                           "kwargs": "{ cin = 2, cout = 3 }",
                           "init": '{ "conv.bias" = "ones" }'}, shape=(2, 2, 5, 5)))
    params = build(load_spec(path)).params[0]
    assert (params["conv.bias"] == 1.0).all() and not (params["conv.weight"] == 1.0).all()
    path.write_text(_spec({"target": '"../lib/tlayers_t.py:Block"',
                           "kwargs": "{ cin = 2, cout = 3 }",
                           "init": '{ bias = "ones" }'}, shape=(2, 2, 5, 5)))
    with pytest.raises(SpecError, match=r"t\.toml: layer\[0\]\.init\.bias: not a parameter of "
                                        r"\.\./lib/tlayers_t\.py:Block; its parameters are: "
                                        r"conv\.weight, conv\.bias$"):
        build(load_spec(path))


@pytest.mark.parametrize("jobs, share", [("1", 1), ("2", 1)])
def test_torch_threads_are_the_jobs_share_while_a_torch_target_is_checked(
        torch_project, capsys, monkeypatch, jobs, share):
    # every tensor of the spec is small: one thread, with -j 1 too (at most 2 only for a
    # tensor of 32768 elements or more: the doctest of gradcheck._parallel.torch_threads)
    import torch

    torch.set_num_threads(4)
    calls, seen = [], []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    monkeypatch.setattr(torch.autograd, "grad", (lambda grad: lambda *a, **k: (
        seen.append(torch.get_num_threads()), grad(*a, **k))[1])(torch.autograd.grad))
    path = torch_project / "specs" / "t.toml"
    path.write_text(_spec({"target": '"../lib/tlayers_t.py:Scale"', "params": "{ w = [5] }"}))
    assert main(["check", str(path), "-q", "-j", jobs]) == OK
    assert seen and set(seen) == {share}               # while the backward ran
    assert calls == [share, 4] and torch.get_num_threads() == 4    # and put back


def test_a_missing_object_lists_what_the_module_defines_not_what_it_imports(project, capsys):
    path = project / "specs" / "s.toml"
    path.write_text(_spec({"target": '"../lib/scale_t.py:Scal"', "params": "{ w = [5] }"}))
    code, out, err = _run(capsys, path)
    assert code == USAGE
    # scale_t.py imports numpy as np and defines the class Scale
    assert err.endswith('has no attribute "Scal"; did you mean "Scale"? it defines: Scale\n')


TUPLE_FORWARD = """
import numpy as np

class Layer:
    def forward(self, x):
        return (np.sin(x),)          # a tuple where one array belongs

    def backward(self, g, x):
        return (g * np.cos(x),)
"""


def test_a_python_layer_whose_forward_returns_a_tuple_is_named_as_the_forward(tmp_path, capsys):
    (tmp_path / "tuple_fwd_t.py").write_text(TUPLE_FORWARD)
    spec = tmp_path / "s.toml"
    spec.write_text(_spec({"target": '"tuple_fwd_t.py:Layer"'}, shape=(2, 3)))
    try:
        code, out, err = _run(capsys, spec)
    finally:
        sys.modules.pop("tuple_fwd_t", None)
    assert code == 1
    assert ("tuple_fwd_t.py:Layer.forward returned y as a tuple of 1 item(s); expected one "
            "NumPy array ('return y', not 'return y,' nor 'return y, extra')") in out + err
    assert "backward" not in out + err


def test_a_python_layer_whose_forward_returns_a_nested_list_is_not_told_of_tuples(tmp_path,
                                                                                   capsys):
    (tmp_path / "list_fwd_t.py").write_text(TUPLE_FORWARD.replace(
        "return (np.sin(x),)", "return np.sin(x).tolist()"))
    spec = tmp_path / "s.toml"
    spec.write_text(_spec({"target": '"list_fwd_t.py:Layer"'}, shape=(2, 3)))
    try:
        code, out, err = _run(capsys, spec)
    finally:
        sys.modules.pop("list_fwd_t", None)
    assert code == 1
    assert ("list_fwd_t.py:Layer.forward returned y as a list of 2 item(s); expected one "
            "NumPy array (np.asarray of it, if the list holds the output's values)") in out + err


NOISY = """
import numpy as np

class Noisy:
    calls = 0

    def forward(self, x):
        Noisy.calls += 1                 # state kept between calls
        return x * (1 + 1e-3 * (Noisy.calls % 3))

    def backward(self, g, x):
        return (g,)
"""


def test_a_nondeterministic_network_names_its_python_layers(tmp_path, capsys):
    (tmp_path / "noisy_t.py").write_text(NOISY)
    spec = tmp_path / "s.toml"
    spec.write_text("[input]\nshape = [2, 3]\n[[layer]]\ntype = \"tanh\"\n"
                    "[[layer]]\ntype = \"python\"\ntarget = \"noisy_t.py:Noisy\"\n")
    try:
        code, out, err = _run(capsys, spec)
    finally:
        sys.modules.pop("noisy_t", None)
    assert code == 1
    assert "the network's forward pass is not deterministic: two calls" in out + err
    assert ("; the built-in layers are deterministic, so look at this one: layer 1 "
            "(noisy_t.py:Noisy)") in out + err
