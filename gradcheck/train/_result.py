"""What :func:`gradcheck.train.train` returns: a frozen record with ``to_dict()``."""

from __future__ import annotations

import math
from dataclasses import field

from gradcheck._record import frozen

__all__ = ["TrainResult", "TRAIN_FORMAT"]

#: Version of the ``to_dict`` layout (the JSON log); bumped on any incompatible change.
TRAIN_FORMAT = 1


def _number(value):
    return None if value is None or not math.isfinite(value) else float(value)


@frozen
class TrainResult:
    """A training run: the curves, every scheduled gradient check, the test accuracy.

    ``passed`` is True when every check passed; a failing check stops training, and
    ``stopped_at`` is then its step (``test_accuracy`` is None: nothing was tested).
    ``losses[s]`` and ``accuracies[s]`` are the loss and the accuracy on the batch of
    step ``s``, before that step's update.
    """

    spec: str
    data: str
    passed: bool
    stopped_at: int | None
    epochs: int                 # epochs asked for
    steps: int                  # updates made
    batch_size: int
    learning_rate: float
    momentum: float
    check_every: int
    seed: int
    dtype: str
    n_train: int
    n_test: int
    steps_per_epoch: int
    losses: tuple
    accuracies: tuple
    epoch_losses: tuple
    epoch_accuracies: tuple
    test_accuracy: float | None
    checks: tuple               # CheckRecord, in order
    elapsed_s: float
    check_s: float              # of which in the checker
    notes: tuple = ()
    files: tuple = ()
    params: list = field(default=None, repr=False, compare=False)   # the final weights

    @property
    def failed_check(self):
        """The check that stopped training, or None."""
        return next((c for c in self.checks if not c.passed), None)

    def to_dict(self) -> dict:
        return {
            "format": TRAIN_FORMAT,
            "spec": self.spec,
            "data": self.data,
            "passed": self.passed,
            "stopped_at": self.stopped_at,
            "epochs": self.epochs,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "check_every": self.check_every,
            "seed": self.seed,
            "dtype": self.dtype,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "steps_per_epoch": self.steps_per_epoch,
            "test_accuracy": _number(self.test_accuracy),
            "elapsed_s": self.elapsed_s,
            "check_s": self.check_s,
            "losses": [_number(v) for v in self.losses],
            "accuracies": [_number(v) for v in self.accuracies],
            "epoch_losses": [_number(v) for v in self.epoch_losses],
            "epoch_accuracies": [_number(v) for v in self.epoch_accuracies],
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
            "files": list(self.files),
        }
