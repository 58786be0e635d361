"""Accuracy of numerical gradients: gradcheck's two paths against SciPy and numdifftools.

Run as ``python benchmarks/bench_numdiff.py`` (about a minute).  Prints a table and
writes it to ``benchmarks/results/numdiff.md`` (and the raw numbers to ``numdiff.json``).
``--seed N`` draws other problems of the same families (printed only, not written).

The problems (``numdiff_problems.py``): deep-learning-style functions with exact
reference gradients, in two sets -- the *tuning* set the differentiator's constants
were measured on, and a *held-out* set of families they were not (functions only once
differentiable next to the jump of their second derivative, ReLU layers next to the
kink, losses that cancel inside, float32 work behind a float64 interface).

Rows: gradcheck's default (``method="auto"``), its real-difference path
(``"adaptive"``, what every function that cannot take complex input gets) and its
complex step (``"complex"``, scored only on the problems whose code supports it: those
where ``"auto"`` accepts it, the element count says how many), beside SciPy's
``scipy.differentiate.jacobian``, numdifftools and textbook fixed-step formulas, all
measured in the same run on the same points.

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
import os
import platform
import sys
import time
import warnings

import numpy as np

import gradcheck
from numdiff_problems import heldout_problems, problems

HERE = os.path.dirname(os.path.abspath(__file__))
SETS = {"tuning": problems, "held-out": heldout_problems}

# ----------------------------------------------------------------------------- methods


def _counted(p, fun):
    """``fun`` counting the points it evaluates (a batch of B points counts B)."""
    def wrapped(X):
        X = np.asarray(X)
        p.counter[0] += int(np.prod(X.shape[:-1], dtype=np.int64)) if X.ndim > 1 else 1
        dt = np.result_type(p.x.dtype, np.complex64) if np.iscomplexobj(X) else p.x.dtype
        return fun(X.astype(dt, copy=False))
    return wrapped


def _numerical(p, f, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if p.kind == "vjp":
            return gradcheck.numerical_vjp(f, p.x, p.R, method=method, vectorized=True)
        return gradcheck.numerical_grad(f, p.x, method=method, vectorized=True)


def ours(method):
    """gradcheck with ``method``; for ``"complex"``, only where ``"auto"`` accepts the
    complex step (None elsewhere: the problem is left out of the row)."""
    def run(p):
        if method == "complex" and _numerical(p, p.fun, "auto").method != "complex":
            return None
        r = _numerical(p, _counted(p, p.fun), method)
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
    ("gradcheck real differences (adaptive)", ours("adaptive")),
    ("gradcheck complex step (complex)", ours("complex")),
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
    """Digits, cost and error-bar quality of ``run`` over the problems it applies to."""
    digits, cover, ratio, evals, n = [], [], [], 0, 0
    per_problem = {}
    for p in problems:
        p.counter[0] = 0
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")      # complex input to real-only code, on purpose
            out = run(p)
        if out is None:                 # the method does not apply to this problem
            continue
        g, e = out
        true = np.abs(g - p.exact)
        rel = true / np.abs(p.exact)
        d = np.minimum(17.0, -np.log10(np.where(np.isfinite(rel), rel, 1.0) + 1e-300))
        digits.append(d)
        row = {"digits": float(np.median(d))}
        if e is not None:
            cover.append(e >= true)
            ok = true > 0
            ratio.append(e[ok] / true[ok])
            row["coverage"] = float(np.mean(cover[-1]))
            row["beyond_10x"] = int(np.sum(true > 10 * e))
        evals += p.counter[0]
        n += p.x.size
        per_problem[p.name] = row
    if not digits:
        return None
    cat = np.concatenate
    return {"digits": float(np.median(cat(digits))), "evals": evals / n,
            "coverage": float(np.mean(cat(cover))) if cover else None,
            "tightness": float(np.median(cat(ratio))) if ratio else None,
            "beyond_10x": int(sum(r.get("beyond_10x", 0) for r in per_problem.values()))
            if cover else None,
            "elements": n, "per_problem": per_problem}


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0,
                        help="draw other problems of the same families (printed only, "
                             "not written)")
    parser.add_argument("--quick", action="store_true",
                        help="gradcheck's rows only, nothing written")
    parser.add_argument("--details", action="store_true",
                        help="with --seed or --quick: a table per problem too")
    args = parser.parse_args(argv)
    seed, quick = args.seed, args.quick
    t0 = time.perf_counter()
    results = {}
    for set_name, make in SETS.items():
        for dtype in (np.float64, np.float32):
            probs = make(dtype, seed=seed)
            for name, run in METHODS:
                mod = OPTIONAL.get(name)
                if quick and not name.startswith("gradcheck"):
                    continue
                if mod is not None:
                    try:
                        __import__(mod)
                    except ImportError:
                        print(f"skipping {name}: {mod} not installed")
                        continue
                row = score(probs, run)
                if row is not None:
                    results.setdefault(set_name, {}).setdefault(name, {})[
                        np.dtype(dtype).name] = row
    lines = table(results)
    print("\n".join(lines))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if seed != 0 or quick:       # other draws are printed, the results file keeps seed 0
        if args.details:
            for set_name in results:
                for dt in ("float64", "float32"):
                    print("\n".join([""] + per_problem_table(results[set_name], dt, set_name)))
        return
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    header = [
        "# Numerical gradients: accuracy, cost and error bars",
        "",
        f"`python benchmarks/bench_numdiff.py`, {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"problem seed {seed}.",
        "Two problem sets (`numdiff_problems.py`): the *tuning* set the differentiator's "
        "constants were measured on, and a *held-out* set of families they were not. "
        "Reference gradients exact (mpmath, 40 digits).",
        "digits: median of -log10(relative error), capped at 17; evals: points per element; "
        "coverage: share of elements whose error estimate >= true error; tightness: median "
        "estimate / true error; beyond 10x: elements whose true error exceeds ten error "
        "estimates (what would make a checker that allows ten error bars fail a right "
        "gradient). The complex-step row covers the problems whose code supports it.",
        "",
    ]
    details = []
    for set_name in results:
        for dt in ("float64", "float32"):
            details += [""] + per_problem_table(results[set_name], dt, set_name)
    with open(os.path.join(HERE, "results", "numdiff.md"), "w") as fh:
        fh.write("\n".join(header + lines + details) + "\n")
    with open(os.path.join(HERE, "results", "numdiff.json"), "w") as fh:
        json.dump(results, fh, indent=1)


def table(results):
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    def num(v):
        return "—" if v is None else f"{v:.2f}"

    lines = ["| method | set | dtype | elements | median digits | evals / element | coverage "
             "| tightness | beyond 10x |", "|---|---|---|---|---|---|---|---|---|"]
    for set_name, by_method in results.items():
        for name, by_dtype in by_method.items():
            for dt, r in by_dtype.items():
                lines.append(
                    f"| {name} | {set_name} | {dt} | {r['elements']} | {r['digits']:.2f} | "
                    f"{r['evals']:.2f} | {pct(r['coverage'])} | {num(r['tightness'])} | "
                    f"{'—' if r['beyond_10x'] is None else r['beyond_10x']} |")
    return lines


def per_problem_table(results, dtype, set_name):
    names = [n for n in results if dtype in results[n]]
    probs = list(results[names[0]][dtype]["per_problem"])

    def cell(n, p):
        r = results[n][dtype]["per_problem"].get(p)
        if r is None:
            return "—"
        return f"{r['digits']:.2f}" + (f" ({100 * r['coverage']:.0f}%)" if "coverage" in r else "")

    lines = [f"Median digits per problem, {set_name} set, {dtype} (coverage in parentheses):",
             "", "| problem | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for p in probs:
        lines.append(f"| {p} | " + " | ".join(cell(n, p) for n in names) + " |")
    return lines


if __name__ == "__main__":
    main()
