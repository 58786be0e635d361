"""Plain Python data for ``to_dict()``: what JSON and TOML can write, and nothing else."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

__all__ = ["plain"]


def plain(value):
    """``value`` as plain data, recursively: ready for ``json.dumps`` and the TOML writer.

    Tuples and lists become lists, mappings dicts (keys kept); a NumPy scalar becomes the
    Python ``bool``, ``int`` or ``float`` it holds; a complex number becomes its real part
    when the imaginary part is 0 and ``{"real": .., "imag": ..}`` otherwise (complex-step
    runs make complex deltas). Anything else (strings, None) is returned as it is.

    Examples
    --------
    >>> import numpy as np
    >>> plain({"stride": (2, 1), "padding": [(1, 0), (0, 1)], "scale": np.float32(0.5)})
    {'stride': [2, 1], 'padding': [[1, 0], [0, 1]], 'scale': 0.5}
    >>> plain(np.complex128(3.0)), plain(1 + 2j), plain(True), plain(np.int64(7))
    (3.0, {'real': 1.0, 'imag': 2.0}, True, 7)
    """
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, numbers.Complex):
        value = complex(value)
        return value.real if value.imag == 0 else {"real": value.real, "imag": value.imag}
    return value
