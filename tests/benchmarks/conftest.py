import pytest


def pytest_collection_modifyitems(config, items):
    """Full benchmarks (minutes each) run with `make bench`; the test suite runs the quick ones once."""
    if not config.getoption("benchmark_disable", default=False):
        return
    skip = pytest.mark.skip(reason="a full benchmark: run it with `make bench` (pytest --benchmark-enable)")
    for item in items:
        if "full_benchmark" in item.keywords:
            item.add_marker(skip)
