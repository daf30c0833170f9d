"""Tasks derived from datasets: NaN labels are left out of loss and metric; OGB tasks are scored by
OGB's Evaluator; OGB metadata maps to the right loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gnn1000.errors import ConfigError
from gnn1000.plugins.datasets.ogb_common import ogb_master, task_from_meta
from gnn1000.task import Task

NAN = math.nan


def test_nan_labels_are_masked_in_the_multilabel_loss():
    task = Task("multilabel", 3, "rocauc")
    logits = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.3, -0.2]])
    y = torch.tensor([[1.0, NAN, 0.0], [NAN, 1.0, 1.0]])
    known = ~torch.isnan(y)
    expected = F.binary_cross_entropy_with_logits(logits[known], y[known])
    assert torch.isfinite(task.loss(logits, y)) and torch.allclose(task.loss(logits, y), expected)


def test_nan_labels_are_masked_in_ogb_graph_regression_and_scoring():
    task = task_from_meta("ogbg-molesol", ogb_master("graph")["ogbg-molesol"], evaluator=True)
    assert task.type == "regression" and task.metric == "rmse" and not task.higher_is_better
    logits = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [NAN], [5.0]])
    assert task.loss(logits, y).item() == pytest.approx(2.0)  # ((0)^2 + (2)^2) / 2
    assert task.score(logits, y) == pytest.approx(math.sqrt(2.0))


def test_ogb_metadata_gives_the_paper_datasets_their_losses_and_metrics():
    expected = {
        ("node", "ogbn-proteins"): ("multilabel", 112, "rocauc"),
        ("node", "ogbn-arxiv"): ("multiclass", 40, "acc"),
        ("node", "ogbn-products"): ("multiclass", 47, "acc"),
        ("graph", "ogbg-molhiv"): ("binary", 1, "rocauc"),
        ("graph", "ogbg-ppa"): ("multiclass", 37, "acc"),
        ("graph", "ogbg-molpcba"): ("multilabel", 128, "ap"),
    }
    for (level, name), (kind, outputs, metric) in expected.items():
        task = task_from_meta(name, ogb_master(level)[name], evaluator=True)
        assert (task.type, task.num_outputs, task.metric, task.ogb_name) == (kind, outputs, metric, name)


def test_multiclass_ogb_task_scores_with_the_evaluator():
    task = task_from_meta("ogbg-ppa", ogb_master("graph")["ogbg-ppa"], evaluator=True)
    logits = torch.zeros(4, 37)
    logits[torch.arange(4), torch.tensor([0, 5, 9, 36])] = 1.0
    y = torch.tensor([[0], [5], [1], [36]])
    assert task.score(logits, y) == pytest.approx(0.75)
    assert task.loss(logits, y).item() == pytest.approx(F.cross_entropy(logits, y.view(-1)).item())


def test_unsupported_ogb_metric_is_a_clear_error():
    with pytest.raises(ConfigError, match="F1"):
        task_from_meta("ogbg-code2", ogb_master("graph")["ogbg-code2"], evaluator=True)
