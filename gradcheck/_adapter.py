"""What the framework adapters share, written once and in NumPy only.

:mod:`gradcheck.torch` and :mod:`gradcheck.jax` translate tensors to arrays and back and
hand the result to :func:`gradcheck.check_vjp`; the verdict is the checker's alone. What
they have in common lives here, framework-free:

* several outputs are checked as one: each is flattened and the pieces concatenated
  (:func:`pack`), and the checker's cotangent is cut back into one piece per output
  (:func:`unpack`); a single output keeps its shape, so the diagnosis still sees what the
  layer computes;
* the second order: the map :math:`(x, g) \\mapsto \\text{backward}(g, x)` has one output
  per differentiated argument, packed the same way, and its arguments are the
  differentiated ones plus one cotangent ``g`` per output;
* ``order = 2`` checks orders 1 and 2 and returns one report whose second-order rows are
  named ``order2.<argument>`` (:func:`merge_orders`);
* ``modes``: ``"rev"`` is the reverse mode (the backward); ``"fwd"`` (forward mode) is
  not available in this version and is refused with a :class:`~gradcheck.ConfigurationError`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._validate import is_int

__all__ = ["validate_order", "validate_modes", "pack", "unpack", "merge_orders", "with_notes",
           "output_names", "second_order_names", "check_nondeterminism", "SECOND_PREFIX"]

#: Prefix of the second-order rows in a report of ``order=2``.
SECOND_PREFIX = "order2."
ORDERS = (1, 2)
MODES = ("rev", "fwd")


def validate_order(order) -> int:
    if not is_int(order) or order not in ORDERS:
        raise ConfigurationError(f"order must be 1 (the backward) or 2 (also the backward's "
                                 f"own derivatives); got {order!r}")
    return int(order)


def validate_modes(modes) -> tuple:
    """``modes`` as a tuple of ``"rev"``; ``"fwd"`` is refused (not in this version)."""
    items = (modes,) if isinstance(modes, str) else modes
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if not items or not all(isinstance(m, str) for m in items):
        raise ConfigurationError(f"modes must be a non-empty sequence of 'rev' and 'fwd'; "
                                 f"got {modes!r}")
    bad = [m for m in items if m not in MODES]
    if bad:
        raise ConfigurationError(f"modes has unknown mode(s) {bad}; valid: 'rev' (reverse "
                                 f"mode, the backward) and 'fwd' (forward mode)")
    if "fwd" in items:
        raise ConfigurationError(
            f"modes={items!r}: forward mode ('fwd') is not available in this version of "
            f"gradcheck; only the reverse mode is checked: pass modes=('rev',)")
    return tuple(dict.fromkeys(items))


def pack(arrays):
    """One array from several outputs: a single one as it is, else flattened and joined
    (in their common dtype)."""
    arrays = [np.asarray(a) for a in arrays]
    if len(arrays) == 1:
        return arrays[0]
    dtype = np.result_type(*arrays) if arrays else np.float64
    return np.concatenate([a.reshape(-1).astype(dtype, copy=False) for a in arrays]) \
        if arrays else np.zeros(0)


def unpack(vector, shapes, dtypes=None):
    """The inverse of :func:`pack`: one array per shape (cast to ``dtypes`` if given)."""
    vector = np.asarray(vector)
    if len(shapes) == 1:
        out = [vector.reshape(shapes[0])]
    else:
        out, start = [], 0
        flat = vector.reshape(-1)
        for shape in shapes:
            n = math.prod(shape)
            out.append(flat[start:start + n].reshape(shape))
            start += n
    if dtypes is not None:
        out = [o.astype(d, copy=False) for o, d in zip(out, dtypes)]
    return out


def output_names(n: int) -> tuple:
    return ("grad_output",) if n == 1 else tuple(f"grad_output{i}" for i in range(n))


def second_order_names(argnames, n_outputs: int) -> tuple:
    """Arguments of the second-order map: the differentiated ones, then the cotangents."""
    names = tuple(argnames) + output_names(n_outputs)
    if len(set(names)) != len(names):
        raise ConfigurationError(f"argument names must differ from the cotangents' names "
                                 f"{output_names(n_outputs)}; got {tuple(argnames)}")
    return names


def with_notes(report, *notes):
    """The report with ``notes`` appended (its verdict unchanged)."""
    notes = tuple(n for n in notes if n)
    if not notes:
        return report
    return dataclasses.replace(report, notes=tuple(report.notes) + notes)


def merge_orders(first, second):
    """One report of orders 1 and 2: the second's rows renamed ``order2.<name>``."""
    renamed = tuple(dataclasses.replace(a, name=SECOND_PREFIX + a.name)
                    for a in second.arguments)
    notes = tuple(first.notes) + tuple(f"order 2: {n}" for n in second.notes)
    return dataclasses.replace(
        first, passed=bool(first.passed and second.passed),
        arguments=tuple(first.arguments) + renamed, elapsed_s=first.elapsed_s + second.elapsed_s,
        nfev=first.nfev + second.nfev, notes=notes)


def check_nondeterminism(first, second, names, nondet_tol: float):
    """Largest difference between two backward passes at the same point, judged.

    Two runs may differ by rounding (a reordered reduction: 64 ulps of the larger value
    and of the gradient's typical size, the rule the checker applies to ``f``) plus
    ``nondet_tol``. Returns ``(largest difference, None)`` when they agree, else
    ``(largest difference, sentence)``.
    """
    worst, message = 0.0, None
    for name, a, b in zip(names, first, second):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a64.size == 0:
            continue
        diff = np.abs(a64 - b64)
        eps = np.finfo(np.asarray(a).dtype).eps if np.asarray(a).dtype.kind == "f" else \
            np.finfo(np.float64).eps
        mag = np.maximum(np.abs(a64), np.abs(b64))
        typical = float(np.sqrt(np.mean(mag ** 2)))
        allowed = nondet_tol + 64 * eps * (mag + typical)
        j = int(np.argmax(diff - allowed))
        worst = max(worst, float(diff.max()))
        if message is None and diff.reshape(-1)[j] > allowed.reshape(-1)[j]:
            where = tuple(int(k) for k in np.unravel_index(j, a64.shape))
            message = (f"the backward is not deterministic: two passes at the same point give "
                       f"gradients for {name!r} that differ by up to {diff.max():.3g} (at index "
                       f"{where}: {a64.reshape(-1)[j]:.9g} vs {b64.reshape(-1)[j]:.9g}), more "
                       f"than nondet_tol = {nondet_tol:g}; if atomics on a GPU cause it, pass "
                       f"nondet_tol of at least that size")
    return worst, message
