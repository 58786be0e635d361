"""A full check takes the same route, and reports the same numbers, whatever the clock says.

The route of ``mode="full"`` (whether a user layer's tensor is probed for a structure,
which differencing method is used) follows from counts only (gradcheck/checker/_plan.py),
so that a re-run on a loaded machine, ``-j N`` or ``--shard`` gives the serial run's
report. The independent route here: the same spec checked twice, once under a clock on
which every call looks free and once under one on which each looks to take hours (and a
complex evaluation many times a real one), must give the same plans and the same numbers
-- the reports' arrays compared bit for bit. Against the former rule (probe when a full
check was predicted to take over 2 s; real differences when one complex call was timed
dearer than three real ones) the two clocks give different plans for the python-layer
spec.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import gradcheck.checker._check as check_module
import gradcheck.checker._forward as forward_module
import gradcheck.checker._scalarize as scalarize_module
import gradcheck.checker._timing as timing_module
from gradcheck.spec import load_spec
from gradcheck.spec._run import check_spec

ROOT = Path(__file__).resolve().parents[1]

#: conv stride 2, padding 1 -> a batch norm written in NumPy (examples/my_layers.py) ->
#: relu -> max pool, float32: the input has 512 elements (probing's least), and one
#: complex evaluation of the network costs a few real ones -- near the former threshold.
USER_SPEC = """
name = "bn_pool"
[input]
shape = [4, 2, 8, 8]
dtype = "float32"
[[layer]]
type = "conv"
out_channels = 3
kernel = 3
stride = 2
padding = 1
[[layer]]
type = "python"
target = "{layers}:BatchNorm"
params = {{ gamma = [3], beta = [3] }}
init = {{ gamma = {{ loc = 1.0, scale = 0.1 }}, beta = {{ scale = 0.1 }} }}
[[layer]]
type = "relu"
[[layer]]
type = "maxpool"
kernel = 2
[check]
mode = "full"
seed = 5
"""


class _Clock:
    """A stand-in for the ``time`` module: ``perf_counter`` advances by ``step(k)`` on its
    ``k``-th reading, whatever really elapsed."""

    def __init__(self, step):
        self.k, self.now, self.step = 0, 0.0, step

    def perf_counter(self):
        self.k += 1
        self.now += self.step(self.k)
        return self.now


#: Every call looks free (a picosecond).
QUIET = lambda k: 1e-12                                  # noqa: E731
#: Each call looks to take hours, and each one half as long as the one before, so the
#: complex evaluations (timed first) look 16 times dearer than the real ones after them.
LOADED = lambda k: 1e7 * 0.5 ** min(k, 900)              # noqa: E731


def _checked(monkeypatch, spec, step):
    clock = _Clock(step)
    for module in (scalarize_module, timing_module, forward_module):
        monkeypatch.setattr(module, "time", clock)
    plans = []
    plan_argument = check_module.plan_argument

    def recorded(problem, options, index):
        plan = plan_argument(problem, options, index)
        plans.append((plan.name, plan.kind, plan.method, plan.probe_nfev,
                      None if plan.pattern is None else type(plan.pattern).__name__))
        return plan

    monkeypatch.setattr(check_module, "plan_argument", recorded)
    report = check_spec(spec, mode="full", per_layer="off")
    monkeypatch.undo()
    return plans, report


def _untimed(d):
    """A report's ``to_dict`` without its timings (``elapsed_s``, at any depth)."""
    if isinstance(d, dict):
        return {k: _untimed(v) for k, v in d.items() if k != "elapsed_s"}
    if isinstance(d, list):
        return [_untimed(v) for v in d]
    return d


def _same_reports(a, b):
    da, db = _untimed(a.to_dict()), _untimed(b.to_dict())
    assert "elapsed_s" not in str(da) and da["checks"]
    assert da == db
    for x, y in zip(a.arguments, b.arguments):
        for name in ("analytic", "numeric", "error_estimate", "allowed", "failed_mask"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None) == (v is None), name
            if u is not None:
                np.testing.assert_array_equal(u, v, err_msg=f"{x.name}.{name}")


@pytest.mark.parametrize("which", ["builtin", "python"])
def test_a_full_check_is_the_same_under_any_clock(monkeypatch, tmp_path, which):
    if which == "builtin":
        spec = load_spec(ROOT / "specs" / "float32.toml")
    else:
        path = tmp_path / "bn_pool.toml"
        path.write_text(USER_SPEC.format(
            layers=(ROOT / "examples" / "my_layers.py").as_posix()))
        spec = load_spec(path)
    plans_quiet, quiet = _checked(monkeypatch, spec, QUIET)
    plans_loaded, loaded = _checked(monkeypatch, spec, LOADED)
    assert plans_quiet == plans_loaded
    _same_reports(quiet, loaded)
    if which == "python":
        # the input is probed (512 elements) under both clocks, and the method is the
        # differentiator's own, not one the clock chose
        assert plans_quiet[0][0] == "input" and plans_quiet[0][3] > 0, plans_quiet
        assert all(p[2] == "" for p in plans_quiet), plans_quiet
        assert "input: no dependency structure could be shown by probing" in str(quiet)
        assert "real differences, not the complex step" not in str(quiet)
    assert all(math.isfinite(r.max_abs_error) for r in quiet.arguments)
