"""The built-in spec that ``gradcheck check`` runs when given no file.

A small CNN in the seed's spirit: two convolutions, each followed by an activation (the
seed's :math:`z^l = w^l * a^{l-1} + b^l`, :math:`a^l = \\sigma(z^l)`), then a dense layer
and a loss. It is the same network as ``specs/small_cnn.toml`` and checks in well under a
second.
"""

DEFAULT_DOCUMENT = {
    "name": "default",
    "description": "small CNN: conv 3x3 -> sigmoid -> conv 2x2 -> tanh -> flatten -> dense "
                   "-> softmax cross-entropy",
    "input": {"shape": [2, 1, 6, 6], "dtype": "float64"},
    "layer": [
        {"type": "conv", "out_channels": 2, "kernel": 3},
        {"type": "sigmoid"},
        {"type": "conv", "out_channels": 2, "kernel": 2},
        {"type": "tanh"},
        {"type": "flatten"},
        {"type": "dense", "out_features": 3},
    ],
    "loss": {"type": "softmax_cross_entropy"},
    "check": {"seed": 0},
}

#: What messages call the built-in spec.
DEFAULT_SOURCE = "<built-in default>"
