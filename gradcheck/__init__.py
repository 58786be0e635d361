"""gradcheck: prove a convolutional layer's backward pass right or wrong.

Public names are re-exported here; everything else is private.
"""

from gradcheck._errors import (ConfigurationError, GradcheckError, NonFiniteGradientError,
                               SpecError, UserCodeError)
from gradcheck._lazy import lazy_exports

# the rest is imported on first use: ``gradcheck --help`` or a spec error need none of it
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(("ArgumentReport", "CheckReport", "Diagnosis", "assert_vjp_close",
                     "check_grad", "check_jvp", "check_layer", "check_network", "check_vjp"),
                    "gradcheck.checker"),
    **dict.fromkeys(("conv_backward", "conv_forward"), "gradcheck.ops.conv"),
    **dict.fromkeys(("NumericalDerivative", "numerical_grad", "numerical_jacobian",
                     "numerical_jvp", "numerical_vjp"), "gradcheck.numdiff"),
})

__version__ = "0.1.0"

__all__ = [
    "GradcheckError",
    "ConfigurationError",
    "SpecError",
    "UserCodeError",
    "NonFiniteGradientError",
    "conv_forward",
    "conv_backward",
    "check_vjp",
    "check_jvp",
    "check_grad",
    "assert_vjp_close",
    "check_layer",
    "check_network",
    "CheckReport",
    "ArgumentReport",
    "Diagnosis",
    "numerical_grad",
    "numerical_vjp",
    "numerical_jacobian",
    "numerical_jvp",
    "NumericalDerivative",
    "__version__",
]
