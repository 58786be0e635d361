"""Second-order slips: backwards right to first order whose own derivative is wrong.

A corpus of ``torch.autograd.Function``s (and the JAX ``custom_vjp`` analogues) whose
backward is right but cut from the framework's graph -- ``x.detach()``, ``torch.no_grad()``,
a ``.numpy()`` round trip, ``@once_differentiable``, a value the forward computed and
saved, ``jax.lax.stop_gradient`` -- each must fail at order 2 with the sentence naming the
argument whose second-order gradient is cut and how, through ``check_function``, the
drop-ins and the CLI; beside them backwards whose own derivative is wrong without a cut
(named otherwise, never "cut") and right Functions, which must pass.

The expected rows are derived by hand: for ``y = x**3`` the backward is ``3 x^2 g``, whose
derivatives are ``6 x g`` (for ``x``) and ``3 x^2`` (for ``g``); a cut removes exactly the
ones that flow through the cut value.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch slips need PyTorch")

from torch.autograd.function import once_differentiable  # noqa: E402

from gradcheck import UserCodeError  # noqa: E402
from gradcheck.cli import MISMATCH, OK, main  # noqa: E402
from gradcheck.torch import (GradientCheckFailed, check_function, check_module,  # noqa: E402
                             gradgradcheck)

CUT = "double_backward_cut"


def _no_grad(compute):
    with torch.no_grad():
        return compute()


def _cube(name, backward, forward=None):
    """``x**3`` with ``backward(ctx, g)``; ``forward(ctx, x)`` saves what it needs."""
    def default_forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward or default_forward),
        "backward": staticmethod(backward)})


def _saving_square(ctx, x):
    ctx.save_for_backward(x * x)         # an intermediate: computed without a graph
    return x ** 3


def _stashing_square(ctx, x):
    ctx.square = x.detach() ** 2         # a stale copy on ctx
    return x ** 3


class HalfSquare(torch.autograd.Function):
    """``x**2`` whose backward is half the right one (``g x`` for ``2 g x``)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * x


class Mul(torch.autograd.Function):
    """``x * w`` (elementwise), a right backward unless ``cut_w``."""

    cut_w = False

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w, g * x


class MulDetachedW(Mul):
    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w.detach(), g * x        # d/dw of the x-gradient is lost


# name -> (Function, {row: regex of its diagnosis}, rows that pass)
SLIPS = {
    "detach-input": (_cube("DetachInput", lambda ctx, g: 3 * ctx.saved_tensors[0].detach() ** 2
                           * g),
                     {"order2.x": r"cuts 'x' from torch's graph: it calls \.detach\(\) on a "
                                  r"tensor that requires grad"},
                     {"x", "order2.grad_output"}),
    "detach-result": (_cube("DetachResult", lambda ctx, g: (3 * ctx.saved_tensors[0] ** 2
                                                            * g).detach()),
                      {"order2.x": r"cuts 'x' .*calls \.detach\(\)",
                       "order2.grad_output": r"cuts 'grad_output' .*calls \.detach\(\)"},
                      {"x"}),
    "no-grad-whole": (_cube("NoGradWhole", lambda ctx, g: _no_grad(
                          lambda: 3 * ctx.saved_tensors[0] ** 2 * g)),
                      {"order2.x": r"cuts 'x' from torch's graph: it computes under "
                                   r"torch\.no_grad\(\)",
                       "order2.grad_output": r"cuts 'grad_output' .*torch\.no_grad\(\)"},
                      {"x"}),
    "no-grad-factor": (_cube("NoGradFactor", lambda ctx, g: _no_grad(
                           lambda: 3 * ctx.saved_tensors[0] ** 2) * g),
                       {"order2.x": r"cuts 'x' .*computes under torch\.no_grad\(\)"},
                       {"x", "order2.grad_output"}),
    "numpy-round-trip": (_cube("NumpyRoundTrip", lambda ctx, g: torch.from_numpy(
                             3 * ctx.saved_tensors[0].detach().numpy() ** 2) * g),
                         {"order2.x": r"cuts 'x' .*as a \.numpy\(\) round trip must"},
                         {"x", "order2.grad_output"}),
    "numpy-whole": (_cube("NumpyWhole", lambda ctx, g: torch.from_numpy(
                        3 * g.detach().numpy() * ctx.saved_tensors[0].detach().numpy() ** 2)),
                    {"order2.x": r"cuts 'x' .*\.numpy\(\) round trip",
                     "order2.grad_output": r"cuts 'grad_output' .*\.numpy\(\) round trip"},
                    {"x"}),
    "once-differentiable": (_cube("OnceDifferentiable", once_differentiable(
                                lambda ctx, g: 3 * ctx.saved_tensors[0] ** 2 * g)),
                            {"order2.x": r"marked @once_differentiable: .*with respect to 'x' "
                                         r"is lost",
                             "order2.grad_output": r"@once_differentiable: .*'grad_output'"},
                            {"x"}),
    "saved-intermediate": (_cube("SavedIntermediate", lambda ctx, g: 3 * ctx.saved_tensors[0]
                                 * g, forward=_saving_square),
                           {"order2.x": r"cuts 'x' .*uses a tensor its forward computed and "
                                        r"saved on ctx"},
                           {"x", "order2.grad_output"}),
    "stale-ctx-copy": (_cube("StaleCopy", lambda ctx, g: 3 * ctx.square * g,
                             forward=_stashing_square),
                       {"order2.x": r"cuts 'x' .*uses a tensor its forward computed"},
                       {"x", "order2.grad_output"}),
    "detached-weight": (MulDetachedW,
                        {"order2.w": r"cuts 'w' from torch's graph: it calls \.detach\(\)"},
                        {"x", "w", "order2.x", "order2.grad_output"}),
}

# part of the derivative cut (the graph still reaches x through another factor): named a
# cut when torch's double backward with the cut undone matches the numerical derivative;
# by hand, d/dx of 3 g x.detach() x is 3 g x, half of 6 g x
PARTIAL = {
    "half-detached": (_cube("HalfDetached", lambda ctx, g: 3 * ctx.saved_tensors[0].detach()
                            * ctx.saved_tensors[0] * g),
                      r"calls \.detach\(\) on a tensor that requires grad.*With that undone "
                      r"\(\.detach\(\) made a differentiable view\)"),
    "half-no-grad": (_cube("HalfNoGrad", lambda ctx, g: 3 * _no_grad(
                         lambda: ctx.saved_tensors[0] * 1.0) * ctx.saved_tensors[0] * g),
                     r"computes under torch\.no_grad\(\).*With that undone \(no_grad "
                     r"lifted\)"),
}

# backwards whose own derivative is wrong with nothing cut (or a harmless cut): failing,
# never named a cut
WRONG_NOT_CUT = {
    # the backward calls a Function whose own backward is half the right one: d/dx of
    # 3 g x^2 comes out 3 g x, half of 6 g x
    "inner-function-half": _cube("InnerHalf", lambda ctx, g: 3 * HalfSquare.apply(
        ctx.saved_tensors[0]) * g),
    # the same, and a sign taken of x.detach() (x > 0 here: its derivative is 0, so the
    # detach cuts nothing that matters; undoing it does not explain the mismatch)
    "inner-half-harmless-detach": _cube("InnerHalfSign", lambda ctx, g: 3 * HalfSquare.apply(
        ctx.saved_tensors[0]) * g * torch.sign(ctx.saved_tensors[0].detach())),
}


class Abs(torch.autograd.Function):
    """``|x|``: its backward detaches x for the sign, and is right (the derivative of the
    sign is 0 away from 0: cut and right)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.abs()

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * torch.sign(x.detach())


class CubeFromOutput(torch.autograd.Function):
    """``x**3``, its backward ``3 g y / x`` from the saved output (differentiable)."""

    @staticmethod
    def forward(ctx, x):
        y = x ** 3
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return 3 * g * y / x


CORRECT = {
    "cube": (_cube("Cube", lambda ctx, g: 3 * ctx.saved_tensors[0] ** 2 * g), torch.float64),
    "cube-float32": (_cube("Cube32", lambda ctx, g: 3 * ctx.saved_tensors[0] ** 2 * g),
                     torch.float32),
    "cube-from-output": (CubeFromOutput, torch.float64),
    "abs-detached-sign": (Abs, torch.float64),
    "linear": (_cube("Twice", lambda ctx, g: 2 * g, forward=lambda ctx, x: 2 * x),
               torch.float64),
    "mul": (Mul, torch.float64),
}


def _inputs(fn, dtype=torch.float64):
    x = torch.linspace(0.5, 2.0, 5, dtype=dtype)
    if fn in (Mul, MulDetachedW):
        return x, torch.linspace(-1.5, 1.0, 5, dtype=dtype)
    return (x,) if fn is not Abs else (torch.linspace(-2.0, 2.0, 6, dtype=dtype),)


@pytest.mark.parametrize("case", sorted(SLIPS))
def test_a_cut_backward_fails_with_the_sentence_naming_the_argument(case):
    fn, named, passing = SLIPS[case]
    report = check_function(fn.apply, _inputs(fn), order=2)
    assert not report.passed
    for row in report.arguments:
        if row.name in named:
            assert not row.passed and row.diagnosis.cause == CUT, (row.name, row.diagnosis)
            assert row.diagnosis.evidence["argument"] == row.name.split(".", 1)[1]
            message = row.diagnosis.message
            assert re.search(named[row.name], message), message
            # the numbers said are the row's: torch gives exactly 0 there
            assert row.analytic_at_worst == 0.0 and row.numeric_at_worst != 0.0
            assert f"{row.numeric_at_worst:.6g}" in message
        else:
            assert row.name in passing and row.passed, (row.name, row.diagnosis)


def test_the_hand_derived_values_of_the_cut_rows():
    # DetachInput at x = (0.5, ..., 2): torch gives 0 for d/dx <c, 3 g x^2> = 6 x g c, and
    # the numerical side finds that value (g, c the seeded draws, read from the report)
    fn, _, _ = SLIPS["detach-input"]
    (x,) = _inputs(fn)
    report = check_function(fn.apply, (x,), order=2, mode="full")
    row = report["order2.x"]
    c_g_product = row.numeric / (6 * x.numpy())     # g c per element
    assert np.all(np.abs(c_g_product) > 0)
    np.testing.assert_allclose(row.numeric, 6 * x.numpy() * c_g_product, rtol=1e-9)
    assert np.all(row.analytic == 0)
    # the grad_output row is 3 x^2 c, right: its analytic side is torch's
    assert report["order2.grad_output"].passed


@pytest.mark.parametrize("case", sorted(PARTIAL))
def test_a_partly_cut_backward_is_shown_cut_by_undoing_the_cut(case):
    fn, sentence = PARTIAL[case]
    report = check_function(fn.apply, _inputs(fn), order=2)
    row = report["order2.x"]
    assert report["x"].passed and report["order2.grad_output"].passed and not row.passed
    assert row.norm_ratio == pytest.approx(0.5, rel=1e-6)    # 3 g x of 6 g x, by hand
    assert row.diagnosis.cause == CUT and row.diagnosis.evidence["partial"] is True
    assert row.diagnosis.message.startswith(
        f"The backward of {fn.__name__} cuts part of its derivative with respect to 'x' "
        f"from torch's graph: it ")
    assert re.search(sentence, row.diagnosis.message), row.diagnosis.message
    ev = row.diagnosis.evidence
    assert ev["residual_after"] <= 1e-3 * ev["residual_before"]


def test_the_judged_cotangent_is_found_among_the_recorded_calls(monkeypatch):
    # the evidence for a partial cut is taken with the cotangent the row was judged with,
    # whichever call of the double backward recorded it: put another one first
    import gradcheck.torch._check as check_module_

    real = check_module_.recording

    def recording_after_another(vjp, calls, keep=4):
        def call(cotangent, *arrays):
            if not calls:
                calls.append((np.ones_like(cotangent) * 0.5, tuple(np.array(a) for a in arrays)))
            return real(vjp, calls, keep)(cotangent, *arrays)
        return call

    monkeypatch.setattr(check_module_, "recording", recording_after_another)
    fn, _ = PARTIAL["half-detached"]
    row = check_function(fn.apply, _inputs(fn), order=2)["order2.x"]
    assert row.diagnosis.cause == CUT and row.diagnosis.evidence["partial"] is True


@pytest.mark.parametrize("case", sorted(WRONG_NOT_CUT))
def test_a_wrong_own_derivative_without_a_cut_is_not_called_one(case):
    fn = WRONG_NOT_CUT[case]
    report = check_function(fn.apply, _inputs(fn), order=2)
    row = report["order2.x"]
    assert report["x"].passed and not row.passed
    assert row.norm_ratio == pytest.approx(0.5, rel=1e-6)    # 3 g x of 6 g x, by hand
    # named what the numbers show (a factor 1/2), never a cut: the inner Function's forward
    # runs with grad mode off (no no_grad of the user's), and the harmless detach is not
    # the cause (undoing it leaves the mismatch)
    assert row.diagnosis.cause == "scaled" and row.diagnosis.evidence["factor_text"] == "1/2"
    for word in ("cut", "detach", "no_grad"):
        assert word not in row.diagnosis.message, row.diagnosis.message


@pytest.mark.parametrize("case", sorted(CORRECT))
def test_a_right_double_backward_passes(case):
    fn, dtype = CORRECT[case]
    report = check_function(fn.apply, _inputs(fn, dtype), order=2)
    assert report.passed, str(report)
    assert all(row.diagnosis is None for row in report.arguments)
    assert gradgradcheck(fn.apply, tuple(t.requires_grad_() for t in _inputs(fn, dtype)))


@pytest.fixture
def no_dispatch_mode(monkeypatch):
    """A torch without ``torch.utils._python_dispatch`` (a private module of torch): its
    import fails as it would there."""
    import sys

    from gradcheck.torch import _second

    monkeypatch.setitem(sys.modules, "torch.utils._python_dispatch", None)
    _second._recorder_class.cache_clear()
    yield
    _second._recorder_class.cache_clear()


def test_without_dispatch_mode_a_cut_is_still_found_and_the_gap_is_said(no_dispatch_mode):
    # the graph walk still proves d/dx cut (torch gives exactly 0, the numerical value is
    # 6 x g c); how it was cut cannot be recorded, and the message says so
    fn, _, _ = SLIPS["detach-input"]
    row = check_function(fn.apply, _inputs(fn), order=2)["order2.x"]
    assert not row.passed and row.diagnosis.cause == CUT
    assert row.analytic_at_worst == 0.0 and row.numeric_at_worst != 0.0
    assert "has no TorchDispatchMode" in row.diagnosis.message
    assert "were not recorded" in row.diagnosis.message
    assert row.diagnosis.evidence["operations_recorded"] is False


def test_without_dispatch_mode_a_partial_cut_is_said_unexamined(no_dispatch_mode):
    # half of 6 g x is cut by a detach the record would have shown: the row still fails,
    # is not called a partial cut without that record, and says what was not looked at
    fn, _ = PARTIAL["half-detached"]
    row = check_function(fn.apply, _inputs(fn), order=2)["order2.x"]
    assert not row.passed and row.norm_ratio == pytest.approx(0.5, rel=1e-6)
    assert "partial" not in row.diagnosis.evidence
    assert "was not examined" in row.diagnosis.message
    assert row.diagnosis.evidence["operations_recorded"] is False


def test_the_drop_in_raises_with_the_sentence():
    fn, _, _ = SLIPS["detach-input"]
    x = _inputs(fn)[0].requires_grad_()
    with pytest.raises(GradientCheckFailed, match=r"likely cause: The backward of DetachInput "
                                                  r"cuts 'x' from torch's graph"):
        gradgradcheck(fn.apply, (x,))
    assert gradgradcheck(fn.apply, (x,), raise_exception=False) is False


def test_numpy_on_a_tensor_that_requires_grad_is_said_as_an_error():
    # x.numpy() (no detach) in the backward: torch refuses it while building the graph
    fn = _cube("NumpyOnGraph", lambda ctx, g: torch.from_numpy(
        3 * g.numpy() * ctx.saved_tensors[0].numpy() ** 2))
    with pytest.raises(UserCodeError, match=r"the backward of NumpyOnGraph leaves torch \(it "
                                            r"calls \.numpy\(\) on a tensor that requires grad"):
        check_function(fn.apply, _inputs(fn), order=2)


def test_a_module_whose_function_detaches_in_backward():
    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.linspace(-1.5, 1.0, 5, dtype=torch.float64))

        def forward(self, x):
            return MulDetachedW.apply(x, self.w)

    report = check_module(Layer(), torch.linspace(0.5, 2.0, 5, dtype=torch.float64), order=2)
    assert [r.name for r in report.arguments if not r.passed] == ["order2.w"]
    assert report["order2.w"].diagnosis.cause == CUT
    assert report["order2.w"].diagnosis.message.startswith(
        "The backward of MulDetachedW (in Layer) cuts 'w' from torch's graph")


# --------------------------------------------------------------------------- the CLI

LAYERS = textwrap.dedent("""
    import torch

    def _no_grad(compute):
        with torch.no_grad():
            return compute()

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3
        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 3 * x ** 2 * g

    class DetachedCube(Cube):
        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 3 * x.detach() ** 2 * g

    class NoGradCube(Cube):
        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return _no_grad(lambda: 3 * x ** 2) * g

    class NumpyCube(Cube):
        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return torch.from_numpy(3 * x.detach().numpy() ** 2) * g

    class SavedCube(Cube):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x * x)
            return x ** 3
        @staticmethod
        def backward(ctx, g):
            square, = ctx.saved_tensors
            return 3 * square * g

    class OnceCube(Cube):
        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 3 * x ** 2 * g
""")


@pytest.fixture
def layers(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    (tmp_path / "cubes.py").write_text(LAYERS)
    yield tmp_path
    torch.set_num_threads(before)


def _spec(folder, target, order_key=False):
    path = folder / f"{target.lower()}.toml"
    path.write_text(f'[input]\nshape = [2, 3]\nloc = 1.0\nscale = 0.3\n[[layer]]\n'
                    f'type = "python"\ntarget = "cubes.py:{target}"\n'
                    + ("[check]\norder = 2\n" if order_key else ""))
    return path


@pytest.mark.parametrize("target, sentence", [
    ("DetachedCube", "cuts 'input' from torch's graph: it calls .detach() on a tensor that "
                     "requires grad"),
    ("NoGradCube", "cuts 'input' from torch's graph: it computes under torch.no_grad()"),
    ("OnceCube", "is marked @once_differentiable: torch cannot differentiate it again, so "
                 "its derivative with respect to 'input' is lost"),
    ("NumpyCube", "cuts 'input' from torch's graph: it calls .detach() on a tensor that "
                  "requires grad (as a .numpy() round trip must)"),
    ("SavedCube", "cuts 'input' from torch's graph: it uses a tensor its forward computed "
                  "and saved on ctx"),
])
def test_the_cli_fails_a_cut_backward_with_the_sentence(layers, capsys, target, sentence):
    path = _spec(layers, target)
    assert main(["check", str(path)]) == OK                 # right to first order
    capsys.readouterr()
    assert main(["check", str(path), "--order", "2"]) == MISMATCH
    out, err = capsys.readouterr()
    assert "order2.input" in out and sentence in out, out + err
    assert f"The backward of {target} (in {target.lower()}) " in out
    assert "Traceback" not in out + err
    assert main(["check", str(_spec(layers, target, order_key=True))]) == MISMATCH
    assert sentence in capsys.readouterr()[0]


def test_the_cli_passes_the_right_layer_at_order_2(layers, capsys):
    assert main(["check", str(_spec(layers, "Cube")), "--order", "2"]) == OK
    out, _ = capsys.readouterr()
    assert "order2.input" in out and "cuts" not in out


def test_the_cli_json_carries_the_cause(layers, capsys):
    import json

    assert main(["check", str(_spec(layers, "DetachedCube")), "--order", "2", "--json"]) == \
        MISMATCH
    checks = {c["name"].split("::")[-1]: c for c in json.loads(capsys.readouterr()[0])["checks"]}
    row = checks["order2.input"]
    assert not row["passed"] and row["diagnosis"]["cause"] == CUT
    assert checks["order2.grad_output"]["passed"]


# --------------------------------------------------------------------------- JAX


def _jax():
    return pytest.importorskip("jax", reason="the JAX slips need JAX")


def _custom_cube(name, fwd, bwd):
    jax = _jax()

    @jax.custom_vjp
    def cube(x):
        return x ** 3

    cube.defvjp(fwd, bwd)
    cube.__name__ = name
    return cube


def _jax_cases():
    jax = _jax()
    stop = jax.lax.stop_gradient
    keep = lambda x: (x ** 3, x)      # noqa: E731 - the residual is x itself
    slips = {
        "stop-x": (_custom_cube("stop_x", keep, lambda x, g: (3 * stop(x) ** 2 * g,)),
                   {"order2.x"}),
        "stop-result": (_custom_cube("stop_result", keep, lambda x, g: (stop(3 * x ** 2 * g),)),
                        {"order2.x", "order2.grad_output"}),
        "stopped-residual": (_custom_cube("stopped_residual", lambda x: (x ** 3, stop(x ** 2)),
                                          lambda r, g: (3 * r * g,)), {"order2.x"}),
        "jitted-bwd": (_custom_cube("jitted_bwd", keep,
                                    jax.jit(lambda x, g: (3 * stop(x) ** 2 * g,))), {"order2.x"}),
    }
    right = {
        "cube": _custom_cube("cube", keep, lambda x, g: (3 * x ** 2 * g,)),
        "cube-from-output": _custom_cube("cube_out", lambda x: (x ** 3, (x, x ** 3)),
                                         lambda r, g: (3 * r[1] / r[0] * g,)),
    }
    return slips, right


def test_jax_stop_gradient_in_the_backward_is_named():
    from gradcheck.jax import check_function as jax_check

    jnp = _jax().numpy
    slips, right = _jax_cases()
    x = jnp.linspace(0.5, 2.0, 5, dtype=jnp.float32)
    for name, (f, named) in slips.items():
        report = jax_check(f, (x,), order=2)
        assert not report.passed and report["x"].passed, name
        for row in report.arguments:
            if row.name in named:
                arg = row.name.split(".", 1)[1]
                assert row.diagnosis.cause == CUT, (name, row.diagnosis)
                assert f"cuts {arg!r} with jax.lax.stop_gradient" in row.diagnosis.message
                assert row.analytic_at_worst == 0.0
            else:
                assert row.passed, (name, row.name)
    for name, f in right.items():
        report = jax_check(f, (x,), order=2)
        assert report.passed, (name, str(report))


def test_jax_a_wrong_inner_rule_is_not_called_a_cut():
    jax = _jax()
    from gradcheck.jax import check_function as jax_check

    @jax.custom_vjp
    def half_square(x):
        return x * x

    half_square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))    # 2 g x belongs
    f = _custom_cube("inner_half", lambda x: (x ** 3, x),
                     lambda x, g: (3 * half_square(x) * g,))
    report = jax_check(f, (jax.numpy.linspace(0.5, 2.0, 5),), order=2)
    row = report["order2.x"]
    assert report["x"].passed and not row.passed
    assert row.diagnosis.cause != CUT and "stop_gradient" not in row.diagnosis.message
    assert row.norm_ratio == pytest.approx(0.5, rel=1e-4)


def test_jax_check_grads_carries_the_sentence():
    from gradcheck.jax import check_grads

    jnp = _jax().numpy
    slips, _ = _jax_cases()
    with pytest.raises(AssertionError, match=r"cuts 'x' with jax\.lax\.stop_gradient"):
        check_grads(slips["stop-x"][0], (jnp.linspace(0.5, 2.0, 5),), order=2, modes=("rev",))


def test_jax_a_partial_stop_gradient_is_shown_by_removing_it():
    jax = _jax()
    from gradcheck.jax import check_function as jax_check

    stop = jax.lax.stop_gradient

    @jax.custom_vjp
    def half_square(x):
        return x * x

    half_square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))
    keep = lambda x: (x ** 3, x)      # noqa: E731
    x = jax.numpy.linspace(0.5, 2.0, 5)
    # 3 stop(x) x g: d/dx is 3 x g where 6 x g belongs (by hand), the graph reaches x
    partial = _custom_cube("partial_stop", keep, lambda x, g: (3 * stop(x) * x * g,))
    row = jax_check(partial, (x,), order=2)["order2.x"]
    assert not row.passed and row.norm_ratio == pytest.approx(0.5, rel=1e-4)
    assert row.diagnosis.cause == CUT and row.diagnosis.evidence["partial"] is True
    assert row.diagnosis.message.startswith(
        "The backward of partial_stop cuts part of its derivative with respect to 'x' with "
        "jax.lax.stop_gradient")
    # a stop_gradient under a sign (derivative 0 for x > 0) beside a wrong inner rule:
    # removing it does not explain the mismatch, so it is not named
    harmless = _custom_cube("harmless_stop", keep, lambda x, g: (
        3 * half_square(x) * g * jax.numpy.sign(stop(x)),))
    row = jax_check(harmless, (x,), order=2)["order2.x"]
    assert not row.passed and row.diagnosis.cause == "scaled"
    assert "stop_gradient" not in row.diagnosis.message
