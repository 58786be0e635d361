"""``gradcheck check --shard I/N`` and ``-j N``: the output is a serial run's.

The partition is held against a second implementation of the documented rule (SHA-256 of
the normalized path, sorted, cut into nearly equal runs); every claim about the output is
a comparison with the serial run of the same specs, timings removed. The process tests
(interrupt, a dying worker) look at /proc for leftovers and are skipped without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradcheck._parallel import BLAS_THREAD_VARIABLES, _worker_environment, shard_indices
from gradcheck.cli import MISMATCH, OK, USAGE, main

ROOT = Path(__file__).resolve().parents[1]
GOOD = str(ROOT / "specs/conv_tanh.toml")
CNN = str(ROOT / "specs/small_cnn.toml")
BUGGY = str(ROOT / "specs/examples/user_layer_buggy.toml")


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- the partition


def reference_shards(paths, n):
    """The documented rule, written again: hash of the normalized path, sort, cut."""
    def key(i):
        norm = os.path.normpath(paths[i]).replace(os.sep, "/")
        return hashlib.sha256(norm.encode()).hexdigest(), norm, i

    order = sorted(range(len(paths)), key=key)
    q, r = divmod(len(paths), n)
    sizes = [q + (k < r) for k in range(n)]
    cuts = [sum(sizes[:k]) for k in range(n + 1)]
    return [sorted(order[cuts[k]:cuts[k + 1]]) for k in range(n)]


@pytest.mark.parametrize("n_specs, n_shards", [(0, 1), (1, 1), (1, 3), (3, 4), (7, 3),
                                               (10, 4), (25, 6), (40, 40), (60, 7)])
def test_shards_partition_the_specs_evenly_by_the_documented_rule(n_specs, n_shards):
    rng = random.Random(n_specs * 100 + n_shards)
    paths = [f"specs/{rng.choice('abcxyz')}/layer_{rng.randrange(10**6)}.toml"
             for _ in range(n_specs)]
    shards = [shard_indices(paths, i, n_shards) for i in range(1, n_shards + 1)]
    assert shards == reference_shards(paths, n_shards)
    assert sorted(sum(shards, [])) == list(range(n_specs))         # each spec exactly once
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    for s in shards:
        assert s == sorted(s)                                       # command-line order


def test_a_shard_depends_on_the_paths_not_their_order_or_spelling():
    paths = [f"specs/s{i:02d}.toml" for i in range(20)]
    spelled = ["./" + p if i % 2 else p.replace("/", "/./") for i, p in enumerate(paths)]
    shuffled = paths[:]
    random.Random(1).shuffle(shuffled)
    for i in (1, 2, 3):
        expected = {paths[k] for k in shard_indices(paths, i, 3)}
        assert {paths[k] for k in shard_indices(spelled, i, 3)} == expected
        assert {shuffled[k] for k in shard_indices(shuffled, i, 3)} == expected


@pytest.mark.parametrize("n_shards", [2, 3, 5])
def test_adding_a_spec_moves_at_most_one_other_per_cut_to_a_neighbour(n_shards):
    rng = random.Random(n_shards)
    paths = [f"specs/s{rng.randrange(10**9)}.toml" for _ in range(30)]
    for _ in range(20):
        new = f"specs/new{rng.randrange(10**9)}.toml"
        before = {paths[k]: i for i in range(1, n_shards + 1)
                  for k in shard_indices(paths, i, n_shards)}
        grown = paths + [new]
        after = {grown[k]: i for i in range(1, n_shards + 1)
                 for k in shard_indices(grown, i, n_shards)}
        moved = [p for p in paths if after[p] != before[p]]
        assert len(moved) <= n_shards - 1
        assert all(abs(after[p] - before[p]) == 1 for p in moved)
        paths = grown


# --------------------------------------------------------------------------- comparison


USER = """
    import json, multiprocessing, os, signal, time

    class Raises:
        def forward(self, x):
            return 2 * x
        def backward(self, g, x):
            raise ZeroDivisionError("user bug here")

    class Threads:
        # records, once per process, the BLAS threads it was given
        def forward(self, x):
            path = f"threads-{os.getpid()}.json"
            if multiprocessing.parent_process() is not None and not os.path.exists(path):
                info = {v: os.environ.get(v) for v in %r}
                try:
                    import threadpoolctl
                    info["blas"] = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                                    if i["user_api"] == "blas"]
                except ImportError:
                    pass
                with open(path, "w") as fh:
                    json.dump(info, fh)
            return 2 * x
        def backward(self, g, x):
            return (2 * g,)

    class Dies:
        # kills its own process -- only ever in a worker, never the test's process
        def forward(self, x):
            if multiprocessing.parent_process() is not None:
                os.kill(os.getpid(), signal.SIGKILL)
            return 2 * x
        def backward(self, g, x):
            return (2 * g,)

    class Slow:
        def forward(self, x):
            open(f"started-{os.getpid()}", "w").close()
            time.sleep(0.5)
            return 2 * x
        def backward(self, g, x):
            return (2 * g,)
""" % (BLAS_THREAD_VARIABLES,)


@pytest.fixture
def specs(tmp_path, monkeypatch):
    """A directory of specs of every kind, as the working directory."""
    module = "cli_parallel_t"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(USER))
    for name in ("Raises", "Threads", "Dies", "Slow"):
        (tmp_path / f"{name}.toml").write_text(
            f"[input]\nshape = [2, 3]\n[[layer]]\ntype = 'python'\ntarget = '{module}:{name}'\n")
    (tmp_path / "Threads2.toml").write_text((tmp_path / "Threads.toml").read_text())
    (tmp_path / "bad.toml").write_text("[input]\nshape = [2, 3, 8, 8]\n[[layer]]\n"
                                       "type = 'tnah'\n")
    (tmp_path / "huge.toml").write_text("[input]\nshape = [100000, 3, 1024, 1024]\n"
                                        "[[layer]]\ntype = 'tanh'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))          # examples.my_layers for BUGGY
    for v in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    sys.modules.pop(module, None)
    yield tmp_path
    sys.modules.pop(module, None)


#: A good spec, a bad one, one refused once built, user code that raises, a wrong gradient,
#: and two specs that record their process's BLAS threads.
MIX = [GOOD, "bad.toml", "Raises.toml", BUGGY, "huge.toml", "Threads.toml", CNN,
       "Threads2.toml"]


def untimed(data):
    """A JSON report without its timings (every ``elapsed_s``)."""
    if isinstance(data, dict):
        return {k: untimed(v) for k, v in data.items() if k != "elapsed_s"}
    if isinstance(data, list):
        return [untimed(v) for v in data]
    return data


def untimed_text(text):
    return re.sub(r"\b\d+\.\d+ s\b", "T s", text)


def untimed_junit(path):
    root = ET.parse(path).getroot()
    for element in root.iter():
        element.attrib.pop("time", None)
    return ET.tostring(root, encoding="unicode")


def test_jobs_output_is_the_serial_output(capsys, specs):
    # a time budget no run reaches: auto mode's full-or-sampled choice must not depend on
    # how busy the machine is when the serial and the parallel run measure f
    argv = ["check", *MIX, "--max-memory", "8GiB", "--time-budget", "1e6"]
    serial = run(argv + ["--json", "--junit-xml", "serial.xml"], capsys)
    assert not list(specs.glob("threads-*.json"))       # the serial run has no worker
    parallel = run(argv + ["-j", "2", "--json", "--junit-xml", "parallel.xml"], capsys)
    assert parallel[0] == serial[0] == USAGE                     # bad input wins
    assert parallel[2] == serial[2]                              # the same error lines
    assert serial[2].count("\n") == 2 and "bad.toml" in serial[2] and "huge.toml" in serial[2]
    data, expected = json.loads(parallel[1]), json.loads(serial[1])
    assert untimed(data) == untimed(expected)
    assert untimed_junit(specs / "parallel.xml") == untimed_junit(specs / "serial.xml")
    # in the command line's order, whichever worker finished first
    assert [s["spec"] for s in data["specs"]] == [GOOD, "Raises.toml", BUGGY, "Threads.toml",
                                                  CNN, "Threads2.toml"]
    assert [e["spec"] for e in data["errors"]] == ["bad.toml", "huge.toml"]
    assert [s["passed"] for s in data["specs"]] == [True, False, False, True, True, True]
    # each worker's BLAS got cpus // 2 threads (at least 1); the parent's environment is
    # left as it was
    expected_threads = max(1, len(os.sched_getaffinity(0)) // 2) \
        if hasattr(os, "sched_getaffinity") else max(1, (os.cpu_count() or 1) // 2)
    records = [json.loads(p.read_text()) for p in specs.glob("threads-*.json")]
    assert records
    for record in records:
        assert {v: record[v] for v in BLAS_THREAD_VARIABLES} == \
            {v: str(expected_threads) for v in BLAS_THREAD_VARIABLES}
        if "blas" in record:                      # threadpoolctl: what OpenBLAS really uses
            assert record["blas"] and set(record["blas"]) == {expected_threads}
    assert not any(v in os.environ for v in BLAS_THREAD_VARIABLES)


def test_jobs_text_and_plots_are_the_serial_ones(capsys, specs):
    argv = ["check", GOOD, "Raises.toml", BUGGY, "-v", "--time-budget", "1e6"]
    try:
        import matplotlib  # noqa: F401
        argv_serial = argv + ["--plot", "serial-plots"]
        argv_parallel = argv + ["--plot", "parallel-plots"]
    except ImportError:
        argv_serial = argv_parallel = argv
    serial = run(argv_serial, capsys)
    parallel = run(argv_parallel + ["-j", "2"], capsys)
    assert parallel[0] == serial[0] == MISMATCH
    assert untimed_text(parallel[1]).replace("parallel-plots", "serial-plots") == \
        untimed_text(serial[1])
    assert "Traceback (most recent call last)" in parallel[1]     # -v: the user traceback
    if argv_serial is not argv:
        written = sorted(p.name for p in (specs / "serial-plots").iterdir())
        assert written and sorted(p.name for p in (specs / "parallel-plots").iterdir()) == \
            written


def test_shards_together_are_the_serial_run(capsys, specs):
    argv = ["check", *MIX, "--max-memory", "8GiB", "--json"]
    code, out, err = run(argv, capsys)
    serial = json.loads(out)
    union = {"checks": [], "specs": [], "errors": []}
    codes = []
    for i in (1, 2, 3):
        code, out, err = run(argv + ["--shard", f"{i}/3", "--junit-xml", f"s{i}.xml"]
                             + (["-j", "2"] if i == 1 else []), capsys)
        shard = json.loads(out)
        codes.append(code)
        mine = [MIX[k] for k in shard_indices(MIX, i, 3)]
        # a shard is the serial run of its own specs, in the command line's order
        alone = run(["check", *mine, "--max-memory", "8GiB", "--json"], capsys)
        assert (code, err) == alone[0::2]
        assert untimed(shard) == untimed(json.loads(alone[1]))
        assert mine and all(s["spec"] in mine for s in shard["specs"] + shard["errors"])
        junit = ET.parse(specs / f"s{i}.xml").getroot()
        assert int(junit.get("tests")) == \
            len(shard["checks"]) + len(shard["layers"]) + len(shard["errors"])
        for key in union:
            union[key] += shard[key]
    # together: every check and every error exactly once; the bad specs fail their shard
    def canonical(entries):
        return sorted(json.dumps(untimed(e), sort_keys=True) for e in entries)
    for key in union:
        assert canonical(union[key]) == canonical(serial[key])
    owners = {MIX[k]: i for i in (1, 2, 3) for k in shard_indices(MIX, i, 3)}
    assert codes[owners["bad.toml"] - 1] == USAGE and codes[owners["huge.toml"] - 1] == USAGE


def test_an_empty_shard_passes_and_says_so(capsys, specs):
    # one spec over two jobs: one of them has nothing to check
    empty = 1 + (shard_indices([GOOD], 1, 2) == [0])
    code, out, err = run(["check", GOOD, "--shard", f"{empty}/2", "--junit-xml", "e.xml"],
                         capsys)
    line = (f"gradcheck: shard {empty}/2 has nothing to check (1 spec over 2 shards; the "
            "other shards check them)\n")
    assert (code, out, err) == (OK, line, "")
    root = ET.parse(specs / "e.xml").getroot()       # the CI's report step finds a file
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("0", "0", "0")
    code, out, err = run(["check", GOOD, "--shard", f"{empty}/2", "--json"], capsys)
    assert code == OK and err == line
    data = json.loads(out)
    assert data["passed"] is True and data["checks"] == data["specs"] == data["errors"] == []
    # the other shard checks it; without SPEC the built-in example is the one spec
    code, out, _ = run(["check", GOOD, "--shard", f"{3 - empty}/2", "-q"], capsys)
    assert code == OK and out.startswith("gradcheck: all 3 checks passed (1 spec")
    codes = [run(["check", "--shard", f"{i}/2", "-q"], capsys)[0] for i in (1, 2)]
    assert codes == [OK, OK]


@pytest.mark.parametrize("argv, message", [
    (["--shard", "3/2"], "--shard must be I/N with 1 <= I <= N (this job's number I of N "
                         "jobs, e.g. 1/4), got '3/2'"),
    (["--shard", "0/2"], "--shard must be I/N with 1 <= I <= N (this job's number I of N "
                         "jobs, e.g. 1/4), got '0/2'"),
    (["--shard", "1/0"], "--shard must be I/N with 1 <= I <= N (this job's number I of N "
                         "jobs, e.g. 1/4), got '1/0'"),
    (["--shard", "2"], "--shard must be I/N with 1 <= I <= N (this job's number I of N "
                       "jobs, e.g. 1/4), got '2'"),
    (["--shard=-1/2"], "--shard must be I/N with 1 <= I <= N (this job's number I of N "
                       "jobs, e.g. 1/4), got '-1/2'"),
    (["-j", "0"], "-j/--jobs must be >= 1, got 0"),
    (["--jobs", "-2"], "-j/--jobs must be >= 1, got -2"),
    (["-j", "two"], "-j/--jobs must be an int, got 'two'"),
])
def test_bad_shard_and_jobs_values_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(["check", GOOD, *argv], capsys)
    assert (code, out, err) == (USAGE, "", f"gradcheck: error: {message}\n")


def test_blas_threads_are_left_alone_when_the_user_set_them(monkeypatch):
    for v in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    with _worker_environment(2):
        set_here = {v: os.environ.get(v) for v in BLAS_THREAD_VARIABLES}
    assert len(set(set_here.values())) == 1 and None not in set_here.values()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with _worker_environment(2):
        assert {v: os.environ.get(v) for v in BLAS_THREAD_VARIABLES} == \
            {v: ("3" if v == "OMP_NUM_THREADS" else None) for v in BLAS_THREAD_VARIABLES}


# --------------------------------------------------------------------------- processes


def test_workers_ignore_ctrl_c_and_their_exceptions_reach_the_caller():
    from gradcheck._parallel import run_in_processes

    assert run_in_processes(signal.getsignal, [(signal.SIGINT,)] * 2, 2) == \
        [signal.SIG_IGN] * 2
    with pytest.raises(ValueError, match="invalid literal for int"):
        run_in_processes(int, [("1",), ("x",), ("3",)], 2)


def _session(sid):
    """Pids of the live processes of session ``sid`` (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def _wait_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_a_worker_that_dies_fails_its_spec_and_the_others_are_checked(capsys, specs):
    code, out, err = run(["check", GOOD, "Dies.toml", CNN, "-j", "2", "--json"], capsys)
    assert code == MISMATCH, err
    data = json.loads(out)
    assert [(s["spec"], s["passed"]) for s in data["specs"]] == \
        [(GOOD, True), ("Dies.toml", False), (CNN, True)]
    died = [c for c in data["checks"] if c["spec"] == "Dies.toml"]
    assert len(died) == 1 and died[0]["error"].startswith(
        "the process checking this spec stopped abruptly (killed by signal 9 (SIGKILL))")
    assert "check Dies.toml without -j" in died[0]["error"]


def _sigint_default():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@needs_proc
@pytest.mark.parametrize("how", ["ctrl-c", "sigint-to-gradcheck", "sigkill-to-gradcheck"])
def test_an_interrupted_run_stops_at_once_and_leaves_no_process(specs, how):
    proc = subprocess.Popen([sys.executable, "-m", "gradcheck", "check", "-j", "3",
                             "Slow.toml", "Threads.toml", "Slow.toml"],
                            cwd=specs, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            # Ctrl-C as a terminal delivers it, even when this test run was
                            # started in the background (`cmd &` ignores SIGINT, inherited)
                            preexec_fn=_sigint_default)
    try:
        # two workers are inside the user's forward, the third is done with the quick
        # spec and waits for work (Ctrl-C must not print a traceback from there either)
        assert _wait_until(lambda: len(list(specs.glob("started-*"))) >= 2
                           and list(specs.glob("threads-*.json")), 60)
        time.sleep(1.0)
        if how == "ctrl-c":                       # a terminal sends it to the whole group
            os.killpg(proc.pid, signal.SIGINT)
        elif how == "sigint-to-gradcheck":
            os.kill(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:
        if how == "sigkill-to-gradcheck":
            assert proc.returncode == -signal.SIGKILL
        else:
            assert (proc.returncode, err) == (130, "gradcheck: interrupted\n")
            assert out == ""
        # the workers (and multiprocessing's helper) are gone too, not orphaned
        assert _wait_until(lambda: not _session(proc.pid), 10), _session(proc.pid)
    finally:
        for pid in _session(proc.pid):       # never leave them running, even on failure
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
