"""Fixtures for the tests that run PyTorch: one worker thread while each test runs.

``one_thread`` is autouse, for modules whose every test needs PyTorch (import it);
``torch_one_thread`` is for single tests of a module that runs without PyTorch too
(import it and name it in ``pytest.mark.usefixtures``); without PyTorch it skips.
"""

import pytest


def _one_thread():
    """torch's worker threads spin-wait; on a loaded machine one thread cannot stall."""
    torch = pytest.importorskip("torch", reason="the thread count is PyTorch's")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread():
    yield from _one_thread()


@pytest.fixture
def torch_one_thread():
    yield from _one_thread()
