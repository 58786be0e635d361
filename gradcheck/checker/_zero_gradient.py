"""A passing argument whose gradient is zero up to rounding: said, so its numbers are read
as noise.

A bias before a batch norm has a true gradient of 0 (the normalization removes the mean
the bias adds). Its analytic gradient is then a sum that cancels to rounding (``3e-16``),
its numerical one a difference that cancels to rounding (or exactly 0), and the check
passes -- rightly: every element lies within the tolerance of 0 on both sides. But the
table's relative error (about 1) and cosine (anything from -1 to 1, or 0 against an
exact 0) compare two roundings and mean nothing, and a reader trusts or distrusts them
for the wrong reason. :func:`zero_notes` says so in the check's notes: the gradient is
zero up to rounding, ``f`` does not change with the argument at this point, and why that
happens (a bias before a normalization, a parameter the forward does not use).

An argument is noted when it passed in full mode (every element compared) and every
element of both gradients lies within the element's allowance of 0 (the numerical one
within the allowance plus its own error bar). A gradient the check can tell from 0 at
any element is not noted, however small its values (the allowance follows the scale of
the terms ``f`` is formed from, not the value). A gradient not returned (None) has its
own note (:func:`._notes.missing_notes`). Nor is any argument of a check given a floor
(``atol``, ``rtol``): the floor widens every allowance, and a gradient within it need not
be rounding (``rtol=1`` lets twice the gradient through).
"""

from __future__ import annotations

import numpy as np

__all__ = ["zero_gradient", "zero_notes"]


def zero_gradient(report) -> bool:
    """``report`` (an argument's) passed in full mode with both gradients within each
    element's allowance of 0."""
    a, n, allowed = report.analytic, report.numeric, report.allowed
    err = report.error_estimate
    if not report.passed or report.mode != "full" or a is None or n is None or allowed is None:
        return False
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    if a.size == 0 or not (np.isfinite(a).all() and np.isfinite(n).all()):
        return False
    allowed = np.broadcast_to(np.asarray(allowed, np.float64), a.shape)
    err = np.zeros(a.shape) if err is None else \
        np.broadcast_to(np.nan_to_num(np.asarray(err, np.float64), nan=np.inf), a.shape)
    return bool(np.all(np.abs(a) <= allowed) and np.all(np.abs(n) <= allowed + err))


def _largest(v) -> str:
    return f"{float(np.max(np.abs(v))):.2g}"


def zero_notes(reports, missing=()) -> list:
    """One note per passing argument whose gradient is zero up to rounding (see the
    module notes); the arguments named in ``missing`` (no gradient returned) are left to
    their own note.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_vjp
    >>> def f(x, b):                      # a bias before a centering: it cancels
    ...     z = x + b
    ...     return z - z.mean(0)
    >>> def f_vjp(g, x, b):
    ...     dz = g - g.mean(0)
    ...     return dz, dz.sum(0)          # right: a sum that cancels to rounding
    >>> x, b = np.random.default_rng(0).standard_normal((5, 3)), np.ones(3)
    >>> report = check_vjp(f, f_vjp, (x, b), argnames=("x", "b"))
    >>> report.passed
    True
    >>> [n for n in report.notes if n.startswith("b: ")]  # doctest: +ELLIPSIS
    ['b: its gradient is zero up to rounding: ... f does not change with b at this point ...']
    """
    notes = []
    for r in reports:
        if r.name in missing or not zero_gradient(r):
            continue
        a, n = np.asarray(r.analytic), np.asarray(r.numeric)
        exact = not np.any(a) and not np.any(n)
        values = ("both gradients are exactly 0" if exact else
                  f"every element of both gradients lies within its tolerance of 0 "
                  f"(largest |analytic| {_largest(a)}, |numerical| {_largest(n)}, "
                  f"tolerance up to {_largest(r.allowed)}), so the relative error and "
                  f"the cosine compare rounding noise and say nothing")
        notes.append(
            f"{r.name}: its gradient is zero up to rounding: {values}; f does not change "
            f"with {r.name} at this point (a bias before a normalization, which removes "
            f"it? a parameter the forward does not use, or only where an activation is "
            f"flat?)")
    return notes
