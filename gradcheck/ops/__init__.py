"""Analytic layers in NumPy: convolution and the layers around it."""

from gradcheck.ops.activations import ACTIVATIONS, ActivationSpec, get_activation
from gradcheck.ops.conv import conv_backward, conv_forward
from gradcheck.ops.layers import (
    Activation,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    MaxPool,
    layer_from_dict,
)
from gradcheck.ops.losses import LOSSES, Loss, get_loss
from gradcheck.ops.network import Sequential

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
