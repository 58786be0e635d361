r"""When the complex step may be used: a cross-check against real differences.

With ``method="auto"``, ``f`` is evaluated at :math:`x + i t v` and :math:`x - 3 i t v`
for a random direction :math:`v` and the result compared with the adaptive real directional derivative along
the same :math:`v`. The complex step is used only if ``f`` returned a complex array, the
two agree within three times their combined error bars, and the real side is conclusive
(error bar below :math:`10^{-6}` of its value, or at rounding level). The direction moves
each element by its own magnitude, :math:`v_j = \pm |x_j|` with random signs, so that it
never crosses a kink at zero (ReLU, ``abs``) however close an input sits to it, and so
that no element moves by a tiny share of its own size: the rounding of the points'
positions (:mod:`._targets`) follows the smallest :math:`|t v_j| / \mathrm{ulp}(x_j)`,
and with normal weights it made the real side of a float32 batch norm 1% inaccurate --
conclusive at rounding level, it accepted a complex step that ``np.var`` (``|z|^2``, not
analytic) had made 5% wrong;
a real side at its rounding level whose bar is wider than ``CHECK_ROUNDING`` (1e-3) of
its value can reject the complex step but not yet accept it: the sparser directions are
tried first, and the wide agreement stands only where none of them is conclusive. A
float32 batch norm through ``np.var`` behind ReLU and max pool had a real side at
rounding level 11% wide along the first direction, and a complex step missing 40% of the
gradient agreed with it (3 false alarms in 168 right float32 stacks of a convolution, an
activation, pooling and batch norm); along an eighth of the elements the two disagreed
by 60 bars. A kink elsewhere (a max-pool tie) can still make the real side
inconclusive, and the check is then repeated on directions that move a random eighth,
then a 64th, of the elements. Code using ``abs``, ``real``, ``conj`` or a cast to float
breaks the complex step silently; such code fails the cross-check (cost: 2 complex and 5
to 15 real evaluations per direction tried). Entries whose complex evaluation is not finite (complex
``exp`` overflows where the real function saturates) are differenced with ``adaptive``
real differences instead, and ``complex_check`` says how many.

**Analyticity probe.** Once the cross-check has agreed, a non-analytic path may still
hide below the real side's resolution (conclusive means a bar up to :math:`10^{-6}` of the
value): ``np.var`` of complex values is ``mean(|z - mean|**2)``, and where the path
through it carries :math:`5 \cdot 10^{-9}` of the gradient the complex step drops it and
is trusted with a bar of :math:`10^{-13}` (a batch norm of tiny conv outputs, whose
real differences are only good to :math:`10^{-7}` there). Along the direction :math:`v`,
:math:`\varphi(\zeta) = \langle r, f(x + \zeta v)\rangle` is, to first order,
:math:`\varphi(0) + \alpha\zeta + \beta\bar\zeta` with :math:`\alpha, \beta` real:
analytic code has :math:`\beta = 0`, the complex step measures :math:`\alpha - \beta`
and the true derivative is :math:`\alpha + \beta`. On the circle
:math:`\zeta_k = \rho e^{2\pi i k/n}` the discrete Fourier coefficient of :math:`\varphi`
at frequency 1, over :math:`\rho`, is :math:`\alpha` (plus the aliased Taylor term
:math:`a_{n+1}\rho^n`), so that it minus the complex step is :math:`\beta`; the one at
frequency :math:`-1` is :math:`\beta` again (plus :math:`a_{n-1}\rho^{n-2}`). Nothing
is subtracted from :math:`f(x)` at a small step, so :math:`\beta` is resolved to
``f``'s rounding over :math:`\rho` = 1/8 of each element's own size, instead of over
the 1e-3 steps of real differences: a hundred times finer. ``f(conj z) = conj f(z)``
(true of real code, analytic or not) gives the lower half circle from the upper.
:math:`\beta` is computed for the check's contraction and ``PROBE_CONTRACTIONS - 1``
random ones of ``f``'s outputs: the direction may cancel :math:`\beta` between its
elements for one contraction and not for another. A :math:`\beta` above ``f``'s
rounding that would make the complex step miss its own bar and is below
``PROBE_SHARE`` of it (a pole of ``f`` inside the circle gives a large one; large
non-analytic shares are the cross-check's to see) is confirmed on a circle of half the radius: there :math:`\beta` must agree within
``PROBE_AGREE`` both ways (its aliased terms move by :math:`2^8` and :math:`2^6`;
the second, extrapolated from the two radii), and stand ``PROBE_SIGNIFICANT`` times
above the noise, measured as the part of the Taylor coefficients :math:`2 \dots n/2`
that does not scale as :math:`\rho^m` between the two circles. Only then is the complex
step rejected, saying why. The probe is left out where the cross-check already pinned
the complex step to ``PROBE_RESOLVED`` of its value (``CHECK_AGREE`` times the two
bars): a ``tanh`` layer, whose real differences agree to 1e-11. Cost: :math:`n/2 + 2`
= 6 evaluations per call, 5 more where a circle shows a suspect :math:`\beta`, whatever
the number of elements (one direction only: a second would double it, and
``method="auto"`` on a handful of elements is held to ``2 n + 25`` evaluations).
Measured: the batch norm above is rejected for 180 of 200 seeds of ``numerical_vjp``
(the misses: directions along which the variance paths cancel; the regression test's
seed 4 is among the 180); with a 1e-8 share of the gradient behind the cross-check's
back (``tests/test_numdiff_analytic.py``, seeds 0-49), a vector ``f`` through ``abs``,
``z * conj(z)``, ``real``, ``var`` and ``norm`` is rejected 50, 50, 49, 49 and 45 times
in 50 (a path through one scalar, such as ``var`` or ``norm``, is the same for every
contraction and cancels along the direction now and then), a scalar ``f`` 48, 48, 46,
49 and 48 times; no analytic function of that file (poles and branch points inside the
circles, functions on a grid of 1e-10, steep ``exp`` and ``tanh``, float32) was
rejected, and the complex and default rows of ``benchmarks/bench_numdiff.py`` kept
their digits and coverage (the default rows' evaluations per element moved by -0.02 to
+0.12: a handful per problem of 12 to 216 elements, where the probe runs).
"""

from __future__ import annotations

import numpy as np

from gradcheck.numdiff._adaptive import run_adaptive
from gradcheck.numdiff._core import run_complex
from gradcheck.numdiff._stencils import DEFAULT_REAL, stencil
from gradcheck.numdiff._steps import direction_floor, direction_steps
from gradcheck.numdiff._targets import DirectionTarget, _RealOutput

__all__ = ["complex_ok"]

#: Agreement factor and conclusiveness threshold of the complex-step cross-check.
CHECK_AGREE = 3.0
CHECK_CONCLUSIVE = 1e-6
#: A real side at its rounding level whose bar is wider than this share of its value
#: settles the cross-check only where no sparser direction does better (module docstring).
CHECK_ROUNDING = 1e-3
#: Share of the elements moved by each successive test direction.
CHECK_SUPPORT = (1.0, 1 / 8, 1 / 64, 1 / 64)
#: Analyticity probe (module docstring): points on a circle (its upper half is
#: evaluated), the circle's radius in units of the direction, contractions of f's
#: outputs tried (the check's own and random ones), significance over the noise, and
#: agreement between the estimates of the conj(zeta) term.
PROBE_POINTS = 8
PROBE_RADIUS = 1 / 8
PROBE_CONTRACTIONS = 4
PROBE_SIGNIFICANT = 8.0
PROBE_AGREE = 0.25
#: The probe looks for conj(zeta) terms below this share of the complex step: larger
#: ones are the cross-check's to see, and a pole of f inside the circle looks like one.
PROBE_SHARE = 1e-4
#: The probe is left out where the cross-check's agreement window, CHECK_AGREE times the
#: two bars, is already below this share of the value: a conj(zeta) term it lets through
#: is then below the checker's tightest float64 allowances (1e-10 of a gradient).
PROBE_RESOLVED = 3e-11


def complex_ok(ev, x, contraction, scale, eps, seed, typical=None):
    """Cross-check of the complex step along random directions (see module doc);
    ``typical`` caps the real differences' steps as in :func:`._steps.base_steps`."""
    rng = np.random.default_rng(seed)
    ax = np.abs(x).astype(np.float64).reshape(-1)
    r = contraction
    if r is None and ev.f0.size > 1:
        r = rng.standard_normal(ev.f0.size)
    rich = stencil(DEFAULT_REAL)
    verdict = "inconclusive cross-check (real differences too inaccurate along the test directions)"
    wide = None
    for support in CHECK_SUPPORT:
        keep = rng.random(ax.size) < support
        if not keep.any():
            keep[rng.integers(ax.size)] = True
        mag = np.where(ax > 0, ax, 0.0) if np.any(ax[keep] > 0) else scale
        V = (rng.choice(np.array([-1.0, 1.0]), ax.size) * mag * keep).reshape((1,) + x.shape)
        target = DirectionTarget(ev, x, V, contraction=r)
        try:
            cs = run_complex(target, direction_steps(x, V, scale, eps, 0, imag=True), eps)
        except _RealOutput:
            return False, "f returned real values for complex input"
        except Exception as exc:  # noqa: BLE001 -- any failure on complex input rules it out
            return False, f"f raised {type(exc).__name__} on complex input"
        if not np.isfinite(cs.value[0]):      # complex overflow: try a sparser direction
            verdict = "f returned non-finite values for complex input"
            continue
        real = run_adaptive(target, direction_steps(x, V, scale, eps, rich.order,
                                                    typical=typical), rich,
                            eps, max_retries=2, step_floor=direction_floor(x, V))
        d_r, e_r, rho_r = real.value[0], real.error[0], real.rho[0]
        d_c, e_c = cs.value[0], cs.error[0]
        if not np.isfinite(d_r) or e_r > max(CHECK_CONCLUSIVE * abs(d_r), 10 * rho_r):
            continue
        if abs(d_c - d_r) > CHECK_AGREE * (e_r + e_c):
            return False, (f"complex step disagrees with real differences along a random "
                           f"direction ({d_c:.17g} vs {d_r:.17g} +- {e_r:.2g})")
        if e_r > CHECK_ROUNDING * abs(d_r):
            # agreement within a wide window, at the real side's rounding level: a
            # sparser direction may pin the complex step closer (module docstring)
            wide = wide or (V, d_c, e_c)
            continue
        if CHECK_AGREE * (e_r + e_c) <= PROBE_RESOLVED * abs(d_r):
            return True, "accepted"        # pinned finer than a probe would matter
        return _probe(ev, x, V, r, rng, scale, eps, d_c, e_c)
    if wide is not None:        # no direction did better than a wide agreement
        return _probe(ev, x, wide[0], r, rng, scale, eps, wide[1], wide[2])
    return False, verdict


def _circle(ev, x, v, rs, rho, tiny=None):
    """Fourier coefficients (``PROBE_POINTS`` by contraction) of ``<r, f(x + z v)>`` on the
    circle ``|z| = rho``, from its upper half (f(conj z) = conj f(z)); with ``tiny``, also
    the complex step ``Im <r, f(x + i tiny v)> / tiny``. None where f fails or overflows."""
    n = PROBE_POINTS
    zeta = rho * np.exp(2j * np.pi * np.arange(n // 2 + 1) / n)
    if tiny is not None:
        zeta = np.append(zeta, 1j * tiny)
    dtype = np.result_type(x.dtype, np.complex64)
    per = ev.batch_size(np.dtype(dtype).itemsize)           # the memory budget's chunks
    phi = np.empty((zeta.size, rs.shape[1]), dtype=np.complex128)
    for i in range(0, zeta.size, per):
        X = (x.reshape(1, -1) + zeta[i:i + per, None] * v.reshape(1, -1)).astype(dtype)
        try:
            Y = ev(X.reshape((-1,) + x.shape), quiet_complex=True)
        except Exception:  # noqa: BLE001 -- far from x the probe may leave f's domain
            return None
        phi[i:i + per] = np.asarray(Y).reshape(X.shape[0], -1).astype(np.complex128) @ rs
    if not np.all(np.isfinite(phi)):
        return None
    half = phi[:n // 2 + 1]
    c = np.fft.fft(np.concatenate([half, np.conj(half[-2:0:-1])]), axis=0) / n
    return c, (phi[-1].imag / tiny if tiny is not None else None)


def _probe(ev, x, V, r, rng, scale, eps, d_c, e_c):
    """The analyticity probe along the cross-check's direction ``V``, whose complex step
    is ``d_c +- e_c`` (module docstring): ``(True, "accepted")`` unless ``f(x + z V)``
    shows a conj(z) term that the complex step would miss."""
    rs = np.ones((1, 1)) if r is None else np.asarray(r, np.float64).reshape(-1, 1)
    if ev.f0.size > 1:
        rs = np.concatenate([rs, rng.standard_normal((ev.f0.size, PROBE_CONTRACTIONS - 1))
                             * np.linalg.norm(rs) / np.sqrt(ev.f0.size)], axis=1)
    rel = e_c / abs(d_c) if d_c != 0 else np.inf
    found = _probe_along(ev, x, V, rs, scale, eps, rel, e_c)
    if found is None:
        return True, "accepted"
    return False, (f"f is not analytic (abs, conj, real or var of complex values?): along "
                   f"a random direction f(x + z v) has a conj(z) term {found[0]:.3g} beside "
                   f"the complex step's {found[1]:.17g}, which misses twice it")


def _probe_along(ev, x, V, rs, scale, eps, rel, e_c):
    """(conj(z) term, complex step) of the first contraction that shows one along ``V``,
    else None."""
    n, rho = PROBE_POINTS, PROBE_RADIUS
    h = float(direction_steps(x, V, scale, eps, 0, imag=True)[0])
    first = _circle(ev, x, V, rs, rho, tiny=h)
    if first is None:
        return None
    c, cs = first
    beta = c[1].real / rho - cs
    bar = rel * np.abs(cs)
    bar[0] = e_c
    with np.errstate(invalid="ignore"):
        suspect = ((np.abs(beta) > PROBE_SIGNIFICANT * eps * np.abs(c[0]) / rho)
                   & (2 * np.abs(beta) > bar) & (np.abs(beta) <= PROBE_SHARE * np.abs(cs)))
    if not suspect.any():
        return None
    # confirmed on a circle of half the radius, whose noise the Taylor terms measure: an
    # analytic f's m-th coefficient scales as rho**m, the rest is rounding
    second = _circle(ev, x, V, rs[:, suspect], rho / 2)
    if second is None:
        return None
    c2, c1, cs, b1 = second[0], c[:, suspect], cs[suspect], beta[suspect]
    m = np.arange(2, n // 2 + 1)[:, None]
    noise = np.sqrt(np.mean(np.abs(c2[2:n // 2 + 1] - c1[2:n // 2 + 1] / 2.0**m) ** 2,
                            axis=0)) / (rho / 2)
    beta2 = c2[1].real / (rho / 2) - cs
    # the e^{-i theta} coefficient, its aliased Taylor term (rho**(n-1)) extrapolated away
    tail = (2.0 ** (n - 2) * c2[n - 1].real / (rho / 2) - c1[n - 1].real / rho) / (
        2.0 ** (n - 2) - 1)
    with np.errstate(invalid="ignore"):
        hit = ((np.abs(beta2) > PROBE_SIGNIFICANT * noise)
               & (np.abs(beta2 - b1) <= PROBE_AGREE * np.abs(b1))
               & (np.abs(tail - b1) <= PROBE_AGREE * np.abs(b1)))
    if not hit.any():
        return None
    j = int(np.argmax(hit))
    return b1[j], cs[j]
