"""The checker: analytic gradients held against numerical ones, with a verdict and a diagnosis.

:func:`check_vjp` is a pipeline of named stages, one module each; the map is in
:mod:`gradcheck.checker._check`. :func:`check_jvp` (forward mode) reuses them; its map
is in :mod:`gradcheck.checker._check_jvp`.
"""

from gradcheck.checker._check import DEFAULT_BUDGET, assert_vjp_close, check_grad, check_vjp
from gradcheck.checker._check_jvp import check_jvp
from gradcheck.checker._diagnose import Suspect, TensorRole
from gradcheck.checker._layers import check_layer, check_network
from gradcheck.checker._report import (
    REPORT_FORMAT,
    ArgumentReport,
    CheckReport,
    Diagnosis,
    LayerResult,
)

__all__ = [
    "check_vjp",
    "check_jvp",
    "check_grad",
    "assert_vjp_close",
    "check_layer",
    "check_network",
    "CheckReport",
    "ArgumentReport",
    "Diagnosis",
    "LayerResult",
    "Suspect",
    "TensorRole",
    "REPORT_FORMAT",
    "DEFAULT_BUDGET",
]
