"""The checker: analytic gradients held against numerical ones, with a verdict and a diagnosis.

:func:`check_vjp` is a pipeline of named stages, one module each; the map is in
:mod:`gradcheck.checker._check`. :func:`check_jvp` (forward mode) reuses them; its map
is in :mod:`gradcheck.checker._check_jvp`.
"""

from gradcheck._lazy import lazy_exports

# each name's module is imported on first use (a passing check never loads the diagnosis)
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(("DEFAULT_BUDGET", "assert_vjp_close", "check_grad", "check_vjp"),
                    "gradcheck.checker._check"),
    "check_jvp": "gradcheck.checker._check_jvp",
    **dict.fromkeys(("Suspect", "TensorRole"), "gradcheck.checker._diagnose"),
    **dict.fromkeys(("check_layer", "check_network"), "gradcheck.checker._layers"),
    **dict.fromkeys(("REPORT_FORMAT", "ArgumentReport", "CheckReport", "Diagnosis",
                     "LayerResult"), "gradcheck.checker._report"),
})

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
