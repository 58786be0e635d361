"""A python spec layer that takes a leading batch of points (``batched = true``).

The layer here is a convolution written in NumPy (padding 1, no bias) whose ``forward``
works on any number of leading axes; its reference is the built-in
``gradcheck.conv_forward`` / ``conv_backward``. A layer that claims the key but returns
another shape, or other values, is refused at build time naming ``layer[i].batched``.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import gradcheck.checker._plan as plan_module
from gradcheck import SpecError, UserCodeError
from gradcheck.spec import build, check_spec, parse_spec

LAYERS = """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    from gradcheck import conv_backward


    def _conv(x, w):
        pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
        win = sliding_window_view(np.pad(x, pad), w.shape[2:], axis=(-2, -1))
        return np.einsum("...chwij,ocij->...ohw", win, w)


    class Conv:
        '''Any leading axes: (N, C, H, W) or (B, N, C, H, W).'''

        def forward(self, x, w):
            return _conv(x, w)

        def backward(self, g, x, w):
            gx, gw, _ = conv_backward(g, x, w, padding=1)
            return gx, gw


    class Counting(Conv):
        calls = []

        def forward(self, x, w):
            Counting.calls.append(x.shape)
            return _conv(x, w)


    class FirstOnly(Conv):
        '''Claims a batch but returns the first point's output only.'''

        def forward(self, x, w):
            y = _conv(x, w)
            return y[0] if x.ndim == 5 else y


    class Mixes(Conv):
        '''Right shape, but the points of a batch leak into each other.'''

        def forward(self, x, w):
            y = _conv(x, w)
            return y + 0.1 * y.mean(axis=0) if x.ndim == 5 else y
"""


@pytest.fixture
def layers_module(tmp_path, monkeypatch):
    (tmp_path / "batched_layers_t.py").write_text(textwrap.dedent(LAYERS))
    sys.modules.pop("batched_layers_t", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("batched_layers_t", None)


def _spec(target, batched=True, shape=(2, 3, 8, 8)):
    layer = {"type": "python", "target": f"batched_layers_t:{target}",
             "params": {"w": [4, shape[1], 3, 3]}}
    if batched is not None:
        layer["batched"] = batched
    return parse_spec({"input": {"shape": list(shape)}, "layer": [layer],
                       "check": {"mode": "full"}}, source="user.toml")


def test_batched_layer_is_called_with_batches_and_passes(layers_module, monkeypatch):
    monkeypatch.setattr(plan_module, "PROBE_WORTH_EVALS", 0)
    import batched_layers_t as m

    m.Counting.calls.clear()
    report = check_spec(_spec("Counting"))
    assert report.passed, str(report)
    x = report.arguments[0]
    assert x.n_checked == x.n_elements == 2 * 3 * 8 * 8
    assert any(len(s) == 5 and s[0] > 1 for s in m.Counting.calls)   # batches of points


def test_unbatched_layer_is_called_point_by_point(layers_module):
    import batched_layers_t as m

    m.Counting.calls.clear()
    assert check_spec(_spec("Counting", batched=None)).passed
    assert all(len(s) == 4 for s in m.Counting.calls)


def test_batched_layer_returning_the_wrong_shape_is_a_spec_error(layers_module):
    with pytest.raises(SpecError, match=r"^user\.toml: layer\[0\]\.batched: .*FirstOnly"
                                        r"\.forward, given a leading batch of 2 inputs of "
                                        r"shape \(2, 3, 8, 8\), returned shape \(2, 4, 8, 8\); "
                                        r"expected \(2, 2, 4, 8, 8\)"):
        build(_spec("FirstOnly"))


def test_batched_layer_mixing_points_is_a_spec_error(layers_module):
    with pytest.raises(SpecError, match=r"layer\[0\]\.batched: .*differ from one call per "
                                        r"input"):
        build(_spec("Mixes"))


def test_batched_must_be_a_boolean():
    with pytest.raises(SpecError, match=r"layer\[0\]\.batched"):
        _spec("Conv", batched="yes")


def test_wrong_batch_at_check_time_is_a_user_code_error(layers_module):
    """Past the build-time check (a layer that changes its mind), the checker's own call
    is refused with the same kind of sentence."""
    from gradcheck.spec._user import UserLayer

    import batched_layers_t as m

    layer = UserLayer("batched_layers_t:FirstOnly", m.FirstOnly(), {"w": (4, 3, 3, 3)},
                      batched=True)
    h = np.zeros((3, 2, 3, 8, 8))
    with pytest.raises(UserCodeError, match=r"batched = true.*returned shape \(2, 4, 8, 8\); "
                                            r"expected \(3, 2, 4, 8, 8\)"):
        layer.forward_batch(h, np.zeros((4, 3, 3, 3)), out_shape=(2, 4, 8, 8))
