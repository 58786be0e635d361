"""``gradcheck explain``: the seed's 3x3 / 2x2 example, held against a third route.

The third route shares nothing with either of the two the command shows: the layer is
linear in x, so its Jacobian is built column by column by pushing unit images through a
forward pass written here from the definition, and the input error is J^T delta.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcheck._explain import DELTAS, WEIGHTS, explain, render_explanation
from gradcheck.cli import main


def forward_by_definition(x, w, convention):
    """Valid 2-D correlation (or the seed's true convolution) by explicit loops."""
    k = w.shape[0]
    out = np.zeros((x.shape[0] - k + 1, x.shape[1] - k + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for a in range(k):
                for b in range(k):
                    tap = w[a, b] if convention == "correlation" else w[k - 1 - a, k - 1 - b]
                    out[i, j] += tap * x[i + a, j + b]
    return out


def delta_by_jacobian(w, delta, convention):
    cols = []
    for p in range(9):
        e = np.zeros(9)
        e[p] = 1.0
        cols.append(forward_by_definition(e.reshape(3, 3), w, convention).ravel())
    jac = np.array(cols).T                                    # (4 outputs, 9 pixels)
    return (jac.T @ delta.ravel()).reshape(3, 3)


@pytest.mark.parametrize("convention", ["convolution", "correlation"])
def test_both_routes_equal_the_jacobian_route(convention):
    e = explain(convention=convention)
    expected = delta_by_jacobian(np.array(WEIGHTS), np.array(DELTAS), convention)
    np.testing.assert_array_equal(e.perceptron, expected)
    np.testing.assert_array_equal(e.rot180, expected)
    assert e.equal


def test_hand_values_of_the_seed_example():
    # correlation: the centre pixel feeds all four outputs through w[1,1], w[1,0], w[0,1],
    # w[0,0] = 4, 3, 2, 1 -> 1*4 + 10*3 + 100*2 + 1000*1; the seed's convolution reverses it.
    assert explain(convention="correlation").perceptron[1, 1] == 1234.0
    assert explain(convention="convolution").perceptron[1, 1] == 4321.0
    counts = [len(p.connections) for p in explain().pixels]
    assert counts == [1, 2, 1, 2, 4, 2, 1, 2, 1]


def test_random_values_agree_and_equality_is_bitwise():
    rng = np.random.default_rng(3)
    w, d = rng.integers(-9, 10, (2, 2)).astype(float), rng.integers(-99, 100, (2, 2)).astype(float)
    e = explain(convention="correlation", w=w, delta=d)
    np.testing.assert_array_equal(e.perceptron, delta_by_jacobian(w, d, "correlation"))
    assert e.equal
    off = e._replace(rot180=e.rot180 + np.where(np.arange(9).reshape(3, 3) == 4, 1e-13, 0))
    assert not off.equal                                     # one ulp-ish change is seen


def test_rendering_names_every_pixel_and_the_verdict():
    text = render_explanation(explain())
    for i in range(3):
        for j in range(3):
            assert f"({i},{j})" in text
    assert "1*1 + 10*2 + 100*3 + 1000*4" in text and "= 4321" in text
    assert "Equal to the last bit" in text
    assert "a FULL convolution" in text
    corr = render_explanation(explain(convention="correlation"))
    assert "1*4 + 10*3 + 100*2 + 1000*1 = 1234" in corr
    bad = explain()._replace(rot180=np.zeros((3, 3)))
    assert "NOT EQUAL: the routes differ by up to 4.32e+03" in render_explanation(bad)


def test_explain_command(capsys):
    assert main(["explain"]) == 0
    out = capsys.readouterr().out
    assert "Route 1 - the perceptron with shared weights" in out
    assert "Route 2 - the seed's formula" in out
    assert main(["explain", "--convention", "correlation", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["equal"] is True and data["convention"] == "correlation"
    assert data["rot180"] == data["perceptron"] == [[1, 12, 20], [103, 1234, 2040],
                                                    [300, 3400, 4000]]
    assert len(data["pixels"]) == 9 and len(data["pixels"][4]["connections"]) == 4
