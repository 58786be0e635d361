"""Full gradient checks: `gradcheck check SPEC` from the shell vs torch.autograd.gradcheck.

Run:  python benchmarks/bench_fullcheck.py [--rounds 3] [--out benchmarks/results/fullcheck.md]

The function is the speed target's layer, C = sum(R * tanh(conv2d(x, w, b, padding=1)))
with x (4, 3, 24, 24), w (8, 3, 3, 3), b (8,) and a fixed R: `specs/bench/conv_tanh_24.toml`.
Every element of x, w and b is checked by both tools.

- **gradcheck**: the whole command, `gradcheck check specs/bench/conv_tanh_24.toml --json`,
  timed as a subprocess (interpreter start-up, imports and all).
- **PyTorch**: `torch.autograd.gradcheck(f, (x, w, b), fast_mode=False)` on the same
  data in this process, timing only the call (its imports are free).

Rounds alternate gradcheck, torch, gradcheck, torch ... with a pause between them; the
ratio quoted is the median over rounds of torch's time over gradcheck's.

Accuracy: both tools compare an analytic gradient with a numerical one. The analytic one
here is torch autograd's (exact to rounding); the table gives, over every element, the
largest difference of each tool's numerical gradient from it. gradcheck's comes from its
JSON report (``max_abs_error``); torch's is recomputed with its own default rule, central
differences with ``eps = 1e-6`` (what ``gradcheck(fast_mode=False)`` compares).

The same rounds also time ``check_spec`` on the bench spec inside this process (the
spec built once; the check alone), the figure the 100x goal of issue 15 is about.

A user's layer at a real size: `specs/bench/user_conv_32.toml`, a NumPy convolution
given as a ``python`` layer (`specs/bench/user_conv.py`, with ``batched = true``) on x
(8, 16, 32, 32) and w (16, 16, 3, 3). Nothing is known of its structure beforehand; the
checker probes and verifies one. Its whole `gradcheck check` process is timed, with the
number of elements checked per tensor and the mode (the goal: every element, in full
mode, within 60 s). No torch timing is needed for it.

A further part times fast mode on a convolution with about a million parameters, and a
last one measures the peak memory of `gradcheck check` as the layer grows under a fixed
budget (``--budget``: tensors above it are checked in fast mode).

``--no-torch`` leaves PyTorch out (nothing of it is imported or timed) and reports
gradcheck's own medians only: on a shared machine torch's threads spin-wait and its
times mean nothing, so the ratio must be measured on a quiet one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "bench" / "conv_tanh_24.toml"
USER_SPEC = ROOT / "specs" / "bench" / "user_conv_32.toml"
PAUSE_S = 0.5


def _gradcheck_cmd() -> list:
    exe = Path(sys.executable).with_name("gradcheck")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gradcheck"]


#: The command runs as an installed package does: with Python's bytecode cache. (An
#: editable install under PYTHONDONTWRITEBYTECODE would recompile every module on every
#: run; ``pip install .`` compiles them once, at install.)
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_ours(spec=SPEC, extra=()):
    cmd = _gradcheck_cmd() + ["check", str(spec), "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_ENV)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"gradcheck check failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, json.loads(proc.stdout)


_MEASURE = ("import resource, subprocess, sys; "
            "p = subprocess.run(sys.argv[1:], capture_output=True); "
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_mb(cmd):
    """Peak resident memory of ``cmd`` in MiB, measured by a fresh parent process.

    ``RUSAGE_CHILDREN`` of that parent covers exactly one child: ``cmd`` (Linux reports
    ``ru_maxrss`` in KiB).
    """
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True,
                          text=True, cwd=ROOT)
    code, kib = proc.stdout.split()
    if int(code) not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed with status {code}")
    return int(kib) / 1024.0


def torch_problem():
    """The spec's data (same seed, same layers) as torch tensors, and the function."""
    import torch
    import torch.nn.functional as F

    from gradcheck.spec import build, load_spec

    built = build(load_spec(SPEC))
    x = torch.tensor(built.x, requires_grad=True)
    w = torch.tensor(built.params[0]["w"], requires_grad=True)
    b = torch.tensor(built.params[0]["b"], requires_grad=True)
    R = torch.tensor(built.network.loss.weights)

    def f(x, w, b):
        return (R * torch.tanh(F.conv2d(x, w, b, padding=1))).sum()

    return f, (x, w, b)


def torch_accuracy(f, inputs):
    """Max |central difference (eps=1e-6) - autograd| over every element of x, w, b."""
    import torch

    exact = torch.autograd.grad(f(*inputs), inputs)
    worst = 0.0
    with torch.no_grad():
        for k, t in enumerate(inputs):
            flat = t.detach().clone().reshape(-1)
            args = [a.detach() for a in inputs]
            for j in range(flat.numel()):
                orig = flat[j].item()
                flat[j] = orig + 1e-6
                args[k] = flat.reshape(t.shape)
                hi = f(*args).item()
                flat[j] = orig - 1e-6
                lo = f(*args).item()
                flat[j] = orig
                worst = max(worst, abs((hi - lo) / 2e-6 - exact[k].reshape(-1)[j].item()))
    return worst


def million_parameter_fast_mode():
    from gradcheck import check_layer
    from gradcheck.ops.layers import Conv

    layer = Conv(256, 3, padding=1)
    t0 = time.perf_counter()
    report = check_layer(layer, input_shape=(1, 512, 8, 8), mode="fast", seed=0)
    elapsed = time.perf_counter() - t0
    n_params = sum(a.n_elements for a in report.arguments if a.name != "x")
    return n_params, elapsed, report.passed, report.nfev


def memory_growth(tmp: Path):
    """Peak RSS of `gradcheck check` as the conv layer's input grows, budget fixed."""
    rows = []
    for side in (16, 32, 64, 128):
        spec = tmp / f"conv_{side}.toml"
        spec.write_text(
            f'[input]\nshape = [4, 8, {side}, {side}]\n\n[[layer]]\ntype = "conv"\n'
            f'out_channels = 8\nkernel = 3\npadding = 1\n\n[[layer]]\ntype = "tanh"\n\n'
            f'[check]\nmode = "auto"\nbudget = 20000\n')
        mb = peak_rss_mb(_gradcheck_cmd() + ["check", str(spec), "-q"])
        rows.append((side, 4 * 8 * side * side, mb))
    return rows


def in_process_seconds(repeats=5):
    """Median seconds of ``check_spec`` on the bench spec in this process (built once)."""
    from gradcheck.spec import build, load_spec
    from gradcheck.spec._run import check_built

    built = build(load_spec(SPEC))
    check_built(built)                       # warm-up: imports, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        report = check_built(built)
        times.append(time.perf_counter() - t0)
    assert report.passed
    return float(np.median(times))


def user_layer(rounds):
    """Whole-process times of `gradcheck check` on the user conv spec, and its checks."""
    times, report = [], None
    for _ in range(rounds):
        t, report = run_ours(USER_SPEC)
        times.append(t)
        print(f"user conv: {t:.1f} s whole process, passed={report['passed']}", flush=True)
    return times, report


def _torch_part(rounds):
    """Interleaved rounds: ours (whole process) and torch's call; ``(ours, inner, theirs,
    report, ratio, ratio_inner, torch_err, version)``, the torch entries None without it."""
    import torch

    f, inputs = torch_problem()
    ours, inner, theirs, report = [], [], [], None
    for r in range(rounds):
        time.sleep(PAUSE_S)
        t, report = run_ours()
        ours.append(t)
        inner.append(report["elapsed_s"])
        time.sleep(PAUSE_S)
        t0 = time.perf_counter()
        ok = torch.autograd.gradcheck(f, inputs, fast_mode=False)
        theirs.append(time.perf_counter() - t0)
        print(f"round {r + 1}: gradcheck {ours[-1]:.2f} s whole process, {inner[-1]:.2f} s "
              f"checking (passed={report['passed']}), torch {theirs[-1]:.2f} s (passed={ok})",
              flush=True)
    ratio = float(np.median(np.array(theirs) / np.array(ours)))
    ratio_inner = float(np.median(np.array(theirs) / np.array(inner)))
    return ours, inner, theirs, report, ratio, ratio_inner, torch_accuracy(f, inputs), \
        torch.__version__


def _ours_part(rounds):
    ours, inner, report = [], [], None
    for r in range(rounds):
        time.sleep(PAUSE_S)
        t, report = run_ours()
        ours.append(t)
        inner.append(report["elapsed_s"])
        print(f"round {r + 1}: gradcheck {ours[-1]:.2f} s whole process, {inner[-1]:.2f} s "
              f"checking (passed={report['passed']})", flush=True)
    return ours, inner, None, report, None, None, None, None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--user-rounds", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true",
                        help="time gradcheck only (on a shared machine: torch's times mean "
                             "nothing there)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "fullcheck.md")
    args = parser.parse_args(argv)
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("bench_fullcheck: needs PyTorch for the comparison (pip install "
                  "torch==2.13.0), or pass --no-torch", file=sys.stderr)
            return 2
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_conv import _hardware

    run_ours()                      # warm-up: fills the bytecode cache, like an install
    part = _ours_part if args.no_torch else _torch_part
    ours, inner, theirs, report, ratio, ratio_inner, torch_err, version = part(args.rounds)
    in_process = in_process_seconds()
    ours_err = max(c["max_abs_error"] for c in report["checks"])
    print(f"check_spec in process (median of 5): {1e3 * in_process:.0f} ms")
    if theirs is not None:
        ratio_in = float(np.median(theirs)) / in_process
        print(f"speed-up (median of torch/gradcheck): {ratio:.1f}x whole process (target >= "
              f"15x); {ratio_inner:.1f}x against gradcheck's time spent checking; "
              f"{ratio_in:.0f}x against check_spec in process (target >= 100x)")
        print(f"numerical vs exact gradient, max abs difference: gradcheck {ours_err:.2e}, "
              f"torch central differences {torch_err:.2e}")
    user_times, user_report = user_layer(args.user_rounds)
    user_rows = [(c["name"].split("::")[-1], c["mode"], c["n_checked"], c["n_elements"],
                  c["elapsed_s"]) for c in user_report["checks"]]
    for name, mode, n, total, t in user_rows:
        print(f"user conv {name}: {mode} mode, {n} of {total} elements checked, {t:.1f} s")
    n_params, t_fast, ok_fast, nfev_fast = million_parameter_fast_mode()
    print(f"fast mode, conv with {n_params} parameters: {t_fast:.2f} s, passed={ok_fast}, "
          f"{nfev_fast} evaluations")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        mem = memory_growth(Path(tmp))
    for side, n, mb in mem:
        print(f"peak memory, input 4x8x{side}x{side} ({n} elements), budget 20000: {mb:.0f} MiB")
    torch_note = (f"PyTorch {version}" if version else
                  "PyTorch not timed (--no-torch: a shared machine; the ratio is to be "
                  "measured on a quiet one)")
    lines = [
        "# Full gradient checks: gradcheck vs torch.autograd.gradcheck",
        "",
        f"Measured {datetime.date.today().isoformat()} on {_hardware()}; {torch_note}. "
        f"Layer: C = sum(R * tanh(conv2d(x, w, b, padding=1))), x (4, 3, "
        f"24, 24), w (8, 3, 3, 3), b (8,), every element of x, w and b checked "
        f"(`specs/bench/conv_tanh_24.toml`). {args.rounds} rounds; medians "
        f"(min-max in brackets).",
        "",
        "| tool | how | median time (s) | max abs numerical error |",
        "|---|---|---:|---:|",
        f"| gradcheck | `gradcheck check specs/bench/conv_tanh_24.toml` (whole process) | "
        f"{np.median(ours):.2f} [{min(ours):.2f}-{max(ours):.2f}] | {ours_err:.1e} |",
        f"| gradcheck | the same run, time spent checking (`elapsed_s` of its JSON report) | "
        f"{np.median(inner):.3f} [{min(inner):.3f}-{max(inner):.3f}] | |",
        f"| gradcheck | `check_spec` in process, the spec built once (median of 5) | "
        f"{in_process:.3f} | |",
    ]
    if theirs is not None:
        lines += [
            f"| PyTorch | `torch.autograd.gradcheck(f, (x, w, b), fast_mode=False)` (call "
            f"only) | {np.median(theirs):.2f} | {torch_err:.1e} |",
            "",
            f"Speed-up: **{ratio:.0f}x** for the whole `gradcheck check` process (target >= "
            f"15x); {ratio_inner:.0f}x against the time gradcheck spends checking; "
            f"{float(np.median(theirs)) / in_process:.0f}x against `check_spec` in process "
            f"(target >= 100x).",
        ]
    lines += [
        "",
        f"A user's own layer (`specs/bench/user_conv_32.toml`: a NumPy convolution as a "
        f"`python` layer with `batched = true`, x (8, 16, 32, 32), w (16, 16, 3, 3)), its "
        f"structure probed and verified: whole `gradcheck check` process "
        f"{np.median(user_times):.1f} s median [{min(user_times):.1f}-"
        f"{max(user_times):.1f}] over {len(user_times)} runs (goal: at most 60 s), "
        f"passed = {user_report['passed']}.",
        "",
        "| tensor | mode | elements checked | time checking (s) |",
        "|---|---|---:|---:|",
    ] + [f"| {name} | {mode} | {n} of {total} | {t:.1f} |" for name, mode, n, total, t
         in user_rows] + [
        "",
        f"Fast mode on a convolution with {n_params:,} parameters (input 1x512x8x8, 256 "
        f"filters 3x3): {t_fast:.2f} s, {nfev_fast} evaluations, passed = {ok_fast}.",
        "",
        "Peak memory of `gradcheck check` (mode auto, budget 20000 elements) as the input grows:",
        "",
        "| input | elements | peak RSS (MiB) |",
        "|---|---:|---:|",
    ] + [f"| 4x8x{s}x{s} | {n} | {mb:.0f} |" for s, n, mb in mem]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written to {args.out}")
    user_ok = user_report["passed"] and all(n == total and mode == "full"
                                            for _, mode, n, total, _ in user_rows)
    return 0 if user_ok and (ratio is None or ratio >= 15) else 1


if __name__ == "__main__":
    sys.exit(main())
