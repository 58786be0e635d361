"""What a pytest user sees when :func:`gradcheck.assert_vjp_close` fails.

A real pytest run in a subprocess, on a small test file with a wrong backward: the
output must show the test's own line, the report and the likely cause, and none of
gradcheck's frames (``__tracebackhide__``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

TEST_FILE = textwrap.dedent("""
    import numpy as np
    from gradcheck import assert_vjp_close

    def my_vjp(g, x):
        return (-g * np.sin(x),)        # wrong: the derivative of sin is cos

    def test_my_sin():
        x = np.array([0.3, -0.7, 1.1])
        assert_vjp_close(np.sin, my_vjp, (x,))
""")


def test_a_failing_assert_vjp_close_shows_the_report_not_gradchecks_frames(tmp_path):
    (tmp_path / "test_mine.py").write_text(TEST_FILE)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "test_mine.py"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert ">       assert_vjp_close(np.sin, my_vjp, (x,))" in out        # the user's line
    assert "E       AssertionError: gradcheck my_sin: FAILED" not in out  # (f is np.sin)
    assert "E       AssertionError: gradcheck sin: FAILED" in out
    assert "MISMATCH" in out and "worst at index (" in out
    assert "likely cause:" in out
    assert "test_mine.py:10: AssertionError" in out
    # none of gradcheck's own frames
    assert "gradcheck/checker" not in out and "_check.py" not in out
    assert "report = check_vjp(" not in out and "raise err" not in out
