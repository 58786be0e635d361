"""Before the loop: the arguments checked, the settings resolved, the network built."""

from __future__ import annotations

import math
import os

from gradcheck._errors import ConfigurationError
from gradcheck._record import NamedTuple
from gradcheck._validate import is_int
from gradcheck.spec._values import Ctx
from gradcheck.train._check import DEFAULT_MODE, DEFAULT_TIME_BUDGET

__all__ = ["Settings", "DEFAULTS", "validate", "settings", "load_spec", "network",
           "prepare_out"]

#: Defaults of the ``[train]`` keys (``batch_size``: the spec input's ``N``).
DEFAULTS = {"data": "digits", "epochs": 10, "learning_rate": 0.1, "momentum": 0.9,
            "check_every": 100, "seed": 0, "test_fraction": 0.25, "samples": 1200}
_MODES = ("full", "sampled", "fast", "auto")


class Settings(NamedTuple):
    """Every setting of a run, resolved (see :func:`settings`)."""

    data: str
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    check_every: int
    seed: int
    test_fraction: float
    samples: int
    mode: str
    time_budget: float


def validate(data, epochs, check_every, seed, mode, time_budget, out):
    """The arguments of :func:`gradcheck.train.train`, each checked once, by name."""
    from gradcheck.spec._train import DATA_SOURCES

    if data is not None and data not in DATA_SOURCES:
        raise ConfigurationError(f"data must be one of {', '.join(map(repr, DATA_SOURCES))}; "
                                 f"got {data!r}")
    for label, value, low in (("epochs", epochs, 1), ("check_every", check_every, 0),
                              ("seed", seed, 0)):
        if value is not None and (not is_int(value) or value < low):
            raise ConfigurationError(f"{label} must be an int >= {low}; got {value!r}")
    if mode is not None and mode not in _MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(map(repr, _MODES))}; "
                                 f"got {mode!r}")
    if time_budget is not None and (isinstance(time_budget, bool)
                                    or not isinstance(time_budget, (int, float))
                                    or not 0 < time_budget < math.inf):
        raise ConfigurationError(f"time_budget must be a positive number of seconds; got "
                                 f"{time_budget!r}")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise ConfigurationError(f"out must be a directory path or None; got {out!r}")


def settings(spec, **given) -> Settings:
    """Arguments first, then the spec's ``[train]`` / ``[check]``, then the defaults."""
    t = spec.train
    values = {}
    for key, default in DEFAULTS.items():
        value = given.get(key)
        if value is None and t is not None:
            value = getattr(t, key)
        values[key] = default if value is None else value
    values["batch_size"] = (t.batch_size if t is not None and t.batch_size is not None
                            else spec.input.shape[0])
    values["mode"] = given.get("mode") or spec.check.mode or DEFAULT_MODE
    values["time_budget"] = (given.get("time_budget") or spec.check.time_budget
                             or DEFAULT_TIME_BUDGET)
    return Settings(**values)


def load_spec(spec):
    """The shipped spec for None, the file for a path, a Spec as it is; targets resolved."""
    from gradcheck.spec import load_spec as read, resolve_targets
    from gradcheck.train._default import default_train_spec

    if spec is None:
        return default_train_spec()
    if isinstance(spec, (str, os.PathLike)):
        spec = read(spec)
    from gradcheck.spec import Spec

    if not isinstance(spec, Spec):
        raise ConfigurationError(f"spec must be None (the built-in training spec), a path or "
                                 f"a gradcheck.spec.Spec; got {type(spec).__name__}")
    resolve_targets(spec, order=1)   # training checks the first order only
    return spec


def network(spec, batch_size, max_memory):
    """The spec's network for batches of ``batch_size``, with a softmax cross-entropy loss."""
    from gradcheck.ops import Sequential, get_loss
    from gradcheck.spec import build, parse_spec

    if batch_size != spec.input.shape[0]:
        doc = spec.to_dict()
        doc["input"]["shape"] = [batch_size, *spec.input.shape[1:]]
        spec = parse_spec(doc, source=spec.source, name=spec.name)
    if spec.loss is not None and spec.loss.type != "softmax_cross_entropy":
        raise Ctx(spec.source).fail("loss.type", f"training classifies, so the loss must be "
                                    f"\"softmax_cross_entropy\"; got \"{spec.loss.type}\"")
    net = build(spec, max_memory=max_memory).network
    if len(net.output_shape) != 2 or net.output_shape[1] < 2:
        raise Ctx(spec.source).fail(
            "layer", f"training needs the network to end in (N, classes) logits with at "
                     f"least 2 classes; it ends in shape {net.output_shape}; end with a "
                     f"flatten and a dense layer")
    if net.loss is None:
        net = Sequential(net.layers, net.input_shape,
                         loss=get_loss("softmax_cross_entropy", net.output_shape,
                                       dtype=spec.input.dtype))
    return net


def prepare_out(out):
    """Create the ``out`` directory before training, so a bad path fails at once."""
    if out is None:
        return None
    out = os.fspath(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"out {out}: cannot create the directory "
                                 f"({exc.strerror or exc}); give a writable directory") from None
    if not os.access(out, os.W_OK):
        raise ConfigurationError(f"out {out}: cannot write in this directory (permission "
                                 f"denied); give a writable directory")
    return out
