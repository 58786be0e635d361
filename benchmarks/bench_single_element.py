"""The smallest single-element error float32 full mode catches, on the bench layer.

Run:  python benchmarks/bench_single_element.py [--elements 12] [--dtype float32]

The layer is ``specs/bench/conv_tanh_24.toml``'s (conv, 8 filters 3x3, padding 1 ->
tanh; x ``(4, 3, 24, 24)``), checked with ``check_vjp(mode="full")`` against a right
backward with one element of ``x`` or ``w`` multiplied by ``1 + e``. For each element
drawn (seeded), one check with ``e = 1e-2`` reads the difference the check allowed
there (``tolerance_at_worst``: the planted element is the worst one), so the element is
caught from ``e = allowed / |A|``; for the first three of each tensor that threshold is
confirmed by two more checks, at 0.8x (must pass) and 1.25x (must fail). An element not
caught even at 1e-2 is counted as such. README's *What each mode proves* quotes the
figures (float32; a run takes a few minutes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gradcheck import check_vjp, conv_backward, conv_forward


def layer(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 24, 24)).astype(dtype)
    w = (rng.standard_normal((8, 3, 3, 3)) / np.sqrt(27)).astype(dtype)
    b = (0.1 * rng.standard_normal(8)).astype(dtype)

    def f(x, w, b):
        return np.tanh(conv_forward(x, w, b, padding=1))

    def f_vjp(g, x, w, b):
        gz = (g * (1 - f(x, w, b) ** 2)).astype(dtype)
        return conv_backward(gz, x, w, padding=1)

    return f, f_vjp, (x, w, b)


def check(f, f_vjp, args, which, element, e):
    i = {"x": 0, "w": 1}[which]

    def planted(g, *args):
        grads = [np.array(v, copy=True) for v in f_vjp(g, *args)]
        grads[i][element] *= grads[i].dtype.type(1 + e)
        return tuple(grads)

    return check_vjp(f, planted, args, argnames=("x", "w", "b"), mode="full")[which]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=12)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    opts = parser.parse_args(argv)
    f, f_vjp, args = layer(np.dtype(opts.dtype))
    for which, arr in (("x", args[0]), ("w", args[1])):
        started, found, missed = time.perf_counter(), [], 0
        for j, k in enumerate(np.random.default_rng(7).choice(arr.size, opts.elements,
                                                              replace=False)):
            el = tuple(int(i) for i in np.unravel_index(k, arr.shape))
            r = check(f, f_vjp, args, which, el, 1e-2)
            if r.passed:
                missed += 1
                print(f"{which} {el}: not caught at 1e-2", flush=True)
                continue
            size = abs(r.analytic_at_worst) / 1.01
            e = r.tolerance_at_worst / size
            found.append(e)
            line = (f"{which} {el}: |A| {size:.3g}, allowed {r.tolerance_at_worst:.3g}: "
                    f"caught from a relative error of {e:.2g}")
            if j < 3:
                below = check(f, f_vjp, args, which, el, 0.8 * e).passed
                above = check(f, f_vjp, args, which, el, 1.25 * e).passed
                line += (f" (confirmed: 0.8x {'passes' if below else 'FAILS'}, 1.25x "
                         f"{'passes' if above else 'FAILS'})")
            print(line, flush=True)
        found = np.array(found)
        span = (f"caught from a relative error of {found.min():.2g} to {found.max():.2g} "
                f"(median {np.median(found):.2g}); " if found.size else "")
        print(f"{which}: {opts.elements} elements; {span}{missed} not caught at 1e-2; "
              f"caught at 1e-4: {(found < 1e-4).sum()}, at 1e-3: {(found < 1e-3).sum()} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
