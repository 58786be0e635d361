"""The training spec shipped inside the package (``gradcheck/train/digits_cnn.toml``)."""

from __future__ import annotations

__all__ = ["default_train_spec", "DEFAULT_TRAIN_SOURCE"]

#: What messages call the shipped spec.
DEFAULT_TRAIN_SOURCE = "<built-in training spec>"


def default_train_spec():
    """The small CNN ``gradcheck train`` trains when given no spec (8x8 digits, batch 32).

    Examples
    --------
    >>> from gradcheck.train import default_train_spec
    >>> spec = default_train_spec()
    >>> [layer.type for layer in spec.layers], spec.input.shape
    (['conv', 'relu', 'maxpool', 'flatten', 'dense'], (32, 1, 8, 8))
    """
    from importlib.resources import files

    from gradcheck.spec import loads_spec

    text = files("gradcheck.train").joinpath("digits_cnn.toml").read_text(encoding="utf-8")
    spec = loads_spec(text, format="toml", source=DEFAULT_TRAIN_SOURCE)
    return spec
