"""float16 layers: false alarms on right gradients and misses of a 5% error in one element.

Run:  python benchmarks/bench_float16.py [--seeds 2000:2040] [--kinds dense,linear,conv_relu]
      [--slip 0.05] [--details]

Three kinds of random float16 layers, each computed in float16 (``conv_forward`` works in
float32 and its output is rounded to float16, as a float16 layer would):

- ``dense``: ``tanh(x @ W.T + b)``, x (4, 8), W (6, 8) / 3, b (6,) / 4;
- ``linear``: ``x @ w.T``, x (4, 8), w (6, 8) / 3;
- ``conv_relu``: ``relu(conv(x, w) + b)`` with random shapes (batch 1-2, channels 1-2,
  size 3-5, kernel 1-2, outputs 1-2), the generator of the float16 conv + ReLU tests in
  ``properties/test_known_issues.py``.

For every seed each layer is checked with its right backward (a failure is a *false
alarm*) and with the largest element of its weight gradient off by ``--slip`` (5%; a pass
is a *miss*; a layer whose weight gradient is all zero -- every pre-activation negative
-- has nothing to slip and is left out of the count). A miss is *declared* when the
report's notes say that the argument has elements whose allowance is wider than 5% of
their value; a miss without such a note passed by omission.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from gradcheck import check_vjp, conv_backward, conv_forward

#: How the note on elements resolved only coarsely reads
#: (:func:`gradcheck.checker._notes.coarse_notes`), and how it ended before it covered
#: every dtype (to measure a version before / after).
COARSE_SAID, COARSE_TAIL = "resolved only to more than", "an error that size may go unseen there"

F16 = np.float16


def dense(seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((4, 8)).astype(F16)
    W = (r.standard_normal((6, 8)) / 3).astype(F16)
    b = (r.standard_normal(6) / 4).astype(F16)

    def f(x, W, b):
        return np.tanh(x @ W.T + b)

    def f_vjp(g, x, W, b):
        d = g.astype(F16) * (1 - np.tanh(x @ W.T + b) ** 2)
        return d @ W, d.T @ x, d.sum(axis=0)

    return f, f_vjp, (x, W, b), ("x", "W", "b"), 1


def linear(seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((4, 8)).astype(F16)
    w = (r.standard_normal((6, 8)) / 3).astype(F16)

    def f(x, w):
        return x @ w.T

    def f_vjp(g, x, w):
        g = g.astype(F16)
        return g @ w, g.T @ x

    return f, f_vjp, (x, w), ("x", "w"), 1


def conv_relu(seed):
    r = np.random.default_rng(seed)
    n, c, size, k, o = (int(v) for v in (r.integers(1, 3), r.integers(1, 3), r.integers(3, 6),
                                         r.integers(1, 3), r.integers(1, 3)))
    x = r.standard_normal((n, c, size, size)).astype(F16)
    w = (r.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(F16)
    b = (0.1 * r.standard_normal(o)).astype(F16)

    def f(x, w, b):
        return np.maximum(conv_forward(x, w, b).astype(F16), F16(0))

    def f_vjp(g, x, w, b):
        gz = (g * (conv_forward(x, w, b).astype(F16) > 0)).astype(np.float32)
        grads = conv_backward(gz, x.astype(np.float32), w.astype(np.float32))
        return tuple(gr.astype(F16) for gr in grads)

    return f, f_vjp, (x, w, b), ("x", "w", "b"), 1


KINDS = {"dense": dense, "linear": linear, "conv_relu": conv_relu}


def slipped(f_vjp, which, index, factor):
    def wrong(g, *args):
        grads = list(f_vjp(g, *args))
        grads[which] = grads[which].copy()
        grads[which][index] = grads[which][index] * F16(factor)
        return tuple(grads)
    return wrong


def run(kind, seed, slip):
    """``(false_alarm, missed, declared, line)`` for one layer and seed (``missed`` None
    where the weight gradient is all zero)."""
    f, f_vjp, args, names, which = KINDS[kind](seed)
    right = check_vjp(f, f_vjp, args, argnames=names, seed=seed)
    R = right.arguments[which]
    g = np.asarray(R.analytic, np.float64)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(g))), g.shape))
    if g[index] == 0:
        return (not right.passed), None, False, ""
    wrong = check_vjp(f, slipped(f_vjp, which, index, 1 + slip), args, argnames=names,
                      seed=seed)
    missed = wrong.passed
    declared = False
    line = ""
    if missed:
        W = wrong.arguments[which]
        # what the report says: a note that this argument has elements whose allowance
        # is wider than 5% (gradcheck.checker._notes.coarse_notes)
        declared = any(n.startswith(f"{names[which]}: ")
                       and (COARSE_SAID in n or n.endswith(COARSE_TAIL)) for n in wrong.notes)
        line = (f"{kind} seed {seed}: {names[which]}{index} off by {slip:.0%} passed "
                f"(value {g[index]:.4g}, numeric {np.asarray(W.numeric)[index]:.4g} +- "
                f"{np.asarray(W.error_estimate)[index]:.3g}; "
                f"{'declared in the notes' if declared else 'NOT declared'})")
    if not right.passed:
        line = f"{kind} seed {seed}: FALSE ALARM\n{right}"
    return (not right.passed), missed, declared, line


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="2000:2040", help="start:stop (default 2000:2040)")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: "
                   + ", ".join(KINDS))
    p.add_argument("--slip", type=float, default=0.05)
    p.add_argument("--details", action="store_true", help="print every miss")
    a = p.parse_args(argv)
    start, stop = (int(v) for v in a.seeds.split(":"))
    for kind in a.kinds.split(","):
        alarms = misses = declared = slips = 0
        for seed in range(start, stop):
            fa, mi, de, line = run(kind, seed, a.slip)
            alarms += fa
            slips += mi is not None
            misses += bool(mi)
            declared += bool(mi) and de
            if line and (fa or a.details):
                print(line)
        n = stop - start
        print(f"{kind:10s} seeds {start}-{stop - 1}: false alarms {alarms}/{n}, "
              f"{a.slip:.0%} slips missed {misses}/{slips} ({declared} of them declared "
              f"in the notes)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
