"""A layer that writes to its arguments is caught, and the caller's arrays never change.

A forward that clips its input in place (``x[x < 0] = 0``) used to move the point under
the check: ``f`` ran on the caller's array, every later evaluation saw the clipped
``x``, where a ReLU is the identity, and a backward that forgets the ReLU mask passed.
The checker now passes ``f`` and ``f_vjp`` copies, compares them after the first calls,
and raises :class:`~gradcheck.UserCodeError` naming the argument.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import UserCodeError, check_jvp, check_vjp

X = np.array([-1.3, -0.6, -0.2, 0.3, 0.7, 1.1])


def relu_in_place(x):
    x[x < 0] = 0
    return x


def backward_without_mask(g, x):
    return (g,)


def relu(x):
    return np.maximum(x, 0)


def relu_backward_writing_g(g, x):
    g[x <= 0] = 0             # writes to the cotangent it was given: its own copy
    return (g,)


def test_an_in_place_forward_is_an_error_naming_the_argument():
    x = X.copy()
    with pytest.raises(UserCodeError, match=r"^f modifies its argument 'x' in place \(3 of 6 "):
        check_vjp(relu_in_place, backward_without_mask, (x,), argnames=["x"])
    assert np.array_equal(x, X)        # the caller's array is as it was


def test_without_the_in_place_write_the_missing_mask_fails():
    # the same layer written out of place: the check is at the given point, and the
    # backward without its mask is wrong at the three negative entries
    report = check_vjp(relu, backward_without_mask, (X.copy(),))
    assert not report.passed
    assert report.arguments[0].n_failed == 3


def test_a_right_layer_passes_and_leaves_the_callers_arrays_alone():
    x = X.copy()
    R = np.arange(1.0, 7.0)
    report = check_vjp(relu, relu_backward_writing_g, (x,), cotangent=R)
    assert report.passed, str(report)
    assert np.array_equal(x, X) and np.array_equal(R, np.arange(1.0, 7.0))


def test_a_backward_that_writes_to_its_input_is_named():
    def backward(g, x, w):
        x *= 0                          # "frees" the saved input
        return g * w, g * x

    x, w = X.copy(), X[::-1].copy()
    with pytest.raises(UserCodeError, match=r"^f_vjp modifies its argument 'x' in place"):
        check_vjp(lambda x, w: x * w, backward, (x, w), argnames=["x", "w"])
    assert np.array_equal(x, X)


def test_forward_mode_catches_it_too():
    with pytest.raises(UserCodeError, match=r"f modifies its argument 'arg0' in place"):
        check_jvp(relu_in_place, lambda t, x: (x > 0) * t[0], (X.copy(),))


LAYERS = '''
import numpy as np

class InplaceRelu:                 # clips its input in place, backward without the mask
    def forward(self, x):
        x[x < 0] = 0
        return x
    def backward(self, g, x):
        return (g,)

class Relu:
    def forward(self, x):
        return np.maximum(x, 0)
    def backward(self, g, x):
        g[x <= 0] = 0              # writes to grad_y: its own copy, allowed
        return (g,)
'''


@pytest.mark.parametrize("target, code, said", [
    ("InplaceRelu", 1, "ip_layers_t.py:InplaceRelu.forward modifies its argument 'x' in place"),
    ("Relu", 0, "all 1 checks passed"),
])
def test_a_spec_python_layer_that_writes_to_its_input(tmp_path, capsys, target, code, said):
    from gradcheck.cli import main

    (tmp_path / "ip_layers_t.py").write_text(LAYERS)
    spec = tmp_path / "s.toml"
    spec.write_text(f'[input]\nshape = [2, 3, 4, 4]\n[[layer]]\ntype = "python"\n'
                    f'target = "ip_layers_t.py:{target}"\n')
    assert main(["check", str(spec), "-q"]) == code
    out, err = capsys.readouterr()
    assert said in out + err
