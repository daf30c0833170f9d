"""RevGNN on Cora in a plain PyTorch / PyG training loop: no gin, no CLI, no gnn1000 Experiment.

    python examples/rev_gnn_cora.py                     # 64 reversible GCN layers, 200 epochs
    python examples/rev_gnn_cora.py --tiny              # 2 layers, 2 epochs: the test suite's run

The settings are those of configs/cora/revgnn-64.gin: 64 grouped reversible layers (2 groups of 32
channels), GCN operator, LayerNorm, dropout 0.5 with a fresh mask per layer, Adam with weight decay.
The reversible stack keeps one layer's activations whatever the depth, so 64 layers cost the memory
of a few.

Data: PyG's ``Planetoid`` reads the raw Cora files from ``--data`` (default ``$GNN1000_DATA/planetoid``,
else ``../shared/datasets/planetoid`` beside the repository) and downloads them when they are absent.
Planetoid writes ``processed/`` next to ``raw/``, so the raw files are copied to ``--work-dir`` first
and the data folder is only read.
"""

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.datasets import Planetoid
from torch_geometric.transforms import NormalizeFeatures

from gnn1000 import RevGNN

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("GNN1000_DATA") or REPO.parent / "shared" / "datasets") / "planetoid"


def load_cora(data: Path, work: Path):
    raw = data / "Cora" / "raw"
    if raw.is_dir() and not (work / "Cora" / "raw").is_dir():
        shutil.copytree(raw, work / "Cora" / "raw")
    return Planetoid(str(work), "Cora", transform=NormalizeFeatures())[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2 layers, 2 epochs (a smoke test)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding Cora/raw")
    parser.add_argument("--work-dir", type=Path, help="where Planetoid writes (default: a temporary folder)")
    args = parser.parse_args()
    layers, epochs = (2, 2) if args.tiny else (64, 200)

    torch.manual_seed(0)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gnn1000-cora-"))
    data = load_cora(args.data, work)
    model = RevGNN(data.num_features, 64, int(data.y.max()) + 1, layers, num_groups=2, operator="gcn",
                   norm="layernorm", dropout=0.5, dropout_masks="per_layer")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=3e-3)

    def train() -> float:
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()
        return loss.item()

    @torch.no_grad()
    def test() -> list[float]:
        model.eval()
        pred = model(data.x, data.edge_index).argmax(dim=-1)
        return [float((pred[mask] == data.y[mask]).float().mean())
                for mask in (data.train_mask, data.val_mask, data.test_mask)]

    best_val = test_at_best = 0.0
    for epoch in range(1, epochs + 1):
        loss = train()
        train_acc, val_acc, test_acc = test()
        if val_acc > best_val:
            best_val, test_at_best = val_acc, test_acc
        print(f"Epoch: {epoch:03d}, Loss: {loss:.4f}, Train: {train_acc:.4f}, Val: {val_acc:.4f}, "
              f"Test: {test_acc:.4f}")
    print(f"RevGNN-{layers}: test accuracy {test_at_best:.4f} at the best validation accuracy {best_val:.4f}")


if __name__ == "__main__":
    main()
