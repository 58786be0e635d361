"""PyTorch's intra-op threads during a check: the cost of one and of two threads.

Run as ``python benchmarks/bench_torch_threads.py [ROUNDS]`` (about a minute; needs
PyTorch). Prints, for modules from tiny to a ``[8, 16, 32, 32]`` convolution, the median
wall-clock and CPU time of one call (a forward; a forward and backward) with 1 and with 2
threads, measured in interleaved rounds, and the whole ``check_module`` of the tiny
network with ``threads=1`` and ``threads=2``. On a shared machine CPU time shows the
spin-waiting of idle threads that wall time hides behind other work; the fastest round is
printed too, the nearest thing to a quiet machine. This is what
``gradcheck.torch``'s ``threads="auto"`` rests on (:mod:`gradcheck.torch._threads`);
re-measure on a quiet machine before quoting a ratio. Nothing is written.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch


def _bench(fn, reps):
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - w0) / reps, (time.process_time() - c0) / reps


def _tiny():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                              torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 3 * 3, 3)).double()
    return net, torch.randn(2, 1, 8, 8, dtype=torch.float64)


def _forward(m, x):
    def call():
        with torch.no_grad():
            m(x)
    return call


def _both(m, x):
    def call():
        xx = x.clone().requires_grad_()
        y = m(xx)
        torch.autograd.grad(y, [xx, *m.parameters()], torch.ones_like(y))
    return call


def cases():
    tiny, xt = _tiny()
    mid, xm = torch.nn.Conv2d(8, 8, 3, padding=1), torch.randn(2, 8, 16, 16)
    big, xb = torch.nn.Conv2d(16, 16, 3, padding=1), torch.randn(8, 16, 32, 32)
    return {"tiny network, forward": (_forward(tiny, xt), 400),
            "tiny network, fwd+bwd": (_both(tiny, xt), 200),
            "conv [2,8,16,16], forward": (_forward(mid, xm), 200),
            "conv [8,16,32,32], forward": (_forward(big, xb), 10),
            "conv [8,16,32,32], fwd+bwd": (_both(big, xb), 5)}


def main(rounds=5):
    from gradcheck.torch import check_module

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    results = {}
    for name, (fn, reps) in cases().items():
        for t in (1, 2):
            torch.set_num_threads(t)
            fn()
        for _ in range(rounds):
            for t in (1, 2):
                torch.set_num_threads(t)
                results.setdefault((name, t), []).append(_bench(fn, reps))
    net, x = _tiny()
    for _ in range(max(1, rounds // 2)):
        for t in (1, 2):
            results.setdefault(("tiny network, check_module", t), []).append(
                _bench(lambda t=t: check_module(net, x, threads=t), 1))
    for (name, t), v in results.items():
        wall = statistics.median(r[0] for r in v)
        cpu = statistics.median(r[1] for r in v)
        print(f"{name:30s} threads={t}: wall {wall * 1e3:10.3f} ms  cpu {cpu * 1e3:10.3f} ms"
              f"  fastest {min(r[0] for r in v) * 1e3:10.3f} ms")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
