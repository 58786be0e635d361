r"""A look at smaller steps for the elements resolved only coarsely.

An element whose allowance and error bar together exceed ``COARSE`` of its value
(:func:`._summarize.resolved_share`) lets an error of that size pass, and the report
says so (:func:`._notes.coarse_notes`). In float32 most such elements are reached by
many kinks: a convolution weight moves every output of its channel, so along it ``f``
meets every ReLU and every max-pool switch of the channel -- a thousand of them for a
batch of four 16 x 16 images, the nearest a few 1e-4 away. The differentiator's first
step (:math:`2^{-5}` there) straddles dozens, its retries cut by the smooth model's rule
and then by the largest cut, and the sequence ends either on a step still straddling
kinks, whose truncation sets the bar, or on one a thousand times below them, whose
rounding does (bars of 0.4 to 1.4 on values of 0.1 to 2).

Between the two lie steps that see one piece of ``f``, where its rounding is far smaller
than at the last step. :func:`coarse_look` differences the coarse elements again from
each of ``LADDER`` fixed starting steps below the element's base step (adaptive real
differences, their retries and kink detection included: a single pass cannot tell a
kink just beside the point, and one rung so read a max-pool weight 0.477 +- 0.003 for
0.372) and takes, per element, the rung with the smallest bar that a neighbouring rung
confirms: both not at a kink, their values within their two bars together, the bar
taken as the larger of the rung's own and its distance to the confirming rung's value.
Nothing but the numerical side chooses (never the analytic value). The new value
replaces the old only where its bar is smaller and the two agree within both bars;
otherwise the first numbers stand -- but for an element that still fails after the
second look (:func:`._numeric.second_look`) whose confirmed rung contradicts its first
numbers beyond both bars: one of the two is not honest, and its bar grows to cover
both (a right max-pool stack failed on a weight whose first pass, straddling pool
switches, read their bends as noise: -1.497 +- 0.027 for -1.814).

Measured on float32 stacks ``Conv2d(3, 8, 3, padding=1)``, then batch norm + SiLU,
batch norm + ReLU + max pool, ReLU + max pool, tanh + average pool, ReLU or tanh, then
a dense layer, of a (2, 3, 8, 8) input, seeds 0-3, against torch's float64 autograd:
elements resolved only to more than 5% of their value, conv weights 258 / 271 / 257 of
864 -> 65 / 62 / 30 (the three stacks with ReLU), inputs 284 / 193 / 231 of 1536 ->
124 / 44 / 17, median bar over the gradient of those weights 0.26 / 0.20 / 0.39% ->
0.15 / 0.12 / 0.17%; the smooth stacks had at most 2 before and after; no right stack
failed, no numerical value lay beyond ten of its bars that did not before (one, before
and after), a 5% slip planted in a conv weight was caught in 19 of 24 stacks (18
before), and the evaluations of the three ReLU stacks grew by 60-80%. A (4, 3, 16, 16)
input under ReLU + max pool, dense layer of 512, seeds 0-3: coarse conv weights 170 /
136 / 118 / 115 -> 62 / 76 / 50 / 39 of 216, median bar 2.9% -> 0.78% of the
gradient, the right stack of seed 1 no longer fails, the 5% slip caught in 4 of 4 (2
before, the other 2 said unseen), evaluations 2.4 times main's. In float64 no element
of those stacks is coarse and the look does not run.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from gradcheck._precision import LOW_PRECISION
from gradcheck.checker._notes import COARSE
from gradcheck.checker._numeric import Target, merge_elements, _guard, _subset_options
from gradcheck.checker._summarize import resolved_share
from gradcheck.numdiff import numerical_vjp
from gradcheck.numdiff._stencils import DEFAULT_REAL, stencil
from gradcheck.numdiff._steps import base_steps, typical_size

__all__ = ["coarse_look", "LADDER"]

#: The rungs: starting steps of the base step times these (adaptive real differences
#: from each, five evaluations per element and rung where the first pass resolves it).
LADDER = (1 / 4, 1 / 16, 1 / 64, 1 / 256)


def coarse_look(target: Target, num, judged, verdict):
    """``(num, judged, note)`` with the coarse elements differenced again on the ladder
    (module notes); unchanged where there is none, where the first numbers are the
    complex step's, in float16 and bfloat16 (their own confirming passes), or where the
    user chose the method."""
    arg = np.asarray(target.arg)
    if (target.method != "auto" or num.method.startswith("complex")
            or arg.dtype.name in LOW_PRECISION or arg.dtype.kind != "f"):
        return num, judged, ""
    share = np.asarray(resolved_share(judged), np.float64).reshape(-1)
    grad = np.asarray(num.grad, np.float64).reshape(-1)
    err = np.asarray(num.error, np.float64).reshape(-1)
    nondiff = np.asarray(num.nondifferentiable, bool).reshape(-1)
    failed = np.asarray(judged.failed, bool).reshape(-1)
    # (not only the elements whose first numbers came from a retry: a first pass that
    # straddles pool switches can read their bends as noise and stop at the base step;
    # leaving those out left 60 / 73 of 216 max-pool weights coarse where 41 / 51 are)
    with np.errstate(invalid="ignore"):
        pick = ((share > COARSE) | failed) & ~nondiff & np.isfinite(grad) & np.isfinite(err)
    index = np.flatnonzero(pick)
    if index.size == 0:
        return num, judged, ""
    rungs, nfev = _rungs(target, index)
    value, bar = _chosen(rungs)
    with np.errstate(invalid="ignore"):
        gap = np.abs(value - grad[index])
        agree = gap <= bar + err[index]
        take = agree & (bar < err[index])
        # a failing element whose confirmed rungs contradict its first numbers: one of
        # the two is not honest, and the bar covers both (kinks read as noise by the
        # first pass: a max-pool stack's weight read -1.497 +- 0.027 for -1.814)
        against = failed[index] & ~agree & np.isfinite(bar)
    bar = np.where(against, gap + err[index], bar)
    take = take | against
    if not take.any():
        return _spent(num, nfev), judged, ""
    step = np.asarray(num.step, np.float64).reshape(-1)[index]
    # the fields of a numerical derivative that merge_elements reads
    second = SimpleNamespace(grad=value, error=bar, step=step,
                             nondifferentiable=np.zeros(index.size, bool),
                             left=np.full(index.size, np.nan), right=np.full(index.size, np.nan),
                             nfev=nfev, method=num.method)
    num = merge_elements(num, index, second, take)
    judged = verdict(num)
    note = (f"{index.size} coarsely resolved or mismatching element(s) differenced again "
            f"at {len(LADDER)} smaller steps: {int((take & ~against).sum())} resolved finer"
            + (f", {int(against.sum())} contradicted their first numbers (their bar now "
               f"covers both)" if against.any() else ""))
    return num, judged, note


def _spent(num, nfev):
    import dataclasses

    return dataclasses.replace(num, nfev=int(num.nfev) + int(nfev))


def _base(arg):
    """The differentiator's base step of every element of ``arg`` (flat)."""
    eps = float(np.finfo(arg.dtype).eps)
    return base_steps(arg, 1.0, eps, stencil(DEFAULT_REAL).order, typical=typical_size(arg))


def _rungs(target: Target, index):
    """Adaptive differences from each rung of ``LADDER`` for the flat elements ``index``: a list of
    numerical derivatives over them, and the evaluations they took."""
    arg = np.asarray(target.arg)
    base = arg.reshape(-1)
    h0 = _base(arg)[index]
    options = _subset_options(target.pattern, index)

    def sub(v):
        x = base.copy()
        x[index] = v
        return target.g(x.reshape(arg.shape))

    out, nfev = [], 0
    for share in LADDER:
        r = _guard(lambda: numerical_vjp(sub, base[index], target.cotangent,
                                         method="adaptive", seed=target.seed,
                                         step=h0 * share, **options),
                   "its coarsely resolved elements were differenced again at smaller steps")
        out.append(r)
        nfev += int(r.nfev)
    return out, nfev


def _chosen(rungs):
    """Per element, the value and bar of the rung with the smallest bar that a
    neighbouring rung confirms (module notes); NaN and inf where none is confirmed."""
    V = np.stack([np.asarray(r.grad, np.float64).reshape(-1) for r in rungs])
    E = np.stack([np.asarray(r.error, np.float64).reshape(-1) for r in rungs])
    kink = np.stack([np.asarray(r.nondifferentiable, bool).reshape(-1) for r in rungs])
    usable = np.isfinite(V) & np.isfinite(E) & ~kink
    bar = np.full(V.shape, np.inf)
    with np.errstate(invalid="ignore"):
        for j in (-1, 1):
            lo, hi = max(0, -j), V.shape[0] - max(0, j)       # rungs k with k + j a rung
            k = np.arange(lo, hi)
            d = np.abs(V[k] - V[k + j])
            ok = usable[k] & usable[k + j] & (d <= E[k] + E[k + j])
            bar[k] = np.where(ok, np.fmin(bar[k], np.fmax(E[k], d)), bar[k])
    best = np.argmin(bar, axis=0)
    cols = np.arange(V.shape[1])
    return np.where(np.isfinite(bar[best, cols]), V[best, cols], np.nan), bar[best, cols]
