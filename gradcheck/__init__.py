"""gradcheck: prove a convolutional layer's backward pass right or wrong.

Public names are re-exported here; everything else is private.
"""

from gradcheck._errors import ConfigurationError, GradcheckError, SpecError, UserCodeError
from gradcheck.checker import (
    ArgumentReport,
    CheckReport,
    Diagnosis,
    assert_vjp_close,
    check_grad,
    check_layer,
    check_network,
    check_vjp,
)
from gradcheck.ops.conv import conv_backward, conv_forward

__version__ = "0.1.0"

__all__ = [
    "GradcheckError",
    "ConfigurationError",
    "SpecError",
    "UserCodeError",
    "conv_forward",
    "conv_backward",
    "check_vjp",
    "check_grad",
    "assert_vjp_close",
    "check_layer",
    "check_network",
    "CheckReport",
    "ArgumentReport",
    "Diagnosis",
    "__version__",
]
