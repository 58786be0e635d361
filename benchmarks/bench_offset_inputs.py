"""Verdicts on batch norms of offset inputs (x = loc + spread * z, spread far below loc).

Two corpora, each drawn from its seeds, each judged by ``check_vjp`` with its defaults:

* float32: a batch norm (x, gamma, beta) of ``100 + s z``, ``s = 10**U(-4, -2)``; a right
  backward (false alarms), and a 5% error in the largest element of x's and of gamma's
  gradient (misses). A miss is split by whether the report's notes name the slipped
  element as resolved only to more than 5% of its value, and by whether the float32
  backward itself is off the exact derivative (long double) by more than a third of the
  slip there (genuinely below what float32 resolves).
* float64: tanh of a batch norm of ``loc + s z``, loc 100 or 1e4, ``s = 10**U(-4, -2)``;
  a right backward, and a 1e-6 relative error in the largest element.

``python benchmarks/bench_offset_inputs.py [--first 100 --count 20]`` prints one line per
case and a summary per corpus (nothing is written).
"""

from __future__ import annotations

import argparse

import numpy as np

from gradcheck import check_vjp
from gradcheck.checker._notes import COARSE
from gradcheck.checker._scalarize import seeded_cotangent

AX = (0, 2, 3)


def _batch_norm(eps):
    def f(x, g, b):
        d = x - x.mean(AX, keepdims=True)
        return g[None, :, None, None] * d / np.sqrt((d * d).mean(AX, keepdims=True) + eps) \
            + b[None, :, None, None]

    def f_vjp(gy, x, g, b):
        m = x.shape[0] * x.shape[2] * x.shape[3]
        d = x - x.mean(AX, keepdims=True)
        inv = 1 / np.sqrt((d * d).mean(AX, keepdims=True) + eps)
        xh = d * inv
        gxh = gy * g[None, :, None, None]
        gx = inv / m * (m * gxh - gxh.sum(AX, keepdims=True)
                        - xh * (gxh * xh).sum(AX, keepdims=True))
        return gx, (gy * xh).sum(AX), gy.sum(AX)

    return f, f_vjp


def _slipped(f_vjp, which, index, factor):
    def wrong(*args):
        out = list(f_vjp(*args))
        out[which] = out[which].copy()
        out[which].flat[index] *= out[which].dtype.type(factor)
        return tuple(out)
    return wrong


def float32_corpus(first, count):
    f, f_vjp = _batch_norm(np.float32(1e-5))
    names, ld = ("x", "gamma", "beta"), np.longdouble
    alarms, missed, unsaid, unresolvable = 0, 0, 0, 0
    for seed in range(first, first + count):
        r = np.random.default_rng([seed, 32])
        spread = 10.0 ** r.uniform(-4, -2)
        x = (100 + spread * r.standard_normal((4, 2, 3, 3))).astype(np.float32)
        g = (1 + 0.3 * r.standard_normal(2)).astype(np.float32)
        b = (0.3 * r.standard_normal(2)).astype(np.float32)
        args = (x, g, b)
        right = check_vjp(f, f_vjp, args, argnames=names, seed=seed)
        alarms += not right.passed
        R = seeded_cotangent(seed, x.shape)
        exact = f_vjp(R.astype(ld), *(a.astype(ld) for a in args))
        got = f_vjp(R.astype(np.float32), *args)
        line = [f"{seed} spread {spread:.1e}: right {'pass' if right.passed else 'FAIL'}"]
        for which, name in ((0, "x"), (1, "gamma")):
            k = int(np.argmax(np.abs(got[which])))
            wrong = check_vjp(f, _slipped(f_vjp, which, k, 1.05), args, argnames=names,
                              seed=seed)
            value = abs(float(got[which].flat[k]))
            error = abs(float(got[which].flat[k] - exact[which].flat[k])) / value
            said = (wrong[name].allowed is not None
                    and wrong[name].allowed.flat[k] > COARSE * value
                    and any(n.startswith(name + ": ") and "resolved only" in n
                            for n in wrong.notes))
            if wrong.passed:
                missed += 1
                unsaid += not said
                unresolvable += error > 0.05 / 3
            line.append(f"5% in {name}: {'missed' if wrong.passed else 'caught'}"
                        f"{' (said)' if wrong.passed and said else ''}, float32 backward "
                        f"off by {error:.1e}")
        print("; ".join(line), flush=True)
    print(f"float32: false alarms {alarms}/{count}; 5% slips missed {missed}/{2 * count}, "
          f"{unsaid} of them not named in the notes, {unresolvable} where the float32 "
          f"backward is off by more than a third of the slip")


def float64_corpus(first, count):
    def f(x):
        d = x - x.mean(AX, keepdims=True)
        return np.tanh(d / np.sqrt((d * d).mean(AX, keepdims=True) + 1e-5))

    def f_vjp(g, x):
        m = x.size // x.shape[1]
        d = x - x.mean(AX, keepdims=True)
        inv = 1 / np.sqrt((d * d).mean(AX, keepdims=True) + 1e-5)
        xh = d * inv
        gh = g * (1 - np.tanh(xh) ** 2)
        return (inv / m * (m * gh - gh.sum(AX, keepdims=True)
                           - xh * (gh * xh).sum(AX, keepdims=True)),)

    alarms = missed = 0
    for seed in range(first, first + count):
        r = np.random.default_rng([seed, 64])
        loc, spread = r.choice([100.0, 1e4]), 10 ** r.uniform(-4, -2)
        x = loc + spread * r.standard_normal((2, 2, 4, 4))
        right = check_vjp(f, f_vjp, (x,), argnames=("x",), seed=seed)
        k = int(np.argmax(np.abs(f_vjp(seeded_cotangent(seed, x.shape), x)[0])))
        wrong = check_vjp(f, _slipped(f_vjp, 0, k, 1 + 1e-6), (x,), argnames=("x",),
                          seed=seed)
        alarms += not right.passed
        missed += wrong.passed
        print(f"{seed} loc {loc:g} spread {spread:.1e}: right "
              f"{'pass' if right.passed else 'FAIL'}; 1e-6 slip "
              f"{'missed' if wrong.passed else 'caught'}", flush=True)
    print(f"float64: false alarms {alarms}/{count}; 1e-6 slips missed {missed}/{count}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=100, help="first seed (default 100)")
    parser.add_argument("--count", type=int, default=20, help="seeds per corpus")
    args = parser.parse_args(argv)
    float32_corpus(args.first, args.count)
    float64_corpus(args.first, args.count)


if __name__ == "__main__":
    main()
