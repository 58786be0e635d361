"""How much rounding a right gradient carries in a long sum, against exact sums.

Run:  python benchmarks/bench_long_sums.py [--out benchmarks/results/long_sums.md]

Each "true" value is the correctly rounded sum of the very terms the code under test
sums: float64 products split error-free (Dekker's two-product), float32 products formed
exactly in float64, summed by ``math.fsum``. Errors are in ulps of ``|g_j| + s`` (``s`` the
root-mean-square of the exact gradient), the unit of the checker's analytic allowance
(:mod:`gradcheck.checker._tolerance`, *Long reductions*), which is ``64 G(L)`` ulps with
``G(L) = max(1, sqrt(L / 4096))``. Tables:

1. sums of ``n`` terms taken sequentially (``np.add.reduce`` over a leading axis) and
   pairwise (NumPy's ``sum`` along a contiguous axis), zero mean and mean 1;
2. the weight gradient of a 3x3 convolution over an input ``(4, 8, H, H)`` (``n = 4 H H``
   terms): gradcheck's own (BLAS) and torch's kernels;
3. the failing case that started this: ``check_layer(Conv(8, 3, padding=1))`` on ``(4, 8,
   128, 128)``, every weight element, the analytic and the numerical side each against the
   exact gradient, and the numerical side's error against its own error bar.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np


def two_product(a, b):
    """``(p, e)`` with ``p + e == a * b`` exactly (float64)."""
    p = a * b

    def split(v):
        c = 134217729.0 * v
        hi = c - (c - v)
        return hi, v - hi

    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def exact_dot(a, b) -> float:
    p, e = two_product(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())
    return math.fsum(np.concatenate([p, e]))


def ulps(got, exact, eps):
    exact = np.asarray(exact, np.float64)
    s = float(np.sqrt(np.mean(exact ** 2)))
    return np.abs(np.asarray(got, np.float64) - exact) / (eps * (np.abs(exact) + s))


def allowed(length):
    from gradcheck.checker._tolerance import reduction_growth
    return 64 * reduction_growth(length)


def sums_table(columns=32):
    rows = ["| dtype | n | mean | sequential (max) | pairwise (max) | 0.26 sqrt(n) | allowance at L = n |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    rng = np.random.default_rng(0)
    for n in (2 ** 16, 2 ** 19):
        base = rng.standard_normal((n, columns))
        for mean in (0.0, 1.0):
            for dtype in ("float64", "float32"):
                t = (base + mean).astype(dtype)
                exact = [math.fsum(t[:, j].astype(np.float64)) for j in range(columns)]
                eps = float(np.finfo(dtype).eps)
                seq = ulps(np.add.reduce(t, axis=0), exact, eps).max()
                pair = ulps(np.ascontiguousarray(t.T).sum(axis=1), exact, eps).max()
                rows.append(f"| {dtype} | {n} | {mean:g} | {seq:.1f} | {pair:.1f} | "
                            f"{0.26 * math.sqrt(n):.0f} | {allowed(n):.0f} |")
    return rows


def _conv_terms(h, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 8, h, h)).astype(dtype)
    w = rng.standard_normal((8, 8, 3, 3)).astype(dtype)
    g = rng.standard_normal((4, 8, h, h)).astype(dtype)
    return x, w, g


def conv_table(picks=96):
    from gradcheck import conv_backward
    try:
        import torch
    except ImportError:     # pragma: no cover - optional
        torch = None
    rows = ["| kernels | dtype | input | n | max | median | allowance (L = input size) |",
            "|---|---|---|---:|---:|---:|---:|"]
    for h in (64, 128, 362):
        for dtype in ("float64", "float32"):
            x, w, g = _conv_terms(h, dtype)
            xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
            sel = [tuple(int(i) for i in j) for j in
                   np.random.default_rng(1).integers(0, [8, 8, 3, 3], size=(picks, 4))]
            exact = np.array([exact_dot(g[:, o], xp[:, c, i:i + h, j:j + h])
                              for o, c, i, j in sel])
            eps = float(np.finfo(dtype).eps)
            kernels = {"gradcheck (BLAS GEMM)": conv_backward(g, x, w, padding=1)[1]}
            if torch is not None:
                wt = torch.from_numpy(w).requires_grad_(True)
                y = torch.nn.functional.conv2d(torch.from_numpy(x), wt, padding=1)
                y.backward(torch.from_numpy(g))
                kernels["torch"] = wt.grad.numpy()
            for name, gw in kernels.items():
                u = ulps(np.array([gw[p] for p in sel], np.float64), exact, eps)
                rows.append(f"| {name} | {dtype} | (4, 8, {h}, {h}) | {4 * h * h} | "
                            f"{u.max():.1f} | {np.median(u):.1f} | {allowed(x.size):.0f} |")
    return rows


def checker_table(seeds=(0, 1)):
    from gradcheck import check_layer, conv_backward
    from gradcheck.checker._layers import _draw
    from gradcheck.checker._scalarize import seeded_cotangent
    from gradcheck.ops.layers import Conv
    from gradcheck.ops.network import Sequential
    rows = ["| seed | passed | analytic vs exact (max ulps) | numerical vs exact (max ulps) | "
            "numerical error / its own bar (max) | analytic allowance (ulps) |",
            "|---:|---|---:|---:|---:|---:|"]
    shape = (4, 8, 128, 128)
    for seed in seeds:
        x, params = _draw(Sequential([Conv(8, 3, padding=1)], shape), None, None, seed,
                          np.float64)
        w = params[0]["w"]
        r = seeded_cotangent(seed, shape)
        report = check_layer(Conv(8, 3, padding=1), input_shape=shape, mode="full",
                             wrt=["w"], seed=seed)
        a = report["w"]
        assert np.array_equal(a.analytic, conv_backward(r, x, w, padding=1)[1])
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        exact = np.array([exact_dot(r[:, o], xp[:, c, i:i + 128, j:j + 128])
                          for o, c, i, j in np.ndindex(w.shape)]).reshape(w.shape)
        eps = float(np.finfo(float).eps)
        num_bar = (np.abs(a.numeric - exact) / a.error_estimate).max()
        rows.append(f"| {seed} | {report.passed} | {ulps(a.analytic, exact, eps).max():.1f} | "
                    f"{ulps(a.numeric, exact, eps).max():.1f} | {num_bar:.0f} | "
                    f"{allowed(x.size):.0f} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the markdown here")
    args = parser.parse_args(argv)
    started = time.time()
    parts = [f"# Rounding of long sums against exact ones ({time.strftime('%Y-%m-%d')}, "
             f"{platform.machine()}, Python {platform.python_version()})", "",
             "`python benchmarks/bench_long_sums.py`; errors in ulps of `|g_j| + s`, the "
             "unit of the analytic allowance `64 G(L)` (see `gradcheck/checker/_tolerance.py`).",
             "", "## Sums of n terms (32 sums each)", "", *sums_table(), "",
             "## Convolution weight gradients (96 elements each)", "", *conv_table(), "",
             "## check_layer(Conv(8, 3, padding=1)) on (4, 8, 128, 128), all 576 weights", "",
             *checker_table(), "", f"({time.time() - started:.0f} s)"]
    text = "\n".join(parts) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
