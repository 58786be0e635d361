"""The mutant suite: wrong backward passes the checker did not write, caught and named.

Every mutant is built from :mod:`tests._mutants` -- a convolution backward written
independently of the library and of the checker (per-channel ``scipy.signal``
correlations on the padded input) -- either with a mistake inside it (kernel not rotated,
transposed, channels swapped, stride zeros missing or misplaced, padding cropped off by
one) or with its correct result damaged afterwards (a constant factor, a sign, a region,
one element, the weight gradient flipped), or an activation's derivative taken at its
output. Each is checked through both entry points -- :func:`gradcheck.check_vjp` on a
plain function and :func:`gradcheck.check_layer` / :func:`gradcheck.check_network` on a
built-in layer whose ``backward`` is overridden -- in float64 and float32, across
strides 1-3, padding 0-2, dilation 1-2, groups 1-3 and 1-D/2-D/3-D inputs. A mutant must
fail in full mode with the diagnosis the issue asks for; the unmutated reference must
pass in every geometry (the control that makes the rest mean something).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_layer, check_network, check_vjp, conv_backward, conv_forward
from gradcheck.ops.activations import get_activation
from gradcheck.ops.layers import Activation, Conv, Dense, Flatten
from gradcheck.ops.network import Sequential

from _mutants import conv_reference_backward, conv_reference_forward

DTYPES = (np.float64, np.float32)


class Geometry:
    """One convolution configuration of the sweep."""

    def __init__(self, nd, stride, padding, dilation, groups):
        self.nd, self.stride, self.padding = nd, stride, padding
        self.dilation, self.groups = dilation, groups
        self.kernel = 3 if nd < 3 else 2
        self.spatial = {1: (9,), 2: (7, 7), 3: (4, 4, 4)}[nd]
        self.channels = 2 * groups

    @property
    def opts(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def point(self, dtype, seed=0):
        rng = np.random.default_rng([seed, self.nd, self.stride, self.padding,
                                     self.dilation, self.groups])
        x = rng.standard_normal((2, self.channels, *self.spatial))
        w = rng.standard_normal((self.channels, 2, *(self.kernel,) * self.nd))
        b = rng.standard_normal(self.channels)
        return tuple(a.astype(dtype) for a in (x, w, b))

    def __repr__(self):
        return (f"{self.nd}d-s{self.stride}-p{self.padding}-d{self.dilation}-"
                f"g{self.groups}")


GEOMETRIES = [
    Geometry(1, 1, 0, 1, 1),
    Geometry(2, 2, 1, 1, 1),
    Geometry(2, 3, 2, 2, 1),
    Geometry(1, 2, 2, 2, 3),
    Geometry(2, 1, 1, 2, 2),
    Geometry(3, 2, 1, 1, 1),
    Geometry(3, 1, 0, 1, 2),
]

#: mistake inside the input gradient -> the diagnosis the issue asks for
EXPECTED = {
    "not_rotated": "kernel_not_rotated",
    "transposed": "transposed",
    "channel_swap": "channel_axes_swapped",
    "no_stride_zeros": "stride_zeros_missing",
    "stride_phase": "padding_offset",     # a shift by one: the stride zeros misplaced
    "crop_offset": "padding_offset",      # a shift by one: the padding cropped off by one
}


def _applies(mistake, geom):
    if mistake == "transposed":
        return geom.nd >= 2
    if mistake == "channel_swap":
        return geom.groups == 1
    if mistake == "no_stride_zeros":
        return geom.stride > 1
    return True


#: every mistake in every geometry it applies to; the dtype alternates along the list, so
#: each mistake meets both dtypes and each geometry both dtypes
INNER_CASES = [(m, g) for m in EXPECTED for g in GEOMETRIES if _applies(m, g)]
INNER_CASES = [(m, g, DTYPES[i % 2]) for i, (m, g) in enumerate(INNER_CASES)]


def _conv_f(geom):
    return lambda x, w, b: conv_forward(x, w, b, **geom.opts)


# --------------------------------------------------------------------------- the control


def test_reference_backward_is_the_seeds_rule():
    """The mutants' base is right: it agrees with the library's conv_forward/conv_backward."""
    for geom in GEOMETRIES:
        x, w, b = geom.point(np.float64)
        y = conv_forward(x, w, b, **geom.opts)
        np.testing.assert_allclose(conv_reference_forward(x, w, b, **geom.opts), y,
                                   rtol=1e-12, atol=1e-12)
        g = np.random.default_rng(1).standard_normal(y.shape)
        for mine, lib in zip(conv_reference_backward(g, x, w, **geom.opts),
                             conv_backward(g, x, w, **geom.opts)):
            np.testing.assert_allclose(mine, lib, rtol=1e-12, atol=1e-12)


def test_reference_backward_matches_torch():
    torch = pytest.importorskip("torch")
    for geom in GEOMETRIES:
        x, w, b = geom.point(np.float64)
        conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
                3: torch.nn.functional.conv3d}[geom.nd]
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ty = conv(tx, tw, tb, **geom.opts)
        g = np.random.default_rng(1).standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(g))
        for mine, theirs in zip(conv_reference_backward(g, x, w, **geom.opts), (tx, tw, tb)):
            np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("geom", GEOMETRIES, ids=repr)
def test_unmutated_reference_passes(geom, dtype):
    report = check_vjp(_conv_f(geom),
                       lambda g, x, w, b: conv_reference_backward(g, x, w, **geom.opts),
                       geom.point(dtype), argnames=("x", "w", "b"), mode="full")
    assert report.passed, str(report)


# --------------------------------------------------------------------------- check_vjp


@pytest.mark.parametrize("mistake,geom,dtype", INNER_CASES,
                         ids=[f"{m}-{g!r}-{np.dtype(d).name}" for m, g, d in INNER_CASES])
def test_check_vjp_catches_and_names_input_gradient_mistakes(mistake, geom, dtype):
    report = check_vjp(
        _conv_f(geom),
        lambda g, x, w, b: conv_reference_backward(g, x, w, mistake=mistake, **geom.opts),
        geom.point(dtype), argnames=("x", "w", "b"), mode="full")
    assert not report.passed
    assert [a.name for a in report.failures] == ["x"]     # only grad_x was touched
    assert report["x"].diagnosis.cause == EXPECTED[mistake], str(report)
    assert report["x"].diagnosis.evidence["misfit_after"] <= 4.0


def _median_index(g):
    """The flat index of an entry of typical magnitude (not a zero of the gradient)."""
    a = np.abs(g).reshape(-1)
    nz = np.flatnonzero(a)
    return int(nz[np.argsort(a[nz], kind="stable")[nz.size // 2]])


def _single(rel_64, rel_32, which):
    # the element is chosen on the first call for each shape and dtype (an entry of
    # typical magnitude there) and kept: the damaged backward stays linear in g, as a
    # real slip is (choosing it afresh from each g would make it non-linear in g)
    chosen = {}

    def damage(gx, gw, gb, dtype):
        target = {"x": gx, "w": gw}[which]
        j = chosen.setdefault((target.shape, np.dtype(dtype).name), _median_index(target))
        target.reshape(-1)[j] *= 1 + (rel_64 if dtype == np.float64 else rel_32)
        damage.index = np.unravel_index(j, target.shape)
        return gx, gw, gb
    return damage


def _scaled(which, factor):
    def damage(gx, gw, gb, dtype):
        n_batch, taps = gx.shape[0], int(np.prod(gw.shape[2:]))
        f = {"2": 2.0, "1/N": 1.0 / n_batch, "1/K": 1.0 / taps}[factor]
        damage.factor = f
        if which == "x":
            return gx * dtype(f), gw, gb
        if which == "w":
            return gx, gw * dtype(f), gb
        return gx, gw, gb * dtype(f)
    return damage


def _zero_border_rows(gx, gw, gb, dtype):
    gx[..., 0] = 0
    return gx, gw, gb


def _zero_batch_item(gx, gw, gb, dtype):
    gx[1] = 0
    return gx, gw, gb


def _wrong_channel(gx, gw, gb, dtype):
    gx[:, 1] *= dtype(1.5)
    return gx, gw, gb


def _zero_weight_channel(gx, gw, gb, dtype):
    gw[1] = 0
    return gx, gw, gb


def _sign(gx, gw, gb, dtype):
    return -gx, gw, gb


def _flip_weight_gradient(gx, gw, gb, dtype):
    return gx, np.ascontiguousarray(np.flip(gw, axis=tuple(range(2, gw.ndim)))), gb


#: name -> (damage, argument that fails, diagnosis cause, check of the evidence)
DAMAGES = {
    "x_times_2": (_scaled("x", "2"), "x", "scaled",
                  lambda ev, d: ev["factor"] == pytest.approx(2.0, rel=1e-6)),
    "w_over_batch": (_scaled("w", "1/N"), "w", "scaled",
                     lambda ev, d: ev["factor"] == pytest.approx(d.factor, rel=1e-6)),
    "w_over_taps": (_scaled("w", "1/K"), "w", "scaled",
                    lambda ev, d: ev["factor"] == pytest.approx(d.factor, rel=1e-6)),
    "b_times_2": (_scaled("b", "2"), "b", "scaled",
                  lambda ev, d: ev["factor"] == pytest.approx(2.0, rel=1e-6)),
    "sign": (_sign, "x", "sign_flipped", lambda ev, d: ev["factor"] == -1.0),
    "border_rows_zero": (_zero_border_rows, "x", "region",
                         lambda ev, d: ev["region"].startswith("the first 1 position along "
                                                               "spatial axis")
                         and ev["analytic_zero_there"]),
    "batch_item_zero": (_zero_batch_item, "x", "region",
                        lambda ev, d: ev["region"].startswith("batch item 1")
                        and ev["analytic_zero_there"]),
    "channel_wrong": (_wrong_channel, "x", "region",
                      lambda ev, d: ev["region"].startswith("channel 1")
                      and not ev["analytic_zero_there"]),
    "weight_channel_zero": (_zero_weight_channel, "w", "region",
                            lambda ev, d: ev["region"].startswith("output channel 1")),
    "single_x_element": (_single(1e-5, 2e-2, "x"), "x", "single_element",
                         lambda ev, d: tuple(ev["index"]) == tuple(d.index)),
    "single_w_element": (_single(1e-5, 2e-2, "w"), "w", "single_element",
                         lambda ev, d: tuple(ev["index"]) == tuple(d.index)),
    "weight_gradient_flipped": (_flip_weight_gradient, "w", "kernel_not_rotated",
                                lambda ev, d: ev["misfit_after"] <= 4.0),
}

#: geometries where every input row and channel receives gradient (stride <= kernel)
DAMAGE_GEOMETRIES = [GEOMETRIES[0], GEOMETRIES[1], GEOMETRIES[4], GEOMETRIES[5]]
#: every damage in both dtypes, each dtype in a different geometry
DAMAGE_CASES = [(name, DAMAGE_GEOMETRIES[(i + k) % 4], DTYPES[k])
                for i, name in enumerate(DAMAGES) for k in (0, 1)]


@pytest.mark.parametrize("name,geom,dtype", DAMAGE_CASES,
                         ids=[f"{n}-{g!r}-{np.dtype(d).name}" for n, g, d in DAMAGE_CASES])
def test_check_vjp_catches_and_names_damaged_gradients(name, geom, dtype):
    damage, arg, cause, evidence_ok = DAMAGES[name]
    args = geom.point(dtype)

    def f_vjp(g, x, w, b):
        right = [np.array(a, copy=True) for a in conv_reference_backward(g, x, w, **geom.opts)]
        wrong = damage(*[np.array(a, copy=True) for a in right], dtype)
        # the mutant really changes something (else the test would prove nothing)
        assert any(not np.array_equal(r, m) for r, m in zip(right, wrong))
        return wrong

    report = check_vjp(_conv_f(geom), f_vjp, args, argnames=("x", "w", "b"), mode="full")
    assert not report.passed
    assert [a.name for a in report.failures] == [arg], str(report)
    diagnosis = report[arg].diagnosis
    assert diagnosis.cause == cause, str(report)
    assert evidence_ok(diagnosis.evidence, damage), diagnosis.evidence


SMOOTH = ("tanh", "sigmoid", "softplus", "gelu", "elu", "silu")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", SMOOTH)
def test_check_vjp_names_derivative_at_output_after_a_conv(act, dtype):
    """f = σ(conv(x, w, b)); the backward multiplies by σ'(σ(z)) instead of σ'(z)."""
    geom = GEOMETRIES[SMOOTH.index(act) % len(GEOMETRIES)]
    spec = get_activation(act)

    def f(x, w, b):
        return spec.value(conv_forward(x, w, b, **geom.opts))

    def f_vjp(g, x, w, b):
        a = spec.value(conv_forward(x, w, b, **geom.opts))
        return conv_reference_backward(g * spec.derivative(a), x, w, **geom.opts)

    report = check_vjp(f, f_vjp, geom.point(dtype), argnames=("x", "w", "b"), mode="full")
    assert not report.passed
    for a in report.failures:
        assert a.diagnosis.cause == "derivative_at_output", str(report)
    assert {a.name for a in report.failures} == {"x", "w", "b"}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_check_vjp_names_derivative_at_output_of_a_plain_activation(dtype):
    x = np.linspace(-3, 3, 24, dtype=dtype).reshape(4, 6)
    report = check_vjp(np.tanh, lambda g, x: (g * (1 - np.tanh(np.tanh(x)) ** 2),), (x,))
    assert not report.passed
    assert report.arguments[0].diagnosis.cause == "derivative_at_output"


# --------------------------------------------------------------------------- layers


class MutantConv(Conv):
    """A built-in Conv whose backward is the independent reference, with one mistake."""

    def __init__(self, *args, mistake=None, damage=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mistake, self.damage = mistake, damage

    def backward(self, grad_y, x, *params):
        gx, gw, gb = conv_reference_backward(np.asarray(grad_y), np.asarray(x), params[0],
                                             mistake=self.mistake, **self._options())
        if self.damage is not None:
            gx, gw, gb = self.damage(gx.copy(), gw.copy(), gb.copy(), np.asarray(x).dtype.type)
        return (gx, gw, gb) if self.bias else (gx, gw)


class OutputDerivativeActivation(Activation):
    """A built-in activation whose backward takes σ' at the output a = σ(z)."""

    def backward(self, grad_y, x, *params):
        return (grad_y * self.spec.derivative(self.spec.value(x)),)


def _layer(geom, **kw):
    return MutantConv(geom.channels, geom.kernel, **geom.opts, **kw)


LAYER_CASES = [(m, g) for m in EXPECTED for g in GEOMETRIES[1::2] if _applies(m, g)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mistake,geom", LAYER_CASES, ids=[f"{m}-{g!r}" for m, g in LAYER_CASES])
def test_check_layer_catches_and_names_mutated_conv(mistake, geom, dtype):
    layer = _layer(geom, mistake=mistake)
    report = check_layer(layer, input_shape=(2, geom.channels, *geom.spatial), dtype=dtype,
                         mode="full")
    assert not report.passed
    assert [a.name for a in report.failures] == ["x"]
    assert report["x"].diagnosis.cause == EXPECTED[mistake], str(report)


LAYER_DAMAGES = ["x_times_2", "w_over_batch", "sign", "batch_item_zero", "channel_wrong",
                 "single_x_element", "single_w_element", "weight_gradient_flipped"]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", LAYER_DAMAGES)
def test_check_layer_catches_and_names_damaged_conv(name, dtype):
    damage, arg, cause, evidence_ok = DAMAGES[name]
    geom = DAMAGE_GEOMETRIES[LAYER_DAMAGES.index(name) % 4]
    report = check_layer(_layer(geom, damage=damage),
                         input_shape=(2, geom.channels, *geom.spatial), dtype=dtype,
                         mode="full")
    assert not report.passed
    assert [a.name for a in report.failures] == [arg]
    assert report[arg].diagnosis.cause == cause, str(report)
    assert evidence_ok(report[arg].diagnosis.evidence, damage)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softsign", "gelu_tanh"])
def test_check_layer_names_activation_derivative_at_output(act, dtype):
    report = check_layer(OutputDerivativeActivation(act), input_shape=(2, 3, 4, 4),
                         dtype=dtype)
    assert not report.passed
    assert report["x"].diagnosis.cause == "derivative_at_output"


def test_reference_layer_passes_as_a_layer():
    """The control for the layer entry point: the unmutated subclass passes."""
    for geom in GEOMETRIES[:5]:
        for dtype in DTYPES:
            report = check_layer(_layer(geom), input_shape=(2, geom.channels, *geom.spatial),
                                 dtype=dtype, mode="full")
            assert report.passed, str(report)


def _net(layer, geom, loss="mse"):
    shape = (2, geom.channels, *geom.spatial)
    return Sequential([Conv(geom.channels, 3, padding=1, groups=geom.groups),
                       Activation("tanh"), layer, Activation("sigmoid"), Flatten(), Dense(3)],
                      shape, loss=loss)


#: each mistake in one dtype, both dtypes overall (networks are the slowest checks here)
NETWORK_CASES = [("not_rotated", GEOMETRIES[1], np.float64),
                 ("no_stride_zeros", GEOMETRIES[3], np.float32),
                 ("crop_offset", GEOMETRIES[4], np.float32),
                 ("transposed", GEOMETRIES[2], np.float64),
                 ("stride_phase", GEOMETRIES[1], np.float32)]


@pytest.mark.parametrize("mistake,geom,dtype", NETWORK_CASES,
                         ids=[f"{m}-{g!r}-{np.dtype(d).name}" for m, g, d in NETWORK_CASES])
def test_check_network_traces_a_deep_mistake_to_its_layer(mistake, geom, dtype):
    """A mistake in layer 2's input gradient reaches the input and layer 0's parameters."""
    report = check_network(_net(_layer(geom, mistake=mistake), geom), dtype=dtype,
                           mode="full")
    assert not report.passed
    assert {a.name for a in report.failures} == {"input", "layer0.conv.w", "layer0.conv.b"}
    for a in report.failures:
        assert a.diagnosis.cause == EXPECTED[mistake], str(report)
        assert a.diagnosis.message.startswith("In layer 2 (conv)")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_check_network_names_an_activation_mistake_below_a_conv(dtype):
    net = Sequential([Conv(2, 3, padding=1), OutputDerivativeActivation("tanh"),
                      Conv(2, 3, stride=2), Flatten(), Dense(3)], (2, 2, 7, 7),
                     loss="softmax_cross_entropy")
    report = check_network(net, dtype=dtype)
    assert {a.name for a in report.failures} == {"input", "layer0.conv.w", "layer0.conv.b"}
    for a in report.failures:
        assert a.diagnosis.cause == "derivative_at_output"
        assert "layer 1 (tanh)" in a.diagnosis.message
