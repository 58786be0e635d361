"""``--out DIR``: the JSON log (always) and the PNG of the curves (with matplotlib).

``train.png`` has three panels sharing the step axis: the loss per batch, the accuracy
per batch (with each epoch's mean and the final test accuracy), and every scheduled
check as a point at its step, its height the worst ``|analytic - numeric| / allowed``
over the tensors (a check fails above 1), its colour the verdict and its shape the mode
that checked the tensors (a filled circle when every tensor was checked element by
element, a diamond when some were checked along random directions). The check steps are
also marked on the curves above.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from gradcheck._errors import GradcheckError

__all__ = ["write_outputs", "plot_training"]

JSON_NAME = "train.json"
PNG_NAME = "train.png"


def _smooth(values, width):
    if len(values) < width or width < 2:
        return np.asarray(values, dtype=float)
    kernel = np.ones(width) / width
    return np.convolve(values, kernel, mode="valid")


def plot_training(result, path) -> None:
    """Draw ``result``'s curves and checks into the PNG file ``path`` (needs matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.5, 6.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_check = fig.subplots(3, 1, sharex=True,
                                             gridspec_kw={"height_ratios": [3, 3, 2]})
    steps = np.arange(len(result.losses))
    width = max(1, result.steps_per_epoch // 4)
    ends = (np.arange(len(result.epoch_losses)) + 1) * result.steps_per_epoch - 0.5
    ax_loss.plot(steps, result.losses, color="#9ab", lw=0.7, label="batch")
    if len(steps) >= width > 1:
        ax_loss.plot(steps[width - 1:], _smooth(result.losses, width), color="#1f5f9f", lw=1.5,
                     label=f"mean of {width} batches")
    ax_loss.plot(ends, result.epoch_losses, "o", color="#1f5f9f", ms=4, label="epoch mean")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (cross-entropy)")
    ax_loss.legend(fontsize=7, loc="upper right")
    ax_acc.plot(steps, 100 * np.asarray(result.accuracies), color="#cda", lw=0.7,
                label="batch")
    if len(steps) >= width > 1:
        ax_acc.plot(steps[width - 1:], 100 * _smooth(result.accuracies, width),
                    color="#2a7a2a", lw=1.5, label=f"mean of {width} batches")
    ax_acc.plot(ends, 100 * np.asarray(result.epoch_accuracies), "o", color="#2a7a2a", ms=4,
                label="epoch mean")
    if result.test_accuracy is not None:
        ax_acc.axhline(100 * result.test_accuracy, color="#b33", ls="--", lw=1,
                       label=f"test {100 * result.test_accuracy:.1f}%")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(0, 101)
    ax_acc.legend(fontsize=7, loc="lower right")
    for ax in (ax_loss, ax_acc):
        for c in result.checks:
            ax.axvline(c.step, color="#2a2" if c.passed else "#d22", lw=0.8, alpha=0.5)
    for c in result.checks:
        ratio = c.worst_ratio if math.isfinite(c.worst_ratio) and c.worst_ratio > 0 else 1e-6
        every = all(m in ("full", "skipped") for m in c.modes.values())
        ax_check.plot([c.step], [ratio], "o" if every else "D", ms=6,
                      color="#2a2" if c.passed else "#d22",
                      mfc="#2a2" if c.passed else "#d22")
        if c.n_kinks:
            ax_check.annotate(f"{c.n_kinks} kink{'s' if c.n_kinks > 1 else ''}", (c.step, ratio),
                              textcoords="offset points", xytext=(0, -11), ha="center",
                              fontsize=6)
    ax_check.axhline(1.0, color="#d22", ls=":", lw=1)
    ax_check.set_yscale("log")
    worst = max((c.worst_ratio for c in result.checks if math.isfinite(c.worst_ratio)),
                default=1.0)
    ax_check.set_ylim(top=max(4.0, 10 * worst))
    ax_check.set_xlim(-0.02 * max(result.steps, 1) - 0.5, 1.02 * max(result.steps, 1) + 0.5)
    ax_check.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_check.set_ylabel("worst |diff|\n/ allowed", fontsize=8)
    ax_check.set_xlabel("step (one batch each)")
    ax_check.set_title("gradient checks (the vertical lines above): \u25cf every element "
                       "checked, \u25c6 some tensors sampled or along random directions;\na "
                       "check fails "
                       "above the dotted line; kinks: elements found at non-differentiable "
                       "points\n(at a kink, |diff| is the distance outside the one-sided "
                       "limits)", fontsize=7)
    verdict = ("every check passed" if result.passed
               else f"a check FAILED at step {result.stopped_at}: training stopped")
    test = ("" if result.test_accuracy is None
            else f", test accuracy {100 * result.test_accuracy:.1f}%")
    n = len(result.checks)
    fig.suptitle(f"gradcheck train: {result.spec} on {result.data}, {n} gradient "
                 f"check{'' if n == 1 else 's'}, {verdict}{test}", fontsize=9)
    fig.savefig(path, dpi=90)


def write_outputs(result, out):
    """Write ``train.png`` (if matplotlib is installed) and ``train.json`` to ``out``.

    Returns ``result`` with ``files`` (and a note when no PNG could be drawn).
    """
    files, notes = [], list(result.notes)
    png = os.path.join(out, PNG_NAME)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        notes.append("matplotlib is not installed: no PNG written (install the plots extra, "
                     "pip install -e '.[plots]' in the gradcheck checkout)")
    else:
        try:
            plot_training(result, png)
        except OSError as exc:
            raise GradcheckError(f"out {out}: cannot write {PNG_NAME} "
                                 f"({exc.strerror or exc})") from None
        files.append(png)
    path = os.path.join(out, JSON_NAME)
    files.append(path)
    result = dataclasses.replace(result, files=tuple(files), notes=tuple(notes))
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(result.to_dict(), fh, indent=1)
            fh.write("\n")
    except OSError as exc:
        raise GradcheckError(f"out {out}: cannot write {JSON_NAME} "
                             f"({exc.strerror or exc})") from None
    return result
