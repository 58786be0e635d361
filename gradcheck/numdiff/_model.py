r"""The error model of one pass of real differences: value, noise, truncation.

A *pass* evaluates every quantity at the nodes :math:`k h` of a stencil for one step
:math:`h` per source. From the node values (taken relative to :math:`f(x)`) the
polynomial fit of :mod:`._stencils` gives the coefficients :math:`b_m \approx f^{(m)}
h^m/m!` (:math:`m \le d`, the fit's degree), the estimate :math:`b_1/h`, and the two
parts of its error bar.

Rounding
--------
Every value carries a rounding error; with :math:`s` its size per value, the
derivative carries :math:`\rho = \kappa_r \lVert w\rVert_2\, s / h` (:math:`w` the
derivative row of the fit, :math:`\kappa_r = 1`). Three estimates of :math:`s` are
kept, and the largest counts:

* *the value's own rounding*, :math:`\varepsilon\sigma`: :math:`\sigma` is the
  root-sum-square magnitude of the terms making up the value (for ``<R, f>``,
  :math:`\sqrt{\sum_i (R_i f_i)^2}` over the rows the element reaches, because
  differences are taken per output row before the rows are summed; for a scalar ``f``,
  :math:`|f|`; in both, :math:`f_i` is the largest magnitude seen at the center and at
  the evaluated points);
* *the argument's rounding*, :math:`\varepsilon |x_j| g_j`: ``f`` combines
  :math:`x_j` with other numbers (``w * x + b``, a sum of products) and rounds the
  result, relative error :math:`\varepsilon`, which reaches the value through the
  slope :math:`g_j` of each output row (root-sum-square over the rows, before they
  cancel). This error is the same function of the step's multiple at every node -- a
  slope, not scatter -- so no fit can see it: it is the term that keeps a ReLU reached
  through a dot product honest when the step has shrunk to :math:`10^{-9}`;
  the two are combined as :math:`\sqrt{a^2 + b^2}`;
* *the grid the values lie on* (``values.grain``, :func:`._grain._grain`): a row whose
  values ``f`` formed as a difference of larger terms (``((x - 3) x + 3) x - 1`` near
  1, a cross-entropy ``log(1 + s) - 0`` at confident logits) takes only multiples of
  the terms' ulp, however small it is; the values then carry up to one such step of
  rounding, which their magnitude does not show and a power-of-two step can leave
  smooth in the node (the rounding of such a cube was an exact cubic in the node,
  invisible to the fit). Root-sum-square over the rows, weighted as :math:`\sigma`;
  the larger of it and the two above counts;
* *the rows' rounding measured at the point* (float64 and float32, elements): before the
  passes, a second difference of ``f`` along a random probe of about a thousand ulps (float32; float64: about eps**(2/3) of
  each element, its significand random too)
  shows each row's rounding -- that of the terms it is formed from, such as a
  convolution's outputs sharing a large common part before a batch norm subtracts it --
  read as the magnitude that rounds so (:math:`\sqrt{12}` times the measured deviation
  over :math:`\varepsilon`), and a row whose magnitude so read is 32 times its value or
  more takes it in :math:`\sigma` (:meth:`._problem.Problem._row_floor`; three random
  probes of two points each side, twelve
  evaluations, two where the first second difference shows every row far below a
  floor);
* *noise seen in the data*: rounding that is scatter shows in the top coefficients
  :math:`b_{d-1}, b_d`, which a smooth function makes small (see below). Where the
  Taylor trend of the lower coefficients does not explain them (they exceed
  :math:`z_s` times what the trend predicts), :math:`s_e = \kappa_e |b_m| /
  \lVert V^{-1}_{m\cdot}\rVert` is taken for the noise, with :math:`\kappa_e = 4`: one
  such sample is below a quarter of the noise that moves :math:`b_1` in about 5% of
  cases (measured on functions that cancel inside, where the error of :math:`b_1` was
  within 4 samples 95% of the time). Cancellation inside ``f`` (``log(1 + exp(x))`` at
  :math:`x \ll 0`, a loss that subtracts nearly equal terms) is what this catches.

Truncation
----------
Coefficients above their own rounding noise (:math:`|b_m| > z_s\, s \lVert
V^{-1}_{m\cdot}\rVert`, :math:`z_s = 3`) are taken to decay geometrically, as the Taylor
terms of a function analytic in a disc of radius :math:`h/q` do; the largest ratio
:math:`q = \max (|b_k|/|b_i|)^{1/(k-i)}` over significant pairs, applied to the two
highest significant coefficients, predicts the first two neglected terms
:math:`\hat b_{d+1} = \max_{m \in \text{top 2}} |b_m| q^{d+1-m}` (and
:math:`\hat b_{d+2}` alike), and with the stencil moments

.. math:: T = \kappa_t\,(|\mu_{d+1}|\,\hat b_{d+1} + |\mu_{d+2}|\,\hat b_{d+2}) / h,
          \qquad \kappa_t = 2 .

The pairs start at :math:`b_2` where two coefficients from :math:`b_2` up stand out of
the noise: :math:`b_1 = h f'` is the derivative being measured, small by accident near a
stationary point (a loss near its minimum, a saturated ``tanh``, ``sin`` by its
maximum), and a ratio from it says how small :math:`f'` is, not how fast the Taylor
terms decay. With it, elements whose first pass was accurate were retried at a smaller
step, which magnified their rounding: measured on ``benchmarks/bench_numdiff.py``
(real differences), the retried elements of the tuning set's ``conv_tanh_x`` had 13.1
digits after their first pass and 12.0 after the retry that was kept. Tuning set 5.91 -> 5.83
evaluations per element at 12.87 digits (12.86), held-out 7.06 -> 6.87 at 12.77
(12.77); coverage 99.8% / 98.4% (float64; was 99.8% / 98.7%) and 99.9% / 98.3% (float32;
was 100% / 98.6%), median overestimate 8.8 / 9.1 (float64) and 8.3 / 9.9 (float32),
where it was 9.3 / 9.0 and 8.7 / 10.2. (Holding :math:`q` also to what the
insignificant coefficients above the highest significant one allow took the held-out
set to 6.61, but cut the retries that find kinks and steps beyond the scale ``f``
varies on: two regressions of ``properties/test_known_issues.py`` failed.)

Extrapolating from the two highest coefficients rather than the highest alone keeps a
coefficient that is small by accident (a sign change of :math:`f^{(5)}`, the local fit
of a kink) from hiding the trend: a float32 ``hard_tanh`` with its kink inside the
stencil had :math:`b_5` 200 times below :math:`b_4`, and :math:`T` computed from
:math:`b_5` alone was 90 times too small. When no two terms stand out of the noise the
function is a low-degree polynomial as far as the data can tell and :math:`T = 0`; so
too where :math:`b_1` and :math:`b_2` alone stand out (a quadratic: Huber's inner piece,
a squared error), whose ratio says how small :math:`f'` is and, taken for a trend,
predicted truncation 5e7 to 1e10 times the rounding of an exact quadratic, retried for
nothing (``benchmarks/bench_numdiff.py``, held-out float64, problem seeds 0 / 1 / 2:
evaluations per element -0.01 / -0.04 / -0.04, every other figure unchanged).

The fit's weights are exact rationals rounded once (:func:`._stencils.fit_matrix`), and
a fit over nodes that rounding moved is solved rather than inverted: the one-sided
six-node fits of :mod:`._economy` have weights up to 5 and Vandermonde matrices
conditioned 6e4, whose float64 inverse put 5e-14 into the derivative of ``f(x) = x``.

How the passes of one element are combined, and the measurements behind the
constants, are in :mod:`._adaptive`.
"""

from __future__ import annotations

import numpy as np

from gradcheck.numdiff._stencils import LEFT_NODES, RIGHT_NODES, fit_matrix, moments

__all__ = ["estimate_pass", "KAPPA_R", "KAPPA_T", "KAPPA_E", "fit_matrix", "table"]

#: kappa_r: rounding bar in units of ||w|| s / h.
KAPPA_R = 1.0
#: kappa_t: safety factor on the predicted truncation.
KAPPA_T = 2.0
#: kappa_e: factor on a noise sample read off a top coefficient (see the docstring).
KAPPA_E = 4.0
#: z_s: a fitted coefficient counts as signal when it exceeds its own rounding noise
#: this many times, and as unexplained by the trend when it exceeds the trend's
#: prediction this many times (three standard deviations).
SIGNIFICANT = 3.0


# ------------------------------------------------------------------------- fitting


def table(vals, ks, nodes):
    """Node values (center = 0) in the order of ``nodes``, shape ``(len(nodes), nq)``."""
    F = np.zeros((len(nodes), vals.shape[1]))
    for a, k in enumerate(ks):
        if k in nodes:
            F[nodes.index(k)] = vals[a]
    return F


def fit(F, nodes, u_q, actual=False):
    """Coefficients ``b`` (rows m = 0..d) from node values; actual nodes where they moved.

    ``u_q`` holds, per quantity, the actual offsets over ``h`` of each node in ``nodes``
    (or None when nominal). Quantities whose nodes are off by more than 1e-13 get their
    own (batched) Vandermonde inverse; nodes that rounding merged leave no fit (NaN).
    """
    b = fit_matrix(nodes) @ F
    if u_q is not None:
        off = np.abs(u_q - np.asarray(nodes, np.float64)[:, None]).max(axis=0) > (
            0.0 if actual else 1e-13)
        if off.any():
            un = u_q[:, off].T                                          # (nbad, nn)
            merged = (np.diff(np.sort(un, axis=1), axis=1) < 0.25).any(axis=1)
            un = np.where(merged[:, None], np.asarray(nodes, np.float64), un)
            V = un[:, :, None] ** np.arange(len(nodes))[None, None, :]  # (nbad, nn, nn)
            # solved, not inverted: a one-sided six-node V is conditioned 6e4
            sub = np.linalg.solve(V, F[:, off].T[:, :, None])[:, :, 0].T
            b[:, off] = np.where(merged[None, :], np.nan, sub)
    return b


def _node_offsets(values, ks, nodes):
    if values.u is None:
        return None
    u = np.empty((len(nodes), values.src_pos.size))
    for a, k in enumerate(nodes):
        u[a] = 0.0 if k == 0 else values.u[ks.index(k)][values.src_pos]
    return u


def fitted(values, ks, nodes, actual=False):
    """The coefficients of the fit over ``nodes`` for every quantity of ``values``
    (``actual``: over the actual offsets wherever they differ from the nominal ones)."""
    return fit(table(values.vals, ks, nodes), nodes, _node_offsets(values, ks, nodes), actual)


# -------------------------------------------------------------------- trend and noise


def _trend(E, sig, upto, lowest=1):
    """Largest ratio q = (|b_k|/|b_i|)^(1/(k-i)) over significant pairs
    lowest <= i < k <= upto."""
    q = np.zeros(E.shape[1])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in range(lowest + 1, upto + 1):
            for i in range(lowest, k):
                ok = sig[i] & sig[k]
                r = (E[k] / np.where(ok, E[i], 1.0)) ** (1.0 / (k - i))
                q = np.maximum(q, np.where(ok, r, 0.0))
    return q


def _highest(sig, upto, count):
    """Mask of the ``count`` highest significant coefficients among 1..upto."""
    out = np.zeros_like(sig)
    seen = np.zeros(sig.shape[1], dtype=np.int64)
    for m in range(upto, 0, -1):
        take = sig[m] & (seen < count)
        out[m] = take
        seen += take
    return out


def _predicted(E, sig, q, upto, m, count):
    """|b_m| predicted along the trend ``q`` from the ``count`` highest significant
    coefficients among 1..upto (the largest of their predictions)."""
    use = _highest(sig, upto, count)
    P = np.zeros(E.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(1, upto + 1):
            P = np.maximum(P, np.where(use[i], E[i] * q ** (m - i), 0.0))
    return P


def excess_noise(b, n, prior):
    """Per-value noise shown by the top two coefficients where the Taylor trend of the
    ones below them does not explain them (0 where it does); ``n`` the row norms of
    the fit matrix."""
    E = np.abs(b)
    sig = E > SIGNIFICANT * prior[None, :] * n[:, None]
    d = b.shape[0] - 1
    out = np.zeros(b.shape[1])
    for m in (d - 1, d):
        q = _trend(E, sig, m - 1)
        P = _predicted(E, sig, q, m - 1, m, count=m - 1)
        out = np.maximum(out, np.where(E[m] > SIGNIFICANT * P, E[m] / n[m], 0.0))
    return KAPPA_E * out


def truncation(b, noise, nodes):
    """Predicted truncation in units of f (see the module docstring); divide by h."""
    d = len(nodes) - 1
    mu = moments(nodes)
    E = np.abs(b)
    sig = E > SIGNIFICANT * noise
    above = _trend(E, sig, d, lowest=2)         # b_1 left out (module docstring)
    # no coefficient above b_2 stands out of the noise: a quadratic as far as the data
    # tell, whose b_1 / b_2 ratio says how small f' is, not how fast terms decay
    quadratic = ~sig[3:].any(axis=0)
    q = np.where(above > 0, above, np.where(quadratic, 0.0, _trend(E, sig, d)))
    est = sum(abs(mu[m]) * _predicted(E, sig, q, d, m, count=2) for m in (d + 1, d + 2))
    return np.where(q > 0, est, 0.0)


# ------------------------------------------------------------------------- one pass


def estimate_pass(values, ks, nodes, h, eps, arg_scale=None, sides=True, actual=False) -> dict:
    """Everything one pass over ``nodes`` says about the quantities of ``values``
    (arrays over ``values.q``; the fields of
    :class:`~gradcheck.numdiff._records.PassEstimate`). ``arg_scale`` is
    :math:`|x_j|` of each quantity's element (None for directions, whose points carry
    ``values.position`` instead). Without ``sides`` (a one-sided stencil, whose nodes
    hold no pair of sides) the one-sided fields are NaN."""
    b = fitted(values, ks, nodes, actual)
    n = np.linalg.norm(fit_matrix(nodes), axis=1)
    d = len(nodes) - 1
    prior = eps * values.sigma
    if arg_scale is not None:
        slope = np.abs(b[1] / h)
        if values.spread is not None:
            slope = np.maximum(slope, values.spread / h)
        prior = np.hypot(prior, eps * arg_scale * slope)
    if values.grain is not None:
        prior = np.maximum(prior, values.grain)
    excess = excess_noise(b, n, prior)
    s = np.maximum(prior, excess)
    out = {"value": b[1] / h, "unit": n[1] / h, "prior": prior, "excess": excess,
           "tau": KAPPA_T * truncation(b, s[None, :] * n[:, None], nodes) / h,
           "top": np.abs(b[d]) / n[d], "below": np.abs(b[d - 1]) / n[d - 1],
           "sunit": np.sqrt(2.0) / h,
           "pos": np.zeros(b.shape[1]) if values.position is None
           else values.position * np.abs(b[1] / h)}
    if not sides:
        nan = np.full(b.shape[1], np.nan)
        out.update({name: nan for name in ("left", "right", "lunit", "runit", "lsec",
                                           "rsec", "lfar", "rfar")})
        return out
    for name, side in (("left", LEFT_NODES), ("right", RIGHT_NODES)):
        out[name] = fitted(values, ks, side)[1] / h
        out[name[0] + "unit"] = np.linalg.norm(fit_matrix(side)[1]) / h
    for name, side in (("lsec", (-1, 0)), ("rsec", (0, 1)), ("lfar", (-2, -1)),
                       ("rfar", (1, 3))):
        out[name] = fitted(values, ks, side)[1] / h
    return out
