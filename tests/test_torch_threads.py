"""PyTorch's intra-op threads while gradcheck.torch checks: one for small tensors, the
user's number otherwise, put back however the check ends."""

from __future__ import annotations

import pytest

from gradcheck import ConfigurationError, UserCodeError

torch = pytest.importorskip("torch", reason="the torch adapter needs PyTorch")

from gradcheck.torch import check_function, check_module, gradcheck  # noqa: E402
from gradcheck.torch._threads import SMALL, threads_for  # noqa: E402


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _recording(seen, fn=torch.tanh):
    def f(*ts):
        seen.append(torch.get_num_threads())
        return fn(*ts)
    return f


def test_a_small_check_runs_on_one_thread_and_puts_the_number_back(two_threads):
    seen = []
    x = torch.randn(4, 3, dtype=torch.float64)
    assert check_function(_recording(seen), (x,)).passed
    assert seen[0] == 2                       # building the problem: before the check
    assert set(seen[1:]) == {1} and len(seen) > 5
    assert torch.get_num_threads() == 2


def test_check_module_and_the_drop_in_run_small_modules_on_one_thread(two_threads):
    seen = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return torch.tanh(self.lin(x))

    assert check_module(Net().double(), torch.randn(4, 3, dtype=torch.float64)).passed
    assert set(seen[1:]) == {1}
    seen.clear()
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(_recording(seen), (x,)) is True
    assert set(seen[1:]) == {1} and torch.get_num_threads() == 2


@pytest.mark.parametrize("threads, want", [(2, 2), (None, 2), (1, 1)])
def test_threads_given_are_used(two_threads, threads, want):
    seen = []
    x = torch.randn(3, dtype=torch.float64)
    assert check_function(_recording(seen), (x,), threads=threads).passed
    assert set(seen[1:]) == {want} and torch.get_num_threads() == 2


def test_the_number_is_put_back_when_the_users_function_raises(two_threads):
    seen = []

    def f(t):
        seen.append(torch.get_num_threads())
        if len(seen) > 1:
            raise ValueError("second call")
        return torch.sin(t)

    with pytest.raises(UserCodeError, match="second call"):
        check_function(f, (torch.randn(3, dtype=torch.float64),))
    assert seen == [2, 1] and torch.get_num_threads() == 2


def test_a_large_tensor_leaves_torchs_setting(two_threads):
    seen = []

    def f(t):
        seen.append(torch.get_num_threads())
        if len(seen) > 1:
            raise ValueError("stop: only the thread count is looked at")
        return t * 2

    with pytest.raises(UserCodeError):
        check_function(f, (torch.zeros(SMALL, dtype=torch.float64),))
    assert seen == [2, 2]
    with threads_for("auto", [(SMALL - 1,), (2, 3)]):
        assert torch.get_num_threads() == 1
    with threads_for("auto", [(2, SMALL // 2)]):
        assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "one", True])
def test_bad_threads_are_refused_naming_the_option(bad):
    with pytest.raises(ConfigurationError, match=r"^threads must be 'auto' .*, None .* or an "
                                                 r"integer >= 1; got "):
        check_function(torch.sin, (torch.randn(3, dtype=torch.float64),), threads=bad)
    with pytest.raises(ConfigurationError, match=r"^threads must be"):
        check_module(torch.nn.Linear(2, 2), torch.randn(1, 2), threads=bad)
