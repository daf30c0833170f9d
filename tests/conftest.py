import gin
import pytest

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
