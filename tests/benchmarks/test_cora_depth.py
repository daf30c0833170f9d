"""Benchmark: does depth hurt? On Cora (public split), one run trains

* a 64-layer reversible RevGNN (``revgnn``; the residual ``resgnn`` stands in where RevGNN is not installed),
* a 64-layer plain GCN without residual connections (PyG's ``GCN``), and
* the classic 2-layer GCN,

and prints their test accuracies side by side. The paper's claim: deep reversible (and residual)
models keep their accuracy where the plain deep GCN collapses (over-smoothing, vanishing gradients).

    GNN1000_DATA=../shared/datasets pytest tests/benchmarks/test_cora_depth.py -s
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from torch_geometric.nn.models import GCN

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the shared-data helper
from shared_data import requires, shared_data  # noqa: E402,F401

from gnn1000.errors import UnknownNameError  # noqa: E402
from gnn1000.checkpoint import seed_everything  # noqa: E402
from gnn1000.experiment import Experiment, ExperimentConfig  # noqa: E402
from gnn1000.registry import resolve  # noqa: E402

EPOCHS = 200
HIDDEN = 64


class PlainGCN(torch.nn.Module):
    """PyG's GCN stack (conv -> ReLU -> dropout, no residuals, no norms) in gnn1000's architecture
    contract, so the same loop trains it."""

    def __init__(self, in_channels, hidden_channels, out_channels, num_layers, *, dropout=0.5,
                 edge_dim=None, **_):
        super().__init__()
        self.gcn = GCN(in_channels, hidden_channels, num_layers, out_channels, dropout=dropout)

    def forward(self, x, edge_index, edge_attr=None, batch=None):
        return self.gcn(x, edge_index)


def deep_reversible():
    """``revgnn`` when installed; otherwise ``resgnn``, the residual baseline, with the same block."""
    for name in ("revgnn", "resgnn"):
        try:
            return name, resolve("architectures", name)
        except UnknownNameError:
            continue
    raise AssertionError("neither revgnn nor resgnn is registered")


def train(tmp_path: Path, label: str, architecture) -> dict:
    cfg = ExperimentConfig(dataset="cora", architecture=architecture, epochs=EPOCHS, lr=0.005,
                           weight_decay=5e-4, device="cpu", seed=0)
    seed_everything(cfg.seed)
    data = resolve("datasets", "cora")()
    model = architecture(in_channels=data.num_features, out_channels=data.num_outputs, edge_dim=data.edge_dim)
    run = Experiment(model, data, resolve("samplers", "full_batch")(), cfg, tmp_path / label,
                     progress=False, log=lambda _: None)
    summary = run.fit()
    return {"model": label, "params": run.num_parameters, "test_acc": summary["test_at_best_valid"],
            "best_valid_acc": summary["best"]["valid_acc"], "seconds": summary["train_seconds"]}


@requires("planetoid/Cora")
@pytest.mark.full_benchmark
def test_cora_accuracy_by_depth(benchmark, shared_data, tmp_path):  # noqa: F811
    name, deep_cls = deep_reversible()
    models = [
        (f"{name}-64 (gcn op, layernorm)",
         partial(deep_cls, hidden_channels=HIDDEN, num_layers=64, operator="gcn", dropout=0.2)),
        ("plain GCN-64 (no residual)", partial(PlainGCN, hidden_channels=HIDDEN, num_layers=64, dropout=0.2)),
        ("GCN-2", partial(PlainGCN, hidden_channels=HIDDEN, num_layers=2, dropout=0.5)),
    ]
    rows = benchmark.pedantic(lambda: [train(tmp_path, label, arch) for label, arch in models],
                              rounds=1, iterations=1)
    benchmark.extra_info["cora_depth"] = rows
    print(f"\nCora, public split, {EPOCHS} epochs, test accuracy at the best validation epoch")
    print(f"{'model':<34}{'params':>10}{'test acc':>10}{'valid acc':>11}{'seconds':>9}")
    for r in rows:
        print(f"{r['model']:<34}{r['params']:>10,}{r['test_acc']:>10.4f}{r['best_valid_acc']:>11.4f}{r['seconds']:>9.1f}")
    deep, plain, shallow = (r["test_acc"] for r in rows)
    print(f"deep {name} / plain deep GCN accuracy ratio: {deep / plain:.2f}; "
          f"deep {name} / GCN-2: {deep / shallow:.2f}")
    assert deep > plain, f"the 64-layer {name} should not collapse like the plain 64-layer GCN"
