"""``--plot``: how tensors are laid out (no matplotlib needed) and what the figures hold.

The layout is checked element by element against the array it came from; the figures
are inspected through matplotlib's objects (which scale each panel uses, what the axes
are called, where the worst element is marked), not by their pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gradcheck._plot_layout import mosaic, tensor_layout
from gradcheck.checker import ArgumentReport, Diagnosis

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("name, shape, role, long", [
    ("input", (2, 3, 8, 8), "activation", ("batch item", "channel", "height H", "width W")),
    ("input", (2, 3, 16), "activation", ("batch item", "channel", "position L")),
    ("input", (2, 3, 4, 5, 5), "activation",
     ("batch item", "channel", "depth D", "height H", "width W")),
    ("input", (4, 10), "activation", ("batch item", "feature")),
    ("layer0.conv.w", (4, 3, 3), "conv weight", ("out channel", "in channel", "kernel tap")),
    ("layer2.conv.w", (4, 3, 3, 3), "conv weight",
     ("out channel", "in channel", "kernel row", "kernel column")),
    ("layer0.conv.w", (4, 3, 2, 3, 3), "conv weight",
     ("out channel", "in channel", "kernel depth", "kernel row", "kernel column")),
    ("layer5.dense.w", (10, 32), "dense weight", ("output unit", "input feature")),
    ("layer0.conv.b", (4,), "bias", ("channel",)),
    ("layer5.dense.b", (10,), "bias", ("output unit",)),
    # a user's parameter: its layout is the user's, so nothing is claimed about it
    ("layer0.python.w", (3, 2, 3, 3), "generic", ("axis 0", "axis 1", "axis 2", "axis 3")),
    ("layer0.python.b", (3,), "generic", ("axis 0",)),
])
def test_tensor_layout_names_the_axes_by_role(name, shape, role, long):
    layout = tensor_layout(name, shape)
    assert (layout.role, layout.long) == (role, long)
    assert len(layout.short) == len(shape)


LAYOUTS = [("input", (2, 3, 4, 5)), ("input", (3, 2, 5)), ("input", (2, 2, 3, 4, 4)),
           ("layer0.conv.w", (4, 3, 3, 3)), ("layer0.conv.w", (3, 4, 2, 3, 3)),
           ("layer5.dense.w", (5, 7)), ("layer0.python.w", (2, 3, 2, 2, 2, 3))]


@pytest.mark.parametrize("name, shape", LAYOUTS)
def test_mosaic_draws_every_element_where_it_says(name, shape):
    a = np.random.default_rng(0).standard_normal(shape)
    m = mosaic(a, tensor_layout(name, shape))
    assert m.image.size == a.size and not m.shown          # small: everything is shown
    tiles = list(m.tiles())
    h, w = m.tile
    seen = set()
    for idx in np.ndindex(shape):
        r, c = m.cell(idx)
        assert m.image[r, c] == a[idx]
        y, x = m.locate(idx)
        seen.add((y, x))
        # the tile drawn at that position holds the element there
        (block,) = [b for y0, x0, b in tiles if y0 <= y < y0 + h and x0 <= x < x0 + w]
        y0, x0 = [(y0, x0) for y0, x0, b in tiles if b is block][0]
        assert block[int(round(y - y0)), int(round(x - x0))] == a[idx]
        assert 0 <= y < m.extent[0] and 0 <= x < m.extent[1]
    assert len(seen) == a.size


def test_mosaic_of_a_large_tensor_is_a_window_around_the_worst():
    a = np.zeros((8, 16, 32, 32))
    worst = (6, 13, 31, 0)
    m = mosaic(a, tensor_layout("input", a.shape), worst)
    assert (len(m.row_labels), len(m.col_labels)) == (8, 8)
    assert m.col_labels == [f"c{k}" for k in range(8, 16)]
    assert m.shown == "showing channels c8 to c15 of 16, around the worst element"
    assert m.locate(worst) is not None and m.locate((6, 2, 0, 0)) is None
    b = np.zeros((4, 8, 3, 8, 8))                          # 3-D: rows are (item, channel)
    m = mosaic(b, tensor_layout("input", b.shape), (2, 7, 1, 0, 0))
    assert len(m.row_labels) == 16 and "n2 c7" in m.row_labels
    # the worst is row 2 * 8 + 7 = 23 of 32; 16 rows centered there: 15 (n1 c7) to 30 (n3 c6)
    assert m.shown == ("showing (batch item, channel) rows n1 c7 to n3 c6 of 32, around the "
                       "worst element")
    assert m.col_labels == ["d0", "d1", "d2"]


# --------------------------------------------------------------------------- figures


def make_arg(name, analytic, numeric, *, worst=None, nondiff=None, error_bar=1e-12,
             mode="full"):
    a, n = np.asarray(analytic, float), np.asarray(numeric, float)
    d = np.nan_to_num(np.abs(a - n))
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(d)), a.shape)) \
        if worst is None else worst
    return ArgumentReport(
        name=name, shape=a.shape, dtype="float64", passed=False, mode=mode,
        n_elements=a.size, n_checked=a.size, n_failed=int((d > 1e-9).sum()),
        n_nondifferentiable=0 if nondiff is None else int(nondiff.sum()),
        max_abs_error=float(d.max()), max_rel_error=1.0, worst_index=worst,
        analytic_at_worst=float(a[worst]), numeric_at_worst=float(n[worst]),
        error_estimate_at_worst=error_bar, tolerance_at_worst=10 * error_bar,
        max_error_estimate=error_bar, cosine_similarity=0.9, norm_ratio=1.1, nfev=1,
        elapsed_s=0.0, diagnosis=Diagnosis("scaled", "msg"), analytic=a, numeric=n,
        error_estimate=np.full(a.shape, error_bar), failed_mask=d > 1e-9,
        nondifferentiable_mask=nondiff)


def _rings(ax):
    return {(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines
            if line.get_marker() == "o"}


def test_gradients_figure_of_an_activation():
    pytest.importorskip("matplotlib")
    from gradcheck._plot import gradients_figure

    rng = np.random.default_rng(1)
    n = rng.standard_normal((2, 3, 6, 4))                 # square enough: side by side
    a = n.copy()
    a[1, 2] *= 3                                            # one wrong channel of one item
    arg = make_arg("input", a, n)
    fig = gradients_figure(arg, "specs/x.toml")
    main, cbar_values, cbar_diff = fig.axes[:3], fig.axes[3], fig.axes[4]
    # analytic and numeric: one diverging scale, centered at zero
    top = max(np.abs(a).max(), np.abs(n).max())
    for ax in main[:2]:
        norms = {(im.norm.vmin, im.norm.vmax) for im in ax.images}
        assert norms == {(-top, top)}
        assert {im.cmap.name for im in ax.images} == {"RdBu_r"}
    # the difference: its own diverging scale, centered at zero
    dmax = np.abs(a - n).max()
    assert {(im.norm.vmin, im.norm.vmax) for im in main[2].images} == {(-dmax, dmax)}
    assert {im.cmap.name for im in main[2].images} == {"PuOr_r"}
    assert "share this scale" in cbar_values.get_ylabel()
    assert "own scale, diverging,\ncentered at 0" in cbar_diff.get_ylabel()
    assert [ax.get_title() for ax in main] == ["analytic (backward pass)",
                                               "numeric (finite differences)",
                                               "analytic - numeric"]
    # axes named by role: rows of tiles are batch items, columns channels
    assert main[0].get_ylabel() == "batch item  (in a tile: height H ↓)"
    assert main[1].get_xlabel() == "channel  (in a tile: width W →)"
    assert [t.get_text() for t in main[0].get_xticklabels()] == ["c0", "c1", "c2"]
    assert [t.get_text() for t in main[0].get_yticklabels()] == ["n0", "n1"]
    # the worst element is circled in every panel, where the mosaic put it
    m = mosaic(a, tensor_layout("input", a.shape), arg.worst_index)
    y, x = m.locate(arg.worst_index)
    assert arg.worst_index[:2] == (1, 2)
    for ax in main:
        assert _rings(ax) == {(x, y)}
    title = fig._suptitle.get_text()
    assert "specs/x.toml: input (2, 3, 6, 4), activation" in title
    assert f"worst {arg.worst_index} (circled)" in title and "likely cause: scaled" in title


@pytest.mark.parametrize("name, shape, ylabel, xlabel", [
    ("layer0.conv.w", (4, 3, 3, 3), "out channel  (in a tile: kernel row ↓)",
     "in channel  (in a tile: kernel column →)"),
    ("layer0.conv.w", (4, 3, 3), "out channel o, in channel i", "kernel tap"),
    ("layer5.dense.w", (5, 12), "output unit", "input feature"),
    ("input", (2, 3, 64), "batch item n, channel c", "position L"),
])
def test_gradients_figure_names_weight_axes(name, shape, ylabel, xlabel):
    pytest.importorskip("matplotlib")
    from gradcheck._plot import gradients_figure

    n = np.random.default_rng(2).standard_normal(shape)
    a = n.copy()
    a[0] = -a[0]
    fig = gradients_figure(make_arg(name, a, n), "s.toml")
    labels = {ax.get_ylabel() for ax in fig.axes[:3]} | {ax.get_xlabel() for ax in fig.axes[:3]}
    assert {ylabel, xlabel} <= labels


def test_a_bias_is_a_bar_chart():
    pytest.importorskip("matplotlib")
    from gradcheck._plot import gradients_figure

    n = np.array([0.5, -1.0, 2.0, 0.25])
    a = n + np.array([0.0, 0.0, 1.5, 0.0])
    fig = gradients_figure(make_arg("layer0.conv.b", a, n), "s.toml")
    values, diff = fig.axes
    analytic_bars, numeric_bars = values.containers
    assert [b.get_height() for b in analytic_bars] == list(a)
    assert [b.get_height() for b in numeric_bars] == list(n)
    assert [b.get_height() for b in diff.containers[0]] == list(a - n)
    low, high = diff.get_ylim()
    assert low == -high and high > 1.5                     # centered at zero
    assert "own scale, centered at 0" in diff.get_ylabel()
    assert values.get_xlabel() == "channel"
    for ax in (values, diff):
        (mark,) = [t for t in ax.texts if t.get_text() == "worst"]
        assert mark.get_position()[0] == 2


def test_elements_without_a_value_are_grey_and_said_so():
    pytest.importorskip("matplotlib")
    from gradcheck._plot import gradients_figure

    n = np.random.default_rng(3).standard_normal((2, 2, 3, 3))
    a = 2 * n
    n[0, 1] = np.nan                                       # e.g. not checked
    fig = gradients_figure(make_arg("input", a, n), "s.toml")
    assert "grey: no value (not checked, or not finite)" in fig._suptitle.get_text()
    from matplotlib.colors import to_rgba

    for image in fig.axes[1].images:
        assert np.allclose(image.cmap.get_bad(), to_rgba("0.55"))
        assert not np.isclose(image.cmap(np.linspace(0, 1, 256))[:, :3],
                              to_rgba("0.55")[:3], atol=0.02).all(axis=1).any()


# --------------------------------------------------------------------------- steps


def test_steps_curve_only_where_it_says_something():
    from gradcheck._plot import STEPS_ERROR_BARS, steps_reason

    n = np.array([[1.0, 2.0], [3.0, 4.0]])
    plain = make_arg("x", n * 2, n, error_bar=1e-12)          # the bug dwarfs the error bar
    assert steps_reason(plain) is None
    kink = np.zeros((2, 2), bool)
    kink[1, 1] = True
    assert steps_reason(make_arg("x", n * 2, n, nondiff=kink)) == \
        "the worst element sits at a kink (a non-differentiable point)"
    close = n.copy()
    close[0, 1] += 5e-12                                     # within 10 error bars
    reason = steps_reason(make_arg("x", close, n, error_bar=1e-12))
    assert reason.startswith("the difference 5e-12 is less than 10 times the numerical error "
                             "bar 1e-12") and STEPS_ERROR_BARS == 10
    assert steps_reason(make_arg("x", n * 2, n, mode="fast")) is None


def test_step_curve_uses_the_checkers_cotangent():
    from gradcheck._plot import step_curve
    from gradcheck.spec import build, check_built, load_spec

    built = build(load_spec(ROOT / "specs/examples/user_layer_buggy.toml"))
    report = check_built(built, mode="full")
    for arg in report.arguments:
        _, _, analytic = step_curve(built, arg.name, arg.worst_index, seed=report.seed)
        assert analytic == pytest.approx(arg.analytic_at_worst, rel=1e-12, abs=1e-300)


def test_write_plots_names_the_files_as_documented(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from gradcheck._plot import write_plots
    from gradcheck._render import SpecResult
    from gradcheck.spec import build, check_built, load_spec

    monkeypatch.syspath_prepend(str(ROOT))
    label = "specs/examples/user_layer_buggy.toml"
    built = build(load_spec(ROOT / label))
    report = check_built(built, mode="full")
    worst = report["input"].worst_index
    kink = np.zeros(report["input"].shape, bool)
    kink[worst] = True
    at_kink = dataclasses.replace(report["input"], nondifferentiable_mask=kink)
    fast = dataclasses.replace(report["input"], name="layer0.python.w", mode="fast",
                               analytic=None, numeric=None)
    results = [SpecResult(label, "b", report),
               SpecResult("other dir/k.toml", "k", dataclasses.replace(
                   report, arguments=(at_kink, fast)))]
    written, notes = write_plots(results, {label: built, "other dir/k.toml": built},
                                 tmp_path / "p")
    assert [Path(p).name for p in written] == [
        "user_layer_buggy__input__gradients.png",
        "k__input__gradients.png",
        "k__input__steps.png"]
    assert notes == ["other dir/k.toml::layer0.python.w: fast mode checks random directions, "
                     "not single elements; rerun with --mode full for a picture"]
    for p in written:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_generic_tensor_is_labelled_by_axis_and_index():
    a = np.zeros((3, 12, 2, 2, 2))
    m = mosaic(a, tensor_layout("layer0.python.w", a.shape))
    assert m.row_labels[:2] == ["a0=0 a1=0", "a0=0 a1=1"] and m.col_labels == ["a2=0", "a2=1"]
    assert m.ylabel == "axis 0, axis 1  (in a tile: axis 3 ↓)"


def test_plot_names_come_from_the_spec_files_stem_and_are_never_hidden(tmp_path,
                                                                      monkeypatch):
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    from gradcheck.cli import MISMATCH, main

    monkeypatch.syspath_prepend(str(ROOT))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    body = (ROOT / "specs/examples/user_layer_buggy.toml").read_text()
    for where in ("spec.toml", "a/k.toml", "b/k.toml"):
        (tmp_path / where).write_text(body)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "./spec.toml", "./a/k.toml", "b/k.toml", "-q", "--plot",
                 "plots"]) == MISMATCH
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "a_k__input__gradients.png", "b_k__input__gradients.png",
        "spec__input__gradients.png"]
