import os

# Every Ray the tests start (in this process, in subprocesses, in its workers) binds 127.0.0.1 only:
# Ray's switch for a single-machine, loopback-only cluster, read when ray is imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

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


@pytest.fixture(scope="session", autouse=True)
def shared_datasets_untouched():
    """No test writes into the shared datasets: their tree is the same after the session."""
    from shared_data import DATA_ROOT

    def tree():
        if not DATA_ROOT.is_dir():
            return {}
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in DATA_ROOT.rglob("*")}

    before = tree()
    yield
    after = tree()
    assert after == before, f"tests wrote into {DATA_ROOT}: {sorted(set(after) ^ set(before))[:5]}"
