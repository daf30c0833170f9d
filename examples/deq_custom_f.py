"""``gnn1000.nn.DEQ`` around a function you write: an equilibrium GNN layer in a few lines.

    python examples/deq_custom_f.py            # 200 epochs on a random graph
    python examples/deq_custom_f.py --tiny     # 2 epochs: the test suite's run

``f(z, x, edge_index)`` below is a one-layer graph update, z' = tanh(GCN(z) + W x). ``DEQ(f)`` finds
Z* = f(Z*, x) with a root finder (Broyden) instead of stacking layers, and its backward solves the
adjoint system (implicit differentiation), so memory does not grow with the number of iterations.
``deq.solver_stats`` says how the last solves went. Nothing here reads gin or needs the gnn1000 CLI.
"""

import argparse

import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv
from torch_geometric.utils import erdos_renyi_graph

from gnn1000.nn import DEQ


class GraphUpdate(torch.nn.Module):
    """f(z, x, edge_index) = tanh(GCN(z) + W x): contractive enough at initialisation to solve."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = GCNConv(channels, channels)
        self.inject = torch.nn.Linear(channels, channels)

    def forward(self, z, x, edge_index):
        return torch.tanh(self.conv(z, edge_index) + self.inject(x))


class EquilibriumGNN(torch.nn.Module):
    def __init__(self, in_channels: int, channels: int, out_channels: int):
        super().__init__()
        self.encode = torch.nn.Linear(in_channels, channels)
        self.deq = DEQ(GraphUpdate(channels), solver="broyden", fwd_tol=1e-4, fwd_max_iter=40)
        self.decode = torch.nn.Linear(channels, out_channels)

    def forward(self, x, edge_index):
        return self.decode(self.deq(self.encode(x), edge_index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2 epochs (a smoke test)")
    args = parser.parse_args()
    epochs = 2 if args.tiny else 200

    torch.manual_seed(0)
    num_nodes, classes = 200, 3
    edge_index = erdos_renyi_graph(num_nodes, 0.03)
    y = torch.randint(classes, (num_nodes,))
    x = F.one_hot(y, classes).float() + 0.8 * torch.randn(num_nodes, classes)  # noisy labels as features
    train = torch.rand(num_nodes) < 0.5

    model = EquilibriumGNN(classes, 16, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(1, epochs + 1):
        model.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x, edge_index)[train], y[train])
        loss.backward()
        optimizer.step()
        forward, backward = model.deq.solver_stats["forward"], model.deq.solver_stats.get("backward")
        if epoch == 1 or epoch % 20 == 0 or epoch == epochs:
            model.eval()
            with torch.no_grad():
                acc = float((model(x, edge_index).argmax(-1)[~train] == y[~train]).float().mean())
            print(f"Epoch: {epoch:03d}, Loss: {loss.item():.4f}, Held-out acc: {acc:.4f}, forward solve: "
                  f"{forward.iterations} iterations (residual {forward.residual:.1e})"
                  + (f", backward solve: {backward.iterations} iterations" if backward is not None else ""))


if __name__ == "__main__":
    main()
