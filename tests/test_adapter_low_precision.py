"""float16 and bfloat16 through the framework adapters (gradcheck.torch, gradcheck.jax).

The user's function runs in the tensors' own dtype; the checker differences it with steps
and tolerances from that dtype's resolution, as it does NumPy float16 and ml_dtypes
bfloat16 arrays. The wrong gradients are wrong in one element: the largest entry of the
weight gradient for the cotangent given, found from a float64 computation of the same
values (an independent route, not the code under test). A 5% error there is caught in
float16; bfloat16's resolution (8 significant bits) lets errors of 5% through -- the
checker's bfloat16 row catches about 15% and more -- so its wrong gradient is 30% off.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gradcheck import ConfigurationError, UserCodeError

torch = pytest.importorskip("torch", reason="the torch adapter needs PyTorch")
pytest.importorskip("ml_dtypes", reason="bfloat16 arrays come from ml_dtypes")

from gradcheck.torch import GradientCheckFailed, check_function, check_module, gradcheck  # noqa: E402
from _torch_threads import one_thread  # noqa: E402,F401  (autouse fixture)

LOW = [torch.float16, torch.bfloat16]
#: The error put into one element of a wrong gradient, per dtype (module notes).
ERROR = {torch.float16: 1.05, torch.bfloat16: 1.30}


def _name(dt) -> str:
    return str(dt).removeprefix("torch.")


# --------------------------------------------------------------------------- torch layers


@pytest.mark.parametrize("dt", LOW, ids=_name)
def test_a_right_linear_tanh_module_passes_in_its_own_dtype(dt):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh()).to(dt)
    x = torch.randn(4, 8).to(dt)
    report = check_module(net, x)
    assert report.passed, str(report)
    assert report.dtype == _name(dt)
    assert [a.dtype for a in report.arguments] == [_name(dt)] * 3
    assert net[0].weight.dtype == dt          # the module is left in its dtype


@pytest.mark.parametrize("dt", LOW, ids=_name)
def test_a_right_conv_module_passes_in_its_own_dtype(dt):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Tanh()).to(dt)
    x = torch.randn(1, 2, 5, 5).to(dt)
    report = check_module(net, x)
    assert report.passed, str(report)
    assert [a.name for a in report.arguments] == ["input", "0.weight", "0.bias"]
    assert all(a.n_checked == a.n_elements for a in report.arguments)


def _dense_tanh(scale=1.0, index=None):
    """tanh(x @ w.T) as an autograd.Function; its weight gradient's ``index`` times
    ``scale`` (computed in the inputs' dtype, as the layer runs)."""
    class DenseTanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return torch.tanh(x @ w.t())

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            y = torch.tanh(x @ w.t())
            d = g * (1 - y * y)
            gw = d.t() @ x
            if index is not None:
                gw = gw.clone()
                gw[index] = gw[index] * scale
            return d @ w, gw

    return DenseTanh


def _case(seed, dt):
    """``(x, w, R, j)``: the point, a cotangent and the largest entry of the exact weight
    gradient (float64 autograd of the same values)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 8, generator=gen).to(dt)
    w = (torch.randn(6, 8, generator=gen) / 3).to(dt)
    R = torch.randn(4, 6, generator=gen).to(dt)
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    torch.tanh(x64 @ w64.t()).backward(R.double())
    j = np.unravel_index(int(torch.argmax(w64.grad.abs())), tuple(w.shape))
    return x, w, R, tuple(int(k) for k in j)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("dt", LOW, ids=_name)
def test_a_wrong_element_of_a_functions_backward_fails(dt, seed):
    x, w, R, j = _case(seed, dt)
    right = check_function(_dense_tanh().apply, (x, w), cotangent=R)
    assert right.passed, str(right)
    bad = check_function(_dense_tanh(ERROR[dt], j).apply, (x, w), cotangent=R)
    assert not bad.passed, str(bad)
    assert bad["x"].passed and not bad["w"].passed
    assert bad["w"].worst_index == j and bad["w"].n_failed == 1


def _conv(scale=1.0, index=None):
    """conv2d as an autograd.Function, its backward by torch.nn.grad; its weight
    gradient's ``index`` times ``scale``."""
    F = torch.nn.functional

    class Conv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return F.conv2d(x, w)

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            gw = torch.nn.grad.conv2d_weight(x, w.shape, g)
            if index is not None:
                gw = gw.clone()
                gw[index] = gw[index] * scale
            return torch.nn.grad.conv2d_input(x.shape, w, g), gw

    return Conv


@pytest.mark.parametrize("seed", [0, 4])
@pytest.mark.parametrize("dt", LOW, ids=_name)
def test_a_wrong_element_of_a_conv_functions_weight_gradient_fails(dt, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, 5, 5, generator=gen).to(dt)
    w = (torch.randn(3, 2, 3, 3, generator=gen) / 4).to(dt)
    R = torch.randn(1, 3, 3, 3, generator=gen).to(dt)
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    torch.nn.functional.conv2d(x64, w64).backward(R.double())     # float64: the exact one
    j = tuple(int(k) for k in np.unravel_index(int(torch.argmax(w64.grad.abs())),
                                                 tuple(w.shape)))
    right = check_function(_conv().apply, (x, w), cotangent=R)
    assert right.passed, str(right)
    bad = check_function(_conv(ERROR[dt], j).apply, (x, w), cotangent=R)
    assert not bad.passed and bad["x"].passed, str(bad)
    assert bad["w"].worst_index == j and bad["w"].n_failed == 1


def test_the_torch_drop_in_takes_float16_inputs():
    x, w, _, j = _case(0, torch.float16)
    x.requires_grad_()
    w.requires_grad_()
    assert gradcheck(_dense_tanh().apply, (x, w)) is True
    assert gradcheck(torch.nn.functional.softplus, (x,)) is True
    with pytest.raises(GradientCheckFailed, match=r"MISMATCH"):
        gradcheck(_dense_tanh(1.5, j).apply, (x, w))


def test_float16_computation_stays_float16():
    seen = []

    def f(t):
        seen.append(t.dtype)
        return torch.sin(t)

    report = check_function(f, (torch.linspace(-1, 1, 5, dtype=torch.float16),))
    assert report.passed, str(report)
    assert set(seen) == {torch.float16} and len(seen) > 5


def test_float8_is_refused_naming_the_dtypes_checked():
    x = torch.randn(3).to(torch.float8_e4m3fn)
    with pytest.raises(ConfigurationError, match=r"has dtype torch\.float8_e4m3fn; gradients "
                                                 r"are checked in float16, bfloat16, float32 "
                                                 r"or float64"):
        check_function(lambda t: t.float(), (x,))


def test_bfloat16_without_ml_dtypes_is_refused_with_the_remedy(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    x = torch.randn(3).to(torch.bfloat16)
    with pytest.raises(ConfigurationError, match=r"'t' \(bfloat16\) is checked through NumPy "
                                                 r"arrays of ml_dtypes\.bfloat16.*not "
                                                 r"installed"):
        check_function(lambda t: torch.sin(t), (x,), argnames=("t",))


# --------------------------------------------------------------------------- jax


def _jax():
    jax = pytest.importorskip("jax", reason="the JAX adapter needs JAX")
    return jax, jax.numpy


def _jax_case(seed, dt):
    jax, jnp = _jax()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 8)).astype(dt)
    w = (rng.standard_normal((6, 8)) / 3).astype(dt)
    R = rng.standard_normal((4, 6)).astype(dt)
    x64, w64, R64 = (a.astype(np.float64) for a in (x, w, R))
    d = R64 * (1 - np.tanh(x64 @ w64.T) ** 2)
    gw = d.T @ x64                                      # the exact weight gradient, by hand
    j = tuple(int(k) for k in np.unravel_index(int(np.argmax(np.abs(gw))), gw.shape))
    return jnp.asarray(x), jnp.asarray(w), R, j


def _jax_dense_tanh(scale=1.0, index=None):
    jax, jnp = _jax()

    @jax.custom_vjp
    def dense_tanh(x, w):
        return jnp.tanh(x @ w.T)

    def fwd(x, w):
        return dense_tanh(x, w), (x, w)

    def bwd(res, g):
        x, w = res
        y = jnp.tanh(x @ w.T)
        d = g * (1 - y * y)
        gw = d.T @ x
        if index is not None:
            gw = gw.at[index].multiply(scale)
        return d @ w, gw

    dense_tanh.defvjp(fwd, bwd)
    return dense_tanh


def _low_numpy(name):
    import ml_dtypes

    return np.dtype(np.float16) if name == "float16" else np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_a_wrong_element_of_a_custom_vjp_fails(name, seed):
    from gradcheck.jax import check_function as jax_check

    x, w, R, j = _jax_case(seed, _low_numpy(name))
    right = jax_check(_jax_dense_tanh(), (x, w), cotangent=R)
    assert right.passed, str(right)
    assert right.dtype == name and right["w"].dtype == name
    scale = ERROR[torch.float16 if name == "float16" else torch.bfloat16]
    bad = jax_check(_jax_dense_tanh(scale, j), (x, w), cotangent=R)
    assert not bad.passed, str(bad)
    assert bad["x"].passed and bad["w"].worst_index == j and bad["w"].n_failed == 1


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_jax_check_grads_takes_low_precision_in_both_modes(name):
    from gradcheck.jax import check_function as jax_check
    from gradcheck.jax import check_grads

    jax, jnp = _jax()
    x, w, _, _ = _jax_case(1, _low_numpy(name))
    b = jnp.asarray(np.linspace(-0.3, 0.3, 6), x.dtype)

    def layer(x, w, b):
        return jnp.tanh(x @ w.T + b)

    check_grads(layer, (x, w, b), order=1)          # fwd and rev, JAX's default
    report = jax_check(layer, (x, w, b), modes=("rev", "fwd"))
    assert report.passed and report.dtype == name
    assert [a.name for a in report.arguments] == ["x", "w", "b", "fwd.x", "fwd.w", "fwd.b"]
    with pytest.raises(AssertionError, match=r"MISMATCH"):
        check_grads(_jax_dense_tanh(1.5, (0, 0)), (x, w), order=1, modes=("rev",))


def test_an_operation_torch_cannot_run_in_float16_is_said_not_cast():
    x = (torch.eye(3) + 0.1 * torch.rand(3, 3)).to(torch.float16)
    with pytest.raises(UserCodeError, match=r"^det raised NotImplementedError: .*not implemented "
                                            r"for 'Half' \(torch has no float16 kernel for an "
                                            r"operation of it on cpu; .*does not cast"):
        check_function(torch.det, (x,), name="det")


def test_a_torch_module_as_a_spec_layer_takes_bfloat16_arrays():
    import ml_dtypes

    from gradcheck import check_vjp
    from gradcheck.torch._layer import TorchLayer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    layer = TorchLayer.from_module(net, "net")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(bf16)
    params = [p.detach().numpy().astype(bf16) for p in net.parameters()]
    y = layer.forward(x, *params)
    want = torch.tanh(torch.nn.functional.linear(
        *(torch.tensor(a.astype(np.float32)).to(torch.bfloat16) for a in (x, *params))))
    assert y.dtype == bf16
    np.testing.assert_array_equal(y.astype(np.float32), want.float().numpy())
    report = check_vjp(layer.forward, layer.backward, (x, *params))
    assert report.passed and report.dtype == "bfloat16", str(report)


def test_a_float16_input_to_a_float32_module_is_said_with_the_cast():
    with pytest.raises(UserCodeError, match=r"^Linear raised RuntimeError: .* \(the input "
                                            r"is float16 and the module's parameters are "
                                            r"float32: cast one to the other's dtype, e\.g\. "
                                            r"module\.to\(x\.dtype\);"):
        check_module(torch.nn.Linear(3, 2), torch.randn(2, 3).half())


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_a_spec_with_a_torch_module_in_low_precision_is_checked(name):
    # a network computes float16 / bfloat16 in float32 (docs/spec-format.md): the torch
    # layer gets its input and parameters so, its parameters' gradients judged by their
    # own dtype's row; a bfloat16 output of the layer's first probe is an array too
    from gradcheck.spec import check_spec, loads_spec

    spec = loads_spec(f"""
name = "linear_{name}"
[input]
shape = [2, 4]
dtype = "{name}"
[[layer]]
type = "python"
target = "torch.nn:Linear"
kwargs = {{ in_features = 4, out_features = 3 }}
[check]
mode = "full"
""", format="toml")
    report = check_spec(spec)
    assert report.passed, str(report)
    assert [a.name for a in report.arguments] == [
        "input", "layer0.python.weight", "layer0.python.bias"]
    assert all(a.n_checked == a.n_elements for a in report.arguments)
