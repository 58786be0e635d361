"""Recognize a user's function as a convolution, so its bugs can be named.

When a check of an arbitrary ``f(x, w[, b])`` fails, the checker asks: is ``f`` a plain
convolution? It tries the geometries that fit the shapes (stride, symmetric padding,
dilation, both conventions, with and without the bias) and accepts one only if
:func:`gradcheck.conv_forward` reproduces ``f``'s output to rounding. Only then are the
convolution's usual mistakes (:func:`._suspects.conv_input_mistakes`) offered as
suspects; a function that merely has conv-like shapes is left alone.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from gradcheck._errors import GradcheckError
from gradcheck.checker._diagnose import Suspect
from gradcheck.checker._suspects import conv_input_mistakes
from gradcheck.ops.conv import conv_forward

__all__ = ["ConvIdentity", "identify_conv", "conv_suspects"]

_MAX_TRIES = 64


class ConvIdentity(NamedTuple):
    x_index: int
    w_index: int
    b_index: int | None
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    convention: str


def _paddings(n, o, k, s, d):
    reach = d * (k - 1) + 1
    return [p for p in range(0, reach + s) if (n + 2 * p - reach) >= 0
            and (n + 2 * p - reach) // s + 1 == o]


def identify_conv(args, y) -> ConvIdentity | None:
    """The convolution geometry that reproduces ``y`` from ``args``, or None."""
    if len(args) not in (2, 3):
        return None
    x, w = args[0], args[1]
    b = args[2] if len(args) == 3 else None
    if not (3 <= x.ndim <= 5 and w.ndim == x.ndim and y.ndim == x.ndim):
        return None
    if b is not None and b.shape != (w.shape[0],):
        return None
    if y.shape[0] != x.shape[0] or y.shape[1] != w.shape[0] or x.shape[1] % w.shape[1]:
        return None
    groups = x.shape[1] // w.shape[1]
    if w.shape[0] % groups:
        return None
    nd = x.ndim - 2
    eps = float(np.finfo(np.float32 if y.dtype == np.float32 else np.float64).eps)
    tol = 64 * eps * max(1.0, float(np.max(np.abs(y)))) * np.sqrt(w[0].size)
    tries = 0
    for d in (1, 2, 3):
        for s in (1, 2, 3, 4):
            per_dim = [_paddings(n, o, k, s, d)
                       for n, o, k in zip(x.shape[2:], y.shape[2:], w.shape[2:])]
            if not all(per_dim):
                continue
            for pads in itertools.product(*per_dim):
                for convention in ("correlation", "convolution"):
                    for with_bias in ((True, False) if b is not None else (False,)):
                        tries += 1
                        if tries > _MAX_TRIES:
                            return None
                        try:
                            yc = conv_forward(x, w, b if with_bias else None, stride=s,
                                              padding=pads, dilation=d, groups=groups,
                                              convention=convention)
                        except GradcheckError:
                            continue
                        if yc.shape == y.shape and np.max(np.abs(yc - y)) <= tol:
                            return ConvIdentity(0, 1, 2 if with_bias else None, (s,) * nd,
                                                tuple(pads), (d,) * nd, groups, convention)
    return None


def conv_suspects(f_args, y, argnames):
    """A ``suspects(argname, cotangent)`` callable for a function that may be a convolution."""
    state = {}

    def suspects(argname, cotangent):
        if "id" not in state:
            state["id"] = identify_conv(f_args, y)
        ident = state["id"]
        if ident is None or argname != argnames[ident.x_index]:
            return []
        x, w = f_args[ident.x_index], f_args[ident.w_index]
        what = (f"{'a correlation' if ident.convention == 'correlation' else 'a true convolution'}"
                f" with stride {ident.stride}, padding {ident.padding}, dilation "
                f"{ident.dilation}, groups {ident.groups}")
        return [Suspect(cause, f"f computes {what}. {message}", wrong)
                for cause, message, wrong in conv_input_mistakes(
                    np.asarray(cotangent, dtype=np.result_type(x, w)), x, w,
                    stride=ident.stride, padding=ident.padding, dilation=ident.dilation,
                    groups=ident.groups, convention=ident.convention)]

    return suspects
