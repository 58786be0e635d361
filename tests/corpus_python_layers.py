"""Slips of the diagnosis corpus as ``type = "python"`` layers (``forward`` and
``backward`` methods), for spec runs and networks: the same diagnosis must come out when
the layer sits in a network, behind a loss, checked from a spec."""

from __future__ import annotations

import corpus_local as loc
import corpus_mixing as mix


class _Slip:
    """``forward``/``backward`` of a corpus layer with one slip in its backward."""

    f = vjp = None
    slip = None

    def forward(self, x, *params):
        return type(self).f(x, *params)

    def backward(self, grad_y, x, *params):
        return tuple(type(self).vjp(grad_y, x, *params, slip=self.slip))


class LayerNormMeanTermMissing(_Slip):
    f, vjp, slip = mix.layernorm_f, mix.layernorm_vjp, "mean_term_missing"


class SoftmaxRankOneMissing(_Slip):
    f, vjp, slip = mix.softmax_f, mix.softmax_vjp, "rank_one_missing"


class ReflectPadCenterOnly(_Slip):
    f, vjp, slip = loc.reflect_pad_f, loc.reflect_pad_vjp, "center_only"


class BatchNormEpsMissing(_Slip):
    f, vjp, slip = mix.batchnorm_f, mix.batchnorm_vjp, "eps_missing"


class CrossEntropyIgnoresG(_Slip):
    f, vjp, slip = mix.cross_entropy_f, mix.cross_entropy_vjp, "ignores_g"
