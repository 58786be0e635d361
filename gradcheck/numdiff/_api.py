r"""Public entry points: gradient, vector-Jacobian product, Jacobian, directional derivative.

Every function takes the same keyword-only options (``method``, ``scale``, ``step``,
``vectorized``, ``memory``, ``max_retries``, ``seed``), documented on
:func:`numerical_grad`.

Each validates its call into a :class:`~gradcheck.numdiff._problem.Problem`, builds the
target it differentiates (:mod:`gradcheck.numdiff._targets`) and lets the problem run
the method. The complex step's acceptance rule is in :mod:`gradcheck.numdiff._acceptance`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck.numdiff._coloring import as_pattern, check_colors, greedy_colors, n_distinct
from gradcheck.numdiff._evaluate import DEFAULT_MEMORY
from gradcheck.numdiff._options import validate_like
from gradcheck.numdiff._problem import Problem
from gradcheck.numdiff._result import NumericalDerivative
from gradcheck.numdiff._targets import DirectionTarget, GradTarget, JacobianTarget, VjpTarget

__all__ = ["numerical_grad", "numerical_vjp", "numerical_jacobian", "numerical_jvp"]


# ----------------------------------------------------------------------------- public


def numerical_grad(f, x, *, method="auto", scale=None, step=None, vectorized=False,
                   memory=DEFAULT_MEMORY, max_retries=2, seed=0) -> NumericalDerivative:
    r"""Gradient of a scalar function of one array, with an error bar per element.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar`` (with ``vectorized=True``: ``f(X) -> (B,)``).
    x : array_like
        Point, float64, float32, float16 or bfloat16 (integers become float64); ``f`` is
        evaluated in that dtype (complex64 / complex128 for the complex step), never
        upcast.
    method : {"auto", "complex", "adaptive", "forward", "backward", "central", "central4", "central6"}
        ``"auto"``: the complex step if ``f`` accepts complex input and passes the
        cross-check of :mod:`gradcheck.numdiff._acceptance`, else ``"adaptive"``.
        ``"complex"`` forces it (no cross-check). ``"adaptive"``: real differences with
        the order-5 stencil on nodes ``-2h .. 3h``, 5 evaluations per element plus
        retries at smaller steps where needed (``"richardson"``, its former name, is
        still accepted). The others are single stencils, evaluated at ``h`` and ``2h``
        to estimate their truncation (Richardson's estimate).
    scale : float or array_like, optional
        Typical magnitude of ``x``; the step of ``x_j`` follows ``max(|x_j|, scale_j)``.
        Default 1, or less where ``x``'s root mean square ``r`` is below half the step 1
        gives (``r < 6e-4`` in float64): then the base step of small elements is ``2 r``
        or so.
    step : float or array_like, optional
        Base step per element (the imaginary step for the complex step), replacing the
        rule below.
    vectorized : bool, default False
        ``f`` accepts a leading batch of points: ``f(X)``, ``X.shape == (B, *x.shape)``.
    memory : int, default 64 MiB
        Bytes a chunk of perturbed points and their outputs may take.
    max_retries : int, default 2
        Step reductions for elements that left the domain, whose truncation dominates,
        or that sit near a kink (0 turns kink detection off).
    seed : int, default 0
        Seed of the complex step's cross-check directions.

    Returns
    -------
    NumericalDerivative
        ``grad`` and ``error`` shaped like ``x``, ``nfev``, ``step``,
        ``nondifferentiable`` with ``left``/``right``, ``method``, ``complex_check``.

    Notes
    -----
    **Stencil.** With nodes :math:`k = -2, \dots, 3` the value is the derivative of the
    degree-5 polynomial through :math:`f(x + k h e_j) - f(x)`; its weights are
    :math:`(1/20, -1/2, -1/3, 1, -1/4, 1/30)/h` (Fornberg's weights for these nodes) and
    its error :math:`h^5 f^{(6)}/60 + h^6 f^{(7)}/140 + \dots` (order 5: the Richardson
    combination of :math:`D(h)` and :math:`D(2h)` lifted by one node;
    :mod:`gradcheck.numdiff._stencils`).

    **Step.** :math:`h_j = 2^{\mathrm{round}\log_2(\varepsilon^{1/6} s_j / 2)}` with
    :math:`s_j = \max(|x_j|, \mathrm{scale}_j)`, which balances truncation
    :math:`\propto h^5` against rounding :math:`\propto \varepsilon/h` for functions
    analytic within :math:`s_j`; an element whose points leave the domain is retried
    with the step its own :math:`|x_j|` gives, one whose truncation dominates with the
    step where truncation would be a fifth of rounding (:mod:`gradcheck.numdiff._steps`).

    **Error bar.** Rounding :math:`\lVert w\rVert_2 s / h`, with :math:`s` the rounding
    of one value -- of the value itself, of the sums ``f`` forms from :math:`x_j`, or the
    noise its highest fitted coefficients show -- plus the truncation predicted from the
    geometric decay of the fitted Taylor terms, :math:`2(12\hat b_6 + 36\hat b_7)/h`
    (:mod:`gradcheck.numdiff._model`); after a retry, at least what agreement with the
    other steps demands (:mod:`gradcheck.numdiff._adaptive`, with the measurements that
    set the constants). Measured on ``benchmarks/bench_numdiff.py``: the bar covers the
    true error for 99.8% (float64) and 99.9% (float32) of elements, at a median of 9.4
    and 8.3 times it, and for 99.2% and 98.3% on families the constants were not
    measured on.

    **Kinks.** An element whose truncation estimate does not fall with the step while
    its one-sided derivatives stay apart is ``nondifferentiable``; it gets ``left`` and
    ``right`` (one-sided secants) and an error bar spanning them. A kink near the point
    but not at it is located from the straddling pass and stepped inside. The complex
    step :math:`\operatorname{Im} f(x + ih e_j)/h` (Lyness and Moler; Squire and Trapp;
    taken as ``+ih`` and ``-3ih``) sees a kink at an exact tie, where the two steps give
    the two one-sided derivatives, and at zero, where the two points' real parts are
    moved to either side.

    **Precision.** ``f`` is evaluated in x's dtype: float64, float32, float16 or bfloat16
    (the last through ``ml_dtypes``); steps and rounding follow that dtype's epsilon.
    float16 and bfloat16 have no complex type, so they take real differences.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import numerical_grad
    >>> res = numerical_grad(lambda x: np.sum(np.sin(x)), np.array([0.0, 1.0]))
    >>> res.method, res.complex_check
    ('complex', 'accepted')
    >>> bool(np.allclose(res.grad, np.cos([0.0, 1.0]), rtol=1e-15, atol=0))
    True
    >>> r = numerical_grad(lambda x: np.sum(np.abs(x)), np.array([-2.0, 0.0, 3.0]))
    >>> r.method, r.grad[[0, 2]].tolist(), r.nondifferentiable.tolist()
    ('adaptive', [-1.0, 1.0], [False, True, False])
    >>> float(r.left[1]), float(r.right[1])
    (-1.0, 1.0)
    """
    p = Problem.prepare(f, x, True, method, scale, step, vectorized, memory, max_retries, seed)
    out, used, check = p.run(GradTarget(p.ev, p.x))
    return p.result(out, used, check, shape=p.x.shape, ncolors=p.x.size, step_shape=p.x.shape)


def _owner_coloring(pattern, colors, owners, n_in):
    """Validate the owners route: ``colors`` given, no ``pattern``; returns (colors, ncolors)."""
    if not callable(owners):
        raise ConfigurationError(f"owners must be None or a callable(members); got {owners!r}")
    if pattern is not None:
        raise ConfigurationError("pass either pattern or owners, not both")
    if colors is None:
        raise ConfigurationError("owners needs colors: the groups of elements it attributes")
    c = np.asarray(colors).reshape(-1) if np.size(colors) == n_in else np.asarray(colors)
    if c.shape != (n_in,) or not np.issubdtype(c.dtype, np.integer) or (c.size and c.min() < 0):
        raise ConfigurationError(
            f"colors must hold one non-negative integer per element of x ({n_in}); got an array "
            f"of shape {c.shape} and dtype {c.dtype}")
    c = c.astype(np.int64)
    return c, n_distinct(c)


def _coloring(pattern, colors, n_out, n_in):
    if pattern is None:
        if colors is not None:
            raise ConfigurationError("colors needs a pattern to be checked against; got "
                                     "colors without pattern")
        return None, None, n_in
    P = as_pattern(pattern, n_out, n_in)
    c = greedy_colors(P) if colors is None else check_colors(colors, P)
    return P, c, (int(c.max()) + 1 if c.size else 0)


def numerical_vjp(f, x, cotangent, *, pattern=None, colors=None, owners=None, method="auto",
                  scale=None, step=None, vectorized=False, memory=DEFAULT_MEMORY, max_retries=2,
                  seed=0, smooth=False) -> NumericalDerivative:
    r"""Gradient of :math:`C(x) = \langle R, f(x)\rangle` for an array-valued ``f``.

    The checker's workhorse: ``grad`` is the numerical vector-Jacobian product
    :math:`J^\top R`, element by element, with error bars.

    Parameters
    ----------
    f : callable
        ``f(x) -> array`` (with ``vectorized=True``: ``f(X) -> (B, *f(x).shape)``).
    x : array_like
        Point, as in :func:`numerical_grad`.
    cotangent : array_like
        ``R``, shaped like ``f(x)``.
    pattern : scipy.sparse matrix or bool array, optional
        ``(f(x).size, x.size)``; entry ``(i, j)`` true if output ``i`` may depend on
        input ``j``. Elements are then perturbed a color at a time (structurally
        orthogonal columns, :mod:`gradcheck.numdiff._coloring`) and each changed row is
        attributed to its own element: :math:`g_S = P_{:,S}^\top (R \odot \Delta f) / h_S`.
    colors : array of int, optional
        A coloring to use instead of the greedy one (checked against ``pattern``).
    owners : callable, optional
        Structure known to the caller, instead of a ``pattern``: ``owners(members)``
        takes the (sorted) flat indices of the elements of one color that are perturbed
        together and returns, for every output element, the position in ``members`` of
        the element it depends on, or -1. Needs ``colors``; memory stays
        :math:`O(\text{outputs})` per color however many elements there are. The caller
        guarantees that no output depends on two members of one color (built-in layers
        derive both from their geometry, and tests hold them against the pattern route).
    method, scale, step, vectorized, memory, max_retries, seed
        As in :func:`numerical_grad`.
    smooth : bool, default False
        The caller guarantees ``f`` has no kinks and no ties near ``x`` (built-in networks
        of smooth layers know this). The complex step then evaluates ``+ih`` only, one
        evaluation per color instead of two, and reports no kinks; the real methods are
        unchanged.

    Notes
    -----
    Differences are taken per output row before the rows are weighted and summed, so the
    rounding term of element ``j`` is :math:`\varepsilon\lVert w\rVert_2
    \sqrt{\sum_i (R_i f_i)^2}/h_j` over the rows ``j`` reaches (per pattern, or the rows
    that changed), not over all of :math:`|C|`.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import numerical_vjp
    >>> x = np.array([0.5, -1.0, 2.0]); R = np.array([1.0, 2.0, -1.0])
    >>> res = numerical_vjp(np.tanh, x, R, method="adaptive")
    >>> bool(np.all(np.abs(res.grad - R / np.cosh(x) ** 2) <= res.error))
    True
    >>> import scipy.sparse as sp
    >>> res = numerical_vjp(np.tanh, x, R, pattern=sp.eye(3, dtype=bool), method="adaptive")
    >>> res.ncolors, res.nfev        # f(x), two points screening its rounding, five nodes
    (1, 8)
    """
    p = Problem.prepare(f, x, False, method, scale, step, vectorized, memory, max_retries, seed)
    R = validate_like(cotangent, "cotangent", p.ev.out_shape)
    if owners is not None:
        P = None
        c, ncolors = _owner_coloring(pattern, colors, owners, p.x.size)
    else:
        P, c, ncolors = _coloring(pattern, colors, p.ev.out_size, p.x.size)
    target = VjpTarget(p.ev, p.x, R, pattern=P, colors=c, owners=owners)
    out, used, check = p.run(target, smooth=bool(smooth))
    return p.result(out, used, check, shape=p.x.shape, ncolors=ncolors, step_shape=p.x.shape)


def numerical_jacobian(f, x, *, pattern=None, colors=None, method="auto", scale=None,
                       step=None, vectorized=False, memory=DEFAULT_MEMORY, max_retries=2,
                       seed=0) -> NumericalDerivative:
    r"""Jacobian of an array-valued ``f``, shape ``(*f(x).shape, *x.shape)``.

    Entry :math:`(i, j)` is :math:`\partial f_i / \partial x_j` with its own error bar
    (rounding :math:`\varepsilon\lVert w\rVert_2 |f_i| / h_j` plus truncation). With a
    ``pattern`` only its nonzeros are computed (colors as in :func:`numerical_vjp`); the
    others are exactly 0 with error 0.

    Parameters
    ----------
    f : callable
        ``f(x) -> array``.
    x : array_like
        Point, as in :func:`numerical_grad`.
    pattern, colors
        As in :func:`numerical_vjp`.
    method, scale, step, vectorized, memory, max_retries, seed
        As in :func:`numerical_grad`.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import numerical_jacobian
    >>> J = numerical_jacobian(lambda x: np.array([x[0] * x[1], np.exp(x[0])]),
    ...                        np.array([1.0, 2.0]))
    >>> J.grad.shape, bool(np.allclose(J.grad, [[2.0, 1.0], [np.e, 0.0]], rtol=1e-14))
    ((2, 2), True)
    """
    p = Problem.prepare(f, x, False, method, scale, step, vectorized, memory, max_retries, seed)
    n_out, n_in = p.ev.out_size, p.x.size
    P, c, ncolors = _coloring(pattern, colors, n_out, n_in)
    out, used, check = p.run(JacobianTarget(p.ev, p.x, pattern=P, colors=c))
    if P is None:
        def to_dense(a, fill):
            return a.reshape(n_in, n_out).T
    else:
        coo_rows, coo_cols = P.indices, np.repeat(np.arange(n_in), np.diff(P.indptr))

        def to_dense(a, fill):
            d = np.full((n_out, n_in), fill, dtype=a.dtype)
            d[coo_rows, coo_cols] = a
            return d
    out = replace(out, **{name: to_dense(getattr(out, name), fill) for name, fill in (
        ("value", 0.0), ("error", 0.0), ("left", np.nan), ("right", np.nan),
        ("nondiff", False))})
    return p.result(out, used, check, shape=p.ev.out_shape + p.x.shape, ncolors=ncolors,
                    step_shape=p.x.shape)


def numerical_jvp(f, x, v, *, cotangent=None, method="auto", scale=None, step=None,
                  vectorized=False, memory=DEFAULT_MEMORY, max_retries=2,
                  seed=0) -> NumericalDerivative:
    r"""Directional derivative :math:`J v` of ``f`` at ``x`` along ``v``, with error bars.

    Parameters
    ----------
    f, x
        As in :func:`numerical_jacobian`.
    v : array_like
        One direction shaped like ``x``, or several stacked: ``(k, *x.shape)``.
    cotangent : array_like, optional
        ``R`` shaped like ``f(x)``: return :math:`\langle R, J v\rangle` per direction
        (the derivative of :math:`\langle R, f\rangle`, differenced per output row).
    method, scale, step, vectorized, memory, max_retries, seed
        As in :func:`numerical_grad`.

    Notes
    -----
    The point moves as :math:`x + t v`; the step :math:`t` is chosen so that no element
    moves by more than its own step (the rule of :mod:`gradcheck.numdiff._steps`).

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import numerical_jvp
    >>> res = numerical_jvp(lambda x: x**2, np.array([1.0, 3.0]), np.array([1.0, -1.0]))
    >>> bool(np.allclose(res.jvp, [2.0, -6.0], rtol=1e-14))
    True
    """
    p = Problem.prepare(f, x, False, method, scale, step, vectorized, memory, max_retries, seed)
    xs = p.x.shape
    V = np.asarray(v)
    single = V.shape == xs
    if single:
        V = V[None]
    V = validate_like(V, "v", (V.shape[0],) + xs if V.ndim == len(xs) + 1 else xs)
    R = None if cotangent is None else validate_like(cotangent, "cotangent", p.ev.out_shape)
    out, used, check = p.run(DirectionTarget(p.ev, p.x, V, contraction=R), V=V)
    per = () if R is not None else p.ev.out_shape
    lead = () if single else (V.shape[0],)
    return p.result(out, used, check, shape=lead + per, ncolors=V.shape[0], step_shape=lead)
