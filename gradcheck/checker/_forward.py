r"""Forward mode's first stages: ``f`` at the point, the probes, and ``f_jvp`` along them.

In forward mode the analytic side is a Jacobian-vector product: ``f_jvp(tangents,
*args)`` returns :math:`\dot y = \sum_k J_k t_k`, shaped like ``f``'s output, for one
tangent :math:`t_k` per argument. Nothing is reduced to a scalar (there is no cotangent):
each JVP is compared with the numerical directional derivative of ``f`` along the same
tangent, entry by entry over the output, so a forward-mode check judges entries of the
Jacobian itself.

This module is the forward counterpart of :mod:`._scalarize` and :mod:`._plan`:

- :func:`scalarize_forward` calls ``f`` twice at the point (the second call proves it
  deterministic and times it, as in reverse mode) and ``f_jvp`` once with every tangent
  zero (its contract checked before any differencing; a linear map returns zero, and
  what else it returns is kept for the diagnosis), and returns a :class:`ForwardProblem`,
  whose :meth:`~ForwardProblem.jvp` calls ``f_jvp`` along one argument's tangent (the
  others' tangents zero) and checks what comes back;
- :func:`plan_forward` plans each argument as reverse mode does (full, sampled, fast or
  skipped, by the same budgets; a probe's call of ``f_jvp`` counted in the predicted
  time);
- a *probe* is one tangent of one argument. In full mode (:class:`ColumnProbes`) probe
  ``k`` moves the elements of color ``k`` together: each element alone without a
  dependency pattern (the JVP is then the Jacobian's column :math:`J e_j`), or several
  elements whose output footprints do not overlap when the pattern is known (each output
  entry then belongs to one column, so one evaluation checks all of those columns -- the
  coloring of :mod:`gradcheck.numdiff._coloring`, read the other way). In sampled mode
  the column probes are those of the sample's elements only, grouped by the same
  colors. In fast mode (:class:`DirectionProbes`) probe ``k`` is a random direction of
  ±1 entries.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from gradcheck._errors import ConfigurationError, UserCodeError
from gradcheck._precision import is_real_float
from gradcheck._record import frozen
from gradcheck.checker._diagnose import TensorRole, role_of
from gradcheck.checker._numeric import is_structure
from gradcheck.checker._plan import Plan, plan_checked
from gradcheck.checker._scalarize import Problem, _as_output, _call, _evaluate_twice

__all__ = ["ForwardProblem", "scalarize_forward", "plan_forward", "ColumnProbes",
           "DirectionProbes", "column_probes"]


@frozen
class ForwardProblem:
    """The check in forward mode after the first calls: what every later stage reads."""

    f: Callable
    f_jvp: Callable
    args: tuple              # the point, as arrays
    argnames: tuple
    y: np.ndarray            # f(*args)
    f_seconds: float         # the time of one call of f
    y_scale: float           # max |y_i|: sets the smallest derivative an output expresses
    role: TensorRole         # the output's layout, for naming causes
    zero_response: np.ndarray | None = None   # f_jvp with every tangent zero (linear: 0)
    jvp_seconds: float = 0.0  # the time of that call of f_jvp (each probe makes one more)
    _measured: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    #: ``f`` as a function of one argument, the others held (the reverse problem's rule).
    of_argument = Problem.of_argument

    def jvp(self, index: int, tangent) -> np.ndarray:
        """``f_jvp`` with ``tangent`` for argument ``index`` and zero for the others,
        checked: numbers, finite, shaped like ``f``'s output."""
        tangents = tuple(
            np.asarray(tangent, dtype=a.dtype).reshape(a.shape) if i == index
            else np.zeros_like(a) for i, a in enumerate(self.args))
        out = _as_output(_call(self.f_jvp, "f_jvp", tangents, *self.args), "f_jvp")
        if out.shape != self.y.shape:
            raise UserCodeError(
                f"f_jvp must return the output tangent, shaped like f's output {self.y.shape}; "
                f"got shape {out.shape} (for a tangent of {self.argnames[index]!r})")
        if out.dtype.kind == "c":
            raise UserCodeError("f_jvp returned complex values; forward mode checks real "
                                "functions of real arguments")
        return out

    def resolution(self, index: int, tangent, seed=None) -> float:
        """The smallest derivative one output entry can express along ``tangent``
        (:math:`\\max_i |y_i| / \\max(\\max_j |x_j t_j|, 1)`: the reverse rule of
        :mod:`._tolerance` with the cotangent's weights replaced by the output's); with
        ``seed``, :math:`|y_i|` raised to the magnitude of the terms output ``i`` is formed
        from, measured (:func:`._formed.row_magnitudes`, once per check): an output that
        cancels to zero has derivatives that round at their scale."""
        moved = np.abs(self.args[index].astype(np.float64).reshape(-1) * tangent)
        scale = self.y_scale
        if seed is not None:
            from gradcheck.checker._formed import measured_once

            rows = measured_once(self._measured, self.f, self.args, self.y, seed)
            top = float(rows.max(initial=0.0))
            scale = max(scale, top if np.isfinite(top) else 0.0)
        return scale / max(float(moved.max(initial=0.0)), 1.0)


def scalarize_forward(f, f_jvp, args, options, output_role=None) -> ForwardProblem:
    """Call ``f`` twice at ``args`` (``options``: the validated options; ``output_role``:
    the output's layout as given, see :func:`._diagnose.role_of`)."""
    timed = options.mode in ("auto", "sampled")
    y, f_seconds = _evaluate_twice(f, args, timed=timed, argnames=options.argnames)
    if y.dtype.kind == "c":
        raise ConfigurationError(f"check_jvp checks real-valued f; f returned {y.dtype} "
                                 f"values: return the real and imaginary parts as two arrays")
    with np.errstate(over="ignore", invalid="ignore"):
        scale = float(np.abs(y.astype(np.float64)).max(initial=0.0))
    problem = ForwardProblem(f, f_jvp, args, options.argnames, y, f_seconds,
                             scale if np.isfinite(scale) else 0.0, role_of(output_role, 0, y))
    # one call with zero tangents: proves f_jvp's contract before any differencing, and
    # a JVP must be linear in the tangents, so what comes back is a term that should not
    # be there (a diagnosis names it). Every probe calls f_jvp once more, so when the
    # budgets need it its time is measured too: the faster of two calls (the first may
    # pay for warm-up, e.g. a framework's forward AD set up on first use)
    zero, seconds = _timed(problem.jvp, 0, np.zeros(args[0].size))
    if timed:
        seconds = min(seconds, _timed(problem.jvp, 0, np.zeros(args[0].size))[1])
    return dataclasses.replace(problem, zero_response=zero, jvp_seconds=seconds)


def _timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def plan_forward(problem: ForwardProblem, options, index: int) -> Plan:
    """The plan of argument ``index``: skipped when it or the output is empty, else the
    reverse mode's rule (:func:`._plan.plan_checked`), each group of elements costing a
    call of ``f_jvp`` beside ``f``'s evaluations."""
    name = options.argnames[index]
    arg = problem.args[index]
    if not is_real_float(arg.dtype):       # bfloat16 (ml_dtypes) is of kind "V"
        raise ConfigurationError(
            f"argument {name!r} has dtype {arg.dtype}; derivatives are checked for real "
            f"arguments: pass the real and imaginary parts as two real arrays")
    if arg.size == 0:
        return Plan(index, name, "skipped", "empty (0 elements)")
    if problem.y.size == 0:
        return Plan(index, name, "skipped", "f's output is empty: no Jacobian entry to check")
    return plan_checked(problem, options, index, call=("f_jvp", problem.jvp_seconds))


# --------------------------------------------------------------------------- probes


class ColumnProbes:
    """Full and sampled mode: probe ``k`` moves the elements of color ``k`` (sorted flat
    indices).

    ``index`` gives the columns probed (flat, default every element: full mode; a
    sample's elements in sampled mode) and ``colors`` one color per entry of ``index``
    (None: every column its own). ``owner_rows`` maps the members of a color to, for
    every output entry, the position in ``members`` of the element it belongs to, or -1
    (the ``owners`` contract of :func:`gradcheck.numdiff.numerical_vjp`).
    """

    def __init__(self, size: int, colors=None, owner_rows: Callable | None = None, *,
                 index=None):
        self.size = size
        self.index = (np.arange(size) if index is None
                      else np.asarray(index, dtype=np.int64).reshape(-1))
        n = self.index.size
        self._colors = (np.arange(n) if colors is None
                        else np.asarray(colors, dtype=np.int64).reshape(-1))
        perm = np.argsort(self._colors, kind="stable")
        self._order = self.index[perm]
        _, first = np.unique(self._colors[perm], return_index=True)
        self._bounds = np.append(first, n)
        self.count = int(self._bounds.size - 1)
        self.colored = self.count < n
        self._owner_rows = owner_rows

    def extended(self, index, colors) -> "ColumnProbes":
        """These probes and more: the columns ``index`` with ``colors`` above every color
        used so far, so probes ``0 .. count - 1`` stay what they were."""
        return ColumnProbes(self.size, np.concatenate([self._colors, colors]),
                            self._owner_rows,
                            index=np.concatenate([self.index, np.asarray(index, np.int64)]))

    def members(self, k: int) -> np.ndarray:
        return np.sort(self._order[self._bounds[k]:self._bounds[k + 1]])

    def tangent(self, k: int) -> np.ndarray:
        t = np.zeros(self.size)
        t[self.members(k)] = 1.0
        return t

    def columns(self, k: int, out_size: int) -> np.ndarray:
        """The column (flat element index) each output entry of probe ``k`` belongs to:
        the member whose footprint holds it, or -1 where no member reaches it."""
        members = self.members(k)
        if members.size == 1 or self._owner_rows is None:
            return np.full(out_size, members[0], dtype=np.int64)
        pos = np.asarray(self._owner_rows(members)).reshape(-1)
        if pos.shape != (out_size,) or pos.dtype.kind not in "iu":
            raise ConfigurationError(
                f"owners(members) must return one integer per output element ({out_size}); "
                f"got an array of shape {pos.shape}, dtype {pos.dtype}")
        return np.where(pos >= 0, members[np.clip(pos, 0, members.size - 1)], -1)

    def describe(self, k: int, name: str, shape) -> str:
        members = self.members(k)
        if members.size == 1:
            return f"element {_index(members[0], shape)} of {name!r} (its Jacobian column)"
        return (f"the {members.size} elements of color {k} of {name!r} at once (columns "
                f"whose outputs do not overlap)")


class DirectionProbes:
    """Fast mode: probe ``k`` is row ``k`` of ``directions`` (entries ±1)."""

    colored = False

    def __init__(self, directions):
        self.directions = np.asarray(directions, dtype=np.float64)
        self.count = int(self.directions.shape[0])

    def tangent(self, k: int) -> np.ndarray:
        return self.directions[k]

    def columns(self, k: int, out_size: int):
        return None          # every element moves: an entry belongs to no one column

    def describe(self, k: int, name: str, shape) -> str:
        return f"random direction {k} of {name!r} (entries ±1)"


def _index(flat: int, shape) -> tuple:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape))


def _pattern_rows(P):
    """``owner_rows`` from a sparse pattern (CSC, outputs x elements)."""
    def owner_rows(members):
        pos = np.full(P.shape[0], -1, dtype=np.int64)
        for p, j in enumerate(members):
            pos[P.indices[P.indptr[j]:P.indptr[j + 1]]] = p
        return pos

    return owner_rows


def column_probes(pattern, size: int, out_size: int, *, index=None,
                  groups=None) -> ColumnProbes:
    """The column groups of an argument: one per element, or the colors of its
    dependency ``pattern`` (a sparse matrix, outputs x elements, or a structure). With
    ``index`` (flat) only those columns, ``groups`` their colors (a sample's groups:
    :class:`~._sample.Sample`, made from the same colors)."""
    if pattern is None:
        return ColumnProbes(size, groups, index=index)
    if is_structure(pattern):
        return ColumnProbes(size, pattern.colors if index is None else groups, pattern.owners,
                            index=index)
    from gradcheck.numdiff._coloring import as_pattern, greedy_colors

    P = as_pattern(pattern, out_size, size)
    return ColumnProbes(size, greedy_colors(P) if index is None else groups, _pattern_rows(P),
                        index=index)
