"""The validate stage: every option of :func:`~gradcheck.check_vjp`, checked once.

The options arrive as an :class:`Options` record as the caller gave them;
:func:`validate` returns the same record normalized (names filled in, ``wrt`` as
indices, per-argument options as one entry per argument) with the arguments as arrays,
or raises :class:`~gradcheck.ConfigurationError` naming the option, the value, and what
would be valid.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Callable, Mapping, Sequence

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._precision import is_real_float
from gradcheck._record import frozen
from gradcheck._validate import is_int
from gradcheck.checker._diagnose import TensorRole
from gradcheck.checker._numeric import DEFAULT_MEMORY, is_structure

__all__ = ["Options", "validate", "MODES", "OVER_BUDGET", "DEFAULT_BUDGET",
           "DEFAULT_DIRECTIONS", "DEFAULT_TIME_BUDGET"]

#: How each argument may be checked: chosen by budget, every element, a sample of
#: elements plus directions, or directions.
MODES = ("auto", "full", "sampled", "fast")
#: What mode="auto" does with an argument over budget: a plan kind, or refuse.
OVER_BUDGET = ("sampled", "fast", "refuse")
#: Arguments with more elements than this are sampled under mode="auto".
DEFAULT_BUDGET = 200_000
DEFAULT_DIRECTIONS = 8
#: Seconds a full check of one argument may be predicted to take under mode="auto".
DEFAULT_TIME_BUDGET = 60.0


@frozen
class Options:
    """The keyword options of :func:`~gradcheck.check_vjp` (documented there)."""

    argnames: tuple | None = None
    wrt: object = None
    mode: str = "auto"
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    budget: int = DEFAULT_BUDGET
    over_budget: str = "sampled"
    directions: int = DEFAULT_DIRECTIONS
    method: str = "auto"
    patterns: object = None
    vectorized: object = None
    roles: object = None
    suspects: Callable | None = None
    name: str | None = None
    cotangent: object = None
    memory: float = DEFAULT_MEMORY
    time_budget: float = DEFAULT_TIME_BUDGET


def _tolerance_floor(v) -> bool:
    return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)
                         and bool(np.isfinite(v)) and v >= 0)


def _positive_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Real) and v > 0


#: (option, test, what would be valid): each checked the same way.
_SCALARS = (
    ("mode", lambda v: v in MODES, f"one of {MODES}"),
    ("seed", lambda v: is_int(v) and v >= 0, "a non-negative int"),
    ("atol", _tolerance_floor, "None or a finite number >= 0"),
    ("rtol", _tolerance_floor, "None or a finite number >= 0"),
    ("budget", lambda v: is_int(v) and v >= 1, "a positive int (elements)"),
    ("over_budget", lambda v: v in OVER_BUDGET, f"one of {OVER_BUDGET}"),
    ("directions", lambda v: is_int(v) and v >= 1, "a positive int"),
    ("method", lambda v: isinstance(v, str), "a string"),
    ("time_budget", _positive_number, "a positive number of seconds"),
    ("memory", _positive_number, "a positive number of bytes"),
    ("suspects", lambda v: v is None or callable(v), "None or a callable(argname)"),
)


def _is_pattern(v) -> bool:
    return callable(v) or is_structure(v) or (hasattr(v, "tocsc")
                                              and len(getattr(v, "shape", ())) == 2)


#: (option, default, test, what would be valid): options given per argument.
_PER_ARGUMENT = (
    ("patterns", None, _is_pattern, "None, a scipy.sparse matrix (outputs x elements), a "
                                    "structure (colors, owners), or a callable returning one"),
    ("vectorized", False, lambda v: isinstance(v, bool), "a bool"),
    ("roles", None, lambda v: v in ("input", "weight", "bias", "generic")
     or isinstance(v, TensorRole), "'input', 'weight', 'bias', 'generic' or a TensorRole"),
)


def _require_callables(f, f_vjp, derivative) -> None:
    for label, fn in (("f", f), (derivative, f_vjp)):
        if not callable(fn):
            raise ConfigurationError(f"{label} must be callable; got {type(fn).__name__}")


def _count(args) -> int:
    if isinstance(args, np.ndarray) or not isinstance(args, Sequence):
        raise ConfigurationError(
            "args must be a tuple or list of arrays (one per argument of f); for a single "
            f"array pass (x,); got {type(args).__name__}")
    if len(args) == 0:
        raise ConfigurationError("args must hold at least one array; got an empty sequence")
    return len(args)


def _argnames(argnames, n) -> tuple:
    if argnames is None:
        return tuple(f"arg{i}" for i in range(n))
    argnames = tuple(argnames)
    if len(argnames) != n or not all(isinstance(a, str) for a in argnames):
        raise ConfigurationError(f"argnames must be {n} strings, one per argument; got {argnames!r}")
    if len(set(argnames)) != n:
        raise ConfigurationError(f"argnames must be distinct; got {argnames!r}")
    return argnames


def _wrt(wrt, argnames) -> tuple:
    n = len(argnames)
    if wrt is None:
        return tuple(range(n))
    idx = []
    for item in [wrt] if isinstance(wrt, (str, numbers.Integral)) else list(wrt):
        if isinstance(item, str) and item in argnames:
            idx.append(argnames.index(item))
        elif is_int(item) and -n <= item < n:
            idx.append(int(item) % n)
        else:
            raise ConfigurationError(
                f"wrt must name arguments by index (0..{n - 1}) or by name "
                f"({', '.join(argnames)}); got {item!r}")
    return tuple(dict.fromkeys(idx))


def _per_argument(value, label, default, ok, expect, argnames) -> tuple:
    n = len(argnames)
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


def _as_arrays(args, argnames) -> tuple:
    out = []
    for a, label in zip(args, argnames):
        try:
            arr = np.array(a, copy=True)   # the check's own: the caller's never changes
        except Exception as exc:
            raise ConfigurationError(f"argument {label!r} must be array-like; got "
                                     f"{type(a).__name__}") from exc
        if arr.dtype.kind not in "fc" and not is_real_float(arr.dtype):
            if arr.dtype.kind in "iub":
                arr = arr.astype(np.float64)
            else:
                raise ConfigurationError(
                    f"argument {label!r} must hold real numbers; got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr.astype(np.complex128 if arr.dtype.kind == "c"
                                             else np.float64))):
            raise ConfigurationError(
                f"argument {label!r} contains NaN or infinity; a gradient check needs finite inputs")
        out.append(arr)
    return tuple(out)


def validate(f, f_vjp, args, given: Options, *, derivative="f_vjp") -> tuple[Options, tuple]:
    """``(options, arrays)``: the options normalized, the arguments as arrays
    (``derivative``: the name of the analytic side, ``"f_jvp"`` in forward mode)."""
    _require_callables(f, f_vjp, derivative)
    argnames = _argnames(given.argnames, _count(args))
    wrt = _wrt(given.wrt, argnames)
    for label, ok, expect in _SCALARS:
        value = getattr(given, label)
        if not ok(value):
            raise ConfigurationError(f"{label} must be {expect}; got {value!r}")
    per_argument = {label: _per_argument(getattr(given, label), label, default, ok, expect,
                                         argnames)
                    for label, default, ok, expect in _PER_ARGUMENT}
    name = given.name if given.name is not None else getattr(f, "__name__", "f")
    options = dataclasses.replace(given, argnames=argnames, wrt=wrt, seed=int(given.seed),
                                  budget=int(given.budget), directions=int(given.directions),
                                  name=str(name), **per_argument)
    return options, _as_arrays(args, argnames)
