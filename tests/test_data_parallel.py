"""Data-parallel training (``gnn1000 train --workers``): DDP steps equal one process's step over the
union of the ranks' batches, for every deep architecture; a 2-worker run on Ray Train matches the
single-process run; a worker lost mid-run restarts from the last checkpoint and the run finishes.

Everything runs on the CPU with gloo on 127.0.0.1, on graphs of 240 nodes.
"""

import json
import os
import socket
import sys
from pathlib import Path

import gin
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import TINY

from gnn1000 import checkpoint
from gnn1000 import config as gin_config
from gnn1000.build import build_experiment
from gnn1000.ranks import Ranks

TESTS = Path(__file__).parent

ARCHITECTURES = {  # unused parameters: RevGNN under gcn leaves its edge encoder out of every forward
    "revgnn-gcn": ["experiment.architecture = 'revgnn'", "revgnn.hidden_channels = 16", "revgnn.num_layers = 3",
                   "revgnn.operator = 'gcn'"],
    "revgnn-gen": ["experiment.architecture = 'revgnn'", "revgnn.hidden_channels = 16", "revgnn.num_layers = 3"],
    "wt-revgnn": ["experiment.architecture = 'revgnn'", "revgnn.hidden_channels = 16", "revgnn.num_layers = 3",
                  "revgnn.weight_tied = True"],
    "resgnn": ["experiment.architecture = 'resgnn'", "resgnn.num_layers = 3"],
    "resgnn-checkpoint": ["experiment.architecture = 'resgnn'", "resgnn.num_layers = 3", "resgnn.checkpoint = True"],
    "deq": ["experiment.architecture = 'deq'", "deq.hidden_channels = 16", "deq.num_layers = 2", "deq.fwd_max_iter = 8",
            "deq.bwd_max_iter = 8"],
}
TWO_PARTS = ["experiment.sampler = 'random_partition'", "random_partition.num_parts = 2", "experiment.epochs = 1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_step_on_rank(rank: int, world: int, port: int, bindings: list[str], out: str) -> None:
    """One rank of a gloo group: the experiment loop's first training step, weights to ``out``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        gin_config.load(None, bindings)
        experiment = build_experiment(Path(out).parent / f"rank-{rank}", progress=False, ranks=Ranks.current())
        experiment.epoch = 1
        experiment.train_epoch()
        if rank == 0:
            torch.save(experiment.model.state_dict(), out)
    finally:
        dist.destroy_process_group()


def union_step(bindings: list[str]) -> dict:
    """One process, one optimizer step on the mean loss over both parts' training rows."""
    gin_config.load(None, bindings)
    experiment = build_experiment(Path("unused"), progress=False)
    experiment.model.train()
    parts = list(experiment.runner.train_batches())
    rows = sum(int(mask.sum()) for _, mask in parts)
    experiment.optimizer.zero_grad()
    loss = sum(experiment.task.loss(experiment._forward(b)[m], b.y[m]) * int(m.sum()) / rows for b, m in parts)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(experiment.model.parameters(), experiment.cfg.grad_clip)
    experiment.optimizer.step()
    return experiment.model.state_dict()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_one_ddp_step_equals_a_step_over_the_union_of_both_ranks_batches(name, tmp_path, one_thread):
    """RevGNN (custom autograd Function, with and without a parameter its operator leaves unused),
    WT-RevGNN, ResGNN with and without checkpointing and DEQ-GNN under DDP without
    find_unused_parameters: after one step each of 2 ranks, the weights equal (1e-6 relative) one
    process's step over both ranks' parts. Dropout is 0 in every model (the default), so the only
    difference is the order in which gradients are summed."""
    bindings = [*TINY, *ARCHITECTURES[name], *TWO_PARTS]
    out = tmp_path / "rank0.pt"
    mp.spawn(_one_step_on_rank, args=(2, free_port(), bindings, str(out)), nprocs=2, join=True)
    gin.clear_config()
    expected = union_step(bindings)
    got = torch.load(out, weights_only=True)
    assert got.keys() == expected.keys()
    initial = None
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7, msg=f"{name}: {key} differs")
    # the step moved the weights (a test that compares two unchanged models would prove nothing)
    gin_config.load(None, bindings)
    initial = build_experiment(Path("unused"), progress=False).model.state_dict()
    assert any(not torch.equal(initial[k], expected[k]) for k in expected if expected[k].is_floating_point())
