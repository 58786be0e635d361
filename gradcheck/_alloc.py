"""The C allocator's thresholds for a ``gradcheck`` command-line process.

A check allocates and frees the same few arrays of one to ten MiB over and over (a chunk
of perturbed points, its outputs, their float64 work copies). With glibc's defaults an
array above the *mmap threshold* (128 KiB at start, raised to the size of each such block
freed) is mapped afresh on each allocation, and free memory above the *trim threshold*
at the top of the heap is handed back to the kernel: either way the next array of that
size is new memory, and the kernel zeroes each of its 4 KiB pages on first touch, one
page fault each. On the bench spec (``specs/bench/conv_tanh_24.toml``) a whole
``gradcheck check`` process took about 17 000 page faults, 2 300 of them in every
further check in the same process; with both thresholds fixed (32 MiB, 64 MiB) the first
check takes about 9 000 and each later one a few dozen, and freed memory is reused.

Only the command line sets them (:func:`tune_allocator`, called before its first check),
for its own process and the worker processes of ``-j N``: a library call leaves its
caller's allocator as it is. Where the C
library has no ``mallopt`` (not glibc) nothing changes; the thresholds only move time, never
a result.
"""

from __future__ import annotations

__all__ = ["tune_allocator"]

#: glibc's ``mallopt`` parameters (``malloc.h``) and the values set.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20    # glibc's largest on 64-bit: larger blocks are still mapped
TRIM_THRESHOLD = 64 * 2**20    # free memory kept at the heap's top before it is returned


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; False where there is no
    ``mallopt`` to call (or it refused), True where both were set."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
