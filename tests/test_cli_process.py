"""The ``gradcheck`` command's own process: what it imports at start-up, the garbage
collector around the checks, and how it leaves (:func:`gradcheck.cli.run`).

Each test runs a fresh interpreter, since start-up and exit are what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_run_exits_with_the_status_and_the_whole_output():
    proc = _python("""
        import sys
        sys.argv = ["gradcheck", "check", "--json", "specs/conv_tanh.toml"]
        from gradcheck.cli import run
        run()
        print("not reached")
    """)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)               # flushed to the last byte, nothing after
    assert data["passed"] is True and len(data["checks"]) == 3
    bad = _python("""
        import sys
        sys.argv = ["gradcheck", "check", "specs/does-not-exist.toml"]
        from gradcheck.cli import run
        run()
    """)
    assert bad.returncode == 2 and "does-not-exist.toml" in bad.stderr


def test_run_runs_the_atexit_functions_and_prints_what_they_print():
    proc = _python("""
        import atexit, sys
        atexit.register(lambda: print("atexit ran"))
        sys.argv = ["gradcheck", "check", "-q", "specs/conv_tanh.toml"]
        from gradcheck.cli import run
        run()
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("atexit ran\n")
    assert "all 3 checks passed" in proc.stdout


def test_run_waits_for_a_running_thread_of_the_user_as_an_ordinary_exit_does():
    proc = _python("""
        import sys, threading, time
        def late():
            time.sleep(0.5)
            print("thread finished", flush=True)
        threading.Thread(target=late).start()
        sys.argv = ["gradcheck", "--version"]
        from gradcheck.cli import run
        run()
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"gradcheck {_version()}", "thread finished"]


def _version() -> str:
    from gradcheck import __version__

    return __version__


def test_the_checks_of_a_command_run_with_the_collector_on():
    """``run`` holds the collector off during start-up only: a check that makes cyclic
    garbage has it collected; an in-process ``main`` leaves the collector as it found it."""
    proc = _python("""
        import gc, sys
        import gradcheck.spec
        seen = []
        def check_built(*args, **kwargs):
            seen.append(gc.isenabled())
            return original(*args, **kwargs)
        original = gradcheck.spec.check_built
        gradcheck.spec.check_built = check_built
        from gradcheck.cli import main, run
        gc.disable()
        main(["check", "-q", "specs/conv_tanh.toml"])
        print("main:", seen, gc.isenabled(), flush=True)
        gc.enable()
        seen.clear()
        import atexit
        atexit.register(lambda: print("run:", seen, gc.isenabled()))
        sys.argv = ["gradcheck", "check", "-q", "specs/conv_tanh.toml", "specs/small_cnn.toml"]
        run()
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "main: [False] False" in lines                 # left as found (off)
    assert lines[-1] == "run: [True, True] True"


def test_the_other_commands_turn_the_collector_back_on():
    proc = _python("""
        import atexit, gc, sys
        atexit.register(lambda: print("collector on:", gc.isenabled()))
        sys.argv = ["gradcheck", "explain", "--json"]
        from gradcheck.cli import run
        run()
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "collector on: True"


def test_a_commands_own_parser_reads_its_arguments_as_the_whole_parser_does():
    from gradcheck.cli import build_parser

    for argv in (["check"], ["check", "a.toml", "b.toml", "--json", "--mode", "full", "-j", "2",
                             "--rtol", "1e-3", "--max-memory", "2GiB", "--seed", "4"],
                 ["explain", "--convention", "correlation"], ["fuzz", "--examples", "3"],
                 ["train", "spec.toml", "--epochs", "2", "-q"]):
        whole = vars(build_parser().parse_args(argv))
        own = vars(build_parser(argv[0]).parse_args(argv))
        assert own == whole, argv


#: Not needed by ``import gradcheck.cli``, nor by ``--help`` or a usage error.
_NOT_AT_START = {"numpy", "scipy", "dataclasses", "inspect", "json", "tomllib", "typing",
                 "gradcheck.spec", "gradcheck.checker", "gradcheck.ops", "gradcheck.numdiff"}


def _imported(code: str) -> set:
    proc = _python("import sys\nbefore = set(sys.modules)\n" + textwrap.dedent(code) +
                   "\nprint(' '.join(sorted(set(sys.modules) - before)))")
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.splitlines()[-1].split())


def test_importing_the_cli_imports_nothing_a_command_may_not_need():
    new = _imported("import gradcheck.cli")
    assert "gradcheck.cli" in new
    assert not new & _NOT_AT_START, sorted(new & _NOT_AT_START)


def test_help_and_a_usage_error_import_nothing_of_the_library():
    new = _imported("""
        import contextlib, io
        from gradcheck.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["--help"]) == 0
            assert main(["check", "--mode", "ful"]) == 2
            assert main(["train", "--epochs", "0"]) == 2
    """)
    assert not new & _NOT_AT_START, sorted(new & _NOT_AT_START)


def test_a_toml_spec_checked_to_text_imports_no_json():
    new = _imported("""
        import contextlib, io
        from gradcheck.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["check", "specs/conv_tanh.toml"]) == 0
        assert "all 3 checks passed" in out.getvalue()
    """)
    assert "numpy" in new and "tomllib" in new          # (it did check)
    assert "json" not in new


#: Not needed by a passing first-order check of a spec of built-in layers (the adapters'
#: shared code, -j's worker pool and torch's threads, the codecs a spec's BOM and
#: /proc/meminfo were read with).
_NOT_IN_A_CHECK = {"gradcheck._adapter", "gradcheck._parallel", "encodings.utf_8_sig",
                   "encodings.ascii"}


def test_a_passing_check_imports_only_what_it_runs():
    new = _imported("""
        import contextlib, io
        from gradcheck.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["check", "specs/conv_tanh.toml", "--junit-xml", "/dev/null"]) == 0
        assert "all 3 checks passed" in out.getvalue()
    """)
    assert "numpy" in new and "gradcheck.checker._check" in new     # (it did check)
    assert not new & _NOT_IN_A_CHECK, sorted(new & _NOT_IN_A_CHECK)


#: Not imported by a passing check of the bench spec (a full check of a convolution and
#: an activation): what probes a user function's structure, samples or measures a formed
#: point, plants the known mistakes, diagnoses, builds pooling or dense layers or sparse
#: patterns, or reads a path through pathlib; nor shutil, which argparse imports for the
#: terminal's width.
_NOT_IN_THE_BENCH_CHECK = {
    "pathlib", "shutil", "json", "gradcheck.checker._probe", "gradcheck.checker._sample",
    "gradcheck.checker._formed", "gradcheck.checker._mistakes", "gradcheck.checker._causes",
    "gradcheck.checker._describe", "gradcheck.checker._identify", "gradcheck.spec._user",
    "gradcheck._adapter", "gradcheck._parallel", "gradcheck.ops.pooling",
    "gradcheck.ops.dense", "gradcheck.ops._patterns",
}


def _modules_after_check(root, spec: str) -> tuple:
    """``(exit status, modules loaded)`` of ``main(["check", spec])`` run in a fresh
    interpreter started without ``site`` (``-S``: no ``.pth`` file runs, as none of an
    editable install's or a sandbox's would for a user), the code from ``root``."""
    import site

    paths = [str(root), *site.getsitepackages()]
    code = f"""
        import sys
        sys.path[:0] = {paths!r}
        import contextlib, io
        from gradcheck.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            rc = main(["check", {spec!r}])
        assert sys.modules["gradcheck"].__file__.startswith({str(root)!r})
        print(rc, " ".join(sorted(sys.modules)))
    """
    proc = subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rc, modules = proc.stdout.splitlines()[-1].split(" ", 1)
    return int(rc), set(modules.split())


def test_a_passing_check_of_the_bench_spec_imports_only_what_it_runs():
    rc, modules = _modules_after_check(ROOT, "specs/bench/conv_tanh_24.toml")
    assert rc == 0
    assert {"numpy", "tomllib", "gradcheck.checker._check"} <= modules   # (it did check)
    assert not modules & _NOT_IN_THE_BENCH_CHECK, sorted(modules & _NOT_IN_THE_BENCH_CHECK)


def test_run_with_stdout_closed_at_start_exits_as_an_ordinary_exit_does():
    # the interpreter then has sys.stdout None; argparse writes the version to stderr
    code = "from gradcheck.cli import run; import sys; sys.argv = ['gradcheck', '--version']; run()"
    proc = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{code}" >&-'],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"gradcheck {_version()}\n"


def test_a_reader_that_closes_the_pipe_ends_the_command_with_141_and_no_traceback():
    # `gradcheck check --json | true`: the pipe is closed before the report is written
    import os

    read, write = os.pipe()
    os.close(read)                               # the reader is gone before any output
    try:
        proc = subprocess.run([sys.executable, "-m", "gradcheck", "check", "--json",
                               "specs/conv_tanh.toml"], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write)
    from gradcheck.cli import PIPE_CLOSED

    assert proc.returncode == PIPE_CLOSED == 141, proc.stderr
    assert proc.stderr == ""                     # no traceback, no "internal error"
