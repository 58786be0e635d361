r"""A generic cause of matrix products: the other operand used untransposed, or transposed.

A layer ``y = x @ w`` has ``dx = g wᵀ``; written ``g w`` (w square, so the shapes agree)
the gradient is wrong everywhere, and no layout of ``N`` gives it: ``A = g w`` is not
``N = g wᵀ`` moved around. The claim is made from the cotangent ``R`` and ``N`` alone:

- on the right, ``N = R M`` (the rows of ``R`` and of the gradient matched: every axis
  but the last, flattened) for one square matrix ``M``, recovered from ``N`` by least
  squares, :math:`M = R^{+} N`; the claim is ``A = R Mᵀ``;
- on the left, ``N = M R`` per leading index (attention's ``dV = Pᵀ g``: every axis but
  the last two is a batch), :math:`M = N R^{+}`; the claim is ``A = Mᵀ R``.

``M`` is first sought among ``f``'s arguments: a square 2-D argument ``V`` with
``N = R V`` or ``N = R Vᵀ`` within the tolerance gives ``M`` outright, whatever the
batch. Else ``M`` is fitted to ``N``, never to ``A``: the claim about ``A`` has no free
parameter. That needs ``R``'s rows (columns, on the left) to span ``M``'s side -- as
many rows as ``M`` has, of full rank -- else ``M`` is not known from one cotangent and
the claim is not tried. Either way ``N = R M`` must itself hold within the tolerance (a
backward that is not one product with ``R`` has no operand to transpose). ``N``'s uncertainty is carried into
the prediction, :math:`|R|\,(|R^{+}|\,\tau)^\mathsf{T}` (on the left, the mirror image).

When another argument of ``f`` equals ``M`` or ``Mᵀ`` the message names it and writes
the product both ways (``g @ w`` where ``g @ w.T`` belongs); otherwise it names ``M`` by
its shape (a matrix the forward computes, such as attention's ``P``).
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from gradcheck.checker._fit import SLACK, fit_claim

__all__ = ["fit_operand_transposed"]

#: Largest side of ``M`` tried (its pseudo-inverse is formed).
MAX_SIDE = 256


def _solve_right(r2, n2, t2):
    """``(M, P, spread, premise)`` for ``N = R M``: ``M = R⁺ N``, ``P = R Mᵀ``."""
    pinv = np.linalg.pinv(r2)
    m = pinv @ n2
    spread_m = np.abs(pinv) @ t2                      # |δM| from N's tolerance
    predicted = r2 @ m.T
    spread = np.abs(r2) @ spread_m.T
    premise = r2 @ m                                  # N again, from M
    premise_spread = np.abs(r2) @ spread_m
    return m, predicted, spread, premise, premise_spread


def _full_rank(mat, side) -> bool:
    """``mat`` has rank ``side`` with a condition number a float64 product survives."""
    s = np.linalg.svd(mat, compute_uv=False)
    return s.size >= side and s[0] > 0 and s[side - 1] > 1e-8 * s[0]


def _right(ev, r):
    """The right-hand claim, on 2-D views: rows of ``A`` and of ``R`` matched."""
    a_shape, r_shape = ev.a.shape, r.shape
    if len(a_shape) < 2 or a_shape[:-1] != r_shape[:-1] or a_shape[-1] != r_shape[-1]:
        return None
    side = a_shape[-1]
    rows = int(np.prod(a_shape[:-1]))
    if side < 2 or side > MAX_SIDE or rows < side:
        return None
    r2 = r.reshape(rows, side)
    if not _full_rank(r2, side):
        return None
    m, p, spread, premise, premise_spread = _solve_right(
        r2, ev.n.reshape(rows, side), ev.tol.reshape(rows, side))
    return m, p.reshape(a_shape), spread.reshape(a_shape), premise.reshape(a_shape), \
        premise_spread.reshape(a_shape), "right"


def _left(ev, r):
    """The left-hand claim, per leading index: ``N_b = M_b R_b``."""
    a_shape, r_shape = ev.a.shape, r.shape
    if len(a_shape) < 2 or a_shape != r_shape:
        return None
    side, cols = a_shape[-2], a_shape[-1]
    if side < 2 or side > MAX_SIDE or cols < side:
        return None
    lead = a_shape[:-2]
    r3 = r.reshape(-1, side, cols)
    n3, t3 = ev.n.reshape(r3.shape), ev.tol.reshape(r3.shape)
    ms, ps, spreads, premises, pspreads = [], [], [], [], []
    for rb, nb, tb in zip(r3, n3, t3):
        if not _full_rank(rb, side):
            return None
        # N_b = M_b R_b  <=>  N_bᵀ = R_bᵀ M_bᵀ: the right-hand solve, transposed
        mt, pt, st, qt, qst = _solve_right(rb.T, nb.T, tb.T)
        ms.append(mt.T)
        ps.append(pt.T)
        spreads.append(st.T)
        premises.append(qt.T)
        pspreads.append(qst.T)
    m = np.stack(ms).reshape(*lead, side, side)
    return (m, np.stack(ps).reshape(a_shape), np.stack(spreads).reshape(a_shape),
            np.stack(premises).reshape(a_shape), np.stack(pspreads).reshape(a_shape), "left")


def _operand(m, others, own):
    """``(name, transposed)`` of another argument equal to ``M`` (or ``Mᵀ``), else None."""
    if m.ndim != 2:
        return None
    scale = float(np.max(np.abs(m), initial=0.0))
    if scale == 0 or not np.isfinite(scale):
        return None
    for name, value in others:
        if name == own:
            continue
        v = np.asarray(value)
        if v.shape != m.shape or not np.issubdtype(v.dtype, np.floating):
            continue
        v = v.astype(np.float64)
        close = 1e-3 * scale
        if np.all(np.abs(v - m) <= close):
            return name, False
        if np.all(np.abs(v.T - m) <= close):
            return name, True
    return None


def _text(where, operand, arg, n):
    """What the fitted claim says, and what to change."""
    g = "g"
    own = f"the gradient of {arg}" if arg else "the analytic gradient"
    if operand is not None:
        name, transposed = operand
        # N = R M with M = wᵀ (transposed) or w: the right product is R @ M
        right, wrong = (f"{name}.T", name) if transposed else (name, f"{name}.T")
        if where == "right":
            formula = f"{g} @ {wrong} where {g} @ {right} belongs"
        else:
            formula = f"{wrong} @ {g} where {right} @ {g} belongs"
        return (f"{own[0].upper()}{own[1:]} is {formula}: the matrix product in the backward "
                f"uses {name} {'untransposed' if transposed else 'transposed'}. Use "
                f"{right} (with {name} square the shapes agree either way, so nothing "
                f"else catches it).")
    if where == "right":
        formula = f"{g} @ Mᵀ where the true gradient is {g} @ M"
    else:
        formula = f"Mᵀ @ {g} where the true gradient is M @ {g}"
    return (f"{own[0].upper()}{own[1:]} is {formula}, for the {n}×{n} matrix M read off the "
            f"numerical gradient and the incoming gradient g (no argument of f equals M or "
            f"Mᵀ: one the forward computes, such as attention's P): the matrix product in "
            f"the backward uses the other operand transposed where it should not, or "
            f"untransposed where its transpose belongs (for y = p @ v, dv = pᵀ @ g). "
            f"Transpose that operand.")


def _with_arguments(ev, r):
    """``(M, P, spread, premise, premise_spread, side)`` for each square 2-D argument
    ``V`` of ``f`` (not this one) that gives ``N`` as a product with ``R`` -- ``M`` is
    ``V`` or ``Vᵀ`` -- whatever the rank of ``R`` (a batch smaller than ``V``)."""
    own = getattr(ev.known, "name", None)
    a_shape = ev.a.shape
    for name, value in getattr(ev.known, "others", ()):
        v = np.asarray(value)
        if name == own or v.ndim != 2 or v.shape[0] != v.shape[1] or v.shape[0] < 2 or \
                not np.issubdtype(v.dtype, np.floating):
            continue
        v = v.astype(np.float64)
        side = v.shape[0]
        zero = np.zeros(a_shape)
        if len(a_shape) >= 2 and a_shape == r.shape and a_shape[-1] == side:
            r2 = r.reshape(-1, side)
            for m in (v, v.T):            # N = R M, A = R Mᵀ
                yield (m, (r2 @ m.T).reshape(a_shape), zero, (r2 @ m).reshape(a_shape),
                       zero, "right")
        if len(a_shape) == 2 and a_shape == r.shape and a_shape[0] == side:
            for m in (v, v.T):            # N = M R, A = Mᵀ R
                yield m, m.T @ r, zero, m @ r, zero, "left"


def fit_operand_transposed(ev):
    """``A = R Mᵀ`` where ``N = R M`` (or ``A = Mᵀ R`` where ``N = M R``), ``M`` square."""
    known = ev.known
    r = known.cotangent
    if not ev.n_failed or r is None or not ev.keep.all() or not np.isfinite(ev.n).all():
        return None
    r = np.asarray(r, np.float64)
    if not np.isfinite(r).all():
        return None
    fitted = (got for solve in (_right, _left) for got in [solve(ev, r)] if got is not None)
    for got in chain(_with_arguments(ev, r), fitted):
        m, predicted, spread, premise, premise_spread = got[:5]
        where = got[5]
        if not np.all(np.abs(premise - ev.n) <= SLACK * (ev.tol + premise_spread)):
            continue                      # N is not one product with R
        if np.allclose(m, np.swapaxes(m, -1, -2), rtol=1e-6, atol=0):
            continue                      # symmetric: transposing changes nothing
        fit = fit_claim(ev, predicted, spread)
        if fit is None:
            continue
        operand = _operand(m, getattr(known, "others", ()), getattr(known, "name", None))
        return fit._replace(params={
            **fit.params, "side": where, "size": int(m.shape[-1]),
            "operand": None if operand is None else operand[0],
            "text": _text(where, operand, getattr(known, "name", None),
                          int(m.shape[-1]))})
    return None


def swap_text(ev) -> str:
    """What a 2-D gradient that came out transposed (``A = Nᵀ``) says about the product
    that formed it: when another argument ``x`` of ``f`` gives ``N = xᵀ R`` (``y = x @
    w``) or ``N = Rᵀ x`` (``y = x @ w.T``, torch's ``Linear``), the product written the
    other way, with the names; else the usual ways it happens."""
    known = ev.known
    r, own = known.cotangent, getattr(known, "name", None)
    if r is not None and ev.a.ndim == 2 and np.ndim(r) == 2:
        r = np.asarray(r, np.float64)
        for name, value in getattr(known, "others", ()):
            v = np.asarray(value)
            if name == own or v.ndim != 2 or not np.issubdtype(v.dtype, np.floating):
                continue
            v = v.astype(np.float64)
            for right, wrong, formed in ((f"{name}.T @ g", f"g.T @ {name}", lambda: v.T @ r),
                                         (f"g.T @ {name}", f"{name}.T @ g", lambda: r.T @ v)):
                if v.shape[0] != r.shape[0] or formed().shape != ev.n.shape:
                    continue
                if np.all(np.abs(formed() - ev.n) <= SLACK * ev.tol):
                    arg = f"the gradient of {own}" if own else "the gradient"
                    return (f": {arg} is {wrong} where {right} belongs (the product's "
                            f"operands in the wrong order, as when the (out, in) layout of "
                            f"torch's Linear is mixed up with an (in, out) weight); use "
                            f"{right}")
    return (": a matrix product formed with its operands in the wrong order (for y = x @ w, "
            "dw = gᵀ x where xᵀ g belongs: the (out, in) layout of torch's Linear mixed up "
            "with an (in, out) weight), or the result stored transposed")
