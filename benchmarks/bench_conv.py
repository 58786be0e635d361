"""Convolution forward+backward: gradcheck's NumPy layer against PyTorch's CPU conv.

Run:  python benchmarks/bench_conv.py [--rounds 15] [--out benchmarks/results/conv.md]

For each shape and dtype the two implementations run in interleaved rounds in this one
process (ours, torch, ours, torch, ...). Each sample is one forward + one backward
(input, weight and bias gradients). Before every sample the process sleeps briefly:
OpenBLAS worker threads keep spinning for ~0.1 s after a NumPy call and would slow the
torch call that follows (and vice versa), which makes a ratio lie. The figure quoted is
the median over rounds of the per-round ratio ours/torch; below 1 means we are faster.
A sample is the mean of a few back-to-back calls (about 30 ms of work) that follow one
untimed call, so waking a sleeping thread pool is not charged to either side.
Needs torch (``pip install torch==2.13.0``); exits with a message if it is missing.

A second table gives the peak memory of a full gradient check of a conv + tanh layer
(``gradcheck.check_network(..., mode="full", memory=BUDGET / 4)``, every element of x, w and b)
as traced by ``tracemalloc`` (NumPy's arrays included), against a fixed budget
(``--max-memory`` MiB, default 256): the chunks of perturbed points the differentiator
evaluates at once are sized from ``memory`` (a quarter of the budget here), and the peak
must stay under the whole budget. ``--memory-only`` prints that table alone, without
torch.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SHAPES = [
    # name, x shape, w shape, stride, padding
    ("2-D 8x3x32x32, 16 filters 3x3, pad 1", (8, 3, 32, 32), (16, 3, 3, 3), 1, 1),
    ("2-D 32x16x32x32, 32 filters 3x3, pad 1", (32, 16, 32, 32), (32, 16, 3, 3), 1, 1),
    ("2-D 16x32x16x16, 64 filters 3x3, stride 2, pad 1", (16, 32, 16, 16), (64, 32, 3, 3), 2, 1),
    ("2-D 4x8x64x64, 8 filters 5x5, pad 2", (4, 8, 64, 64), (8, 8, 5, 5), 1, 2),
    ("1-D 16x16x256, 32 filters 5, pad 2", (16, 16, 256), (32, 16, 5), 1, 2),
    ("3-D 4x4x16x16x16, 8 filters 3x3x3, pad 1", (4, 4, 16, 16, 16), (8, 4, 3, 3, 3), 1, 1),
]
TARGET = {"float64": 1.0, "float32": 1.5}
SETTLE_S = 0.4
MEMORY_CASES = [
    # name, input shape, out channels
    ("2-D 8x3x32x32, 16 filters 3x3, pad 1", (8, 3, 32, 32), 16),
    ("2-D 8x16x32x32, 16 filters 3x3, pad 1", (8, 16, 32, 32), 16),
    ("2-D 4x8x64x64, 8 filters 3x3, pad 1", (4, 8, 64, 64), 8),
]


def check_memory(max_mib: float):
    """Peak traced memory (MiB) and time of a full check of each MEMORY_CASES layer."""
    import tracemalloc

    from gradcheck import check_network
    from gradcheck.ops.layers import Activation, Conv
    from gradcheck.ops.network import Sequential

    rows = []
    for name, shape, c_out in MEMORY_CASES:
        net = Sequential([Conv(c_out, 3, padding=1), Activation("tanh")], shape)
        tracemalloc.start()
        t0 = time.perf_counter()
        report = check_network(net, mode="full", memory=max_mib * 2**20 / 4, seed=0)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        checked = all(a.n_checked == a.n_elements for a in report.arguments)
        rows.append((name, peak / 2**20, elapsed, report.passed and checked,
                     peak / 2**20 <= max_mib))
        print(f"memory {name:42s} peak {rows[-1][1]:7.1f} MiB  {elapsed:6.1f} s  "
              f"passed={rows[-1][3]}  {'within' if rows[-1][4] else 'OVER'} {max_mib:g} MiB",
              flush=True)
    return rows


def memory_table(rows, max_mib):
    return [
        "",
        f"Peak memory of a full check of conv + tanh (every element of x, w and b; "
        f"`check_network(..., mode=\"full\", memory={max_mib / 4:g} MiB)`), traced by "
        f"tracemalloc, against a budget of {max_mib:g} MiB:",
        "",
        "| layer | peak (MiB) | time (s) | passed, every element | within budget |",
        "|---|---:|---:|---|---|",
    ] + [f"| {n} | {p:.1f} | {t:.1f} | {'yes' if ok else 'no'} | {'yes' if w else 'NO'} |"
         for n, p, t, ok, w in rows]


def _hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "unknown BLAS"
    try:
        cfg = np.show_config(mode="dicts")
        info = cfg["Build Dependencies"]["blas"]
        blas = f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:
        pass
    return f"{cpu}; {os.cpu_count()} logical CPUs; NumPy {np.__version__} with {blas}"


def run(rounds: int):
    import torch
    import torch.nn.functional as F

    from gradcheck import conv_backward, conv_forward

    results = []
    for dtype in ("float64", "float32"):
        for name, xs, ws, stride, pad in SHAPES:
            rng = np.random.default_rng(0)
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            b = rng.standard_normal(ws[0]).astype(dtype)
            y = conv_forward(x, w, b, stride=stride, padding=pad)
            gy = rng.standard_normal(y.shape).astype(dtype)
            conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[len(xs)]
            xt = torch.tensor(x, requires_grad=True)
            wt = torch.tensor(w, requires_grad=True)
            bt = torch.tensor(b, requires_grad=True)
            gyt = torch.tensor(gy)

            def ours():
                conv_forward(x, w, b, stride=stride, padding=pad)
                conv_backward(gy, x, w, stride=stride, padding=pad)

            def theirs():
                xt.grad = wt.grad = bt.grad = None
                conv(xt, wt, bt, stride=stride, padding=pad).backward(gyt)

            # correctness first: a fast wrong answer is worth nothing
            theirs()
            gx, gw, gb = conv_backward(gy, x, w, stride=stride, padding=pad)
            tol = 1e-9 if dtype == "float64" else 1e-3
            for mine, ref in ((gx, xt.grad), (gw, wt.grad), (gb, bt.grad)):
                ref = ref.numpy()
                err = np.max(np.abs(mine - ref)) / max(1.0, np.max(np.abs(ref)))
                if err > tol:
                    raise SystemExit(f"{name} {dtype}: gradients disagree with torch ({err:.2e})")
            for _ in range(2):
                ours(), theirs()
            t0 = time.perf_counter()
            ours()
            reps = max(1, int(0.03 / max(1e-6, time.perf_counter() - t0)))
            t_ours, t_theirs = [], []
            for _ in range(rounds):
                for fn, acc in ((ours, t_ours), (theirs, t_theirs)):
                    time.sleep(SETTLE_S)
                    fn()  # wake the thread pool; not timed
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        fn()
                    acc.append((time.perf_counter() - t0) / reps)
            ratio = float(np.median(np.array(t_ours) / np.array(t_theirs)))
            row = (dtype, name, 1e3 * float(np.median(t_ours)), 1e3 * float(np.median(t_theirs)),
                   ratio, ratio <= TARGET[dtype])
            results.append(row)
            print(f"{dtype:8s} {name:50s} ours {row[2]:8.2f} ms  torch {row[3]:8.2f} ms  "
                  f"ratio {ratio:5.2f} {'ok' if row[5] else 'ABOVE TARGET'}", flush=True)
    return results, torch.__version__, torch.get_num_threads()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "conv.md")
    parser.add_argument("--max-memory", type=float, default=256.0,
                        help="the memory budget of a check, MiB (default 256)")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the peak memory of the checks (no torch)")
    args = parser.parse_args(argv)
    if args.memory_only:
        rows = check_memory(args.max_memory)
        print("\n".join(memory_table(rows, args.max_memory)))
        return 0 if all(ok and within for *_, ok, within in rows) else 1
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bench_conv: needs PyTorch for the comparison (pip install torch==2.13.0)",
              file=sys.stderr)
        return 2
    results, tv, threads = run(args.rounds)
    hw = _hardware()
    lines = [
        "# Convolution forward+backward: gradcheck vs PyTorch (CPU)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {hw}; PyTorch {tv} "
        f"({threads} threads). Median over {args.rounds} interleaved rounds of the per-round "
        f"ratio; each sample is one forward plus one backward (input, weight and bias "
        f"gradients). Targets: ratio <= 1.0 in float64, <= 1.5 in float32.",
        "",
        "| dtype | shape | gradcheck (ms) | PyTorch (ms) | ratio | target met |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [f"| {d} | {n} | {a:.2f} | {b:.2f} | {r:.2f} | {'yes' if ok else 'no'} |"
              for d, n, a, b, r, ok in results]
    rows = check_memory(args.max_memory)
    lines += memory_table(rows, args.max_memory)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\n{hw}\nwritten to {args.out}")
    memory_ok = all(ok and within for *_, ok, within in rows)
    return 0 if all(r[-1] for r in results) and memory_ok else 1


if __name__ == "__main__":
    sys.exit(main())
