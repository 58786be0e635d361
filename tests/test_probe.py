"""Black-box structure probing (gradcheck.checker._probe): found where it holds, refused
where it does not, and verdicts as sure as without it.

The references are independent of the probe: the built-in convolution's own forward and
backward (``gradcheck.conv_forward`` / ``conv_backward``) and the geometry-derived
structure of the same layer (``Sequential.structure``); non-local layers (dense over
positions, attention, batch norm across the batch, a convolution with one far-reaching
coupling) are written here in NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck.checker._plan as plan_module
from gradcheck import check_vjp, conv_backward, conv_forward
from gradcheck.checker._probe import probe_structure
from gradcheck.ops.layers import Conv
from gradcheck.ops.network import Sequential


@pytest.fixture
def always_probe(monkeypatch):
    """Probe whatever the predicted time (the test functions are fast)."""
    monkeypatch.setattr(plan_module, "PROBE_WORTH_EVALS", 0)


def _conv(stride=1, padding=1):
    def f(x, w):
        return conv_forward(x, w, stride=stride, padding=padding)

    def f_vjp(g, x, w):
        gx, gw, _ = conv_backward(g, x, w, stride=stride, padding=padding)
        return gx, gw

    return f, f_vjp


def _point(shape=(2, 3, 12, 12), wshape=(4, 3, 3, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal(wshape) / 4


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, 3), (2, 1, 3), (1, 0, 2),
                                                    (2, 2, 5)])
def test_probe_finds_the_geometry_of_a_convolution(stride, padding, kernel):
    x, w = _point(wshape=(4, 3, kernel, kernel))
    f, _ = _conv(stride, padding)
    found = probe_structure(lambda a: f(a, w), x, f(x, w), seed=0)
    assert found.kind == "window", found.note
    # the same partition into colors, and the same owners, as the built-in layer's
    # geometry gives (an independent route)
    net = Sequential([Conv(4, kernel, stride=stride, padding=padding)], x.shape)
    known = net.structure("input")
    pairs = np.unique(np.stack([found.structure.colors, known.colors]), axis=1)
    assert pairs.shape[1] == np.unique(known.colors).size == \
        np.unique(found.structure.colors).size
    for c in np.unique(known.colors)[:: max(1, np.unique(known.colors).size // 7)]:
        members = np.flatnonzero(known.colors == c)
        assert np.array_equal(found.structure.owners(members), known.owners(members))


def test_user_conv_is_checked_in_full_with_a_probed_structure(always_probe):
    x, w = _point()
    f, f_vjp = _conv()
    report = check_vjp(f, f_vjp, (x, w), seed=1)
    d = report.to_dict()
    assert report.passed, str(report)
    for check in d["checks"]:
        assert check["mode"] == "full" and check["n_checked"] == check["n_elements"]
    assert any("found by probing" in n for n in d["notes"])
    # far fewer evaluations than one group per element
    assert report.nfev < (x.size + w.size) * 2


def test_a_wrong_backward_still_fails_with_a_probed_structure(always_probe):
    x, w = _point()
    f, _ = _conv()

    def unrotated(g, x, w):   # the kernel not rotated: the input gradient is wrong
        gx, gw, _ = conv_backward(g, x, w[:, :, ::-1, ::-1], padding=1)
        return gx, conv_backward(g, x, w, padding=1)[1]

    report = check_vjp(f, unrotated, (x, w), seed=1)
    assert not report.passed
    by_name = {a.name: a for a in report.arguments}
    assert not by_name["arg0"].passed and by_name["arg1"].passed
    assert by_name["arg0"].mode == "full"


def _dense_over_positions(x, m):
    """Every output position mixes every input position of its item: not local."""
    n, c, h, wd = x.shape
    return np.tanh(x.reshape(n, c, h * wd) @ m).reshape(n, c, h, wd)


def _attention(x, wq):
    n, c, length = x.shape
    q = np.einsum("dc,ncl->ndl", wq, x)
    scores = np.einsum("ndl,ndm->nlm", q, x) / np.sqrt(c)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p = p / p.sum(axis=-1, keepdims=True)
    return np.einsum("nlm,ncm->ncl", p, x)


def _batch_norm(x):
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5)


def _far_coupling(x, w):
    """A convolution plus one coupling between positions far apart, at a place no fixed
    probe looks (found only by the final comparison with f's own derivative)."""
    y = conv_forward(x, w, padding=1)
    y[1, 2, 7, 4] += 0.5 * x[1, 0, 7, 10] ** 2
    return y


def _footprints(f, x):
    """Which outputs move when each element alone moves by +-1/64 (brute force)."""
    y0 = f(x)
    moved = []
    for j in range(x.size):
        hit = np.zeros(y0.size, bool)
        for sign in (1, -1):
            xj = x.copy().reshape(-1)
            xj[j] += sign * max(abs(xj[j]), 1) / 64
            hit |= (f(xj.reshape(x.shape)) != y0).reshape(-1)
        moved.append(hit)
    return np.array(moved)


def _holds(structure, footprints) -> bool:
    """Every member of every color reaches only the outputs its color assigns it."""
    colors = np.asarray(structure.colors)
    for c in np.unique(colors):
        members = np.flatnonzero(colors == c)
        owner = structure.owners(members)
        for k, m in enumerate(members):
            if np.any(footprints[m] & (owner != k)):
                return False
    return True


def test_non_local_layers_are_not_wrongly_colored():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 8))
    m = rng.standard_normal((64, 64)) / 8
    dense = lambda a: _dense_over_positions(a, m)  # noqa: E731
    found = probe_structure(dense, x, dense(x))
    # every position reaches every output position of its channel and item
    assert found.structure is None or _holds(found.structure, _footprints(dense, x))
    assert found.structure is None or np.unique(found.structure.colors).size >= 64
    xa = rng.standard_normal((2, 4, 20))
    wq = rng.standard_normal((4, 4))
    attention = lambda a: _attention(a, wq)  # noqa: E731
    found = probe_structure(attention, xa, attention(xa))
    assert found.structure is None or _holds(found.structure, _footprints(attention, xa))
    assert found.structure is None or np.unique(found.structure.colors).size == xa[0].size
    xb = rng.standard_normal((3, 5, 6, 6))
    found = probe_structure(_batch_norm, xb, _batch_norm(xb))
    assert found.structure is None, found.note
    assert "other batch items" in found.note


def test_a_probed_convolution_structure_holds_everywhere():
    x, w = _point(shape=(2, 3, 9, 9))
    f, _ = _conv(2, 1)
    g = lambda a: f(a, w)  # noqa: E731
    found = probe_structure(g, x, g(x))
    assert found.kind == "window" and _holds(found.structure, _footprints(g, x))


def _numeric_ok(report):
    """Verdict of a correct backward: passes, every element checked or said why not."""
    return report.passed


def test_non_local_layers_keep_their_verdicts(always_probe):
    rng = np.random.default_rng(4)
    xb = rng.standard_normal((3, 5, 6, 6))

    def bn_vjp(g, x):
        n = x.shape[0] * x.shape[2] * x.shape[3]
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        inv = 1 / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
        xh = (x - mu) * inv
        gs = g.sum(axis=(0, 2, 3), keepdims=True)
        gxh = (g * xh).sum(axis=(0, 2, 3), keepdims=True)
        return (inv / n * (n * g - gs - xh * gxh),)

    good = check_vjp(_batch_norm, bn_vjp, (xb,), seed=2)
    assert good.passed, str(good)
    assert good.arguments[0].n_checked == xb.size
    # the per-item mean instead of the batch's: wrong, and must be found
    def bn_wrong(g, x):
        return (bn_vjp(g, x)[0] + 0.01 * g.mean(axis=0, keepdims=True),)

    assert not check_vjp(_batch_norm, bn_wrong, (xb,), seed=2).passed


def test_a_structure_refuted_by_fs_own_derivative_is_dropped(always_probe):
    x, w = _point(shape=(2, 3, 12, 12))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x.shape)
    found = probe_structure(lambda a: _far_coupling(a, w), x, _far_coupling(x, w), seed=0)
    assert found.kind == "window"    # the probes do not see the coupling ...

    def vjp(g, x, w):
        gx, gw, _ = conv_backward(g, x, w, padding=1)
        gx = gx.copy()
        gx[1, 0, 7, 10] += g[1, 2, 7, 4] * x[1, 0, 7, 10]
        return gx, gw

    report = check_vjp(_far_coupling, vjp, (x, w), seed=1, wrt=[0])
    # ... but the check does: the structure is dropped, the right backward passes
    assert report.passed, str(report)
    assert any("did not hold" in n for n in report.to_dict()["notes"])
    assert report.arguments[0].n_checked == x.size

    def vjp_missing(g, x, w):      # the coupling's term forgotten: must fail
        gx, gw, _ = conv_backward(g, x, w, padding=1)
        return gx, gw

    bad = check_vjp(_far_coupling, vjp_missing, (x, w), seed=1, wrt=[0])
    assert not bad.passed
    worst = bad.to_dict()["checks"][0]["worst_index"]
    assert tuple(worst) == (1, 0, 7, 10)


def test_a_layer_that_raises_at_perturbed_points_is_reported_as_before(always_probe):
    from gradcheck import UserCodeError

    x, w = _point()
    f, f_vjp = _conv()
    base = x.copy()

    def fragile(x, w):
        if not np.array_equal(x, base):
            raise ValueError("only at the point")
        return f(x, w)

    with pytest.raises(UserCodeError, match="f raised ValueError"):
        check_vjp(fragile, f_vjp, (x, w), seed=1, wrt=[0])


def _depthwise(x, w):
    """Each channel with its own 3x3 filter, stride 1, padding 1: channels never mix."""
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)]), (3, 3),
                              axis=(-2, -1))
    return np.einsum("nchwij,cij->nchw", win, w)


def _maxpool(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


@pytest.mark.parametrize("name", ["depthwise", "maxpool"])
def test_channel_preserving_layers_are_colored_across_channels(name):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((3, 3, 3))
    g = (lambda a: _depthwise(a, w)) if name == "depthwise" else _maxpool
    found = probe_structure(g, x, g(x))
    assert found.kind == "window" and "channels mixed" not in found.note
    assert _holds(found.structure, _footprints(g, x))
    # one color holds every channel: fewer groups than a channel-mixing window
    assert np.unique(found.structure.colors).size == (9 if name == "depthwise" else 4)


def test_float32_user_conv_is_checked_in_full_with_a_probed_structure(always_probe):
    x, w = _point()
    x, w = x.astype(np.float32), w.astype(np.float32)
    f, f_vjp = _conv()
    report = check_vjp(f, f_vjp, (x, w), seed=1)
    assert report.passed, str(report)
    assert all(a.mode == "full" and a.n_checked == a.n_elements for a in report.arguments)
    assert any("found by probing" in n for n in report.to_dict()["notes"])
    scaled = check_vjp(f, lambda g, x, w: tuple(1.02 * v for v in f_vjp(g, x, w)),
                       (x, w), seed=1)
    assert not any(a.passed for a in scaled.arguments)
