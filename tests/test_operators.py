"""The built-in operator adapters do what their options say."""

import pytest
import torch

from gnn1000.registry import resolve

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("improved", [False, True])
def test_gcn_uses_the_self_loop_weight_its_improved_option_names(improved):
    """Kipf and Welling's D^-1/2 (A + wI) D^-1/2 X W with w = 2 when improved (PyG alone ignores it
    unless edge weights are passed)."""
    torch.manual_seed(0)
    n = 6
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3, 4, 5, 0, 5], [1, 0, 2, 1, 3, 2, 5, 4, 5, 0]])
    x = torch.randn(n, 3)
    conv = resolve("operators", "gcn")(3, 4, improved=improved)
    adjacency = torch.zeros(n, n)
    adjacency[edge_index[1], edge_index[0]] = 1.0
    adjacency += (2.0 if improved else 1.0) * torch.eye(n)
    d = adjacency.sum(1).rsqrt()
    expected = d[:, None] * adjacency * d[None, :] @ conv.conv.lin(x) + conv.conv.bias
    torch.testing.assert_close(conv(x, edge_index), expected)
