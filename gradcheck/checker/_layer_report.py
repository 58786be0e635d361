"""What the culprit pass found: one :class:`LayerResult` per layer, and the culprit line.

A network's :class:`~gradcheck.checker._report.CheckReport` carries them in ``layers``
(see :mod:`gradcheck.checker._culprit` for how each layer is checked); ``str(report)``
ends with the culprit line and the culprit's own failures, and ``report.to_dict()`` has a
``layers`` list.
"""

from __future__ import annotations

from dataclasses import field

from gradcheck._record import frozen

__all__ = ["LayerResult", "culprit_line", "culprit_text"]


@frozen
class LayerResult:
    """One layer of a network: whether its own backward is right.

    ``passed`` is the layer's verdict checked on its own (``alone``), or, when the network
    passed and the per-layer pass was skipped, the network's (``alone`` False: the layer
    was verified only as part of the network). None: the layer could not be checked on
    its own (``note`` says why).
    """

    index: int
    type: str                    # the spec's type: "conv", "relu", "python", ...
    name: str                    # for people: "conv", "relu", "mylayers:BatchNorm"
    target: str | None           # a python layer's target, else None
    passed: bool | None
    alone: bool                  # checked on its own (False: only as part of the network)
    report: object = field(default=None, repr=False, compare=False)   # its CheckReport
    note: str = ""

    @property
    def label(self) -> str:
        """``layer 1 (mylayers:BatchNorm)``."""
        return f"layer {self.index} ({self.name})"

    def to_dict(self) -> dict:
        return {"index": self.index, "type": self.type, "name": self.name,
                "target": self.target, "passed": self.passed, "alone": self.alone,
                "note": self.note,
                "checks": [] if self.report is None else self.report.to_dict()["checks"]}


def _join(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _indices(results) -> str:
    word = "layer" if len(results) == 1 else "layers"
    return f"{word} {_join(str(r.index) for r in results)}"


def _low_precision(layers) -> str:
    """The first dtype coarser than float64 among the layers' checked tensors, or ""."""
    for r in layers:
        for a in getattr(r.report, "arguments", ()):
            if a.dtype in ("float32", "float16", "bfloat16"):
                return a.dtype
    return ""


def culprit_line(layers, passed: bool) -> str:
    """The one line naming the layers whose backward is wrong ("" when none was checked
    on its own). ``passed`` is the network's verdict."""
    layers = tuple(layers)
    if not any(r.alone for r in layers):
        return ""
    wrong = [r for r in layers if r.passed is False]
    right = [r for r in layers if r.passed is True]
    unknown = [r for r in layers if r.passed is None]
    if wrong:
        head = (f"culprit: {wrong[0].label}: its backward is wrong" if len(wrong) == 1 else
                f"culprits: layers {_join(f'{r.index} ({r.name})' for r in wrong)}: their "
                f"backwards are wrong")
        parts = [head]
        if right:
            parts.append(f"{_indices(right)} {'is' if len(right) == 1 else 'are'} right")
    elif passed:
        parts = [f"layers: each layer's backward is right on its own ({_indices(right)})"]
    else:
        parts = [f"culprit: none found: each layer's backward is right on its own "
                 f"({_indices(right)}), at the point and with the error the network gave "
                 f"it; look at how the layers are put together (the loss, or a layer that "
                 f"keeps state between calls)"]
        low = _low_precision(layers)
        if low:
            parts.append(f"the check is in {low}: if the same network passes in float64, "
                         f"suspect the {low} check of the whole network rather than your "
                         f"layers")
    if unknown:
        parts.append(f"{_indices(unknown)} could not be checked on its own ("
                     + "; ".join(f"{r.index}: {r.note}" for r in unknown) + ")")
    return "; ".join(parts)


def culprit_text(layers, passed: bool) -> list:
    """The culprit line, then each wrong layer's failing tensors and their likely cause."""
    line = culprit_line(layers, passed)
    if not line:
        return []
    out = [line]
    for r in layers:
        if r.passed is False and r.report is not None:
            for a in r.report.failures:
                out.append(f"  {r.label} alone: {a.summary()}")
                if a.diagnosis is not None:
                    out.append("    likely cause: " + a.diagnosis.message)
        if r.alone and r.note and r.passed is not None and r.report is not None:
            out.append(f"  {r.label}: {r.note}")
    return out
