"""Analytic layers in NumPy: convolution and the layers around it."""

from gradcheck.ops.conv import conv_backward, conv_forward

__all__ = ["conv_forward", "conv_backward"]
