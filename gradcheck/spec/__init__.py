"""Layer specs: TOML (JSON, YAML) documents describing a network to check.

A spec names an input shape and dtype, a stack of layers (convolution, activations,
pooling, flatten, dense, or the user's own ``type = "python"`` layer), an optional loss,
and how to check. ``gradcheck check SPEC`` loads one with :func:`load_spec`, turns it into
arrays with :func:`build`, and checks every tensor. Every key is documented in
the README's spec-format section.

Examples
--------
>>> from gradcheck.spec import loads_spec
>>> spec = loads_spec('''
... [input]
... shape = [2, 3, 8, 8]
...
... [[layer]]
... type = "conv"
... out_channels = 4
... kernel = 3
... stride = 2
... padding = 1
...
... [[layer]]
... type = "tanh"
... ''')
>>> spec.shapes
((2, 3, 8, 8), (2, 4, 4, 4), (2, 4, 4, 4))
>>> loads_spec(spec.to_toml()) == spec
True
"""

from __future__ import annotations

import os

from gradcheck._lazy import lazy_exports
from gradcheck.spec._default import DEFAULT_DOCUMENT, DEFAULT_SOURCE
from gradcheck.spec._model import CheckSpec, InputSpec, LayerSpec, LossSpec, Spec
from gradcheck.spec._read import FORMATS, parse_text, read_document
from gradcheck.spec._schema import DTYPES, MODES, layer_types, parse_spec

# building and checking (NumPy, the layers, the checker) are imported on first use
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(("BuiltSpec", "build", "estimate_bytes", "memory_limit"),
                    "gradcheck.spec._build"),
    **dict.fromkeys(("check_built", "check_spec"), "gradcheck.spec._second"),
    **dict.fromkeys(("UserLayer", "resolve_target"), "gradcheck.spec._user"),
})

__all__ = [
    "Spec",
    "InputSpec",
    "LayerSpec",
    "LossSpec",
    "CheckSpec",
    "BuiltSpec",
    "UserLayer",
    "load_spec",
    "loads_spec",
    "parse_spec",
    "default_spec",
    "build",
    "check_built",
    "check_spec",
    "resolve_target",
    "resolve_targets",
    "estimate_bytes",
    "memory_limit",
    "layer_types",
    "FORMATS",
    "DTYPES",
    "MODES",
]


def load_spec(path) -> Spec:
    """Read, parse and validate the spec file at ``path`` (.toml, .json, .yaml/.yml).

    The spec's name defaults to the file name without its suffix. Raises
    :class:`~gradcheck.SpecError` (one line naming the file and key) on any bad input.
    """
    document, _ = read_document(path)
    label = os.fspath(path)
    stem = os.path.splitext(os.path.basename(label))[0]
    return parse_spec(document, source=label, name=stem)


def loads_spec(text: str, *, format: str | None = None, source: str = "<string>") -> Spec:
    """Parse and validate spec text in ``format`` ("toml", "json" or "yaml").

    Without ``format``, text that starts with ``{`` is read as JSON, anything else as TOML
    (the rule for files whose name says nothing).
    """
    if format is None:
        format = "json" if text.lstrip().startswith("{") else "toml"
    return parse_spec(parse_text(text, format, source), source=source)


def default_spec() -> Spec:
    """The built-in small CNN that ``gradcheck check`` runs when given no spec file."""
    return parse_spec(DEFAULT_DOCUMENT, source=DEFAULT_SOURCE)


def resolve_targets(spec: Spec, *, order: int | None = None) -> None:
    """Import every ``type = "python"`` layer's target now, so a bad one fails early; and
    refuse a second-order check (``order``, default ``[check] order``) the spec's layers
    cannot have (:func:`gradcheck.spec._second.refuse_order`), as a spec error."""
    from gradcheck.spec._second import refuse_order

    objects = []
    for i, layer in enumerate(spec.layers):
        if layer.type == "python":     # (imported only when a spec has a user layer)
            from gradcheck.spec._user import resolve_target
        objects.append(None if layer.type != "python" else resolve_target(
            layer.options["target"], kwargs=layer.options["kwargs"], source=spec.source,
            key=f"layer[{i}].target"))
    refuse_order(spec, objects, order=order)
