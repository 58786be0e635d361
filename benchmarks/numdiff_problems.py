"""Problem sets of ``bench_numdiff.py``: functions with exact reference gradients.

Two sets, each drawn from a seed:

* :func:`problems` -- the set the differentiator's constants were measured on (the
  tuning record in ``gradcheck/numdiff/_core.py``): saturating activations, log-sum-exp,
  a dense tanh loss, a convolution with tanh, scalar functions with known derivatives,
  and inputs and coefficients over twelve decades;
* :func:`heldout_problems` -- families the constants were *not* tuned on, chosen for
  what breaks error models: functions that are only once differentiable (softsign,
  ELU, Huber) with inputs next to the point where the second derivative jumps, ReLU
  layers with pre-activations next to the kink, losses that cancel inside (softmax
  cross-entropy of confident rows, layer normalization, ``log(1 + exp(x))`` written out,
  an expanded cube around its double root), float32 work behind a float64 interface,
  and a convolution with softsign.

Every reference is computed in 40-digit arithmetic (``mpmath``) from analytic formulas
at exactly the (dtype-rounded) inputs and parameters the evaluated function uses.
"vjp" problems are a vector function ``f`` with a cotangent ``R`` (the gradient of
``<R, f(x)>``); "scalar" problems a scalar function.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

try:
    import mpmath as mp
except ImportError:  # pragma: no cover - the benchmark needs an exact reference
    sys.exit("bench_numdiff needs mpmath for its exact reference gradients")

import gradcheck

mp.mp.dps = 40


@dataclass
class Problem:
    name: str
    kind: str                 # "vjp" or "scalar"
    x: np.ndarray             # flat, in the evaluation dtype
    fun: object               # X (..., n) -> (..., m) for vjp, (...) for scalar
    exact: np.ndarray         # float64 reference gradient (from mpmath)
    R: np.ndarray | None = None
    counter: list = field(default_factory=lambda: [0])


def _mp(a) -> np.ndarray:
    """Exact conversion of a float array to an object array of mpf."""
    a = np.asarray(a)
    return np.array([mp.mpf(float(v)) for v in a.ravel()], dtype=object).reshape(a.shape)


def _mpmap(fn, a) -> np.ndarray:
    return np.frompyfunc(fn, 1, 1)(a)


def _to_float(a) -> np.ndarray:
    return np.array([float(v) for v in np.ravel(a)], dtype=np.float64).reshape(np.shape(a))


def _elementwise(name, phi, dphi_mp, x, dtype, rng, *, unit_R=False, coeffs=None):
    """Problem ``f(x) = c * phi(x)`` elementwise, contracted with ``R``."""
    x = np.asarray(x, dtype=dtype)
    R = np.ones_like(x) if unit_R else rng.standard_normal(x.size).astype(dtype)
    c = np.ones_like(x) if coeffs is None else np.asarray(coeffs, dtype=dtype)

    def fun(X):
        return c * phi(X)

    exact = _mp(R) * _mp(c) * _mpmap(dphi_mp, _mp(x))
    return Problem(name, "vjp", x, fun, _to_float(exact), R)


def _sech2(t):
    return mp.sech(t) ** 2


def problems(dtype, seed=0) -> list[Problem]:
    rng = np.random.default_rng(seed)
    out = []
    # --- saturating activations, with a tail of saturated inputs
    xs = np.concatenate([rng.normal(0, 1.5, 40), rng.choice([-1, 1], 8) * rng.uniform(8, 30, 8)])
    out.append(_elementwise("tanh", np.tanh, _sech2, xs, dtype, rng))
    xs = np.concatenate([rng.normal(0, 3, 40), rng.choice([-1, 1], 8) * rng.uniform(15, 40, 8)])
    out.append(_elementwise(
        "sigmoid", lambda t: 1 / (1 + np.exp(-t)),
        lambda t: mp.exp(-t) / (1 + mp.exp(-t)) ** 2, xs, dtype, rng))
    out.append(_elementwise(
        "softplus", lambda t: np.log1p(np.exp(t)), lambda t: 1 / (1 + mp.exp(-t)),
        rng.normal(0, 3, 40), dtype, rng))
    k = math.sqrt(2 / math.pi)

    def gelu(t):
        return 0.5 * t * (1 + np.tanh(k * (t + 0.044715 * t**3)))

    def gelu_mp(t):
        kk = mp.sqrt(2 / mp.pi)
        return 0.5 * t * (1 + mp.tanh(kk * (t + mp.mpf(0.044715) * t**3)))

    out.append(_elementwise("gelu", gelu, lambda t: mp.diff(gelu_mp, t),
                            rng.normal(0, 2, 40), dtype, rng))

    # --- row-wise log-sum-exp (scalar)
    x = rng.normal(0, 2, (3, 30)).astype(dtype)

    def lse(X):
        X = X.reshape(X.shape[:-1] + (3, 30))
        m = X.max(axis=-1, keepdims=True).real
        return (m[..., 0] + np.log(np.exp(X - m).sum(axis=-1))).sum(axis=-1)

    xm = _mp(x)
    e = _mpmap(mp.exp, xm)
    exact = e / e.sum(axis=1, keepdims=True)
    out.append(Problem("logsumexp", "scalar", x.ravel(), lse, _to_float(exact).ravel()))

    # --- dense tanh regression loss (scalar): 0.5 * |tanh(W x + b) - y|^2
    W = (rng.standard_normal((12, 24)) / 4).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)
    y = rng.uniform(-0.9, 0.9, 12).astype(dtype)
    x = rng.standard_normal(24).astype(dtype)

    def dense_loss(X):
        r = np.tanh(X @ W.T + b) - y
        return 0.5 * (r * r).sum(axis=-1)

    Wm, bm, ym, xm = _mp(W), _mp(b), _mp(y), _mp(x)
    z = Wm.dot(xm) + bm
    t = _mpmap(mp.tanh, z)
    exact = Wm.T.dot((t - ym) * (1 - t * t))
    out.append(Problem("dense_tanh_loss", "scalar", x, dense_loss, _to_float(exact)))

    # --- convolution + tanh, gradient w.r.t. x and w
    xc = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    wc = (rng.standard_normal((4, 3, 3, 3)) / 3).astype(dtype)
    bc = (rng.standard_normal(4) / 4).astype(dtype)
    R = rng.standard_normal((2, 4, 6, 6)).astype(dtype)

    def conv_x(X):
        lead = X.shape[:-1]
        y = gradcheck.conv_forward(X.reshape((-1, 3, 6, 6)), wc, bc, padding=1)
        return np.tanh(y).reshape(lead + (-1,))

    def conv_w(Wf):
        lead = Wf.shape[:-1]
        Ws = Wf.reshape((-1, 4, 3, 3, 3))
        ys = [gradcheck.conv_forward(xc, Wk, bc, padding=1) for Wk in Ws]
        return np.tanh(np.stack(ys)).reshape(lead + (-1,))

    gx, gw = _conv_exact(xc, wc, bc, R, _sech2)
    out.append(Problem("conv_tanh_x", "vjp", xc.ravel(), conv_x, gx.ravel(), R.ravel()))
    out.append(Problem("conv_tanh_w", "vjp", wc.ravel(), conv_w, gw.ravel(), R.ravel()))

    # --- scalar functions with known derivatives
    table = [
        ("exp", np.exp, mp.exp, rng.uniform(-3, 3, 12)),
        ("log", np.log, lambda t: 1 / t, rng.uniform(0.1, 10, 12)),
        ("sqrt", np.sqrt, lambda t: 1 / (2 * mp.sqrt(t)), rng.uniform(0.1, 10, 12)),
        ("sin", np.sin, mp.cos, rng.uniform(-6, 6, 12)),
        ("atan", np.arctan, lambda t: 1 / (1 + t * t), rng.uniform(-5, 5, 12)),
        ("cube", lambda t: t**3, lambda t: 3 * t * t, rng.uniform(-3, 3, 12)),
        ("lorentz", lambda t: 1 / (1 + t * t), lambda t: -2 * t / (1 + t * t) ** 2,
         rng.uniform(-4, 4, 12)),
    ]
    for name, phi, dphi, xs in table:
        out.append(_elementwise("fn_" + name, phi, dphi, xs, dtype, rng, unit_R=True))

    # --- wide dynamic range
    xs = 10.0 ** rng.uniform(-6, 6, 40)
    out.append(_elementwise("wide_x_sqrt", np.sqrt, lambda t: 1 / (2 * mp.sqrt(t)), xs,
                            dtype, rng))
    x = (10.0 ** rng.uniform(-6, 6, 40)).astype(dtype)
    out.append(Problem("wide_x_sumlog", "scalar", x, lambda X: np.log(X).sum(axis=-1),
                       _to_float(1 / _mp(x))))
    cs = 10.0 ** rng.uniform(-6, 6, 40)
    out.append(_elementwise("wide_c_tanh", np.tanh, _sech2, rng.normal(0, 1, 40), dtype, rng,
                            coeffs=cs))
    return out


def _conv_exact(x, w, b, R, dact):
    """d<R, act(conv(x, w) + b)>/dx and /dw in mpmath (``dact`` the activation's
    derivative), by direct sums over taps; padding 1."""
    xm, wm, bm, Rm = _mp(x), _mp(w), _mp(b), _mp(R)
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    xp = np.full((N, C, H + 2, W + 2), mp.mpf(0), dtype=object)
    xp[:, :, 1:-1, 1:-1] = xm
    z = np.empty((N, O, H, W), dtype=object)
    z[...] = mp.mpf(0)
    for o in range(O):
        z[:, o] += bm[o]
    for a in range(KH):
        for c in range(KW):
            patch = xp[:, :, a:a + H, c:c + W]                      # (N, C, H, W)
            for o in range(O):
                z[:, o] += (patch * wm[o, :, a, c][None, :, None, None]).sum(axis=1)
    delta = Rm * _mpmap(dact, z)                                     # (N, O, H, W)
    gxp = np.full(xp.shape, mp.mpf(0), dtype=object)
    gw = np.full(w.shape, mp.mpf(0), dtype=object)
    for a in range(KH):
        for c in range(KW):
            patch = xp[:, :, a:a + H, c:c + W]
            for o in range(O):
                gxp[:, :, a:a + H, c:c + W] += delta[:, o][:, None] * wm[o, :, a, c][None, :, None, None]
                gw[o, :, a, c] = (patch * delta[:, o][:, None]).sum(axis=(0, 2, 3))
    return _to_float(gxp[:, :, 1:-1, 1:-1]), _to_float(gw)


# ------------------------------------------------------------------------- held out


def _near(rng, at, n, lo=-4.0, hi=-1.0):
    """``n`` points 10**lo .. 10**hi from the values ``at``, on either side."""
    return rng.choice(np.atleast_1d(at), n) + rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(
        lo, hi, n)


def _where_mp(cond, a, b):
    return a if cond else b


def heldout_problems(dtype, seed=0) -> list[Problem]:
    """Families the constants were not measured on (module docstring)."""
    rng = np.random.default_rng(1000 + seed)
    dt = np.dtype(dtype)
    out = []
    # --- once-differentiable activations, inputs next to the jump of the second derivative
    xs = np.concatenate([rng.normal(0, 1.0, 24), _near(rng, 0.0, 16)])
    out.append(_elementwise("h_softsign", lambda t: t / (1 + np.abs(t)),
                            lambda t: 1 / (1 + abs(t)) ** 2, xs, dtype, rng))
    xs = np.concatenate([rng.normal(0, 1.5, 24), _near(rng, 0.0, 16)])
    out.append(_elementwise("h_elu", lambda t: np.where(t > 0, t, np.expm1(np.minimum(t, 0))),
                            lambda t: _where_mp(t > 0, mp.mpf(1), mp.exp(t)), xs, dtype, rng))
    xs = np.concatenate([rng.normal(0, 1.5, 24), _near(rng, [-1.0, 1.0], 16)])
    out.append(_elementwise(
        "h_huber", lambda t: np.where(np.abs(t) <= 1, 0.5 * t * t, np.abs(t) - 0.5),
        lambda t: _where_mp(abs(t) <= 1, t, mp.sign(t)), xs, dtype, rng))

    # --- a ReLU layer, half of its pre-activations 1e-4 .. 1e-1 from the kink
    W = (rng.standard_normal((16, 12)) / 3).astype(dt)
    x = rng.standard_normal(12).astype(dt)
    z0 = W.astype(np.float64) @ x.astype(np.float64)
    target = np.where(np.arange(16) % 2 == 0, _near(rng, 0.0, 16), rng.normal(0, 1, 16))
    b = (target - z0).astype(dt)
    R = rng.standard_normal(16).astype(dt)

    def relu_layer(X):
        return np.maximum(X @ W.T + b, 0)

    zm = _mp(W).dot(_mp(x)) + _mp(b)
    exact = _mp(W).T.dot(_mp(R) * np.array([mp.mpf(1) if v > 0 else mp.mpf(0) for v in zm]))
    out.append(Problem("h_relu_layer", "vjp", x, relu_layer, _to_float(exact), R))

    # --- softmax cross-entropy of rows from doubtful to confident (scalar)
    K = 8
    Z = (rng.standard_normal((4, K)) * np.array([[0.5], [2.0], [4.0], [8.0]])).astype(dt)
    t = rng.integers(0, K, 4)
    Z[np.arange(4), t] = np.abs(Z).max(axis=1) + np.abs(rng.normal(0, 1, 4)).astype(dt)

    def xent(X):
        X = X.reshape(X.shape[:-1] + (4, K))
        m = X.max(axis=-1, keepdims=True)
        lse = m[..., 0] + np.log(np.exp(X - m).sum(axis=-1))
        return (lse - np.take(X.reshape(X.shape[:-2] + (4 * K,)), t + K * np.arange(4),
                              axis=-1)).sum(axis=-1)

    Zm = _mp(Z)
    E = _mpmap(mp.exp, Zm)
    G = E / E.sum(axis=1, keepdims=True)
    G[np.arange(4), t] -= 1
    out.append(Problem("h_softmax_xent", "scalar", Z.ravel(), xent, _to_float(G).ravel()))

    # --- layer normalization then tanh, rows of 8, contracted with R
    Xl = (rng.normal(0, 1, (3, 8)) + rng.normal(0, 3, (3, 1))).astype(dt)
    Rl = rng.standard_normal((3, 8)).astype(dt)
    ln_eps = 1e-3

    def layernorm_tanh(X):
        X = X.reshape(X.shape[:-1] + (3, 8))
        mu = X.mean(axis=-1, keepdims=True)
        var = ((X - mu) ** 2).mean(axis=-1, keepdims=True)
        return np.tanh((X - mu) / np.sqrt(var + np.asarray(ln_eps, X.dtype))).reshape(
            X.shape[:-2] + (24,))

    Xm, Rm = _mp(Xl), _mp(Rl)
    mu = Xm.sum(axis=1, keepdims=True) / 8
    sd = _mpmap(mp.sqrt, ((Xm - mu) ** 2).sum(axis=1, keepdims=True) / 8 + _mp(np.asarray(
        ln_eps, dt)))
    u = (Xm - mu) / sd
    gu = Rm * _mpmap(_sech2, u)
    gx = (gu - gu.sum(axis=1, keepdims=True) / 8 - u * (gu * u).sum(axis=1, keepdims=True) / 8) / sd
    out.append(Problem("h_layernorm_tanh", "vjp", Xl.ravel(), layernorm_tanh,
                       _to_float(gx).ravel(), Rl.ravel()))

    # --- log(1 + exp(x)) written out: 1 + e^x cancels for x << 0
    lo = -8.0 if dt == np.float32 else -20.0
    out.append(_elementwise("h_naive_softplus", lambda t: np.log(1 + np.exp(t)),
                            lambda t: 1 / (1 + mp.exp(-t)), rng.uniform(lo, 4, 40), dtype, rng))

    # --- the cube around its double root, expanded: x^3 - 3x^2 + 3x - 1
    out.append(_elementwise("h_cube_expanded", lambda t: ((t - 3) * t + 3) * t - 1,
                            lambda t: 3 * (t - 1) ** 2, 1 + rng.uniform(-0.2, 0.2, 24), dtype,
                            rng, unit_R=True))

    # --- float32 work behind a float64 interface (float64 only: float32 is the dtype's own)
    if dt == np.float64:
        W6 = rng.standard_normal((6, 12))
        R6 = rng.standard_normal(6)
        x6 = rng.standard_normal(12)

        def in_float32(X):
            return np.tanh(X.astype(np.float32) @ W6.T.astype(np.float32)).astype(np.float64)

        W32 = _mp(W6.astype(np.float32))
        z6 = W32.dot(_mp(x6.astype(np.float32)))
        exact = W32.T.dot(_mp(R6) * _mpmap(_sech2, z6))
        out.append(Problem("h_float32_inside", "vjp", x6, in_float32, _to_float(exact), R6))

    # --- convolution with softsign, gradient with respect to the kernel
    xc = rng.standard_normal((2, 3, 5, 5)).astype(dt)
    wc = (rng.standard_normal((4, 3, 3, 3)) / 3).astype(dt)
    bc = (rng.standard_normal(4) / 4).astype(dt)
    Rc = rng.standard_normal((2, 4, 5, 5)).astype(dt)

    def conv_softsign_w(Wf):
        lead = Wf.shape[:-1]
        ys = [gradcheck.conv_forward(xc, Wk, bc, padding=1) for Wk in Wf.reshape((-1,) + wc.shape)]
        y = np.stack(ys)
        return (y / (1 + np.abs(y))).reshape(lead + (-1,))

    _, gw = _conv_exact(xc, wc, bc, Rc, lambda t: 1 / (1 + abs(t)) ** 2)
    out.append(Problem("h_conv_softsign_w", "vjp", wc.ravel(), conv_softsign_w, gw.ravel(),
                       Rc.ravel()))
    return out
