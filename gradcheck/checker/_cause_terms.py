r"""Generic causes of a missing (or extra) term, and of an element-wise relation.

A missing term is found in the difference :math:`D = A - N`: it is fitted, slice by
slice, by least squares on a small basis, and the claim :math:`A = N + \hat D` is tested
like any other (:func:`gradcheck.checker._fit.fit_claim`).

==================  ==========================================  =========================
basis               a slice along the axes ``G``                the usual slip
==================  ==========================================  =========================
``cotangent``       :math:`D = c R` (whole array)               a skip path dropped
``value``           :math:`D = \lambda x` (whole array)         weight decay forgotten
``constant``        :math:`D = a` on each slice                 a ``-mean(g)`` term
``centered``        :math:`D = b (x - \bar x)` on each slice    the ``x̂`` term
``affine``          :math:`D = a + b x` on each slice           both normalization terms
``softmax``         :math:`D = s\,\mathrm{softmax}_G(x)`        softmax's ``p (p·g)``
``softmax_affine``  :math:`D = a + s\,\mathrm{softmax}_G(x)`    a mean where ``p`` belongs
``rank_one``        :math:`D = u v^T` over one axis × the rest  one outer product missing
==================  ==========================================  =========================

An element-wise relation is :math:`A = c\,N\,h(x)` for ``h`` in a short table (``x``,
``1/x``, ``x²``, ``|x|``, ``exp(±x)``): a derivative multiplied or divided by ``x`` once
too often, an exponential left in.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from gradcheck.checker._fit import (MIN_PER_PARAMETER, clear_mismatch, explains_most, fit_claim,
                                    slices_along)

__all__ = ["fit_missing_term", "missing_term", "fit_rank_one", "fit_elementwise_relation",
           "RANK_ONE_RESOLUTION",
           "BASES", "RELATIONS"]


def _softmax(x, axes):
    z = x - np.max(x, axis=axes, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axes, keepdims=True)


def _x(ev):
    known = getattr(ev, "known", None)
    x = None if known is None else known.x
    return None if x is None else np.asarray(x, np.float64)


def _cotangent(ev):
    known = getattr(ev, "known", None)
    r = None if known is None else known.cotangent
    if r is None or np.shape(r) != ev.a.shape:
        return None
    return np.asarray(r, np.float64)


#: ``name: (whole array only, builder(ev, axes G) -> [basis arrays] or None)``
BASES = {
    "cotangent": (True, lambda ev, G: None if _cotangent(ev) is None else [_cotangent(ev)]),
    "value": (True, lambda ev, G: None if _x(ev) is None else [_x(ev)]),
    "constant": (False, lambda ev, G: [np.ones(ev.a.shape)]),
    "centered": (False, lambda ev, G: None if _x(ev) is None else
                 [_x(ev) - np.mean(_x(ev), axis=G, keepdims=True)]),
    "affine": (False, lambda ev, G: None if _x(ev) is None else
               [np.ones(ev.a.shape), _x(ev)]),
    "softmax": (False, lambda ev, G: None if _x(ev) is None else [_softmax(_x(ev), G)]),
    "softmax_affine": (False, lambda ev, G: None if _x(ev) is None else
                       [np.ones(ev.a.shape), _softmax(_x(ev), G)]),
}


def _solve_per_slice(d, basis, labels, count, keep):
    """Least-squares coefficients per slice: ``theta[count, k]`` and the fitted ``D``."""
    k = len(basis)
    lab = labels[keep]
    b = [f[keep] for f in basis]
    gram = np.empty((count, k, k))
    rhs = np.empty((count, k))
    for i in range(k):
        rhs[:, i] = np.bincount(lab, weights=b[i] * d[keep], minlength=count)
        for j in range(i, k):
            gram[:, i, j] = gram[:, j, i] = np.bincount(lab, weights=b[i] * b[j],
                                                        minlength=count)
    theta = (np.linalg.pinv(gram) @ rhs[..., None])[..., 0]
    fitted = sum(theta[labels, i] * basis[i] for i in range(k))
    return theta, fitted


def _axis_sets(ndim):
    """Sets of axes ``G`` a term may be constant along, the fewest slices first."""
    axes = range(ndim)
    for r in range(ndim, 0, -1):
        yield from combinations(axes, r)


def fit_missing_term(ev, basis: str):
    """``A - N`` is a term of the form ``basis`` (see :data:`BASES`), per slice along ``G``."""
    if not ev.n_failed:
        return None
    whole, build = BASES[basis]
    d = ev.a - ev.n
    kept = int(ev.keep.sum())
    for G in _axis_sets(ev.a.ndim):
        if whole and len(G) != ev.a.ndim:
            continue
        functions = build(ev, G)
        if functions is None:
            return None
        labels, count = slices_along(ev.a.shape, G)
        if count * len(functions) * MIN_PER_PARAMETER > kept or \
                min(ev.a.shape[g] for g in G) < 2:
            continue
        # every slice constrains its own parameters (a sample may leave a slice nearly empty)
        if np.bincount(labels[ev.keep], minlength=count).min() < \
                len(functions) * MIN_PER_PARAMETER:
            continue
        theta, fitted = _solve_per_slice(d, functions, labels, count, ev.keep)
        if not np.any(np.abs(theta) > 0):
            continue
        fit = fit_claim(ev, ev.n + fitted, ev.tol)
        if fit is not None and explains_most(fit, count * len(functions), kept):
            return fit._replace(params={"basis": basis, "axes": list(G),
                                        **_describe_theta(basis, theta, G, ev.a.ndim)})
    return None


def missing_term(basis: str):
    """The test of fit of one basis, for the table of causes."""
    if basis not in BASES:
        raise ValueError(f"unknown basis {basis!r}; known: {', '.join(BASES)}")

    def fit(ev):
        return fit_missing_term(ev, basis)

    fit.__name__ = f"fit_missing_term_{basis}"
    return fit


def _span(values) -> str:
    lo, hi = float(np.min(values)), float(np.max(values))
    return f"{lo:.4g}" if np.isclose(lo, hi, rtol=1e-6, atol=0) else f"from {lo:.4g} to {hi:.4g}"


def _describe_theta(name, theta, G, ndim) -> dict:
    where = ("over the whole array" if len(G) == ndim else
             f"along axis {G[0]}" if len(G) == 1 else
             "along axes " + ", ".join(map(str, G)))
    out = {"where": where, "slices": int(theta.shape[0])}
    if name in ("cotangent", "value", "constant", "centered", "softmax"):
        out["coefficient"] = _span(theta[:, 0])
    else:
        out["offset"] = _span(theta[:, 0])
        out["coefficient"] = _span(theta[:, 1])
    return out


def _leading_outer_product(m):
    """The three largest singular values of ``m`` and its best rank-one approximation,
    from the eigenvectors of the smaller Gram matrix (``m mᵀ`` or ``mᵀ m``)."""
    wide = m.shape[0] <= m.shape[1]
    gram = m @ m.T if wide else m.T @ m
    values, vectors = np.linalg.eigh(gram)
    s = np.sqrt(np.clip(values[::-1][:3], 0.0, None))
    top = vectors[:, -1]
    if s[0] == 0:
        return s, np.zeros_like(m)
    other = (m.T @ top if wide else m @ top) / s[0]
    return s, s[0] * (np.outer(top, other) if wide else np.outer(other, top))


#: How many times the tolerance's norm an outer product's first singular value must be.
RANK_ONE_RESOLUTION = 100.0


def fit_rank_one(ev):
    """``A - N`` is an outer product ``u vᵀ`` over one axis and the rest.

    ``u`` and ``v`` must each spread over two entries or more (a difference confined to
    one row is a mask, not an outer product), and the ``m + k`` numbers of ``u vᵀ`` may be
    at most half the ``m k`` elements they explain.
    The second singular value of ``A - N`` must be at most a third of the first: a
    mismatch with two directions of like size fits a rank-one term only where the
    tolerance is wide (a float32 layer norm whose backward takes another eps fitted within
    3.6 tolerances, singular values 0.0070, 0.0038, 0.0028).
    The first singular value must be at least :data:`RANK_ONE_RESOLUTION` times the norm of
    the tolerance (which bounds the largest singular value of the noise), so that the
    check sees a second direction down to 1% of the first: other slips leave differences
    close to rank one (float16 ``tanh(x @ w)`` with tanh' taken at the output: ``A - N =
    (g Δtanh') wᵀ``, second singular value 3-7% of the first, fitted within 0.5-2.5
    tolerances where the first is only 10-20 times the tolerance's norm). A missing
    outer product leaves noise only (float32 ``dW`` summed from item 1: 4000 times).
    Checks of the fit's size and parameters: :func:`~gradcheck.checker._fit.explains_most`.
    """
    if not ev.n_failed or not ev.keep.all() or ev.a.ndim < 2:
        return None
    d = ev.a - ev.n
    big = clear_mismatch(ev)
    noise = float(np.linalg.norm(ev.tol))     # bounds the largest singular value of the noise
    for axis in range(ev.a.ndim):
        m = np.moveaxis(d, axis, 0).reshape(ev.a.shape[axis], -1)
        rows, cols = m.shape
        hit = np.moveaxis(big, axis, 0).reshape(rows, -1)
        if min(rows, cols) < 3 or 2 * (rows + cols) > rows * cols or \
                hit.any(1).sum() < 2 or hit.any(0).sum() < 2:
            continue
        s, one = _leading_outer_product(m)
        if s.size > 1 and s[1] > s[0] / 3:
            continue    # a second direction a third of the first: not an outer product
        if s[0] < RANK_ONE_RESOLUTION * noise:
            continue    # a second direction of a few % of the first would hide in the noise
        fitted = np.moveaxis(one.reshape((rows,) + tuple(
            n for i, n in enumerate(ev.a.shape) if i != axis)), 0, axis)
        fit = fit_claim(ev, ev.n + fitted, ev.tol)
        if fit is not None and explains_most(fit, rows + cols - 1, rows * cols):
            return fit._replace(params={"axis": axis,
                                        "singular_values": [float(v) for v in s],
                                        "singular_text": ", ".join(f"{v:.3g}" for v in s)})
    return None


#: ``name: (h(x), valid(x), meaning)`` for the relation ``A = c N h(x)``.
RELATIONS = {
    "x": (lambda x: x, lambda x: True,
          "the derivative is multiplied by x once too often (x·f'(x) where f'(x) belongs?)"),
    "1/x": (lambda x: 1 / x, lambda x: np.all(x != 0),
            "the derivative is divided by x once too often (d/dx log x = 1/x applied twice?)"),
    "x²": (lambda x: x * x, lambda x: True,
           "the derivative is multiplied by x² once too often"),
    "1/x²": (lambda x: 1 / (x * x), lambda x: np.all(x != 0),
             "the derivative is divided by x² once too often"),
    "|x|": (np.abs, lambda x: True, "the derivative is multiplied by |x| (a magnitude left in)"),
    "exp(x)": (np.exp, lambda x: np.all(np.abs(x) < 50),
               "an extra factor exp(x): the function's value used where its derivative "
               "belongs, or an exponential left in"),
    "exp(-x)": (lambda x: np.exp(-x), lambda x: np.all(np.abs(x) < 50),
                "an extra factor exp(−x): σ(−x) where σ(x) belongs (their ratio is exp(−x)), "
                "or an exponential's sign wrong"),
}


def fit_elementwise_relation(ev):
    """``A = c N h(x)`` element by element, for ``h`` in :data:`RELATIONS`."""
    x = _x(ev)
    if not ev.n_failed or x is None or x.shape != ev.a.shape or np.ptp(x) == 0:
        return None
    a, keep = ev.a, ev.keep
    for name, (h, valid, meaning) in RELATIONS.items():
        if not valid(x):
            continue
        nh = ev.n * h(x)
        denom = float(np.dot(nh[keep], nh[keep]))
        if denom == 0:
            continue
        c = float(np.dot(a[keep], nh[keep]) / denom)
        if abs(c) <= 1e-12:
            return None      # A = 0: "0·h(x) times N" explains nothing a relation could
        fit = fit_claim(ev, c * nh, np.abs(c * h(x)) * ev.tol)
        if fit is not None:
            text = "" if abs(c - 1) < 1e-6 else ("−" if abs(c + 1) < 1e-6 else f"{c:.6g}·")
            return fit._replace(params={"h": name, "factor": c, "factor_text": text,
                                        "meaning": meaning})
    return None
