import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin contention on shared CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
