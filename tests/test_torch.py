"""gradcheck.torch: verdicts on torch Functions and Modules, the drop-ins, second order.

The layers here are written against torch's own operations (``torch.nn.grad`` for the
convolution's gradients, closed forms elsewhere); the expected verdicts follow from how
each case was built (a planted error at a known element, a backward cut from the graph),
not from the checker's output.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gradcheck.torch needs PyTorch "
                                            "(pip install torch==2.13.0)")
F = torch.nn.functional

from gradcheck import ConfigurationError, UserCodeError  # noqa: E402
from gradcheck.torch import (GradientCheckFailed, UncheckedWarning, check_function,  # noqa: E402
                             check_module, gradcheck, gradgradcheck)
from _torch_threads import one_thread  # noqa: E402,F401  (autouse fixture)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- layers


class Conv(torch.autograd.Function):
    """conv2d, padding 1, gradients from torch.nn.grad (the reference)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return F.conv2d(x, w, padding=1)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return (torch.nn.grad.conv2d_input(x.shape, w, g, padding=1),
                torch.nn.grad.conv2d_weight(x, w.shape, g, padding=1))


class ConvNotRotated(Conv):
    """The classic slip: the input gradient correlates with the kernel as stored."""

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = F.conv_transpose2d(g, w.flip(-1, -2), padding=1)
        return gx, torch.nn.grad.conv2d_weight(x, w.shape, g, padding=1)


class Relu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * (x > 0).to(g.dtype)


class Cube(torch.autograd.Function):
    """x ** 3 with a backward written in torch operations (differentiable again)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 3 * g * x ** 2


class OneElementOff(Cube):
    """The gradient of element 3 is off by 1e-5 relative."""

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        scale = torch.ones_like(x)
        scale[3] += 1e-5
        return 3 * g * x ** 2 * scale


def _cube_with(backward):
    return type("CubeVariant", (Cube,), {"backward": staticmethod(backward)})


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_right_conv_passes_in_its_own_dtype(dtype):
    seen = []

    def fn(x, w):
        seen.append((x.dtype, w.dtype))
        return Conv.apply(x, w)

    x = torch.randn(2, 3, 6, 6, dtype=dtype, generator=_gen())
    w = torch.randn(4, 3, 3, 3, dtype=dtype, generator=_gen(1))
    report = check_function(fn, (x, w))
    assert report.passed, str(report)
    assert [a.name for a in report.arguments] == ["x", "w"]
    assert report.dtype == str(dtype).replace("torch.", "")
    assert set(seen) == {(dtype, dtype)}      # never upcast on the numerical side


def test_an_unrotated_kernel_is_located_and_named():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=_gen())
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=_gen(1))
    report = check_function(ConvNotRotated.apply, (x, w))
    assert not report.passed and report["w"].passed
    assert report["x"].diagnosis.cause == "kernel_not_rotated"
    assert [a.name for a in report.arguments] == ["x", "w"]   # from Function.forward


def test_exact_relu_kinks_max_pool_and_sort_ties_pass_in_float32():
    x = torch.tensor([[-1.0, 0.0, 2.0], [0.0, 3.0, -0.5]], dtype=torch.float32)
    assert check_function(Relu.apply, (x,)).passed
    tied = torch.round(torch.randn(1, 2, 6, 6, generator=_gen(2)) * 2).float()
    assert check_function(lambda t: F.max_pool2d(t, 2, stride=1), (tied,)).passed
    values = torch.tensor([3.0, 1.0, 3.0, 2.0, 1.0], dtype=torch.float32)
    assert check_function(lambda t: torch.sort(t).values * torch.arange(5.0), (values,)).passed


def test_a_1e5_error_in_one_element_is_caught_with_both_values():
    x = torch.linspace(0.5, 2.0, 7, dtype=torch.float64)
    report = check_function(OneElementOff.apply, (x,))
    assert not report.passed
    arg = report["x"]
    assert arg.n_failed == 1 and arg.worst_index == (3,)
    true = 3 * float(x[3]) ** 2
    assert abs(abs(arg.analytic_at_worst) - abs(arg.numeric_at_worst)) > 1e-6 * true


def test_non_tensor_inputs_pass_through_and_requires_grad_selects():
    x = torch.randn(3, 4, dtype=torch.float64, generator=_gen(), requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, generator=_gen(1))     # not marked: constant
    idx = torch.tensor([2, 0, 1])

    def fn(x, w, idx, power, label):
        assert label == "keep" and power == 2
        return (x ** power * w)[idx]

    report = check_function(fn, (x, w, idx, 2, "keep"))
    assert report.passed and [a.name for a in report.arguments] == ["x"]


def test_several_outputs_are_checked_together_and_integer_outputs_skipped():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=_gen())

    def fn(t):
        y, idx = F.max_pool2d(t, 2, return_indices=True)
        return y, torch.tanh(t), idx

    assert check_function(fn, (x,)).passed


def test_user_code_failures_are_user_code_errors():
    x = torch.randn(3, dtype=torch.float64)
    with pytest.raises(UserCodeError, match=r"^boom raised ValueError: nope$"):
        def boom(t):
            raise ValueError("nope")
        check_function(boom, (x,))
    with pytest.raises(UserCodeError, match=r"returned no output that requires grad"):
        check_function(lambda t: t.detach() * 2, (x,))


@pytest.mark.parametrize("inputs, message", [
    ((torch.randn(3, dtype=torch.complex128),), r"complex tensor"),
    ((torch.randn(3).to(torch.float8_e5m2),), r"has dtype torch\.float8_e5m2; gradients "
                                              r"are checked in float16, bfloat16, float32 "
                                              r"or float64"),
    ((torch.arange(3),), r"no floating-point tensor among the inputs"),
    ((torch.tensor([1.0, float("nan")]),), r"contains NaN or infinity"),
])
def test_bad_inputs_are_configuration_errors(inputs, message):
    with pytest.raises(ConfigurationError, match=message):
        check_function(torch.sin, inputs)


def test_unknown_modes_and_orders_are_refused():
    x = torch.randn(3, dtype=torch.float64)
    with pytest.raises(ConfigurationError, match=r"unknown mode\(s\) \['forward'\]"):
        check_function(torch.sin, (x,), modes=("forward", "rev"))
    with pytest.raises(ConfigurationError, match=r"order must be 1 .* or 2"):
        check_function(torch.sin, (x,), order=3)


# --------------------------------------------------------------------------- modules


def test_check_module_names_parameters_and_leaves_the_module_unchanged():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Tanh(),
                              torch.nn.BatchNorm2d(3)).double()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, generator=_gen())
    report = check_module(net, x)
    assert report.passed, str(report)
    assert [a.name for a in report.arguments] == [
        "input", "0.weight", "0.bias", "2.weight", "2.bias"]
    for k, v in net.state_dict().items():      # running statistics untouched
        assert torch.equal(v, before[k]), k


def test_check_module_finds_a_wrong_custom_layer_inside():
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 3, 3, 3, dtype=torch.float64,
                                                    generator=_gen(3)))

        def forward(self, x):
            return ConvNotRotated.apply(x, self.w)

    x = torch.randn(1, 3, 5, 5, dtype=torch.float64, generator=_gen())
    report = check_module(Bad(), x)
    assert not report.passed and report["w"].passed and not report["input"].passed


# --------------------------------------------------------------------------- drop-ins


def test_gradcheck_drop_in_true_raise_and_false():
    x = torch.randn(3, 4, dtype=torch.float32, generator=_gen(), requires_grad=True)
    assert gradcheck(torch.sigmoid, (x,)) is True
    assert gradcheck(torch.sigmoid, x, eps=1e-3, atol=1e-5, rtol=1e-3, masked=None) is True
    y = torch.linspace(0.5, 2.0, 7, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradientCheckFailed) as info:
        gradcheck(OneElementOff.apply, (y,))
    assert isinstance(info.value, RuntimeError)            # as torch's GradcheckError
    assert "worst at index (3,)" in str(info.value) and info.value.report is not None
    assert gradcheck(OneElementOff.apply, (y,), raise_exception=False) is False


def test_a_drop_in_failure_is_torchs_gradcheck_error_too():
    from torch.autograd.gradcheck import GradcheckError

    class Doubled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.sin(x)

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 2 * g * torch.cos(x)                    # a factor of 2

    y = torch.linspace(0.5, 2.0, 7, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError):                    # what torch's own raises here
        torch.autograd.gradcheck(Doubled.apply, (y,))
    with pytest.raises(GradcheckError) as info:            # so an except clause still works
        gradcheck(Doubled.apply, (y,))
    assert isinstance(info.value, GradientCheckFailed) and info.value.report is not None


def test_gradcheck_drop_in_honours_atol_fast_mode_and_the_ad_flags():
    y = torch.linspace(0.5, 2.0, 7, dtype=torch.float64, requires_grad=True)
    assert gradcheck(OneElementOff.apply, (y,), atol=1e-3) is True   # the user's floor
    with pytest.raises(GradientCheckFailed, match=r"fast mode"):
        gradcheck(_cube_with(lambda ctx, g: 2 * Cube.backward(ctx, g)).apply, (y,),
                  fast_mode=True)
    assert gradcheck(torch.sin, (y,), check_forward_ad=True) is True
    with pytest.raises(ConfigurationError, match=r"check_forward_ad=False and "
                                                 r"check_backward_ad=False leave nothing"):
        gradcheck(torch.sin, (y,), check_backward_ad=False)
    with pytest.warns(UncheckedWarning, match=r"check_batched_grad=True is not checked"):
        assert gradcheck(torch.sin, (y,), check_batched_grad=True)


def test_nondet_tol_judges_a_noisy_backward_within_it():
    state = {"calls": 0}

    def noisy(ctx, g):
        x, = ctx.saved_tensors
        state["calls"] += 1
        return 3 * g * x ** 2 + 1e-9 * state["calls"]

    fn = _cube_with(noisy).apply
    x = torch.linspace(0.5, 2.0, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradientCheckFailed, match=r"the backward is not deterministic: two "
                                                  r"passes at the same point give gradients "
                                                  r"for 'x' that differ by up to 1e-09"):
        gradcheck(fn, (x,))
    report = check_function(fn, (x,), nondet_tol=1e-6)
    assert report.passed and any("nondet_tol = 1e-06" in n for n in report.notes)


def test_check_undefined_grad_and_check_grad_dtypes():
    class TwoOut(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return 2 * x, 3 * x

        @staticmethod
        def backward(ctx, g1, g2):
            return 2 * g1 + 3 * g2      # fails when one of them is undefined (None)

    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradientCheckFailed, match=r"fails when .* is undefined"):
        gradcheck(TwoOut.apply, (x,))
    assert gradcheck(TwoOut.apply, (x,), check_undefined_grad=False)
    assert gradcheck(Cube.apply, (x,), check_grad_dtypes=True)
    # torch casts a float32 gradient of a float64 input back to float64: it arrives with
    # float32's precision only (4e-8 relative), which a float64 check does not accept
    lower = _cube_with(lambda ctx, g: Cube.backward(ctx, g).float())
    assert gradcheck(lower.apply, (x,), raise_exception=False) is False


# --------------------------------------------------------------------------- second order


def test_gradgradcheck_passes_a_differentiable_backward():
    x = torch.linspace(-1.5, 1.5, 6, dtype=torch.float32, requires_grad=True)
    assert gradgradcheck(Cube.apply, (x,)) is True
    report = check_function(Cube.apply, (x.detach(),), order=2)
    assert [a.name for a in report.arguments] == ["x", "order2.x", "order2.grad_output"]
    assert report.passed


def test_gradgradcheck_catches_a_backward_whose_own_derivative_is_wrong():
    # first order right; x.detach() makes torch's double backward miss d/dx (3 g x^2)
    fn = _cube_with(lambda ctx, g: 3 * g * ctx.saved_tensors[0].detach() ** 2).apply
    x = torch.linspace(0.5, 2.0, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(fn, (x,))
    with pytest.raises(GradientCheckFailed) as info:
        gradgradcheck(fn, (x,))
    report = info.value.report
    assert not report["x"].passed and report["grad_output"].passed
    # named for what it is: the backward's x.detach() cuts d/dx (tests/test_second_order_slips)
    assert report["x"].diagnosis.cause == "double_backward_cut"
    assert "cuts 'x' from torch's graph: it calls .detach()" in report["x"].diagnosis.message


@pytest.mark.parametrize("backward, message", [
    (lambda ctx, g: (3 * g * ctx.saved_tensors[0] ** 2).detach(),
     r"cut from torch's graph: the backward detaches it"),
    (lambda ctx, g: torch.from_numpy(3 * g.detach().numpy() *
                                     ctx.saved_tensors[0].detach().numpy() ** 2),
     r"cut from torch's graph"),
    (lambda ctx, g: _under_no_grad(lambda: 3 * g * ctx.saved_tensors[0] ** 2),
     r"runs under torch\.no_grad\(\)"),
    (lambda ctx, g: torch.from_numpy(3 * g.numpy() * ctx.saved_tensors[0].numpy() ** 2),
     r"leaves torch \(it calls \.numpy\(\) on a tensor that requires grad\)"),
])
def test_a_backward_that_breaks_double_backward_fails_with_a_sentence(backward, message):
    fn = _cube_with(backward).apply
    x = torch.linspace(0.5, 2.0, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,), raise_exception=False) is False
    with pytest.raises(GradientCheckFailed, match=message):
        gradgradcheck(fn, (x,))


def _under_no_grad(compute):
    with torch.no_grad():
        return compute()


def test_once_differentiable_is_named():
    from torch.autograd.function import once_differentiable

    fn = _cube_with(once_differentiable(lambda ctx, g: Cube.backward(ctx, g))).apply
    x = torch.linspace(0.5, 2.0, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradientCheckFailed, match=r"is marked @once_differentiable"):
        gradgradcheck(fn, (x,))


def test_gradgradcheck_takes_grad_outputs_and_noncontiguous_ones():
    x = torch.randn(2, 3, dtype=torch.float64, generator=_gen(), requires_grad=True)
    g = torch.randn(2, 3, dtype=torch.float64, generator=_gen(1))
    assert gradgradcheck(torch.tanh, (x,), (g,), gen_non_contig_grad_outputs=True)
    with pytest.raises(ConfigurationError, match=r"grad_outputs has a tensor of shape \(3,\)"):
        gradgradcheck(torch.tanh, (x,), (torch.ones(3, dtype=torch.float64),))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_function_sees_cuda_tensors():  # pragma: no cover - no GPU here
    devices = []

    def fn(x):
        devices.append(x.device.type)
        return torch.tanh(x)

    x = torch.randn(4, 3, device="cuda", dtype=torch.float32)
    assert check_function(fn, (x,), order=2).passed and set(devices) == {"cuda"}


# --------------------------------------------------------------------------- forward mode


class SineJvpOff(torch.autograd.Function):
    """sin with a right backward and a forward-AD rule whose entry 3 is off by 1e-5."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.x = x
        return torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * torch.cos(x)

    @staticmethod
    def jvp(ctx, t):
        scale = torch.ones_like(ctx.x)
        scale[3] += 1e-5
        return torch.cos(ctx.x) * scale * t


def test_forward_mode_catches_a_jvp_the_backward_check_cannot_see():
    x = torch.linspace(0.5, 2.0, 7, dtype=torch.float64, requires_grad=True)
    assert gradcheck(SineJvpOff.apply, (x,)) is True                     # reverse only
    report = check_function(SineJvpOff.apply, (x,), modes=("rev", "fwd"))
    assert [a.name for a in report.arguments] == ["x", "fwd.x"]
    assert report["x"].passed and not report["fwd.x"].passed
    assert report["fwd.x"].n_failed == 1 and report["fwd.x"].worst_index == (3,)
    assert report["fwd.x"].diagnosis.cause == "single_element"
    with pytest.raises(GradientCheckFailed, match=r"fwd\.x: 1/7 FAIL; worst at index \(3,\)"):
        gradcheck(SineJvpOff.apply, (x,), check_forward_ad=True)
    only = check_function(SineJvpOff.apply, (x,), modes=("fwd",))
    assert [a.name for a in only.arguments] == ["fwd.x"] and only.ad_mode == "fwd"


@pytest.mark.parametrize("fn", [torch.tanh, torch.sigmoid, F.softplus,
                                lambda x: F.conv2d(x, torch.ones(2, 3, 3, 3) / 9)])
def test_forward_mode_has_no_false_alarm_in_float32(fn):
    x = torch.randn(1, 3, 5, 5, dtype=torch.float32, generator=_gen(4))
    assert check_function(fn, (x,), modes=("fwd",)).passed


def test_forward_mode_at_kinks_and_ties():
    z = torch.randn(3, 4, dtype=torch.float32, generator=_gen(5))
    z[0, 1] = z[2, 2] = 0
    report = check_function(lambda x: torch.relu(x), (z,), modes=("fwd",))
    assert report.passed and report["fwd.x"].n_nondifferentiable == 2
    pooled = torch.round(torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=_gen(6)) * 1.5)
    assert check_function(lambda x: F.max_pool2d(x, 2, stride=1), (pooled,),
                          modes=("fwd",)).passed
    values = torch.tensor([3.0, 1.0, 3.0, 2.0, 1.0, 2.0], dtype=torch.float64)
    assert check_function(lambda v: torch.sort(v).values * torch.arange(6.0), (values,),
                          modes=("fwd",)).passed


def test_forward_mode_of_a_module_and_its_parameters():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2).double()
    report = check_module(layer, torch.randn(4, 3, dtype=torch.float64), modes=("fwd",))
    assert report.passed
    assert [a.name for a in report.arguments] == ["fwd.input", "fwd.weight", "fwd.bias"]


class SineJvpOffAt(torch.autograd.Function):
    """sin, its backward right, its forward rule off by 1e-5 at flat element ``BAD``."""

    BAD = 777

    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        return g * torch.cos(ctx.x)

    @staticmethod
    def jvp(ctx, t):
        scale = torch.ones_like(ctx.x)
        scale.view(-1)[SineJvpOffAt.BAD] += 1e-5
        return torch.cos(ctx.x) * scale * t


def test_forward_mode_over_a_small_budget_samples_and_locates_a_wrong_column():
    x = torch.linspace(0.5, 2.0, 1200, dtype=torch.float64).reshape(2, 3, 10, 20)
    small = dict(modes=("fwd",), budget=100, time_budget=1e-6)
    report = check_function(lambda x: torch.sin(x), (x,), **small)
    a = report["fwd.x"]
    assert report.passed and a.mode == "sampled" and a.n_checked < a.n_elements == 1200
    assert "x: 1200 elements > budget 100; checked in sampled mode: sampled " in \
        report.notes[0]
    report = check_function(SineJvpOffAt.apply, (x,), **small)
    a = report["fwd.x"]
    bad = tuple(int(i) for i in np.unravel_index(SineJvpOffAt.BAD, x.shape))
    assert not report.passed and a.mode == "sampled" and a.n_failed == 1
    assert a.worst_index == bad and a.output_index == bad
    assert a.numeric_at_worst == pytest.approx(float(torch.cos(x[bad])), rel=1e-9)
    assert "bisection narrowed it to" in a.note
    with pytest.raises(GradientCheckFailed, match=r"fwd\.x: FAIL; 1 of \d+ sampled elements "
                                                  r"\(of 1200\) failed"):
        gradcheck(SineJvpOffAt.apply, (x.requires_grad_(),), check_forward_ad=True,
                  budget=100, time_budget=1e-6)


def test_a_function_without_a_jvp_rule_is_told_how_to_check_it():
    x = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    with pytest.raises(UserCodeError, match=r"forward AD \(torch.autograd.forward_ad\) "
                                            r"through Cube failed: You must implement the "
                                            r"jvp function.*needs a jvp staticmethod"):
        check_function(Cube.apply, (x,), modes=("fwd",))


def test_gradgradcheck_forward_over_reverse():
    x = torch.linspace(0.5, 2.0, 6, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(torch.tanh, (x,), check_fwd_over_rev=True) is True
    # the backward hides x (detach) from forward AD through it as well: its x-derivative
    # 6 g x is missing in both modes (forward AD needs the forward's jvp rule too)
    def jvp(ctx, t):
        return 3 * ctx.x ** 2 * t

    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.x = x
        return x ** 3

    fn = type("CubeDetached", (Cube,), {
        "forward": staticmethod(forward), "jvp": staticmethod(jvp),
        "backward": staticmethod(lambda ctx, g: 3 * g * ctx.saved_tensors[0].detach() ** 2),
    }).apply
    with pytest.raises(GradientCheckFailed) as info:
        gradgradcheck(fn, (x,), check_fwd_over_rev=True)
    report = info.value.report
    assert [a.name for a in report.arguments] == ["x", "grad_output", "fwd.x",
                                                  "fwd.grad_output"]
    assert not report["fwd.x"].passed and report["fwd.grad_output"].passed
    for row, words in (("x", "torch's double backward sees"),
                       ("fwd.x", "which carries no tangent, so forward mode through the "
                                 "backward (check_fwd_over_rev) sees")):
        assert report[row].diagnosis.cause == "double_backward_cut"
        assert words in report[row].diagnosis.message
    alone = gradgradcheck(fn, (x,), check_fwd_over_rev=True, check_rev_over_rev=False,
                          raise_exception=False)
    assert alone is False
    with pytest.raises(ConfigurationError, match=r"check_fwd_over_rev=False and "
                                                 r"check_rev_over_rev=False leave nothing"):
        gradgradcheck(torch.tanh, (x,), check_rev_over_rev=False)


def test_reverse_only_options_are_refused_in_forward_mode():
    x = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    with pytest.raises(ConfigurationError, match=r"cotangent applies to reverse mode"):
        check_function(torch.sin, (x,), modes=("fwd",), cotangent=torch.ones(5))


def test_the_drop_ins_let_the_users_own_exception_through():
    # torch.autograd.gradcheck propagates an exception of the function or its backward;
    # the drop-in too: it is no gradient failure
    class BadBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            raise KeyError("no such buffer")

    def boom(t):
        raise ValueError("nope")

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    for call in (lambda: gradcheck(boom, (x,)), lambda: gradgradcheck(boom, (x,)),
                 lambda: gradcheck(boom, (x,), raise_exception=False),
                 lambda: gradcheck(lambda t: t @ torch.ones(2), (x,))):
        with pytest.raises((ValueError, RuntimeError)) as info:
            call()
        assert not isinstance(info.value, GradientCheckFailed), info.value
    with pytest.raises(ValueError, match=r"^nope$"):
        gradcheck(boom, (x,))
    with pytest.raises(KeyError, match=r"no such buffer"):
        gradcheck(BadBackward.apply, (x,))
    with pytest.raises(UserCodeError, match=r"^the backward of BadBackward raised KeyError: .no such buffer.$"):
        check_function(BadBackward.apply, (x,))        # the checker's own: names it


# --------------------------------------------------------------------------- what is left out


def test_inputs_and_parameters_without_requires_grad_are_named_in_the_notes():
    # x marked, w not: only x is checked, and the report says w was not (nothing passes
    # by omission); a module's frozen bias likewise
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, dtype=torch.float64)
    n = torch.arange(3)                                  # not floating: not a gradient
    report = check_function(lambda x, w, n: torch.tanh(x @ w) * n[:, None], (x, w, n),
                            argnames=("x", "w", "n"))
    assert [a.name for a in report.arguments] == ["x"]
    assert ("not checked: input 'w' has requires_grad=False (only the tensors marked "
            "requires_grad=True are checked when any is; mark it to check its gradient)"
            ) in report.notes
    assert not any("'n'" in note for note in report.notes)
    assert "note: not checked: input 'w'" in str(report)
    # every floating input marked, or none: all are checked, nothing to say
    both = check_function(lambda x, w: torch.tanh(x @ w), (x.detach(), w))
    assert not any(note.startswith("not checked") for note in both.notes)

    lin = torch.nn.Linear(4, 2).double()
    lin.bias.requires_grad_(False)
    report = check_module(lin, torch.randn(3, 4, dtype=torch.float64))
    assert [a.name for a in report.arguments] == ["input", "weight"]
    assert any(note.startswith("not checked: parameter 'bias' has requires_grad=False")
               for note in report.notes)


class _LeakyWrongSlope(torch.autograd.Function):
    """leaky_relu (slope 0.01) whose backward uses 0.1 on the negative side."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.leaky_relu(x, 0.01)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.where(x > 0, 1.0, 0.1).to(g.dtype)


@pytest.mark.parametrize("seed", [0, 3])
def test_a_float32_leaky_slope_cause_counts_the_mismatches_the_header_counts(seed):
    """The header said 42/96 FAIL while the cause said "All 41 mismatches": one failing
    element, off by less than the fit's slack (its float32 numerical derivative noisy),
    was left out of the cause's count. Both now count every failed element."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 12, generator=gen, dtype=torch.float32)
    x[0, :4] = 0.0                                  # four elements at the kink
    report = check_function(_LeakyWrongSlope.apply, (x.requires_grad_(True),))
    a = report.arguments[0]
    assert not report.passed and a.diagnosis.cause == "value_mask"
    assert f"{a.n_failed}/96 FAIL" in a.summary()
    assert a.diagnosis.message.startswith(f"All {a.n_failed} mismatches lie exactly where "
                                          f"x < 0 (the negative inputs)")
    # every failed element is a negative input, as the message says
    assert np.all(x.detach().numpy()[a.failed_mask] < 0)
