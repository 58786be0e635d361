"""Work arrays reused from one block of a loop to the next, and from call to call.

A loop over blocks that forms each pass's result in a fresh array of a few hundred KiB
can have the C allocator give the memory back to the system at the end of a block and
fault it in again at the next: the owners route (:class:`~._targets.VjpTarget`) with
fresh arrays took 8,300 page faults and 20 ms of system time per check of the bench spec
(``specs/bench/conv_tanh_24.toml``, glibc's allocator as a process leaves it), against
36 ms of the check's own work; with its block-sized arrays, and the grain's
(:func:`~._grain._grain`), taken from :func:`scratch` instead, 3 per check (the bincount
route before it: 700).
"""

from __future__ import annotations

import math
import threading

import numpy as np

__all__: list[str] = []

#: Arrays up to this many bytes are kept for the next call (per name and thread);
#: larger ones are handed out fresh each time.
KEEP_BYTES = 4 * 2**20


class Scratch:
    """Uninitialized arrays by name: the same memory as the last one of that name, when
    it is large enough and was small enough to keep."""

    def __init__(self):
        self._arrays = {}

    def __call__(self, name, shape, dtype=np.float64):
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        a = self._arrays.get((name, dtype))
        if a is None or a.size < size:
            a = np.empty(max(size, 1), dtype)
            if a.nbytes <= KEEP_BYTES:
                self._arrays[(name, dtype)] = a
        return a[:size].reshape(shape)


_local = threading.local()


def scratch() -> Scratch:
    """This thread's :class:`Scratch` (arrays handed out are valid until the same name
    is asked for again, in this thread)."""
    s = getattr(_local, "scratch", None)
    if s is None:
        s = _local.scratch = Scratch()
    return s
