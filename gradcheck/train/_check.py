"""The gradient check scheduled along training: one call of the checker, in one place.

The checked function is the **per-sample loss** of the current batch at the current
weights, ``f(x, *params) -> (N,)``, and its backward is the training's own
(:func:`gradcheck.train._steps.per_sample_vjp`): the checker judges the very code whose
gradients move the weights, for the input and every parameter tensor. Batch items stay
independent, so the checker may perturb several of them at once (the network's
dependency structure is passed along).

What the checker is told of the network is what :func:`gradcheck.check_network` tells
it: each layer's usual mistakes, planted and carried down, as suspects
(:func:`gradcheck.checker._suspects.network_suspects`, so a user layer recognized as a
convolution gets the convolution's causes); and when the check fails, every layer is
checked on its own with the rule training uses for it (:func:`carry_back`), at the
batch's activations and with the errors training's own backward passes down, and the
culprit is named (:mod:`gradcheck.checker._culprit`).
"""

from __future__ import annotations

from dataclasses import field

import numpy as np

from gradcheck._record import frozen
from gradcheck.train._steps import backward, carry_back, forward, per_sample_vjp

__all__ = ["CheckRecord", "check_gradients", "DEFAULT_TIME_BUDGET", "DEFAULT_MODE"]

#: The checker's mode when neither the spec's ``[check] mode`` nor the caller names one:
#: a sample of single elements of every tensor plus random directions over the rest,
#: within the time budget (a check along training must stay cheap and still locate a
#: mismatch; pass ``mode="auto"`` or ``"full"`` for every element of small tensors).
DEFAULT_MODE = "sampled"
#: Seconds that size each tensor's sample (a quarter of it, see
#: :mod:`gradcheck.checker._sample`) and, under ``"auto"``, that a full check of one
#: tensor may be predicted to take (the checker's own default, 60, is made for a single
#: check, not one every few hundred steps).
DEFAULT_TIME_BUDGET = 5.0


@frozen
class CheckRecord:
    """One scheduled check: when, the verdict, how each tensor was checked, the report."""

    step: int
    epoch: int
    when: str                  # "start", "every K steps" or "end"
    passed: bool
    mode: str                  # the mode asked of the checker
    modes: dict                # tensor -> the mode it was checked in ("full", "fast", ...)
    n_kinks: int               # elements found at non-differentiable points (all tensors)
    worst_ratio: float         # max over tensors of |diff| / allowed as judged (> 1 fails)
    elapsed_s: float
    report: object = field(repr=False, compare=False)   # the CheckReport
    #: ``(x, labels, params)`` the check ran at; kept for the last check of a run only
    point: tuple | None = field(default=None, repr=False, compare=False)
    #: tensor -> (elements checked one by one, elements) for the sampled tensors
    sampled: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "when": self.when,
                "passed": self.passed, "mode": self.mode, "modes": dict(self.modes),
                "n_kinks": self.n_kinks,
                "sampled": {k: list(v) for k, v in self.sampled.items()},
                "worst_ratio": self.worst_ratio if self.worst_ratio == self.worst_ratio
                else None,
                "elapsed_s": self.elapsed_s, "report": self.report.to_dict()}

    def summary(self) -> str:
        """One line: the step, the verdict, the mode of every tensor."""
        by_mode: dict = {}
        for name, mode in self.modes.items():
            if name in self.sampled:
                name += " ({} of {})".format(*self.sampled[name])
            by_mode.setdefault(mode, []).append(name)
        how = "; ".join(f"{m}: {', '.join(names)}" for m, names in by_mode.items())
        verdict = "gradients ok" if self.passed else "GRADIENT MISMATCH"
        return (f"check at step {self.step} (epoch {self.epoch}, {self.when}): {verdict} "
                f"[{self.mode} mode -> {how}] worst diff/allowed {self.worst_ratio:.2g}, "
                f"{self.n_kinks} kinks, {self.elapsed_s:.2f} s")


def check_gradients(net, loss, x, params, *, seed, mode, time_budget, budget=None,
                    rtol=None, atol=None, name="train"):
    """Check the training's gradients at ``params`` on the batch ``x`` (labels in ``loss``).

    ``net`` is the :class:`~gradcheck.ops.network.Sequential` (for tensor names and
    dependency structure); ``loss`` the loss bound to this batch's labels.
    """
    from gradcheck import check_vjp
    from gradcheck.checker._culprit import unchecked_layers, with_layers
    from gradcheck.checker._suspects import network_suspects
    from gradcheck.ops.network import Sequential

    layers = net.layers

    def f(x, *flat):
        return loss.per_sample(forward(layers, x, net.unflatten_params(flat))[-1])

    def f_vjp(cotangent, x, *flat):
        return per_sample_vjp(layers, loss, cotangent, x, net.unflatten_params(flat))

    extra = {k: v for k, v in (("rtol", rtol), ("atol", atol), ("budget", budget))
             if v is not None}
    batch_net = Sequential(layers, tuple(np.shape(x)), loss=loss)
    report = check_vjp(f, f_vjp, (x, *net.flatten_params(params)), argnames=net.names,
                       mode=mode, seed=seed, time_budget=time_budget, name=name,
                       patterns={n: (lambda n=n: net.structure(n) or net.pattern(n))
                                 for n in net.names},
                       suspects=network_suspects(batch_net, x, params), **extra)
    if report.passed:
        return with_layers(report, unchecked_layers(layers, True))
    return with_layers(report, _layer_pass(layers, loss, x, params, seed=seed, mode=mode,
                                           time_budget=time_budget, **extra))


def _layer_pass(layers, loss, x, params, *, seed, **options):
    """Every layer on its own, with the rule training uses for it (:func:`carry_back`)."""
    from gradcheck.checker._culprit import PASS_STREAM, check_layers

    a = forward(layers, x, params)
    cotangent = np.random.default_rng([seed, PASS_STREAM]).standard_normal(
        (np.shape(x)[0],)).astype(a[-1].dtype)
    deltas, _ = backward(layers, a, params, loss.vjp(cotangent, a[-1]))

    def rule(layer, names):
        def run(delta, a_in, *values):
            grad_x, grads = carry_back(layer, delta, a_in, dict(zip(names, values)))
            return (grad_x, *(grads[k] for k in names))
        return run

    return check_layers(layers, a[:-1], params, deltas[1:], seed=seed,
                        backwards=[rule(layer, list(p)) for layer, p in zip(layers, params)],
                        **options)


def record(report, *, step, epoch, when, mode, point=None) -> CheckRecord:
    """A :class:`CheckRecord` from the checker's report."""
    # what the verdict measured: at a kink, the distance outside the one-sided limits
    # (|analytic - numeric| there is no error), and a sampled tensor's directions
    ratios = [a.worst_excess for a in report.arguments
              if a.mode != "skipped" and not np.isnan(a.worst_excess)]
    return CheckRecord(
        step=step, epoch=epoch, when=when, passed=bool(report.passed), mode=mode,
        modes={a.name: a.mode for a in report.arguments},
        sampled={a.name: (int(a.n_checked), int(a.n_elements)) for a in report.arguments
                 if a.mode == "sampled"},
        n_kinks=sum(int(a.n_nondifferentiable) for a in report.arguments),
        worst_ratio=max(ratios) if ratios else float("nan"),
        elapsed_s=float(report.elapsed_s), report=report, point=point)
