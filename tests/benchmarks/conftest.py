import pytest


def pytest_collection_modifyitems(config, items):
    """Full benchmarks (minutes each) run with `make bench`; the test suite runs the quick ones once."""
    disabled = config.getoption("benchmark_disable", default=False)
    if not disabled or config.getoption("benchmark_enable", default=False):  # enable overrides disable
        return
    skip = pytest.mark.skip(reason="a full benchmark: run it with `make bench` (pytest --benchmark-enable)")
    for item in items:
        if "full_benchmark" in item.keywords:
            item.add_marker(skip)
