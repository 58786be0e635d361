"""Argument handling shared by the two reference routes (none of the convolution's arithmetic)."""

from __future__ import annotations

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck.ops._geometry import ConvGeometry, conv_geometry

_CONVENTIONS = ("correlation", "convolution")


def _check_convention(convention) -> bool:
    """Return True for the seed's true convolution, False for cross-correlation."""
    if convention not in _CONVENTIONS:
        raise ConfigurationError(f"convention must be one of {_CONVENTIONS}; got {convention!r}")
    return convention == "convolution"


def _as_array(value) -> np.ndarray:
    """``value`` as an ndarray; integers and booleans become float64, floats stay as they are."""
    arr = np.asarray(value)
    if arr.dtype.kind in "iub":
        return arr.astype(np.float64)
    return arr


def _geometry(x_shape, w_shape, stride, padding, dilation, groups) -> ConvGeometry:
    """Normalize the arguments and get the shapes (the only thing borrowed from _geometry)."""
    return conv_geometry(x_shape, w_shape, stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
