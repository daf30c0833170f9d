"""Samplers: random partitions, METIS clusters, multi-view inference, and every sampler with every
architecture in the experiment loop."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import to_undirected

from gnn1000 import config
from gnn1000.errors import ConfigError
from gnn1000.build import build_experiment
from gnn1000.plugins.datasets.synthetic_proteins import synthetic_proteins
from gnn1000.registry import BUILT_IN, describe, resolve

TINY = ["synthetic_proteins.num_nodes = 240", "synthetic_proteins.avg_degree = 8",
        "synthetic_proteins.num_tasks = 6", "experiment.epochs = 2", "experiment.device = 'cpu'"]


@pytest.fixture(scope="module")
def graph():
    g = synthetic_proteins(num_nodes=400, avg_degree=10, num_tasks=4).graph
    g.edge_attr = torch.cat([g.edge_attr, torch.arange(g.num_edges).unsqueeze(-1).float()], dim=-1)
    return g  # the last edge feature is the edge's own id, so we can follow it


def parts_of(sampler, graph, train=True):
    return [batch.n_id for batch in sampler.batches(graph, train=train)]


def test_random_partition_puts_every_node_in_exactly_one_part(graph):
    parts = parts_of(resolve("samplers", "random_partition")(num_parts=7), graph)
    assert len(parts) == 7
    counts = torch.bincount(torch.cat(parts), minlength=graph.num_nodes)
    assert bool((counts == 1).all())
    sizes = [p.numel() for p in parts]
    assert max(sizes) - min(sizes) <= 1  # uniform split


def test_random_partition_draws_new_parts_every_epoch(graph):
    sampler = resolve("samplers", "random_partition")(num_parts=4)
    first, second = parts_of(sampler, graph), parts_of(sampler, graph)
    assert any(not torch.equal(a, b) for a, b in zip(first, second))


def test_random_partition_follows_torch_global_rng(graph):
    sampler = resolve("samplers", "random_partition")(num_parts=4)
    torch.manual_seed(3)
    first = parts_of(sampler, graph)
    torch.manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(first, parts_of(sampler, graph)))


@pytest.mark.parametrize("sampler", [("random_partition", {"num_parts": 5}),
                                     ("cluster", {"num_parts": 8, "clusters_per_batch": 3})])
def test_induced_subgraphs_keep_exactly_the_inner_edges_with_their_features(graph, sampler):
    name, options = sampler
    for batch in resolve("samplers", name)(**options).batches(graph, train=True):
        inside = torch.zeros(graph.num_nodes, dtype=torch.bool)
        inside[batch.n_id] = True
        expected = (inside[graph.edge_index[0]] & inside[graph.edge_index[1]]).nonzero().view(-1)
        kept = batch.edge_attr[:, -1].long()  # original edge ids
        assert torch.equal(kept.sort().values, expected)
        # endpoints map back to the original edge, and every feature came along with it
        assert torch.equal(batch.n_id[batch.edge_index], graph.edge_index[:, kept])
        assert torch.equal(batch.edge_attr, graph.edge_attr[kept])
        # node attributes follow their nodes
        assert torch.equal(batch.y, graph.y[batch.n_id])
        assert torch.equal(batch.train_mask, graph.train_mask[batch.n_id])


def test_multi_view_inference_yields_views_of_eval_parts(graph):
    sampler = resolve("samplers", "random_partition")(num_parts=10, eval_parts=3, num_views=4)
    parts = parts_of(sampler, graph, train=False)
    assert len(parts) == 3 * 4
    counts = torch.bincount(torch.cat(parts), minlength=graph.num_nodes)
    assert bool((counts == 4).all())
    views = [torch.cat(parts[3 * v:3 * v + 3]) for v in range(4)]
    assert not torch.equal(views[0], views[1])  # independent partitions


def edge_cut(edge_index, part_of):
    return int((part_of[edge_index[0]] != part_of[edge_index[1]]).sum())


def test_metis_clusters_are_balanced_and_cut_fewer_edges_than_random_parts(graph):
    k = 8
    clusters = resolve("samplers", "cluster")(num_parts=k).clusters(graph)
    part_of = torch.full((graph.num_nodes,), -1)
    for i, members in enumerate(clusters):
        assert bool((part_of[members] == -1).all())  # each node in one cluster only
        part_of[members] = i
    assert bool((part_of >= 0).all())
    sizes = torch.tensor([c.numel() for c in clusters])
    assert len(clusters) == k and sizes.max() <= 1.2 * graph.num_nodes / k
    random_parts = torch.randperm(graph.num_nodes) % k
    undirected = to_undirected(graph.edge_index)
    assert edge_cut(undirected, part_of) < 0.8 * edge_cut(undirected, random_parts)


def test_cluster_batches_cover_every_node_once_per_epoch_and_reshuffle(graph):
    sampler = resolve("samplers", "cluster")(num_parts=8, clusters_per_batch=3)
    first = parts_of(sampler, graph)
    assert len(first) == 3  # 8 clusters, 3 per batch
    assert bool((torch.bincount(torch.cat(first), minlength=graph.num_nodes) == 1).all())
    epochs = [first] + [parts_of(sampler, graph) for _ in range(3)]
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(epochs, epochs[1:]))


@pytest.mark.parametrize("bad", [{"num_parts": 0}, {"num_parts": 3, "num_views": 0}, {"num_parts": 2.5}])
def test_random_partition_rejects_bad_options(bad):
    with pytest.raises(ConfigError, match="positive integer"):
        resolve("samplers", "random_partition")(**bad)


def test_cluster_rejects_more_clusters_per_batch_than_clusters():
    with pytest.raises(ConfigError, match="clusters_per_batch"):
        resolve("samplers", "cluster")(num_parts=4, clusters_per_batch=5)


SAMPLERS = {
    "full_batch": [],
    "random_partition": ["random_partition.num_parts = 3", "random_partition.eval_parts = 2",
                         "random_partition.num_views = 2"],
    "cluster": ["cluster.num_parts = 6", "cluster.clusters_per_batch = 2"],
}


# gnn1000's own architectures (not ones other test modules register for their own purposes)
BUILT_IN_ARCHITECTURES = [e.name for e in describe("architectures") if e.origin == BUILT_IN]


@pytest.mark.parametrize("architecture", BUILT_IN_ARCHITECTURES)
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_trains_every_architecture(tmp_path, architecture, sampler):
    arch = architecture.replace("-", "_")
    config.load(None, [*TINY, f"experiment.architecture = '{architecture}'", f"experiment.sampler = '{sampler}'",
                       f"{arch}.hidden_channels = 16", f"{arch}.num_layers = 2", *SAMPLERS[sampler]])
    summary = build_experiment(tmp_path / "run", progress=False, log=lambda _: None).fit()
    assert summary["epochs"] == 2
    assert all(0.0 <= summary["final"][f"{s}_rocauc"] <= 1.0 for s in ("train", "valid", "test"))


@pytest.mark.parametrize("sampler", ["random_partition", "cluster"])
def test_a_resumed_run_draws_the_same_batches_as_an_unbroken_one(tmp_path, sampler):
    bindings = [*TINY, "resgnn.hidden_channels = 8", "resgnn.num_layers = 2", "resgnn.dropout = 0.2",
                f"experiment.sampler = '{sampler}'", *SAMPLERS[sampler]]
    config.load(None, [*bindings, "experiment.epochs = 3"])
    unbroken = build_experiment(tmp_path / "a", progress=False, log=lambda _: None).fit()["final"]
    config.load(None, [*bindings, "experiment.epochs = 2"])
    build_experiment(tmp_path / "b", progress=False, log=lambda _: None).fit()
    config.load(None, [*bindings, "experiment.epochs = 3"])
    resumed = build_experiment(tmp_path / "b", progress=False, log=lambda _: None).fit(resume=True)["final"]
    for key in ("loss", "train_rocauc", "valid_rocauc", "test_rocauc"):
        assert resumed[key] == pytest.approx(unbroken[key], rel=1e-6)
