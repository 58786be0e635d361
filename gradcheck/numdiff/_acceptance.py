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
a kink elsewhere (a max-pool tie) can still make the real side inconclusive, and the
check is then repeated on directions that move a random eighth, then a 64th, of the
elements. Code using ``abs``, ``real``, ``conj`` or a cast to float breaks the complex
step silently; such code fails the cross-check (cost: 2 complex and 5 to 15 real
evaluations per direction tried). Entries whose complex evaluation is not finite (complex
``exp`` overflows where the real function saturates) are differenced with ``adaptive``
real differences instead, and ``complex_check`` says how many.
"""

from __future__ import annotations

import numpy as np

from gradcheck.numdiff._adaptive import run_adaptive
from gradcheck.numdiff._core import run_complex
from gradcheck.numdiff._stencils import DEFAULT_REAL, stencil
from gradcheck.numdiff._steps import direction_steps
from gradcheck.numdiff._targets import DirectionTarget, _RealOutput

__all__ = ["complex_ok"]

#: Agreement factor and conclusiveness threshold of the complex-step cross-check.
CHECK_AGREE = 3.0
CHECK_CONCLUSIVE = 1e-6
#: Share of the elements moved by each successive test direction.
CHECK_SUPPORT = (1.0, 1 / 8, 1 / 64, 1 / 64)


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
                            eps, max_retries=2)
        d_r, e_r, rho_r = real.value[0], real.error[0], real.rho[0]
        d_c, e_c = cs.value[0], cs.error[0]
        if not np.isfinite(d_r) or e_r > max(CHECK_CONCLUSIVE * abs(d_r), 10 * rho_r):
            continue
        if abs(d_c - d_r) > CHECK_AGREE * (e_r + e_c):
            return False, (f"complex step disagrees with real differences along a random "
                           f"direction ({d_c:.17g} vs {d_r:.17g} +- {e_r:.2g})")
        return True, "accepted"
    return False, verdict
