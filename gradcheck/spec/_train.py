"""``[train]``: how ``gradcheck train`` trains the spec's network (ignored by ``check``).

Every key is optional; the command line and :func:`gradcheck.train.train`'s arguments
override the spec, and the spec overrides the defaults written here.
"""

from __future__ import annotations


from gradcheck._record import frozen
from gradcheck.spec._values import Ctx

__all__ = ["TrainSpec", "read_train", "TRAIN_KEYS", "DATA_SOURCES"]

#: Where the training data comes from (see :mod:`gradcheck.train._data`).
DATA_SOURCES = ("digits", "synthetic")
TRAIN_KEYS = ("data", "epochs", "batch_size", "learning_rate", "momentum", "check_every",
              "seed", "test_fraction", "samples")


@frozen
class TrainSpec:
    """``[train]``; ``None`` means "the default" (``batch_size``: the input's ``N``)."""

    data: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    momentum: float | None = None
    check_every: int | None = None
    seed: int | None = None
    test_fraction: float | None = None
    samples: int | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in TRAIN_KEYS if getattr(self, k) is not None}


def read_train(ctx: Ctx, raw) -> TrainSpec:
    """Validate the ``[train]`` table; one :class:`~gradcheck.SpecError` line per bad key."""
    t = ctx.table("train", raw, "training settings")
    ctx.keys("train.", t, TRAIN_KEYS, "[train]")

    def opt(key, read):
        return read(f"train.{key}", t[key]) if key in t else None

    momentum = opt("momentum", lambda k, v: ctx.real(k, v, minimum=0))
    if momentum is not None and momentum >= 1:
        raise ctx.expected("train.momentum", "a number >= 0 and < 1", t["momentum"])
    fraction = opt("test_fraction", lambda k, v: ctx.real(k, v, minimum=0, strict=True))
    if fraction is not None and fraction >= 1:
        raise ctx.expected("train.test_fraction", "a number > 0 and < 1", t["test_fraction"])
    return TrainSpec(
        data=opt("data", lambda k, v: ctx.choice(k, v, DATA_SOURCES)),
        epochs=opt("epochs", lambda k, v: ctx.integer(k, v, minimum=1)),
        batch_size=opt("batch_size", lambda k, v: ctx.integer(k, v, minimum=1)),
        learning_rate=opt("learning_rate", lambda k, v: ctx.real(k, v, minimum=0, strict=True)),
        momentum=momentum,
        check_every=opt("check_every", lambda k, v: ctx.integer(k, v, minimum=0)),
        seed=opt("seed", lambda k, v: ctx.integer(k, v, minimum=0)),
        test_fraction=fraction,
        samples=opt("samples", lambda k, v: ctx.integer(k, v, minimum=2)),
    )
