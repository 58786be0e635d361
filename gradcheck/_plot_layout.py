"""How a tensor is laid out on a picture: what each axis means, and a 2-D mosaic of it.

No matplotlib here: this module decides *what* is drawn where, so it can be tested on
its own. A tensor's role comes from its name in a network (``input``,
``layer0.conv.w``, ``layer5.dense.b``, ...):

============== =============================== =========================================
role           axes                            picture
============== =============================== =========================================
activation     (N, C, *spatial) or (N, F)      rows: batch items; columns: channels;
                                               each tile one H x W image (1-D: each
                                               tile C x L; 3-D: rows are (item,
                                               channel), columns depth slices)
conv weight    (C_out, C_in/groups, *kernel)   rows: out channels; columns: in channels;
                                               each tile one kernel
dense weight   (out, in)                       one image, a row per output unit
bias           (C,)                            a bar chart (drawn by :mod:`._plot`)
generic        anything else (python layers'   axes named ``axis 0``, ``axis 1``, ...
               parameters)
============== =============================== =========================================

Large tensors are shown through a window of tiles around the worst element, and the
picture says which part it shows.
"""

from __future__ import annotations

import math
import re

import numpy as np

from gradcheck._record import NamedTuple

__all__ = ["Layout", "Mosaic", "tensor_layout", "mosaic"]

_PARAM = re.compile(r"^layer\d+\.(?P<kind>\w+)\.(?P<param>\w+)$")

#: Data pixels a mosaic may span in each direction before it is windowed; at most this
#: many tiles (and at least _MIN_TILES) are shown along each direction.
_PIXELS, _MIN_TILES, _MAX_TILES = 280, 4, 16


class Layout(NamedTuple):
    """What a tensor is and what its axes mean."""

    role: str                   # "activation", "conv weight", "dense weight", "bias", "generic"
    short: tuple[str, ...]      # one short name per axis, used in tick labels: "n", "c", ...
    long: tuple[str, ...]       # one long name per axis, used in axis labels


def tensor_layout(name: str, shape) -> Layout:
    """The role and axis names of the tensor called ``name`` in a network.

    Examples
    --------
    >>> tensor_layout("input", (2, 3, 8, 8)).long
    ('batch item', 'channel', 'height H', 'width W')
    >>> tensor_layout("layer0.conv.w", (4, 3, 3)).long
    ('out channel', 'in channel', 'kernel tap')
    >>> tensor_layout("layer0.python.w", (3, 2)).role
    'generic'
    """
    ndim = len(shape)
    match = _PARAM.match(name)
    kind, param = (match["kind"], match["param"]) if match else (None, None)
    if name in ("input", "x") and 2 <= ndim <= 5:
        if ndim == 2:
            return Layout("activation", ("n", "f"), ("batch item", "feature"))
        short = {1: ("l",), 2: ("h", "w"), 3: ("d", "h", "w")}[ndim - 2]
        long = {1: ("position L",), 2: ("height H", "width W"),
                3: ("depth D", "height H", "width W")}[ndim - 2]
        return Layout("activation", ("n", "c", *short), ("batch item", "channel", *long))
    if kind == "conv" and param == "w" and 3 <= ndim <= 5:
        taps = {1: ("kernel tap",), 2: ("kernel row", "kernel column"),
                3: ("kernel depth", "kernel row", "kernel column")}[ndim - 2]
        return Layout("conv weight", ("o", "i", *("kd", "kh", "kw")[5 - ndim:]),
                      ("out channel", "in channel", *taps))
    if kind == "dense" and param == "w" and ndim == 2:
        return Layout("dense weight", ("o", "i"), ("output unit", "input feature"))
    if kind in ("conv", "dense") and param == "b" and ndim == 1:
        return Layout("bias", ("o",) if kind == "dense" else ("c",),
                      ("output unit",) if kind == "dense" else ("channel",))
    return Layout("generic", tuple(f"a{k}=" for k in range(ndim)),
                  tuple(f"axis {k}" for k in range(ndim)))


class Mosaic(NamedTuple):
    """A tensor (or a window of it) as tiles on one 2-D plane.

    ``image`` is the tiles put together without gaps; on a picture the tiles are drawn
    ``gap`` pixels apart (so the borders between them hide no element) and
    :meth:`locate` gives an element's position there.
    """

    image: np.ndarray           # float64; NaN where the tensor is NaN
    tile: tuple[int, int]       # height, width of one tile (the last two axes)
    gap: tuple[float, float]    # space between rows / columns of tiles on the picture
    row_labels: list[str]       # one per row of tiles
    col_labels: list[str]       # one per column of tiles ([""] when there is one column)
    tile_row_labels: list[str]  # one per image row inside a tile (ndim 3: the channels)
    ylabel: str
    xlabel: str
    shown: str                  # "" or which part of a large tensor is shown
    shape: tuple                # the tensor's shape
    rows: range                 # the rows of tiles shown (flat index over the row axes)
    cols: range                 # the columns of tiles shown

    def cell(self, index):
        """``(image row, image column)`` of the tensor element ``index``; None if not shown."""
        index = tuple(int(i) for i in index)
        if len(self.shape) == 2:
            return index
        row_axes, col_axis = _axes(len(self.shape))
        r = int(np.ravel_multi_index(tuple(index[k] for k in row_axes),
                                     tuple(self.shape[k] for k in row_axes)))
        c = index[col_axis] if col_axis is not None else 0
        if r not in self.rows or c not in self.cols:
            return None
        h, w = self.tile
        return ((r - self.rows.start) * h + index[-2], (c - self.cols.start) * w + index[-1])

    def origin(self, tile_row: int, tile_col: int) -> tuple[float, float]:
        """Where the top-left element of a tile is drawn (``y``, ``x``)."""
        (h, w), (gy, gx) = self.tile, self.gap
        return tile_row * (h + gy), tile_col * (w + gx)

    def locate(self, index):
        """``(y, x)`` of the element ``index`` on the picture; None if not shown."""
        at = self.cell(index)
        if at is None:
            return None
        h, w = self.tile
        (ri, i), (ci, j) = divmod(at[0], h), divmod(at[1], w)
        y0, x0 = self.origin(ri, ci)
        return y0 + i, x0 + j

    def tiles(self):
        """``(y0, x0, block)`` for every tile shown."""
        h, w = self.tile
        for ri in range(len(self.row_labels)):
            for ci in range(len(self.col_labels)):
                y0, x0 = self.origin(ri, ci)
                yield y0, x0, self.image[ri * h:(ri + 1) * h, ci * w:(ci + 1) * w]

    @property
    def extent(self) -> tuple[float, float]:
        """Height and width of the whole picture, in pixels."""
        y, x = self.origin(len(self.row_labels), len(self.col_labels))
        return y - self.gap[0], x - self.gap[1]


def _axes(ndim: int):
    """Row axes and column axis (or None) of a mosaic of an ``ndim``-dimensional tensor."""
    if ndim >= 4:
        return tuple(range(ndim - 3)), ndim - 3
    return (0,), None


def _window(n: int, center: int, size: int) -> range:
    """``size`` consecutive positions of ``range(n)`` around ``center``."""
    if n <= size:
        return range(n)
    start = min(max(center - size // 2, 0), n - size)
    return range(start, start + size)


def _cap(pixels: int) -> int:
    return max(_MIN_TILES, min(_MAX_TILES, _PIXELS // max(pixels, 1)))


def _span(what: str, labels: list[str], n: int) -> str:
    return "" if len(labels) == n else f"{what} {labels[0]} to {labels[-1]} of {n}"


def mosaic(a: np.ndarray, layout: Layout, worst=None) -> Mosaic:
    """Lay ``a`` out as tiles of its last two axes; window it around ``worst`` if large.

    A 2-D tensor is one image (rows: axis 0). For ``ndim >= 3`` the last two axes are a
    tile, the axis before them (``ndim >= 4``) the columns of tiles, and the axes before
    that the rows of tiles (``ndim == 3``: axis 0 alone).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    >>> m = mosaic(a, tensor_layout("input", a.shape))
    >>> m.image.shape, m.row_labels, m.col_labels
    ((8, 15), ['n0', 'n1'], ['c0', 'c1', 'c2'])
    >>> r, c = m.cell((1, 2, 3, 4))
    >>> bool(m.image[r, c] == a[1, 2, 3, 4])
    True
    """
    a = np.asarray(a, dtype=np.float64)
    short, long = layout.short, layout.long
    if a.ndim == 2:
        return Mosaic(a, a.shape, (0.0, 0.0), [""], [""], [], long[0], long[1], "", a.shape,
                      range(1), range(1))
    if a.ndim < 2:
        raise ValueError("mosaic needs at least 2 axes")
    h, w = a.shape[-2:]
    row_axes, col_axis = _axes(a.ndim)
    row_shape = tuple(a.shape[k] for k in row_axes)
    n_rows = math.prod(row_shape)
    n_cols = a.shape[col_axis] if col_axis is not None else 1
    worst = tuple(worst) if worst is not None else (0,) * a.ndim
    worst_row = int(np.ravel_multi_index(tuple(worst[k] for k in row_axes), row_shape))
    rows = _window(n_rows, worst_row, _cap(h))
    cols = _window(n_cols, worst[col_axis] if col_axis is not None else 0, _cap(w))
    flat = a.reshape(n_rows, n_cols, h, w)[rows.start:rows.stop, cols.start:cols.stop]
    image = flat.transpose(0, 2, 1, 3).reshape(len(rows) * h, len(cols) * w)

    row_labels = [" ".join(f"{short[k]}{int(i)}"
                           for k, i in zip(row_axes, np.unravel_index(r, row_shape)))
                  for r in rows]
    col_labels = ([f"{short[col_axis]}{k}" for k in cols] if col_axis is not None else [""])
    tile_row_labels = [f"{short[-2]}{i}" for i in range(h)] if col_axis is None else []
    if col_axis is None:                           # 1-D activations, 1-D kernels
        ylabel = f"{long[0]} {short[0]}, {long[1]} {short[1]}"
        xlabel = long[2]
    else:
        ylabel = f"{', '.join(long[k] for k in row_axes)}  (in a tile: {long[-2]} ↓)"
        xlabel = f"{long[col_axis]}  (in a tile: {long[-1]} →)"
    rows_what = (long[0] + "s" if len(row_axes) == 1
                 else "(" + ", ".join(long[k] for k in row_axes) + ") rows")
    notes = [_span(rows_what, row_labels, n_rows)]
    if col_axis is not None:
        notes.append(_span(long[col_axis] + "s", col_labels, n_cols))
    shown = ", ".join(p for p in notes if p)
    if shown:
        shown = f"showing {shown}, around the worst element"
    gap = (max(0.25, 0.04 * h), max(0.25, 0.04 * w))
    return Mosaic(image, (h, w), gap, row_labels, col_labels, tile_row_labels, ylabel,
                  xlabel, shown, a.shape, rows, cols)
