"""PROVISIONAL adapter between the checker and the numerical differentiator (to be replaced)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class FullNumeric(NamedTuple):
    grad: np.ndarray
    error: np.ndarray
    nondifferentiable: np.ndarray
    left: np.ndarray
    right: np.ndarray
    nfev: int


class DirectionalNumeric(NamedTuple):
    derivative: np.ndarray
    error: np.ndarray
    nfev: int


def full_numeric(g, arg, cotangent, y, *, pattern=None, vectorized=False, method="auto"):
    dtype = np.result_type(arg.dtype, y.dtype)
    eps = float(np.finfo(np.float32 if dtype == np.float32 else np.float64).eps)
    flat = arg.reshape(-1)
    hs = [eps ** (1 / 5) * np.maximum(1.0, np.abs(flat))]
    grad = np.empty(flat.size)
    err = np.empty(flat.size)
    nfev = 0
    for j in range(flat.size):
        h = hs[0][j]
        d = []
        for hh in (h, h / 2):
            vals = []
            for s in (1, -1):
                a = flat.copy()
                a[j] += s * hh
                vals.append(float(np.sum(cotangent * np.asarray(g(a.reshape(arg.shape)), np.float64))))
                nfev += 1
            d.append((vals[0] - vals[1]) / (2 * hh))
        grad[j] = (4 * d[1] - d[0]) / 3
        err[j] = abs(d[1] - d[0]) / 3 + eps * np.sum(np.abs(cotangent * y)) / h
    nd = np.zeros(arg.shape, bool)
    nan = np.full(arg.shape, np.nan)
    return FullNumeric(grad.reshape(arg.shape), err.reshape(arg.shape), nd, nan, nan, nfev)


def directional_numeric(g, arg, cotangent, y, directions, *, method="auto", vectorized=False):
    dtype = np.result_type(arg.dtype, y.dtype)
    eps = float(np.finfo(np.float32 if dtype == np.float32 else np.float64).eps)
    out, err, nfev = [], [], 0
    scale = max(1.0, float(np.max(np.abs(arg))))
    for v in directions:
        h = eps ** (1 / 5) * scale
        d = []
        for hh in (h, h / 2):
            vals = [float(np.sum(cotangent * np.asarray(g((arg.reshape(-1) + s * hh * v).reshape(arg.shape).astype(arg.dtype)), np.float64))) for s in (1, -1)]
            nfev += 2
            d.append((vals[0] - vals[1]) / (2 * hh))
        out.append((4 * d[1] - d[0]) / 3)
        err.append(abs(d[1] - d[0]) / 3 + eps * np.sum(np.abs(cotangent * y)) / h)
    return DirectionalNumeric(np.array(out), np.array(err), nfev)
