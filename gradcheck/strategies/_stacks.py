"""Layer stacks and spec documents: whole networks, valid layer by layer.

A stack is drawn one layer at a time, each from the kinds that can take the current shape:
an ``(N, C, *spatial)`` tensor may go through ``conv`` (drawn by :func:`conv_configs`' own
drawing with the input shape fixed), an activation, ``maxpool``/``avgpool`` (a kernel that
fits, padding at most half of it) or ``flatten``; an ``(N, features)`` tensor through an
activation or ``dense``. Shapes are followed with the layers' own ``output_shape``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from gradcheck._errors import ConfigurationError
from gradcheck._record import NamedTuple
from gradcheck.strategies._arrays import activations as activation_strategy
from gradcheck.strategies._conv import CONVENTIONS, PADDINGS, conv_bounds, draw_conv
from gradcheck.strategies._validate import (
    DTYPES,
    check_int,
    check_optional_shape,
    check_order,
    check_strategy,
    check_subset,
)

__all__ = ["LayerStack", "layer_stacks", "spec_documents", "specs", "LAYER_KINDS", "LOSSES",
           "MODES"]

LAYER_KINDS = ("conv", "activation", "maxpool", "avgpool", "flatten", "dense")
_SPATIAL_KINDS = ("conv", "activation", "maxpool", "avgpool", "flatten")
_FLAT_KINDS = ("activation", "dense")
#: Losses a drawn spec may have; None is "no [loss] table".
LOSSES = (None, "weighted_sum", "mse", "softmax_cross_entropy")
MODES = ("full", "sampled", "fast", "auto")


class LayerStack(NamedTuple):
    """An input shape and layer tables (``to_dict()`` forms), with the shapes between.

    ``shapes[0]`` is the input shape and ``shapes[i + 1]`` the output of ``layers[i]``.
    """

    input_shape: tuple
    layers: tuple
    shapes: tuple

    def network(self, *, loss=None):
        """The :class:`~gradcheck.ops.network.Sequential` of this stack."""
        from gradcheck.ops.network import Sequential

        return Sequential([dict(layer) for layer in self.layers], self.input_shape, loss=loss)

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "layers": [dict(l) for l in self.layers],
                "shapes": [list(s) for s in self.shapes]}


def _layer_object(layer: dict):
    from gradcheck.ops.layers import layer_from_dict

    return layer_from_dict(layer)


def _draw_pool(draw, kind, shape, b):
    nd = len(shape) - 2
    kernel = tuple(draw(st.integers(1, min(b["max_kernel"], n))) for n in shape[2:])
    padding = tuple(draw(st.integers(0, min(k // 2, b["max_padding"]))) for k in kernel)
    one_int = nd == 1 and draw(st.booleans())
    layer = {"type": kind, "kernel": kernel[0] if one_int else list(kernel),
             "padding": padding[0] if one_int else list(padding)}
    if draw(st.booleans()):
        layer["stride"] = [draw(st.integers(1, b["max_stride"])) for _ in range(nd)]
    return layer


def layer_stacks(*, min_layers: int = 1, max_layers: int = 4, min_dims: int = 0,
                 max_dims: int = 2, max_batch: int = 2, max_channels: int = 3,
                 max_side: int = 6, max_features: int = 4, max_size: int = 128,
                 kinds=LAYER_KINDS, activations=None, input_shape=None
                 ) -> st.SearchStrategy[LayerStack]:
    r"""Stacks of built-in layers that fit together, with small tensors throughout.

    Parameters
    ----------
    min_layers, max_layers : int
        Number of layers.
    min_dims, max_dims : int
        Spatial rank of the input, 0 (an ``(N, features)`` input) to 3.
    max_batch, max_channels, max_side, max_features : int
        Batch, channels (conv inputs and outputs), input spatial size, features (dense
        outputs and flat inputs).
    max_size : int
        Largest number of elements of the input, of a conv's kernel and of a conv's
        output; at least ``max(max_batch, max_channels) * max_channels``.
    kinds : sequence of str
        Layer kinds to use, from :data:`LAYER_KINDS`. Must be able to take both tensor
        forms that can occur: a spatial one (any of conv, activation, maxpool, avgpool,
        flatten) unless ``max_dims`` is 0, and a flat one (activation or dense) if
        ``min_dims`` is 0 or flatten is among them.
    activations : SearchStrategy of ActivationSpec, optional
        Defaults to :func:`~gradcheck.strategies.activations`.
    input_shape : tuple of int, optional
        Fix the input shape (2 to 5 positive ints); the rank, batch, channel and side
        bounds then apply to the layers only.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from gradcheck import check_network
    >>> from gradcheck.strategies import layer_stacks
    >>> @settings(max_examples=5, deadline=None, database=None)
    ... @given(layer_stacks(max_layers=3, max_size=64))
    ... def test_networks(stack):
    ...     net = stack.network(loss="weighted_sum")
    ...     assert net.output_shape == stack.shapes[-1]
    ...     assert check_network(net).passed
    >>> test_networks()
    """
    min_layers = check_int(min_layers, "min_layers", minimum=1)
    max_layers = check_int(max_layers, "max_layers", minimum=1)
    check_order("min_layers", min_layers, "max_layers", max_layers)
    min_dims = check_int(min_dims, "min_dims", minimum=0, maximum=3)
    max_dims = check_int(max_dims, "max_dims", minimum=0, maximum=3)
    check_order("min_dims", min_dims, "max_dims", max_dims)
    max_batch = check_int(max_batch, "max_batch", minimum=1)
    max_channels = check_int(max_channels, "max_channels", minimum=1)
    max_side = check_int(max_side, "max_side", minimum=1)
    max_features = check_int(max_features, "max_features", minimum=1)
    kinds = check_subset(kinds, "kinds", LAYER_KINDS)
    activations = check_strategy(
        activations, "activations", default=activation_strategy,
        of="ActivationSpec such as gradcheck.strategies.activations()")
    fixed = check_optional_shape(input_shape, "input_shape", min_ndim=2, max_ndim=5,
                                 what="(N, C, *spatial) / (N, features)")
    if fixed is not None:
        min_dims = max_dims = len(fixed) - 2
    spatial_ok = any(k in kinds for k in _SPATIAL_KINDS)
    flat_ok = any(k in kinds for k in _FLAT_KINDS)
    if max_dims >= 1 and not spatial_ok:
        raise ConfigurationError(
            f"kinds={list(kinds)!r} has no layer for a spatial input (N, C, *spatial); add "
            f"one of {list(_SPATIAL_KINDS)} or use max_dims=0")
    if (min_dims == 0 or "flatten" in kinds) and not flat_ok:
        raise ConfigurationError(
            f"kinds={list(kinds)!r} has no layer for a flat input (N, features), which "
            f"{'min_dims=0' if min_dims == 0 else 'flatten'} produces; add 'activation' or "
            f"'dense'")
    conv = conv_bounds(min_dims=1, max_dims=3, max_batch=max_batch, max_channels=max_channels,
                       max_side=max_side, max_size=max_size, max_padding=1,
                       paddings=PADDINGS, conventions=CONVENTIONS)
    pool = {"max_kernel": 3, "max_padding": 1, "max_stride": 2}

    @st.composite
    def stacks(draw):
        if fixed is not None:
            shape = fixed
        else:
            nd = draw(st.integers(min_dims, max_dims))
            batch = draw(st.integers(1, max_batch))
            if nd == 0:
                shape = (batch, draw(st.integers(1, max_features)))
            else:
                c = draw(st.integers(1, max_channels))
                side = max(1, min(max_side, int((max_size // (batch * c)) ** (1.0 / nd))))
                while batch * c * side ** nd > max_size and side > 1:
                    side -= 1
                shape = (batch, c, *(draw(st.integers(1, side)) for _ in range(nd)))
        shapes, layers = [shape], []
        for _ in range(draw(st.integers(min_layers, max_layers))):
            spatial = len(shape) >= 3
            kind = draw(st.sampled_from([k for k in kinds
                                         if k in (_SPATIAL_KINDS if spatial else _FLAT_KINDS)]))
            if kind == "conv":
                layer = draw_conv(draw, conv, shape).layer_dict()
            elif kind == "activation":
                layer = draw(activations).to_dict()
            elif kind in ("maxpool", "avgpool"):
                layer = _draw_pool(draw, kind, shape, pool)
            elif kind == "flatten":
                layer = {"type": "flatten"}
            else:
                layer = {"type": "dense", "out_features": draw(st.integers(1, max_features)),
                         "bias": draw(st.booleans())}
            shape = tuple(_layer_object(layer).output_shape(shape))
            layers.append(layer)
            shapes.append(shape)
        return LayerStack(shapes[0], tuple(layers), tuple(shapes))

    return stacks()


def spec_documents(*, stacks=None, dtypes=DTYPES, losses=LOSSES, modes=("full",),
                   max_seed: int = 2**16) -> st.SearchStrategy[dict]:
    r"""Spec documents (the ``gradcheck check`` format) as dicts, ready for ``parse_spec``.

    Each document has an ``[input]`` (shape, dtype, distribution, scale, seed), the layers
    of a drawn :class:`LayerStack`, a loss that fits the output (or none) and a
    ``[check]`` table (seed and mode). ``gradcheck.spec.parse_spec(doc)`` accepts every one,
    and the parsed spec survives ``loads_spec(spec.to_toml())``.

    Parameters
    ----------
    stacks : SearchStrategy of LayerStack, optional
        Defaults to :func:`layer_stacks` with its defaults.
    dtypes : sequence of str
        From ``("float64", "float32")``.
    losses : sequence
        From ``(None, "weighted_sum", "mse", "softmax_cross_entropy")``; a loss that does
        not fit the network's output (softmax cross-entropy needs ``(N, classes, ...)``)
        is not drawn, and if none fits the document has no loss.
    modes : sequence of str
        Checker modes, from ``("full", "sampled", "fast", "auto")``.
    max_seed : int
        Seeds are drawn from ``[0, max_seed]``.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from gradcheck.spec import loads_spec, parse_spec
    >>> from gradcheck.strategies import spec_documents
    >>> @settings(max_examples=10, deadline=None, database=None)
    ... @given(spec_documents())
    ... def test_round_trip(doc):
    ...     spec = parse_spec(doc)
    ...     assert loads_spec(spec.to_toml()) == spec
    >>> test_round_trip()
    """
    stacks = check_strategy(stacks, "stacks", of="LayerStack such as layer_stacks()",
                            default=layer_stacks)
    dtypes = check_subset(dtypes, "dtypes", DTYPES)
    losses = check_subset(losses, "losses", LOSSES)
    modes = check_subset(modes, "modes", MODES)
    max_seed = check_int(max_seed, "max_seed", minimum=0)

    @st.composite
    def documents(draw):
        stack = draw(stacks)
        if not isinstance(stack, LayerStack):
            raise ConfigurationError(f"stacks must draw LayerStack values; it drew {stack!r}")
        out = stack.shapes[-1]
        fitting = [l for l in losses if l != "softmax_cross_entropy" or len(out) >= 2]
        loss = draw(st.sampled_from(fitting)) if fitting else None
        doc = {"input": {"shape": list(stack.input_shape),
                         "dtype": draw(st.sampled_from(dtypes)),
                         "distribution": draw(st.sampled_from(("normal", "uniform"))),
                         "scale": draw(st.sampled_from((1.0, 0.5, 2.0))),
                         "seed": draw(st.integers(0, max_seed))},
               "layer": [dict(layer) for layer in stack.layers]}
        if loss is not None:
            doc["loss"] = {"type": loss}
        doc["check"] = {"seed": draw(st.integers(0, max_seed)),
                        "mode": draw(st.sampled_from(modes))}
        return doc

    return documents()


def specs(**options) -> st.SearchStrategy:
    """Parsed :class:`~gradcheck.spec.Spec` objects: :func:`spec_documents` through ``parse_spec``.

    Takes the options of :func:`spec_documents`.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from gradcheck.strategies import specs
    >>> @settings(max_examples=5, deadline=None, database=None)
    ... @given(specs(dtypes=["float32"]))
    ... def test_dtype(spec):
    ...     assert spec.input.dtype == "float32"
    >>> test_dtype()
    """
    from gradcheck.spec import parse_spec

    return spec_documents(**options).map(lambda doc: parse_spec(doc, source="<drawn spec>"))
