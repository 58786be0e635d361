"""Training the seed's CNN with the seed's five steps, its gradients checked as it trains.

:func:`train` runs mini-batch SGD with momentum on a spec's network (forward pass, the
output error from the loss, the error carried back through every layer, the weight
gradients, the update: :mod:`gradcheck.train._steps`) and checks the gradients with
:func:`gradcheck.check_vjp` at the start, every ``check_every`` steps and at the end --
at the weights training reaches, where dead ReLUs, max-pool ties and large logits live.
``gradcheck train`` is the command-line face of the same function.

Nothing here is imported by ``import gradcheck``; scikit-learn (the digits) and
matplotlib (the PNG) are imported only when used.
"""

from gradcheck.train._check import CheckRecord
from gradcheck.train._default import default_train_spec
from gradcheck.train._loop import train
from gradcheck.train._result import TrainResult

__all__ = ["train", "TrainResult", "CheckRecord", "default_train_spec"]
