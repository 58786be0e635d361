"""PyTorch's intra-op threads while a check runs: one for small tensors.

A check calls the user's function hundreds of times on the same small tensors (each
numerical derivative is a handful of forwards, each backward one more call). PyTorch
splits an operation over its intra-op threads (OpenMP) and its threads spin-wait between
operations; on small tensors there is no work to split, and on a machine whose cores are
busy the waiting threads take turns with the work. Measured on two shared cores at a
load of about 6 (``benchmarks/bench_torch_threads.py``: medians of 5 interleaved rounds;
to be measured again on a quiet machine): a small conv -> batch norm -> max-pool ->
linear network took 0.66 ms per forward and backward with 1 thread and 9.4 ms with 2; a
convolution of ``[2, 8, 16, 16]`` 0.25 ms per forward with 1 thread and 2.4 ms with 2;
at ``[8, 16, 32, 32]`` the forward took 2.7 ms with 1 thread and 2.8 ms with 2 (its
fastest round 2.4 ms and 1.3 ms: on a quiet machine the second thread helps there). The
whole ``check_module`` of that small network took 1.2 s with 1 thread and 33 s with 2
(load 6.5), 0.72 s and 6.6 s in a second run (load 7).

So ``threads="auto"`` (the default) sets one thread for the duration of the check when
every tensor it evaluates -- the inputs, a module's parameters, the outputs -- has fewer
than :data:`SMALL` elements, PyTorch's own grain below which its elementwise kernels do
not split the work anyway, and leaves PyTorch's setting alone otherwise; an integer sets
that many threads, ``None`` leaves the setting alone. The number is put back when the
check ends, however it ends. The verdict does not depend on it (a reduction split
differently rounds differently, which the checker's tolerance allows for).
"""

from __future__ import annotations

import contextlib

import torch

from gradcheck._errors import ConfigurationError
from gradcheck._parallel import SMALL, all_small
from gradcheck._validate import is_int

__all__ = ["SMALL", "check_threads", "threads_for"]



def check_threads(threads):
    """``threads`` validated: ``"auto"``, None or an integer >= 1."""
    if threads is None or threads == "auto" or (is_int(threads) and threads >= 1):
        return threads
    raise ConfigurationError(f"threads must be 'auto' (1 while every tensor is small), None "
                             f"(leave torch's setting) or an integer >= 1; got {threads!r}")


def _wanted(threads, shapes):
    if threads == "auto":
        return 1 if all_small(shapes) else None
    return threads


@contextlib.contextmanager
def threads_for(threads, shapes):
    """PyTorch's intra-op threads set as ``threads`` says for tensors of ``shapes``
    while the block runs, then put back.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with threads_for("auto", [(4, 3), (4, 2)]):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    wanted = _wanted(check_threads(threads), shapes)
    before = torch.get_num_threads()
    if wanted is None or wanted == before:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)
