"""Training-step time of every model, for pytest-benchmark (run apart from the unit tests).

    pytest tests/benchmarks --benchmark-enable --benchmark-group-by=group

Each group is one depth; pytest-benchmark prints every column's ratio to the fastest in brackets.
Sizes are small by default; GNN1000_BENCH_NODES / _EDGES / _CHANNELS / _LAYERS set the issue's
2000 / 100000 / 80 / 16. ``gnn1000 bench speed`` measures the same steps interleaved in one process.
"""

import math
import os

import pytest
import torch

from gnn1000.bench._workload import LAYERED, Trainer, Workload

NODES = int(os.environ.get("GNN1000_BENCH_NODES", 300))
EDGES = int(os.environ.get("GNN1000_BENCH_EDGES", 3000))
CHANNELS = int(os.environ.get("GNN1000_BENCH_CHANNELS", 32))
LAYERS = int(os.environ.get("GNN1000_BENCH_LAYERS", 16))


@pytest.mark.parametrize("model", LAYERED)
def test_training_step(benchmark, model):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(model, LAYERS, Workload(nodes=NODES, edges=EDGES, channels=CHANNELS),
                          torch.device("cpu"))
        trainer.step()  # warm-up
        benchmark.group = f"training step, {LAYERS} layers, {NODES} nodes, {EDGES} edges, {CHANNELS} channels"
        benchmark.extra_info["parameters"] = sum(p.numel() for p in trainer.model.parameters())
        loss = benchmark(trainer.step)
    finally:
        torch.set_num_threads(threads)
    assert math.isfinite(loss)
