import gin
import pytest
import torch

from helpers import TINY


@pytest.fixture(autouse=True)
def clean_gin():
    """gin state is global: every test starts and ends with none."""
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture
def tiny():
    return list(TINY)


@pytest.fixture
def one_thread():
    """Tiny graphs run fastest on one thread, above all on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
