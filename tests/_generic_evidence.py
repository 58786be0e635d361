"""The evidence the generic causes read, built from bare arrays for their unit tests."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from gradcheck.checker._diagnose import TensorRole
from gradcheck.checker._fit import Known


class Evidence:
    """``A``, ``N``, ``τ``, the kept elements, the role and what is known."""

    def __init__(self, analytic, numeric, tolerance, *, role=TensorRole(), exclude=None,
                 known=Known()):
        self.a = np.asarray(analytic, np.float64)
        self.n = np.asarray(numeric, np.float64)
        self.tol = np.broadcast_to(np.asarray(tolerance, np.float64), self.a.shape)
        self.keep = np.ones(self.a.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
        self.role, self.known = role, known

    @cached_property
    def failed(self):
        return self.keep & (np.abs(self.a - self.n) > self.tol)

    @cached_property
    def n_failed(self):
        return int(self.failed.sum())
