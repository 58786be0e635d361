"""Your own layer, first-class: nothing passes by omission, the wrong layer is named.

A gradient not returned (None) is a zero gradient that fails where the true one is not
zero; when a network check fails, every layer is checked on its own and the culprit is
named (console, JSON ``layers``, JUnit, Python); what weakened a verdict (a float32
gradient, an ``rtol`` floor) is a note, also under ``-q``; ``check_layer`` takes a user's
layer; an impossible ``order = 2`` is a spec error at load time; training gets the
network's suspects and the culprit pass. The true gradients the tests rely on are
derived by hand in each test (or taken from PyTorch's autograd), never from the checker.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from examples.my_layers import BatchNorm, BuggyBatchNorm, BuggyConvLayer, ConvLayer
from gradcheck import check_grad, check_layer, check_network, check_vjp
from gradcheck._errors import ConfigurationError, SpecError, UserCodeError
from gradcheck.cli import MISMATCH, OK, USAGE, main
from gradcheck.ops.layers import Activation, Conv
from gradcheck.ops.network import Sequential
from gradcheck.spec import load_spec, resolve_targets
from gradcheck.spec._user import UserLayer

ROOT = Path(__file__).resolve().parents[1]
BN_SPEC = "specs/examples/batchnorm_buggy.toml"
CULPRIT = ("culprit: layer 1 (examples.my_layers:BuggyBatchNorm): its backward is wrong; "
           "layers 0 and 2 are right")


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- point 1: None


def test_a_none_gradient_fails_where_the_true_gradient_is_not_zero():
    # f = sin(x) * w: dC/dw = R * sin(x), zero exactly where x = 0 (the middle element)
    x = np.linspace(-1.0, 1.0, 5)
    w = np.linspace(0.5, 2.0, 5)
    report = check_vjp(lambda x, w: np.sin(x) * w,
                       lambda g, x, w: (g * np.cos(x) * w, None), (x, w), argnames=("x", "w"))
    assert not report.passed and report["x"].passed
    a = report["w"]
    assert a.mode == "full" and a.n_failed == 4 and not a.failed_mask[2]
    assert np.array_equal(a.analytic, np.zeros(5))           # None was checked as zeros
    assert a.diagnosis.cause == "no_gradient_returned"
    assert a.diagnosis.message.startswith("No gradient was returned for this argument: the "
                                          "backward gave None")
    assert "no gradient returned (None)" in a.note
    assert "w: no gradient returned (f_vjp gave None); checked as a zero gradient" in \
        "\n".join(report.notes)
    assert "likely cause: No gradient was returned" in str(report)


def test_a_none_gradient_passes_where_the_true_gradient_is_zero_and_says_so():
    x = np.linspace(-1.0, 1.0, 5)
    report = check_vjp(lambda x, unused: np.sin(x), lambda g, x, u: (g * np.cos(x), None),
                       (x, np.ones(3)), argnames=("x", "unused"))
    assert report.passed and report["unused"].mode == "full"
    assert any(n.startswith("unused: no gradient returned") for n in report.notes)
    # only wrt leaves an argument out, and then nothing is said about it
    only_x = check_vjp(lambda x, u: np.sin(x), lambda g, x, u: (g * np.cos(x), None),
                       (x, np.ones(3)), wrt=0)
    assert [a.name for a in only_x.arguments] == ["arg0"] and only_x.notes == ()


def test_check_grad_and_fast_mode_treat_none_as_zero():
    x = np.array([0.5, -1.0, 2.0])
    report = check_grad(lambda x, w: float(np.sum(w * x ** 2)),
                        lambda x, w: (2 * w * x, None), (x, np.ones(3)))
    assert not report.passed and report["arg1"].diagnosis.cause == "no_gradient_returned"
    fast = check_vjp(lambda x, w: x * w, lambda g, x, w: (g * w, None),
                     (x, np.ones(3)), mode="fast")
    assert not fast["arg1"].passed and "no gradient returned" in fast["arg1"].note


def test_the_wrong_number_of_gradients_is_still_an_error():
    with pytest.raises(UserCodeError, match=r"f_vjp must return one gradient per argument "
                                            r"\(2: arg0, arg1\); got 1 values"):
        check_vjp(lambda x, w: x * w, lambda g, x, w: (g * w,), (np.ones(2), np.ones(2)))
    layer = UserLayer("mylayers:Scale", _Scale(wrong_count=True), {"a": (1,)})
    with pytest.raises(UserCodeError, match=r"mylayers:Scale\.backward returned 1 values; "
                                            r"expected a tuple of 2 arrays \(grad_x, grad_a\)"):
        layer.backward(np.ones((2, 3)), np.ones((2, 3)), np.ones(1))


class _Scale:
    """y = a * x, a of shape (1,); the backward may forget grad_a or return too few."""

    def __init__(self, forget=False, wrong_count=False):
        self.forget, self.wrong_count = forget, wrong_count

    def forward(self, x, a):
        return a * x

    def backward(self, g, x, a):
        if self.wrong_count:
            return (g * a,)
        return g * a, (None if self.forget else np.sum(g * x).reshape(1))


def test_a_python_layer_returning_none_fails_with_the_cause(tmp_path, capsys, monkeypatch):
    (tmp_path / "scale_none.py").write_text(
        "import numpy as np\n"
        "class Scale:\n"
        "    def forward(self, x, a):\n"
        "        return a * x\n"
        "    def backward(self, g, x, a):\n"
        "        return g * a, None\n")
    (tmp_path / "s.toml").write_text('[input]\nshape = [2, 3]\n[[layer]]\ntype = "python"\n'
                                     'target = "scale_none.py:Scale"\nparams = { a = [1] }\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(["check", "s.toml", "--json"], capsys)
    assert code == MISMATCH
    data = json.loads(out)
    by_name = {c["argument"]: c for c in data["checks"]}
    assert by_name["input"]["passed"] and not by_name["layer0.python.a"]["passed"]
    assert by_name["layer0.python.a"]["diagnosis"]["cause"] == "no_gradient_returned"
    assert any("no gradient returned" in n for n in data["specs"][0]["notes"])
    assert [(l["index"], l["type"], l["target"], l["passed"]) for l in data["layers"]] == \
        [(0, "python", "scale_none.py:Scale", False)]


def test_a_layer_returning_no_input_error_is_the_culprit():
    # layer 1 returns None for grad_x: the conv below gets a zero error, its tensors fail,
    # and the culprit pass names layer 1 with the cause
    net = Sequential([Conv(2, 2), UserLayer("m:Scale", _NoInputGradient(), {"a": (1,)}),
                      Activation("tanh")], (2, 1, 4, 4))
    report = check_network(net)
    assert not report.passed and not report["input"].passed
    assert str(report).count("culprit: layer 1 (m:Scale): its backward is wrong; layers 0 "
                             "and 2 are right") == 1
    culprit = report.layers[1].report
    assert culprit["x"].diagnosis.cause == "no_gradient_returned" and culprit["a"].passed
    # the conv below, checked with the zero error that reached it, would prove nothing:
    # it gets a seeded cotangent instead, and says so
    assert report.layers[0].passed and "error reaching it is zero" in report.layers[0].note


class _NoInputGradient:
    def forward(self, x, a):
        return a * x

    def backward(self, g, x, a):
        return None, np.sum(g * x).reshape(1)


# --------------------------------------------------------------------------- point 2: culprit


def test_the_example_batch_norm_backward_matches_torch():
    # the independent route behind "layers 0 and 2 are right": the right BatchNorm's
    # backward is PyTorch's batch_norm gradient, and the buggy one's is not
    torch = pytest.importorskip("torch", reason="PyTorch is the reference batch norm")
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)
    expected = torch.autograd.grad(y, (tx, tg, tb), torch.tensor(g))
    np.testing.assert_allclose(BatchNorm().forward(x, gamma, beta), y.detach().numpy(),
                               atol=1e-12)
    for ours, ref in zip(BatchNorm().backward(g, x, gamma, beta), expected):
        np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-10, atol=1e-12)
    wrong = BuggyBatchNorm().backward(g, x, gamma, beta)
    assert not np.allclose(wrong[0], expected[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(wrong[1], expected[1].numpy(), rtol=1e-10)


def test_the_console_names_the_culprit(at_root, capsys):
    code, out, _ = _run(["check", BN_SPEC], capsys)
    assert code == MISMATCH
    # the failing rows are the conv's and the input's; the batch norm's own pass
    assert "layer0.conv.w        MISMATCH" in out and "layer1.python.gamma  ok" in out
    assert out.count(CULPRIT) == 1
    assert "  layer 1 (examples.my_layers:BuggyBatchNorm) alone: x: " in out
    code, quiet, _ = _run(["check", BN_SPEC, "-q"], capsys)
    assert code == MISMATCH and "  " + CULPRIT in quiet


def test_the_example_culprit_is_named_with_its_planted_bug(at_root, capsys):
    # BuggyBatchNorm drops sum(g_hat) from grad_x = inv/m (m g_hat - sum(g_hat) - ...):
    # its gradient is off by + inv * mean(g_hat), one constant per channel -- constant
    # along the batch and spatial axes 0, 2, 3. With gamma near 1 and beta near 0 (the
    # spec's init) no channel is dead behind the relu, and that is the cause named.
    code, out, _ = _run(["check", BN_SPEC, "--json"], capsys)
    assert code == MISMATCH
    layer = json.loads(out)["layers"][1]
    (x,) = [c for c in layer["checks"] if c["name"].endswith("x")]
    assert x["n_failed"] == x["n_elements"] == 96                 # every channel
    assert x["diagnosis"]["cause"] == "missing_term_constant"
    assert x["diagnosis"]["evidence"]["axes"] == [0, 2, 3]
    conv_b = next(c for c in json.loads(out)["checks"] if c["name"].endswith("conv.b"))
    assert conv_b["diagnosis"]["cause"] == "gradient_where_none"  # a bias before a norm


def test_json_has_one_layers_entry_per_layer_of_every_spec(at_root, capsys):
    code, out, _ = _run(["check", BN_SPEC, "specs/conv_tanh.toml", "--json"], capsys)
    assert code == MISMATCH
    layers = json.loads(out)["layers"]
    assert [(l["spec"], l["index"], l["type"], l["target"], l["passed"], l["alone"])
            for l in layers] == [
        (BN_SPEC, 0, "conv", None, True, True),
        (BN_SPEC, 1, "python", "examples.my_layers:BuggyBatchNorm", False, True),
        (BN_SPEC, 2, "relu", None, True, True),
        # a right network skips the per-layer pass: verified as part of it
        ("specs/conv_tanh.toml", 0, "conv", None, True, False),
        ("specs/conv_tanh.toml", 1, "tanh", None, True, False)]
    culprit = layers[1]
    assert {c["name"] for c in culprit["checks"]} == {"x", "gamma", "beta"}
    assert [c["passed"] for c in culprit["checks"]] == [False, True, True]


def test_junit_has_a_testcase_per_layer(at_root, capsys, tmp_path):
    path = tmp_path / "r.xml"
    assert _run(["check", BN_SPEC, "--junit-xml", str(path), "-q"], capsys)[0] == MISMATCH
    suite = ET.parse(path).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases)[-3:] == ["layer 0 (conv)", "layer 1 (examples.my_layers:BuggyBatchNorm)",
                                "layer 2 (relu)"]
    fail = cases["layer 1 (examples.my_layers:BuggyBatchNorm)"].find("failure")
    assert fail.get("type") == "LayerBackwardWrong" and fail.text.startswith(CULPRIT)
    assert cases["layer 0 (conv)"].find("failure") is None
    assert suite.get("tests") == "8" and suite.get("failures") == "4"


def test_check_network_carries_the_layers():
    net = Sequential([Conv(3, 3), UserLayer("examples.my_layers:BuggyBatchNorm",
                                            BuggyBatchNorm(), {"gamma": (3,), "beta": (3,)}),
                      Activation("relu")], (2, 2, 6, 6))
    report = check_network(net)
    assert not report.passed
    assert [(l.index, l.passed, l.alone) for l in report.layers] == \
        [(0, True, True), (1, False, True), (2, True, True)]
    assert report.to_dict()["layers"][1]["name"] == "examples.my_layers:BuggyBatchNorm"
    right = Sequential([Conv(3, 3), UserLayer("examples.my_layers:BatchNorm", BatchNorm(),
                                              {"gamma": (3,), "beta": (3,)}),
                        Activation("relu")], (2, 2, 6, 6))
    passed = check_network(right)
    assert passed.passed and [l.alone for l in passed.layers] == [False] * 3
    assert "culprit" not in str(passed)
    always = check_network(right, per_layer="always")
    assert always.passed and [(l.passed, l.alone) for l in always.layers] == [(True, True)] * 3
    assert "layers: each layer's backward is right on its own (layers 0, 1 and 2)" in str(always)
    with pytest.raises(ConfigurationError, match=r"per_layer must be one of \('on_failure', "
                                                 r"'always'\); got 'never'"):
        check_network(right, per_layer="never")


def test_two_culprits_and_a_loss():
    net = Sequential([UserLayer("m:BuggyConv", BuggyConvLayer(), {"w": (2, 1, 2, 2),
                                                                 "b": (2,)}),
                      Activation("tanh"),
                      UserLayer("m:BuggyBatchNorm", BuggyBatchNorm(), {"gamma": (2,),
                                                                      "beta": (2,)})],
                     (2, 1, 5, 5), loss="mse")
    report = check_network(net)
    assert [l.passed for l in report.layers] == [False, True, False]
    assert ("culprits: layers 0 (m:BuggyConv) and 2 (m:BuggyBatchNorm): their backwards are "
            "wrong; layer 1 is right") in str(report)


def test_the_culprit_line_in_every_case():
    from gradcheck.checker import LayerResult
    from gradcheck.checker._layer_report import culprit_line

    def layers(*verdicts):
        return [LayerResult(i, "conv", "conv", None, v, True, note="why" if v is None else "")
                for i, v in enumerate(verdicts)]

    assert culprit_line(layers(True, False, True), False) == \
        "culprit: layer 1 (conv): its backward is wrong; layers 0 and 2 are right"
    assert culprit_line(layers(False, True), False) == \
        "culprit: layer 0 (conv): its backward is wrong; layer 1 is right"
    assert culprit_line(layers(True, True), False) == (
        "culprit: none found: each layer's backward is right on its own (layers 0 and 1), at "
        "the point and with the error the network gave it; look at how the layers are put "
        "together (the loss, or a layer that keeps state between calls)")
    assert culprit_line(layers(True, None), True) == (
        "layers: each layer's backward is right on its own (layer 0); layer 1 could not be "
        "checked on its own (1: why)")
    unchecked = [LayerResult(0, "conv", "conv", None, True, False)]
    assert culprit_line(unchecked, True) == ""


def test_no_culprit_in_float32_says_to_compare_with_float64():
    from types import SimpleNamespace

    from gradcheck.checker import LayerResult
    from gradcheck.checker._layer_report import culprit_line

    def layers(dtype):
        report = SimpleNamespace(arguments=(SimpleNamespace(dtype=dtype),))
        return [LayerResult(i, "conv", "conv", None, True, True, report=report)
                for i in range(2)]

    none_found = (
        "culprit: none found: each layer's backward is right on its own (layers 0 and 1), at "
        "the point and with the error the network gave it; look at how the layers are put "
        "together (the loss, or a layer that keeps state between calls)")
    assert culprit_line(layers("float64"), False) == none_found
    assert culprit_line(layers("float32"), False) == none_found + (
        "; the check is in float32: if the same network passes in float64, suspect the "
        "float32 check of the whole network rather than your layers")
    assert culprit_line(layers("float32"), True) == (
        "layers: each layer's backward is right on its own (layers 0 and 1)")


# --------------------------------------------------------------------------- point 6: notes


def test_a_float32_gradient_for_a_float64_argument_is_noted():
    x = np.linspace(-1.0, 1.0, 6)
    report = check_vjp(np.sin, lambda g, x: ((g * np.cos(x)).astype(np.float32),), (x,),
                       argnames=("x",))
    assert report.passed
    assert report.notes == ("x: the gradient returned is float32 for a float64 argument, so "
                            "it is checked at float32 tolerance (eps 1.19e-07 instead of "
                            "2.22e-16): errors up to about 1e-5 relative can go unseen; return "
                            "the gradient in the argument's dtype",)
    right = check_vjp(np.sin, lambda g, x: (g * np.cos(x),), (x,))
    assert right.notes == ()


def test_an_rtol_floor_that_lets_a_factor_2_bug_pass_is_noted():
    # d sin(x)/dx = cos(x); the backward doubles it: |a - n| = |cos x| <= 1 * |2 cos x|
    x = np.linspace(-1.0, 1.0, 6)
    doubled = check_vjp(np.sin, lambda g, x: (2 * g * np.cos(x),), (x,), rtol=1,
                        argnames=("x",))
    assert doubled.passed
    note, = doubled.notes
    assert note.startswith("rtol=1 given: every allowance is raised to at least atol + rtol "
                           "* |value|, on top of the automatic tolerance; it lets pass what "
                           "the automatic tolerance fails -- x: 6 of 6 element(s), e.g. ")
    assert not check_vjp(np.sin, lambda g, x: (2 * g * np.cos(x),), (x,)).passed
    right = check_vjp(np.sin, lambda g, x: (g * np.cos(x),), (x,), rtol=1e-3)
    assert right.notes == ("rtol=0.001 given: every allowance is raised to at least atol + "
                           "rtol * |value|, on top of the automatic tolerance; the automatic "
                           "tolerance alone gives the same verdict on every element checked "
                           "element by element",)


def test_cli_rtol_note_shows_in_text_json_and_quiet(at_root, capsys, tmp_path):
    (tmp_path / "double.py").write_text(
        "class Double:\n"
        "    def forward(self, x, a):\n"
        "        return a * x\n"
        "    def backward(self, g, x, a):\n"
        "        return 2 * g * a, 2 * (g * x).sum().reshape(1)\n")
    spec = tmp_path / "double.toml"
    spec.write_text('[input]\nshape = [2, 3]\n[[layer]]\ntype = "python"\n'
                    'target = "double.py:Double"\nparams = { a = [1] }\n')
    assert _run(["check", str(spec)], capsys)[0] == MISMATCH
    code, out, _ = _run(["check", str(spec), "--rtol", "1"], capsys)
    assert code == OK and "note: rtol=1 given: " in out and "lets pass what" in out
    code, quiet, _ = _run(["check", str(spec), "--rtol", "1", "-q"], capsys)
    assert code == OK
    assert quiet.startswith(f"gradcheck {spec}: PASSED, with notes\n  note: rtol=1 given: ")
    code, data, _ = _run(["check", str(spec), "--rtol", "1", "--json"], capsys)
    assert any("lets pass what the automatic tolerance fails" in n
               for n in json.loads(data)["specs"][0]["notes"])


def test_quiet_shows_a_passing_specs_notes(tmp_path, capsys):
    spec = tmp_path / "big.toml"
    spec.write_text('[input]\nshape = [2, 3, 6, 6]\n[[layer]]\ntype = "tanh"\n'
                    '[check]\nbudget = 10\n')
    code, out, _ = _run(["check", str(spec), "-q"], capsys)
    assert code == OK
    assert out.startswith(f"gradcheck {spec}: PASSED, with notes\n  note: input: 216 "
                          f"elements > budget 10; checked in sampled mode: sampled 216 of "
                          f"216 elements (")


# --------------------------------------------------------------------------- point 8: words


def test_diagnoses_name_the_backprop_rule(at_root, capsys):
    code, out, _ = _run(["check", "specs/examples/user_layer_buggy.toml"], capsys)
    assert code == MISMATCH
    assert "where the backprop rule needs the kernel rotated by 180°, δ ⋆ rot180(w)" in out
    assert "seed's rule" not in out


# --------------------------------------------------------------------------- point 9


def test_check_layer_takes_a_user_object():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 5, 5))
    params = {"w": rng.standard_normal((3, 2, 3, 3)), "b": rng.standard_normal(3)}
    assert check_layer(ConvLayer(), x, params).passed
    report = check_layer(BuggyConvLayer(), x, params)
    assert not report.passed and report["w"].passed and report["b"].passed
    assert report["x"].diagnosis.cause == "kernel_not_rotated"
    assert report.name == "examples.my_layers:BuggyConvLayer"
    with pytest.raises(ConfigurationError, match=r"layer is the class examples\.my_layers:"
                                                 r"ConvLayer; pass an instance, e\.g\. "
                                                 r"ConvLayer\(\)"):
        check_layer(ConvLayer, x, params)
    with pytest.raises(ConfigurationError, match=r"layer must be a layer of gradcheck\.ops\."
                                                 r"layers, an object with forward"):
        check_layer(42, x)


def test_check_layer_takes_a_python_mapping(at_root):
    spec = {"type": "python", "target": "examples.my_layers:BuggyBatchNorm",
            "params": {"gamma": [3], "beta": [3]}}
    report = check_layer(spec, input_shape=(4, 3, 3, 3))
    assert not report.passed and report["x"].n_failed > 0 and report["gamma"].passed
    spec["target"] = "examples.my_layers:BatchNorm"
    assert check_layer(spec, input_shape=(4, 3, 3, 3)).passed
    assert check_layer({"type": "conv", "out_channels": 2, "kernel": 3},
                       input_shape=(1, 2, 5, 5)).passed
    with pytest.raises(SpecError, match=r"check_layer: layer\[0\]\.target: cannot import "
                                        r"module \"no_such_module\""):
        check_layer({"type": "python", "target": "no_such_module:X"}, input_shape=(1, 2))


# --------------------------------------------------------------------------- follow-ups


def test_an_impossible_order_2_is_a_spec_error_beside_the_others(at_root, capsys):
    code, out, err = _run(["check", "specs/conv_tanh.toml", "--order", "2", "--json"], capsys)
    assert code == USAGE
    data = json.loads(out)
    assert data["errors"] == [{
        "spec": "specs/conv_tanh.toml", "key": "check.order",
        "message": "specs/conv_tanh.toml: check.order: 2 needs every layer to be a PyTorch "
                   "autograd.Function or nn.Module target; layer[0] is a built-in conv layer, "
                   "written in NumPy: its backward has no derivative of its own to check"}]
    assert err.count("\n") == 1
    spec = load_spec(ROOT / "specs/conv_tanh.toml")
    with pytest.raises(SpecError, match=r"check\.order: 2 needs") as info:
        resolve_targets(spec, order=2)
    assert info.value.key == "check.order"
    resolve_targets(spec)                                     # order 1: nothing to refuse


def test_training_names_the_culprit_layer(tmp_path):
    from gradcheck.train import train

    spec = tmp_path / "t.toml"
    spec.write_text(
        '[input]\nshape = [8, 1, 6, 6]\n'
        '[[layer]]\ntype = "conv"\nout_channels = 2\nkernel = 3\npadding = 1\n'
        '[[layer]]\ntype = "tanh"\n'
        '[[layer]]\ntype = "python"\ntarget = "examples.my_layers:BuggyConvLayer"\n'
        'params = { w = [3, 2, 3, 3], b = [3] }\n'
        '[[layer]]\ntype = "flatten"\n[[layer]]\ntype = "dense"\nout_features = 3\n'
        '[check]\nmode = "full"\n[train]\nepochs = 1\nsamples = 40\n')
    result = train(str(spec), data="synthetic", epochs=1)
    assert not result.passed
    report = result.failed_check.report
    assert [l.passed for l in report.layers] == [True, True, False, True, True]
    assert ("culprit: layer 2 (examples.my_layers:BuggyConvLayer): its backward is wrong; "
            "layers 0, 1, 3 and 4 are right") in str(report)
    # the network's suspects: the user conv's own mistake, carried down to the tensors below
    cause = report["layer0.conv.w"].diagnosis
    assert cause.cause == "kernel_not_rotated" and cause.message.startswith(
        "In layer 2 (examples.my_layers:BuggyConvLayer)")


def test_torch_undefined_gradient_fails_with_the_cause():
    torch = pytest.importorskip("torch", reason="the torch adapter")
    from gradcheck.torch import check_function

    class Forgets(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x * w

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return g * w, None

    x = torch.linspace(-1, 1, 4, dtype=torch.float64)
    w = torch.linspace(0.5, 2, 4, dtype=torch.float64)    # dC/dw = R * x, no zero entry
    report = check_function(Forgets.apply, (x, w))
    assert not report.passed and report["x"].passed
    assert report["w"].diagnosis.cause == "no_gradient_returned"


def test_jax_none_cotangent_from_a_custom_vjp_is_a_zero_gradient():
    jax = pytest.importorskip("jax", reason="the jax adapter")
    jnp = pytest.importorskip("jax.numpy")
    from gradcheck.jax import check_function

    @jax.custom_vjp
    def f(x, w):
        return x * w

    f.defvjp(lambda x, w: (x * w, (x, w)), lambda res, g: (g * res[1], None))
    x, w = jnp.linspace(-1.0, 1.0, 4), jnp.linspace(0.5, 2.0, 4)
    report = check_function(f, (x, w))
    assert not report.passed and report["x"].passed and not report["w"].passed
    assert np.array_equal(report["w"].analytic, np.zeros(4))


def test_a_spec_whose_user_code_failed_lists_its_layers_unchecked(tmp_path, capsys,
                                                                  monkeypatch):
    (tmp_path / "raises.py").write_text(
        "class Raises:\n"
        "    def forward(self, x):\n"
        "        return 2 * x\n"
        "    def backward(self, g, x):\n"
        "        raise ValueError('no')\n")
    (tmp_path / "r.toml").write_text('[input]\nshape = [2, 3]\n[[layer]]\ntype = "tanh"\n'
                                     '[[layer]]\ntype = "python"\ntarget = "raises.py:Raises"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(["check", "r.toml", "--json", "--junit-xml", "r.xml"], capsys)
    assert code == MISMATCH
    assert [(l["index"], l["type"], l["target"], l["passed"], l["alone"])
            for l in json.loads(out)["layers"]] == \
        [(0, "tanh", None, None, False), (1, "python", "raises.py:Raises", None, False)]
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("errors"), suite.get("skipped")) == ("3", "1", "2")
    assert [c.get("name") for c in suite.iter("testcase")] == \
        ["build", "layer 0 (tanh)", "layer 1 (raises.py:Raises)"]


def test_a_culprit_checked_alone_is_named_by_its_own_index(at_root, tmp_path, capsys):
    # conv -> tanh -> BuggyConvLayer (kernel not rotated): the per-layer check of layer 2
    # must speak of layer 2, as the network's diagnosis does
    spec = tmp_path / "three.toml"
    spec.write_text(
        '[input]\nshape = [2, 2, 7, 7]\n'
        '[[layer]]\ntype = "conv"\nout_channels = 2\nkernel = 3\n'
        '[[layer]]\ntype = "tanh"\n'
        '[[layer]]\ntype = "python"\ntarget = "examples.my_layers:BuggyConvLayer"\n'
        'params = { w = [3, 2, 3, 3], b = [3] }\n')
    code, out, _ = _run(["check", str(spec), "--json"], capsys)
    assert code == MISMATCH
    data = json.loads(out)
    assert [l["passed"] for l in data["layers"]] == [True, True, False]
    (x,) = [c for c in data["layers"][2]["checks"] if c["name"].endswith("x")]
    assert x["diagnosis"]["cause"] == "kernel_not_rotated"
    assert x["diagnosis"]["message"].startswith(
        "In layer 2 (examples.my_layers:BuggyConvLayer), which computes a correlation")
    for check in data["checks"]:
        if check["diagnosis"]:
            assert check["diagnosis"]["message"].startswith("In layer 2 ("), check["name"]
