"""Recognize a user's function as a convolution or an activation, so its bugs can be named.

When a check of an arbitrary ``f`` fails, the checker asks what ``f`` computes:

- ``f(x, w[, b])`` -- a plain convolution, or an activation of one (``σ(conv(x, w, b))``,
  the seed's :math:`a^l = \\sigma(z^l)`)? It tries the geometries that fit the shapes
  (stride, symmetric padding, dilation, both conventions, with and without the bias) and
  accepts one only if :func:`gradcheck.conv_forward` -- followed by an activation from
  the table when ``activations=True`` -- reproduces ``f``'s output to rounding;
- ``f(x)`` with the shape of ``x`` -- an activation from the table?

Only then are the usual mistakes of what it computes planted (:func:`planted`: the
convolution's from :func:`._mistakes.conv_input_mistakes`, the activation's from
:func:`._mistakes.activation_mistakes`, carried through the convolution's backward to
``x``, ``w`` and ``b``); a function that merely has conv-like shapes is left alone. The
same recognition serves a black-box ``f`` and a user's layer inside a network
(:mod:`._suspects`).
"""

from __future__ import annotations

import itertools

import numpy as np

from gradcheck._errors import GradcheckError
from gradcheck._record import NamedTuple
from gradcheck.checker._mistakes import activation_mistakes, conv_input_mistakes
from gradcheck.checker._tolerance import real_eps
from gradcheck.ops.conv import conv_backward, conv_forward

__all__ = ["ConvIdentity", "Recognized", "identify_conv", "identify_activation", "recognize",
           "planted"]

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
    activation: object = None   # the ActivationSpec applied after the convolution, or None


def _paddings(n, o, k, s, d):
    reach = d * (k - 1) + 1
    return [p for p in range(0, reach + s) if (n + 2 * p - reach) >= 0
            and (n + 2 * p - reach) // s + 1 == o]


def _candidate_activations(z, y):
    """Table activations (defaults), then leaky_relu / elu with alpha fitted to the negatives."""
    from gradcheck.ops.activations import ACTIVATIONS, get_activation

    for name, spec in ACTIVATIONS.items():
        if name not in ("identity", "swish"):
            yield spec
    neg = z < -1e-3 * max(1.0, float(np.max(np.abs(z))))
    if neg.any():
        with np.errstate(all="ignore"):
            slope = float(np.median(y[neg] / z[neg]))
            scale = float(np.median(y[neg] / np.expm1(z[neg])))
        if np.isfinite(slope) and slope >= 0 and abs(slope - 1) > 1e-6:   # 1: the identity
            yield get_activation("leaky_relu", alpha=slope)
        if np.isfinite(scale) and scale > 0:
            yield get_activation("elu", alpha=scale)


def _matching_activation(z, y, tol):
    """The activation ``σ`` of the table with ``σ(z) == y`` to ``tol``, or None."""
    if z.shape != y.shape or z.dtype.kind != "f":
        return None
    for spec in _candidate_activations(z, y):
        with np.errstate(all="ignore"):
            v = spec.value(z)
        if np.all(np.isfinite(v)) and float(np.max(np.abs(v - y), initial=0.0)) <= tol:
            return spec
    return None


def identify_activation(args, y):
    """The table activation ``σ`` with ``f(x) = σ(x)`` elementwise, or None."""
    if len(args) != 1 or args[0].shape != y.shape or args[0].dtype.kind != "f" or not y.size:
        return None
    tol = 64 * real_eps(y.dtype) * max(1.0, float(np.max(np.abs(y))))
    return _matching_activation(args[0], y, tol)


def identify_conv(args, y, *, activations=False) -> ConvIdentity | None:
    """The convolution geometry that reproduces ``y`` from ``args``, or None.

    With ``activations=True`` a geometry also counts when a table activation of the
    convolution reproduces ``y``; the identity then names it in ``activation``.
    """
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
    tol = 64 * real_eps(y.dtype) * max(1.0, float(np.max(np.abs(y)))) * np.sqrt(w[0].size)
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
                        if yc.shape != y.shape:
                            continue
                        found = np.max(np.abs(yc - y)) <= tol
                        spec = None
                        if not found and activations:
                            spec = _matching_activation(yc, y, 2 * tol)
                            found = spec is not None
                        if found:
                            return ConvIdentity(0, 1, 2 if with_bias else None, (s,) * nd,
                                                tuple(pads), (d,) * nd, groups, convention,
                                                spec)
    return None


class Recognized(NamedTuple):
    """What ``f`` (or a user's layer) was recognized to compute: an activation of its
    single argument, or a convolution (``conv``, possibly followed by an activation)."""

    activation: object = None         # the ActivationSpec of an elementwise f(x) = σ(x)
    conv: ConvIdentity | None = None

    def phrase(self, *, of_layer: bool = False) -> str:
        """What it computes, for a message: ``sigmoid(x) elementwise`` of a function,
        ``sigmoid elementwise`` of a layer, or the convolution's geometry."""
        if self.conv is None:
            return f"{self.activation.name}{'' if of_layer else '(x)'} elementwise"
        ident = self.conv
        kind = "a correlation" if ident.convention == "correlation" else "a true convolution"
        what = (f"{kind} with stride {ident.stride}, padding {ident.padding}, dilation "
                f"{ident.dilation}, groups {ident.groups}")
        return what if ident.activation is None else f"{ident.activation.name} of {what}"


def recognize(args, y, *, activations=True) -> Recognized | None:
    """An activation of the single argument, else a convolution (followed by a table
    activation when ``activations``) that reproduces ``y`` from ``args``; else None."""
    spec = identify_activation(args, y)
    if spec is not None:
        return Recognized(activation=spec)
    ident = identify_conv(args, y, activations=activations)
    return None if ident is None else Recognized(conv=ident)


def planted(recognized: Recognized, args, cotangent) -> list:
    """``[(cause, message, {argument index: predicted gradient}), ...]``: the gradients the
    usual mistakes in the backward of what was recognized would return for ``cotangent``."""
    if recognized.conv is None:
        x = args[0]
        r = np.asarray(cotangent, dtype=x.dtype)
        return [(m.cause, m.message, {0: m.backward(r, x)[0]})
                for m in activation_mistakes(recognized.activation)]
    return _conv_mistakes(recognized.conv, args, cotangent)


def _conv_mistakes(ident: ConvIdentity, args, cotangent) -> list:
    x, w = args[ident.x_index], args[ident.w_index]
    b = None if ident.b_index is None else args[ident.b_index]
    opts = dict(stride=ident.stride, padding=ident.padding, dilation=ident.dilation,
                groups=ident.groups)
    dtype = np.result_type(x, w)
    delta = r = np.asarray(cotangent, dtype=dtype)
    spec = ident.activation
    out = []
    if spec is not None:
        z = conv_forward(x, w, b, convention=ident.convention, **opts)
        delta = r * spec.derivative(z)
        for m in activation_mistakes(spec):
            wrong = np.asarray(m.backward(r, z)[0], dtype=dtype)
            gx, gw, gb = conv_backward(wrong, x, w, convention=ident.convention,
                                       bias=b is not None, **opts)
            predicted = {ident.x_index: gx, ident.w_index: gw}
            if b is not None:
                predicted[ident.b_index] = gb
            out.append((m.cause, m.message, predicted))
    for cause, message, wrong_gx in conv_input_mistakes(
            np.asarray(delta, dtype=dtype), x, w, convention=ident.convention, **opts):
        out.append((cause, message, {ident.x_index: wrong_gx}))
    return out
