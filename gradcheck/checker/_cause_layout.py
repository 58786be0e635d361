"""Generic causes of layout: the right numbers in the wrong places.

- a kernel flipped: ``A = flip(N)`` over a tensor's spatial axes (or along one of them)
  -- the kernel not rotated, a convolution used where a correlation belongs;
- spatial axes transposed: ``A = N`` with its last two spatial axes swapped;
- axes permuted: ``A = transpose(N, p)`` when that keeps the shape (two axes of equal size
  swapped), or ``A = reshape(transpose(N, p))`` -- a reshape where a transpose belongs
  (a gradient computed in NHWC and reshaped to NCHW), or the other way round;
- an axis (or several) reversed: ``A = flip(N, axes)``;
- a shift along one axis: ``A[i] = N[i - s]`` along that axis only (a crop off by one in
  H only), the edge that the shift moves in left uncompared -- so a clear mismatch must
  lie outside that edge (else the shift explains nothing);
- values permuted within slices: every slice along one axis holds ``N``'s values in
  another order (a scatter with the wrong indices).

Each prediction moves ``N``'s uncertainty along with it.
"""

from __future__ import annotations

from itertools import combinations, permutations

import numpy as np

from gradcheck.checker._fit import SLACK, fit_claim

__all__ = ["fit_kernel_flip", "fit_spatial_transpose", "fit_axes_permuted", "fit_reversed",
           "fit_shifted", "fit_permuted_within"]

#: Largest shift tried along one axis.
MAX_SHIFT = 2


def _flips(shape, role):
    """``(message, move)`` for ``A = flip(N)``: over every spatial axis, then along one."""
    sp = role.spatial_axes
    if not sp or not any(shape[a] > 1 for a in sp):
        return
    if role.kind == "weight":
        # the weight gradient is a valid correlation of the input with the error: no
        # rotation belongs in it, so "the kernel was not rotated" would mislead
        why = ("the weight gradient was formed as a convolution of the input with the "
               "error where their correlation belongs (it takes no rotation), or the "
               "forward convolves where the backward assumes a correlation")
        name = "kernel gradient"
    else:
        why = ("the kernel was not rotated — a convolution was used where a correlation "
               "belongs, or the other way round")
        name = "gradient"
    yield (f"The analytic {name} is the numerical one rotated 180° (flipped along every "
           f"spatial axis): {why}.", lambda arr: np.flip(arr, axis=sp))
    if len(sp) > 1:
        for axis in sp:
            if shape[axis] > 1:
                yield (f"The analytic gradient is the numerical one flipped along axis {axis} "
                       f"only: the kernel was flipped along one axis instead of rotated 180°.",
                       lambda arr, axis=axis: np.flip(arr, axis=axis))


def _moved(ev, transforms):
    """The first ``A = T(N)`` of ``transforms`` that fits; ``N``'s uncertainty moves along."""
    for message, move in transforms:
        fit = fit_claim(ev, move(ev.n), move(ev.tol), text=message)
        if fit is not None:
            return fit
    return None


def fit_kernel_flip(ev):
    """``A = flip(N)`` over the spatial axes of the tensor's role, or along one of them."""
    if not ev.n_failed:
        return None
    return _moved(ev, _flips(ev.a.shape, ev.role))


def fit_spatial_transpose(ev):
    """``A = N`` with the last two spatial axes of the tensor's role swapped."""
    sp, shape = ev.role.spatial_axes, ev.a.shape
    if not ev.n_failed or len(sp) < 2 or not shape[sp[-1]] == shape[sp[-2]] > 1:
        return None
    if ev.role.kind == "weight":
        # the weight gradient has no rotation in it (a valid correlation of the input with
        # the error): what differs is the order of its kernel axes
        why = ("the weight gradient came out transposed (the valid correlation of the "
               "input with the output error indexed with its last two kernel axes in the "
               "wrong order, or its result stored transposed); unlike the input gradient's "
               "kernel, the weight gradient takes no rotation")
    else:
        why = "the kernel (or the gradient) was transposed instead of rotated"
    return _moved(ev, [(f"The analytic gradient is the numerical one with spatial axes "
                        f"{sp[-2]} and {sp[-1]} swapped: {why}.",
                        lambda arr: np.swapaxes(arr, sp[-2], sp[-1]))])


def _layouts(shape):
    """``(how, move)`` for every permutation of the axes that yields ``shape`` again."""
    nd = len(shape)
    for p in permutations(range(nd)):
        if p == tuple(range(nd)):
            continue
        moved = tuple(shape[i] for i in p)
        if moved == tuple(shape):
            swapped = [i for i in range(nd) if p[i] != i]
            if len(swapped) == 2:
                how = f"with axes {swapped[0]} and {swapped[1]} swapped (transposed)"
            else:
                how = f"with its axes permuted to {p}"
            yield how, (lambda arr, p=p: np.transpose(arr, p))
            continue
        inv = tuple(int(i) for i in np.argsort(p))
        yield (f"laid out with its axes in the order {p} and then reshaped to {tuple(shape)}: "
               f"a reshape where the transpose {inv} belongs (a layout such as NHWC read as "
               f"NCHW)", (lambda arr, p=p: np.transpose(arr, p).reshape(shape)))
        yield (f"reshaped to the shape {moved} and then transposed by {inv}: a transpose "
               f"where a reshape belongs",
               (lambda arr, moved=moved, inv=inv: arr.reshape(moved).transpose(inv)))


def fit_axes_permuted(ev):
    """``A`` is ``N`` with its axes permuted (and possibly reshaped)."""
    if not ev.n_failed or ev.a.ndim < 2 or ev.a.ndim > 5:
        return None
    for how, move in _layouts(ev.a.shape):
        fit = fit_claim(ev, move(ev.n), move(ev.tol))
        if fit is not None:
            if ev.a.ndim == 2 and how.endswith("(transposed)"):
                from gradcheck.checker._cause_matmul import swap_text

                how = how[:-1] + ", A = Nᵀ)" + swap_text(ev)
            return fit._replace(params={"how": how})
    return None


def fit_reversed(ev):
    """``A`` is ``N`` reversed along one or more axes."""
    if not ev.n_failed:
        return None
    axes = [i for i, n in enumerate(ev.a.shape) if n > 1]
    for r in range(1, len(axes) + 1):
        for sub in combinations(axes, r):
            fit = fit_claim(ev, np.flip(ev.n, sub), np.flip(ev.tol, sub))
            if fit is not None:
                what = (f"axis {sub[0]}" if r == 1 else
                        "axes " + ", ".join(map(str, sub)))
                return fit._replace(params={"axes": list(sub), "axes_text": what})
    return None


def _shifted(arr, axis, by):
    """``out[i] = arr[i - by]`` along ``axis`` (zero where ``i - by`` is outside)."""
    out = np.zeros_like(arr)
    n = arr.shape[axis]
    src = [slice(None)] * arr.ndim
    dst = [slice(None)] * arr.ndim
    if by > 0:
        src[axis], dst[axis] = slice(0, n - by), slice(by, n)
    else:
        src[axis], dst[axis] = slice(-by, n), slice(0, n + by)
    out[tuple(dst)] = arr[tuple(src)]
    return out


def _explains(ev, where, spread) -> bool:
    """A clear mismatch lies where the shift is compared: one whose mismatches all lie in
    the edge it moves in (where it claims nothing) "fits" and explains none of them."""
    keep = ev.keep & where & np.isfinite(ev.n) & np.isfinite(spread)
    return bool(np.any(np.abs(ev.a - ev.n)[keep] > 2 * SLACK * (ev.tol + spread)[keep]))


def fit_shifted(ev):
    """``A[i] = N[i - s]`` along one axis, or two (``s`` in ±1, ±2), the others in place."""
    if not ev.n_failed:
        return None
    shape = ev.a.shape
    usable = [a for a, n in enumerate(shape) if n >= 3]
    for r in (1, 2):
        for axes in combinations(usable, r):
            for by in (1, -1, 2, -2):
                if any(2 * abs(by) >= shape[a] for a in axes):
                    continue
                where = np.ones(shape, bool)
                p, t = ev.n, ev.tol
                for a in axes:
                    where = _shifted(where, a, by)
                    p, t = _shifted(p, a, by), _shifted(t, a, by)
                fit = fit_claim(ev, p, t, where=where)
                if fit is not None and _explains(ev, where, t):
                    sign = "-" if by > 0 else "+"
                    formula = ", ".join(f"i{a} {sign} {abs(by)}" for a in axes)
                    names = " and ".join(f"axis {a}" for a in axes)
                    return fit._replace(params={"axes": list(axes), "by": by,
                                                "axes_text": names + (" only" if r == 1 and
                                                                      len(shape) > 1 else ""),
                                                "formula": f"A[…] = N[{formula}]"})
    return None


def _rank_placed(a, n, axis):
    """``N``'s values placed in ``A``'s order along ``axis`` (None: the whole array)."""
    if axis is None:
        out = np.empty(n.size)
        out[np.argsort(a, axis=None, kind="stable")] = np.sort(n, axis=None)
        return out.reshape(a.shape)
    order = np.argsort(a, axis=axis, kind="stable")
    out = np.empty_like(n)
    np.put_along_axis(out, order, np.sort(n, axis=axis), axis=axis)
    return out


def fit_permuted_within(ev):
    """Each slice along one axis (or the whole array) holds ``N``'s values, reordered."""
    if not ev.n_failed or not ev.keep.all():
        return None
    for axis in [*range(ev.a.ndim), None]:
        size = ev.a.size if axis is None else ev.a.shape[axis]
        if size < 3:
            continue
        predicted = _rank_placed(ev.a, ev.n, axis)
        spread = np.broadcast_to(np.max(ev.tol, axis=axis, keepdims=True), ev.a.shape)
        fit = fit_claim(ev, predicted, spread)
        if fit is not None:
            where = "the whole array" if axis is None else f"every slice along axis {axis}"
            return fit._replace(params={"axis": axis, "where": where,
                                        "moved": int(np.sum(np.abs(ev.a - ev.n) > ev.tol))})
    return None
