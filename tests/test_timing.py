"""Auto mode keeps its time budget: the plan's prediction counts what an evaluation costs
besides ``f`` (:func:`gradcheck.checker._timing.point_seconds`), and a full check that
runs late is stopped and sampled (:func:`gradcheck.checker._timing.watched`).

Time here is a virtual clock that only ``f`` moves (``time.perf_counter`` replaced): each
call of ``f`` costs what the test says, so the planned and the spent seconds are counts
of evaluations, the same on a busy machine as on a quiet one. One test measures real
time, with a wide margin.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import gradcheck.checker._plan as plan_module
from gradcheck import ConfigurationError, check_vjp
from gradcheck.checker._options import Options, validate
from gradcheck.checker._plan import PREDICTED_EVALS_PER_GROUP, plan_argument
from gradcheck.checker._scalarize import scalarize
from gradcheck.checker._timing import FLOOR_S, OVERRUN, Watch, watched, OverTime


class Clock:
    """A ``perf_counter`` that only moves when told to."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(time, "perf_counter", c)
    return c


def _sin_costing(clock, x0, at_point, elsewhere):
    """``sin``, costing ``at_point`` seconds at ``x0`` and ``elsewhere`` at other points
    (a layer that is slower on the perturbed points than on the one it was timed at);
    ``f.calls`` counts the calls at other points."""
    def f(x):
        at = np.array_equal(x, x0)
        clock.now += at_point if at else elsewhere
        f.calls += not at
        return np.sin(x)
    f.calls = 0
    return f


def _plans(f, f_vjp, args, **options):
    opts, arrays = validate(f, f_vjp, args, Options(**options))
    problem = scalarize(f, f_vjp, arrays, opts)
    return [plan_argument(problem, opts, i) for i in opts.wrt]


def test_a_full_plan_is_predicted_within_the_budget_and_an_over_budget_one_is_not(clock):
    x = np.linspace(-1.0, 1.0, 200)
    f = _sin_costing(clock, x, 1e-3, 1e-3)
    vjp = lambda g, x: (g * np.cos(x),)
    # 200 elements, each differenced on its own: 200 * 6 evaluations of 1 ms = 1.2 s
    (full,) = _plans(f, vjp, (x,), time_budget=2.0)
    assert full.kind == "full"
    assert full.watch.evals == PREDICTED_EVALS_PER_GROUP * 200
    assert full.watch.evals * full.watch.eval_seconds <= 2.0
    assert full.watch.eval_seconds == pytest.approx(1e-3)   # f alone: no time forming points
    (over,) = _plans(f, vjp, (x,), time_budget=1.0)
    assert over.kind == "sampled"
    assert over.reason == ("a full check would take about 1.2 s (1200 evaluations of 1 ms) > "
                           "time_budget 1 s")


def test_a_slow_first_measure_is_taken_again_before_a_full_check_is_given_up(clock):
    # f's first two calls take 30 ms (warm-up, a busy machine), later ones 1 ms: from the
    # first two, 1200 evaluations would take 36 s > 2 s; from three more (90 ms, within
    # 5% of the budget), 1.2 s: full
    x = np.linspace(-1.0, 1.0, 200)
    cheap = _sin_costing(clock, x, 1e-3, 1e-3)

    def f(x):
        f.calls += 1
        clock.now += 29e-3 if f.calls <= 2 else 0.0
        return cheap(x)
    f.calls = 0
    vjp = lambda g, x: (g * np.cos(x),)
    (plan,) = _plans(f, vjp, (x,), time_budget=2.0)
    assert plan.kind == "full"
    assert plan.watch.eval_seconds == pytest.approx(1e-3)
    # a layer as slow on every call stays over budget, its reason quoting the time
    (over,) = _plans(_sin_costing(clock, x, 30e-3, 30e-3), vjp, (x,), time_budget=2.0)
    assert over.kind == "sampled"
    assert over.reason == ("a full check would take about 36 s (1200 evaluations of 30 ms) "
                           "> time_budget 2 s")


def test_the_prediction_counts_forming_and_reducing_the_points(clock, monkeypatch):
    # what forming a perturbed copy of a large argument costs, besides f (here 3 ms)
    monkeypatch.setattr(plan_module, "point_seconds", lambda *a, **k: 3e-3)
    x = np.linspace(-1.0, 1.0, 200)
    f = _sin_costing(clock, x, 1e-3, 1e-3)
    (plan,) = _plans(f, lambda g, x: (g * np.cos(x),), (x,), time_budget=2.0)
    # f alone would fit (1.2 s); with the points, 1200 * 4 ms = 4.8 s does not
    assert plan.kind == "sampled"
    assert plan.reason == ("a full check would take about 4.8 s (1200 evaluations of 4 ms: "
                           "f 1 ms, forming and reducing the point 3 ms) > time_budget 2 s")


def test_a_full_check_running_late_is_stopped_and_sampled_within_the_budget(clock):
    # timed at 1 ms, f takes 20 ms at every other point: the full check planned at 1.2 s
    # would take about 20 s; it is stopped and the argument sampled instead
    x = np.linspace(-1.0, 1.0, 200)
    budget = 2.0
    f = _sin_costing(clock, x, 1e-3, 20e-3)
    report = check_vjp(f, lambda g, x: (g * np.cos(x),), (x,), time_budget=budget)
    a = report.arguments[0]
    assert report.passed and a.mode == "sampled" and a.n_checked < a.n_elements
    note = report.notes[0]
    assert note.startswith("arg0: the full check was stopped after ")
    assert "ms each; 1.2 s predicted): on course for about " in note
    assert "> 1.25 x time_budget 2 s; checked in sampled mode: sampled " in note
    # the seconds spent are f's evaluations, counted: the whole check keeps its budget
    assert report.elapsed_s <= 1.5 * budget
    # and the evaluations the stopped full check spent are counted in the report
    assert report.nfev >= f.calls


def test_a_full_check_that_runs_as_predicted_is_not_stopped(clock):
    x = np.linspace(-1.0, 1.0, 200)
    f = _sin_costing(clock, x, 1e-3, 1e-3)
    report = check_vjp(f, lambda g, x: (g * np.cos(x),), (x,), time_budget=2.0)
    assert report.arguments[0].mode == "full" and report.passed
    assert report.elapsed_s <= 2.0


def test_a_late_full_check_is_refused_when_the_caller_says_so(clock):
    x = np.linspace(-1.0, 1.0, 200)
    f = _sin_costing(clock, x, 1e-3, 20e-3)
    with pytest.raises(ConfigurationError, match=r"^argument 'arg0' is over budget: the "
                       r"full check was stopped after .*; raise budget/time_budget"):
        check_vjp(f, lambda g, x: (g * np.cos(x),), (x,), time_budget=2.0,
                  over_budget="refuse")


def test_a_late_full_check_goes_to_fast_mode_when_the_caller_says_so(clock):
    x = np.linspace(-1.0, 1.0, 200)
    f = _sin_costing(clock, x, 1e-3, 20e-3)
    report = check_vjp(f, lambda g, x: (g * np.cos(x),), (x,), time_budget=2.0,
                       over_budget="fast")
    assert report.arguments[0].mode == "fast" and report.passed
    assert "the full check was stopped after" in report.notes[0]
    assert report.notes[0].endswith("checked in fast mode")


def test_mode_full_is_never_stopped(clock):
    x = np.linspace(-1.0, 1.0, 50)
    f = _sin_costing(clock, x, 1e-3, 20e-3)
    report = check_vjp(f, lambda g, x: (g * np.cos(x),), (x,), time_budget=0.1,
                       mode="full")
    assert report.arguments[0].mode == "full" and report.passed


def _run_watched(clock, watch, seconds_each, calls):
    """Call a watched ``g`` costing ``seconds_each`` up to ``calls`` times (complex points
    when ``seconds_each`` is negative): the calls made before it stopped, or None."""
    a = np.zeros(3)
    point = a + 0j if seconds_each < 0 else a

    def g(x):
        clock.now += abs(seconds_each)
        return x

    h = watched(g, a, watch)
    for made in range(calls):
        try:
            h(point)
        except OverTime:
            with pytest.raises(OverTime):       # and it stays stopped
                h(point)
            return made
    return None


@pytest.mark.parametrize("budget", [10.0, 0.01])
def test_the_watch_stops_early_on_a_rate_far_over_the_prediction(clock, budget):
    limit = max(OVERRUN * budget, FLOOR_S)
    evidence = max(0.1 * limit, 1.0)
    # 200 groups, 1200 real evaluations predicted; each takes 0.1 s: about 120 s
    made = _run_watched(clock, Watch(budget, groups=200, eval_seconds=1e-3), 0.1, 1200)
    assert made is not None and made * 0.1 <= evidence + 0.1 + 1e-9


def test_the_watch_lets_a_check_on_course_finish(clock):
    # 200 groups: 1200 real evaluations of 8 ms = 9.6 s, within 1.25 x 10 s
    assert _run_watched(clock, Watch(10.0, groups=200, eval_seconds=8e-3), 8e-3,
                        1200) is None
    # the complex step: 2 evaluations a group, each dearer (40 ms): 16 s, over the limit
    # of 12.5 s but not 1.5 times it: stopped at the limit, not before
    made = _run_watched(clock, Watch(10.0, groups=200, eval_seconds=8e-3), -40e-3, 400)
    assert made is not None and 12.5 <= (made + 1) * 40e-3 <= 12.5 + 40e-3 + 1e-9
    # its 400 evaluations of 20 ms (8 s) run to the end
    assert _run_watched(clock, Watch(10.0, groups=200, eval_seconds=8e-3), -20e-3,
                        400) is None


def test_a_real_dense_layer_with_a_small_budget_keeps_it():
    """Real time, a generous margin: a dense tanh layer whose weight's full check
    predicted from f alone looked within budget (and took 3.6 times it on this machine)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 2000)), rng.standard_normal((2000, 4)) / 40
    f = lambda x, w: np.tanh(x @ w)

    def f_vjp(g, x, w):
        gz = g * (1 - np.tanh(x @ w) ** 2)
        return gz @ w.T, x.T @ gz

    budget = 1.0
    report = check_vjp(f, f_vjp, (x, w), argnames=("x", "w"), time_budget=budget)
    assert report.passed
    # two arguments, each given the budget: at most 1.5 times that, with room for a
    # machine busy with other work
    assert report.elapsed_s <= 4 * 2 * budget
