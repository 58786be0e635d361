"""``gradcheck check --plot DIR``: pictures of a failing check (needs matplotlib).

For every failing tensor two PNG files:

* ``<spec>__<tensor>__error.png`` -- a heatmap of :math:`|a - n|`, the difference
  between the analytic and the numerical gradient, one panel per (batch item, channel)
  for image-shaped tensors, the worst element circled;
* ``<spec>__<tensor>__steps.png`` -- the error-vs-step curve at the worst element: the
  central difference :math:`(C(\\theta + h e) - C(\\theta - h e)) / 2h` of the checker's
  scalar :math:`C = \\langle R, f \\rangle` for steps :math:`h` from 1e-13 to 1e-1, and its
  distance to the analytic value. A correct gradient gives a V (truncation error falling
  as :math:`h^2`, rounding error rising as :math:`1/h`) that dips to the rounding floor;
  a wrong one levels off at the size of the bug, for every step.

matplotlib is imported only here, only when plots are asked for.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from gradcheck._errors import ConfigurationError

__all__ = ["require_matplotlib", "write_plots", "step_curve"]


def require_matplotlib():
    """Import matplotlib's Agg canvas, or raise a one-line error saying how to get it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigurationError(
            "--plot needs matplotlib, which is not installed; install the plots extra "
            "(pip install -e '.[plots]' in the gradcheck checkout) or leave out --plot") from None
    return Figure, FigureCanvasAgg


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "spec"


def _panels(a: np.ndarray):
    """Lay an array out as a 2-D image: (N, C, H, W) as an N x C grid of H x W panels."""
    if a.ndim == 0:
        return a.reshape(1, 1), lambda idx: (0, 0)
    if a.ndim == 1:
        return a.reshape(1, -1), lambda idx: (0, idx[0])
    if a.ndim == 2:
        return a, lambda idx: tuple(idx)
    h, w = a.shape[-2], a.shape[-1]
    rows = a.shape[0]
    cols = math.prod(a.shape[1:-2])
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    flat = a.reshape(rows, cols, h, w)
    for r in range(rows):
        for c in range(cols):
            grid[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = flat[r, c]

    def where(idx):
        col = int(np.ravel_multi_index(idx[1:-2], a.shape[1:-2])) if a.ndim > 3 else idx[1]
        return idx[0] * (h + 1) + idx[-2], col * (w + 1) + idx[-1]

    return grid, where


def step_curve(built, argname: str, index, *, seed: int, steps=None):
    """``(steps, numeric, analytic)`` at element ``index`` of ``argname``.

    ``numeric[k]`` is the central difference with step ``steps[k]`` (relative to the
    element's magnitude) of :math:`C = \\langle R, f(\\text{args})\\rangle`, ``R`` the
    standard-normal cotangent drawn from ``seed``; ``analytic`` is the backward pass's
    value of the same derivative.
    """
    f, f_vjp, names = built.network.as_function()
    args = [built.x, *built.network.flatten_params(built.params)]
    k = names.index(argname)
    y = np.asarray(f(*args))
    cot = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    analytic = float(np.asarray(f_vjp(cot, *args)[k])[tuple(index)])
    base = args[k]
    scale = max(1.0, abs(float(base[tuple(index)])))
    steps = np.logspace(-13, -1, 37) if steps is None else np.asarray(steps)

    def c(h):
        a = base.copy()
        a[tuple(index)] += h
        return float(np.sum(cot.astype(np.float64) * f(*args[:k], a, *args[k + 1:])))

    numeric = np.array([(c(h * scale) - c(-h * scale)) / (2 * h * scale) for h in steps])
    return steps * scale, numeric, analytic


def write_plots(results, built_by_label, outdir) -> list[str]:
    """Write the PNG files for every failing tensor; return their paths."""
    Figure, FigureCanvasAgg = require_matplotlib()
    os.makedirs(outdir, exist_ok=True)
    written = []
    for r in results:
        if r.report is None:
            continue
        for a in r.report.failures:
            if a.analytic is None or a.numeric is None:
                continue
            stem = os.path.join(outdir, f"{_slug(r.label)}__{_slug(a.name)}")
            diff = np.abs(np.asarray(a.analytic, dtype=np.float64)
                          - np.asarray(a.numeric, dtype=np.float64))
            image, where = _panels(diff)
            fig = Figure(figsize=(7, 5), layout="constrained")
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            shown = ax.imshow(image, cmap="magma", interpolation="nearest")
            fig.colorbar(shown, ax=ax, label="|analytic - numeric|")
            if a.worst_index is not None and a.mode == "full":
                row, col = where(tuple(a.worst_index))
                ax.plot([col], [row], "o", mfc="none", mec="cyan", ms=14, mew=2)
            panels = " (rows: batch items, columns: channels)" if diff.ndim >= 4 else ""
            ax.set_title(f"{r.label}\n{a.name}{panels}\nworst {tuple(a.worst_index or ())}: "
                         f"analytic {a.analytic_at_worst:.6g}, numeric {a.numeric_at_worst:.6g}",
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.savefig(stem + "__error.png", dpi=100)
            written.append(stem + "__error.png")
            built = built_by_label.get(r.label)
            if built is not None and a.worst_index is not None and a.mode == "full":
                steps, numeric, analytic = step_curve(built, a.name, tuple(a.worst_index),
                                                      seed=r.report.seed)
                fig = Figure(figsize=(7, 4.5), layout="constrained")
                FigureCanvasAgg(fig)
                ax = fig.add_subplot()
                err = np.abs(numeric - analytic)
                ax.loglog(steps, np.maximum(err, np.finfo(float).tiny), "o-", ms=3,
                          label="|central difference(h) - analytic|")
                if math.isfinite(a.tolerance_at_worst) and a.tolerance_at_worst > 0:
                    ax.axhline(a.tolerance_at_worst, color="grey", ls="--",
                               label="allowed difference")
                ax.set_xlabel("step h")
                ax.set_ylabel("error")
                ax.set_title(f"{r.label}: {a.name}{list(a.worst_index)}\nanalytic "
                             f"{analytic:.6g}; a floor far above rounding means a wrong "
                             f"gradient", fontsize=9)
                ax.legend(fontsize=8)
                fig.savefig(stem + "__steps.png", dpi=100)
                written.append(stem + "__steps.png")
    return written
