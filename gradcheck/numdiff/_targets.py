r"""What is being differentiated: which coordinates move together, and who gets the change.

Every public function reduces to the same loop: perturb *sources* (elements of ``x``, or
directions) by multiples ``k h`` of their own step, evaluate ``f`` at all those points in
memory-bounded chunks, and turn each output into per-*quantity* values:

================  ===========================  ==========================================
target            sources                      quantity and its value at a point
================  ===========================  ==========================================
``grad``          elements of ``x``            element ``j``: :math:`f(x + k h_j e_j) - f(x)`
``vjp``           elements (or colors)         element ``j``: :math:`\sum_{i \in rows(j)} R_i \Delta f_i`
``jacobian``      elements (or colors)         entry ``(i, j)``: :math:`\Delta f_i`
``direction``     directions ``v``             :math:`\langle r, \Delta f\rangle` or each :math:`\Delta f_i`
================  ===========================  ==========================================

A direction's points :math:`x + k t v` are rounded element by element, which moves
them off the line by up to half an ulp of each :math:`x_j`: the relative error
:math:`2 \max_j (\mathrm{ulp}(x_j)/|t v_j|)\sqrt{\#\{v_j \ne 0\}}` is reported with
the values and added to the error bar. (Elements' own offsets are exact: steps are
powers of two, and the actual offsets are used when a sum crosses a binade.)

In complex mode the point is :math:`x + i k h` and the value is the imaginary part
(nothing is subtracted: :math:`\operatorname{Im} f(x) = 0`).

Each value comes with ``sigma``, the root-sum-square magnitude of the terms summed into
it (:math:`\sqrt{\sum_i (R_i f_i)^2}` over the rows it depends on, or :math:`|f|`, with
:math:`f_i` the largest magnitude seen at the center and the perturbed points):
the scale of the rounding error every evaluation adds (see :mod:`._model`). The rows an
element depends on are the rows that actually changed when it moved (within its pattern
rows, if a pattern is given); when none changed (a saturated unit), its pattern rows, or
without a pattern the largest row, stand in. With it comes ``spread``, the
root-sum-square over the rows of :math:`R_i \Delta f_i` at the node nearest the center,
before the rows are summed and may cancel: the slope through which the rounding of the
element's own value inside ``f`` reaches the result (:mod:`._model`).

In complex mode an element exactly at zero may also have its points' real parts moved
(``shift``), so that a branch on the real part is seen from both sides (:mod:`._core`).

Sources perturbed together form *groups*: one element each, or one color of a
dependency pattern (:mod:`._coloring`). Groups are stored flat (``order`` sorted by
group, ``bounds`` delimiting them) so that building a chunk of points is a handful of
vectorized index operations whatever the number of elements.
"""

from __future__ import annotations

import numpy as np

from gradcheck._errors import ConfigurationError

from gradcheck.numdiff._coloring import ragged_arange
from gradcheck.numdiff._evaluate import ComplexSteps
from gradcheck.numdiff._grain import _digits, _grain, _significant_bits
from gradcheck.numdiff._runs import Runs, known_layout, layout_of, remember_layout
from gradcheck.numdiff._scratch import scratch as _scratch

__all__ = ["GradTarget", "VjpTarget", "JacobianTarget", "DirectionTarget", "Values"]


#: Values per array of a block of groups the owners route attributes at once: 1 MiB of
#: float64, so that the dozen passes over a block (products, sums, the grain) run from
#: cache. Measured on the bench spec's check (``specs/bench/conv_tanh_24.toml``, median
#: CPU time, one BLAS thread, a loaded host): 2**15 values 34.0 ms, 2**16 31.0 ms, 2**17
#: 30.7 ms, 2**18 30.6 ms (when the route summed by bincounts, 2**18 was the slowest:
#: 52-56 ms against 40-45 ms for 2**16). The sums do not depend on it
#: (``tests/test_numdiff_targets.py``).
BLOCK_VALUES = 2**17


class Values:
    """Values of the selected quantities at each node: ``vals[a, q]`` for node ``ks[a]``."""

    __slots__ = ("vals", "q", "sigma", "u", "src_pos", "nonfinite", "position", "spread",
                 "grain")

    def __init__(self, vals, q, sigma, u, src_pos, position=None, spread=None, grain=None):
        self.vals = vals            # (nk, nq) float64
        self.q = q                  # (nq,) quantity indices
        self.sigma = sigma          # (nq,) magnitude of the summed terms
        self.u = u                  # (nk, nsrc) actual offsets / h (real mode) or None
        self.src_pos = src_pos      # (nq,) position of each quantity's source in ``src``
        self.nonfinite = ~np.isfinite(vals).all(axis=0)
        self.position = position    # (nq,) relative error of the points' positions, or None
        self.spread = spread        # (nq,) root-sum-square over the rows of R_i * (change of
        #                             f_i at the node k = 1), before rows cancel, or None
        self.grain = grain          # (nq,) root-sum-square over the rows of R_i * (the grid
        #                             the row's values lie on, where it tells), or None


class _Target:
    """Shared machinery: grouping, chunked point building, evaluation."""

    contraction = None  # weights r of a contracted output, or None

    def __init__(self, ev, x):
        self.ev = ev
        self.x = x
        self.xf = x.reshape(-1)
        self.f0 = ev.f0.reshape(-1).astype(np.float64)
        #: significand bits of f's values (of the coarser of x's and f's precision)
        self.digits = min(_digits(x.dtype), _digits(ev.f0.dtype))

    #: per output row, a magnitude below which no row's rounding is taken (None: the
    #: rows' own values); set from f's rounding measured at the point (:mod:`._problem`)
    row_floor = None

    def set_row_floor(self, floor):
        """Rows round at least as a value of size ``floor`` would (per output row)."""
        self.row_floor = np.asarray(floor, np.float64).reshape(-1)

    def _mag0(self):
        """|f(x)| per row, at least the measured floor."""
        a = np.abs(self.f0)
        return a if self.row_floor is None else np.maximum(a, self.row_floor)

    def full_mantissa(self, src):
        """Whether each source element uses more than half of its dtype's significand:
        only then does a coarse grid of ``f``'s values tell of rounding (an input such as
        1.0 or 0.375 can make an exact polynomial's values coarse too)."""
        digits = _digits(self.x.dtype)
        return _significant_bits(self.xf[src].astype(np.float64)) > digits / 2

    # -- grouping (singletons unless a coloring is attached) ------------------------
    def groups(self, src):
        """``order`` (sources sorted by group) and ``bounds`` (group delimiters)."""
        return src, np.arange(src.size + 1)

    # -- the points -----------------------------------------------------------------
    def _run(self, src, steps, ks, imag, reduce, shift=None):
        """Evaluate every (group, node) point in chunks and hand each chunk to ``reduce``.

        ``reduce(Y, g0, g1, order, bounds)`` receives outputs for groups ``g0:g1`` (node
        axis second: ``Y[(g - g0) * nk + a]``). ``shift`` (complex mode, per source) moves
        node ``k``'s real part by ``k * shift`` as well.
        """
        order, bounds = self.groups(src)
        sizes = np.diff(bounds)
        nk = len(ks)
        dtype = np.result_type(self.x.dtype, np.complex64) if imag else self.x.dtype
        step_of = np.zeros(self.n_src)
        step_of[src] = steps
        shift_of = None
        if shift is not None:
            shift_of = np.zeros(self.n_src)
            shift_of[src] = shift
        per_chunk = max(1, self.ev.batch_size(np.dtype(dtype).itemsize) // nk)
        kvec = np.asarray(ks, dtype=np.float64)
        self.real_drift = np.full(self.n_src, np.nan)
        # complex steps whose points share x as their real part go to f as parts (no
        # complex array), where f takes them so
        split = imag and shift is None and self.ev.takes_steps()
        for g0 in range(0, sizes.size, per_chunk):
            g1 = min(sizes.size, g0 + per_chunk)
            parts = None
            if split:
                parts = self.ev.parts(self._points(order, bounds, g0, g1, step_of, kvec,
                                                   dtype, imag, split=True))
                split = parts is not None
            if parts is None:
                X = self._points(order, bounds, g0, g1, step_of, kvec, dtype, imag, shift_of)
                parts = self.ev.parts(X) if imag else None
            if parts is not None:   # one real part for every point: no complex array
                re, im = parts
                Y = im.reshape(im.shape[0], -1).astype(np.float64, copy=False)
                self._drift(re.reshape(-1), Y, g0, g1, order, bounds, nk)
            elif imag:
                Y = self.ev(X, quiet_complex=imag)
                Y = Y.reshape(Y.shape[0], -1)
                if not np.iscomplexobj(Y):
                    raise _RealOutput(Y.dtype)
                self._drift(Y.real, Y.imag, g0, g1, order, bounds, nk)
                Y = Y.imag.astype(np.float64)
            else:
                Y = self.ev(X, quiet_complex=imag)
                Y = Y.reshape(Y.shape[0], -1)
                Y = Y.astype(np.float64) - self.f0
            reduce(Y, g0, g1, order, bounds)

    def _drift(self, real, imag, g0, g1, order, bounds, nk):
        """How far the complex evaluation's real part strays from ``f(x)``, relative: per
        point, over the rows its imaginary part reached, ``|R (Re f - f(x))| / |R f(x)|``
        (root-sum-squares), the largest over a group's points, for each member.

        ``real`` and ``imag`` are the chunk's parts ``(B, rows)``; ``real`` may be one
        row that every point shares (``(rows,)``), and is then taken once.

        ``Re f(x + ih)`` equals ``f(x)`` up to :math:`h^2`: what remains is rounding of
        ``f`` -- relative rounding of the value that, where ``f`` forms it from terms
        that cancel, also scales the derivative's (:mod:`._core`).
        """
        w = self.contraction if self.contraction is not None else np.ones(self.f0.size)
        B = imag.shape[0]
        dev2 = np.subtract(real, self.f0)           # in place from here: a chunk is large
        dev2 *= w
        dev2 *= dev2
        if dev2.ndim == 1 and not dev2.any():
            # one real part, equal to f(x): every point's ratio is 0 (0 over its rows'
            # sum, or 0/0, taken as 0 below), whichever rows it reached
            dev, total = np.zeros(B), np.ones(B)
        else:
            mag2 = (self.f0 * w) ** 2
            reached = imag != 0
            if reached.all():   # the usual case: every row moved; nothing to mask
                total = np.full(B, mag2.sum())            # the same sum for every point
                # a shared real part has one sum for every point
                dev = dev2.sum(axis=-1) if dev2.ndim == 2 else np.full(B, dev2.sum())
            else:
                dev = np.where(reached, dev2, 0.0).sum(axis=1)
                total = np.where(reached, mag2, 0.0).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.sqrt(dev / total)
        ratio = np.where(np.isfinite(ratio), ratio, 0.0).reshape(g1 - g0, nk).max(axis=1)
        sizes = np.diff(bounds)[g0:g1]
        members = order[bounds[g0]:bounds[g1]]
        self.real_drift[members] = np.repeat(ratio, sizes)

    def _points(self, order, bounds, g0, g1, step_of, kvec, dtype, imag, shift_of=None, *,
                split=False):
        """The chunk's points ``(B, *x.shape)``; with ``split`` (complex steps, no
        ``shift_of``) as their parts, :class:`~._evaluate.ComplexSteps`: ``x`` and the
        imaginary parts, each the complex array's to the bit."""
        nk = kvec.size
        sizes = np.diff(bounds)[g0:g1]
        B = sizes.size * nk
        counts = np.repeat(sizes, nk)
        starts = np.repeat(bounds[g0:g1], nk)
        cols = order[ragged_arange(starts, counts)]
        rows = np.repeat(np.arange(B), counts)
        k = np.repeat(np.tile(kvec, sizes.size), counts)
        delta = k * step_of[cols]
        if split:     # as below: the step's imaginary part in x's precision (-0 as +0)
            im = np.zeros((B,) + self.x.shape, dtype=self.x.dtype)
            steps = delta.astype(self.x.dtype) + 0.0
            im.reshape(B, -1)[rows, cols] = steps
            return ComplexSteps(self.x, im, float(np.abs(steps).max(initial=0.0)))
        X = np.empty((B,) + self.x.shape, dtype=dtype)
        X[...] = self.x
        Xf = X.reshape(B, -1)
        if imag:
            real = self.xf[cols]
            if shift_of is not None:
                real = real + (k * shift_of[cols]).astype(self.x.dtype)
            Xf[rows, cols] = real + 1j * delta.astype(self.x.dtype)
        else:
            Xf[rows, cols] = self.xf[cols] + delta.astype(self.x.dtype)
        return X

    def offsets(self, src, steps, ks):
        """Actual offsets over the step, ``(fl(x + k h) - x) / h``, per node and source."""
        xs = self.xf[src]
        k = np.asarray(ks, dtype=np.float64)[:, None]
        moved = (xs + (k * steps).astype(self.x.dtype)).astype(np.float64)
        return (moved - xs.astype(np.float64)) / steps


class _RealOutput(Exception):
    """f returned real values for complex input (complex step not applicable)."""

    def __init__(self, dtype):
        super().__init__(f"f returned {dtype} for complex input")


class GradTarget(_Target):
    """Scalar ``f``: one element per point, the value is ``f(x + k h e_j) - f(x)``."""

    def __init__(self, ev, x):
        super().__init__(ev, x)
        self.n_src = self.n_q = x.size
        self.q_src = np.arange(x.size)

    def values(self, src, steps, ks, imag, shift=None):
        nk = len(ks)
        vals = np.empty((nk, src.size))

        def reduce(Y, g0, g1, order, bounds):
            vals[:, g0:g1] = Y[:, 0].reshape(g1 - g0, nk).T

        self._run(src, steps, ks, imag, reduce, shift)
        sigma = (np.abs(vals).max(axis=0) if imag
                 else np.abs(self.f0[0] + vals).max(axis=0, initial=float(self._mag0()[0])))
        u = None if imag else self.offsets(src, steps, ks)
        grain = _grain(vals.T[:, :, None], ks, imag, self.digits)[:, 0]
        if not imag:
            grain = np.where(self.full_mantissa(src), grain, 0.0)
        return Values(vals, src, sigma, u, np.arange(src.size), spread=_unit(vals, ks),
                      grain=grain)


class VjpTarget(_Target):
    r"""``C = <R, f>`` per element, attributing each changed row to its element."""

    def __init__(self, ev, x, R, pattern=None, colors=None, owners=None):
        super().__init__(ev, x)
        self.n_src = self.n_q = x.size
        self.q_src = np.arange(x.size)
        self.R = R.reshape(-1).astype(np.float64)
        self.contraction = self.R
        self.P = pattern
        self.colors = colors
        self.owners = owners
        self._checked_owners = {}
        self._sorted_weights = {}
        self._set_magnitudes()

    def set_row_floor(self, floor):
        super().set_row_floor(floor)
        self._set_magnitudes()

    def _set_magnitudes(self):
        self.Rf2 = (self.R * self._mag0()) ** 2
        if self.P is not None:
            self.sig2_pattern = self.P.T.astype(np.float64) @ self.Rf2

    def _owned(self, members):
        """The layout of the rows' owners among ``members`` (:func:`._runs.layout_of`:
        runs, or the owned rows sorted by member), from the caller's table (checked;
        negative for none).

        A read-only array (a structure's table for a whole color, the same for many
        colors and in every check, if as a new array) is checked and read once per number
        of members: within a call by its identity (its values cannot have changed
        through it), across calls by its values (:func:`._runs.known_layout`)."""
        own = np.asarray(self.owners(members))
        fixed = not own.flags.writeable
        if fixed:
            known = self._checked_owners.get((id(own), members.size))
            if known is not None and known[0] is own:
                return known[1]
            lay = (known_layout(own, members.size) if own.shape == (self.ev.out_size,)
                   else None)
        if not fixed or lay is None:
            own, lowest = self._check_owned(own, members)
            bins = (own.astype(np.int64, copy=False) if lowest >= 0
                    else np.where(own >= 0, own, members.size))
            changes = int(np.count_nonzero(bins[1:] != bins[:-1]))
            lay = layout_of(bins, members.size, changes)
            if fixed:
                remember_layout(own, members.size, lay)
        if fixed:       # the array itself is kept: its id is not reused
            self._checked_owners[(id(own), members.size)] = (own, lay)
        return lay

    def _weights_of(self, lay):
        """``R`` at a :class:`._runs.Sorted` layout's rows, in its order (kept for the
        layouts seen in this target: colors of one residue share one)."""
        got = self._sorted_weights.get(id(lay))
        if got is None or got[0] is not lay:
            got = self._sorted_weights[id(lay)] = (lay, self.R.take(lay.rows))
        return got[1]

    def _check_owned(self, own, members):
        if own.shape != (self.ev.out_size,) or own.dtype.kind not in "iu":
            raise ConfigurationError(
                f"owners(members) must return one integer per output element "
                f"({self.ev.out_size}); got an array of shape {own.shape}, dtype {own.dtype}")
        top = own.max(initial=-1)
        if top >= members.size:
            raise ConfigurationError(
                f"owners(members) must return positions in members (< {members.size}) or -1; "
                f"got {int(top)}")
        return own, own.min(initial=0)

    def groups(self, src):
        if self.colors is None:
            return super().groups(src)
        c = self.colors[src]
        perm = np.argsort(c, kind="stable")
        order = src[perm]
        _, first = np.unique(c[perm], return_index=True)
        return order, np.append(first, order.size)

    def values(self, src, steps, ks, imag, shift=None):
        nk = len(ks)
        pos = np.empty(self.n_src, dtype=np.int64)
        pos[src] = np.arange(src.size)
        vals = np.zeros((nk, src.size))    # 0: a member that owns no row
        sig2 = np.zeros(src.size)
        spread2 = np.zeros(src.size)
        grain2 = np.zeros(src.size)
        a1 = _unit_node(ks)
        fallback_owned = np.zeros(src.size)
        Rf2, R, P, f0 = self.Rf2, self.R, self.P, self.f0

        n_out = f0.size
        #: groups attributed together (a member's sums do not depend on how many): each
        #: of the block's arrays stays within BLOCK_VALUES (the several passes over it run
        #: from cache)
        per_block = max(1, BLOCK_VALUES // max(1, nk * n_out))

        scratch = _scratch()    # the blocks' work arrays, reused (:mod:`._scratch`)

        def by_runs(Y, g0, b0, b1, order, bounds, lay):
            """The owners route for groups ``b0:b1`` sharing the runs ``lay``: each run
            summed where it lies, then each member's runs (:mod:`._runs`)."""
            G = b1 - b0
            cols = pos[order[bounds[b0]:bounds[b1]]]
            Yk = Y[(b0 - g0) * nk:(b1 - g0) * nk].reshape(G, nk, n_out)
            block = np.multiply(Yk, R, out=scratch("block", Yk.shape))   # (G, nk, rows)
            vals[:, cols] = lay.sums(block).transpose(1, 0, 2).reshape(nk, -1)
            grain = _grain(Yk, ks, imag, self.digits, scratch)
            if grain.any():     # else every sum is 0, as grain2 holds already
                grain *= R
                grain2[cols] = lay.sums(grain, square=True).reshape(-1)
            if imag:
                squares = lay.sums(block, square=True)          # (G, nk, members)
                sig2[cols] = squares.max(axis=1).reshape(-1)
                spread2[cols] = squares[:, a1].reshape(-1)
                return
            mag = (Yk != 0) * np.maximum(Rf2, (R * (f0 + Yk)) ** 2)
            sig2[cols] = lay.sums(mag).max(axis=1).reshape(-1)
            fallback_owned[cols] = np.tile(lay.sums(Rf2), G)
            spread2[cols] = lay.sums(block[:, a1], square=True).reshape(-1)

        def by_members(Y, g0, b0, b1, order, bounds, lays):
            """The owners route for groups ``b0:b1`` (``lays``: each group's
            :class:`._runs.Sorted`): their owned rows gathered member by member, group
            after group, and each member's segment summed."""
            at = np.cumsum([0] + [lay.rows.size for lay in lays])
            starts = np.concatenate([lay.starts + at[i] for i, lay in enumerate(lays)])
            dest = np.concatenate([pos[order[bounds[b0 + i]:bounds[b0 + i + 1]]][lay.present]
                                   for i, lay in enumerate(lays)])
            if not starts.size:     # no member owns a row: every sum is 0, as held
                return
            T = int(at[-1])
            Ys = scratch("gathered", (nk, T))                   # (nk, owned rows)
            Rs = scratch("weights", (T,))
            Yk = Y[(b0 - g0) * nk:(b1 - g0) * nk].reshape(b1 - b0, nk, n_out)
            for i, lay in enumerate(lays):     # (the rows are valid indices: "wrap" is
                # never used, but spares take the copy it makes for ``out`` otherwise)
                Rs[at[i]:at[i + 1]] = self._weights_of(lay)
                for a in range(nk):
                    Yk[i, a].take(lay.rows, out=Ys[a, at[i]:at[i + 1]], mode="wrap")
            block = np.multiply(Ys, Rs, out=scratch("block", Ys.shape))
            vals[:, dest] = np.add.reduceat(block, starts, axis=1)
            grain = _grain(Ys[None], ks, imag, self.digits, scratch)[0]
            if grain.any():     # else every sum is 0, as grain2 holds already
                grain *= Rs
                grain *= grain
                grain2[dest] = np.add.reduceat(grain, starts)
            if imag:
                block *= block
                squares = np.add.reduceat(block, starts, axis=1)
                sig2[dest] = squares.max(axis=0)
                spread2[dest] = squares[a1]
                return
            rows = np.concatenate([lay.rows for lay in lays])
            Rf2s, f0s = Rf2.take(rows), f0.take(rows)
            mag = (Ys != 0) * np.maximum(Rf2s, (Rs * (f0s + Ys)) ** 2)
            sig2[dest] = np.add.reduceat(mag, starts, axis=1).max(axis=0)
            fallback_owned[dest] = np.add.reduceat(Rf2s, starts)
            spread2[dest] = np.add.reduceat(block[a1] ** 2, starts)

        def reduce(Y, g0, g1, order, bounds):
            if self.owners is not None:  # attribution by the caller's structure
                lays = [self._owned(order[bounds[g]:bounds[g + 1]]) for g in range(g0, g1)]
                b0 = g0
                while b0 < g1:      # blocks of groups alike: the same runs, or sorted
                    lay = lays[b0 - g0]
                    runs = isinstance(lay, Runs)
                    b1 = b0 + 1
                    while b1 < g1 and b1 - b0 < per_block and (
                            lays[b1 - g0] is lay if runs
                            else not isinstance(lays[b1 - g0], Runs)):
                        b1 += 1
                    if runs:
                        by_runs(Y, g0, b0, b1, order, bounds, lay)
                    else:
                        by_members(Y, g0, b0, b1, order, bounds, lays[b0 - g0:b1 - g0])
                    b0 = b1
                return
            if P is None:               # one element per point
                v = Y @ R
                s2 = (Y * Y) @ (R * R) if imag else _changed_rows(Y, R, f0, Rf2)
                cols = pos[order[g0:g1]]
                vals[:, cols] = v.reshape(g1 - g0, nk).T
                sig2[cols] = np.maximum(sig2[cols], s2.reshape(g1 - g0, nk).max(axis=1))
                Yk = Y.reshape(g1 - g0, nk, -1)
                Y1 = Yk[:, a1]
                spread2[cols] = (Y1 * Y1) @ (R * R)
                grain = _grain(Yk, ks, imag, self.digits)
                grain2[cols] = (grain * grain) @ (R * R)
                return
            for g in range(g0, g1):
                members = order[bounds[g]:bounds[g + 1]]
                sub = P[:, members]
                rows, ptr = sub.indices, sub.indptr
                Yb = Y[(g - g0) * nk:(g - g0 + 1) * nk][:, rows]
                block = Yb * R[rows]
                cols = pos[members]
                vals[:, cols] = _segment_sum(block, ptr)
                mag = block * block if imag else (Yb != 0) * np.maximum(
                    Rf2[rows], (R[rows] * (f0[rows] + Yb)) ** 2)
                sig2[cols] = _segment_sum(mag, ptr).max(axis=0)
                spread2[cols] = _segment_sum(block[a1:a1 + 1] ** 2, ptr)[0]
                grain = _grain(Yb[None], ks, imag, self.digits)[0] * R[rows]
                grain2[cols] = _segment_sum((grain * grain)[None], ptr)[0]

        self._run(src, steps, ks, imag, reduce, shift)
        if not imag:    # no row changed (saturation): the rows it may reach, or the largest
            if self.owners is not None:
                fallback = fallback_owned
            else:
                fallback = self.sig2_pattern[src] if P is not None else Rf2.max(initial=0.0)
            sig2 = np.where(sig2 > 0, sig2, fallback)
        u = None if imag else self.offsets(src, steps, ks)
        grain = np.sqrt(grain2)
        if not imag:
            grain = np.where(self.full_mantissa(src), grain, 0.0)
        return Values(vals, src, np.sqrt(sig2), u, np.arange(src.size),
                      spread=np.sqrt(spread2) / abs(ks[a1]), grain=grain)


def _unit_node(ks):
    """Index of the node nearest the center (the change there is the most local)."""
    return int(np.argmin(np.abs(np.asarray(ks, dtype=np.float64))))


def _unit(vals, ks):
    """|change at the node nearest the center| per unit of k."""
    a1 = _unit_node(ks)
    return np.abs(vals[a1]) / abs(ks[a1])


def _changed_rows(Y, R, f0, Rf2=None):
    """Sum over the rows that changed of ``(R_i f_i)^2``, ``f_i`` the larger of the two values
    (``Rf2``: ``(R_i f_i(x))^2`` with the rows' floor, when given)."""
    mag = np.maximum((R * f0) ** 2 if Rf2 is None else Rf2, (R * (f0 + Y)) ** 2)
    return np.where(Y != 0, mag, 0.0).sum(axis=-1)


def _segment_sum(block, ptr):
    """Column sums of ``block`` over the segments ``ptr[j]:ptr[j+1]`` (empty ones are 0)."""
    out = np.zeros((block.shape[0], ptr.size - 1))
    nonempty = np.diff(ptr) > 0
    if block.shape[1]:
        sums = np.add.reduceat(block, ptr[:-1][nonempty], axis=1)
        out[:, nonempty] = sums
    return out


class JacobianTarget(VjpTarget):
    """Every entry ``(i, j)``: quantity ``q = j * n_out + i`` (dense) or the pattern's nonzeros."""

    set_row_floor = _Target.set_row_floor

    def __init__(self, ev, x, pattern=None, colors=None):
        _Target.__init__(self, ev, x)
        self.n_src = x.size
        self.n_out = self.f0.size
        self.P = pattern
        self.colors = colors
        if pattern is None:
            self.n_q = self.n_src * self.n_out
            self.q_src = np.repeat(np.arange(self.n_src), self.n_out)
        else:
            self.n_q = pattern.nnz
            self.q_src = np.repeat(np.arange(self.n_src), np.diff(pattern.indptr))

    def values(self, src, steps, ks, imag, shift=None):
        nk, n_out, P = len(ks), self.n_out, self.P
        if P is None:
            q = (src[:, None] * n_out + np.arange(n_out)).reshape(-1)
            start = np.arange(src.size) * n_out
        else:
            counts = np.diff(P.indptr)[src]
            q = ragged_arange(P.indptr[src], counts)
            start = np.cumsum(counts) - counts
        qpos = np.empty(self.n_src, dtype=np.int64)
        qpos[src] = start
        vals = np.empty((nk, q.size))
        grain = np.zeros(q.size)

        def reduce(Y, g0, g1, order, bounds):
            for g in range(g0, g1):
                members = order[bounds[g]:bounds[g + 1]]
                block = Y[(g - g0) * nk:(g - g0 + 1) * nk]
                if P is None:
                    j = members[0]
                    vals[:, qpos[j]:qpos[j] + n_out] = block
                    grain[qpos[j]:qpos[j] + n_out] = _grain(block[None], ks, imag, self.digits)[0]
                else:
                    n = np.diff(P.indptr)[members]
                    dest = ragged_arange(qpos[members], n)
                    picked = block[:, P.indices[ragged_arange(P.indptr[members], n)]]
                    vals[:, dest] = picked
                    grain[dest] = _grain(picked[None], ks, imag, self.digits)[0]

        self._run(src, steps, ks, imag, reduce, shift)
        rows = (q % n_out) if P is None else P.indices[q]
        sigma = (np.abs(vals).max(axis=0) if imag
                 else np.maximum(self._mag0()[rows], np.abs(self.f0[rows] + vals).max(axis=0)))
        u = None if imag else self.offsets(src, steps, ks)
        src_pos = np.repeat(np.arange(src.size), np.diff(np.append(start, q.size)))
        if not imag:
            grain = np.where(self.full_mantissa(src)[src_pos], grain, 0.0)
        return Values(vals, q, sigma, u, src_pos, spread=_unit(vals, ks), grain=grain)


# ----------------------------------------------------------------------- directions


class DirectionTarget(_Target):
    """Sources are directions ``V[s]``; the point is ``x + k t_s V[s]``.

    With ``contraction`` ``r`` the quantity is :math:`\\langle r, \\Delta f\\rangle` (one
    per direction), otherwise every output of every direction (``q = s * n_out + i``).
    """

    def __init__(self, ev, x, V, contraction=None):
        super().__init__(ev, x)
        self.V = V.reshape(V.shape[0], -1)
        self.n_src = self.V.shape[0]
        self.n_out = self.f0.size
        self.contraction = None if contraction is None else contraction.reshape(-1).astype(np.float64)
        per = 1 if contraction is not None else self.n_out
        self.n_q = self.n_src * per
        self.q_src = np.repeat(np.arange(self.n_src), per)

    def _points(self, order, bounds, g0, g1, step_of, kvec, dtype, imag, shift_of=None, *,
                split=False):
        src = order[g0:g1]
        t = (kvec[None, :] * step_of[src][:, None]).reshape(-1)        # (B,)
        V = np.repeat(self.V[src], kvec.size, axis=0)
        if split:     # the parts of the complex array below, to the bit (-0 as +0)
            im = (t[:, None] * V).astype(self.x.dtype) + 0.0
            return ComplexSteps(self.x, im.reshape((-1,) + self.x.shape))
        if imag:
            X = self.xf[None, :] + 1j * (t[:, None] * V)
        else:
            X = self.xf[None, :] + t[:, None] * V
        return X.astype(dtype).reshape((-1,) + self.x.shape)

    def values(self, src, steps, ks, imag, shift=None):
        nk, r = len(ks), self.contraction
        per = 1 if r is not None else self.n_out
        vals = np.empty((nk, src.size * per))
        sig2 = np.zeros(src.size * per)

        def reduce(Y, g0, g1, order, bounds):
            Yk = Y.reshape(g1 - g0, nk, -1)
            if r is not None:
                vals[:, g0:g1] = (Yk @ r).T
                s2 = (Yk * Yk) @ (r * r) if imag else _changed_rows(
                    Yk, r, self.f0, None if self.row_floor is None else (r * self._mag0()) ** 2)
                sig2[g0:g1] = s2.max(axis=1)
            else:
                vals[:, g0 * per:g1 * per] = Yk.transpose(1, 0, 2).reshape(nk, -1)
                if imag:
                    sig2[g0 * per:g1 * per] = (Yk * Yk).max(axis=1).reshape(-1)

        self._run(src, steps, ks, imag, reduce, shift)
        if not imag:
            if r is not None:
                sig2 = np.where(sig2 > 0, sig2, ((r * self._mag0()) ** 2).max(initial=0.0))
            else:
                sig2 = np.maximum(np.tile(self._mag0() ** 2, src.size),
                                  ((vals + np.tile(self.f0, src.size)) ** 2).max(axis=0))
        q = (src[:, None] * per + np.arange(per)).reshape(-1)
        position = None
        if not imag:     # x + t v is rounded per element; the derivative inherits it
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.spacing(np.abs(self.xf)).astype(np.float64) / np.abs(
                    steps[:, None] * self.V[src])
            rel = np.where(self.V[src] != 0, rel, 0.0)
            position = np.repeat(2 * rel.max(axis=1) * np.sqrt((self.V[src] != 0).sum(axis=1)), per)
        return Values(vals, q, np.sqrt(sig2), None, np.repeat(np.arange(src.size), per),
                      position)
