"""Geometry-derived colors and owners against the dependency-pattern route.

The structure route (``Sequential.structure`` -> ``numerical_vjp(colors=, owners=)``) must
give the same numerical gradient as the sparse pattern route and the analytic backward,
and its colors must be valid: no output row depends (per the exact pattern) on two
elements of one color.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import numerical_vjp
from gradcheck.ops.layers import Activation, AvgPool, Conv, Dense, Flatten, MaxPool
from gradcheck.ops.network import Sequential

CASES = [
    ("conv tanh", [Conv(3, 3, padding=1), Activation("tanh")], (2, 2, 7, 7), None),
    ("strided dilated grouped chain",
     [Conv(4, (2, 3), stride=2, dilation=(2, 1), padding=1, groups=2), Activation("sigmoid"),
      MaxPool(2), Conv(2, 2)], (2, 2, 11, 10), None),
    ("pool first", [AvgPool(2), Activation("tanh"), Conv(2, 3, padding=2, stride=3)],
     (2, 3, 9, 9), None),
    ("1-D", [Conv(2, 3, padding=1)], (2, 2, 5), None),
    ("3-D", [Conv(2, 2, padding=1), Activation("tanh")], (1, 2, 4, 4, 4), None),
    ("dense head", [Conv(2, 3, padding=1), Activation("tanh"), Flatten(), Dense(3)],
     (3, 1, 6, 6), None),
    ("per-sample loss", [Conv(2, 3), Activation("tanh"), Flatten(), Dense(3)], (3, 1, 6, 6),
     "mse"),
]


def _setup(layers, shape, loss, seed=0):
    rng = np.random.default_rng(seed)
    net = Sequential(layers, shape, loss=loss)
    params = net.init_params(rng=rng)
    f, f_vjp, names = net.as_function()
    flat = (rng.standard_normal(shape),) + net.flatten_params(params)
    R = rng.standard_normal(np.shape(f(*flat)))
    return net, f, f_vjp, names, flat, R


@pytest.mark.parametrize(("layers", "shape", "loss"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_structure_route_equals_pattern_route(layers, shape, loss):
    net, f, f_vjp, names, flat, R = _setup(layers, shape, loss)
    exact = f_vjp(R, *flat)
    covered = 0
    for i, name in enumerate(names):
        st = net.structure(name)
        if st is None:
            continue
        covered += 1

        def g(a, i=i):
            return f(*flat[:i], a, *flat[i + 1:])

        P = net.pattern(name)
        # valid coloring per the exact pattern: no row has two columns of one color
        coo = P.tocoo()
        key = coo.row.astype(np.int64) * (int(st.colors.max()) + 1) + st.colors[coo.col]
        assert np.unique(key).size == key.size, name
        a = numerical_vjp(g, flat[i], R, colors=st.colors, owners=st.owners,
                          method="richardson")
        b = numerical_vjp(g, flat[i], R, pattern=P, method="richardson")
        # the two routes group perturbations differently: equal within their error bars
        assert np.all(np.abs(a.grad - b.grad) <= a.error + b.error), name
        assert np.all(np.abs(a.grad - exact[i]) <= 10 * a.error + 1e-15), name
        assert a.ncolors <= b.ncolors
    assert covered >= 1


def test_structure_is_none_where_nothing_is_known():
    net = Sequential([Conv(2, 3), Activation("tanh"), Conv(2, 2)], (1, 1, 6, 6))
    assert net.structure("layer0.conv.w") is None        # a conv mixes w's channels after it
    assert net.structure("layer2.conv.w") is not None
    net = Sequential([Conv(2, 3), Flatten(), Dense(2)], (2, 1, 5, 5), loss="mse")
    assert net.structure("layer2.dense.w") is None
    assert net.structure("input") is not None             # batch items stay independent


def test_conv_input_needs_only_the_window_colors():
    net = Sequential([Conv(8, 3, padding=1), Activation("tanh")], (4, 3, 24, 24))
    st = net.structure("input")
    assert np.unique(st.colors).size == 27                # C_in * 3 * 3, whatever N and size
    assert np.unique(net.structure("layer0.conv.w").colors).size == 27


def test_owners_handle_a_subset_of_a_color():
    # retries pass only some members of a color: the others' rows must go unattributed
    net = Sequential([Conv(2, 3, padding=1)], (1, 1, 6, 6))
    st = net.structure("input")
    members = np.flatnonzero(st.colors == st.colors[0])
    own_all = st.owners(members)
    own_sub = st.owners(members[::2])
    kept = np.isin(members, members[::2])
    assert np.all((own_sub >= 0) == kept[np.maximum(own_all, 0)] & (own_all >= 0))


def test_smooth_networks_take_one_complex_evaluation_per_color():
    smooth = Sequential([Conv(3, 3, padding=1), Activation("tanh"), AvgPool(2)], (2, 2, 8, 8))
    st = smooth.structure("input")
    assert st.smooth and st.complex_safe and smooth.structure("layer0.conv.w") is None
    for layers in ([Conv(3, 3, padding=1), Activation("relu")],
                   [Conv(3, 3, padding=1), MaxPool(2)],
                   [Conv(3, 3, padding=1), Activation("hard_tanh")]):
        st = Sequential(layers, (2, 2, 8, 8)).structure("input")
        assert not st.smooth and not st.complex_safe   # near kinks the cross-check is needed
    net, f, f_vjp, names, flat, R = _setup([Conv(3, 3, padding=1), Activation("tanh")],
                                           (2, 2, 8, 8), None)
    exact = f_vjp(R, *flat)[0]
    st = net.structure("input")
    assert st.smooth

    def g(a):
        return f(a, *flat[1:])

    one = numerical_vjp(g, flat[0], R, colors=st.colors, owners=st.owners, method="complex",
                        smooth=True)
    two = numerical_vjp(g, flat[0], R, colors=st.colors, owners=st.owners, method="complex")
    assert one.nfev == two.nfev - one.ncolors          # the -3ih evaluations are skipped
    assert np.all(np.abs(one.grad - exact) <= one.error + 1e-15)  # and the bars still hold
    assert np.max(np.abs(one.grad - exact)) < 1e-13 * np.max(np.abs(exact))



def test_filter_and_per_sample_owners_read_as_a_binary_search_would():
    # the owners look positions up in a table; a binary search over the sorted members
    # (``_position_of`` without the table) is the second route
    from gradcheck.ops._structure import (_position_of, filter_structure,
                                          per_sample_structure)

    out_shape = (3, 4, 5, 5)
    cases = [(filter_structure((4, 2, 3, 3), out_shape),
              lambda m: (np.arange(300) // 25) % 4 * 18 + m[0] % 18),
             (per_sample_structure((3, 2, 6, 6), out_shape),
              lambda m: np.repeat(np.arange(3), 100) * 72 + m[0] % 72)]
    for st, flat_of in cases:
        for color in np.unique(st.colors):
            members = np.flatnonzero(st.colors == color)
            for subset in (members, members[::2], members[1:2]):
                expected = _position_of(subset, flat_of(subset))
                np.testing.assert_array_equal(st.owners(subset), expected)
                assert (expected >= 0).any()


@pytest.mark.parametrize(("layers", "shape"), [
    ([Conv(8, 3, padding=1), Activation("tanh")], (4, 3, 24, 24)),
    ([Conv(4, (2, 3), stride=2, dilation=(2, 1), padding=1, groups=2), Activation("sigmoid"),
      MaxPool(2), Conv(2, 2)], (2, 2, 11, 10)),
    ([AvgPool(2), Activation("tanh"), Conv(2, 3, padding=2, stride=3)], (2, 3, 9, 9)),
    ([MaxPool(2, stride=1), AvgPool(3, padding=1)], (2, 3, 7, 6)),      # channels never mix
    ([Conv(2, 3, padding=((2, 0),))], (2, 2, 5)),
    ([Conv(2, 2, padding=1), Activation("tanh")], (1, 2, 4, 4, 4)),
], ids=["bench", "strided chain", "pool first", "pools only", "1-D", "3-D"])
def test_window_owners_of_a_whole_color_match_its_parts(layers, shape):
    # a whole color's owners come in closed form, a part of one through a lookup table:
    # the whole must read as its two halves do (even and odd members), and every row that
    # depends on a member (per the exact dependency pattern) must be attributed to it
    net = Sequential(layers, shape)
    st, P = net.structure("input"), net.pattern("input").tocsr()
    row_of = np.repeat(np.arange(P.shape[0]), np.diff(P.indptr))   # each entry's row
    for color in np.unique(st.colors):
        members = np.flatnonzero(st.colors == color)
        whole = st.owners(members)
        halves = np.full(P.shape[0], -1)
        for k in (0, 1):
            own = st.owners(members[k::2])
            halves[own >= 0] = 2 * own[own >= 0] + k
        np.testing.assert_array_equal(whole, halves)
        for subset in (members, members[::2], members[-1:]):
            at = np.full(st.colors.size, -1)
            at[subset] = np.arange(subset.size)
            own = st.owners(subset)
            # per row, the subset's members it depends on: at most one, and it is the owner
            # (every row at once; rows of no member are not asked about)
            hit = at[P.indices]
            rows, members_hit = row_of[hit >= 0], hit[hit >= 0]
            hits = np.bincount(rows, minlength=P.shape[0])
            assert hits.max(initial=0) <= 1, f"rows {np.flatnonzero(hits > 1)[:5]}"
            wrong = rows[own[rows] != members_hit]
            assert wrong.size == 0, f"rows {wrong[:5]}: owners {own[wrong[:5]]}"
