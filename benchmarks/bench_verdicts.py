"""Verdicts side by side: gradcheck's drop-ins vs torch.autograd.gradcheck and jax check_grads.

Run:  python benchmarks/bench_verdicts.py [--out benchmarks/results/verdicts.md]

One corpus of layers, each written twice -- as a ``torch.autograd.Function`` and as a
``jax.custom_vjp`` (or with the framework's own rule where the case is a built-in
operation: max-pool and sort ties) -- each either correct or broken by construction:

- **float32**: right layers computed in float32 (tanh, sigmoid, softplus, a cube, a
  linear layer, a convolution);
- **kinks**: ReLU, leaky ReLU, abs and hard-tanh evaluated *exactly* at their kinks;
- **ties**: max-pool with overlapping windows and sort, on inputs with repeated values;
- **small errors**: one element of a right gradient off by 1e-5 or 1e-4 (float64);
- **bugs**: a sign flip, a factor 2, the derivative taken at the output, a kernel not
  rotated, a missing bias gradient, one float32 element 2% off;
- **second order** (``order=2``): backwards that are differentiable again, and backwards
  right at first order whose own derivative is wrong (part of the graph detached).

Each tool judges each case once, in this process, with its default settings: torch's
``gradcheck`` / ``gradgradcheck`` (``raise_exception=False``), ``check_grads(f, args,
order, modes=["rev"])`` (jax's default tolerances), and gradcheck's drop-ins
``gradcheck.torch.gradcheck`` / ``gradgradcheck`` and ``gradcheck.jax.check_grads`` (no
options). A correct case that fails is a false alarm; a broken case that passes is a
miss. The counts, and every verdict, are written as a table.

Forward mode has a corpus of its own (:func:`forward_corpus`): the same layers with a
forward rule written by hand -- a ``torch.autograd.Function`` with a ``jvp`` staticmethod
beside its (right) backward, a ``jax.custom_jvp`` -- or the framework's own forward AD for
the ties; the broken ones have a wrong forward rule (one entry off by 1e-5 or 1e-4, a
sign, a factor, the derivative at the output, a flipped kernel, a missing tangent, a
term that does not scale with the tangent, a float32 entry 2% off). There the tools are
``torch.autograd.gradcheck(check_forward_ad=True, check_backward_ad=False)`` and
``check_grads(f, args, 1, modes=["fwd"])`` against the drop-ins called the same way.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Case:
    name: str
    group: str
    broken: bool
    dtype: str
    order: int
    fwd: Callable | None          # fwd(xp, *xs) -> y, with bwd a custom rule
    bwd: Callable | None          # bwd(xp, g, *xs) -> grads
    builtin: Callable | None      # builtin(fw, *xs) -> y: the framework's own rule
    inputs: Callable              # inputs(rng) -> tuple of float64 arrays
    jvp: Callable | None = None   # forward mode: jvp(xp, ts, *xs) -> the output tangent


# --------------------------------------------------------------------------- formulas


def _sig(xp, x):
    return 1 / (1 + xp.exp(-x))


def _onehot(xp, x, k, eps):
    n = math.prod(x.shape)
    return 1 + eps * (xp.arange(n).reshape(x.shape) == k)


def _const(xp, t):
    if getattr(xp, "__name__", "") == "torch":
        return t.detach()
    import jax

    return jax.lax.stop_gradient(t)


def _conv(xp, x, w):
    if getattr(xp, "__name__", "") == "torch":
        return xp.nn.functional.conv2d(x, w)
    import jax

    return jax.lax.conv(x, w, (1, 1), "VALID")


def _conv_grads(xp, g, x, w, flip=False):
    w_used = w.flip(-1, -2) if flip and getattr(xp, "__name__", "") == "torch" else \
        (w[:, :, ::-1, ::-1] if flip else w)
    if getattr(xp, "__name__", "") == "torch":
        import torch

        gx = torch.nn.grad.conv2d_input(x.shape, w_used, g)
        gw = torch.nn.grad.conv2d_weight(x, w.shape, g)
        return gx, gw
    import jax

    _, pull_x = jax.vjp(lambda a: jax.lax.conv(a, w_used, (1, 1), "VALID"), x)
    _, pull_w = jax.vjp(lambda b: jax.lax.conv(x, b, (1, 1), "VALID"), w)
    return pull_x(g)[0], pull_w(g)[0]


def _vec(shape=(3, 4), zeros=0):
    def draw(rng):
        x = rng.standard_normal(shape)
        if zeros:
            x.reshape(-1)[rng.choice(x.size, zeros, replace=False)] = 0.0
        return (x,)
    return draw


def _away(shape=(3, 4)):
    return lambda rng: (0.5 + np.abs(rng.standard_normal(shape)),)


def _lin(rng):
    return rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)


def _convin(rng):
    return rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))


def _ties_pool(rng):
    return (np.round(rng.standard_normal((1, 2, 5, 5)) * 1.5),)


def _ties_sort(rng):
    return (np.array([3.0, 1.0, 3.0, 2.0, 1.0, 2.0]),)


def _kinks_at(values):
    return lambda rng: (np.array(values, dtype=np.float64),)


TANH = (lambda xp, x: xp.tanh(x), lambda xp, g, x: (g * (1 - xp.tanh(x) ** 2),))
SIG = (lambda xp, x: _sig(xp, x), lambda xp, g, x: (g * _sig(xp, x) * (1 - _sig(xp, x)),))
SOFTPLUS = (lambda xp, x: xp.log1p(xp.exp(x)), lambda xp, g, x: (g * _sig(xp, x),))
CUBE = (lambda xp, x: x ** 3, lambda xp, g, x: (3 * g * x ** 2,))
LINEAR = (lambda xp, x, w, b: x @ w + b,
          lambda xp, g, x, w, b: (g @ w.T, x.T @ g, g.sum(0)))
CONV = (lambda xp, x, w: _conv(xp, x, w), lambda xp, g, x, w: _conv_grads(xp, g, x, w))
RELU = (lambda xp, x: x * (x > 0), lambda xp, g, x: (g * (x > 0),))
LEAKY = (lambda xp, x: xp.where(x > 0, x, 0.01 * x),
         lambda xp, g, x: (xp.where(x > 0, g, 0.01 * g),))
ABS = (lambda xp, x: xp.abs(x), lambda xp, g, x: (g * xp.sign(x),))
HARDTANH = (lambda xp, x: xp.clip(x, -1.0, 1.0),
            lambda xp, g, x: (g * ((x > -1) & (x < 1)),))


def _rowmean(xp, x):
    if getattr(xp, "__name__", "") == "torch":
        return x.mean(-1, keepdim=True)
    return x.mean(-1, keepdims=True)


def _layer_norm_rows_summed(xp, x):
    d = x - _rowmean(xp, x)
    return (d / xp.sqrt(_rowmean(xp, d * d) + 1e-5)).sum(-1)


def _layer_norm_rows_summed_vjp(xp, g, x, slip=0.0):
    # The true gradient is zero up to rounding: the terms of size 1/std cancel.
    d = x - _rowmean(xp, x)
    inv = 1 / xp.sqrt(_rowmean(xp, d * d) + 1e-5)
    xh = d * inv
    gg = g[..., None] * xp.ones_like(x)
    gx = inv * (gg - _rowmean(xp, gg) - xh * _rowmean(xp, gg * xh))
    return (gx + slip * inv * gg * (_onehot(xp, x, 5, 1.0) - 1),)


def _softmax(xp, x):
    e = xp.exp(x)
    return e / e.sum(-1)[..., None]


LAYER_NORM_SUMMED = (_layer_norm_rows_summed,
                     lambda xp, g, x: _layer_norm_rows_summed_vjp(xp, g, x))
SOFTMAX_SUMMED = (lambda xp, x: _softmax(xp, x).sum(-1),
                  lambda xp, g, x: (_softmax(xp, x) * (g[..., None] - (
                      g[..., None] * _softmax(xp, x)).sum(-1)[..., None]),))


def _off(rule, k, eps, which=0):
    fwd, bwd = rule

    def wrong(xp, g, *xs):
        grads = list(bwd(xp, g, *xs))
        grads[which] = grads[which] * _onehot(xp, grads[which], k, eps)
        return tuple(grads)

    return fwd, wrong


def corpus() -> list:
    c = []

    def add(name, group, broken, dtype, rule, inputs, order=1):
        c.append(Case(name, group, broken, dtype, order, rule[0], rule[1], None, inputs))

    for dt in ("float32",):
        add("tanh", "float32", False, dt, TANH, _vec())
        add("sigmoid", "float32", False, dt, SIG, _vec())
        add("softplus", "float32", False, dt, SOFTPLUS, _vec())
        add("cube", "float32", False, dt, CUBE, _vec())
        add("linear", "float32", False, dt, LINEAR, _lin)
        add("conv", "float32", False, dt, CONV, _convin)
    for dt in ("float64", "float32"):
        add(f"relu at 0 ({dt})", "kinks", False, dt, RELU, _vec(zeros=4))
        add(f"leaky relu at 0 ({dt})", "kinks", False, dt, LEAKY, _vec(zeros=4))
        add(f"abs at 0 ({dt})", "kinks", False, dt, ABS, _vec(zeros=4))
        add(f"hardtanh at +-1 ({dt})", "kinks", False, dt, HARDTANH,
            _kinks_at([-1.0, -0.5, 1.0, 0.3, 1.0, -1.0, 2.0]))
        c.append(Case(f"max-pool ties ({dt})", "ties", False, dt, 1, None, None,
                      lambda fw, x: fw.maxpool(x), _ties_pool))
        c.append(Case(f"sort ties ({dt})", "ties", False, dt, 1, None, None,
                      lambda fw, x: fw.sort(x) * fw.arange(x), _ties_sort))
    for name, rule, inputs in (("tanh", TANH, _vec()), ("cube", CUBE, _away()),
                               ("sigmoid", SIG, _vec()), ("softplus", SOFTPLUS, _vec())):
        add(f"{name}: one element off by 1e-5", "small errors", True, "float64",
            _off(rule, 5, 1e-5), inputs)
        add(f"{name}: one element off by 1e-4", "small errors", True, "float64",
            _off(rule, 5, 1e-4), inputs)
    add("linear: one weight-gradient element off by 1e-5", "small errors", True, "float64",
        _off(LINEAR, 2, 1e-5, which=1), _lin)
    add("conv: one weight-gradient element off by 1e-5", "small errors", True, "float64",
        _off(CONV, 7, 1e-5, which=1), _convin)
    add("conv: one input-gradient element off by 1e-5", "small errors", True, "float64",
        _off(CONV, 13, 1e-5), _convin)
    for dt in ("float64", "float32"):
        add(f"layer norm, rows summed ({dt})", "cancelling", False, dt, LAYER_NORM_SUMMED,
            _vec())
        add(f"softmax, rows summed ({dt})", "cancelling", False, dt, SOFTMAX_SUMMED, _vec())
    add("layer norm, rows summed: one element off by 1e-6 of its terms", "cancelling",
        True, "float64", (LAYER_NORM_SUMMED[0],
                          lambda xp, g, x: _layer_norm_rows_summed_vjp(xp, g, x, 1e-6)),
        _vec())
    add("softmax, rows summed: the (g . s) term missing", "cancelling", True, "float64",
        (SOFTMAX_SUMMED[0], lambda xp, g, x: (_softmax(xp, x) * g[..., None],)), _vec())
    add("tanh: sign flipped", "bugs", True, "float64",
        (TANH[0], lambda xp, g, x: (-g * (1 - xp.tanh(x) ** 2),)), _vec())
    add("sigmoid: factor 2", "bugs", True, "float64",
        (SIG[0], lambda xp, g, x: (2 * g * _sig(xp, x) * (1 - _sig(xp, x)),)), _vec())
    add("tanh: derivative at the output", "bugs", True, "float64",
        (TANH[0], lambda xp, g, x: (g * (1 - x ** 2),)), _vec())
    add("conv: kernel not rotated", "bugs", True, "float64",
        (CONV[0], lambda xp, g, x, w: _conv_grads(xp, g, x, w, flip=True)), _convin)
    add("linear: bias gradient missing", "bugs", True, "float64",
        (LINEAR[0], lambda xp, g, x, w, b: (g @ w.T, x.T @ g, 0 * b)), _lin)
    add("conv: one float32 element 2% off", "bugs", True, "float32",
        _off(CONV, 7, 2e-2, which=1), _convin)
    for dt in ("float64", "float32"):
        add(f"cube, order 2 ({dt})", "second order", False, dt, CUBE, _away(), order=2)
        add(f"tanh, order 2 ({dt})", "second order", False, dt, TANH, _vec(), order=2)
        add(f"softplus, order 2 ({dt})", "second order", False, dt, SOFTPLUS, _vec(), order=2)
    add("cube, order 2: x detached in the backward", "second order", True, "float64",
        (CUBE[0], lambda xp, g, x: (3 * g * _const(xp, x) ** 2,)), _away(), order=2)
    add("tanh, order 2: tanh(x) detached in the backward", "second order", True, "float64",
        (TANH[0], lambda xp, g, x: (g * (1 - _const(xp, xp.tanh(x)) ** 2),)), _vec(), order=2)
    add("sigmoid, order 2: backward detached", "second order", True, "float64",
        (SIG[0], lambda xp, g, x: (_const(xp, g * _sig(xp, x) * (1 - _sig(xp, x))),)),
        _vec(), order=2)
    return c


# --------------------------------------------------------------------------- forward rules


def _conv_jvp(xp, ts, x, w, flip=False):
    w_used = (w.flip(-1, -2) if getattr(xp, "__name__", "") == "torch" else
              w[:, :, ::-1, ::-1]) if flip else w
    return _conv(xp, ts[0], w_used) + _conv(xp, x, ts[1])


TANH_J = lambda xp, ts, x: (1 - xp.tanh(x) ** 2) * ts[0]  # noqa: E731
SIG_J = lambda xp, ts, x: _sig(xp, x) * (1 - _sig(xp, x)) * ts[0]  # noqa: E731
SOFTPLUS_J = lambda xp, ts, x: _sig(xp, x) * ts[0]  # noqa: E731
CUBE_J = lambda xp, ts, x: 3 * x ** 2 * ts[0]  # noqa: E731
LINEAR_J = lambda xp, ts, x, w, b: ts[0] @ w + x @ ts[1] + ts[2]  # noqa: E731
CONV_J = _conv_jvp
RELU_J = lambda xp, ts, x: ts[0] * (x > 0)  # noqa: E731
LEAKY_J = lambda xp, ts, x: xp.where(x > 0, ts[0], 0.01 * ts[0])  # noqa: E731
ABS_J = lambda xp, ts, x: xp.sign(x) * ts[0]  # noqa: E731
HARDTANH_J = lambda xp, ts, x: ts[0] * ((x > -1) & (x < 1))  # noqa: E731


def _jvp_off(jvp, k, eps, which=0):
    """``jvp`` with Jacobian column ``k`` of argument ``which`` off by a relative ``eps``."""
    def wrong(xp, ts, *xs):
        ts = list(ts)
        ts[which] = ts[which] * _onehot(xp, ts[which], k, eps)
        return jvp(xp, ts, *xs)

    return wrong


def forward_corpus() -> list:
    c = []

    def add(name, group, broken, dtype, rule, jvp, inputs):
        c.append(Case(name, group, broken, dtype, 1, rule[0], rule[1], None, inputs, jvp))

    for name, rule, jvp, inputs in (("tanh", TANH, TANH_J, _vec()), ("sigmoid", SIG, SIG_J, _vec()),
                                    ("softplus", SOFTPLUS, SOFTPLUS_J, _vec()),
                                    ("cube", CUBE, CUBE_J, _vec()),
                                    ("linear", LINEAR, LINEAR_J, _lin),
                                    ("conv", CONV, CONV_J, _convin)):
        add(name, "float32", False, "float32", rule, jvp, inputs)
    for dt in ("float64", "float32"):
        add(f"relu at 0 ({dt})", "kinks", False, dt, RELU, RELU_J, _vec(zeros=4))
        add(f"leaky relu at 0 ({dt})", "kinks", False, dt, LEAKY, LEAKY_J, _vec(zeros=4))
        add(f"abs at 0 ({dt})", "kinks", False, dt, ABS, ABS_J, _vec(zeros=4))
        add(f"hardtanh at +-1 ({dt})", "kinks", False, dt, HARDTANH, HARDTANH_J,
            _kinks_at([-1.0, -0.5, 1.0, 0.3, 1.0, -1.0, 2.0]))
        c.append(Case(f"max-pool ties ({dt})", "ties", False, dt, 1, None, None,
                      lambda fw, x: fw.maxpool(x), _ties_pool))
        c.append(Case(f"sort ties ({dt})", "ties", False, dt, 1, None, None,
                      lambda fw, x: fw.sort(x) * fw.arange(x), _ties_sort))
    for name, rule, jvp, inputs in (("tanh", TANH, TANH_J, _vec()), ("cube", CUBE, CUBE_J, _away()),
                                    ("sigmoid", SIG, SIG_J, _vec()),
                                    ("softplus", SOFTPLUS, SOFTPLUS_J, _vec())):
        for label, eps in (("1e-5", 1e-5), ("1e-4", 1e-4)):
            add(f"{name}: one JVP entry off by {label}", "small errors", True, "float64", rule,
                _jvp_off(jvp, 5, eps), inputs)
    add("linear: one weight column off by 1e-5", "small errors", True, "float64", LINEAR,
        _jvp_off(LINEAR_J, 2, 1e-5, which=1), _lin)
    add("conv: one weight column off by 1e-5", "small errors", True, "float64", CONV,
        _jvp_off(CONV_J, 7, 1e-5, which=1), _convin)
    add("conv: one input column off by 1e-5", "small errors", True, "float64", CONV,
        _jvp_off(CONV_J, 13, 1e-5), _convin)
    add("tanh: JVP sign flipped", "bugs", True, "float64", TANH,
        lambda xp, ts, x: -TANH_J(xp, ts, x), _vec())
    add("sigmoid: JVP factor 2", "bugs", True, "float64", SIG,
        lambda xp, ts, x: 2 * SIG_J(xp, ts, x), _vec())
    add("tanh: JVP at the output", "bugs", True, "float64", TANH,
        lambda xp, ts, x: (1 - x ** 2) * ts[0], _vec())
    add("conv: JVP with the kernel flipped", "bugs", True, "float64", CONV,
        lambda xp, ts, x, w: _conv_jvp(xp, ts, x, w, flip=True), _convin)
    add("linear: bias tangent missing", "bugs", True, "float64", LINEAR,
        lambda xp, ts, x, w, b: ts[0] @ w + x @ ts[1], _lin)
    add("tanh: a JVP term not scaling with the tangent (1e-4)", "bugs", True, "float64",
        TANH, lambda xp, ts, x: TANH_J(xp, ts, x) + 1e-4 * (1 - xp.tanh(x) ** 2), _vec())
    add("conv: one float32 weight column 2% off", "bugs", True, "float32", CONV,
        _jvp_off(CONV_J, 7, 2e-2, which=1), _convin)
    return c


# --------------------------------------------------------------------------- frameworks


class TorchSide:
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch
        torch.set_num_threads(1)

    def maxpool(self, x):
        return self.torch.nn.functional.max_pool2d(x, 2, stride=1)

    def sort(self, x):
        return self.torch.sort(x).values

    def arange(self, x):
        return self.torch.arange(x.shape[-1], dtype=x.dtype)

    def build(self, case, arrays):
        torch = self.torch
        dtype = getattr(torch, case.dtype)
        xs = tuple(torch.tensor(a, dtype=dtype, requires_grad=True) for a in arrays)
        if case.builtin is not None:
            return (lambda *t: case.builtin(self, *t)), xs
        fwd, bwd, jvp = case.fwd, case.bwd, case.jvp

        class Fn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *t):
                ctx.save_for_backward(*t)
                ctx.inputs = t
                return fwd(torch, *t)

            @staticmethod
            def backward(ctx, g):
                out = bwd(torch, g, *ctx.saved_tensors)
                return out if len(out) > 1 else out[0]

            @staticmethod
            def jvp(ctx, *ts):
                return jvp(torch, ts, *ctx.inputs)

        return Fn.apply, xs

    @staticmethod
    def _flags(forward):
        return {"check_forward_ad": True, "check_backward_ad": False} if forward else {}

    def reference(self, case, fn, xs, forward=False):
        from torch.autograd import gradcheck, gradgradcheck

        check = gradcheck if case.order == 1 else gradgradcheck
        try:
            return bool(check(fn, xs, raise_exception=False, **self._flags(forward)))
        except Exception:      # torch raised instead of answering: a failure
            return False

    def ours(self, case, fn, xs, forward=False):
        from gradcheck import GradcheckError
        from gradcheck.torch import gradcheck, gradgradcheck

        check = gradcheck if case.order == 1 else gradgradcheck
        try:
            return bool(check(fn, xs, raise_exception=False, **self._flags(forward)))
        except GradcheckError:
            return False


class JaxSide:
    name = "jax"

    def __init__(self):
        import jax

        self.jax = jax

    def maxpool(self, x):
        lax = self.jax.lax
        return lax.reduce_window(x, -np.inf, lax.max, (1, 1, 2, 2), (1, 1, 1, 1), "VALID")

    def sort(self, x):
        return self.jax.numpy.sort(x)

    def arange(self, x):
        return self.jax.numpy.arange(x.shape[-1], dtype=x.dtype)

    def build(self, case, arrays):
        jnp = self.jax.numpy
        xs = tuple(jnp.asarray(a, dtype=case.dtype) for a in arrays)
        if case.builtin is not None:
            return (lambda *t: case.builtin(self, *t)), xs
        fwd, bwd, jvp = case.fwd, case.bwd, case.jvp
        if jvp is not None:     # forward mode: the forward rule (JAX transposes it)
            @self.jax.custom_jvp
            def f(*t):
                return fwd(jnp, *t)

            f.defjvp(lambda p, t: (fwd(jnp, *p), jvp(jnp, t, *p)))
            return f, xs

        @self.jax.custom_vjp
        def f(*t):
            return fwd(jnp, *t)

        f.defvjp(lambda *t: (fwd(jnp, *t), t), lambda t, g: tuple(bwd(jnp, g, *t)))
        return f, xs

    def reference(self, case, f, xs, forward=False):
        from jax.test_util import check_grads

        try:
            check_grads(f, xs, case.order, modes=["fwd" if forward else "rev"])
            return True
        except Exception:      # AssertionError, or jax unable to differentiate
            return False

    def ours(self, case, f, xs, forward=False):
        from gradcheck import GradcheckError
        from gradcheck.jax import check_grads

        try:
            check_grads(f, xs, case.order, modes=["fwd" if forward else "rev"])
            return True
        except (AssertionError, GradcheckError):
            return False


def judge(side, cases, forward=False):
    rows = []
    for i, case in enumerate(cases):
        arrays = case.inputs(np.random.default_rng(i))
        ctx = side.jax.enable_x64(case.dtype == "float64") if side.name == "jax" else None
        if ctx is not None:
            ctx.__enter__()
        try:
            fn, xs = side.build(case, arrays)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = side.reference(case, fn, xs, forward)
                ours = side.ours(case, fn, xs, forward)
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
        rows.append((case, ref, ours))
    return rows


def counts(rows, which):
    right = [r for r in rows if not r[0].broken]
    broken = [r for r in rows if r[0].broken]
    alarms = sum(1 for r in right if not r[which])
    misses = sum(1 for r in broken if r[which])
    return len(right), alarms, len(broken), misses


LABELS = {"torch": ("torch.autograd.gradcheck / gradgradcheck",
                    "gradcheck.torch.gradcheck / gradgradcheck"),
          "jax": ("jax.test_util.check_grads (modes=['rev'])",
                  "gradcheck.jax.check_grads (modes=['rev'])"),
          "torch fwd": ("torch.autograd.gradcheck (check_forward_ad=True, "
                        "check_backward_ad=False)",
                        "gradcheck.torch.gradcheck (check_forward_ad=True, "
                        "check_backward_ad=False)"),
          "jax fwd": ("jax.test_util.check_grads (modes=['fwd'])",
                      "gradcheck.jax.check_grads (modes=['fwd'])")}


def _verdicts(results, sides):
    """The table of every verdict of ``sides`` (keys of ``results``)."""
    header = " | ".join(f"{side.split()[0]} | gradcheck.{side.split()[0]}" for side in sides)
    lines = [f"| case | group | dtype | expected | {header} |",
             "|---|---|---|---|" + "---|" * (2 * len(sides))]

    def cell(case, verdict):
        text = "pass" if verdict else "FAIL"
        return text if verdict != case.broken else f"**{text}**"

    by_case = {}
    for side in sides:
        for case, ref, ours in results.get(side, []):
            by_case.setdefault(case.name, [case]).extend([ref, ours])
    for name, (case, *v) in by_case.items():
        cells = [cell(case, x) for x in v]
        lines.append(f"| {name} | {case.group} | {case.dtype} | "
                     f"{'FAIL' if case.broken else 'pass'} | " + " | ".join(cells) + " |")
    return lines


def render(results, when):
    lines = [f"# Verdicts side by side ({when})", "",
             "`python benchmarks/bench_verdicts.py`: each tool judges each case once, with "
             "its default settings, in one process. A *false alarm* is a correct case that "
             "fails; a *miss* a broken case that passes. Reverse mode (the backward) and "
             "forward mode (the JVP: a hand-written forward rule, or the framework's own) "
             "are judged on corpora of their own.", "",
             "| tool | correct cases | false alarms | broken cases | misses |",
             "|---|---:|---:|---:|---:|"]
    for side, rows in results.items():
        for which, label in ((1, LABELS[side][0]), (2, LABELS[side][1])):
            n_ok, alarms, n_bad, misses = counts(rows, which)
            lines.append(f"| {label} | {n_ok} | {alarms} | {n_bad} | {misses} |")
    for title, sides in (("Reverse mode", ("torch", "jax")),
                         ("Forward mode", ("torch fwd", "jax fwd"))):
        present = tuple(side for side in sides if side in results)
        if present:
            lines += ["", f"{title}: every verdict (`pass` / `FAIL`; the expected one is "
                      f"`pass` for a correct case, `FAIL` for a broken one; a wrong verdict "
                      f"is in bold):", ""] + _verdicts(results, present)
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "verdicts.md"))
    args = parser.parse_args(argv)
    cases = corpus()
    results = {}
    for cls in (TorchSide, JaxSide):
        try:
            side = cls()
        except ImportError as exc:
            print(f"{cls.name}: not installed ({exc}); skipped")
            continue
        results[side.name] = judge(side, cases)
        results[f"{side.name} fwd"] = judge(side, forward_corpus(), forward=True)
    when = f"{datetime.date.today()}, {platform.machine()}, Python {platform.python_version()}"
    text = render(results, when)
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
