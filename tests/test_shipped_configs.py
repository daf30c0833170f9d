"""Every shipped config parses, names components that exist, and builds its model."""

from types import SimpleNamespace

import pytest

from gnn1000 import config
from gnn1000.build import build_model
from gnn1000.registry import resolve

RUNNABLE = [name for name in config.shipped_configs() if not name.startswith(("fragments/", "tune/"))]


@pytest.mark.parametrize("name", RUNNABLE)
def test_shipped_config_parses_and_builds(name):
    config.load(name)
    cfg = config.settings()
    resolve("datasets", cfg.dataset)
    resolve("samplers", cfg.sampler)
    # Stand-in sizes: the real datasets of the paper's configs are too large to load in a unit test.
    stand_in = SimpleNamespace(num_features=8, num_outputs=4, edge_dim=8)
    model = build_model(cfg.architecture, stand_in)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_every_fragment_parses():
    for name in config.shipped_configs():
        if name.startswith("fragments/"):
            config.load(name)
