r"""Public entry points: gradient, vector-Jacobian product, Jacobian, directional derivative.

Every function takes the same keyword-only options (``method``, ``scale``, ``step``,
``vectorized``, ``memory``, ``max_retries``, ``seed``), documented on
:func:`numerical_grad`.

The complex step's acceptance rule is in :mod:`gradcheck.numdiff._acceptance`.
"""

from __future__ import annotations

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck.numdiff._acceptance import complex_ok
from gradcheck.numdiff._coloring import as_pattern, check_colors, greedy_colors, n_distinct
from gradcheck.numdiff._core import Outcome, run_complex, run_fixed, run_richardson
from gradcheck.numdiff._evaluate import DEFAULT_MEMORY, Evaluator
from gradcheck.numdiff._options import validate_common, validate_like, validate_x
from gradcheck.numdiff._result import NumericalDerivative
from gradcheck.numdiff._stencils import stencil
from gradcheck.numdiff._steps import base_steps, complex_steps, direction_steps
from gradcheck.numdiff._targets import (
    DirectionTarget,
    GradTarget,
    JacobianTarget,
    VjpTarget,
    _RealOutput,
)

__all__ = ["numerical_grad", "numerical_vjp", "numerical_jacobian", "numerical_jvp"]



def _eval_eps(x, f0) -> float:
    """Relative rounding of one evaluation of ``f``: the coarser of x's and f's precision.

    A float64 result can still have been computed in float32 (a layer that casts its
    input, a float32 kernel behind a float64 interface). Its values then all sit on the
    float32 grid, which a float64 computation hits by chance with odds about 2**-29 per
    value; in that case float32's rounding is what the differences must beat.
    """
    eps = [float(np.finfo(d).eps) for d in (x.dtype, f0.dtype) if d.kind in "fc"]
    eps = max(eps) if eps else float(np.finfo(np.float64).eps)
    single = float(np.finfo(np.float32).eps)
    if eps < single and _on_float32_grid(f0):
        eps = single
    return eps


def _on_float32_grid(values) -> bool:
    """Whether every finite value is a float32 number and some are telling evidence.

    Evidence is a value that is not an integer and not a float16 number: "round" values
    such as 0.5, 3 or 0.375 lie on every grid and say nothing about the precision used.
    """
    v = np.asarray(values)
    v = np.concatenate([v.real.ravel(), v.imag.ravel()]) if v.dtype.kind == "c" else v.ravel()
    v = v[np.isfinite(v)].astype(np.float64, copy=False)
    if v.size == 0:
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        if np.any(v.astype(np.float32).astype(np.float64) != v):
            return False
        telling = (v != np.round(v)) & (v.astype(np.float16).astype(np.float64) != v)
    return int(telling.sum()) >= min(4, v.size)


def _prepare(f, x, *, scalar, method, scale, step, vectorized, memory, max_retries, seed):
    x = validate_x(x)
    scale, step = validate_common(f, x, method=method, scale=scale, step=step,
                                  vectorized=vectorized, memory=memory,
                                  max_retries=max_retries, seed=seed)
    ev = Evaluator(f, x, vectorized=bool(vectorized), memory=memory, scalar=scalar)
    return x, ev, scale, step


def _run(ev, x, target, *, method, scale, step, max_retries, seed, coordinates=True,
         V=None, smooth=False):
    """Pick and run the method; returns (outcome, method used, complex_check)."""
    eps = _eval_eps(x, ev.f0)
    check = "not tried"
    if target.n_src == 0 or target.n_q == 0:      # nothing to perturb
        return Outcome(target.n_q, np.zeros(target.n_src)), method, check
    use_complex = method == "complex"
    if method == "auto":
        use_complex, check = complex_ok(ev, x, target.contraction, scale, eps, seed)
        check = "accepted" if use_complex else "rejected: " + check
    if use_complex:
        if coordinates:
            hc = complex_steps(x, scale, eps) if step is None else step.reshape(-1).copy()
        else:
            hc = direction_steps(x, V, scale, eps, 0, imag=True)
        try:
            out = run_complex(target, hc, eps, ties=not smooth)
        except _RealOutput as exc:
            raise ConfigurationError(
                f"method='complex' needs f to return complex values for complex input; {exc}"
            ) from None
        check = check if method == "auto" else "forced"
        bad = ~np.isfinite(out.value)
        if bad.any():    # complex arithmetic overflowed where real did not: difference those
            rich = stencil("richardson")
            srcs = np.unique(target.q_src[bad])
            h0 = (base_steps(x, scale, eps, rich.order, step) if coordinates
                  else direction_steps(x, V, scale, eps, rich.order))
            xs = x.reshape(-1).astype(np.float64) if coordinates else None
            real = run_richardson(target, h0, rich, eps, max_retries=max_retries, x_src=xs,
                                  sources=srcs)
            for name in ("value", "error", "left", "right", "nondiff", "rho"):
                getattr(out, name)[bad] = getattr(real, name)[bad]
            out.steps[srcs] = real.steps[srcs]
            check += f"; {int(bad.sum())} entries by richardson (complex step not finite)"
        return out, "complex", check
    name = "richardson" if method in ("auto", "complex") else method
    st = stencil(name)
    if coordinates:
        h0 = base_steps(x, scale, eps, st.order, step)
    else:
        h0 = direction_steps(x, V, scale, eps, st.order)
        if step is not None:
            h0 = np.full(V.shape[0], float(np.min(step)))
    if st.adaptive:
        xs = x.reshape(-1).astype(np.float64) if coordinates else None
        out = run_richardson(target, h0, st, eps, max_retries=max_retries, x_src=xs)
    else:
        out = run_fixed(target, h0, st, eps)
    return out, name, check


def _result(out, shape, ev, method, check, ncolors, step_shape, dtype):
    def arr(a):
        return a.reshape(shape).astype(dtype)

    return NumericalDerivative(
        grad=arr(out.value), error=arr(out.error), nfev=int(ev.nfev),
        step=out.steps.reshape(step_shape), nondifferentiable=out.nondiff.reshape(shape),
        left=arr(out.left), right=arr(out.right), method=method, complex_check=check,
        ncolors=int(ncolors))


def _real_dtype(x, f0):
    dt = np.result_type(x.dtype, f0.dtype)
    return dt if dt.kind == "f" else np.dtype(np.float64)


# ----------------------------------------------------------------------------- public


def numerical_grad(f, x, *, method="auto", scale=1.0, step=None, vectorized=False,
                   memory=DEFAULT_MEMORY, max_retries=2, seed=0) -> NumericalDerivative:
    r"""Gradient of a scalar function of one array, with an error bar per element.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar`` (with ``vectorized=True``: ``f(X) -> (B,)``).
    x : array_like
        Point, float32 or float64 (integers become float64); ``f`` is evaluated in that
        dtype (complex64 / complex128 for the complex step), never upcast.
    method : {"auto", "complex", "richardson", "forward", "backward", "central", "central4", "central6"}
        ``"auto"``: the complex step if ``f`` accepts complex input and passes the
        cross-check of :mod:`gradcheck.numdiff._acceptance`, else ``"richardson"``.
        ``"complex"`` forces it (no cross-check). ``"richardson"``: adaptive real
        differences, 5 evaluations per element plus retries where needed. The others are
        single stencils, evaluated at ``h`` and ``2h`` to estimate their truncation.
    scale : float or array_like, default 1
        Typical magnitude of ``x``; the step of ``x_j`` follows ``max(|x_j|, scale_j)``.
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
    :math:`(1/20, -1/2, -1/3, 1, -1/4, 1/30)/h` and its error
    :math:`h^5 f^{(6)}/60 + h^6 f^{(7)}/140 + \dots` (order 5, the Richardson
    extrapolation of :math:`D(h)` and :math:`D(2h)` lifted by one node;
    :mod:`gradcheck.numdiff._stencils`).

    **Step.** :math:`h_j = 2^{\mathrm{round}\log_2(\varepsilon^{1/6} s_j / 2)}` with
    :math:`s_j = \max(|x_j|, \mathrm{scale}_j)`, which balances truncation
    :math:`\propto h^5` against rounding :math:`\propto \varepsilon/h` for functions
    analytic within :math:`s_j`; an element whose points leave the domain is retried
    with the step its own :math:`|x_j|` gives, one whose truncation dominates with the
    step where truncation would be a fifth of rounding (:mod:`gradcheck.numdiff._steps`).

    **Error bar.** Rounding :math:`\varepsilon \lVert w\rVert_2 |f| / h` plus the
    truncation predicted from the geometric decay of the fitted Taylor terms,
    :math:`2(12\hat b_6 + 36\hat b_7)/h` (:mod:`gradcheck.numdiff._core`, with the
    measurements that set the constants). Measured on ``benchmarks/bench_numdiff.py``:
    the bar covers the true error for 98.5% of elements in float64 and float32, at a
    median of 6.9 times it.

    **Kinks.** An element whose truncation estimate does not fall with the step while
    its one-sided derivatives stay apart is ``nondifferentiable``; it gets ``left`` and
    ``right`` and an error bar spanning them. The complex step
    :math:`\operatorname{Im} f(x + ih e_j)/h` (taken as ``+ih`` and ``-3ih``) sees a kink
    only at an exact tie, where the two steps give the two one-sided derivatives.

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
    ('richardson', [-1.0, 1.0], [False, True, False])
    >>> float(r.left[1]), float(r.right[1])
    (-1.0, 1.0)
    """
    x, ev, scale, step = _prepare(f, x, scalar=True, method=method, scale=scale, step=step,
                                  vectorized=vectorized, memory=memory,
                                  max_retries=max_retries, seed=seed)
    target = GradTarget(ev, x)
    out, used, check = _run(ev, x, target, method=method, scale=scale, step=step,
                            max_retries=max_retries, seed=seed)
    return _result(out, x.shape, ev, used, check, x.size, x.shape, _real_dtype(x, ev.f0))


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
                  scale=1.0, step=None, vectorized=False, memory=DEFAULT_MEMORY, max_retries=2,
                  seed=0, smooth=False) -> NumericalDerivative:
    r"""Gradient of :math:`C(x) = \langle R, f(x)\rangle` for an array-valued ``f``.

    The checker's workhorse: ``grad`` is the numerical vector-Jacobian product
    :math:`J^\top R`, element by element, with error bars.

    Parameters
    ----------
    f : callable
        ``f(x) -> array`` (with ``vectorized=True``: ``f(X) -> (B, *f(x).shape)``).
    x : array_like
        Point, float32 or float64.
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
    >>> res = numerical_vjp(np.tanh, x, R, method="richardson")
    >>> bool(np.all(np.abs(res.grad - R / np.cosh(x) ** 2) <= res.error))
    True
    >>> import scipy.sparse as sp
    >>> res = numerical_vjp(np.tanh, x, R, pattern=sp.eye(3, dtype=bool), method="richardson")
    >>> res.ncolors, res.nfev
    (1, 6)
    """
    x, ev, scale, step = _prepare(f, x, scalar=False, method=method, scale=scale, step=step,
                                  vectorized=vectorized, memory=memory,
                                  max_retries=max_retries, seed=seed)
    R = validate_like(cotangent, "cotangent", ev.out_shape)
    if owners is not None:
        P = None
        c, ncolors = _owner_coloring(pattern, colors, owners, x.size)
    else:
        P, c, ncolors = _coloring(pattern, colors, ev.out_size, x.size)
    target = VjpTarget(ev, x, R, pattern=P, colors=c, owners=owners)
    out, used, check = _run(ev, x, target, method=method, scale=scale, step=step,
                            max_retries=max_retries, seed=seed, smooth=bool(smooth))
    return _result(out, x.shape, ev, used, check, ncolors, x.shape, _real_dtype(x, ev.f0))


def numerical_jacobian(f, x, *, pattern=None, colors=None, method="auto", scale=1.0,
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
        Point, float32 or float64.
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
    x, ev, scale, step = _prepare(f, x, scalar=False, method=method, scale=scale, step=step,
                                  vectorized=vectorized, memory=memory,
                                  max_retries=max_retries, seed=seed)
    n_out = ev.out_size
    P, c, ncolors = _coloring(pattern, colors, n_out, x.size)
    target = JacobianTarget(ev, x, pattern=P, colors=c)
    out, used, check = _run(ev, x, target, method=method, scale=scale, step=step,
                            max_retries=max_retries, seed=seed)
    shape = ev.out_shape + x.shape
    if P is None:
        def to_dense(a, fill):
            return a.reshape(x.size, n_out).T
    else:
        coo_rows, coo_cols = P.indices, np.repeat(np.arange(x.size), np.diff(P.indptr))

        def to_dense(a, fill):
            d = np.full((n_out, x.size), fill, dtype=a.dtype)
            d[coo_rows, coo_cols] = a
            return d
    for name, fill in (("value", 0.0), ("error", 0.0), ("left", np.nan), ("right", np.nan),
                       ("nondiff", False)):
        setattr(out, name, to_dense(getattr(out, name), fill))
    return _result(out, shape, ev, used, check, ncolors, x.shape, _real_dtype(x, ev.f0))


def numerical_jvp(f, x, v, *, cotangent=None, method="auto", scale=1.0, step=None,
                  vectorized=False, memory=DEFAULT_MEMORY, max_retries=2,
                  seed=0) -> NumericalDerivative:
    r"""Directional derivative :math:`J v` of ``f`` at ``x`` along ``v``, with error bars.

    Parameters
    ----------
    f : callable
        ``f(x) -> array``.
    x : array_like
        Point, float32 or float64.
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
    x, ev, scale, step = _prepare(f, x, scalar=False, method=method, scale=scale, step=step,
                                  vectorized=vectorized, memory=memory,
                                  max_retries=max_retries, seed=seed)
    V = np.asarray(v)
    single = V.shape == x.shape
    if single:
        V = V[None]
    V = validate_like(V, "v", (V.shape[0],) + x.shape if V.ndim == x.ndim + 1 else x.shape)
    R = None if cotangent is None else validate_like(cotangent, "cotangent", ev.out_shape)
    target = DirectionTarget(ev, x, V, contraction=R)
    out, used, check = _run(ev, x, target, method=method, scale=scale, step=step,
                            max_retries=max_retries, seed=seed, coordinates=False, V=V)
    per = () if R is not None else ev.out_shape
    shape = per if single else (V.shape[0],) + per
    return _result(out, shape, ev, used, check, V.shape[0], () if single else (V.shape[0],),
                   _real_dtype(x, ev.f0))
