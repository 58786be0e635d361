r"""Which elements can be perturbed together, from the layers' geometry alone.

A dependency *pattern* (:mod:`._patterns`) lists every (output, element) pair; its size
grows like the convolution's multiply-adds. For the common stacks the same knowledge
fits in a few integers, and this module turns it into what the differentiator needs
(``colors`` and ``owners``, see :func:`gradcheck.numdiff.numerical_vjp`) in memory that
grows with the output only.

Windowed chains
---------------
Convolutions, pools and elementwise layers each map an output position ``o`` to an input
window ``[s o - p, s o - p + e)`` per spatial dim (stride ``s``, low padding ``p``, extent
``e = d (k - 1) + 1``; an elementwise layer is ``s = 1, p = 0, e = 1``). A chain of them
is again a window: reading the layers from the last,

.. math:: S' = s_l S, \qquad P' = s_l P + p_l, \qquad E' = s_l (E - 1) + e_l .

Two inputs of one channel whose positions differ by a multiple of ``E`` in some dim never
share an output, so the color of element ``(n, c, i)`` is ``(c, i mod E)`` (``c`` dropped
when no layer mixes channels; the batch index never matters: batch items never mix). The
owner of output ``(n, o, q)`` in color ``(c, r)`` is the one input of its window with
``i = r (mod E)``: ``i = w + ((r - w) mod E)``, ``w = S q - P``, or none if outside.

Parameters of the last windowed layer
-------------------------------------
When only elementwise layers follow a convolution, kernel entry ``w[o, c, a]`` reaches
the outputs of channel ``o`` only: the color of ``w[o, j]`` is ``j`` (one color per entry
of a filter, every filter at once), its owner among a color's members is the filter of
the output's channel. The bias is one color.

Batch items
-----------
Whatever else a network does, its built-in layers never mix batch items: element ``q``
of every item can share a color, and every output of item ``n`` belongs to item ``n``'s
element (this covers dense layers and per-sample losses).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

from gradcheck._record import NamedTuple

__all__ = ["Structure", "chain_structure", "param_structure", "per_sample_structure",
           "window_structure", "filter_structure"]


class Structure(NamedTuple):
    """``colors`` (one int per element) and ``owners(members) -> row owner positions``.

    ``smooth``: every layer between the tensor and the output is smooth (no kinks, no
    ties), so a complex step needs no second evaluation to expose one.
    ``complex_safe``: the layers are smooth and built-in with an exact complex
    continuation (see :mod:`gradcheck.ops.activations`), so the complex step needs no
    cross-check against real differences before it is trusted.
    """

    colors: np.ndarray
    owners: Callable[[np.ndarray], np.ndarray]
    smooth: bool = False
    complex_safe: bool = False


def _window(layer, input_shape):
    """(stride, pad_lo, extent, mixes_channels) per spatial dim, or None if not windowed."""
    kind = getattr(layer, "kind", None)
    nd = len(input_shape) - 2
    if kind == "activation":
        return (1,) * nd, (0,) * nd, (1,) * nd, False
    if kind == "conv":
        g = layer._geometry(input_shape)
        return g.stride, g.pad_lo, g.effective_kernel, True
    if kind in ("maxpool", "avgpool"):
        g = layer._geometry(input_shape)
        return g.stride, g.pad, g.kernel, False
    return None


def _position_of(members, flat, lookup=None):
    """Position of each ``flat`` index in the sorted ``members``, or -1.

    With ``lookup`` (an int array over every element, all -1) the positions are read
    from it, filled for ``members`` and cleared again: O(members + flat) instead of a
    binary search per index.
    """
    if lookup is not None:
        lookup[members] = np.arange(members.size)
        try:
            return lookup[flat]
        finally:
            lookup[members] = -1
    pos = np.searchsorted(members, flat)
    pos = np.minimum(pos, members.size - 1)
    hit = members[pos] == flat
    return np.where(hit, pos, -1)


def chain_structure(layers, shapes) -> Structure | None:
    """Structure of the input of ``layers`` (each conv, pool or elementwise), or None.

    ``shapes[l]`` is layer ``l``'s input shape and ``shapes[-1]`` the chain's output shape.
    """
    in_shape, out_shape = tuple(shapes[0]), tuple(shapes[-1])
    if len(in_shape) < 3 or len(out_shape) != len(in_shape):
        return None
    nd = len(in_shape) - 2
    S, P, E = (1,) * nd, (0,) * nd, (1,) * nd
    mixes = False
    for layer, shape in reversed(list(zip(layers, shapes[:-1]))):
        w = _window(layer, shape)
        if w is None:
            return None
        s, p, e, mix = w
        S, P, E = (tuple(a * b for a, b in zip(s, S)),
                   tuple(a * b + c for a, b, c in zip(s, P, p)),
                   tuple(a * (b - 1) + c for a, b, c in zip(s, E, e)))
        mixes = mixes or mix
    return window_structure(in_shape, out_shape, S, P, E, mixes)


def window_structure(in_shape, out_shape, S, P, E, mixes) -> Structure:
    """Structure of a batch-first input whose output ``(n, o, q)`` reads the window
    ``[S q - P, S q - P + E)`` per spatial dim of item ``n`` -- of every channel when
    ``mixes``, else of channel ``o`` only (see the module notes)."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    nd = len(in_shape) - 2
    n, c_in, *sp_in = in_shape
    _, c_out, *sp_out = out_shape
    coords = np.indices((c_in, *sp_in)).reshape(1 + nd, -1)
    residue = np.ravel_multi_index(tuple(coords[1 + d] % E[d] for d in range(nd)), E)
    per_item = (coords[0] * math.prod(E) + residue) if mixes else residue
    colors = np.tile(per_item, n).astype(np.int64)

    # per output row: batch index, channel, window start per dim
    rows = np.indices((n, c_out, *sp_out)).reshape(2 + nd, -1)
    row_n, row_c = rows[0], rows[1]
    strides = [math.prod(sp_in[d + 1:]) for d in range(nd)]
    per_item = c_in * math.prod(sp_in)
    lead = row_n * per_item + (0 if mixes else row_c * math.prod(sp_in))
    starts = [S[d] * rows[2 + d] - P[d] for d in range(nd)]

    # per dim and residue r: the flat offset of the one input of each row's window with
    # i = r (mod E) (-1 where it lies in the padding), kept for the next colors of that
    # residue up to about 16 MiB
    @functools.lru_cache(maxsize=max(2, 2**24 // (8 * max(1, row_n.size))))
    def offsets(d, r):
        i = starts[d] + (r - starts[d]) % E[d]
        inside = (i >= 0) & (i < sp_in[d])
        return np.where(inside, i * strides[d], -1)

    lookup = np.full(math.prod(in_shape), -1, dtype=np.int64)

    def whole_color(members, first):
        """Every row's owner when ``members`` is a whole color (as full mode perturbs
        them), in closed form, or None. The members of color ``(c, r)`` sorted are item
        by item (and channel by channel when no layer mixes them), then position by
        position: element ``(n, c, i)`` is at ``n M + sum_d (i_d // E_d) prod_{d' > d}
        m_{d'}`` (plus ``c M`` when channels stay apart, where ``n`` counts ``C`` blocks),
        with ``m_d`` the positions ``i_d = r_d (mod E_d)`` and ``M`` their product."""
        r = [first[2 + d] % E[d] for d in range(nd)]
        m = [len(range(r[d], sp_in[d], E[d])) for d in range(nd)]
        M = math.prod(m)
        per = M if mixes else c_in * M
        if members.size != n * per or M == 0:
            return None
        if not (colors[members] == colors[members[0]]).all() or \
                not (members[1:] > members[:-1]).all():
            return None
        return whole_of(tuple(r))

    # one array per residue, read-only, kept like the offsets (the channels of a color
    # share it: a member's position does not depend on its channel)
    @functools.lru_cache(maxsize=max(2, 2**24 // (8 * max(1, math.prod(out_shape)))))
    def whole_of(r):
        m = [len(range(r[d], sp_in[d], E[d])) for d in range(nd)]
        M = math.prod(m)
        per = M if mixes else c_in * M
        none = -(n * per + 1)             # below -1 after any item's offset: clamped to -1
        table = np.zeros((), dtype=np.int64)
        for d in range(nd):
            start = S[d] * np.arange(sp_out[d], dtype=np.int64) - P[d]
            i = start + (r[d] - start) % E[d]
            k = np.where((i >= 0) & (i < sp_in[d]), (i // E[d]) * math.prod(m[d + 1:]), none)
            table = table[..., None] + k
        lead_n = (np.arange(n, dtype=np.int64) * per).reshape((n, 1) + (1,) * nd)
        if not mixes:       # the row's channel is the owner's
            lead_n = lead_n + (np.arange(c_out, dtype=np.int64) * M).reshape(
                (1, c_out) + (1,) * nd)
        out = np.empty((n, c_out, *sp_out), dtype=np.int64)
        np.add(lead_n, table, out=out)
        out = np.maximum(out, -1, out=out).reshape(-1)
        out.flags.writeable = False
        return out

    def owners(members: np.ndarray) -> np.ndarray:
        members = np.asarray(members, dtype=np.int64)
        first = np.unravel_index(int(members[0]), in_shape)
        whole = whole_color(members, first)
        if whole is not None:
            return whole
        flat = lead + first[1] * math.prod(sp_in) if mixes else lead.copy()
        ok = np.ones(row_n.size, dtype=bool)
        for d in range(nd):
            part = offsets(d, first[2 + d] % E[d])
            ok &= part >= 0
            flat += part
        return np.where(ok, _position_of(members, np.where(ok, flat, 0), lookup), -1)

    return Structure(colors, owners)


def param_structure(layer, input_shape, name, downstream, shapes_after) -> Structure | None:
    """Structure of a conv layer's ``w`` or ``b`` when only elementwise layers follow."""
    if getattr(layer, "kind", None) != "conv":
        return None
    if any(getattr(l, "kind", None) != "activation" for l in downstream):
        return None
    g = layer._geometry(input_shape)
    shape = (g.out_channels, g.in_channels // g.groups, *g.kernel) if name == "w" \
        else (g.out_channels,)
    return filter_structure(shape, (g.batch, g.out_channels, *g.out_shape))


def filter_structure(param_shape, out_shape) -> Structure:
    """Structure of a parameter whose slice ``[o]`` reaches output channel ``o`` only
    (axis 1 of a batch-first output): entry ``j`` of every filter shares a color, and a
    row of channel ``o`` belongs to filter ``o``'s member."""
    per_filter = math.prod(param_shape[1:])
    n_filters = param_shape[0]
    colors = np.tile(np.arange(per_filter, dtype=np.int64), n_filters)
    # output channel of every output element, without materializing all the indices
    per_channel = math.prod(out_shape[2:])
    row_o = (np.arange(math.prod(out_shape), dtype=np.int64) // per_channel) % out_shape[1]
    lookup = np.full(math.prod(param_shape), -1, dtype=np.int64)

    whole = row_o.view()            # the owners of a whole color: filter o owns channel o
    whole.flags.writeable = False

    def owners(members: np.ndarray) -> np.ndarray:
        members = np.asarray(members, dtype=np.int64)
        j = int(members[0]) % per_filter
        if members.size == n_filters and np.array_equal(
                members, np.arange(n_filters, dtype=np.int64) * per_filter + j):
            return whole
        return _position_of(members, row_o * per_filter + j, lookup)

    return Structure(colors, owners)


def per_sample_structure(in_shape, out_shape) -> Structure:
    """Structure of a batch-first input when batch items never mix (any output per item)."""
    n = in_shape[0]
    per = math.prod(in_shape[1:])
    colors = np.tile(np.arange(per, dtype=np.int64), n)
    row_n = np.repeat(np.arange(n), math.prod(out_shape[1:]))
    lookup = np.full(math.prod(in_shape), -1, dtype=np.int64)

    def owners(members: np.ndarray) -> np.ndarray:
        members = np.asarray(members, dtype=np.int64)
        q = int(members[0]) % per
        return _position_of(members, row_n * per + q, lookup)

    return Structure(colors, owners)
