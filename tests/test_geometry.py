"""Shape arithmetic and argument normalization (gradcheck.ops._geometry): output sizes
against a brute-force count of window positions and against PyTorch, the padding words,
and the input-array rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gradcheck import ConfigurationError
from gradcheck.ops._geometry import as_float_array, conv_geometry, normalize_tuple


def _count_windows(n, k, s, d, lo, hi):
    """Number of window starts 0, s, 2s, ... whose last tap still lands in the padded input."""
    return sum(1 for start in range(0, n + lo + hi, s) if start + d * (k - 1) < n + lo + hi)


def test_out_shape_counts_the_windows():
    for n, k, s, d, p in itertools.product(range(1, 8), range(1, 4), (1, 2, 3), (1, 2),
                                           (0, 1, 2)):
        case = f"n={n} k={k} s={s} d={d} p={p}"
        if n + 2 * p < d * (k - 1) + 1:
            with pytest.raises(ConfigurationError, match="kernel is larger than the padded"):
                conv_geometry((1, 1, n), (1, 1, k), stride=s, dilation=d, padding=p)
            continue
        geom = conv_geometry((1, 1, n), (1, 1, k), stride=s, dilation=d, padding=p)
        assert geom.out_shape == (_count_windows(n, k, s, d, p, p),), case
        assert geom.padded_shape == (n + 2 * p,), case
        assert geom.effective_kernel == (d * (k - 1) + 1,), case
        assert geom.has_padding == (p > 0), case


def test_per_dimension_geometry():
    geom = conv_geometry((2, 6, 9, 8, 7), (4, 3, 3, 2, 1), stride=(2, 1, 3),
                         padding=((1, 0), (0, 2), (2, 2)), dilation=(1, 3, 1), groups=2)
    assert (geom.nd, geom.batch, geom.in_channels, geom.out_channels, geom.groups) == \
        (3, 2, 6, 4, 2)
    assert geom.in_shape == (9, 8, 7) and geom.kernel == (3, 2, 1)
    assert geom.pad_lo == (1, 0, 2) and geom.pad_hi == (0, 2, 2)
    assert geom.padded_shape == (10, 10, 11)
    assert geom.effective_kernel == (3, 4, 1)
    assert geom.out_shape == tuple(
        _count_windows(n, k, s, d, lo, hi)
        for n, k, s, d, lo, hi in zip((9, 8, 7), (3, 2, 1), (2, 1, 3), (1, 3, 1),
                                      (1, 0, 2), (0, 2, 2))
    ) == (4, 7, 4)
    text = geom.describe()
    assert "x (2, 6, 9, 8, 7)" in text and "w (4, 3, 3, 2, 1)" in text
    assert "groups 2" in text and "padding ((1, 0), (0, 2), (2, 2))" in text


@pytest.mark.parametrize(("k", "d"), list(itertools.product((1, 2, 3, 4, 5), (1, 2, 3))))
def test_padding_words(k, d):
    n = 4 * d * k  # large enough for "valid"
    reach = d * (k - 1)
    valid = conv_geometry((1, 1, n), (1, 1, k), dilation=d, padding="valid")
    assert (valid.pad_lo, valid.pad_hi) == ((0,), (0,))
    assert valid.out_shape == (n - reach,)
    full = conv_geometry((1, 1, n), (1, 1, k), dilation=d, padding="full")
    assert (full.pad_lo, full.pad_hi) == ((reach,), (reach,))
    assert full.out_shape == (n + reach,)
    same = conv_geometry((1, 1, n), (1, 1, k), dilation=d, padding="same")
    assert same.out_shape == (n,)
    # Total d*(k-1); the odd one out on the high side.
    assert same.pad_lo[0] + same.pad_hi[0] == reach
    assert same.pad_hi[0] - same.pad_lo[0] in (0, 1)
    assert same.pad_lo == (reach // 2,)
    # Words work with any input size at all for "same" and "full".
    assert conv_geometry((1, 1, 1), (1, 1, k), dilation=d, padding="full").out_shape == \
        (1 + reach,)
    assert conv_geometry((1, 1, 1), (1, 1, k), dilation=d, padding="same").out_shape == (1,)


def test_padding_forms_are_equivalent():
    shapes = ((1, 1, 5, 6), (1, 1, 3, 2))
    a = conv_geometry(*shapes, padding=2)
    b = conv_geometry(*shapes, padding=(2, 2))
    c = conv_geometry(*shapes, padding=[(2, 2), (2, 2)])
    assert a == b == c
    assert conv_geometry(*shapes, padding="full") == conv_geometry(*shapes, padding=(2, 1))
    assert conv_geometry(*shapes, padding="valid") == conv_geometry(*shapes, padding=0)
    assert conv_geometry(*shapes, padding=np.int64(1)).pad_lo == (1, 1)


def test_normalize_tuple():
    assert normalize_tuple(2, 3, "stride", minimum=1) == (2, 2, 2)
    assert normalize_tuple((1, 2), 2, "stride", minimum=1) == (1, 2)
    assert normalize_tuple([np.int32(3)], 1, "dilation", minimum=1) == (3,)
    assert all(type(v) is int for v in normalize_tuple((np.int64(1), 2), 2, "s", minimum=0))
    with pytest.raises(ConfigurationError, match=r"stride must be >= 1 in every spatial dim"):
        normalize_tuple((1, 0), 2, "stride", minimum=1)
    with pytest.raises(ConfigurationError, match=r"one per spatial dim\); got \(1, 2\.0\)"):
        normalize_tuple((1, 2.0), 2, "stride", minimum=1)
    with pytest.raises(ConfigurationError, match=r"a tuple of 2 ints .*; got 'ab'"):
        normalize_tuple("ab", 2, "stride", minimum=1)


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (np.ones(2, np.float16), np.float32),
        (np.ones(2, np.float32), np.float32),
        (np.ones(2, np.float64), np.float64),
        (np.ones(2, np.int8), np.float64),
        (np.ones(2, np.uint16), np.float64),
        (np.ones(2, bool), np.float64),
        ([1, 2], np.float64),
        (3.0, np.float64),
        (np.ones(2, np.complex64), np.complex64),
        (np.ones(2, np.complex128), np.complex128),
    ],
)
def test_as_float_array_keeps_precision(value, dtype):
    arr = as_float_array(value, "x")
    assert arr.dtype == dtype
    np.testing.assert_array_equal(arr, np.asarray(value).astype(dtype))


def test_as_float_array_does_not_copy_floats():
    x = np.ones((2, 3))
    assert as_float_array(x, "x") is x


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array(["a"]), r"w must hold real or complex numbers; got an array of dtype <U1"),
        (np.array([object()]), r"w must hold real or complex numbers; got an array of dtype object"),
        (np.array(["2024-01-01"], dtype="datetime64[D]"), r"got an array of dtype datetime64"),
    ],
)
def test_as_float_array_rejects_non_numbers(value, message):
    with pytest.raises(ConfigurationError, match=message):
        as_float_array(value, "w")


# --------------------------------------------------------------------------- against torch


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("nd", (1, 2, 3))
def test_out_shape_matches_torch(nd):
    torch = pytest.importorskip("torch")
    conv = getattr(torch.nn.functional, f"conv{nd}d")
    for n, k, s, d, p in itertools.product((1, 4, 7), (1, 2, 3), (1, 2, 3), (1, 2),
                                           (0, 1, 2, "valid", "same")):
        if p == "same" and s != 1:
            continue
        case = f"n={n} k={k} s={s} d={d} p={p}"
        # Vary the sizes per dim so a mixed-up axis would show.
        x_shape = (1, 1, *[n + i for i in range(nd)])
        w_shape = (1, 1, *[max(1, k - i) for i in range(nd)])
        pad_total = 0 if isinstance(p, str) else 2 * p
        fits = p == "same" or all(nn + pad_total >= d * (kk - 1) + 1
                                  for nn, kk in zip(x_shape[2:], w_shape[2:]))
        if not fits:
            with pytest.raises(RuntimeError):
                conv(torch.zeros(x_shape), torch.zeros(w_shape), stride=s, padding=p,
                     dilation=d)
            with pytest.raises(ConfigurationError, match="kernel is larger than the padded"):
                conv_geometry(x_shape, w_shape, stride=s, padding=p, dilation=d)
            continue
        y = conv(torch.zeros(x_shape), torch.zeros(w_shape), stride=s, padding=p, dilation=d)
        geom = conv_geometry(x_shape, w_shape, stride=s, padding=p, dilation=d)
        assert (1, 1, *geom.out_shape) == tuple(y.shape), case


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(("k", "d"), list(itertools.product((2, 3, 4), (1, 2, 3))))
def test_same_padding_split_matches_torch(k, d):
    """torch's 'same' equals explicit (pad_lo, pad_hi) padding as our geometry splits it."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(k * 10 + d)
    x = torch.tensor(rng.standard_normal((1, 1, 9)))
    w = torch.tensor(rng.standard_normal((1, 1, k)))
    geom = conv_geometry(tuple(x.shape), tuple(w.shape), dilation=d, padding="same")
    same = functional.conv1d(x, w, padding="same", dilation=d)
    explicit = functional.conv1d(functional.pad(x, (geom.pad_lo[0], geom.pad_hi[0])), w,
                                 dilation=d)
    np.testing.assert_array_equal(same.numpy(), explicit.numpy())


def test_a_geometry_seen_before_is_no_pass_for_arguments_that_only_compare_equal():
    # geometries are kept between calls: True == 1 and 1.0 == 1, but neither is an int
    from gradcheck import ConfigurationError

    first = conv_geometry((1, 2, 5, 5), (2, 2, 3, 3), stride=1, groups=1)
    assert conv_geometry((1, 2, 5, 5), (2, 2, 3, 3), stride=1, groups=1) == first
    with pytest.raises(ConfigurationError, match="groups must be a positive int; got True"):
        conv_geometry((1, 2, 5, 5), (2, 2, 3, 3), stride=1, groups=True)
    with pytest.raises(ConfigurationError, match="stride must be an int"):
        conv_geometry((1, 2, 5, 5), (2, 2, 3, 3), stride=1.0, groups=1)
