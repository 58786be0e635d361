"""The training loop: mini-batches through the five steps, checked as it goes."""

from __future__ import annotations

import dataclasses
import math
import time
from types import MappingProxyType

import numpy as np

from gradcheck._errors import GradcheckError
from gradcheck.spec._values import Ctx
from gradcheck.train._check import check_gradients, record
from gradcheck.train._data import load_data
from gradcheck.train._render import header
from gradcheck.train._result import TrainResult
from gradcheck.train._setup import load_spec, network, prepare_out, settings, validate
from gradcheck.train._steps import backprop, forward, sgd_momentum

__all__ = ["train"]


def _batch_loss(template, labels):
    """The network's softmax cross-entropy with this batch's labels as its targets."""
    return dataclasses.replace(template, data=MappingProxyType({"targets": labels}))


def _accuracy(logits, labels) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def _evaluate(layers, params, x, y, batch_size) -> float:
    hits = 0
    for i in range(0, len(y), batch_size):
        logits = forward(layers, x[i:i + batch_size], params)[-1]
        hits += int(np.sum(np.argmax(logits, axis=1) == y[i:i + batch_size]))
    return hits / len(y)


def _require_finite(step, learning_rate, loss, grads, params):
    what = ("the loss" if not math.isfinite(loss) else
            "a gradient" if not all(np.all(np.isfinite(g)) for p in grads for g in p.values())
            else "a weight after the update"
            if not all(np.all(np.isfinite(v)) for p in params for v in p.values()) else None)
    if what is not None:
        raise GradcheckError(f"training diverged at step {step}: {what} is not finite; lower "
                             f"the learning rate (train.learning_rate = {learning_rate:g})")


def _bar(epoch, epochs, step, total, loss, acc, n_checks) -> str:
    width = 20
    done = int(width * step / max(total, 1))
    return (f"epoch {epoch + 1}/{epochs} [{'#' * done}{'.' * (width - done)}] step "
            f"{step}/{total}  loss {loss:.4f}  acc {100 * acc:.1f}%  checks {n_checks} ok")


def train(spec=None, *, data=None, epochs=None, check_every=None, seed=None, out=None,
          mode=None, time_budget=None, max_memory=None, progress=None,
          log=None) -> TrainResult:
    r"""Train the spec's network with the seed's five steps, checking its gradients as it goes.

    Mini-batch SGD with momentum on a softmax cross-entropy loss (the steps are in
    :mod:`gradcheck.train._steps`). At step 0, every ``check_every`` steps and after the
    last update, the gradients of the current weights on the current batch are checked
    with :func:`gradcheck.check_vjp` (the input and every parameter tensor); a failing
    check stops training.

    Parameters
    ----------
    spec : Spec, path or None
        The network (``None``: the built-in training CNN for the 8x8 digits). Its
        ``[input] shape`` is ``[N, C, *spatial]`` with ``N`` the batch size (unless
        ``[train] batch_size`` says otherwise) and ``dtype`` the training dtype; its loss
        must be ``softmax_cross_entropy`` (or absent) and the output ``(N, classes)``.
    data : {"digits", "synthetic"}, optional
        scikit-learn's bundled digits (needs the ``train`` extra) or the generated
        pattern task (NumPy only). Default: ``[train] data``, else ``"digits"``.
    epochs, check_every, seed : int, optional
        Override ``[train]`` (defaults 10, 100, 0). ``check_every = 0`` checks only at
        the start and the end. ``seed`` draws the split, the batches and the weights.
    out : path, optional
        A directory for ``train.json`` (the log) and ``train.png`` (loss and accuracy
        curves with the checks marked; needs matplotlib, else a note and no PNG).
    mode, time_budget : optional
        The checker's mode (``"sampled"``, ``"auto"``, ``"full"``, ``"fast"``) and its
        per-tensor time budget in seconds; default the spec's ``[check]``, else
        :data:`~gradcheck.train._check.DEFAULT_MODE` (``"sampled"``) and
        :data:`~gradcheck.train._check.DEFAULT_TIME_BUDGET`.
    max_memory : int, optional
        As for ``gradcheck check``.
    progress, log : callable, optional
        ``progress(text)`` receives a one-line progress bar after every step;
        ``log(line)`` every check's summary and every epoch's loss and accuracy.

    Returns
    -------
    TrainResult
        ``passed`` (every check passed), ``test_accuracy``, the per-step curves, the
        :class:`CheckRecord` of every check, and ``to_dict()`` for JSON.

    Examples
    --------
    >>> from gradcheck.spec import loads_spec
    >>> from gradcheck.train import train
    >>> spec = loads_spec('''
    ... [input]
    ... shape = [8, 1, 6, 6]
    ... [[layer]]
    ... type = "conv"
    ... out_channels = 2
    ... kernel = 3
    ... [[layer]]
    ... type = "relu"
    ... [[layer]]
    ... type = "flatten"
    ... [[layer]]
    ... type = "dense"
    ... out_features = 3
    ... [train]
    ... samples = 160
    ... learning_rate = 0.05
    ... ''')
    >>> result = train(spec, data="synthetic", epochs=4, check_every=0)
    >>> result.passed, result.steps, [c.step for c in result.checks]
    (True, 60, [0, 60])
    >>> result.test_accuracy > 0.75    # 40 test samples of 3 classes
    True
    """
    t0 = time.perf_counter()
    validate(data, epochs, check_every, seed, mode, time_budget, out)
    spec = load_spec(spec)
    s = settings(spec, data=data, epochs=epochs, check_every=check_every, seed=seed,
                  mode=mode, time_budget=time_budget)
    out = prepare_out(out)
    net = network(spec, s.batch_size, max_memory)
    layers, dtype = net.layers, spec.input.dtype
    d = load_data(s.data, sample_shape=net.input_shape[1:], n_classes=net.output_shape[1],
                  dtype=dtype, seed=s.seed, test_fraction=s.test_fraction, samples=s.samples,
                  where=spec.source)
    n_train = len(d.y_train)
    if n_train < s.batch_size:
        raise Ctx(spec.source).fail(
            "train.batch_size", f"{s.batch_size} is more than the {n_train} training samples "
                                f"of the {s.data} data; use a smaller batch (the input's N or "
                                f"[train] batch_size)")
    name = spec.name or spec.source
    steps_per_epoch = n_train // s.batch_size
    total = s.epochs * steps_per_epoch
    log = log or (lambda line: None)
    log(header(name, s, n_train, len(d.y_test), total))
    params = net.init_params(rng=np.random.default_rng([s.seed, 1]), dtype=dtype)
    velocity = [{k: np.zeros_like(v) for k, v in p.items()} for p in params]
    rng = np.random.default_rng([s.seed, 3])
    losses, accs, epoch_losses, epoch_accs, checks = [], [], [], [], []
    check_s, stopped_at, step = 0.0, None, 0
    progress = progress or (lambda text: None)

    def check(x, labels, when, epoch) -> bool:
        nonlocal check_s
        t = time.perf_counter()
        report = check_gradients(net, _batch_loss(net.loss, labels), x, params,
                                 seed=spec.check.seed + step, mode=s.mode,
                                 time_budget=s.time_budget, budget=spec.check.budget,
                                 rtol=spec.check.rtol, atol=spec.check.atol,
                                 name=f"{name} at step {step}")
        check_s += time.perf_counter() - t
        if checks:   # only the last check keeps its point (a reproducer, not a history)
            checks[-1] = dataclasses.replace(checks[-1], point=None)
        checks.append(record(report, step=step, epoch=epoch, when=when, mode=s.mode,
                             point=(x, labels, params)))
        log(checks[-1].summary())
        return report.passed

    x = labels = None
    for epoch in range(s.epochs):
        order = rng.permutation(n_train)
        first = len(losses)
        for b in range(steps_per_epoch):
            batch = order[b * s.batch_size:(b + 1) * s.batch_size]
            x, labels = d.x_train[batch], d.y_train[batch]
            scheduled = step > 0 and s.check_every and step % s.check_every == 0
            if (step == 0 or scheduled) and not check(
                    x, labels, "start" if step == 0 else f"every {s.check_every} steps", epoch):
                stopped_at = step
                break
            with np.errstate(over="ignore", invalid="ignore"):   # divergence: said below
                bp = backprop(layers, _batch_loss(net.loss, labels), x, params)  # steps 1-5
                losses.append(bp.loss)
                accs.append(_accuracy(bp.activations[-1], labels))
                params, velocity = sgd_momentum(params, bp.grads, velocity,
                                                learning_rate=s.learning_rate,
                                                momentum=s.momentum)
            _require_finite(step, s.learning_rate, bp.loss, bp.grads, params)
            step += 1
            progress(_bar(epoch, s.epochs, step, total, float(np.mean(losses[first:])),
                          float(np.mean(accs[first:])), len(checks)))
        if stopped_at is not None:
            break
        epoch_losses.append(float(np.mean(losses[first:])))
        epoch_accs.append(float(np.mean(accs[first:])))
        log(f"epoch {epoch + 1}/{s.epochs}: loss {epoch_losses[-1]:.4f}, accuracy "
            f"{100 * epoch_accs[-1]:.1f}% on the training batches")
    if stopped_at is None:
        check(x, labels, "end", s.epochs)    # the final weights, on the last batch
        if not checks[-1].passed:
            stopped_at = step
    passed = stopped_at is None
    test_accuracy = (_evaluate(layers, params, d.x_test, d.y_test, s.batch_size)
                     if passed else None)
    notes = [f"each epoch uses {steps_per_epoch} full batches of {s.batch_size}; the "
             f"{n_train - steps_per_epoch * s.batch_size} training samples left over change "
             f"with the shuffle"] if n_train % s.batch_size else []
    result = TrainResult(
        spec=name, data=s.data, passed=passed, stopped_at=stopped_at, epochs=s.epochs,
        steps=step, batch_size=s.batch_size, learning_rate=s.learning_rate,
        momentum=s.momentum, check_every=s.check_every, seed=s.seed, dtype=dtype,
        n_train=n_train, n_test=len(d.y_test), steps_per_epoch=steps_per_epoch,
        losses=tuple(losses), accuracies=tuple(accs), epoch_losses=tuple(epoch_losses),
        epoch_accuracies=tuple(epoch_accs), test_accuracy=test_accuracy,
        checks=tuple(checks), elapsed_s=time.perf_counter() - t0, check_s=check_s,
        notes=tuple(notes), params=params)
    if out is not None:
        from gradcheck.train._output import write_outputs

        result = write_outputs(result, out)
    return result
