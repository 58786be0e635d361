"""A fixture for the tests that run PyTorch: one worker thread while each test runs."""

import pytest


@pytest.fixture(autouse=True)
def one_thread():
    """torch's worker threads spin-wait; on a loaded machine one thread cannot stall."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
