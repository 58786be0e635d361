"""gradcheck: prove a convolutional layer's backward pass right or wrong.

Public names are re-exported here; everything else is private.
"""

from gradcheck._errors import ConfigurationError, GradcheckError, SpecError, UserCodeError
from gradcheck.ops.conv import conv_backward, conv_forward

__version__ = "0.1.0"

__all__ = [
    "GradcheckError",
    "ConfigurationError",
    "SpecError",
    "UserCodeError",
    "conv_forward",
    "conv_backward",
    "__version__",
]
