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
* ``modes``: ``"rev"`` is the reverse mode (the backward, :func:`gradcheck.check_vjp`),
  ``"fwd"`` the forward mode (the JVP, :func:`gradcheck.check_jvp`); each requested mode
  is one check of the same map, the forward rows named ``fwd.<argument>``
  (:func:`mode_options` hands each mode the options it takes, :func:`merge_reports`
  makes one report of the parts).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._precision import is_real_float, machine_eps
from gradcheck._validate import is_int
from gradcheck.checker._tolerance import Tolerance, reduction_growth

__all__ = ["validate_order", "validate_modes", "pack", "unpack", "merge_orders", "with_notes",
           "output_names", "second_order_names", "tangent_names", "check_nondeterminism",
           "SECOND_PREFIX", "FORWARD_PREFIX", "mode_options", "check_in_mode",
           "merge_reports", "CUT_CAUSE", "name_cut_rows", "cut_where", "undo_residuals",
           "reproduces", "recording"]

#: Prefix of the second-order rows in a report of ``order=2``.
SECOND_PREFIX = "order2."
#: Prefix of the forward-mode rows (``modes`` with ``"fwd"``).
FORWARD_PREFIX = "fwd."
ORDERS = (1, 2)
MODES = ("rev", "fwd")
#: Options of one mode only: reverse mode's cotangent and roles, forward mode's output role.
REVERSE_ONLY = ("cotangent", "roles")
FORWARD_ONLY = ("output_role",)


def validate_order(order) -> int:
    if not is_int(order) or order not in ORDERS:
        raise ConfigurationError(f"order must be 1 (the backward) or 2 (also the backward's "
                                 f"own derivatives); got {order!r}")
    return int(order)


def validate_modes(modes) -> tuple:
    """``modes`` as a tuple of distinct ``"rev"`` / ``"fwd"``, in the order given."""
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
    return tuple(dict.fromkeys(items))


def mode_options(options, mode: str, modes) -> dict:
    """The options ``mode`` takes: those of one mode only are refused when no requested
    mode takes them, and left out of the other mode's check."""
    for keys, owner in ((REVERSE_ONLY, "rev"), (FORWARD_ONLY, "fwd")):
        for key in keys:
            if options.get(key) is not None and owner not in modes:
                raise ConfigurationError(
                    f"{key} applies to {'reverse' if owner == 'rev' else 'forward'} mode "
                    f"({owner!r}) only; modes={tuple(modes)!r} does not check it")
    drop = FORWARD_ONLY if mode == "rev" else REVERSE_ONLY
    return {k: v for k, v in options.items() if k not in drop}


def check_in_mode(ad_mode: str, f, derivative, args, /, source=None, **options):
    """:func:`~gradcheck.check_vjp` (``"rev"``, ``derivative`` a VJP) or
    :func:`~gradcheck.check_jvp` (``"fwd"``, ``derivative`` a JVP) of ``f`` at ``args``.
    ``source`` names the derivative in messages (``"JAX's VJP"``): the user wrote no
    ``f_vjp``."""
    from gradcheck.checker import check_jvp, check_vjp

    if source is not None:
        inner = derivative

        def derivative(*a):
            return inner(*a)

        derivative.gradient_source = source

    return (check_vjp if ad_mode == "rev" else check_jvp)(f, derivative, args, **options)


def tangent_names(argnames) -> tuple:
    """Arguments of the JVP's map ``(x, v) -> J v``: the checked ones, then their tangents."""
    return tuple(argnames) + tuple(f"tangent.{a}" for a in argnames)


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


def merge_reports(parts):
    """One report of several checks: ``parts`` are ``(prefix, label, report)``; every row
    is renamed ``prefix + name`` and every note marked ``label:``; the first part gives
    the name, seed and mode."""
    (_, _, first), *_ = parts
    arguments, notes, modes = [], [], []
    for prefix, label, report in parts:
        arguments += [dataclasses.replace(a, name=prefix + a.name) for a in report.arguments]
        notes += [f"{label}: {n}" if label else n for n in report.notes]
        modes += report.ad_mode.split("+")
    return dataclasses.replace(
        first, passed=all(r.passed for _, _, r in parts), arguments=tuple(arguments),
        elapsed_s=sum(r.elapsed_s for _, _, r in parts), nfev=sum(r.nfev for _, _, r in parts),
        notes=tuple(notes), ad_mode="+".join(sorted(set(modes))))


#: The diagnosis of a second-order row whose argument the backward cuts from the
#: framework's graph (a detach, ``no_grad``, ``once_differentiable``, ``stop_gradient``).
CUT_CAUSE = "double_backward_cut"


def name_cut_rows(report, cut, message, evidence):
    """``report`` with each failing row whose argument is in ``cut`` diagnosed
    :data:`CUT_CAUSE`: ``message(row)`` is its sentence, ``evidence`` (a dict) its numbers,
    with ``"argument"`` added. Passing rows and rows of other arguments are unchanged (a
    backward that does not depend on an argument is cut from it and right)."""
    from gradcheck.checker._report import Diagnosis

    rows = []
    for row in report.arguments:
        if row.name in cut and not row.passed:
            row = dataclasses.replace(row, diagnosis=Diagnosis(
                CUT_CAUSE, message(row), {"argument": row.name, **evidence}))
        rows.append(row)
    return dataclasses.replace(report, arguments=tuple(rows))


def cut_where(row) -> str:
    """The numbers of a cut row, for its sentence."""
    return (f"{row.n_failed} of {row.n_checked} elements fail; at {row.worst_index} the "
            f"numerical derivative of the backward is {row.numeric_at_worst:.6g}")


def reproduces(row, again) -> bool:
    """Whether ``again`` (a derivative recomputed with a recorded cotangent) is ``row``'s
    analytic values: the cotangent is the one the row was judged with."""
    a = row.analytic
    return a is not None and np.shape(a) == np.shape(again) and bool(
        np.allclose(again, a, rtol=1e-6, atol=1e-300))


def undo_residuals(row, again, undone):
    """``(max |A - N|, max |U - N|)`` over ``row``'s usable elements (finite numerical
    value, not at a kink): ``A`` its analytic values, ``N`` its numerical ones, ``U``
    ``undone`` (the framework's derivative with the backward's cuts undone). None unless
    the row holds its arrays and ``again`` (the derivative recomputed with the same
    cotangent) reproduces ``A`` -- the proof that ``U`` is comparable."""
    a, n = row.analytic, row.numeric
    if n is None or undone is None or not reproduces(row, again) or \
            np.shape(a) != np.shape(undone):
        return None
    usable = np.isfinite(n)
    if row.nondifferentiable_mask is not None:
        usable &= ~np.asarray(row.nondifferentiable_mask, bool)
    if not usable.any():
        return None
    a64, n64, u64 = (np.asarray(v, np.float64) for v in (a, n, undone))
    return (float(np.max(np.abs(a64 - n64)[usable])),
            float(np.max(np.abs(u64 - n64)[usable])))


def recording(vjp, calls, keep=4):
    """``vjp``, keeping the cotangent and point of its first ``keep`` calls in ``calls``
    (the checker calls it more than once: the judged cotangent, then its own tests)."""
    def call(cotangent, *arrays):
        if len(calls) < keep:
            calls.append((np.array(cotangent, copy=True),
                          tuple(np.array(a, copy=True) for a in arrays)))
        return vjp(cotangent, *arrays)
    return call


def merge_orders(first, second):
    """One report of orders 1 and 2: the second's rows renamed ``order2.<name>``."""
    return merge_reports([("", "", first), (SECOND_PREFIX, "order 2", second)])


def check_nondeterminism(first, second, names, nondet_tol: float, length: int = 0):
    """Largest difference between two backward passes at the same point, judged.

    Two runs may differ by rounding (a reordered reduction: the ulps two calls of a
    linear map may differ by -- ``linear_ulps`` of the dtype's tolerance rule, 64 in
    float32 and float64, 16 in float16 and bfloat16 -- of the larger value and of the
    gradient's typical size, grown for sums of up to ``length`` terms as
    :func:`gradcheck.checker._tolerance.reduction_growth` says -- the rule the checker
    applies to ``f``) plus ``nondet_tol``. Returns ``(largest difference, None)`` when
    they agree, else ``(largest difference, sentence)``.
    """
    worst, message = 0.0, None
    for name, a, b in zip(names, first, second):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a64.size == 0:
            continue
        diff = np.abs(a64 - b64)
        dt = np.asarray(a).dtype
        eps = machine_eps(dt)                           # bfloat16's too (ml_dtypes)
        ulps = Tolerance.for_dtype(dt if is_real_float(dt) else np.float64).rule.linear_ulps
        mag = np.maximum(np.abs(a64), np.abs(b64))
        typical = float(np.sqrt(np.mean(mag ** 2)))
        allowed = nondet_tol + ulps * reduction_growth(length) * eps * (mag + typical)
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
