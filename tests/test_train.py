"""Training with the seed's five steps (gradcheck.train, ``gradcheck train``).

The steps are held against routes that share no code with them: PyTorch's autograd and
SGD (three updates of the default CNN), a dense softmax layer differentiated by hand, the
slow scipy.signal oracle for the convolution rule, and the update written out by hand. The
loop runs on the synthetic data and small networks, so the file stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck import ConfigurationError, GradcheckError, SpecError, check_vjp
from gradcheck.cli import MISMATCH, OK, USAGE, main
from gradcheck.ops import Activation, Conv, Dense, Flatten, MaxPool, Sequential, get_loss
from gradcheck.spec import loads_spec, parse_spec
from gradcheck.train import CheckRecord, TrainResult, default_train_spec, train
from gradcheck.train import _steps
from gradcheck.train._data import load_data
from gradcheck.train._loop import _batch_loss

ROOT = Path(__file__).resolve().parents[1]


def small(*layers, shape=(8, 1, 6, 6), **tables):
    """A spec document: conv 3x3 -> relu -> maxpool -> flatten -> dense 3 by default."""
    layers = layers or ({"type": "conv", "out_channels": 2, "kernel": 3, "padding": 1},
                        {"type": "relu"}, {"type": "maxpool", "kernel": 2},
                        {"type": "flatten"}, {"type": "dense", "out_features": 3})
    doc = {"name": "small", "input": {"shape": list(shape)}, "layer": list(layers)}
    doc["train"] = {"data": "synthetic", "samples": 160, "epochs": 4, "check_every": 10,
                    "learning_rate": 0.05, **tables.pop("train", {})}
    doc.update(tables)
    return doc


def labelled_loss(shape, labels):
    return _batch_loss(get_loss("softmax_cross_entropy", shape), np.asarray(labels))


# --------------------------------------------------------------------------- the five steps


def test_five_steps_match_torch_over_three_sgd_momentum_updates():
    torch = pytest.importorskip("torch")
    layers = [Conv(8, 3, padding=1), Activation("relu"), MaxPool(2), Flatten(), Dense(10)]
    net = Sequential(layers, (4, 1, 8, 8))
    rng = np.random.default_rng(0)
    params = net.init_params(rng=rng)
    xs = [rng.standard_normal((4, 1, 8, 8)) for _ in range(3)]
    ys = [rng.integers(0, 10, 4) for _ in range(3)]

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(128, 10)).double()
    with torch.no_grad():
        for mod, p in ((model[0], params[0]), (model[4], params[4])):
            mod.weight.copy_(torch.tensor(p["w"]))
            mod.bias.copy_(torch.tensor(p["b"]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    velocity = [{k: np.zeros_like(v) for k, v in p.items()} for p in params]
    for x, y in zip(xs, ys):
        bp = _steps.backprop(layers, labelled_loss((4, 10), y), x, params)
        params, velocity = _steps.sgd_momentum(params, bp.grads, velocity,
                                               learning_rate=0.1, momentum=0.9)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        opt.step()
        assert bp.loss == pytest.approx(loss.item(), rel=1e-13)
    for mod, p in ((model[0], params[0]), (model[4], params[4])):
        np.testing.assert_allclose(p["w"], mod.weight.detach().numpy(), rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(p["b"], mod.bias.detach().numpy(), rtol=1e-11, atol=1e-14)


def test_dense_softmax_gradients_by_hand():
    rng = np.random.default_rng(1)
    layers = [Flatten(), Dense(4)]
    x = rng.standard_normal((5, 2, 3))
    w, b = rng.standard_normal((4, 6)), rng.standard_normal(4)
    labels = np.array([0, 3, 1, 1, 2])
    bp = _steps.backprop(layers, labelled_loss((5, 4), labels), x, [{}, {"w": w, "b": b}])
    logits = x.reshape(5, 6) @ w.T + b
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    delta = (p - np.eye(4)[labels]) / 5                      # step 3, by hand
    np.testing.assert_allclose(bp.deltas[-1], delta, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(bp.grads[1]["w"], delta.T @ x.reshape(5, 6), rtol=1e-13)
    np.testing.assert_allclose(bp.grads[1]["b"], delta.sum(axis=0), rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(bp.deltas[0], (delta @ w).reshape(5, 2, 3), rtol=1e-13)
    assert bp.loss == pytest.approx(-np.mean(np.log(p[np.arange(5), labels])), rel=1e-14)


@pytest.mark.parametrize("options", [{"padding": 1}, {"stride": 2}, {"dilation": 2},
                                     {"convention": "convolution"}])
def test_conv_rule_is_the_seeds_full_convolution(options):
    from gradcheck.ops.reference import conv_backward_signal

    rng = np.random.default_rng(2)
    layer = Conv(3, 3, **options)
    a_in = rng.standard_normal((2, 2, 7, 7))
    p = layer.init_params(a_in.shape, rng=rng)
    delta = rng.standard_normal(layer.output_shape(a_in.shape))
    delta_in, grads = _steps.carry_back(layer, delta, a_in, p)
    want = conv_backward_signal(delta, a_in, p["w"], **{k: v for k, v in options.items()})
    np.testing.assert_allclose(delta_in, want[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads["w"], want[1], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads["b"], want[2], rtol=1e-12, atol=1e-13)


def test_activation_rule_takes_the_derivative_at_the_pre_activation():
    z = np.array([[-1.0, 0.5, 2.0]])
    delta_in, grads = _steps.carry_back(Activation("tanh"), np.ones((1, 3)), z, {})
    np.testing.assert_allclose(delta_in, 1 - np.tanh(z) ** 2, rtol=1e-15)
    assert grads == {}
    routed, _ = _steps.carry_back(MaxPool(2), np.array([[[[5.0]]]]),
                                  np.array([[[[1.0, 4.0], [2.0, 3.0]]]]), {})
    np.testing.assert_array_equal(routed, [[[[0.0, 5.0], [0.0, 0.0]]]])


def test_sgd_momentum_by_hand():
    p, g1, g2 = [{"w": np.array([1.0, -2.0])}], [{"w": np.array([0.5, 1.0])}], \
        [{"w": np.array([-1.0, 0.25])}]
    v = [{"w": np.zeros(2)}]
    p1, v1 = _steps.sgd_momentum(p, g1, v, learning_rate=0.1, momentum=0.9)
    p2, v2 = _steps.sgd_momentum(p1, g2, v1, learning_rate=0.1, momentum=0.9)
    # v1 = g1, w1 = w0 - 0.1 g1; v2 = 0.9 g1 + g2, w2 = w1 - 0.1 v2
    np.testing.assert_allclose(p1[0]["w"], [0.95, -2.1], rtol=1e-15)
    np.testing.assert_allclose(v2[0]["w"], [-0.55, 1.15], rtol=1e-15)
    np.testing.assert_allclose(p2[0]["w"], [1.005, -2.215], rtol=1e-15)
    np.testing.assert_array_equal(p[0]["w"], [1.0, -2.0])     # inputs untouched


# --------------------------------------------------------------------------- the loop


def test_trains_on_synthetic_data_with_every_scheduled_check_passing():
    lines, bars = [], []
    result = train(parse_spec(small()), log=lines.append, progress=bars.append)
    assert isinstance(result, TrainResult) and result.passed and result.stopped_at is None
    assert result.steps == 4 * result.steps_per_epoch == 4 * (120 // 8)
    assert [c.step for c in result.checks] == [0, 10, 20, 30, 40, 50, 60]
    assert [c.when for c in result.checks][::6] == ["start", "end"]
    assert all(isinstance(c, CheckRecord) and c.passed for c in result.checks)
    assert set(result.checks[0].modes) == {"input", "layer0.conv.w", "layer0.conv.b",
                                           "layer4.dense.w", "layer4.dense.b"}
    # the default mode samples every tensor (within its time budget), and says how much
    first = result.checks[0]
    assert first.mode == "sampled" and set(first.modes.values()) == {"sampled"}
    assert set(first.sampled) == set(first.modes)
    for name, (checked, size) in first.sampled.items():
        assert 0 < checked <= size == first.report[name].n_elements
        assert f"{name} ({checked} of {size})" in first.summary()
    assert result.test_accuracy >= 0.8
    assert result.epoch_losses[-1] < result.epoch_losses[0] / 4
    assert len(result.losses) == len(result.accuracies) == result.steps
    assert lines[0].startswith("gradcheck train small: synthetic data, 120 training / 40 test")
    assert sum("check at step" in line for line in lines) == 7
    assert bars[-1].startswith("epoch 4/4 [####################] step 60/60  loss ")
    # only the last check keeps the point it ran at
    x, labels, params = result.checks[-1].point
    assert x.shape == (8, 1, 6, 6) and labels.shape == (8,) and params is result.params
    assert all(c.point is None for c in result.checks[:-1])
    d = result.to_dict()
    assert d["format"] == 1 and d["passed"] is True and len(d["checks"]) == 7
    assert d["checks"][0]["report"]["checks"][0]["name"] == "input"
    json.dumps(d)


def test_the_check_judges_the_training_code_itself(monkeypatch):
    # plant the classic activation bug in the training's own rule table: Sequential's
    # backward is untouched, so only a check of the training code can see it
    def at_the_output(layer, delta, z, p):
        return delta * layer.spec.derivative(layer.forward(z)), {}

    monkeypatch.setitem(_steps.RULES, "activation", at_the_output)
    doc = small({"type": "conv", "out_channels": 2, "kernel": 3}, {"type": "tanh"},
                {"type": "flatten"}, {"type": "dense", "out_features": 3})
    result = train(parse_spec(doc))
    assert not result.passed and result.stopped_at == 0 and result.steps == 0
    failing = {a.name for a in result.checks[0].report.failures}
    assert failing == {"input", "layer0.conv.w", "layer0.conv.b"}
    assert result.test_accuracy is None


def test_batch_size_and_dtype_come_from_the_spec():
    doc = small(train={"batch_size": 4, "epochs": 1, "check_every": 0})
    doc["input"]["dtype"] = "float32"
    result = train(parse_spec(doc))
    assert result.passed and result.batch_size == 4 and result.steps == 30
    assert result.dtype == "float32"
    assert all(v.dtype == np.float32 for p in result.params for v in p.values())
    assert result.checks[0].report.dtype == "float32"


def test_a_python_layer_trains(monkeypatch):
    monkeypatch.chdir(ROOT)
    doc = small({"type": "python", "target": "examples.my_layers:ConvLayer",
                 "params": {"w": [2, 1, 3, 3], "b": [2]}},
                {"type": "relu"}, {"type": "flatten"}, {"type": "dense", "out_features": 3},
                train={"epochs": 2, "check_every": 0})
    spec = parse_spec(doc)
    from gradcheck.spec import build

    start = build(spec).network.init_params(rng=np.random.default_rng([0, 1]))
    result = train(spec)
    assert result.passed and result.test_accuracy >= 0.6
    assert set(result.checks[-1].modes) >= {"layer0.python.w", "layer0.python.b"}
    assert not np.allclose(result.params[0]["w"], start[0]["w"])
    assert not np.allclose(result.params[0]["b"], start[0]["b"])


def test_buggy_python_layer_stops_training_at_the_first_check(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    doc = small({"type": "conv", "out_channels": 2, "kernel": 3}, {"type": "relu"},
                {"type": "python", "target": "examples.my_layers:BuggyConvLayer",
                 "params": {"w": [2, 2, 2, 2], "b": [2]}},
                {"type": "flatten"}, {"type": "dense", "out_features": 3}, shape=(4, 1, 6, 6))
    result = train(parse_spec(doc))
    assert not result.passed and result.stopped_at == 0 and result.steps == 0
    assert len(result.checks) == 1 and result.checks[0].when == "start"
    failing = {a.name for a in result.checks[0].report.failures}
    assert failing == {"input", "layer0.conv.w", "layer0.conv.b"}   # below the user layer
    # the shipped example, from the command line (fast mode keeps the test quick)
    status = main(["train", "specs/examples/train_user_layer_buggy.toml", "--data",
                   "synthetic", "--mode", "fast"])
    out = capsys.readouterr().out
    assert status == MISMATCH
    assert "check at step 0 (epoch 0, start): GRADIENT MISMATCH [fast mode" in out
    assert "layer0.conv.w    MISMATCH" in out and "layer2.python.w  ok" in out
    assert out.rstrip().splitlines()[-2].startswith(
        "gradcheck train: FAILED: the gradient check at step 0 (epoch 0, start) found a "
        "mismatch; training stopped after 0 updates")


def test_diverging_training_is_an_error_naming_the_learning_rate():
    with pytest.raises(GradcheckError, match=r"^training diverged at step \d+: (the loss|a "
                       r"gradient|a weight after the update) is not finite; lower the learning "
                       r"rate \(train.learning_rate = 1e\+30\)$"):
        train(parse_spec(small(train={"learning_rate": 1e30, "check_every": 0})))


# --------------------------------------------------------------------------- data


def test_synthetic_data_follows_the_spec_shape_and_is_seeded():
    a = load_data("synthetic", sample_shape=(2, 5), n_classes=4, dtype="float32", seed=3,
                  test_fraction=0.5, samples=40, where="s")
    b = load_data("synthetic", sample_shape=(2, 5), n_classes=4, dtype="float32", seed=3,
                  test_fraction=0.5, samples=40, where="s")
    assert a.x_train.shape == (20, 2, 5) and a.x_train.dtype == np.float32
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert np.bincount(np.concatenate([a.y_train, a.y_test])).tolist() == [10] * 4


def test_digits_data():
    pytest.importorskip("sklearn")
    d = load_data("digits", sample_shape=(1, 8, 8), n_classes=10, dtype="float64", seed=0,
                  test_fraction=0.25, samples=0)
    assert (len(d.y_train), len(d.y_test)) == (1348, 449)
    assert d.x_train.shape == (1348, 1, 8, 8) and 0 <= d.x_train.min() < d.x_train.max() == 1


def test_digits_without_scikit_learn_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["train", "--data", "digits"]) == USAGE
    assert capsys.readouterr().err == (
        "gradcheck: error: the digits data needs scikit-learn, which is not installed; "
        "install the train extra (pip install -e '.[train]' in the gradcheck checkout) or "
        "train on the synthetic data (--data synthetic)\n")


@pytest.mark.parametrize("doc, message", [
    (small(shape=(8, 3, 8, 8), train={"data": "digits"}),
     r"^t: input\.shape: the digits are 1x8x8 images, so the input must be \[N, 1, 8, 8\]; "
     r"got \[N, 3, 8, 8\]; change the shape or train on the synthetic data \(--data "
     r"synthetic\)$"),
    (small(shape=(8, 1, 8, 8), train={"data": "digits"}),
     r"^t: layer: the digits have 10 classes, so the network must end in 10 outputs "
     r"\(N, 10\); it ends in 3$"),
    (small(loss={"type": "mse"}),
     r"^t: loss\.type: training classifies, so the loss must be \"softmax_cross_entropy\"; "
     r"got \"mse\"$"),
    (small({"type": "conv", "out_channels": 2, "kernel": 3}),
     r"^t: layer: training needs the network to end in \(N, classes\) logits with at least "
     r"2 classes; it ends in shape \(8, 2, 4, 4\); end with a flatten and a dense layer$"),
    (small(train={"batch_size": 200}),
     r"^t: train\.batch_size: 200 is more than the 120 training samples of the synthetic "
     r"data; use a smaller batch \(the input's N or \[train\] batch_size\)$"),
])
def test_a_network_that_does_not_fit_the_data_is_a_spec_error(doc, message):
    with pytest.raises(SpecError, match=message) as caught:
        train(parse_spec(doc, source="t"))
    assert caught.value.spec == "t"
    assert message.startswith(f"^t: {caught.value.key.replace('.', chr(92) + '.')}: ")


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("kwargs, message", [
    ({"data": "mnist"}, r"^data must be one of 'digits', 'synthetic'; got 'mnist'$"),
    ({"epochs": 0}, r"^epochs must be an int >= 1; got 0$"),
    ({"check_every": True}, r"^check_every must be an int >= 0; got True$"),
    ({"seed": -1}, r"^seed must be an int >= 0; got -1$"),
    ({"mode": "slow"}, r"^mode must be one of 'full', 'sampled', 'fast', 'auto'; got 'slow'$"),
    ({"time_budget": 0}, r"^time_budget must be a positive number of seconds; got 0$"),
    ({"out": 3}, r"^out must be a directory path or None; got 3$"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        train(**kwargs)


def test_bad_spec_argument():
    with pytest.raises(ConfigurationError, match=r"^spec must be None \(the built-in training "
                       r"spec\), a path or a gradcheck.spec.Spec; got int$"):
        train(42)


# --------------------------------------------------------------------------- [train]


@pytest.mark.parametrize("table, message", [
    ({"epoch": 3}, r"^t: train\.epoch: unknown key; did you mean \"epochs\"\? valid keys for "
                   r"\[train\]: data, epochs, batch_size, learning_rate, momentum, "
                   r"check_every, seed, test_fraction, samples$"),
    ({"data": "mnist"}, r"^t: train\.data: expected one of \"digits\", \"synthetic\", got "
                        r"\"mnist\"$"),
    ({"epochs": 0}, r"^t: train\.epochs: expected a positive int, got 0$"),
    ({"batch_size": 2.5}, r"^t: train\.batch_size: expected a positive int, got 2\.5$"),
    ({"learning_rate": 0}, r"^t: train\.learning_rate: expected a finite number > 0, got 0$"),
    ({"momentum": 1.0}, r"^t: train\.momentum: expected a number >= 0 and < 1, got 1\.0$"),
    ({"momentum": -0.1}, r"^t: train\.momentum: expected a finite number >= 0, got -0\.1$"),
    ({"check_every": -1}, r"^t: train\.check_every: expected an int >= 0, got -1$"),
    ({"seed": "0"}, r"^t: train\.seed: expected an int >= 0, got \"0\"$"),
    ({"test_fraction": 1}, r"^t: train\.test_fraction: expected a number > 0 and < 1, got 1$"),
    ({"samples": 1}, r"^t: train\.samples: expected an int >= 2, got 1$"),
    ("fast", r"^t: train: expected a table of training settings, got \"fast\"$"),
])
def test_train_table_errors(table, message):
    doc = {"input": {"shape": [2, 3]}, "layer": [{"type": "dense", "out_features": 2}],
           "train": table}
    with pytest.raises(SpecError, match=message):
        parse_spec(doc, source="t")


def test_train_table_round_trips_and_is_ignored_by_check():
    spec = parse_spec(small(train={"momentum": 0.5}))
    assert spec.train.momentum == 0.5 and spec.train.batch_size is None
    assert spec.to_dict()["train"] == {"data": "synthetic", "epochs": 4, "learning_rate": 0.05,
                                       "momentum": 0.5, "check_every": 10, "samples": 160}
    assert loads_spec(spec.to_toml()) == spec
    assert loads_spec(spec.to_json(), format="json") == spec


def test_default_training_spec_is_shipped_with_the_package():
    spec = default_train_spec()
    assert spec.source == "<built-in training spec>" and spec.name == "digits_cnn"
    assert [layer.type for layer in spec.layers] == ["conv", "relu", "maxpool", "flatten",
                                                     "dense"]
    assert spec.loss.type == "softmax_cross_entropy" and spec.train.data == "digits"
    assert spec.shapes[-1] == (32, 10)


# --------------------------------------------------------------------------- command line


def test_cli_json_and_out_dir(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small(train={"epochs": 1})))
    out = tmp_path / "run"
    assert main(["train", str(path), "--json", "--out", str(out), "--check-every", "4",
                 "--seed", "1"]) == OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["format"] == 1 and shown["passed"] is True and shown["seed"] == 1
    assert [c["step"] for c in shown["checks"]] == [0, 4, 8, 12, 15]
    assert shown["files"] == [str(out / "train.png"), str(out / "train.json")]
    assert json.loads((out / "train.json").read_text()) == shown
    assert (out / "train.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_text_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "small.toml"
    path.write_text(parse_spec(small(train={"epochs": 1, "check_every": 0})).to_toml())
    assert main(["train", str(path), "--out", str(tmp_path), "--mode", "full"]) == OK
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gradcheck train small: synthetic data")
    assert out[1].startswith("check at step 0 (epoch 0, start): gradients ok [full mode -> "
                             "full: input, layer0.conv.w, layer0.conv.b, layer4.dense.w, "
                             "layer4.dense.b]")
    assert any(line.startswith("gradcheck train: PASSED: test accuracy ") for line in out)
    assert f"wrote {tmp_path / 'train.json'}" in out
    assert ("note: matplotlib is not installed: no PNG written (install the plots extra, pip "
            "install -e '.[plots]' in the gradcheck checkout)") in out
    assert not (tmp_path / "train.png").exists()


def test_cli_quiet_prints_only_the_summary(tmp_path, capsys):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small(train={"epochs": 1, "check_every": 0})))
    assert main(["train", str(path), "-q"]) == OK
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gradcheck train: PASSED") and len(out) == 1


def test_cli_bad_usage(capsys):
    assert main(["train", "--epochs", "0"]) == USAGE
    assert "--epochs must be >= 1, got 0" in capsys.readouterr().err
    assert main(["train", "no/such.toml"]) == USAGE
    assert capsys.readouterr().err.startswith("gradcheck: error: no/such.toml: no such file")


# --------------------------------------------------------------------------- a false alarm


def test_checker_accepts_a_correct_gradient_of_a_cancelling_cross_entropy():
    # Used to fail (found when training reached confident logits): the per-sample loss
    # log(sum(exp(y - m))) - (y_t - m) is tiny while its terms are O(1), and the complex
    # step's imaginary part is a difference of two values of size h; the error bars
    # assumed rounding of order eps*|f|. The grid the values lie on (the ulp of the
    # terms) is now part of the bar.
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40

    def f(y):       # the textbook form: log-sum-exp minus the target logit (class 0)
        m = y.real.max(axis=1, keepdims=True)
        return np.log(np.exp(y - m).sum(axis=1)) - (y[:, 0] - m[:, 0])

    def f_vjp(g, y):   # exact: dC/dy_k = p_k (k > 0), dC/dy_0 = -sum_{k>0} p_k
        e = np.exp(y - y[:, :1])
        e[:, 0] = 0
        p = e / (1 + e.sum(axis=1, keepdims=True))
        p[:, 0] = -p[:, 1:].sum(axis=1)
        return (g[:, None] * p,)

    y = np.random.default_rng(0).standard_normal((16, 10))
    y[:, 0] += 16.0                       # every sample classified right by a wide margin
    g = np.ones(16)
    for n in range(16):                    # the analytic gradient is right (mpmath)
        total = mp.fsum(mp.exp(mp.mpf(v)) for v in y[n])
        for k in range(10):
            want = mp.exp(mp.mpf(y[n, k])) / total - (k == 0)
            assert f_vjp(g, y)[0][n, k] == pytest.approx(float(want), rel=1e-14)
    assert check_vjp(f, f_vjp, (y,)).passed

    def f_vjp_wrong(g, y):          # one element 1e-6 off, relative
        (gy,) = f_vjp(g, y)
        gy[3, 0] *= 1 + 1e-6
        return (gy,)

    wrong = check_vjp(f, f_vjp_wrong, (y,))
    assert not wrong.passed and wrong["arg0"].worst_index == (3, 0)


def test_worst_ratio_is_what_the_verdict_measured_at_a_kink():
    # relu at x = 0 exactly: the one-sided derivatives there are 0 and 1, so a backward
    # returning -1e-13 there (0 with a rounding error) is right within the kink's
    # tolerance -- the check passes, and that element is its worst -- although
    # |analytic - numeric| is about 1/2 of a central difference; one returning 2 lies 1
    # outside [0, 1] and fails
    from gradcheck.train._check import record

    x = np.array([-1.0, 0.0, 2.0, 0.5])
    relu = lambda x: np.maximum(x, 0.0)                       # noqa: E731
    right = check_vjp(relu, lambda g, x: (g * np.where(x == 0, -1e-13, x > 0),), (x,),
                      mode="full")
    assert right.passed and right["arg0"].n_nondifferentiable == 1
    assert right["arg0"].worst_index == (1,)
    rec = record(right, step=0, epoch=0, when="start", mode="full")
    assert rec.passed and 0.0 <= rec.worst_ratio <= 1.0
    wrong = check_vjp(relu, lambda g, x: (g * np.where(x == 0, 2.0, x > 0),), (x,),
                      mode="full")
    assert not wrong.passed
    assert record(wrong, step=0, epoch=0, when="start", mode="full").worst_ratio > 1.0
