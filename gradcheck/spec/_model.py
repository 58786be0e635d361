"""The parsed form of a layer spec: frozen dataclasses with ``to_dict()`` and ``to_toml()``.

A :class:`Spec` holds every key with its default filled in, so ``to_dict()`` writes the
complete, explicit document and ``parse_spec(spec.to_dict()) == spec`` (the round trip
the fuzzer relies on when it writes a failing spec out to be rerun).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Mapping

from gradcheck._plain import plain
from gradcheck._record import frozen

__all__ = ["InputSpec", "LayerSpec", "LossSpec", "CheckSpec", "Spec"]


@frozen
class InputSpec:
    """``[input]``: the shape and dtype of ``x`` and how its values are drawn."""

    shape: tuple[int, ...]
    dtype: str = "float64"
    distribution: str = "normal"
    loc: float = 0.0
    scale: float = 1.0
    seed: int | None = None
    away_from_kinks: float = 0.0

    def to_dict(self) -> dict:
        d = {"shape": list(self.shape), "dtype": self.dtype, "distribution": self.distribution,
             "loc": self.loc, "scale": self.scale, "away_from_kinks": self.away_from_kinks}
        if self.seed is not None:
            d["seed"] = self.seed
        return d


@frozen
class LayerSpec:
    """One ``[[layer]]``: its ``type`` and the remaining keys, defaults filled in."""

    type: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"type": self.type, **plain(dict(self.options))}


@frozen
class LossSpec:
    """``[loss]``: which loss turns the network output into the scalar C."""

    type: str
    seed: int | None = None

    def to_dict(self) -> dict:
        d = {"type": self.type}
        if self.seed is not None:
            d["seed"] = self.seed
        return d


@frozen
class CheckSpec:
    """``[check]``: how the checker runs. ``None`` means "the checker's own default"."""

    seed: int = 0
    mode: str | None = None
    budget: int | None = None
    time_budget: float | None = None
    rtol: float | None = None
    atol: float | None = None
    wrt: tuple[str, ...] | None = None
    max_memory: int | None = None
    #: Per-tensor overrides: name -> {"rtol": x, "atol": y}.
    tolerance: Mapping[str, Mapping[str, float]] | None = None
    #: 2: also check the backward's own derivatives (PyTorch layers); None: order 1.
    order: int | None = None

    def to_dict(self) -> dict:
        d = {"seed": self.seed}
        for key in ("mode", "budget", "time_budget", "rtol", "atol", "wrt", "max_memory",
                    "tolerance", "order"):
            value = getattr(self, key)
            if value is not None:
                d[key] = plain(value)
        return d


@frozen
class Spec:
    """A validated layer spec: input, layers, loss and check settings.

    ``source`` (the file it came from, for messages) takes no part in equality.
    """

    input: InputSpec
    layers: tuple[LayerSpec, ...]
    loss: LossSpec | None = None
    check: CheckSpec = field(default_factory=CheckSpec)
    name: str = ""
    #: ``[train]`` (a :class:`~gradcheck.spec._train.TrainSpec`), read by ``gradcheck train``.
    train: Any = None
    description: str = ""
    source: str = field(default="<spec>", compare=False)
    #: Tensor shape before and after each layer (None past a python layer of unknown
    #: output shape); filled by :func:`~gradcheck.spec.parse_spec`.
    shapes: tuple = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict:
        """The complete document (every default written out), JSON- and TOML-ready."""
        d: dict = {}
        if self.name:
            d["name"] = self.name
        if self.description:
            d["description"] = self.description
        d["input"] = self.input.to_dict()
        d["layer"] = [layer.to_dict() for layer in self.layers]
        if self.loss is not None:
            d["loss"] = self.loss.to_dict()
        d["check"] = self.check.to_dict()
        if self.train is not None:
            d["train"] = self.train.to_dict()
        return d

    def to_toml(self) -> str:
        """The document as TOML text that :func:`gradcheck.spec.loads_spec` reads back."""
        from gradcheck.spec._toml import dumps

        return dumps(self.to_dict())

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2, allow_nan=True) + "\n"

    @property
    def argument_names(self) -> tuple[str, ...]:
        """``"input"`` and ``"layer{i}.{kind}.{param}"`` for every parameter, in order."""
        names = ["input"]
        for i, layer in enumerate(self.layers):
            for p in layer_param_names(layer):
                names.append(f"layer{i}.{layer_kind(layer)}.{p}")
        return tuple(names)


def layer_kind(layer: LayerSpec) -> str:
    """The ``kind`` the built layer will report (activations share ``"activation"``)."""
    if layer.type in ("conv", "maxpool", "avgpool", "flatten", "dense", "python"):
        return layer.type
    return "activation"


def layer_param_names(layer: LayerSpec) -> tuple[str, ...]:
    if layer.type in ("conv", "dense"):
        return ("w", "b") if layer.options.get("bias", True) else ("w",)
    if layer.type == "python":
        return tuple(layer.options.get("params", {}))
    return ()
