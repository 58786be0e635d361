"""Accuracy of numerical gradients: gradcheck's defaults against SciPy and numdifftools.

Run as ``python benchmarks/bench_numdiff.py`` (about ten seconds).  Prints a table and
writes it to ``benchmarks/results/numdiff.md`` (and the raw numbers to ``numdiff.json``).
``--seed N`` draws a held-out problem set of the same families (printed only).

The problem set
---------------
Deep-learning-style functions at generic points, each with an exact reference gradient
computed in 40-digit arithmetic (``mpmath``) from analytic formulas, at exactly the
(dtype-rounded) inputs and parameters the evaluated function uses:

* saturating activations (tanh, sigmoid, softplus, GELU) elementwise, including inputs
  out in the saturated tails, contracted with a random cotangent ``R``;
* row-wise log-sum-exp and a dense tanh regression loss (scalar functions);
* a small convolution with tanh, ``tanh(conv(x, w) + b)``, with respect to ``x`` and ``w``
  (``gradcheck.conv_forward``), contracted with ``R``;
* scalar functions with known derivatives (exp, log, sqrt, sin, atan, x**3, 1/(1+x**2));
* wide dynamic range: inputs log-uniform over 1e-6..1e6 (``sqrt`` contracted with ``R``;
  the scalar ``sum(log x)``) and coefficients log-uniform over 1e-6..1e6 (``c * tanh(x)``).

"vjp" problems are a vector function ``f`` with a cotangent ``R``: the gradient of
``<R, f(x)>``.  Every method sees the same vector function: gradcheck through
``numerical_vjp``, SciPy and numdifftools by computing the Jacobian and contracting it
with ``R``.  "scalar" problems hand every method the same scalar function.

Metrics, per gradient element: digits ``= -log10(|g - g*| / |g*|)`` capped at 17 (an exact
answer); evaluations per element ``= points evaluated / elements``; coverage: the share
of elements whose error estimate is at least the true error; tightness: the median of
``estimate / true error`` (elements with a zero true error left out).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

try:
    import mpmath as mp
except ImportError:  # pragma: no cover - the benchmark needs an exact reference
    sys.exit("bench_numdiff needs mpmath for its exact reference gradients")

import gradcheck

mp.mp.dps = 40
HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- problems


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

    gx, gw = _conv_tanh_exact(xc, wc, bc, R)
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


def _conv_tanh_exact(x, w, b, R):
    """d<R, tanh(conv(x, w) + b)>/dx and /dw in mpmath, by direct sums over taps."""
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
    t = _mpmap(mp.tanh, z)
    delta = Rm * (1 - t * t)                                         # (N, O, H, W)
    gxp = np.full(xp.shape, mp.mpf(0), dtype=object)
    gw = np.full(w.shape, mp.mpf(0), dtype=object)
    for a in range(KH):
        for c in range(KW):
            patch = xp[:, :, a:a + H, c:c + W]
            for o in range(O):
                gxp[:, :, a:a + H, c:c + W] += delta[:, o][:, None] * wm[o, :, a, c][None, :, None, None]
                gw[o, :, a, c] = (patch * delta[:, o][:, None]).sum(axis=(0, 2, 3))
    return _to_float(gxp[:, :, 1:-1, 1:-1]), _to_float(gw)


# ----------------------------------------------------------------------------- methods


def _counted(p, fun):
    """``fun`` counting the points it evaluates (a batch of B points counts B)."""
    def wrapped(X):
        X = np.asarray(X)
        p.counter[0] += int(np.prod(X.shape[:-1], dtype=np.int64)) if X.ndim > 1 else 1
        dt = np.result_type(p.x.dtype, np.complex64) if np.iscomplexobj(X) else p.x.dtype
        return fun(X.astype(dt, copy=False))
    return wrapped


def ours(method):
    def run(p):
        f = _counted(p, p.fun)
        if p.kind == "vjp":
            r = gradcheck.numerical_vjp(f, p.x, p.R, method=method, vectorized=True)
        else:
            r = gradcheck.numerical_grad(f, p.x, method=method, vectorized=True)
        return r.grad.astype(np.float64), r.error.astype(np.float64)
    return run


def baseline(kind):
    """Textbook fixed-step formulas (no error estimate): central, 5-point, complex step."""
    def run(p):
        f = _counted(p, p.fun)
        eps = np.finfo(p.x.dtype).eps
        s = np.maximum(np.abs(p.x.astype(np.float64)), 1.0)
        n = p.x.size
        if kind == "complex":
            h = (eps * s)
            nodes, imag = (1,), True
        else:
            h = (eps ** (1 / 3) if kind == "central" else eps ** (1 / 5)) * s
            nodes, imag = ((-1, 1) if kind == "central" else (-2, -1, 1, 2)), False
        dt = np.result_type(p.x.dtype, np.complex64) if imag else p.x.dtype
        X = np.repeat(p.x[None].astype(dt), n * len(nodes), axis=0).reshape(n, len(nodes), n)
        hs = np.zeros((n, len(nodes)))
        for a, k in enumerate(nodes):
            xk = (p.x + 1j * k * h).astype(dt) if imag else (p.x + k * h).astype(dt)
            X[np.arange(n), a, np.arange(n)] = xk[np.arange(n)]
            hs[:, a] = k * h if imag else xk.astype(np.float64) - p.x.astype(np.float64)
        Y = f(X.reshape(n * len(nodes), n))
        Y = Y.reshape(n, len(nodes), -1)
        C = (Y @ p.R.astype(np.float64) if p.kind == "vjp" else Y[..., 0])
        if imag:
            g = C.imag[:, 0] / h
        elif kind == "central":
            g = (C[:, 1] - C[:, 0]).real / (hs[:, 1] - hs[:, 0])
        else:
            C = C.real
            g = (8 * (C[:, 2] - C[:, 1]) - (C[:, 3] - C[:, 0])) / (12 * h)
        return g, None
    return run


def scipy_jacobian(p):
    from scipy.differentiate import jacobian

    f = _counted(p, p.fun)

    def trailing(xi):                           # scipy: x axis first, batch trailing
        out = f(np.moveaxis(np.asarray(xi), 0, -1))
        return np.moveaxis(out, -1, 0) if p.kind == "vjp" else out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jacobian(trailing, p.x)
    J, E = np.asarray(res.df, np.float64), np.asarray(res.error, np.float64)
    if p.kind == "vjp":
        R = p.R.astype(np.float64)
        return R @ J, np.abs(R) @ E
    return J, E


def numdifftools_(p):
    import numdifftools as nd

    f = _counted(p, p.fun)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if p.kind == "vjp":
            res = nd.Jacobian(lambda v: f(np.asarray(v)), full_output=True)(p.x.astype(np.float64))
            R = p.R.astype(np.float64)
            J = np.asarray(res.estimate, np.float64).reshape(-1, p.x.size)
            E = np.asarray(res.error_estimate, np.float64).reshape(J.shape)
            return R @ J, np.abs(R) @ E
        res = nd.Gradient(lambda v: f(np.asarray(v)), full_output=True)(p.x.astype(np.float64))
        return (np.asarray(res.estimate, np.float64).reshape(-1),
                np.asarray(res.error_estimate, np.float64).reshape(-1))


METHODS = [
    ("gradcheck default (auto)", ours("auto")),
    ("gradcheck real (richardson)", ours("richardson")),
    ("scipy.differentiate.jacobian", scipy_jacobian),
    ("numdifftools Gradient/Jacobian", numdifftools_),
    ("plain central (eps^1/3 step)", baseline("central")),
    ("5-point central (eps^1/5 step)", baseline("5point")),
    ("complex step (eps step)", baseline("complex")),
]
OPTIONAL = {"scipy.differentiate.jacobian": "scipy.differentiate",
            "numdifftools Gradient/Jacobian": "numdifftools"}


# ----------------------------------------------------------------------------- scoring


def score(problems, run):
    digits, cover, ratio, evals, n = [], [], [], 0, 0
    per_problem = {}
    for p in problems:
        p.counter[0] = 0
        with np.errstate(all="ignore"):
            g, e = run(p)
        true = np.abs(g - p.exact)
        rel = true / np.abs(p.exact)
        d = np.minimum(17.0, -np.log10(np.where(np.isfinite(rel), rel, 1.0) + 1e-300))
        digits.append(d)
        if e is not None:
            cover.append(e >= true)
            ok = true > 0
            ratio.append(e[ok] / true[ok])
        evals += p.counter[0]
        n += p.x.size
        per_problem[p.name] = float(np.median(d))
    row = {"digits": float(np.median(np.concatenate(digits))), "evals": evals / n,
           "coverage": float(np.mean(np.concatenate(cover))) if cover else None,
           "tightness": float(np.median(np.concatenate(ratio))) if ratio else None,
           "elements": n, "per_problem": per_problem}
    return row


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
    t0 = time.perf_counter()
    results = {}
    for dtype in (np.float64, np.float32):
        probs = problems(dtype, seed=seed)
        for name, run in METHODS:
            mod = OPTIONAL.get(name)
            if mod is not None:
                try:
                    __import__(mod)
                except ImportError:
                    print(f"skipping {name}: {mod} not installed")
                    continue
            results.setdefault(name, {})[np.dtype(dtype).name] = score(probs, run)
    lines = table(results)
    print("\n".join(lines))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if seed != 0:            # held-out draws are printed, the results file keeps seed 0
        return
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    header = [
        "# Numerical gradients: accuracy, cost and error bars",
        "",
        f"`python benchmarks/bench_numdiff.py`, {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"problem seed {seed}.",
        f"{results[METHODS[0][0]]['float64']['elements']} gradient elements per dtype "
        "(problem set in the script's docstring); reference gradients exact (mpmath, 40 digits).",
        "digits: median of -log10(relative error), capped at 17; evals: points per element; "
        "coverage: share of elements whose error estimate >= true error; tightness: median "
        "estimate / true error.",
        "",
    ]
    details = []
    for dt in ("float64", "float32"):
        details += [""] + per_problem_table(results, dt)
    with open(os.path.join(HERE, "results", "numdiff.md"), "w") as fh:
        fh.write("\n".join(header + lines + details) + "\n")
    with open(os.path.join(HERE, "results", "numdiff.json"), "w") as fh:
        json.dump(results, fh, indent=1)


def table(results):
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    def num(v):
        return "—" if v is None else f"{v:.2f}"

    lines = ["| method | dtype | median digits | evals / element | coverage | tightness |",
             "|---|---|---|---|---|---|"]
    for name, by_dtype in results.items():
        for dt, r in by_dtype.items():
            lines.append(f"| {name} | {dt} | {r['digits']:.2f} | {r['evals']:.2f} | "
                         f"{pct(r['coverage'])} | {num(r['tightness'])} |")
    return lines


def per_problem_table(results, dtype):
    names = list(results)
    probs = list(results[names[0]][dtype]["per_problem"])
    lines = [f"Median digits per problem ({dtype}):", "",
             "| problem | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for p in probs:
        lines.append(f"| {p} | " + " | ".join(
            f"{results[n][dtype]['per_problem'][p]:.2f}" for n in names) + " |")
    return lines


if __name__ == "__main__":
    main()
