"""Suspects: what is known about ``f``, turned into the claims the diagnosis tests.

The generic causes (sign, scale, layout, missing terms, masks, …) need only the evidence
of the failing argument (:mod:`gradcheck.checker._causes`). The bugs people actually write in a convolution or
an activation do not always leave such a simple fingerprint on the gradient of a
*network's* input: a kernel that was not rotated in layer 2 reaches the input through
layers 1 and 0. So where the checker knows what ``f`` computes, it *recomputes* the
gradients with one known mistake planted (:mod:`gradcheck.checker._mistakes`), using the
library's own correct ops everywhere else, and offers each result as a
:class:`~gradcheck.checker._diagnose.Suspect`:

- :func:`function_suspects` -- a black box ``f``, when it is recognized as a convolution
  or an activation (:mod:`gradcheck.checker._identify`);
- :func:`network_suspects` -- a :class:`~gradcheck.ops.network.Sequential` (or one
  layer): every built-in layer's usual mistakes, and those of every user layer
  (``type = "python"``) recognized as a convolution or an activation, each planted in its
  layer and carried down to every tensor below it.

Both return a :class:`SuspectSource`, the ``suspects(argname, cotangent)`` callable of
:func:`~gradcheck.check_vjp`; the claims are computed on first use and kept.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gradcheck._record import NamedTuple
from gradcheck.checker._diagnose import Suspect

# the mistakes (._mistakes) are imported when they are planted: a check that passes
# plants none

__all__ = ["Planted", "SuspectSource", "function_suspects", "network_suspects"]


class Planted(NamedTuple):
    """One planted mistake: its cause, its message, and the gradient it predicts for each
    argument name it reaches."""

    cause: str
    message: str
    predicted: dict


class SuspectSource:
    """``suspects(argname, cotangent) -> [Suspect, ...]`` from ``plant(cotangent) ->
    [Planted, ...]``, planted once (the checker uses one cotangent per check)."""

    def __init__(self, plant: Callable[[np.ndarray], list]):
        self._plant = plant
        self._found = None

    def __call__(self, argname: str, cotangent) -> list:
        if self._found is None:
            self._found = self._plant(cotangent)
        return [Suspect(p.cause, p.message, np.asarray(p.predicted[argname]))
                for p in self._found if argname in p.predicted]


def function_suspects(args, y, argnames) -> SuspectSource:
    """Suspects for a black-box ``f(*args) = y`` that may be a convolution (or an
    activation of one), or a plain activation."""
    def plant(cotangent):
        from gradcheck.checker._identify import planted, recognize   # only when a check fails

        found = recognize(args, y, activations=True)
        if found is None:
            return []
        return [Planted(cause, f"f computes {found.phrase()}. {message}",
                        {argnames[i]: g for i, g in predicted.items()})
                for cause, message, predicted in planted(found, args, cotangent)]

    return SuspectSource(plant)


# --------------------------------------------------------------------------- networks


def _is_user(layer) -> bool:
    return getattr(layer, "kind", None) == "python"


def _output_errors(net, trace, cotangent, backward) -> list:
    """The correct error at each layer's output, for the check's cotangent."""
    delta = cotangent if net.loss is None else net.loss.vjp(cotangent, trace.output)
    deltas = [None] * len(net.layers)
    for j in reversed(range(len(net.layers))):
        deltas[j] = delta
        delta = backward[j](delta, trace.inputs[j], *trace.params[j].values())[0]
    return deltas


def _builtin_mistakes(net, trace, deltas, backward, li, number=None) -> list:
    """``[(cause, message, wrong input error)]`` of built-in layer ``li``; a mistake that
    changes nothing at this point (a ReLU's derivative taken at its output is the right
    one) is not offered."""
    from gradcheck.checker._mistakes import conv_input_mistakes, layer_mistakes

    layer, x, p = net.layers[li], trace.inputs[li], list(trace.params[li].values())
    if getattr(layer, "kind", None) == "conv":
        variants = conv_input_mistakes(deltas[li], x, p[0], convention=layer.convention,
                                       **layer._options())
    else:
        variants = [(m.cause, m.message, m.backward(deltas[li], x, *p)[0])
                    for m in layer_mistakes(layer)]
    if not variants:
        return []
    right_gx = np.asarray(backward[li](deltas[li], x, *p)[0])
    where = (f"In layer {li if number is None else number} ({layer.name}): "
             if len(net.layers) > 1 or number is not None else "")
    return [(cause, where + message, wrong_gx) for cause, message, wrong_gx in variants
            if not np.array_equal(np.asarray(wrong_gx), right_gx)]


def _user_mistakes(net, trace, deltas, backward, li, number=None) -> list:
    """``[(cause, message, wrong input error)]`` of user layer ``li``, if it is recognized
    as a convolution or an activation (by reproducing its output)."""
    from gradcheck.checker._identify import planted, recognize   # only when a check fails

    layer = net.layers[li]
    args = [np.asarray(trace.inputs[li])] + [np.asarray(v) for v in trace.params[li].values()]
    found = recognize(args, np.asarray(trace.outputs[li]), activations=False)
    if found is None:
        return []
    where = (f"In layer {li if number is None else number} ({layer.name}), which computes "
             f"{found.phrase(of_layer=True)}: ")
    return [(cause, where + message, predicted[0])
            for cause, message, predicted in planted(found, args, deltas[li]) if 0 in predicted]


def network_suspects(net, x, params, *, rename=None, layer_number=None) -> SuspectSource:
    """Suspects for :func:`~gradcheck.check_vjp` on a :class:`Sequential`.

    For each layer with known mistakes (built-in layers first, then recognized user
    layers), the network's gradients are recomputed with that layer's backward replaced
    by the mistaken one and every other layer's by the library's correct one
    (:func:`~gradcheck.checker._mistakes.reference_backward`). ``rename`` maps the
    network's argument names to the check's. ``layer_number`` is the number a network of
    one layer has in a larger one (its messages say "In layer 2", not "In layer 0", when
    the per-layer pass checks layer 2 on its own).
    """
    rename = dict(rename or {})

    def plant(cotangent):
        from gradcheck.checker._mistakes import carry_down, reference_backward

        backward = [reference_backward(layer) for layer in net.layers]
        trace = net.forward(x, params)
        deltas = _output_errors(net, trace, cotangent, backward)
        found = []
        for li in sorted(range(len(net.layers)), key=lambda li: _is_user(net.layers[li])):
            mistakes = _user_mistakes if _is_user(net.layers[li]) else _builtin_mistakes
            for cause, message, wrong_gx in mistakes(net, trace, deltas, backward, li,
                                                     layer_number):
                # the wrong input error of layer li, carried down to the network's input
                predicted = carry_down(net, trace, li, wrong_gx, backward)
                found.append(Planted(cause, message,
                                     {rename.get(k, k): v for k, v in predicted.items()}))
        return found

    return SuspectSource(plant)
