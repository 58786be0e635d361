r"""The scalarize stage: ``f`` and ``f_vjp`` called once, at the point, for ``C = <R, f>``.

A function ``f(*args) -> y`` with a backward ``f_vjp(R, *args) -> (dC/darg, ...)`` is
checked through the scalar :math:`C = \langle R, f(\text{args}) \rangle` with a seeded
random cotangent :math:`R` (standard normal, the shape of ``y``; or the caller's). A
random ``R`` exercises every output with a weight that no bug can anticipate.

``R`` has a stream of its own (:func:`seeded_cotangent`): it is drawn from
``default_rng([seed, COTANGENT_SALT])``, never from ``default_rng(seed)``, whose first
draw is the most common test input, ``x = default_rng(0).standard_normal(shape)``. For a
shape-preserving layer that draw would make ``R == x``; a batch norm's input gradient
is orthogonal to ``x`` whatever its mean terms, so such an ``R`` hides a batch norm
that forgets them (``tests/test_scalarize.py`` keeps that case).

This stage
calls ``f`` twice (the second call proves it deterministic and times it), draws ``R``,
and calls ``f_vjp(R, *args)`` for the analytic side; what every later stage needs of
that is one record, :class:`Problem`. A gradient ``f_vjp`` returns as ``None`` is a zero
gradient, as in PyTorch: it is checked as zeros, and :attr:`Problem.missing` remembers
that it was not returned, for the report and the diagnosis. User code that raises or returns something unfit
is reported as :class:`~gradcheck.UserCodeError`.
"""

from __future__ import annotations

import time
from dataclasses import field
from typing import Callable

import numpy as np

from gradcheck._errors import (
    ConfigurationError,
    GradcheckError,
    NondeterministicError,
    NonFiniteGradientError,
    UserCodeError,
)
from gradcheck._precision import is_real_float
from gradcheck._record import frozen
from gradcheck.checker._tolerance import reduction_growth

__all__ = ["Problem", "scalarize", "seeded_cotangent", "COTANGENT_SALT"]

#: Mixed with the seed for the cotangent's own random stream: a fixed number far from the
#: small indices the toolkit's other streams use (``[seed, 0]``, ``[seed, 1]`` ...).
COTANGENT_SALT = 0xC07A4E47


@frozen
class Problem:
    """The check after scalarizing: what every per-argument stage reads."""

    f: Callable
    args: tuple              # the point, as arrays
    argnames: tuple
    y: np.ndarray            # f(*args)
    cotangent: np.ndarray    # R in float64 (the numerical side differences <R, f>)
    cotangent_f: np.ndarray  # R in f's dtype (what f_vjp received)
    analytic: tuple          # f_vjp(R, *args): one gradient per argument (zeros for None)
    term_size: float         # max |R_i y_i|, the largest term of C
    f_seconds: float         # the time of one call of f
    f_vjp: Callable | None = None   # the backward under test, for the diagnosis to call again
    _again: dict = field(default_factory=dict, compare=False, repr=False)
    missing: frozenset = frozenset()   # indices of the arguments f_vjp returned None for
    _measured: dict = field(default_factory=dict, compare=False, repr=False)

    def of_argument(self, index: int) -> Callable:
        """``f`` as a function of argument ``index`` alone, the others held at the point."""
        before, after = self.args[:index], self.args[index + 1:]

        def g(a):
            return self.f(*before, a, *after)

        parts = getattr(self.f, "complex_parts", None)
        if parts is not None:    # a built-in network's complex steps, split (numdiff)
            g.complex_parts = lambda a: parts(*before, a, *after)
            g.complex_parts.takes_complex_steps = getattr(parts, "takes_complex_steps", False)
        return g

    def vjp_again(self, cotangent) -> tuple:
        """``f_vjp(cotangent, *args)`` for another cotangent (the diagnosis's linearity
        test), each cotangent called once however many arguments ask."""
        cotangent = np.asarray(cotangent, dtype=self.cotangent_f.dtype)
        key = cotangent.tobytes()
        if key not in self._again:
            grads = self.f_vjp(cotangent.copy(), *self.args)
            grads = (grads,) if len(self.args) == 1 and isinstance(
                grads, np.ndarray) else tuple(grads)
            # a gradient not returned is a zero gradient, here as in the check
            self._again[key] = tuple(np.zeros(a.shape, a.dtype) if g is None else g
                                     for g, a in zip(grads, self.args))
        return self._again[key]

    def formed_from(self, seed) -> np.ndarray:
        """Per output, the magnitude of the terms it is formed from: the larger of its
        value and the measured one (:func:`._formed.row_magnitudes`, eighteen calls of
        ``f`` made once per check, only when an allowance needs it)."""
        from gradcheck.checker._formed import measured_once

        measured = measured_once(self._measured, self.f, self.args, self.y, seed)
        return np.maximum(np.abs(self.y.astype(np.complex128 if self.y.dtype.kind == "c"
                                               else np.float64)), measured)

    def resolution(self, index: int, seed=None) -> np.ndarray:
        """:math:`r_j`: the smallest derivative one term of ``C`` can express for each
        element of argument ``index`` (see :mod:`gradcheck.checker._tolerance`); with
        ``seed``, of the terms the outputs are formed from, measured
        (:meth:`formed_from`: a gradient that cancels to zero rounds at their scale), and
        at least the magnitude of the terms the analytic gradient itself is formed from,
        measured (:func:`._formed.gradient_magnitudes`, 84 calls of ``f_vjp``)."""
        term = self.term_size if seed is None else \
            _largest_term(self.cotangent, self.formed_from(seed))
        r = term / np.maximum(np.abs(self.args[index].astype(np.float64)), 1.0)
        if seed is None or self.f_vjp is None:
            return r
        from gradcheck.checker._formed import gradients_measured_once

        own = gradients_measured_once(self._measured, self.f_vjp, self.cotangent_f,
                                      self.args, self.analytic, seed)[index]
        return np.maximum(r, own)


def _call(fn, label, *call_args):
    try:
        return fn(*call_args)
    except GradcheckError:
        raise
    except Exception as exc:  # user code: report, do not crash
        raise UserCodeError(f"{label} raised {type(exc).__name__}: {exc}") from exc


def _modified(label, args, copies, argnames) -> None:
    """Raise :class:`~gradcheck.UserCodeError` naming the first argument ``label`` wrote
    to: ``copies`` were passed to it, ``args`` are what they were before the call."""
    for i, (a, c) in enumerate(zip(args, copies)):
        if c.shape == a.shape and np.array_equal(a, c):
            continue
        name = argnames[i] if argnames else f"arg{i}"
        what = (f"{int(np.count_nonzero(a != c))} of {a.size} element(s) changed by one "
                f"call" if c.shape == a.shape else f"its shape changed from {a.shape} to "
                f"{c.shape}")
        raise UserCodeError(
            f"{label} modifies its argument {name!r} in place ({what}), so the point would "
            f"move under the check and a caller's array would change: {label} must leave "
            f"its arguments as it found them (write to a copy, e.g. x = x.copy(), or use "
            f"out-of-place operations)")


def _call_on_copies(fn, label, args, argnames=None, *, leading=()):
    """``fn(*leading, *copies of args)``, the copies compared with ``args`` after the
    call: ``fn`` that modifies an argument in place raises
    :class:`~gradcheck.UserCodeError` naming it (:func:`_modified`)."""
    copies = tuple(a.copy() for a in args)
    out = _call(fn, label, *leading, *copies)
    _modified(label, args, copies, argnames)
    return out


#: What each caller of :func:`_as_output` must return, for the message of a tuple.
_ONE_ARRAY = {
    "f": "f must return its output as one array ('return y', not 'return y,' nor "
         "'return y, extra')",
    "f_jvp": "f_jvp must return the output's tangent as one array shaped like f's output",
}


def _as_output(y, label):
    if isinstance(y, tuple) or (isinstance(y, list) and any(
            isinstance(v, (np.ndarray, tuple, list)) for v in y)):
        # NumPy would stack it into one array with an extra axis, and the mismatch would
        # surface later, at the gradients' shapes, as the backward's fault
        raise UserCodeError(
            f"{label} returned a {type(y).__name__} of {len(y)} item(s), not an array: "
            + _ONE_ARRAY.get(label, f"{label} must be one array shaped like its argument"))
    try:
        y = np.asarray(y)
    except Exception as exc:
        raise UserCodeError(f"{label} must return an array; got {type(y).__name__}") from exc
    if y.dtype.kind not in "fciub" and not is_real_float(y.dtype):
        raise UserCodeError(f"{label} must return numbers; got an array of dtype {y.dtype}")
    finite = np.isfinite(y if y.dtype.kind in "fciub" else y.astype(np.float64))
    if not np.all(finite):
        bad = int(np.sum(~finite))
        raise UserCodeError(f"{label} returned {bad} NaN or infinite value(s) of {y.size}")
    return y


def _require_deterministic(y, y_again, length=0) -> None:
    """Two calls of ``f`` at the same arguments must agree (to a few roundings: 64 ulps,
    grown for sums of up to ``length`` terms as the analytic allowance grows,
    :func:`._tolerance.reduction_growth`).

    A numerical derivative differences outputs at nearby points; if ``f`` itself varies
    (dropout, noise, a seed drawn inside), every difference is dominated by that variation,
    every element looks like a kink, and no verdict means anything.
    """
    if y_again.shape != y.shape:
        raise NondeterministicError(f"two calls with the same arguments returned shapes "
                                    f"{y.shape} and {y_again.shape}")
    a, b = y.astype(np.complex128 if y.dtype.kind == "c" else np.float64), y_again
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        eps = np.finfo(y.dtype).eps if y.dtype.kind in "fc" else np.finfo(np.float64).eps
        # a reordered reduction (threaded BLAS) may differ by rounding of the terms summed,
        # which for an output near zero is rounding of the output's typical size
        mag = np.maximum(np.abs(a), np.abs(b))
        typical = (float(np.sqrt(np.mean(np.where(np.isfinite(mag), mag, 0.0) ** 2)))
                   if mag.size else 0.0)
        allowed = 64 * reduction_growth(length) * eps * (mag + typical)
        bad = (diff > allowed) | (np.isnan(a) != np.isnan(b))
    bad &= ~(np.isnan(a) & np.isnan(b))
    if bad.any():
        j = np.unravel_index(int(np.argmax(np.where(bad, np.nan_to_num(diff, nan=np.inf), -1))),
                             y.shape)
        where = f" at output index {tuple(int(k) for k in j)}" if y.ndim else ""
        raise NondeterministicError(
            f"two calls with the same arguments differ by up to {diff[j]:.3g}{where} (value "
            f"{a[j]:.9g}; {int(bad.sum())} of {y.size} output element(s) differ); numerical "
            f"differentiation needs the same output for the same input (is a random draw, "
            f"dropout or noise switched on?)")


def _evaluate_twice(f, args, timed: bool, argnames=None):
    """``(y, seconds)``: ``f(*args)``, proven deterministic by a second call. With
    ``timed``, the faster of the two calls (the first may pay for warm-up). Each call
    gets copies of ``args``, compared with them afterwards: an ``f`` that modifies its
    arguments in place is :class:`~gradcheck.UserCodeError` (:func:`_modified`)."""
    copies = tuple(a.copy() for a in args)
    t_f = time.perf_counter()
    y = _as_output(_call(f, "f", *copies), "f")
    t_f = time.perf_counter() - t_f
    _modified("f", args, copies, argnames)
    copies = tuple(a.copy() for a in args)
    t_again = time.perf_counter()
    y_again = _as_output(_call(f, "f", *copies), "f")
    t_again = time.perf_counter() - t_again
    _modified("f", args, copies, argnames)
    _require_deterministic(y, y_again, max(np.size(a) for a in (y, *args)))
    if timed:
        t_f = min(t_f, t_again)
    return y, t_f


def seeded_cotangent(seed: int, shape) -> np.ndarray:
    """The checker's default cotangent ``R`` for ``seed``: a float64 standard normal of
    ``shape`` from the stream ``default_rng([seed, COTANGENT_SALT])``.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.checker._scalarize import seeded_cotangent
    >>> R = seeded_cotangent(0, (2, 3))
    >>> R.shape, R.dtype
    ((2, 3), dtype('float64'))
    >>> bool(np.array_equal(R, np.random.default_rng(0).standard_normal((2, 3))))
    False
    """
    return np.random.default_rng([int(seed), COTANGENT_SALT]).standard_normal(tuple(shape))


def _cotangent(given, y, seed) -> np.ndarray:
    """``R`` in float64: the caller's, checked, or :func:`seeded_cotangent`."""
    if given is None:
        return seeded_cotangent(seed, y.shape)
    cotangent = np.asarray(given, dtype=np.float64)
    if cotangent.shape != y.shape:
        raise ConfigurationError(f"cotangent must have the shape of f's output {y.shape}; got "
                                 f"shape {cotangent.shape}")
    if not np.all(np.isfinite(cotangent)):
        raise ConfigurationError(
            f"cotangent must be finite; got {int(np.sum(~np.isfinite(cotangent)))} NaN or "
            f"infinite value(s) of {cotangent.size}")
    return cotangent


def _largest_term(cotangent, y) -> float:
    """The largest term of ``C = <R, f>``: it sets the smallest derivative ``C`` can
    express (the resolution floor of the tolerance, see ``_tolerance``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.abs(cotangent) * np.abs(y)
        return float(terms.max(initial=0.0)) if np.all(np.isfinite(terms)) else 0.0


#: How many non-finite entries of a gradient a message names.
SHOWN = 3


def _finite_gradient(g, label, what, source) -> None:
    """Raise :class:`~gradcheck.NonFiniteGradientError` naming the first entries of the
    gradient ``g`` that are NaN or infinite (``f`` and the point are finite by now)."""
    try:
        arr = np.asarray(g)
        finite = np.isfinite(arr if arr.dtype.kind in "fc" else arr.astype(np.float64))
    except (TypeError, ValueError):
        return                                 # not numbers: _as_output says so
    if finite.all():
        return
    where = [tuple(int(k) for k in np.unravel_index(j, arr.shape))
             for j in np.flatnonzero(~finite)[:SHOWN]]
    bad = int(np.sum(~finite))
    shown = ", ".join(str(w) for w in where) + (", ..." if bad > SHOWN else "")
    hint = (" (f is finite there, so the backward made it: e.g. a where() whose unselected "
            "branch has an infinite derivative, such as sqrt at 0, gives 0 * inf = NaN)"
            if source else "")
    raise NonFiniteGradientError(
        f"{what} returned {bad} NaN or infinite value(s) of {arr.size}, at index "
        f"{shown}{hint}", argname=label, indices=where, count=bad)


def _analytic(f_vjp, cotangent, args, argnames) -> tuple:
    """``(gradients, missing)``: one gradient per argument, a ``None`` turned into zeros
    of the argument's shape and dtype and its index put in ``missing``."""
    # the cotangent is the check's too: a backward may write to its copy (g[mask] = 0)
    grads = _call_on_copies(f_vjp, "f_vjp", args, argnames, leading=(cotangent.copy(),))
    if len(args) == 1 and isinstance(grads, np.ndarray):
        grads = (grads,)
    if not isinstance(grads, (tuple, list)) or len(grads) != len(args):
        got = f"{len(grads)} values" if isinstance(grads, (tuple, list)) else type(grads).__name__
        raise UserCodeError(
            f"f_vjp must return one gradient per argument ({len(args)}: "
            f"{', '.join(argnames)}); got {got}")
    source = getattr(f_vjp, "gradient_source", None)   # an adapter's: "JAX's VJP" ...
    out, missing = [], set()
    for i, (g, a, label) in enumerate(zip(grads, args, argnames)):
        what = (f"the gradient for {label!r} from {source}" if source
                else f"f_vjp's gradient for {label!r}")
        if g is None:   # no gradient is a zero gradient (checked, and said so)
            missing.add(i)
            g = np.zeros(a.shape, a.dtype)
        else:
            _finite_gradient(g, label, what, source)
            g = _as_output(g, what)
            if g.shape != a.shape:
                raise UserCodeError(
                    f"{what} has shape {g.shape}, but the argument has shape {a.shape}")
        out.append(g)
    return tuple(out), frozenset(missing)


def scalarize(f, f_vjp, args, options) -> Problem:
    """Call ``f`` (twice) and ``f_vjp`` at ``args`` for ``C = <R, f>`` (``options``: the
    validated :class:`~gradcheck.checker._options.Options`)."""
    y, f_seconds = _evaluate_twice(f, args, timed=options.mode in ("auto", "sampled"),
                                   argnames=options.argnames)
    cotangent = _cotangent(options.cotangent, y, options.seed)
    cotangent_f = cotangent.astype(y.dtype if y.dtype.kind in "fc" or is_real_float(y.dtype)
                                   else np.float64)
    analytic, missing = _analytic(f_vjp, cotangent_f, args, options.argnames)
    return Problem(f, args, options.argnames, y, cotangent, cotangent_f, analytic,
                   _largest_term(cotangent, y), f_seconds, f_vjp, missing=missing)
