"""Error bars of float32 torch stacks checked through ``gradcheck.torch.check_module``.

The independent route is torch's own autograd on a float64 copy of the same module at
the same point, with the same cotangent: a numerical derivative of the float32 function
is honest where it lies within its error bar of that gradient (float32's rounding of
the function moves the derivative far less than the bars below). The stacks are drawn
by ``torch.manual_seed(seed)``, the module built, then the input drawn.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gradcheck.torch needs PyTorch "
                                            "(pip install torch==2.13.0)")
nn = torch.nn

from gradcheck.torch import check_module  # noqa: E402
from _torch_threads import one_thread  # noqa: E402,F401  (autouse fixture)


def _bn_silu(seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(),
                      nn.Flatten(), nn.Linear(2048, 10)).float()
    return m, torch.randn(4, 3, 16, 16)


def _maxpool(seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(512, 10)).float()
    return m, torch.randn(4, 3, 16, 16)


def _checked(m, x, name, seed):
    """(numerical, error bar, float64 autograd) of parameter ``name``, flat."""
    with torch.no_grad():
        y = m(x)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(1000 + seed))
    report = check_module(m, x, wrt=[name], cotangent=cot)
    arg = next(a for a in report.arguments if a.name == name)
    m64 = copy.deepcopy(m).double()
    p = dict(m64.named_parameters())[name]
    truth = torch.autograd.grad(m64(x.double()), p, cot.double())[0].numpy().reshape(-1)
    return (report, np.asarray(arg.numeric, np.float64).reshape(-1),
            np.asarray(arg.error_estimate, np.float64).reshape(-1), truth)


def test_batch_norm_weight_bar_not_set_by_a_runaway_truncation():
    # Element (5, 0, 2, 1) read -0.0204747 (float64 autograd -0.0204809) with a bar of
    # 303 (the gradient's root mean square is 1.3): a pass at a smaller step, whose fit
    # had only b_1 and b_2 significant (b_1 small: the batch norm makes f flat along its
    # channel's weights), extrapolated their ratio to a runaway truncation, and the
    # chosen pass's bar covered that pass's whole bar. Such a fit now takes no truncation
    # (numdiff/_model), and a runaway bar of a smaller step no longer becomes the chosen
    # one's (numdiff/_adaptive._covering, tests/test_numdiff_covering.py)
    report, num, bar, truth = _checked(*_bn_silu(8), "0.weight", 8)
    assert report.passed
    j = np.ravel_multi_index((5, 0, 2, 1), (8, 3, 3, 3))
    assert abs(num[j] - truth[j]) <= bar[j] < 0.01
    # every bar covers the float64 gradient within the ten bars the verdict allows, and
    # none is absurd next to the gradient's size
    assert np.all(np.abs(num - truth) <= 10 * bar)
    assert bar.max() < 0.05 * np.sqrt(np.mean(truth ** 2))


def test_max_pool_weights_resolved_finer_and_honest():
    # Used to fail: 170 of 216 conv weights of a ReLU + max-pool stack were resolved only
    # to more than 5% of their value (median bar 4.6% of the float64 gradient): the steps
    # straddled the channel's pool switches, then fell a thousandfold below them
    report, num, bar, truth = _checked(*_maxpool(0), "0.weight", 0)
    assert report.passed
    share = np.asarray(report.arguments[0].resolved_share, np.float64).reshape(-1)
    assert np.count_nonzero(share > 0.05) < 216 // 2
    assert np.median(bar / np.abs(truth)) < 0.02
    assert np.all(np.abs(num - truth) <= 10 * bar)


def test_max_pool_right_stack_passes():
    # Used to fail: weight (5, 2, 0, 0) read -1.497 +- 0.027 for -1.814 (its first pass
    # straddled pool switches whose bends its fit read as noise) and the right backward
    # failed; the steps below it contradict that pass, and its bar now covers both
    report, num, bar, truth = _checked(*_maxpool(1), "0.weight", 1)
    assert report.passed
    j = np.ravel_multi_index((5, 2, 0, 0), (8, 3, 3, 3))
    assert abs(num[j] - truth[j]) <= bar[j]


class _SlipConv(torch.autograd.Function):
    """A convolution (padding 1) whose weight gradient is 5% off at one element."""

    @staticmethod
    def forward(ctx, x, w, b, index):
        ctx.save_for_backward(x, w)
        ctx.index = index
        return torch.nn.functional.conv2d(x, w, b, padding=1)

    @staticmethod
    def backward(ctx, go):
        x, w = ctx.saved_tensors
        gw = torch.nn.grad.conv2d_weight(x, w.shape, go, padding=1).clone()
        gw.view(-1)[ctx.index] *= 1.05
        return (torch.nn.grad.conv2d_input(x.shape, w, go, padding=1), gw,
                go.sum((0, 2, 3)), None)


class _Slipped(nn.Conv2d):
    index = 0

    def forward(self, x):
        return _SlipConv.apply(x, self.weight, self.bias, self.index)


def test_max_pool_weight_slip_now_seen():
    # Used to fail: weight (2, 1, 0, 1) (gradient 2.11) was resolved only to 13% of its
    # value, and a 5% error there passed (said in the notes); now resolved to about 1%
    torch.manual_seed(0)
    conv = _Slipped(3, 8, 3, padding=1)
    m = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 10))
    x = torch.randn(4, 3, 16, 16)
    conv.index = int(np.ravel_multi_index((2, 1, 0, 1), (8, 3, 3, 3)))
    with torch.no_grad():
        y = m(x)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(1000))
    report = check_module(m, x, wrt=["0.weight"], cotangent=cot)
    arg = report.arguments[0]
    assert not report.passed
    assert arg.failed_mask[2, 1, 0, 1]
