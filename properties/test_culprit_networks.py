"""The culprit pass on drawn networks: the layer made wrong is the one named.

A drawn stack of built-in layers gets one layer's backward replaced by the same backward
with its input error scaled by 3/2 (a wrong factor, the slip of a forgotten or doubled
term), through the ``python`` layer contract. Whenever the network's check then fails,
the per-layer pass must name exactly that layer; and a right network checked with
``per_layer="always"`` must find every layer right on its own.
"""

from __future__ import annotations

from _prop_support import note_spec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradcheck import check_network
from gradcheck.ops.network import Sequential
from gradcheck.spec import build, parse_spec
from gradcheck.spec._user import UserLayer
from gradcheck.strategies import layer_stacks, spec_documents

DOCUMENTS = spec_documents(stacks=layer_stacks(max_layers=3, max_size=64))


class _ScaledInputError:
    """``layer`` with its backward's input error multiplied by 3/2."""

    def __init__(self, layer):
        self.layer = layer

    def forward(self, x, *params):
        return self.layer.forward(x, *params)

    def backward(self, g, x, *params):
        grad_x, *grads = self.layer.backward(g, x, *params)
        return (1.5 * grad_x, *grads)


@settings(max_examples=25)
@given(DOCUMENTS, st.data())
def test_the_layer_made_wrong_is_the_culprit(doc, data):
    note_spec(doc, header="exactly (before the mutation)")
    built = build(parse_spec(doc, source="<drawn spec>"))
    net = built.network
    i = data.draw(st.integers(0, len(net.layers) - 1), label="layer made wrong")
    wrong = UserLayer(f"mutant:{net.layers[i].name}", _ScaledInputError(net.layers[i]),
                      net.param_shapes[i], dtype=built.x.dtype.name)
    layers = list(net.layers)
    layers[i] = wrong
    mutated = Sequential(layers, net.input_shape, loss=net.loss)
    report = check_network(mutated, built.x, built.params, seed=doc["check"].get("seed", 0))
    assume(not report.passed)        # the scaled error may reach nothing (a dead relu)
    assert [layer.index for layer in report.layers if layer.passed is not True] == [i], \
        str(report)


@settings(max_examples=25)
@given(DOCUMENTS)
def test_a_right_network_has_every_layer_right_on_its_own(doc):
    note_spec(doc, header="exactly")
    built = build(parse_spec(doc, source="<drawn spec>"))
    report = check_network(built.network, built.x, built.params, per_layer="always")
    assert report.passed and all(layer.passed and layer.alone for layer in report.layers), \
        str(report)
