r"""Losses that turn a network's output into the scalar C the seed differentiates.

A table, like the activations: each :class:`LossDefinition` gives the per-sample loss and
the gradient of the total, and what seeded data it needs (weights, targets).
:func:`get_loss` binds a table entry to an output shape, a seed and a dtype. (A spec
file's ``[loss]`` table, which names an entry and a seed, is
:class:`gradcheck.spec.LossSpec`.)

============================ ============================================================
``weighted_sum``             :math:`C = \sum R \odot y` with ``R`` a fixed standard-normal
                             array of ``y``'s shape; :math:`\partial C/\partial y = R`.
                             This is the checker's scalarization: ``grad`` is exactly the
                             cotangent.
``mse``                      :math:`C = \operatorname{mean}((y - t)^2)` over *all*
                             elements (PyTorch's ``reduction="mean"``), ``t`` a seeded
                             standard-normal target; :math:`\partial C/\partial y =
                             2(y - t)/\text{size}`.
``softmax_cross_entropy``    logits over axis 1 of ``(N, K, *spatial)``, seeded integer
                             targets ``(N, *spatial)``, mean over the ``N * prod(spatial)``
                             positions (PyTorch's ``cross_entropy`` default). Per
                             position :math:`-\log\operatorname{softmax}(y)_t =
                             m + \operatorname{log1p}(\sum_{k \ne k^*} e^{d_k - m})`,
                             :math:`d_k = y_k - y_t`, :math:`m = \max_k d_k = d_{k^*}`:
                             no exponential overflows, and no cancellation when the
                             target wins by a wide margin (``log(sum(exp))`` minus the
                             target logit would leave only rounding of order ``eps``
                             there); :math:`\partial C/\partial y =
                             (\operatorname{softmax}(y) - \operatorname{onehot}(t)) /
                             (N \cdot \text{positions})` with :math:`p_t - 1` taken as
                             :math:`-\sum_{k \ne t} p_k`.
============================ ============================================================

``per_sample(y)`` has shape ``(N,)``, entry ``n`` depends on ``y[n]`` only, and
``value(y) == per_sample(y).sum()``. Everything stays in ``y``'s dtype (the seeded data is
cast to it) and works for complex ``y`` (``mse`` squares rather than taking ``|.|^2``;
the log-sum-exp shift uses the real part), so complex step runs through.
"""

from __future__ import annotations

from dataclasses import field
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from gradcheck._errors import ConfigurationError
from gradcheck._precision import is_real_float
from gradcheck._record import NamedTuple, frozen
from gradcheck._validate import is_int
from gradcheck.ops._geometry import as_float_array

__all__ = ["LossDefinition", "Loss", "LOSSES", "get_loss"]


class LossDefinition(NamedTuple):
    """One row of the loss table: seeded data, per-sample loss, gradient of the total."""

    name: str
    make_data: Callable[[tuple, np.random.Generator], dict]
    per_sample: Callable[[np.ndarray, dict], np.ndarray]
    grad: Callable[[np.ndarray, dict], np.ndarray]
    min_ndim: int
    doc: str


def _rows(a: np.ndarray) -> np.ndarray:
    """Sum everything but the batch axis."""
    return a.reshape(a.shape[0], -1).sum(axis=1)


# -- weighted_sum


def _weights_data(shape, rng):
    return {"weights": rng.standard_normal(shape)}


def _weighted_per_sample(y, d):
    return _rows(d["weights"] * y)


def _weighted_grad(y, d):
    return np.array(np.broadcast_to(d["weights"], y.shape), dtype=np.result_type(y, d["weights"]))


# -- mse


def _target_data(shape, rng):
    return {"target": rng.standard_normal(shape)}


def _mse_per_sample(y, d):
    r = y - d["target"]
    return _rows(r * r) / y.size


def _mse_grad(y, d):
    return 2 * (y - d["target"]) / y.size


# -- softmax cross-entropy


def _class_data(shape, rng):
    return {"targets": rng.integers(0, shape[1], size=(shape[0], *shape[2:]))}


def _log_softmax(y):
    m = y.real.max(axis=1, keepdims=True)  # a constant shift: exact for any m
    shifted = y - m
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _ce_per_sample(y, d):
    # -log softmax(y)_t = log sum_k exp(d_k), d_k = y_k - y_t, written as
    # m + log1p(expm1(d_top - m) + sum_{k != top} exp(d_k - m)), m = max_k d_k >= 0: both
    # terms are >= 0, so a confident right answer (m = 0, the rest tiny) keeps its relative
    # accuracy instead of being log(1 + tiny) rounded at 1
    t = d["targets"][:, None]
    diff = y - np.take_along_axis(y, t, axis=1)
    m = diff.real.max(axis=1, keepdims=True)       # a constant shift: exact for any m
    top = diff.real.argmax(axis=1)[:, None]
    terms = np.exp(diff - m)
    np.put_along_axis(terms, top, np.expm1(np.take_along_axis(diff, top, axis=1) - m), axis=1)
    per_position = m[:, 0] + np.log1p(terms.sum(axis=1))
    return _rows(per_position) / (y.size // y.shape[1])


def _ce_grad(y, d):
    # softmax(y) - onehot(t), with p_t - 1 taken as -sum_{k != t} p_k (no cancellation
    # when p_t is close to 1)
    t = d["targets"][:, None]
    g = np.exp(_log_softmax(y))
    np.put_along_axis(g, t, 0, axis=1)
    np.put_along_axis(g, t, -g.sum(axis=1, keepdims=True), axis=1)
    return g / (y.size // y.shape[1])


#: The loss table, keyed by name.
LOSSES: Mapping[str, LossDefinition] = MappingProxyType({
    "weighted_sum": LossDefinition("weighted_sum", _weights_data, _weighted_per_sample,
                                   _weighted_grad, 1, "C = sum(R * y), R ~ N(0, 1) seeded"),
    "mse": LossDefinition("mse", _target_data, _mse_per_sample, _mse_grad, 1,
                          "C = mean((y - t)^2) over all elements, t ~ N(0, 1) seeded"),
    "softmax_cross_entropy": LossDefinition(
        "softmax_cross_entropy", _class_data, _ce_per_sample, _ce_grad, 2,
        "C = mean over positions of -log softmax(y)[target], classes on axis 1"),
})


@frozen(eq=False)
class Loss:
    """A loss bound to an output shape, a seed and a dtype (see :func:`get_loss`)."""

    definition: LossDefinition
    output_shape: tuple
    seed: int
    dtype: np.dtype
    data: Mapping[str, np.ndarray] = field(repr=False)

    @property
    def name(self) -> str:
        return self.definition.name

    def __repr__(self) -> str:
        return (f"Loss({self.name!r}, output_shape={self.output_shape}, seed={self.seed}, "
                f"dtype={self.dtype.name})")

    @property
    def weights(self) -> np.ndarray:
        """``R`` of ``weighted_sum``."""
        return self._datum("weights")

    @property
    def target(self) -> np.ndarray:
        """``t`` of ``mse``."""
        return self._datum("target")

    @property
    def targets(self) -> np.ndarray:
        """Integer class targets of ``softmax_cross_entropy``, shape ``(N, *spatial)``."""
        return self._datum("targets")

    def _datum(self, key):
        if key not in self.data:
            raise AttributeError(f"loss {self.name!r} has no {key}")
        return self.data[key]

    def _check(self, y) -> tuple[np.ndarray, dict]:
        y = as_float_array(y, "y")
        if y.shape != self.output_shape:
            raise ConfigurationError(
                f"loss {self.name!r}: y must have shape {self.output_shape}; got shape {y.shape}")
        data = {k: (v if v.dtype.kind == "i" else v.astype(y.real.dtype, copy=False))
                for k, v in self.data.items()}
        return y, data

    def per_sample(self, y) -> np.ndarray:
        """The loss of each batch item, shape ``(N,)``; item ``n`` depends on ``y[n]`` only."""
        y, data = self._check(y)
        return self.definition.per_sample(y, data)

    def value(self, y):
        """``C = per_sample(y).sum()`` as a Python float (complex for complex ``y``)."""
        total = self.per_sample(y).sum()
        return complex(total) if np.iscomplexobj(total) else float(total)

    def grad(self, y) -> np.ndarray:
        """:math:`\\partial C/\\partial y`, shaped like ``y``."""
        y, data = self._check(y)
        return self.definition.grad(y, data)

    def vjp(self, cotangent, y) -> np.ndarray:
        """Gradient of ``sum(cotangent * per_sample(y))``: row ``n`` of ``grad`` times ``cotangent[n]``."""
        cot = as_float_array(cotangent, "cotangent")
        if cot.shape != (self.output_shape[0],):
            raise ConfigurationError(
                f"loss {self.name!r}: cotangent must have shape ({self.output_shape[0]},) "
                f"(one entry per batch item); got shape {cot.shape}")
        g = self.grad(y)
        return g * cot.reshape((-1,) + (1,) * (g.ndim - 1))

    def to_dict(self) -> dict:
        return {"type": self.name, "seed": self.seed}


def get_loss(name: str, output_shape, *, seed: int = 0, dtype=np.float64) -> Loss:
    """Bind the loss ``name`` to a network output shape, with seeded data.

    Parameters
    ----------
    name : {"weighted_sum", "mse", "softmax_cross_entropy"}
    output_shape : tuple of int
        Shape of ``y``, batch first; ``softmax_cross_entropy`` needs ``(N, K, *spatial)``.
    seed : int
        Seed of ``np.random.default_rng`` drawing the weights or targets.
    dtype : float16, bfloat16, float32 or float64
        dtype of the stored data (it is cast to ``y``'s dtype on use).

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck.ops.losses import get_loss
    >>> loss = get_loss("weighted_sum", (2, 3), seed=0)
    >>> y = np.ones((2, 3))
    >>> bool(np.all(loss.grad(y) == loss.weights))      # dC/dy = R
    True
    >>> bool(np.isclose(loss.value(y), loss.weights.sum()))
    True
    >>> ce = get_loss("softmax_cross_entropy", (1, 2))
    >>> round(ce.value(np.array([[1000.0, 1000.0]])), 6)   # log 2, no overflow
    0.693147
    """
    if not isinstance(name, str) or name not in LOSSES:
        import difflib       # only for a misspelt name

        close = difflib.get_close_matches(str(name), list(LOSSES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigurationError(
            f"loss name {name!r} is not known; {hint}valid names: {', '.join(LOSSES)}")
    definition = LOSSES[name]
    shape = tuple(output_shape) if isinstance(output_shape, (tuple, list)) else None
    if shape is None or not shape or not all(is_int(n) and n >= 1 for n in shape):
        raise ConfigurationError(
            f"loss {name!r}: output_shape must be a non-empty tuple of positive ints "
            f"(batch first); got {output_shape!r}")
    shape = tuple(int(n) for n in shape)
    if len(shape) < definition.min_ndim:
        raise ConfigurationError(
            f"loss {name!r}: output_shape must be (N, classes, *spatial) with classes on "
            f"axis 1; got {shape}")
    if not is_int(seed) or seed < 0:
        raise ConfigurationError(f"loss {name!r}: seed must be an int >= 0; got {seed!r}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or not is_real_float(dt):
        raise ConfigurationError(
            f"loss {name!r}: dtype must be float16, bfloat16, float32 or float64; got "
            f"{dtype!r}")
    raw = definition.make_data(shape, np.random.default_rng(seed))
    data = {k: (v if v.dtype.kind == "i" else v.astype(dt)) for k, v in raw.items()}
    for v in data.values():
        v.setflags(write=False)
    return Loss(definition, shape, int(seed), dt, MappingProxyType(data))
