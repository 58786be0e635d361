"""What an evaluation costs while differencing, predicted before and watched during.

Under ``mode="auto"`` the plan predicts a full check's time (:mod:`._plan`). One
evaluation while differencing costs more than one call of ``f``: each point is a fresh
copy of the argument with its group of elements moved, and each output is turned into
float64 and weighed by the cotangent -- work that grows with the size of the argument and
of the output, not with what ``f`` computes. For a cheap ``f`` of a large argument it is
most of the time (measured here: a dense layer ``tanh(x @ w)`` with ``w`` of 32 000
elements, ``f`` 0.03 ms, 0.115 ms per evaluation, so a full check took 3.6 times its
prediction from ``f`` alone). :func:`point_seconds` measures that work once per argument
(the same copies and the same reduction, on a few points), and the prediction counts it.

What no prediction sees -- retries of the adaptive stencil, a complex evaluation dearer
than a real one, a layer slower on perturbed points, a machine that got busy -- is
watched: a full plan chosen by ``mode="auto"`` runs under :func:`watched`, which stops
it with :class:`OverTime` once its evaluations so far say it will take more than
``OVERRUN`` times ``time_budget`` (or once it has); the argument is then planned again as
over budget (:func:`._plan.over_time`), and the report says why.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from gradcheck._errors import GradcheckError
from gradcheck._record import NamedTuple
from gradcheck.numdiff._evaluate import DEFAULT_MEMORY

__all__ = ["point_seconds", "Watch", "watched", "OverTime", "StructureBroken", "timed",
           "OVERRUN", "FLOOR_S",
           "REAL_EVALS_PER_GROUP", "COMPLEX_EVALS_PER_GROUP"]

#: How far past ``time_budget`` a full check chosen by ``mode="auto"`` may run (as
#: predicted from its evaluations so far, or as measured) before it is stopped.
OVERRUN = 1.25
#: Most points formed by :func:`point_seconds` (fewer where a chunk of the
#: differentiator's size, ``memory`` bytes, holds fewer).
_MAX_POINTS = 256
#: Seconds a watched full check may always take: switching modes to save less is not
#: worth the sample it costs (and a budget of milliseconds stops nothing that is fast).
FLOOR_S = 1.0
#: How much of its time limit (this share, and at least ``_EVIDENCE_S`` seconds) a full
#: check must have run before its rate is trusted to stop it early; the rate is that of
#: the second half of this time. The first evaluations also pay for the differentiator's
#: setup, and each chunk of points for fresh memory: measured here up to 0.4 s for a
#: chunk of 534 complex points of 8 000 elements, 0.7 ms a point against 0.03 ms for
#: ``f``.
_EVIDENCE = 0.1
_EVIDENCE_S = 1.0
#: An early stop needs a projection this many times over the limit (the rate over a
#: short stretch can be a chunk's setup); past the limit itself, the check stops anyway.
_MARGIN = 1.5


def point_seconds(arg, y, cotangent, memory=DEFAULT_MEMORY) -> float:
    """Seconds per evaluation spent besides ``f`` while differencing: forming the point
    (a fresh copy of ``arg`` with elements moved) and reducing its output (to float64,
    less ``f(x)``, weighed by ``cotangent``), on one chunk of the differentiator's size
    (as many points as ``memory`` bytes hold, 2 to ``_MAX_POINTS``): a chunk is freshly
    allocated memory, slower to fill than a cache a few points would fit in. The smaller
    of two trials (a first one measured up to 20 times slower here, once).

    Examples
    --------
    >>> import numpy as np
    >>> s = point_seconds(np.ones((64, 1600)), np.ones((64, 64)), np.ones((64, 64)))
    >>> 0.0 < s < 1.0
    True
    """
    arg, y = np.asarray(arg), np.asarray(y)
    r = np.asarray(cotangent, dtype=np.float64).reshape(-1)
    f0 = y.reshape(-1).astype(np.float64)
    points = int(np.clip(memory // max(arg.nbytes + 4 * y.nbytes, 1), 2, _MAX_POINTS))
    best = np.inf
    for _ in range(2):
        t = time.perf_counter()
        X = np.empty((points,) + arg.shape, dtype=arg.dtype)
        X[...] = arg
        X.reshape(points, -1)[:, 0] += 1
        Y = np.empty((points,) + y.shape, dtype=y.dtype)
        Y[...] = y
        (Y.reshape(points, -1).astype(np.float64) - f0) @ r
        best = min(best, (time.perf_counter() - t) / points)
        del X, Y
    return float(best)


class Watch(NamedTuple):
    """What a full plan chosen by ``mode="auto"`` was predicted to take."""

    budget: float          # time_budget, seconds
    groups: int            # groups of elements differenced together
    eval_seconds: float    # seconds per evaluation predicted (f plus point_seconds)

    @property
    def evals(self) -> int:
        """Evaluations predicted (real differences: ``REAL_EVALS_PER_GROUP`` a group)."""
        return REAL_EVALS_PER_GROUP * self.groups


#: Evaluations per group: real adaptive differences (the adaptive stencil's five, plus
#: retries), and the complex step where kinks are not ruled out.
REAL_EVALS_PER_GROUP = 6
COMPLEX_EVALS_PER_GROUP = 2


class StructureBroken(GradcheckError):
    """A point evaluated while differencing moved an output no moved element owns
    (raised by :mod:`._probe`; here so that :mod:`._check` catches it without importing
    probing)."""


def timed(call, repeats=3) -> float:
    """The median time of ``repeats`` calls of ``call()`` in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class OverTime(GradcheckError):
    """A full check stopped by :func:`watched`: ``elapsed`` seconds, ``evals`` points
    evaluated, about ``done`` of the whole (0 to 1), ``projected`` seconds the whole was
    on course to take."""

    def __init__(self, elapsed, evals, done, projected, watch):
        self.elapsed, self.evals, self.projected, self.watch = elapsed, evals, projected, watch
        predicted = watch.evals * watch.eval_seconds
        course = (f"on course for about {projected:.2g} s" if projected > elapsed
                  else f"{elapsed:.2g} s spent")
        super().__init__(
            f"the full check was stopped after {elapsed:.2g} s and {evals} evaluations, "
            f"about {100 * done:.0f}% of it ({1e3 * elapsed / max(evals, 1):.2g} ms each; "
            f"{predicted:.2g} s predicted): {course} > {_limit_words(watch.budget)}")


def _limit_words(budget) -> str:
    if OVERRUN * budget >= FLOOR_S:
        return f"{OVERRUN:g} x time_budget {budget:g} s"
    return f"{FLOOR_S:g} s (the least a full check is given; time_budget {budget:g} s)"


def watched(g: Callable, a, watch: Watch) -> Callable:
    """``g``, stopped with :class:`OverTime` once the calls since the first one say the
    check will take more than ``OVERRUN * watch.budget`` seconds (and ``FLOOR_S``):
    either that much has passed, or ``_EVIDENCE`` of it (at least ``_EVIDENCE_S``) has
    and the time spent plus the part still to come, at the rate since half that, exceeds
    it ``_MARGIN`` times. The part done is
    counted in evaluations, real and complex apart (the complex step takes fewer, each
    dearer): the larger of ``real / (REAL_EVALS_PER_GROUP * groups)`` and ``complex /
    (COMPLEX_EVALS_PER_GROUP * groups)``. A batch of points (vectorized ``g``) counts
    each point; once stopped, every later call stops too."""
    a = np.asarray(a)
    limit = max(OVERRUN * watch.budget, FLOOR_S)
    evidence = max(_EVIDENCE * limit, _EVIDENCE_S)
    groups = max(int(watch.groups), 1)
    state = {"start": None, "real": 0, "complex": 0, "mark": None, "stopped": None}

    def after(x):
        x = np.asarray(x)
        kind = "complex" if np.iscomplexobj(x) else "real"
        state[kind] += x.shape[0] if x.ndim == a.ndim + 1 else 1
        elapsed = time.perf_counter() - state["start"]
        done = min(1.0, max(state["real"] / (REAL_EVALS_PER_GROUP * groups),
                            state["complex"] / (COMPLEX_EVALS_PER_GROUP * groups)))
        if state["mark"] is None and elapsed >= evidence / 2:
            state["mark"] = (elapsed, done)
        projected = elapsed
        if elapsed >= evidence and done > state["mark"][1]:
            rate = (elapsed - state["mark"][0]) / (done - state["mark"][1])
            projected = elapsed + (1.0 - done) * rate
        if elapsed > limit or projected > _MARGIN * limit:
            state["stopped"] = OverTime(elapsed, state["real"] + state["complex"], done,
                                        projected, watch)
            raise state["stopped"]

    def g_watched(x):
        if state["stopped"] is not None:
            raise state["stopped"]
        if state["start"] is None:
            state["start"] = time.perf_counter()
        y = g(x)
        after(x)
        return y

    return g_watched
