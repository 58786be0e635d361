"""Whole networks: drawn layer stacks pass end to end, and drawn specs are real specs.

``spec_documents`` draws what ``gradcheck check`` reads: a stack of built-in layers
(conv, activations, pooling, flatten, dense), an input, a loss, check settings. Each one
is built and checked like the CLI does; the failing document is noted as the TOML file
that reruns it exactly (``gradcheck check repro.toml``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile

from _prop_support import note_spec
from hypothesis import given

from gradcheck.cli import OK, main
from gradcheck.spec import build, check_built, loads_spec, parse_spec
from gradcheck.strategies import layer_stacks, spec_documents

DOCUMENTS = spec_documents(stacks=layer_stacks(max_layers=5, max_dims=3))


@given(DOCUMENTS)
def test_random_layer_stack_passes_end_to_end(doc):
    """Every tensor of a drawn network -- input and each layer's parameters -- passes."""
    note_spec(doc, header="exactly")
    report = check_built(build(parse_spec(doc, source="<drawn spec>")))
    assert report.passed, str(report)


@given(spec_documents())
def test_spec_documents_round_trip(doc):
    """parse_spec accepts every drawn document, and the parsed spec survives TOML, JSON and
    its own to_dict()."""
    note_spec(doc, header="exactly")
    spec = parse_spec(doc)
    assert loads_spec(spec.to_toml()) == spec
    assert loads_spec(spec.to_json(), format="json") == spec
    assert parse_spec(json.loads(json.dumps(spec.to_dict()))) == spec
    assert parse_spec(spec.to_dict()).to_dict() == spec.to_dict()
    assert spec.shapes[0] == tuple(doc["input"]["shape"])
    assert len(spec.layers) == len(doc["layer"])


@given(spec_documents(stacks=layer_stacks(max_layers=3, max_size=64)))
def test_drawn_spec_files_pass_the_gradcheck_command(doc):
    """A drawn spec written as TOML is accepted by ``gradcheck check --json`` and passes."""
    note_spec(doc, header="exactly")
    text = parse_spec(doc).to_toml()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "drawn.toml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", path, "--json"])
    assert code == OK, out.getvalue() + err.getvalue()
    result = json.loads(out.getvalue())
    assert result["passed"] is True and result["checks"]
    assert all(check["passed"] for check in result["checks"])
