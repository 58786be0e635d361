"""Training data: scikit-learn's bundled 8x8 digits, or a generated pattern task.

* ``"digits"`` -- the 1797 8x8 grey images of handwritten digits that ship inside
  scikit-learn (``sklearn.datasets.load_digits``: read from the installed package, never
  downloaded), scaled from 0..16 to 0..1, shape ``(n, 1, 8, 8)``, 10 classes. Needs the
  ``train`` extra.
* ``"synthetic"`` -- needs only NumPy. Each of the ``K`` classes is a fixed random pattern
  of the spec's input shape ``(C, *spatial)``; a sample is its class's pattern times a
  random gain in [0.7, 1.3], shifted by -1, 0 or +1 along every spatial axis
  (circularly), plus Gaussian noise of standard deviation 0.5. Classes are balanced.

Both are split into a training and a test part by a permutation drawn from the seed.
"""

from __future__ import annotations

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._record import NamedTuple
from gradcheck.spec._values import Ctx

__all__ = ["Dataset", "load_data", "DIGITS_SHAPE", "DIGITS_CLASSES"]

DIGITS_SHAPE = (1, 8, 8)
DIGITS_CLASSES = 10
_GAIN = (0.7, 1.3)
_NOISE = 0.5


class Dataset(NamedTuple):
    """Images and integer labels, split in two."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigurationError(
            "the digits data needs scikit-learn, which is not installed; install the train "
            "extra (pip install -e '.[train]' in the gradcheck checkout) or train on the "
            "synthetic data (--data synthetic)") from None
    bunch = load_digits()
    return bunch.images[:, None, :, :] / 16.0, bunch.target.astype(np.intp)


def _synthetic(sample_shape, n_classes, samples, rng):
    patterns = rng.standard_normal((n_classes, *sample_shape))
    y = rng.permutation(np.arange(samples) % n_classes)
    x = patterns[y] * rng.uniform(*_GAIN, size=(samples,) + (1,) * len(sample_shape))
    spatial = tuple(range(2, 1 + len(sample_shape)))   # axes after (sample, channel)
    for axis in spatial:
        shifts = rng.integers(-1, 2, size=samples)
        for s in (-1, 1):
            pick = shifts == s
            x[pick] = np.roll(x[pick], s, axis=axis)
    x += _NOISE * rng.standard_normal(x.shape)
    return x, y


def load_data(source: str, *, sample_shape, n_classes: int, dtype, seed: int,
              test_fraction: float, samples: int, where: str = "<spec>") -> Dataset:
    """The data set ``source`` for a network taking ``(N, *sample_shape)`` to ``n_classes``.

    Raises :class:`~gradcheck.SpecError` naming ``where`` (the spec) when the network
    does not fit the data, :class:`~gradcheck.ConfigurationError` when scikit-learn is
    missing for ``"digits"``.

    Examples
    --------
    >>> from gradcheck.train._data import load_data
    >>> d = load_data("synthetic", sample_shape=(1, 6, 6), n_classes=3, dtype="float64",
    ...               seed=0, test_fraction=0.25, samples=40)
    >>> d.x_train.shape, d.x_test.shape, sorted(set(d.y_train.tolist()))
    ((30, 1, 6, 6), (10, 1, 6, 6), [0, 1, 2])
    """
    sample_shape = tuple(sample_shape)
    rng = np.random.default_rng([seed, 2])
    if source == "digits":
        if sample_shape != DIGITS_SHAPE:
            raise Ctx(where).fail(
                "input.shape", f"the digits are 1x8x8 images, so the input must be "
                f"[N, 1, 8, 8]; got [N, {', '.join(map(str, sample_shape))}]; change the "
                f"shape or train on the synthetic data (--data synthetic)")
        if n_classes != DIGITS_CLASSES:
            raise Ctx(where).fail(
                "layer", f"the digits have 10 classes, so the network must end in 10 "
                f"outputs (N, 10); it ends in {n_classes}")
        x, y = _digits()
    elif source == "synthetic":
        x, y = _synthetic(sample_shape, n_classes, samples, rng)
    else:
        raise ConfigurationError(f"data must be \"digits\" or \"synthetic\"; got {source!r}")
    order = rng.permutation(len(y))
    n_test = min(max(1, round(test_fraction * len(y))), len(y) - 1)
    test, train = order[:n_test], order[n_test:]
    x = x.astype(dtype)
    return Dataset(source, x[train], y[train], x[test], y[test], n_classes)
