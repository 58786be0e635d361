"""Sharing out the specs of one ``gradcheck check``: ``--shard I/N`` and ``-j N``.

**Shards** (``--shard I/N``, for the jobs of a CI matrix). A shard is a set of whole
specs: a spec's tensors share one build of its network, so they stay together. The specs
given on the command line (the built-in example when none are) are sorted by a stable
hash of their path -- SHA-256 of the path normalized (``./a/../b.toml`` is ``b.toml``,
``\\`` is ``/``) -- and the sorted list is cut into N contiguous runs whose lengths differ
by at most one; job I checks the I-th run, in the command line's order. So:

- *balanced*: every job gets ``S // N`` or ``S // N + 1`` of the S specs (a hash taken
  modulo N alone leaves some jobs with twice their share when there are few specs); the
  hash order also spreads a directory of similar, equally costly specs over the jobs;
- *stable*: adding (or removing) one spec moves at most one other spec across each of the
  N - 1 cuts, to a neighbouring job (a round robin over the sorted names moves every spec
  after the new one);
- *independent of the machine*: no Python ``hash()`` (salted per process), no file-system
  order, no dependence on the order of the arguments; every job computes the same
  partition from the same paths, without talking to the others.

Every spec is in exactly one shard, a missing or invalid one too (its shard reports it),
and the shards of one SPEC list together check exactly what one serial run checks.

**Processes** (``-j N``): the specs are checked in up to N worker processes started with
the ``spawn`` method (a fresh interpreter: never ``fork``, which does not mix with the
threads of OpenBLAS). Each worker's BLAS gets ``max(1, cpus // workers)`` threads through
the usual environment variables (:data:`BLAS_THREAD_VARIABLES`), unless the user has set
one of them, so ``-j 2`` on two cores runs two single-threaded workers instead of four
threads fighting for two cores. Workers ignore Ctrl-C (SIGINT); the parent takes it,
terminates them and waits for them, and a worker whose parent dies exits at once, so
nothing is left running. A worker that dies (a crash in native code, the out-of-memory
killer) breaks the pool; the specs it left unfinished are then rerun one at a time, each
in a process of its own, so the one that kills its process is named (:class:`Died`) and
the others are checked.
"""

from __future__ import annotations

import contextlib
import math
import os
import posixpath
import re
import sys
import threading

from gradcheck._errors import GradcheckError

__all__ = ["parse_shard", "shard_indices", "blas_threads", "run_in_processes", "Died",
           "BLAS_THREAD_VARIABLES"]

#: The environment variables that set the thread count of the BLAS (and OpenMP) libraries
#: NumPy, SciPy and PyTorch use; read once, when the library loads.
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                         "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

_SHARD = r"^\s*(\d+)\s*/\s*(\d+)\s*$"     # compiled on first use (re's cache)


# --------------------------------------------------------------------------- shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: job I of N, 1-based; a one-line error naming ``--shard``.

    Examples
    --------
    >>> parse_shard("2/4")
    (2, 4)
    >>> parse_shard("3/2")
    Traceback (most recent call last):
    ...
    gradcheck._errors.GradcheckError: --shard must be I/N with 1 <= I <= N (this job's number I of N jobs, e.g. 1/4), got '3/2'
    """
    m = re.match(_SHARD, text)
    if m is None or not 1 <= int(m[1]) <= int(m[2]):
        raise GradcheckError("--shard must be I/N with 1 <= I <= N (this job's number I of "
                             f"N jobs, e.g. 1/4), got {text!r}")
    return int(m[1]), int(m[2])


def _shard_key(path) -> tuple[int, str]:
    norm = posixpath.normpath(os.fspath(path).replace("\\", "/"))
    import hashlib        # only for --shard

    digest = hashlib.sha256(norm.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big"), norm


def shard_indices(paths, index: int, count: int) -> list[int]:
    """The positions in ``paths`` that shard ``index`` of ``count`` (1-based) checks.

    ``paths`` are sorted by a stable hash of the normalized path and cut into ``count``
    contiguous runs of ``len(paths) // count`` or one more; the positions of run ``index``
    are returned in increasing order (the command line's order).

    Examples
    --------
    >>> paths = [f"specs/s{i}.toml" for i in range(10)]
    >>> shards = [shard_indices(paths, i, 3) for i in (1, 2, 3)]
    >>> [len(s) for s in shards]
    [4, 3, 3]
    >>> sorted(sum(shards, [])) == list(range(10))
    True
    """
    order = sorted(range(len(paths)), key=lambda i: (*_shard_key(paths[i]), i))
    size, extra = divmod(len(paths), count)
    start = (index - 1) * size + min(index - 1, extra)
    stop = start + size + (index <= extra)
    return sorted(order[start:stop])


# --------------------------------------------------------------------------- threads


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):     # not on Linux
        return os.cpu_count() or 1


def blas_threads(workers: int, cpus: int | None = None) -> int:
    """The BLAS threads of each of ``workers`` processes on ``cpus`` CPUs: at least one.

    Examples
    --------
    >>> blas_threads(2, cpus=2), blas_threads(2, cpus=8), blas_threads(3, cpus=8)
    (1, 4, 2)
    """
    return max(1, (cpus if cpus is not None else _cpus()) // workers)


#: Elements below which a tensor is small: PyTorch's ``at::internal::GRAIN_SIZE``, under
#: which its parallel loops run on one thread (``gradcheck.torch`` takes it from here).
SMALL = 32768


def all_small(shapes) -> bool:
    """Whether every tensor of ``shapes`` has fewer than :data:`SMALL` elements."""
    return all(math.prod(s) < SMALL for s in shapes)


def torch_threads(jobs: int, cpus: int | None = None, shapes=None) -> int:
    """PyTorch's intra-op threads for a run of ``jobs`` processes: 1 beside other jobs, or
    when every tensor of the spec (``shapes``: the input, the parameters and each layer's
    output) has fewer than :data:`SMALL` elements, as ``gradcheck.torch`` does for a
    module (a check calls the layers many times on small tensors, where a second thread
    has no work to split and only spin-waits: a float32 spec of a PyTorch conv Function
    and tanh, input [2, 3, 8, 8], took 14-37 s with 2 threads and 3.2-4.7 s with 1 on two
    cores at a load of about 5); else at most 2.

    >>> torch_threads(2, cpus=8), torch_threads(1, cpus=8), torch_threads(1, cpus=1)
    (1, 2, 1)
    >>> torch_threads(1, cpus=8, shapes=[(2, 3, 8, 8), (4, 3, 3, 3)])
    1
    >>> torch_threads(1, cpus=8, shapes=[(2, 3, 8, 8), (8, 16, 32, 32)])
    2
    """
    if jobs > 1 or (shapes is not None and all_small(shapes)):
        return 1
    return max(1, min(2, cpus if cpus is not None else _cpus()))


def limit_torch_threads(jobs: int, shapes=None):
    """Set PyTorch's threads to :func:`torch_threads` -- only if PyTorch is imported
    already (by a layer's target); never imports it. Returns a callable that restores
    the number it replaced (a no-op when nothing was changed)."""
    torch = sys.modules.get("torch")
    set_threads = getattr(torch, "set_num_threads", None)
    if set_threads is None:
        return lambda: None
    before = torch.get_num_threads()
    wanted = torch_threads(jobs, shapes=shapes)
    if wanted == before:
        return lambda: None
    set_threads(wanted)
    return lambda: set_threads(before)


@contextlib.contextmanager
def _worker_environment(workers: int):
    """While workers start: their BLAS thread count, unless the user set one already.

    A spawned process copies the environment when it starts and its BLAS reads it when
    NumPy is imported, so this is the only reliable moment to set it; the parent's own
    environment is restored afterwards.
    """
    if any(v in os.environ for v in BLAS_THREAD_VARIABLES):
        yield
        return
    n = str(blas_threads(workers))
    try:
        os.environ.update({v: n for v in BLAS_THREAD_VARIABLES})
        yield
    finally:
        for v in BLAS_THREAD_VARIABLES:
            os.environ.pop(v, None)


@contextlib.contextmanager
def _sigint_ignored():
    """Start workers with SIGINT ignored (inherited), so Ctrl-C reaches only the parent.

    Only the main thread can change a signal handler; elsewhere this does nothing and the
    worker's initializer ignores SIGINT once it runs.
    """
    import signal       # here, not at import: a serial run never needs it

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:     # None: a handler installed outside Python; Python's own is the safe guess
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None
                      else previous)


def _exit_with_parent(sentinel) -> None:
    from multiprocessing.connection import wait

    wait([sentinel])
    os._exit(1)


def _init_worker() -> None:
    """In each worker: ignore Ctrl-C (the parent handles it), exit with the parent, and
    reuse freed arrays as the command line's own process does (:mod:`gradcheck._alloc`)."""
    import multiprocessing
    import signal

    from gradcheck._alloc import tune_allocator

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_allocator()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True,
                         name="gradcheck-parent-watch").start()


# --------------------------------------------------------------------------- running


class Died(Exception):
    """The worker process running a task stopped without a result (``exitcode`` as in
    :attr:`multiprocessing.Process.exitcode`: negative for a signal)."""

    def __init__(self, exitcode):
        self.exitcode = exitcode
        if exitcode is not None and exitcode < 0:
            import signal

            try:
                how = f"killed by signal {-exitcode} ({signal.Signals(-exitcode).name})"
            except ValueError:
                how = f"killed by signal {-exitcode}"
        else:
            how = f"exit status {exitcode}"
        super().__init__(how)


def _context():
    import multiprocessing

    return multiprocessing.get_context("spawn")


def _terminate(pool) -> None:
    """Stop every worker of ``pool`` now (``terminate_workers`` from Python 3.14 on)."""
    stop = getattr(pool, "terminate_workers", None)
    if stop is not None:
        stop()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def run_in_processes(func, tasks, jobs: int, *, on_done=None) -> list:
    """``[func(*task) for task in tasks]``, computed in up to ``jobs`` worker processes.

    The results come back in the order of ``tasks``, whatever order they finish in;
    ``on_done(k)`` is called as the k-th finishes. An exception in ``func`` is raised here
    (after the other workers are stopped). A task whose process died gets a :class:`Died`
    in place of its result. ``func`` and the tasks must be picklable, and ``func``
    importable by a fresh interpreter.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    results, unfinished = [None] * len(tasks), []
    workers = max(1, min(jobs, len(tasks)))
    with _worker_environment(workers), _sigint_ignored():
        pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_init_worker)
        try:       # the first `workers` submissions start the workers, in this environment
            futures = {pool.submit(func, *task): i for i, task in enumerate(tasks)}
        except BaseException:
            _terminate(pool)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    done = 0
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                i = futures[future]
                try:
                    results[i] = future.result()
                except BrokenProcessPool:
                    unfinished.append(i)
                    continue
                done += 1
                if on_done is not None:
                    on_done(done)
    except BaseException:      # Ctrl-C, or a bug raised by func: stop the others, now
        _terminate(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for i in sorted(unfinished):   # a worker died: rerun its tasks one by one, alone
        results[i] = _run_alone(func, tasks[i])
        done += 1
        if on_done is not None:
            on_done(done)
    return results


def _alone(connection, func, task) -> None:
    _init_worker()
    connection.send((True, None))    # started: a death from now on is the task's
    try:
        outcome = (True, func(*task))
    except BaseException as exc:     # sent back as text: the parent raises it
        import traceback

        outcome = (False, "".join(traceback.format_exception(exc)))
    connection.send(outcome)
    connection.close()


def _run_alone(func, task):
    """``func(*task)`` in a process of its own; :class:`Died` if that process dies."""
    ctx = _context()
    reader, writer = ctx.Pipe(duplex=False)
    with _worker_environment(1), _sigint_ignored():
        process = ctx.Process(target=_alone, args=(writer, func, task))
        process.start()
    writer.close()
    try:
        try:
            reader.recv()
        except EOFError:
            process.join()
            raise GradcheckError(
                f"-j: a worker process could not start ({Died(process.exitcode)}; its error "
                f"is printed above); run without -j") from None
        try:
            ok, value = reader.recv()
        except EOFError:
            process.join()
            return Died(process.exitcode)
    except BaseException:        # Ctrl-C while it runs: stop it now
        process.terminate()
        process.join()
        raise
    finally:
        reader.close()
    process.join()
    if not ok:
        raise RuntimeError("a worker process raised:\n" + value)
    return value
