"""The precisions gradcheck works in: which dtypes are real floating point, and the
machine epsilon of each (one home, so the differentiator and the checker agree).

float16 and bfloat16 (the latter from the optional ``ml_dtypes`` package, which must be
imported for such an array to exist) are differenced in their own precision; NumPy has
no complex type of either, so the complex step does not apply to them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["REAL_FLOATS", "LOW_PRECISION", "is_real_float", "machine_eps", "widened"]

#: The real floating-point dtypes gradcheck differentiates and checks, by name.
REAL_FLOATS = ("float16", "bfloat16", "float32", "float64")
#: Those without a complex counterpart in NumPy.
LOW_PRECISION = ("float16", "bfloat16")


def is_real_float(dtype) -> bool:
    """Whether ``dtype`` is one of :data:`REAL_FLOATS`."""
    return np.dtype(dtype).name in REAL_FLOATS


def machine_eps(dtype) -> float:
    """Machine epsilon of ``dtype`` (of its real part for a complex dtype)."""
    dt = np.dtype(dtype)
    if dt.name == "bfloat16":
        import ml_dtypes  # present: a bfloat16 array cannot exist without it

        return float(ml_dtypes.finfo(dt).eps)
    if dt.kind not in "fc":
        dt = np.dtype(np.float64)
    return float(np.finfo(dt).eps)


def widened(a) -> np.ndarray:
    """``a`` as a new float64 array (complex128 where complex): where sums, norms and
    differences of a check's arrays are taken."""
    a = np.asarray(a)
    return a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
