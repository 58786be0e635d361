"""check_module with buffers: a conv + BatchNorm2d, checked in float64 and float32, and
left as it was (running statistics and the batch counter unchanged)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the PyTorch adapter needs PyTorch")

from gradcheck.torch import check_module  # noqa: E402


class ConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.bn = torch.nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x))


@pytest.mark.parametrize("dtype, train", [(torch.float64, True), (torch.float32, False)])
def test_a_module_with_buffers_is_checked_and_left_unchanged(dtype, train):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)              # tiny convolutions: threads only contend
    try:
        _check_convbn(dtype, train)
    finally:
        torch.set_num_threads(threads)


def _check_convbn(dtype, train):
    torch.manual_seed(0)
    module = ConvBN().to(dtype).train(train)
    before = {k: b.clone() for k, b in module.named_buffers()}
    report = check_module(module, torch.randn(2, 2, 4, 4, dtype=dtype))
    assert report.passed, str(report)
    assert [a.name for a in report.arguments] == [
        "input", "conv.weight", "conv.bias", "bn.weight", "bn.bias"]
    assert report.dtype == str(dtype).removeprefix("torch.")
    assert all(torch.equal(before[k], b) for k, b in module.named_buffers())
