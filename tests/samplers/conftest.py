"""tests/samplers: run on one thread (the toy tensors are small; two threads oversubscribe a loaded 2-core box)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
