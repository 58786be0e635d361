"""The command line's allocator thresholds (gradcheck._alloc): freed arrays are reused.

Measured in fresh processes (the thresholds are the whole process's): the same cycle of
allocating, touching and freeing arrays of 1 to 12 MiB, repeated, page-faults again and
again with glibc's defaults and not at all once the thresholds are fixed.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
    reason="mallopt's thresholds are glibc's")

_WORK = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "tuned":
        from gradcheck._alloc import tune_allocator
        assert tune_allocator()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def cycle():
        for mib in (9, 3, 6, 1, 12, 2):
            a = np.ones(mib * 2**17); b = a * 2.0; del a, b
    cycle()                    # first touches: counted by neither
    before = faults()
    for _ in range(5):
        cycle()
    print(faults() - before)
""")


def _faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _WORK, mode], capture_output=True, text=True,
                         env=env, check=True)
    return int(out.stdout)


def test_tuned_thresholds_reuse_freed_arrays():
    default, tuned = _faults("default"), _faults("tuned")
    # 5 cycles of 66 MiB touched: about 17 000 pages if each array is new memory
    assert default > 5000, default
    assert tuned < 200, tuned


def test_the_check_command_sets_them(monkeypatch, tmp_path):
    import gradcheck._alloc as alloc
    from gradcheck.cli import main

    called = []
    monkeypatch.setattr(alloc, "tune_allocator", lambda: called.append(True) or True)
    assert main(["check", "--json"]) == 0
    assert called == [True]


def _faults_of_cycles() -> int:
    """Page faults of five allocation cycles in this process (run in a worker)."""
    import resource

    import numpy as np

    def cycle():
        for mib in (9, 3, 6, 1, 12, 2):
            a = np.ones(mib * 2**17)
            b = a * 2.0
            del a, b

    cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        cycle()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_the_workers_of_j_set_them(monkeypatch):
    # -j N checks specs in spawned interpreters: each sets the thresholds as it starts.
    from gradcheck._parallel import run_in_processes

    for key in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(key)
    assert run_in_processes(_faults_of_cycles, [()] * 2, 2) == [pytest.approx(0, abs=200)] * 2
