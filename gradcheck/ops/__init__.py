"""Analytic layers in NumPy: convolution and the layers around it."""

from gradcheck._lazy import lazy_exports

# each name's module is imported on first use (a network of convolutions and activations
# needs neither the pooling nor the dense layers)
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(("ACTIVATIONS", "ActivationSpec", "get_activation"),
                    "gradcheck.ops.activations"),
    **dict.fromkeys(("conv_backward", "conv_forward"), "gradcheck.ops.conv"),
    **dict.fromkeys(("Activation", "AvgPool", "Conv", "Dense", "Flatten", "MaxPool",
                     "layer_from_dict"), "gradcheck.ops.layers"),
    **dict.fromkeys(("LOSSES", "Loss", "get_loss"), "gradcheck.ops.losses"),
    "Sequential": "gradcheck.ops.network",
})

__all__ = [
    "conv_forward",
    "conv_backward",
    "ActivationSpec",
    "ACTIVATIONS",
    "get_activation",
    "Conv",
    "Activation",
    "MaxPool",
    "AvgPool",
    "Flatten",
    "Dense",
    "layer_from_dict",
    "LOSSES",
    "Loss",
    "get_loss",
    "Sequential",
]
