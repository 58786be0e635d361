"""Calling the user's function: one point per call, or a leading batch in bounded chunks.

The differentiator never loops over points itself when ``f`` is vectorized: it builds a
chunk of perturbed points ``X`` of shape ``(B, *x.shape)`` and calls ``f(X)`` once,
expecting ``(B, *out_shape)`` back. ``B`` is chosen so that the chunk (inputs, outputs,
and the float64 work copies made from the outputs) fits in the ``memory`` budget, so the
peak memory follows the budget, not the number of elements. A plain callable gets one
point per call, in the same chunks.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from gradcheck._errors import UserCodeError
from gradcheck._precision import is_real_float

__all__ = ["Evaluator", "DEFAULT_MEMORY", "ComplexSteps"]

#: Outputs of float64 f whose largest magnitude lies outside [2**-FAR, 2**FAR] are
#: rescaled by a power of two (:func:`_unit`).
FAR = 256

#: Default bytes a chunk of perturbed points (with their outputs) may take.
DEFAULT_MEMORY = 64 * 2**20


class ComplexSteps:
    """A chunk of complex-step points ``point + i imag[b]`` handed over as its parts: the
    one real part every point shares (``point``, x's shape) and the imaginary parts
    ``imag`` (``(B, *x.shape)``, real, in x's precision).

    What ``f.complex_parts`` takes in place of the complex array (:meth:`Evaluator.parts`):
    the same points, without building ``B`` complex copies of ``x`` for ``f`` to compare
    and split again. ``shape`` and ``dtype`` are the complex array's; ``largest``, where
    given, is the largest ``|imag|``.
    """

    __slots__ = ("point", "imag", "largest")

    def __init__(self, point, imag, largest=None):
        self.point = point
        self.imag = imag
        self.largest = largest      # max |imag|, where known without a pass over it

    @property
    def shape(self):
        return self.imag.shape

    @property
    def dtype(self):
        return np.result_type(self.imag.dtype, np.complex64)


class Evaluator:
    """Wraps ``f`` with shape checks, chunking and the count of points evaluated."""

    def __init__(self, f, x: np.ndarray, *, vectorized: bool, memory: int, scalar: bool):
        self.f = f
        self.x = x
        self.vectorized = vectorized
        self.memory = memory
        self.scalar = scalar
        self.nfev = 0
        self.max_batch = 0
        self.out_shape = None
        #: power of two f's values are divided by before the differentiator sees them
        #: (:func:`_unit`); its results are multiplied back
        self.unit = 1.0
        f0 = self.center()
        self.unit = _unit(f0)
        self.f0 = f0 if self.unit == 1.0 else f0 / f0.dtype.type(self.unit)

    # ------------------------------------------------------------------ center
    def center(self) -> np.ndarray:
        """``f(x)``, checked: real, finite, and a scalar when one is expected."""
        if self.vectorized:
            Y = self._call(self.x[None])
            if Y.ndim == 0 or Y.shape[0] != 1:
                raise UserCodeError(
                    f"with vectorized=True, f must map a batch of shape (B, *x.shape) to "
                    f"(B, ...); given one point as shape {(1,) + self.x.shape} it returned "
                    f"shape {Y.shape}")
            y = Y[0]
        else:
            y = self._one(self.x)
        self.nfev += 1
        if np.iscomplexobj(y):
            raise UserCodeError(f"f returned complex values ({y.dtype}) for real input x; "
                                "it must return real floating-point values")
        if not is_real_float(y.dtype) and not np.issubdtype(y.dtype, np.floating):
            y = y.astype(np.float64)
        if self.scalar and y.size != 1:
            raise UserCodeError(f"f must return a scalar for numerical_grad; it returned "
                                f"an array of shape {y.shape}")
        if not np.all(np.isfinite(y.astype(np.float64))):
            raise UserCodeError("f(x) is not finite at the point given; the derivative is "
                                "only defined where f is")
        self.out_shape = () if self.scalar else y.shape
        return y.reshape(self.out_shape)

    @property
    def out_size(self) -> int:
        return math.prod(self.out_shape)    # a tuple of ints (asked once per group)

    # ------------------------------------------------------------------ batches
    def batch_size(self, itemsize_x: int) -> int:
        """Points per chunk under the memory budget (at least one)."""
        out_bytes = self.out_size * (self.f0.itemsize * 2 + 3 * 8)
        per_point = self.x.size * itemsize_x + out_bytes
        return max(1, int(self.memory // max(per_point, 1)))

    def __call__(self, X: np.ndarray, *, quiet_complex: bool = False) -> np.ndarray:
        """``f`` at each point of the chunk ``X`` (``(B, *x.shape)``) -> ``(B, *out)``."""
        B = X.shape[0]
        self.max_batch = max(self.max_batch, B)
        self.nfev += B
        # perturbed points may leave f's domain on purpose: NaN/inf are handled, not warned
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore",
                                                     over="ignore"):
            if quiet_complex:
                warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            if self.vectorized:
                Y = self._call(X)
                if Y.shape != (B,) + self.out_shape:
                    raise UserCodeError(
                        f"with vectorized=True, f returned shape {Y.shape} for a batch of {B} "
                        f"points; expected {(B,) + self.out_shape}")
            else:
                ys = [self._one(X[b]) for b in range(B)]
                for y in ys:
                    if y.shape != self.out_shape and not (self.scalar and y.size == 1):
                        raise UserCodeError(
                            f"f returned shape {y.shape} at a perturbed point but "
                            f"{self.out_shape} at x; f must return the same shape everywhere")
                Y = np.stack([y.reshape(self.out_shape) for y in ys])
        return Y if self.unit == 1.0 else Y / Y.dtype.type(self.unit)

    def splits(self) -> bool:
        """Whether ``f`` may give complex steps' values as parts (:meth:`parts`)."""
        return (getattr(self.f, "complex_parts", None) is not None and self.vectorized
                and not self.scalar and self.unit == 1.0)

    def takes_steps(self) -> bool:
        """Whether ``f.complex_parts`` also takes the points as their parts
        (:class:`ComplexSteps`; it says so with ``takes_complex_steps = True``)."""
        return self.splits() and bool(getattr(self.f.complex_parts, "takes_complex_steps",
                                              False))

    def parts(self, X):
        """``(re, im)`` of ``f`` at the complex points ``X`` when ``f`` offers them apart
        (``f.complex_parts``, a built-in network's complex steps: one real part shared by
        every point, the imaginary parts ``(B, *out)``), else None and nothing counted.
        ``X`` is a complex array or, points that share their real part, the parts
        themselves (:class:`ComplexSteps`, where :meth:`takes_steps`).

        The same values as ``self(X).real`` and ``.imag``, without the complex array
        between (f's values unscaled only: where :func:`_unit` rescales them, None).
        ``im`` is only read until the next call: a built-in network writes it to memory
        it reuses (:func:`gradcheck.ops._batched.complex_parts`).
        """
        if not self.splits():
            return None
        split = self.f.complex_parts
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore",
                                                     over="ignore"):
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            got = split(X)
        if got is None:
            return None
        re, im = got
        B = X.shape[0]
        if re.shape != self.out_shape or im.shape != (B,) + self.out_shape:
            raise UserCodeError(
                f"f.complex_parts returned parts of shapes {re.shape} and {im.shape} for a "
                f"batch of {B} points; expected {self.out_shape} and {(B,) + self.out_shape}")
        self.max_batch = max(self.max_batch, B)
        self.nfev += B
        return re, im

    def _one(self, point):
        return np.asarray(self.f(point))

    def _call(self, X):
        Y = np.asarray(self.f(X))
        if self.scalar and Y.ndim > 1:
            Y = Y.reshape(Y.shape[0], -1)
            if Y.shape[1] == 1:
                Y = Y[:, 0]
        return Y


def _unit(f0) -> float:
    """A power of two to divide a float64 ``f``'s values by, so that the error model's
    squares neither overflow nor underflow; 1 where none is needed or none is safe.

    The error model squares and sums values (root-sum-square magnitudes over output rows,
    products with the cotangent): beyond about 1e150 they overflow, and every error bar
    is infinite; below about 1e-150 they underflow, and bars are zero. Dividing by a power
    of two is exact (the binary exponent moves, a subnormal becomes normal), the
    derivative and its bar scale by the same factor. Values above 2**FAR are brought to
    2**FAR, and only where every nonzero value stays above 2**-FAR (a row pushed into the
    subnormal range would lose its digits: exp at 1 and at 709.5 together stay as they
    are, and say they cannot be differenced); values all below 2**-FAR are brought to 1.
    Narrower types (float32, float16) cannot reach those ranges.
    """
    if f0.dtype.kind != "f" or f0.dtype.itemsize < 8 or f0.size == 0:
        return 1.0
    a = np.abs(f0.astype(np.float64)).ravel()
    top = float(a.max())
    if top == 0.0 or 2.0 ** -FAR <= top <= 2.0 ** FAR:
        return 1.0
    e = int(np.frexp(top)[1])
    if top < 2.0 ** -FAR:
        return float(2.0 ** e)
    unit = 2.0 ** (e - FAR)
    low = float(a[a > 0].min())
    return float(unit) if low / unit >= 2.0 ** -FAR else 1.0
