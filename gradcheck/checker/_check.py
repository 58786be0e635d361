r"""The checker: hold an analytic vector-Jacobian product against a numerical one.

Scalarization
-------------
A function ``f(*args) -> y`` with a backward ``f_vjp(R, *args) -> (dC/darg, ...)`` is
checked through the scalar :math:`C = \langle R, f(\text{args}) \rangle` with a seeded
random cotangent :math:`R` (standard normal, the shape of ``y``). A random ``R``
exercises every output with a weight that no bug can anticipate; the analytic side is
``f_vjp(R, *args)``, the numerical side :math:`\partial C/\partial \text{arg}` from the
differentiator, per argument.

Modes
-----
``"full"`` compares every element. ``"fast"`` compares ``directions`` random directional
derivatives :math:`\langle \nabla C, v\rangle` (Rademacher ``v``, entries ±1): its cost
does not grow with the size of the argument (a few evaluations per direction: 24 per
argument for the default 8 when the complex step applies, against about two per element
and color in full mode), and it
catches any bug that moves the gradient as a whole -- a wrong sign, scale, flip, shift,
channel, region: such an error changes every projection by a sizeable fraction of
:math:`\lVert \nabla C\rVert`.

What fast mode cannot catch: **one wrong element in a large tensor.** An error
:math:`\delta` in one element enters each projection with weight ±1, while the
projection's error bar grows with the whole gradient: measured on convolutions, the
allowed difference is about :math:`10^{-12}\lVert g\rVert` in float64 and
:math:`10^{-4}`–:math:`10^{-3}\lVert g\rVert` in float32 (:math:`\lVert g\rVert \approx
\sqrt{n}` times a typical entry for ``n`` elements). So a single float32 entry off by 2%
goes unseen once the tensor has a few thousand elements, and a float64 entry off by
:math:`10^{-5}` only beyond about :math:`10^{12}` elements; full mode catches both at
any size. Fast mode gives no diagnosis and reports no kinks (a projection straddling a
kink is judged on its error bar).

How the budget chooses: ``"auto"`` (the default) checks an argument in full mode when it
has at most ``budget`` elements (default :data:`DEFAULT_BUDGET`, 200 000) *and* its
full check is predicted to take at most ``time_budget`` seconds (default 60: the groups
of elements perturbed together, about six evaluations each, times the measured time of
one call of ``f``), and in fast mode otherwise, per argument, and says so in the
report's notes;
``over_budget="refuse"`` raises :class:`~gradcheck.ConfigurationError` instead of
switching. ``mode="full"`` or ``"fast"`` ignores the budget.

Verdict
-------
Element ``j`` passes when :math:`|a_j - n_j| \le \tau_j` with :math:`\tau_j` from
:mod:`gradcheck.checker._tolerance` (the differentiator's own error bar and the dtype's
rounding). An element the differentiator found to sit at a non-differentiable point is
reported as such; it fails only if the analytic value lies outside the interval spanned
by the two one-sided derivatives (widened by :math:`\kappa_j` of the tolerance module)
and the kink is its own -- a kink shared with other elements (ties in overlapping
max-pool windows, several ReLUs at zero at once) is reported but not judged, see
:mod:`gradcheck.checker._kinks`. An element that fails on a complex-step derivative is
differenced again with real steps before the verdict (:mod:`gradcheck.checker._numeric`).
"""

from __future__ import annotations

import numbers
import time
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from gradcheck._errors import ConfigurationError, GradcheckError, UserCodeError
from gradcheck.checker._compare import judge_full, report_fast, report_full, shares_for
from gradcheck.checker._diagnose import TensorRole
from gradcheck.checker._numeric import (
    directional_numeric,
    full_numeric,
    is_structure,
    merge_elements,
    recheck_elements,
)
from gradcheck.checker._report import ArgumentReport, CheckReport
from gradcheck.checker._tolerance import tolerance_for
from gradcheck.numdiff._evaluate import DEFAULT_MEMORY
from gradcheck.numdiff._coloring import n_distinct

__all__ = ["check_vjp", "check_grad", "assert_vjp_close", "DEFAULT_BUDGET", "MODES"]

MODES = ("auto", "full", "fast")
OVER_BUDGET = ("fast", "refuse")
#: Arguments with more elements than this are checked in fast mode under mode="auto".
DEFAULT_BUDGET = 200_000
DEFAULT_DIRECTIONS = 8
#: Seconds a full check of one argument may be predicted to take under mode="auto".
DEFAULT_TIME_BUDGET = 60.0
#: Evaluations per group of perturbed elements (Richardson's five, plus retries).
PREDICTED_EVALS_PER_GROUP = 6
#: Complex-step mismatches re-differenced with real steps before the rest (see _check_full).
RECHECK_FIRST = 16
#: Step reductions allowed when real-difference mismatches are differenced again.
RECHECK_RETRIES = 6


def _groups(pattern, size) -> int:
    """How many groups of elements will be perturbed together (a cheap estimate)."""
    if pattern is None:
        return size
    if is_structure(pattern):
        return n_distinct(pattern.colors)
    indptr = getattr(pattern.tocsr(), "indptr", None)
    # no row may hold two elements of a group: the fullest row bounds the groups from below
    return max(1, int(np.diff(indptr).max())) if indptr is not None and indptr.size > 1 else size


class _Options(NamedTuple):
    argnames: tuple
    wrt: tuple
    mode: str
    seed: int
    atol: float | None
    rtol: float | None
    budget: int
    over_budget: str
    directions: int
    method: str
    patterns: tuple
    vectorized: tuple
    roles: tuple
    name: str


# --------------------------------------------------------------------------- validation


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _validate_options(f, f_vjp, args, *, argnames, wrt, mode, seed, atol, rtol, budget,
                      over_budget, directions, method, patterns, vectorized, roles, name):
    if not callable(f):
        raise ConfigurationError(f"f must be callable; got {type(f).__name__}")
    if not callable(f_vjp):
        raise ConfigurationError(f"f_vjp must be callable; got {type(f_vjp).__name__}")
    if isinstance(args, np.ndarray) or not isinstance(args, Sequence):
        raise ConfigurationError(
            "args must be a tuple or list of arrays (one per argument of f); for a single "
            f"array pass (x,); got {type(args).__name__}")
    n = len(args)
    if n == 0:
        raise ConfigurationError("args must hold at least one array; got an empty sequence")
    if argnames is None:
        argnames = tuple(f"arg{i}" for i in range(n))
    else:
        argnames = tuple(argnames)
        if len(argnames) != n or not all(isinstance(a, str) for a in argnames):
            raise ConfigurationError(
                f"argnames must be {n} strings, one per argument; got {argnames!r}")
        if len(set(argnames)) != n:
            raise ConfigurationError(f"argnames must be distinct; got {argnames!r}")
    if wrt is None:
        wrt = tuple(range(n))
    else:
        items = [wrt] if isinstance(wrt, (str, numbers.Integral)) else list(wrt)
        idx = []
        for item in items:
            if isinstance(item, str) and item in argnames:
                idx.append(argnames.index(item))
            elif _is_int(item) and -n <= item < n:
                idx.append(int(item) % n)
            else:
                raise ConfigurationError(
                    f"wrt must name arguments by index (0..{n - 1}) or by name "
                    f"({', '.join(argnames)}); got {item!r}")
        wrt = tuple(dict.fromkeys(idx))
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {MODES}; got {mode!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigurationError(f"seed must be a non-negative int; got {seed!r}")
    for label, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)
                                  or not np.isfinite(value) or value < 0):
            raise ConfigurationError(f"{label} must be None or a finite number >= 0; got {value!r}")
    if not _is_int(budget) or budget < 1:
        raise ConfigurationError(f"budget must be a positive int (elements); got {budget!r}")
    if over_budget not in OVER_BUDGET:
        raise ConfigurationError(f"over_budget must be one of {OVER_BUDGET}; got {over_budget!r}")
    if not _is_int(directions) or directions < 1:
        raise ConfigurationError(f"directions must be a positive int; got {directions!r}")
    if not isinstance(method, str):
        raise ConfigurationError(f"method must be a string; got {method!r}")

    def per_arg(value, label, default, ok, expect):
        if value is None:
            return (default,) * n
        if isinstance(value, Mapping):
            unknown = [k for k in value if k not in argnames]
            if unknown:
                raise ConfigurationError(
                    f"{label} has unknown argument names {unknown}; valid: {', '.join(argnames)}")
            out = tuple(value.get(a, default) for a in argnames)
        elif isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ConfigurationError(
                    f"{label} must have one entry per argument ({n}); got {len(value)}")
            out = tuple(value)
        else:
            out = (value,) * n
        for a, v in zip(argnames, out):
            if v is not default and not ok(v):
                raise ConfigurationError(f"{label}[{a!r}] must be {expect}; got {v!r}")
        return out

    patterns = per_arg(patterns, "patterns", None,
                       lambda v: (callable(v) or is_structure(v)
                                  or (hasattr(v, "tocsc") and len(getattr(v, "shape", ())) == 2)),
                       "None, a scipy.sparse matrix (outputs x elements), a structure "
                       "(colors, owners), or a callable returning one")
    vectorized = per_arg(vectorized, "vectorized", False, lambda v: isinstance(v, bool), "a bool")
    roles = per_arg(roles, "roles", None,
                    lambda v: v in ("input", "weight", "bias", "generic") or isinstance(v, TensorRole),
                    "'input', 'weight', 'bias', 'generic' or a TensorRole")
    name = name if name is not None else getattr(f, "__name__", "f")
    return _Options(argnames, wrt, mode, int(seed), atol, rtol, int(budget), over_budget,
                    int(directions), method, patterns, vectorized, roles, str(name))


def _as_args(args, argnames):
    out = []
    for a, label in zip(args, argnames):
        try:
            arr = np.asarray(a)
        except Exception as exc:
            raise ConfigurationError(f"argument {label!r} must be array-like; got "
                                     f"{type(a).__name__}") from exc
        if arr.dtype.kind not in "fc":
            if arr.dtype.kind in "iub":
                arr = arr.astype(np.float64)
            else:
                raise ConfigurationError(
                    f"argument {label!r} must hold real numbers; got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise ConfigurationError(
                f"argument {label!r} contains NaN or infinity; a gradient check needs finite inputs")
        out.append(arr)
    return tuple(out)


def _call(fn, label, *call_args):
    try:
        return fn(*call_args)
    except GradcheckError:
        raise
    except Exception as exc:  # user code: report, do not crash
        raise UserCodeError(f"{label} raised {type(exc).__name__}: {exc}") from exc


def _as_output(y, label):
    try:
        y = np.asarray(y)
    except Exception as exc:
        raise UserCodeError(f"{label} must return an array; got {type(y).__name__}") from exc
    if y.dtype.kind not in "fciub":
        raise UserCodeError(f"{label} must return numbers; got an array of dtype {y.dtype}")
    if not np.all(np.isfinite(y)):
        bad = int(np.sum(~np.isfinite(y)))
        raise UserCodeError(f"{label} returned {bad} NaN or infinite value(s) of {y.size}")
    return y


def _analytic(f_vjp, cotangent, args, opts):
    grads = _call(f_vjp, "f_vjp", cotangent, *args)
    if len(args) == 1 and isinstance(grads, np.ndarray):
        grads = (grads,)
    if not isinstance(grads, (tuple, list)) or len(grads) != len(args):
        got = f"{len(grads)} values" if isinstance(grads, (tuple, list)) else type(grads).__name__
        raise UserCodeError(
            f"f_vjp must return one gradient per argument ({len(args)}: "
            f"{', '.join(opts.argnames)}); got {got}")
    out = []
    for g, a, label in zip(grads, args, opts.argnames):
        if g is None:
            out.append(None)
            continue
        g = _as_output(g, f"f_vjp's gradient for {label!r}")
        if g.shape != a.shape:
            raise UserCodeError(
                f"f_vjp's gradient for {label!r} has shape {g.shape}, but the argument has "
                f"shape {a.shape}")
        out.append(g)
    return out


def _role(opts, i, arr):
    r = opts.roles[i]
    if isinstance(r, TensorRole):
        return r
    if r is None:  # guess from the usual layouts: (N, C, *sp) first, then kernels
        if arr.ndim >= 3:
            r = "input" if i == 0 else "weight"
        elif arr.ndim == 1 and i > 0:
            r = "bias"
        else:
            r = "generic"
    return TensorRole.for_array(r, arr.ndim)


# --------------------------------------------------------------------------- public


def _require_deterministic(y, y_again) -> None:
    """Two calls of ``f`` at the same arguments must agree (to a few roundings).

    A numerical derivative differences outputs at nearby points; if ``f`` itself varies
    (dropout, noise, a seed drawn inside), every difference is dominated by that variation,
    every element looks like a kink, and no verdict means anything.
    """
    if y_again.shape != y.shape:
        raise UserCodeError(f"f is not deterministic: two calls with the same arguments "
                            f"returned shapes {y.shape} and {y_again.shape}")
    a, b = y.astype(np.complex128 if y.dtype.kind == "c" else np.float64), y_again
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        eps = np.finfo(y.dtype).eps if y.dtype.kind in "fc" else np.finfo(np.float64).eps
        # a reordered reduction (threaded BLAS) may differ by rounding of the terms summed,
        # which for an output near zero is rounding of the output's typical size
        mag = np.maximum(np.abs(a), np.abs(b))
        typical = (float(np.sqrt(np.mean(np.where(np.isfinite(mag), mag, 0.0) ** 2)))
                   if mag.size else 0.0)
        allowed = 64 * eps * (mag + typical)
        bad = (diff > allowed) | (np.isnan(a) != np.isnan(b))
    bad &= ~(np.isnan(a) & np.isnan(b))
    if bad.any():
        j = np.unravel_index(int(np.argmax(np.where(bad, np.nan_to_num(diff, nan=np.inf), -1))),
                             y.shape)
        where = f" at output index {tuple(int(k) for k in j)}" if y.ndim else ""
        raise UserCodeError(
            f"f is not deterministic: two calls with the same arguments differ by up to "
            f"{diff[j]:.3g}{where} (value {a[j]:.9g}; {int(bad.sum())} of {y.size} output "
            f"element(s) differ); numerical differentiation needs the same output for the same "
            f"input (is a random draw, dropout or noise switched on?)")


def check_vjp(f: Callable, f_vjp: Callable, args, *, argnames=None, wrt=None, mode="auto",
              seed=0, atol=None, rtol=None, budget=DEFAULT_BUDGET, over_budget="fast",
              directions=DEFAULT_DIRECTIONS, method="auto", patterns=None, vectorized=None,
              roles=None, suspects=None, name=None, cotangent=None,
              memory=DEFAULT_MEMORY, time_budget=DEFAULT_TIME_BUDGET) -> CheckReport:
    r"""Check a backward pass ``f_vjp`` against numerical derivatives of ``f``.

    Parameters
    ----------
    f : callable
        ``f(*args)`` returns an array.
    f_vjp : callable
        ``f_vjp(cotangent, *args)`` returns one gradient per argument (``None`` for an
        argument that is not differentiated): :math:`\partial \langle R, f\rangle /
        \partial \text{arg}`. With a single argument it may return the bare array.
    args : sequence of array_like
        The point at which to check. Must be finite.
    argnames : sequence of str, optional
        Names for the report (default ``arg0``, ``arg1``, …).
    wrt : int, str or sequence of them, optional
        Which arguments to check (default all with a gradient).
    mode : {"auto", "full", "fast"}
        Every element, random directional derivatives, or full up to ``budget``
        elements per argument and fast above (see the module notes).
    seed : int
        Seeds the cotangent and the fast-mode directions; the verdict is deterministic
        for a given seed.
    atol, rtol : float, optional
        A tolerance floor on top of the automatic one (never needed for a right verdict).
    budget : int
        Largest argument (in elements) checked in full under ``mode="auto"``.
    over_budget : {"fast", "refuse"}
        What ``mode="auto"`` does above ``budget``; ``"refuse"`` raises
        :class:`~gradcheck.ConfigurationError`.
    directions : int
        Random directions per argument in fast mode.
    method : str
        Differentiation method passed to the differentiator (``"auto"`` chooses).
    patterns : mapping or sequence, optional
        Per argument, a sparse boolean matrix (outputs × elements) of which outputs each
        element can change, or a callable returning one (called only in full mode); lets
        the differentiator perturb many elements at once.
    vectorized : bool or mapping or sequence, optional
        Per argument, whether ``f`` accepts a leading batch of points for it.
    roles : mapping or sequence, optional
        Per argument ``"input"`` (N, C, *spatial), ``"weight"`` (C_out, C_in, *kernel),
        ``"bias"`` or ``"generic"``; used to name causes of a mismatch.
    suspects : callable, optional
        ``suspects(argname, cotangent) -> [Suspect, ...]``: layer-specific predicted
        gradients of known bugs (given the cotangent the check used), tested first when a
        check fails.
    name : str, optional
        Name of the check in the report.
    time_budget : float
        Seconds a full check of one argument may be predicted to take under
        ``mode="auto"`` (groups of elements perturbed together x about six evaluations x
        the time of one call of ``f``); above it the argument is checked in fast mode,
        with a note, or refused with ``over_budget="refuse"``.
    memory : int
        Bytes the perturbed points of one batch of evaluations may take (with
        ``vectorized``); with structured arguments the bookkeeping stays proportional to
        the output, so a check's memory follows this budget, not the size of the layer.
    cotangent : array_like, optional
        Use this ``R`` (shape of ``f(*args)``) instead of a seeded random one, e.g. when
        ``C = <R, f>`` is itself the loss of interest.

    Returns
    -------
    CheckReport
        ``.passed``, a readable ``str()`` table, ``.to_dict()`` for JSON.

    Raises
    ------
    ConfigurationError
        Invalid options or arguments.
    UserCodeError
        ``f`` or ``f_vjp`` raised, returned NaN/inf, or returned the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_vjp
    >>> f = lambda x: np.tanh(x)
    >>> f_vjp = lambda g, x: (g * (1 - np.tanh(x) ** 2),)
    >>> report = check_vjp(f, f_vjp, (np.linspace(-2, 2, 5),))
    >>> report.passed
    True
    >>> wrong = lambda g, x: (g * (1 - np.tanh(x)),)
    >>> check_vjp(f, wrong, (np.linspace(-2, 2, 5),)).passed
    False
    """
    t0 = time.perf_counter()
    opts = _validate_options(f, f_vjp, args, argnames=argnames, wrt=wrt, mode=mode, seed=seed,
                             atol=atol, rtol=rtol, budget=budget, over_budget=over_budget,
                             directions=directions, method=method, patterns=patterns,
                             vectorized=vectorized, roles=roles, name=name)
    if (isinstance(time_budget, bool) or not isinstance(time_budget, numbers.Real)
            or not time_budget > 0):
        raise ConfigurationError(f"time_budget must be a positive number of seconds; got "
                                 f"{time_budget!r}")
    if isinstance(memory, bool) or not isinstance(memory, numbers.Real) or not memory > 0:
        raise ConfigurationError(f"memory must be a positive number of bytes; got {memory!r}")
    if suspects is not None and not callable(suspects):
        raise ConfigurationError(f"suspects must be None or a callable(argname); got {suspects!r}")
    args = _as_args(args, opts.argnames)
    t_f = time.perf_counter()
    y = _as_output(_call(f, "f", *args), "f")
    t_f = time.perf_counter() - t_f
    t_again = time.perf_counter()
    _require_deterministic(y, _as_output(_call(f, "f", *args), "f"))
    if opts.mode == "auto":   # the first call may pay for warm-up: time the second one
        t_f = min(t_f, time.perf_counter() - t_again)
    if cotangent is None:
        cotangent64 = np.random.default_rng(opts.seed).standard_normal(y.shape)
    else:
        cotangent64 = np.asarray(cotangent, dtype=np.float64)
        if cotangent64.shape != y.shape:
            raise ConfigurationError(
                f"cotangent must have the shape of f's output {y.shape}; got shape "
                f"{cotangent64.shape}")
        if not np.all(np.isfinite(cotangent64)):
            raise ConfigurationError(
                f"cotangent must be finite; got {int(np.sum(~np.isfinite(cotangent64)))} NaN "
                f"or infinite value(s) of {cotangent64.size}")
    # the largest term of C = <R, f>: it sets the smallest derivative C can express
    # (the resolution floor of the tolerance, see _tolerance)
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.abs(cotangent64) * np.abs(y)
        term_size = float(terms.max(initial=0.0)) if np.all(np.isfinite(terms)) else 0.0
    cot_dtype = y.dtype if y.dtype.kind in "fc" else np.float64
    cotangent = cotangent64.astype(cot_dtype)
    analytic = _analytic(f_vjp, cotangent, args, opts)
    if suspects is None:
        from gradcheck.checker._identify import conv_suspects
        suspects = conv_suspects(args, y, opts.argnames)

    reports, nfev, notes = [], 2, []
    for i in opts.wrt:
        label, arg = opts.argnames[i], args[i]
        t_arg = time.perf_counter()
        if analytic[i] is None:
            reports.append(_skipped(label, arg, "f_vjp returned None (not differentiated)"))
            continue
        if arg.dtype.kind != "f":
            raise ConfigurationError(
                f"argument {label!r} has dtype {arg.dtype}; gradients are checked for real "
                f"arguments: pass the real and imaginary parts as two real arrays")
        if arg.size == 0:
            reports.append(_skipped(label, arg, "empty (0 elements)"))
            continue

        def g(a, i=i):
            return f(*args[:i], a, *args[i + 1:])

        use_full = opts.mode == "full" or (opts.mode == "auto" and arg.size <= opts.budget)
        pattern, why = opts.patterns[i], f"{arg.size} elements > budget {opts.budget}"
        if use_full and callable(pattern):  # built only when needed: full mode
            pattern = pattern()
        if use_full and opts.mode == "auto":
            evals = PREDICTED_EVALS_PER_GROUP * _groups(pattern, arg.size)
            if evals * t_f > time_budget:
                use_full = False
                why = (f"a full check would take about {evals * t_f:.0f} s ({evals} "
                       f"evaluations of {1e3 * t_f:.2g} ms) > time_budget {time_budget:g} s")
        if opts.mode == "auto" and not use_full and opts.over_budget == "refuse":
            raise ConfigurationError(
                f"argument {label!r} is over budget: {why}; raise budget/time_budget, pass "
                f"mode='fast', or over_budget='fast'")
        if use_full:
            reports.append(_check_full(g, label, arg, analytic[i], cotangent64, y, pattern,
                                       opts, i, suspects, cotangent, t_arg, memory,
                                       term_size))
        else:
            drng = np.random.default_rng([opts.seed, i])
            dirs = drng.choice(np.array([-1.0, 1.0]), size=(opts.directions, arg.size))
            num = directional_numeric(g, arg, cotangent64, y, dirs, method=opts.method,
                                      vectorized=opts.vectorized[i], seed=opts.seed,
                                      memory=memory)
            reports.append(report_fast(label, arg, analytic[i], dirs, num, atol=opts.atol,
                                       rtol=opts.rtol, started=t_arg))
            if opts.mode == "auto":
                notes.append(f"{label}: {why}; checked in fast mode")
        nfev += reports[-1].nfev
    passed = all(r.passed for r in reports)
    if not any(r.mode != "skipped" for r in reports):
        passed = False   # a check that checked nothing must not pass
        notes.append("no argument was checked: every one was skipped (None gradient or empty)")
    return CheckReport(name=opts.name, passed=passed, mode=opts.mode, seed=opts.seed,
                       arguments=tuple(reports), elapsed_s=time.perf_counter() - t0, nfev=nfev,
                       dtype=str(y.dtype), notes=tuple(notes))


def _check_full(g, label, arg, analytic, cotangent64, y, pattern, opts, i, suspects, cotangent,
                started, memory, term_size) -> ArgumentReport:
    """Every element of one argument: differentiate, judge, re-judge complex-step misses."""
    num = full_numeric(g, arg, cotangent64, y, pattern=pattern, vectorized=opts.vectorized[i],
                       method=opts.method, seed=opts.seed, memory=memory)

    resolution = term_size / np.maximum(np.abs(arg.astype(np.float64)), 1.0)

    def judge(num):
        return judge_full(analytic, num, arg.shape, analytic.dtype, atol=opts.atol,
                          rtol=opts.rtol, shares=shares_for(pattern, g, arg, y, num.step),
                          resolution=resolution)

    judged = judge(num)
    note = ""
    if judged.failed.any() and num.method == "complex" and opts.method == "auto":
        # a second opinion before failing on the complex step (see _numeric)
        def contradicts(num, batch, second):
            # the real steps overrule the complex step only where they contradict it: a
            # kink, or a value outside their own error bar; where they agree, the complex
            # step's sharper value stands (else a 1e-11 error would hide in their bar)
            real = np.asarray(second.grad, np.float64).reshape(-1)
            cplx = np.asarray(num.grad, np.float64).reshape(-1)[batch]
            bar = np.asarray(second.error, np.float64).reshape(-1)
            return np.asarray(second.nondifferentiable, bool).reshape(-1) | \
                (np.abs(real - cplx) > tolerance_for(analytic.dtype).numeric_factor * bar)

        num, judged, done, total = _second_look(
            num, judged, judge, contradicts,
            lambda batch: recheck_elements(g, arg, cotangent64, batch, pattern=pattern,
                                           seed=opts.seed))
        note = (f"{done} of {total} mismatching element(s) of the complex step "
                f"differenced again with real steps")
    elif judged.failed.any() and num.method != "complex" and opts.method == "auto":
        # real differences whose step still straddled a nearby kink can be wrong by more
        # than their error bar claims: the mismatches are differenced again with more step
        # reductions, and a smaller error bar (or a kink found) replaces the first value
        def better(num, batch, second):
            first_bar = np.asarray(num.error, np.float64).reshape(-1)[batch]
            return np.asarray(second.nondifferentiable, bool).reshape(-1) | \
                (np.asarray(second.error, np.float64).reshape(-1) < first_bar)

        num, judged, done, total = _second_look(
            num, judged, judge, better,
            lambda batch: recheck_elements(g, arg, cotangent64, batch, pattern=pattern,
                                           seed=opts.seed, max_retries=RECHECK_RETRIES))
        note = (f"{done} of {total} mismatching element(s) differenced again with "
                f"smaller steps")
    return report_full(label, arg, analytic.dtype, judged, num.nfev,
                       role=_role(opts, i, arg), suspects_for=suspects, cotangent=cotangent,
                       started=started, note=note)


def _second_look(num, judged, judge, takes, redo):
    """Difference the mismatching elements again: the worst ``RECHECK_FIRST`` first, the
    rest only if none of those is confirmed (a real mistake survives the second look, and
    then one batch is enough). ``redo(batch)`` differences them; ``takes(num, batch,
    second)`` says where the second value replaces the first.

    Returns ``(num, judged, rechecked, mismatching)``.
    """
    order = _worst_first(judged)
    done = 0
    for batch in (order[:RECHECK_FIRST], order[RECHECK_FIRST:]):
        if batch.size == 0:
            break
        second = redo(batch)
        num = merge_elements(num, batch, second, takes(num, batch, second))
        judged = judge(num)
        done += batch.size
        if judged.failed.reshape(-1)[batch].any():
            break
    return num, judged, done, order.size


def _worst_first(judged) -> np.ndarray:
    """Flat indices of the failing elements, the largest excess over tolerance first."""
    excess = (judged.diff / np.maximum(judged.tolerance, np.finfo(float).tiny)).reshape(-1)
    order = np.flatnonzero(judged.failed.reshape(-1))
    return order[np.argsort(-excess[order], kind="stable")]


def _skipped(label, arg, why):
    nan = float("nan")
    return ArgumentReport(
        name=label, shape=tuple(arg.shape), dtype=str(arg.dtype), passed=True, mode="skipped",
        n_elements=int(arg.size), n_checked=0, n_failed=0, n_nondifferentiable=0,
        max_abs_error=nan, max_rel_error=nan, worst_index=None, analytic_at_worst=nan,
        numeric_at_worst=nan, error_estimate_at_worst=nan, tolerance_at_worst=nan,
        max_error_estimate=nan, cosine_similarity=nan, norm_ratio=nan, nfev=0, elapsed_s=0.0,
        note=why)


def check_grad(loss: Callable, grad: Callable, args, **options) -> CheckReport:
    """Check ``grad(*args)`` against numerical derivatives of a scalar ``loss(*args)``.

    ``grad`` returns one gradient per argument (or a bare array for one argument).
    Options are those of :func:`check_vjp`.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_grad
    >>> loss = lambda w: float(np.sum(w ** 3))
    >>> check_grad(loss, lambda w: 3 * w ** 2, (np.array([0.5, -1.0, 2.0]),)).passed
    True
    """
    if not callable(loss):
        raise ConfigurationError(f"loss must be callable; got {type(loss).__name__}")
    if not callable(grad):
        raise ConfigurationError(f"grad must be callable; got {type(grad).__name__}")

    def f(*a):
        value = np.asarray(loss(*a))
        if value.size != 1:
            raise UserCodeError(f"loss must return a scalar; got an array of shape {value.shape}")
        return value.reshape(())

    def f_vjp(cotangent, *a):
        g = grad(*a)
        if len(a) == 1 and not isinstance(g, (tuple, list)):
            g = (g,)
        return tuple(None if gi is None else np.asarray(gi) * cotangent for gi in g)

    options.setdefault("name", getattr(loss, "__name__", "loss"))
    return check_vjp(f, f_vjp, args, **options)


def assert_vjp_close(f: Callable, f_vjp: Callable, args, **options) -> CheckReport:
    """Like :func:`check_vjp`, but raise ``AssertionError`` carrying the report on a mismatch.

    For pytest: the failure message is the report's table, the worst element with both
    values, and the likely cause. Returns the report when the check passes.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import assert_vjp_close
    >>> x = np.array([0.3, -0.7])
    >>> _ = assert_vjp_close(np.sin, lambda g, x: (g * np.cos(x),), (x,))
    >>> assert_vjp_close(np.sin, lambda g, x: (g * np.sin(x),), (x,))
    Traceback (most recent call last):
    ...
    AssertionError: gradcheck sin: FAILED ...
    """
    __tracebackhide__ = True  # pytest shows the caller's line and the report, not this frame
    report = check_vjp(f, f_vjp, args, **options)
    if not report.passed:
        err = AssertionError(str(report))
        err.report = report
        raise err
    return report
