"""Which cause float16 layers get for a whole gradient scaled, and for one element off.

Run:  python benchmarks/bench_scale_f16.py [--seeds 2000:2040] [--without-agreement]

The layers are ``bench_float16.py``'s (dense, linear, conv + ReLU in float16). For every
seed each is checked with its right backward, with the largest element of its weight
gradient off by 5%, 20% and 50%, and with the whole weight gradient times 1.05, 1.1 and
1.2; the causes named are counted. ``--without-agreement`` turns off the rule that names
``scaled`` on the agreement of many elements (``_cause_scale._consistent_scale``), to
measure it before/after: a whole gradient scaled should read ``scaled``; one element
off never should.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_float16 as layers  # noqa: E402

from gradcheck import check_vjp  # noqa: E402

F16 = np.float16


def _uniform(f_vjp, which, factor):
    def wrong(g, *args):
        grads = list(f_vjp(g, *args))
        grads[which] = (grads[which] * F16(factor)).astype(F16)
        return tuple(grads)
    return wrong


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="2000:2040", help="start:stop (default 2000:2040)")
    p.add_argument("--without-agreement", action="store_true")
    a = p.parse_args(argv)
    if a.without_agreement:
        import gradcheck.checker._cause_scale as scale
        scale._consistent_scale = lambda ev, c: (None, "")
    start, stop = (int(v) for v in a.seeds.split(":"))
    tally = collections.Counter()
    for kind, make in layers.KINDS.items():
        for seed in range(start, stop):
            f, f_vjp, args, names, which = make(seed)
            right = check_vjp(f, f_vjp, args, argnames=names, seed=seed)
            tally["right: " + ("pass" if right.passed else "FALSE ALARM")] += 1
            g = np.asarray(right.arguments[which].analytic, np.float64)
            if not g.any():
                continue
            index = np.unravel_index(int(np.argmax(np.abs(g))), g.shape)
            for slip in (0.05, 0.2, 0.5):
                r = check_vjp(f, layers.slipped(f_vjp, which, index, 1 + slip), args,
                              argnames=names, seed=seed)
                d = r.arguments[which].diagnosis
                tally[f"one element x{1 + slip:g}: {'pass' if r.passed else d.cause}"] += 1
            for factor in (1.05, 1.1, 1.2):
                r = check_vjp(f, _uniform(f_vjp, which, factor), args, argnames=names,
                              seed=seed)
                d = r.arguments[which].diagnosis
                tally[f"whole x{factor:g}: {'pass' if r.passed else d.cause}"] += 1
    for key in sorted(tally):
        print(f"{tally[key]:5d}  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
