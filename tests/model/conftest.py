"""Model tests run torch on one thread: on a shared 2-core machine, two OpenMP threads that
compete with other processes spin-wait and run a small CNN step up to ~70x slower."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
