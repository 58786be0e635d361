r"""Hypothesis strategies for gradient checks: configurations nobody hand-picked.

Use them in your own hypothesis tests (``pip install -e '.[strategies]'`` in the checkout)::

    from hypothesis import given
    from gradcheck import check_vjp
    from gradcheck.strategies import conv_cases

    @given(conv_cases(dtype="float32"))
    def test_my_conv_backward(case):
        ...

* :func:`conv_configs` -- valid convolution configurations (:class:`ConvConfig`): 1 to 3
  spatial dims, batch, channels compatible with groups, kernel, stride, padding (ints,
  tuples, (low, high) pairs, ``"valid"``/``"same"``/``"full"``), dilation, convention,
  bias; never an empty output, every array at most ``max_size`` elements.
* :func:`conv_cases` -- a configuration with arrays (:class:`ConvCase`).
* :func:`activations` -- rows of the activation table, with their kinks.
* :func:`arrays` -- arrays of a given dtype and magnitude, optionally a safe distance
  (:func:`kink_distance`) from an activation's kinks.
* :func:`layer_stacks` -- whole stacks of built-in layers (:class:`LayerStack`).
* :func:`spec_documents`, :func:`specs` -- spec documents in the ``gradcheck check``
  format, and their parsed form; they round-trip through TOML and JSON.

Every strategy checks its arguments when called and raises
:class:`~gradcheck.ConfigurationError` naming the bad one. Array values come from one
drawn integer seed (shrinking to 0), so they are cheap to draw and a failing example
names the seed that rebuilds them.

This module is not imported by ``import gradcheck``: hypothesis is an optional dependency.
"""

try:
    import hypothesis  # noqa: F401 (the optional dependency)
except ImportError:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "gradcheck.strategies needs hypothesis, which is not installed; install it with "
        "pip install -e '.[strategies]' in the gradcheck checkout (or the test extra: "
        "'.[test]')"
    ) from None

from gradcheck.strategies._arrays import activations, arrays, kink_distance
from gradcheck.strategies._conv import (
    CONVENTIONS,
    PADDINGS,
    ConvCase,
    ConvConfig,
    conv_cases,
    conv_configs,
)
from gradcheck.strategies._stacks import (
    LAYER_KINDS,
    LayerStack,
    layer_stacks,
    spec_documents,
    specs,
)

__all__ = [
    "conv_configs",
    "conv_cases",
    "ConvConfig",
    "ConvCase",
    "activations",
    "arrays",
    "kink_distance",
    "layer_stacks",
    "LayerStack",
    "spec_documents",
    "specs",
    "PADDINGS",
    "CONVENTIONS",
    "LAYER_KINDS",
]
