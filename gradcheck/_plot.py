r"""``gradcheck check --plot DIR``: pictures of a failing check (needs matplotlib).

For every failing tensor that was checked element by element, in ``DIR``:

* ``<spec>__<tensor>__gradients.png`` -- the analytic gradient, the numerical one and
  their difference, side by side (stacked for wide tensors). Analytic and numeric share
  one diverging colour scale centered at zero, so a sign or a scale error shows at a
  glance; the difference ``analytic - numeric`` has its own diverging scale, centered at
  zero. The axes are named by the tensor's role (batch item / channel / H / W for an
  activation, out / in channel and kernel taps for a convolution's weight, output unit /
  input feature for a dense weight; see :mod:`gradcheck._plot_layout`), a bias is a bar
  chart, and the worst element is circled. Elements that were not checked are grey.
* ``<spec>__<tensor>__steps.png`` -- the error-vs-step curve at the worst element, only
  where it says something: when that element sits at a non-differentiable point, or when
  the difference there is less than ten times the numerical derivative's own error bar
  (so rounding or truncation could explain part of it). It plots
  :math:`|q(h) - a|` for steps :math:`h` from 1e-13 to 1e-1 (relative to the element's
  magnitude), :math:`q` the central difference
  :math:`(C(\theta + h e) - C(\theta - h e)) / 2h` of the checker's scalar
  :math:`C = \langle R, f \rangle` and :math:`a` the analytic value. A right gradient
  gives a V (truncation falling as :math:`h^2`, rounding rising as :math:`1/h`) that
  dips to the rounding floor; a wrong one levels off at the size of the bug, for every
  step. At a kink the one-sided differences are drawn too: a valid analytic value
  matches one of them (or lies between). A plainly wrong gradient -- a difference many
  times the error bar -- gets no curve: it would only be a flat line at the bug's size.

``<spec>`` is the spec file's stem (``specs/examples/user_layer_buggy.toml`` gives
``user_layer_buggy``; specs of one run that share a stem get their paths without the
suffix, ``a/k.toml`` and ``b/k.toml`` give ``a_k`` and ``b_k``) and ``<tensor>`` the
tensor's name, with every character other than a letter, a digit, ``.``, ``_`` or ``-``
replaced by ``_``, and none leading (never a hidden file). matplotlib is imported only here, only when
plots are asked for.
"""

from __future__ import annotations

import os
import re

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._plot_layout import mosaic, tensor_layout

__all__ = ["require_matplotlib", "write_plots", "step_curve", "steps_reason",
           "gradients_figure", "steps_figure", "STEPS_ERROR_BARS"]

#: The step curve is drawn when the difference at the worst element is less than this
#: many times the numerical derivative's error bar there.
STEPS_ERROR_BARS = 10.0

_VALUES_CMAP, _DIFF_CMAP = "RdBu_r", "PuOr_r"
_NOT_CHECKED, _BORDER = "0.55", "0.15"


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
    """``text`` safe as part of a file name: no separators, and never a hidden file (no
    leading ``.``: ``./spec.toml`` must not give ``._spec``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "spec"


def file_stems(labels) -> dict:
    """``label -> <spec>`` for the plot file names: the spec file's stem
    (``specs/examples/user_layer_buggy.toml`` gives ``user_layer_buggy``); where two
    specs share a stem, their paths without the suffix (``a/k.toml``, ``b/k.toml`` give
    ``a_k``, ``b_k``).

    >>> file_stems(["./spec.toml", "a/k.toml", "b/k.toml", "<built-in default>"])
    {'./spec.toml': 'spec', 'a/k.toml': 'a_k', 'b/k.toml': 'b_k', '<built-in default>': 'built-in_default'}
    """
    labels = list(dict.fromkeys(labels))
    stem = {lab: _slug(os.path.splitext(os.path.basename(lab))[0]) for lab in labels}
    count = {}
    for lab in labels:
        count[stem[lab]] = count.get(stem[lab], 0) + 1
    return {lab: stem[lab] if count[stem[lab]] == 1 else _slug(os.path.splitext(lab)[0])
            for lab in labels}


# --------------------------------------------------------------------------- when to draw


def _elementwise(a) -> str:
    """'' if ``a`` holds per-element values to draw, else why not."""
    if a.mode == "fast":
        return ("fast mode checks random directions, not single elements; rerun with "
                "--mode full for a picture")
    if a.mode == "sampled":
        return ("sampled mode checks some elements, not every one; rerun with --mode full "
                "for a picture")
    if (a.analytic is None or a.numeric is None or np.shape(a.analytic) != tuple(a.shape)
            or np.shape(a.numeric) != tuple(a.shape) or a.worst_index is None
            or len(a.worst_index) != len(a.shape)):
        return "the report holds no per-element values for it"
    return ""


def _at_kink(a) -> bool:
    mask = a.nondifferentiable_mask
    return (mask is not None and np.shape(mask) == tuple(a.shape)
            and bool(mask[tuple(a.worst_index)]))


def steps_reason(a) -> str | None:
    """Why the error-vs-step curve at ``a``'s worst element is worth drawing, or None.

    From the report alone: the worst element is non-differentiable (a kink), or its
    difference is less than :data:`STEPS_ERROR_BARS` times the numerical error bar.
    """
    if _elementwise(a):
        return None
    if _at_kink(a):
        return "the worst element sits at a kink (a non-differentiable point)"
    diff = abs(a.analytic_at_worst - a.numeric_at_worst)
    bar = a.error_estimate_at_worst
    if np.isfinite(bar) and bar > 0 and diff < STEPS_ERROR_BARS * bar:
        return (f"the difference {diff:.3g} is less than {STEPS_ERROR_BARS:g} times the "
                f"numerical error bar {bar:.3g}: is it the step?")
    return None


# --------------------------------------------------------------------------- the curve


def _cotangent(seed: int, y: np.ndarray) -> np.ndarray:
    # The checker's R when none is given, from the checker's own draw; a test pins that
    # the analytic value here equals the report's.
    from gradcheck.checker._scalarize import seeded_cotangent

    return seeded_cotangent(seed, np.shape(y))


def _quotients(built, argname: str, index, *, seed: int, steps=None):
    f, f_vjp, names = built.network.as_function()
    args = [built.x, *built.network.flatten_params(built.params)]
    k = names.index(argname)
    y = np.asarray(f(*args))
    cot = _cotangent(seed, y)
    analytic = float(np.asarray(f_vjp(cot.astype(y.dtype), *args)[k])[tuple(index)])
    base = args[k]
    scale = max(1.0, abs(float(base[tuple(index)])))
    steps = np.logspace(-13, -1, 37) if steps is None else np.asarray(steps, dtype=float)

    def c(h):
        moved = base.copy()
        moved[tuple(index)] += h
        return float(np.sum(cot * np.asarray(f(*args[:k], moved, *args[k + 1:]),
                                             dtype=np.float64)))

    c0 = c(0.0)
    plus = np.array([c(h * scale) for h in steps])
    minus = np.array([c(-h * scale) for h in steps])
    hs = steps * scale
    return hs, (plus - minus) / (2 * hs), (plus - c0) / hs, (c0 - minus) / hs, analytic


def step_curve(built, argname: str, index, *, seed: int, steps=None):
    """``(steps, numeric, analytic)`` at element ``index`` of ``argname``.

    ``numeric[k]`` is the central difference with step ``steps[k]`` (relative to the
    element's magnitude) of :math:`C = \\langle R, f(\\text{args})\\rangle`, ``R`` the
    standard-normal cotangent drawn from ``seed`` as the checker draws it; ``analytic``
    is the backward pass's value of the same derivative.
    """
    hs, central, _, _, analytic = _quotients(built, argname, index, seed=seed, steps=steps)
    return hs, central, analytic


# --------------------------------------------------------------------------- figures


def _figure(size):
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _wrap(lines, width_in: float) -> list[str]:
    import textwrap

    chars = int(width_in * 15)       # about this many 9-point characters per inch
    return [part for line in lines for part in textwrap.wrap(line, chars)]


def _header(a, label: str, layout, *, mark: str = "circled") -> list[str]:
    idx = tuple(int(i) for i in a.worst_index)
    diff = abs(a.analytic_at_worst - a.numeric_at_worst)
    lines = [f"{label}: {a.name} {tuple(a.shape)}, {layout.role} "
             f"({' x '.join(layout.long)})",
             f"{a.n_failed} of {a.n_checked} checked elements FAIL; worst {idx} ({mark}): "
             f"analytic {a.analytic_at_worst:.6g}, numeric {a.numeric_at_worst:.6g} "
             f"(|diff| {diff:.3g}, allowed {a.tolerance_at_worst:.3g})"]
    if a.diagnosis is not None:
        lines.append(f"likely cause: {a.diagnosis.cause}")
    return lines


def _cmap(name):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=_NOT_CHECKED)


def _limit(*arrays) -> float:
    m = max((float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 0.0) for x in arrays)
    return m if m > 0 else 1.0


def _ring(ax, x, y):
    for colour, width in (("black", 3.5), ("lime", 1.6)):
        ax.plot([x], [y], "o", ms=15, mfc="none", mec=colour, mew=width)


def _draw(ax, m, cmap, norm, aspect):
    """Draw a mosaic's tiles ``m.gap`` apart on a dark ground; return one of the images."""
    from matplotlib.ticker import MaxNLocator

    h, w = m.tile
    ax.set_facecolor(_BORDER)
    for y0, x0, block in m.tiles():
        shown = ax.imshow(block, cmap=cmap, norm=norm, aspect=aspect, interpolation="nearest",
                          extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5))
    height, width = m.extent
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    rows, cols = len(m.row_labels), len(m.col_labels)
    if len(m.shape) == 2:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        return shown
    if m.tile_row_labels and rows * h <= 12:        # few rows: name each one
        ax.set_yticks([m.origin(r, 0)[0] + i for r in range(rows) for i in range(h)],
                      [f"{r} {t}" for r in m.row_labels for t in m.tile_row_labels],
                      fontsize=7)
    elif m.tile_row_labels:                           # a tick per row, a name per tile
        ax.set_yticks([m.origin(r, 0)[0] + i for r in range(rows) for i in range(h)],
                      minor=True)
        ax.set_yticks([m.origin(r, 0)[0] + (h - 1) / 2 for r in range(rows)],
                      [f"{r} {m.tile_row_labels[0]}-{m.tile_row_labels[-1]}"
                       for r in m.row_labels], fontsize=7)
    else:
        every = max(1, rows // 16)
        ax.set_yticks([m.origin(r, 0)[0] + (h - 1) / 2 for r in range(0, rows, every)],
                      m.row_labels[::every], fontsize=7)
    if cols > 1:
        every = max(1, cols // 16)
        ax.set_xticks([m.origin(0, c)[1] + (w - 1) / 2 for c in range(0, cols, every)],
                      m.col_labels[::every], fontsize=7, rotation=90 if cols > 8 else 0)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return shown


def _image_figure(a, label: str, layout):
    an = np.asarray(a.analytic, dtype=np.float64)
    nu = np.asarray(a.numeric, dtype=np.float64)
    worst = tuple(int(i) for i in a.worst_index)
    panels = [(mosaic(an, layout, worst), "analytic (backward pass)"),
              (mosaic(nu, layout, worst), "numeric (finite differences)"),
              (mosaic(an - nu, layout, worst), "analytic - numeric")]
    m = panels[0][0]
    height, width = m.extent
    ratio = width / height
    aspect = "equal" if 1 / 6 <= ratio <= 6 else "auto"
    long_side = 4.2
    pw, ph = (long_side, max(1.6, long_side / ratio)) if ratio >= 1 else \
        (max(1.6, long_side * ratio), long_side)
    side_by_side = ratio <= 1.6
    header = _header(a, label, layout)
    if m.shown:
        header.append(m.shown)
    if not (np.isfinite(an).all() and np.isfinite(nu).all()):
        header.append("grey: no value (not checked, or not finite)")
    width = max(10.0, 3 * pw + 2.6) if side_by_side else max(7.5, pw + 2.2)
    header = _wrap(header, width)
    height = (ph + 1.0 if side_by_side else 3 * ph + 1.7) + 0.17 * len(header)
    fig = _figure((width, height))
    axes = fig.subplots(1, 3) if side_by_side else fig.subplots(3, 1)
    from matplotlib.colors import Normalize

    values = Normalize(-_limit(an, nu), _limit(an, nu))
    dlim = _limit(an - nu)
    diff = Normalize(-dlim, dlim)
    shown = []
    for ax, (mm, title), norm, cmap in zip(axes, panels, (values, values, diff),
                                           (_VALUES_CMAP, _VALUES_CMAP, _DIFF_CMAP)):
        shown.append(_draw(ax, mm, _cmap(cmap), norm, aspect))
        ax.set_title(title, fontsize=9)
        at = mm.locate(worst)
        if at is not None:
            _ring(ax, at[1], at[0])
    bar = fig.colorbar(shown[0], ax=list(axes[:2]), shrink=0.9)
    bar.set_label("gradient: analytic and\nnumeric share this scale", fontsize=8)
    bar = fig.colorbar(shown[2], ax=axes[2], shrink=0.9)
    bar.set_label("analytic - numeric:\nown scale, diverging,\ncentered at 0", fontsize=8)
    first, middle, last = axes
    if side_by_side:
        first.set_ylabel(m.ylabel, fontsize=8)
        middle.set_xlabel(m.xlabel, fontsize=8)
    else:
        middle.set_ylabel(m.ylabel, fontsize=8)
        last.set_xlabel(m.xlabel, fontsize=8)
    fig.suptitle("\n".join(header), fontsize=9)
    return fig


def _bar_figure(a, label: str, layout):
    an = np.asarray(a.analytic, dtype=np.float64).reshape(-1)
    nu = np.asarray(a.numeric, dtype=np.float64).reshape(-1)
    d = an - nu
    n = an.size
    worst = int(np.ravel_multi_index(tuple(int(i) for i in a.worst_index), a.shape)) \
        if a.shape else 0
    header = _header(a, label, layout, mark="highlighted")
    wide = n > 24
    width = 10.0 if wide else max(7.5, 3 + 0.6 * n)
    header = _wrap(header, width)
    fig = _figure((width, (6.0 if wide else 3.6) + 0.17 * len(header)))
    ax_v, ax_d = fig.subplots(2, 1) if wide else fig.subplots(1, 2)
    x = np.arange(n)
    ax_v.bar(x - 0.2, an, 0.4, label="analytic", color="#b2182b")
    ax_v.bar(x + 0.2, nu, 0.4, label="numeric", color="#2166ac")
    ax_v.axhline(0, color="0.3", lw=0.8)
    ax_v.set_ylabel("gradient (one scale for both)", fontsize=8)
    ax_v.legend(fontsize=8)
    ax_d.bar(x, np.nan_to_num(d), 0.8, color=np.where(d >= 0, "#e08214", "#8073ac"))
    ax_d.axhline(0, color="0.3", lw=0.8)
    dlim = _limit(d) * 1.15
    ax_d.set_ylim(-dlim, dlim)
    ax_d.set_ylabel("analytic - numeric\n(own scale, centered at 0)", fontsize=8)
    name = layout.long[0] if layout.long else "element"
    for ax, title in ((ax_v, "analytic and numeric"), (ax_d, "difference")):
        ax.axvspan(worst - 0.5, worst + 0.5, color="gold", alpha=0.45, zorder=0,
                   label=None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(name, fontsize=8)
        ax.set_xlim(-0.7, n - 0.3)
        if n <= 32:
            ax.set_xticks(x)
    for ax in (ax_v, ax_d):
        ax.text(worst, 0.98, "worst", transform=ax.get_xaxis_transform(), ha="center",
                va="top", fontsize=7, color="0.2")
    fig.suptitle("\n".join(header), fontsize=9)
    return fig


def gradients_figure(a, label: str):
    """The side-by-side figure of one failing tensor (an ``ArgumentReport`` in full mode)."""
    layout = tensor_layout(a.name, a.shape)
    if len(a.shape) <= 1:
        return _bar_figure(a, label, layout)
    return _image_figure(a, label, layout)


def steps_figure(built, a, label: str, *, seed: int, reason: str):
    """The error-vs-step curve at ``a``'s worst element (see the module docstring)."""
    idx = tuple(int(i) for i in a.worst_index)
    hs, central, forward, backward, analytic = _quotients(built, a.name, idx, seed=seed)
    tiny = np.finfo(float).tiny
    fig = _figure((7.5, 4.8))
    ax = fig.add_subplot()
    if _at_kink(a):
        ax.loglog(hs, np.maximum(np.abs(forward - analytic), tiny), "^--", ms=4,
                  color="tab:orange", label="forward (right) difference")
        ax.loglog(hs, np.maximum(np.abs(backward - analytic), tiny), "v--", ms=4,
                  color="tab:purple", label="backward (left) difference")
    ax.loglog(hs, np.maximum(np.abs(central - analytic), tiny), "o-", ms=3, lw=1.5,
              color="tab:blue", label="central difference")
    if np.isfinite(a.tolerance_at_worst) and a.tolerance_at_worst > 0:
        ax.axhline(a.tolerance_at_worst, color="grey", ls="--", label="allowed difference")
    if np.isfinite(a.error_estimate_at_worst) and a.error_estimate_at_worst > 0:
        ax.axhline(a.error_estimate_at_worst, color="tab:green", ls=":",
                   label="the checker's numerical error bar")
    ax.set_xlabel("step h")
    ax.set_ylabel("|difference quotient - analytic|")
    ax.set_title(f"{label}: {a.name}{list(idx)}, analytic {analytic:.6g}\n{reason}\n"
                 f"a V dipping to the rounding floor: right here; a floor at every step: "
                 f"wrong", fontsize=9)
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------- files


def write_plots(results, built_by_label, outdir, stems=None) -> tuple[list[str], list[str]]:
    """Write the PNG files for every failing tensor (``stems``: label -> ``<spec>``, for
    the names across a whole run, :func:`file_stems`; by default, of ``results``).

    Returns ``(paths written, notes)``, a note per failing tensor that has no picture
    and why (``"SPEC::TENSOR: fast mode checks random directions, ..."``).
    """
    require_matplotlib()
    os.makedirs(outdir, exist_ok=True)
    written, notes = [], []
    stems = {**file_stems(r.label for r in results), **dict(stems or {})}
    for r in results:
        if r.report is None:
            continue
        for a in r.report.failures:
            why = _elementwise(a)
            if why:
                notes.append(f"{r.label}::{a.name}: {why}")
                continue
            stem = os.path.join(outdir, f"{stems[r.label]}__{_slug(a.name)}")
            gradients_figure(a, r.label).savefig(stem + "__gradients.png", dpi=110)
            written.append(stem + "__gradients.png")
            reason = steps_reason(a)
            built = built_by_label.get(r.label)
            if reason is not None and built is not None:
                steps_figure(built, a, r.label, seed=r.report.seed, reason=reason).savefig(
                    stem + "__steps.png", dpi=110)
                written.append(stem + "__steps.png")
    return written, notes
