"""numdiff._targets: the grid a row's values lie on (``_grain``), by hand and against the
row-by-row computation its shortcut skips."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.numdiff._grain import _grain, _grain_of


@pytest.mark.parametrize("value, expected", [
    ((2.0**40 + 1) * 2.0**-60, 2.0**-60),   # 41 significant bits: a grid of 2^-60
    (3 * 2.0**-60, 0.0),                    # 2 bits: a simple number, tells nothing
    ((2.0**52 + 1) * 2.0**-60, 0.0),        # 53 bits: the value's own rounding
    ((2.0**49 + 1) * 2.0**-60, 2.0**-60),   # 50 bits: 3 below 53, still a coarse grid
    ((2.0**50 + 1) * 2.0**-60, 0.0),        # 51 bits: within LOST_BITS of its own ulp
    (0.0, 0.0),
    (np.nan, 0.0),
])
def test_one_complex_step_value_by_hand(value, expected):
    assert _grain(np.array([[[value]]]), (1,), True, 53)[0, 0] == expected


def _hard_rows(rng, kind, shape):
    Y = rng.standard_normal(shape)
    if kind == "coarse":          # few significant bits, at every binade
        Y = np.round(Y * 2.0 ** rng.integers(0, 60, shape)) * 2.0 ** -rng.integers(0, 60, shape)
    elif kind == "float32":       # float32 values carried in float64
        Y = Y.astype(np.float32).astype(np.float64)
    elif kind == "special":       # zeros, NaN, inf, subnormals among them
        for value, share in ((0.0, .2), (np.nan, .1), (np.inf, .1), (5e-320, .1), (3e-310, .1)):
            Y[rng.random(shape) < share] = value
    elif kind == "trailing":      # every count of trailing zeros of the significand, at
        # every binade, and spans near digits / 2 (the boundary that the span decides)
        t = rng.integers(0, 53, shape)
        top = 2.0 ** (52 - t)
        odd = np.floor(top * (1 + rng.random(shape)) / 2) * 2 + 1   # odd, 53 - t bits
        odd = np.where(t == 52, 1.0, np.minimum(odd, 2 * top - 1))
        near = rng.random(shape) < 0.2                           # 2^26.5 +- a few
        odd = np.where(near & (t == 26), 94906265.0 + 2 * rng.integers(-3, 4, shape), odd)
        Y = np.where(rng.random(shape) < 0.5, -1, 1) * odd * 2.0 ** (
            t + rng.integers(-1070, 970, shape) - 52.0)
        assert np.all(np.isfinite(Y))
    elif kind == "linear":        # exactly linear in the node: a piecewise-linear f
        k = np.array([1.0, -1.0, 2.0, -2.0])[:shape[1]]
        Y = np.round(rng.standard_normal((shape[0], 1, shape[2])) * 2**20) * 2.0**-30 * k[:, None]
    return Y


@pytest.mark.parametrize("kind", ["normal", "coarse", "float32", "special", "linear",
                                  "trailing"])
@pytest.mark.parametrize("digits", [53, 24, 11, 8])
def test_the_shortcut_changes_no_row(kind, digits):
    rng = np.random.default_rng(digits)
    for nk, ks in ((1, (1,)), (2, (1, -3)), (4, (1, -1, 2, -2))):
        Y = _hard_rows(rng, kind, (3, nk, 400))
        for imag in (True, False):
            with np.errstate(over="ignore"):
                fast, full = _grain(Y, ks, imag, digits), _grain_of(Y, ks, imag, digits)
            np.testing.assert_array_equal(fast, full)
            assert fast.shape == (3, 400)


@pytest.mark.parametrize("owners, message", [
    (lambda m: np.zeros(5, int), r"one integer per output element \(6\); got an array of "
                                 r"shape \(5,\), dtype int64"),
    (lambda m: np.zeros(6), r"one integer per output element \(6\); got .* dtype float64"),
    (lambda m: np.full(6, 7), r"positions in members \(< 6\) or -1; got 7"),
])
def test_owners_that_do_not_fit_are_named(owners, message):
    from gradcheck import ConfigurationError, numerical_vjp

    with pytest.raises(ConfigurationError, match=message):
        numerical_vjp(np.sin, np.linspace(-1, 1, 6), np.ones(6), colors=np.zeros(6, int),
                      owners=owners)


@pytest.mark.parametrize("method", ["complex", "richardson"])
def test_owners_attribute_rows_group_by_group(method):
    # f_i = sin(x_i) * x_{5-i}: rows 0-2 owned by the elements 0-2 (one color), rows 3-5
    # by 3-5 (another); each element also reaches a row it does not own, which the
    # owners route leaves out: d/dx_j of sum_i sin(x_i) x_{5-i} over its owned row only
    from gradcheck import numerical_vjp

    x = np.linspace(-1.0, 1.0, 6)
    R = np.arange(1.0, 7.0)

    def owners(members):
        own = np.full(6, -1)
        for p, j in enumerate(members):
            own[j] = p
        return own

    r = numerical_vjp(lambda a: np.sin(a) * a[::-1], x, R, colors=np.repeat([0, 1], 3),
                      owners=owners, method=method)
    expected = R * np.cos(x) * x[::-1]
    assert np.all(np.abs(r.grad - expected) <= r.error + 1e-15)
    assert np.max(r.error) < 1e-8


@pytest.mark.parametrize("offset", [0.0, 1e-13, 1e-9])
def test_a_shared_real_part_drifts_as_the_complex_outputs_do(offset):
    # f offers its complex steps' parts apart (f.complex_parts: one real part for every
    # point); the real part strays from f(x) by ``offset`` relative, or not at all, and
    # every point reaches only its color's rows: the error bars (which carry the drift)
    # must be those of the same values handed over as one complex array
    from gradcheck import numerical_vjp

    x = np.linspace(-1.0, 1.0, 12)
    R = np.linspace(0.5, 2.0, 12)

    def real_part(a):
        return np.sin(a) * (1 + offset * np.cos(3 * a))

    def whole(X):
        X = np.asarray(X)
        if not np.iscomplexobj(X):
            return np.sin(X)
        return real_part(X.real) + 1j * (X.imag * np.cos(X.real))

    def split(X):
        return whole(X)

    split.complex_parts = lambda X: (real_part(X[0].real), X.imag * np.cos(X.real))

    def owners(members):
        own = np.full(12, -1)
        own[members] = np.arange(members.size)
        return own

    options = dict(colors=np.arange(12) % 3, owners=owners, method="complex",
                   vectorized=True, smooth=True)
    a, b = numerical_vjp(split, x, R, **options), numerical_vjp(whole, x, R, **options)
    np.testing.assert_array_equal(a.grad, b.grad)
    np.testing.assert_array_equal(a.error, b.error)
    assert np.all(np.abs(a.grad - R * np.cos(x)) <= a.error)


@pytest.mark.parametrize("method", ["complex", "richardson"])
def test_owners_route_reads_a_shared_table_as_fresh_ones(method):
    # f(x)[o, n] = sum_j tanh(x[o, j]) z[j, n], and a last row of constants: filter o owns
    # its row whatever the color (entry j), the last row is owned by none. One read-only
    # table for every color (read once), fresh writable tables, and "none" as -2 instead
    # of -1 must give the same values and error bars to the bit, and the derivative.
    from gradcheck import numerical_vjp

    rng = np.random.default_rng(9)
    z = rng.standard_normal((3, 5))
    x = rng.standard_normal((4, 3))
    R = rng.standard_normal(4 * 5 + 1)

    def f(a):
        a = np.asarray(a)
        rows = (np.tanh(a) @ z).reshape(a.shape[:-2] + (-1,))
        return np.concatenate([rows, np.ones(a.shape[:-2] + (1,))], axis=-1)

    table = np.append(np.repeat(np.arange(4), 5), -1)
    shared = table.copy()
    shared.flags.writeable = False
    seen = []

    def fresh(members, none=-1):     # the member of each row's filter, if given
        at = {int(m) // 3: p for p, m in enumerate(members)}
        return np.array([at.get(int(o), none) if o >= 0 else none for o in table])

    def read_only(members):
        if members.size < 4:        # part of a color (a retry): a table of its own
            return fresh(members)
        seen.append(members.size)
        return shared

    runs = [numerical_vjp(f, x, R, colors=np.tile(np.arange(3), 4), owners=owners,
                          method=method, vectorized=True)
            for owners in (read_only, fresh, lambda m: fresh(m, -2))]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.grad, runs[0].grad)
        np.testing.assert_array_equal(r.error, runs[0].error)
    expected = (1 - np.tanh(x) ** 2) * (z @ R[:20].reshape(4, 5).T).T
    assert np.all(np.abs(runs[0].grad - expected) <= runs[0].error + 1e-15)
    assert len(seen) >= 3


def _channel_problem(none, seed=5):
    """f(x)[n, o, p] = tanh(sum_j x[o, j] z[n, j, p]): filter o owns its channel, one run
    of 24 rows per batch item (3 items), as a conv's weight followed by tanh does; with
    ``none`` a channel of constants owned by none runs between them. Returns f, x, R, the
    owners callback (a whole color: one shared read-only table; part of one: its own),
    the options, and the exact derivative with, per element, sum_i |R_i J_ij|."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((3, 2, 24))
    x = rng.standard_normal((4, 2))
    n_o = 4 + none

    def f(a):
        a = np.asarray(a)
        y = np.tanh(np.einsum("...oj,njp->...nop", a, z))
        if none:
            y = np.concatenate([y, np.ones(y.shape[:-2] + (1, 24))], axis=-2)
        return y.reshape(a.shape[:-2] + (-1,))

    table = np.tile(np.repeat(np.arange(n_o), 24), 3)
    table[table == 4] = -1
    shared = table.copy()
    shared.flags.writeable = False
    R = rng.standard_normal(table.size)

    def owners(members):
        if members.size == 4:
            return shared
        at = {int(m) // 2: p for p, m in enumerate(members)}
        return np.array([at.get(int(o), -1) if o >= 0 else -1 for o in table])

    Rr = R.reshape(3, n_o, 24)[:, :4]
    y = np.einsum("oj,njp->nop", x, z)
    slope = Rr * (1 - np.tanh(y) ** 2)
    expected = np.einsum("nop,njp->oj", slope, z)
    magnitude = np.einsum("nop,njp->oj", np.abs(slope), np.abs(z))
    options = dict(colors=np.tile(np.arange(2), 4), owners=owners, vectorized=True)
    return f, x, R, options, expected, magnitude


@pytest.mark.parametrize("method", ["complex", "richardson"])
@pytest.mark.parametrize("none", [False, True])
def test_owners_in_runs_and_sorted_sum_within_the_sums_rounding(method, none, monkeypatch):
    # The owners route sums a member's rows run by run where they come in runs
    # (numdiff._runs.Runs), else gathered member by member (Sorted: the runs made too
    # short to count). The two add in different orders: their derivatives may differ by
    # the sums' own rounding, gamma_n sum_i |R_i Delta f_i| / h for n = 72 terms (twice:
    # one per route), and no more; the error bars by as little, relative; both must hold
    # the exact derivative. The error bars hold a term of the gap between the nodes'
    # derivatives (GAP_WEIGHT |d+ - d-|, at the level of that rounding here): they may
    # differ by GAP_WEIGHT times the derivatives' bar at each of the two nodes, and by
    # little more than the rounding of their sums of squares beyond it.
    from gradcheck import numerical_vjp
    from gradcheck.numdiff import _runs
    from gradcheck.numdiff._core import GAP_WEIGHT

    f, x, R, options, expected, magnitude = _channel_problem(none)
    runs = numerical_vjp(f, x, R, method=method, **options)
    monkeypatch.setattr(_runs, "MIN_RUN", 10**9)
    monkeypatch.setattr(_runs, "_KNOWN", type(_runs._KNOWN)())
    sorted_ = numerical_vjp(f, x, R, method=method, **options)
    u = np.finfo(np.float64).eps / 2
    n = 72
    bar = 2 * (n * u / (1 - n * u)) * magnitude * 1.01    # |Delta f_i| / h ~ |J_ij|
    assert np.all(np.abs(runs.grad - sorted_.grad) <= bar)
    assert np.all(np.abs(runs.error - sorted_.error)
                  <= 2 * GAP_WEIGHT * bar + 1e-12 * np.maximum(runs.error, sorted_.error))
    for r in (runs, sorted_):
        assert np.all(np.abs(r.grad - expected) <= r.error + 1e-15)


def test_results_do_not_depend_on_how_many_groups_are_summed_at_once(monkeypatch):
    # BLOCK_VALUES bounds the groups the owners route attributes at once: one group per
    # block or all of them, the derivatives and error bars are the same to the bit
    from gradcheck import numerical_vjp
    from gradcheck.numdiff import _runs, _targets

    for none in (False, True):
        for short in (False, True):
            f, x, R, options, _, _ = _channel_problem(none, seed=6)
            # a fresh memo of layouts (a table seen with runs would keep them)
            monkeypatch.setattr(_runs, "_KNOWN", type(_runs._KNOWN)())
            if short:
                monkeypatch.setattr(_runs, "MIN_RUN", 10**9)
            got = []
            for values in (1, 2**16, 2**30):
                monkeypatch.setattr(_targets, "BLOCK_VALUES", values)
                got.append(numerical_vjp(f, x, R, method="complex", **options))
            for r in got[1:]:
                np.testing.assert_array_equal(r.grad, got[0].grad)
                np.testing.assert_array_equal(r.error, got[0].error)
            monkeypatch.undo()


def _segment_bound(terms):
    """gamma_{n-1} sum |t| for a sum of the ``n`` terms in any order."""
    u = np.finfo(np.float64).eps / 2
    n = max(len(terms) - 1, 0)
    return n * u / (1 - n * u) * float(np.sum(np.abs(terms)))


def test_runs_and_sorted_sums_against_correctly_rounded_sums():
    # each member's sum over its rows, by runs and by sorted segments, against math.fsum
    # of the same terms (correctly rounded), within the sum's own rounding; sums of
    # squares likewise, against fsum of the squares formed one by one
    import math

    from gradcheck.numdiff._runs import Runs, Sorted, runs_of

    rng = np.random.default_rng(11)
    m, length = 3, 40
    bins = np.tile(np.repeat([2, 0, 3, 1], length), 5)          # 3 = none
    r = runs_of(bins, m, int(np.count_nonzero(np.diff(bins))))
    assert isinstance(r, Runs) and (r.length, r.per) == (length, 5)
    a = rng.standard_normal((2, bins.size)) * np.exp(8 * rng.standard_normal(bins.size))
    got, got_sq = r.sums(a), r.sums(a, square=True)
    s = Sorted(bins, m)
    for row in range(2):
        for member in range(m):
            terms = a[row, bins == member]
            exact = math.fsum(terms)
            assert abs(got[row, member] - exact) <= _segment_bound(terms)
            sq = terms * terms
            assert abs(got_sq[row, member] - math.fsum(sq)) <= _segment_bound(sq)
            seg = np.add.reduceat(a[row, s.rows], s.starts)[list(s.present).index(member)]
            assert abs(seg - exact) <= _segment_bound(terms)


def test_runs_are_found_only_where_every_member_owns_as_many():
    from gradcheck.numdiff._runs import Sorted, layout_of, runs_of

    bins = np.tile(np.repeat([0, 1, 2], 16), 2)          # 2 = none, member 0 and 1
    r = runs_of(bins, 2, 5)
    assert (r.index.tolist(), r.length, r.per, r.n_runs) == ([0, 3, 1, 4], 16, 2, 6)
    a = np.arange(bins.size, dtype=float)
    # by hand: member 0 owns rows 0-15 and 48-63, member 1 rows 16-31 and 64-79
    np.testing.assert_array_equal(r.sums(a), [a[0:16].sum() + a[48:64].sum(),
                                              a[16:32].sum() + a[64:80].sum()])
    assert runs_of(np.repeat([0, 1, 1], 16), 2, 1) is None      # unequal runs
    assert runs_of(np.repeat([0, 1], 8), 2, 1) is None          # runs too short
    assert runs_of(np.repeat([0, 2], 16), 2, 1) is None         # member 1 owns nothing
    # the others: owned rows member by member, in row order; members owning none left out
    s = layout_of(np.array([2, 0, 3, 0, 2, 3]), 4, 5)
    assert isinstance(s, Sorted)
    assert (s.rows.tolist(), s.starts.tolist(), s.present.tolist()) == (
        [1, 3, 0, 4, 2, 5], [0, 2, 4], [0, 2, 3])


def test_a_table_of_the_same_values_is_read_once():
    # a read-only table of values seen before (a new array each call, as a structure
    # hands them out) is found by its values, compared in full: one differing value,
    # even where the sample of the key does not look, is a new table
    from gradcheck.numdiff import _runs

    table = np.tile(np.repeat(np.arange(4), 24), 3)
    lay = _runs.layout_of(table, 4, int(np.count_nonzero(np.diff(table))))
    _runs.remember_layout(table, 4, lay)
    assert _runs.known_layout(table.copy(), 4) is lay
    assert _runs.known_layout(table.copy(), 5) is None
    for at in range(table.size):
        other = table.copy()
        other[at] = (other[at] + 1) % 4
        assert _runs.known_layout(other, 4) is None
