r"""The culprit pass: which layer of a failing network has the wrong backward.

A network check judges tensors -- the input and every parameter -- not layers. A wrong
backward in layer ``l`` passes a wrong error down to every layer below it, so the failing
rows are those of the layers *below* the culprit (``input``, ``layer0.conv.w`` …) while
the culprit's own parameters may pass: conv → a buggy batch norm → relu fails on the
conv's tensors, and the built-in conv looks wrong.

So when a network check fails, every layer is checked **on its own**
(:func:`check_layers`):

- ``f`` is the layer's forward with its own parameters, at the **activation the forward
  pass gave it** (its input in the network's trace, the seed's :math:`a^{l-1}`);
- ``f_vjp`` is the layer's own backward (for training, the rule training uses,
  :func:`gradcheck.train._steps.carry_back`);
- the cotangent is the **error that reaches it**: a seeded standard normal cotangent at
  the network's output (:data:`PASS_STREAM`, its own stream, apart from the data's and
  the network check's), carried back by the network's own backward to the layer's
  output, :math:`\partial C/\partial\,\text{outputs}[l]`. Where that error is zero (a
  ReLU dead for every input, a layer above that returned no gradient), a check with it
  would prove nothing, so the layer gets a seeded random cotangent instead, and its
  result says so.

Each layer's check is :func:`~gradcheck.check_layer`'s (its dependency pattern, its
usual mistakes as suspects), with the network check's options (mode, budget,
tolerance floor). A layer whose own check fails is a **culprit**. A culprit's bug is
found at its own point, with its own tensors named (``x``, ``gamma`` …), so its
diagnosis speaks of the layer, not of what the bug did further down.

A network that passes may skip the pass (the default, ``per_layer="on_failure"`` of
:func:`~gradcheck.check_network`): each layer's backward was then verified as part of the
network, and its :class:`~gradcheck.checker._layer_report.LayerResult` says so
(``alone`` False). ``per_layer="always"`` checks every layer on its own anyway. The
network's verdict is its tensors' verdict, and a layer that fails on its own fails it too
(its bug is there even if the network's cotangent did not show it); a layer that could
not be checked on its own (``passed`` None) says why and changes nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gradcheck._errors import GradcheckError, UserCodeError
from gradcheck.checker._layer_report import LayerResult

__all__ = ["check_layers", "network_layer_pass", "unchecked_layers", "single_layer",
           "with_layers",
           "layer_identity", "PASS_STREAM", "PER_LAYER", "PASSED_ON"]

#: ``default_rng([seed, PASS_STREAM])`` draws the pass's cotangent at the network output;
#: ``default_rng([seed, PASS_STREAM, l])`` layer ``l``'s when the error reaching it is zero.
PASS_STREAM = 3
#: When the per-layer pass runs: only when the network fails, or always.
PER_LAYER = ("on_failure", "always")
#: The network check's options a layer's own check takes over.
PASSED_ON = ("mode", "budget", "time_budget", "over_budget", "directions", "method",
             "atol", "rtol", "memory")


def layer_identity(layer) -> tuple:
    """``(type, name, target)`` of a layer: its spec type (``"conv"``, ``"relu"``,
    ``"python"`` …), a name for people (a python layer's target), its target or None."""
    try:
        kind = layer.to_dict().get("type", layer.kind)
    except Exception:   # a layer from elsewhere that cannot describe itself
        kind = getattr(layer, "kind", type(layer).__name__)
    target = getattr(layer, "target", None) if kind == "python" else None
    return kind, str(target or getattr(layer, "name", kind)), target


def _cotangent(delta, out_shape, dtype, seed, index):
    """The error reaching a layer, or a seeded random one where it is zero."""
    if delta is not None and np.any(np.asarray(delta) != 0):
        return np.asarray(delta), ""
    rng = np.random.default_rng([seed, PASS_STREAM, index])
    why = ("the error reaching it is zero (a layer above gave none, or every path is "
           "switched off), so it was checked with a seeded random cotangent instead")
    return rng.standard_normal(out_shape).astype(dtype), why


def check_layers(layers, inputs, params, deltas, *, backwards=None, seed=0,
                 **options) -> tuple:
    """Every layer checked on its own: ``layers[l]`` at ``inputs[l]`` with ``params[l]``
    (a dict) and cotangent ``deltas[l]`` (the error at its output); ``backwards[l]``
    replaces ``layers[l].backward`` when given. Returns one :class:`LayerResult` each."""
    from gradcheck.checker._layers import check_alone

    options = {k: v for k, v in options.items() if k in PASSED_ON}
    results = []
    for i, layer in enumerate(layers):
        kind, name, target = layer_identity(layer)
        x = np.asarray(inputs[i])
        y_shape = np.shape(deltas[i]) if deltas[i] is not None else None
        if y_shape is None:
            y_shape = np.shape(layer.forward(x, *params[i].values()))
        cotangent, why = _cotangent(deltas[i], y_shape, x.dtype, seed, i)
        backward = None if backwards is None else backwards[i]
        try:
            report = check_alone(layer, x, dict(params[i]), backward=backward, seed=seed,
                                 cotangent=cotangent, name=f"layer {i} ({name})", index=i,
                                 **options)
        except UserCodeError as exc:   # the layer misbehaved on its own: it is wrong
            results.append(LayerResult(i, kind, name, target, False, True, None,
                                       f"its own check stopped: {exc}"))
            continue
        except GradcheckError as exc:
            results.append(LayerResult(i, kind, name, target, None, True, None,
                                       " ".join(str(exc).split())))
            continue
        results.append(LayerResult(i, kind, name, target, bool(report.passed), True, report,
                                   why))
    return tuple(results)


def network_layer_pass(net, x, params, *, seed=0, **options) -> tuple:
    """:func:`check_layers` for a :class:`~gradcheck.ops.network.Sequential` at ``x``,
    ``params``: the activations of its forward pass, the errors of its own backward."""
    trace = net.forward(x, params)
    y = trace.output
    out_shape = y.shape if net.loss is None else (y.shape[0],)
    given = options.get("cotangent")
    if given is not None and np.shape(given) == out_shape:
        cotangent = np.asarray(given, np.float64)
    else:
        cotangent = np.random.default_rng([seed, PASS_STREAM]).standard_normal(out_shape)
    cotangent = cotangent.astype(y.dtype)
    grad_y = cotangent if net.loss is None else net.loss.vjp(cotangent, y)
    deltas = net.backward(trace, grad_y).deltas
    return check_layers(net.layers, trace.inputs, trace.params, deltas, seed=seed, **options)


def unchecked_layers(layers, passed: bool) -> tuple:
    """The layers of a network whose per-layer pass was skipped (it passed)."""
    out = []
    for i, layer in enumerate(layers):
        kind, name, target = layer_identity(layer)
        out.append(LayerResult(i, kind, name, target, True if passed else None, False,
                               None, "not checked on its own: the network's check passed"
                               if passed else "not checked on its own"))
    return tuple(out)


def single_layer(layer, passed: bool) -> tuple:
    """The result of a network that is one layer (and no loss, or a weighted sum): the
    network's check was that layer's own, so it is not checked again."""
    kind, name, target = layer_identity(layer)
    return (LayerResult(0, kind, name, target, bool(passed), True, None,
                        "the network is this one layer: its check is the layer's own"),)


def with_layers(report, layers):
    """``report`` carrying ``layers``. A layer whose backward is wrong on its own fails the
    report even when the network's tensors passed (its bug did not show at the network's
    cotangent, but it is there)."""
    layers = tuple(layers)
    passed = bool(report.passed) and not any(r.passed is False for r in layers)
    return dataclasses.replace(report, layers=layers, passed=passed)
