"""What a dataset asks of a model: its loss, its metric and, for OGB datasets, OGB's Evaluator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gnn1000.errors import ConfigError

TASK_TYPES = ("multilabel", "binary", "multiclass", "regression")
METRICS = {"rocauc": True, "acc": True, "ap": True, "rmse": False, "mae": False}  # metric -> higher is better


def mode(metric: str) -> str:
    """'max' or 'min': the direction Ray Tune, ReduceLROnPlateau and the best checkpoint optimise in."""
    return "max" if METRICS[metric] else "min"


@dataclass(frozen=True)
class Task:
    """Loss and metric of a prediction task; labels that are NaN are left out of both."""

    type: str
    num_outputs: int
    metric: str
    ogb_name: str | None = None  # score with OGB's Evaluator, as leaderboards do

    def __post_init__(self):
        if self.type not in TASK_TYPES:
            raise ConfigError(f"Unknown task type {self.type!r}; choose one of {', '.join(TASK_TYPES)}.")
        if self.metric not in METRICS:
            raise ConfigError(f"Unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}.")

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric]

    @property
    def mode(self) -> str:
        return mode(self.metric)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.type == "multiclass":
            return F.cross_entropy(logits, y.view(-1).long())
        y = y.view(logits.shape).to(logits.dtype)
        known = ~torch.isnan(y)
        if self.type == "regression":
            return F.mse_loss(logits[known], y[known])
        return F.binary_cross_entropy_with_logits(logits[known], y[known])

    def score(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        logits, y = logits.detach().float().cpu(), y.detach().cpu()
        if self.ogb_name is not None:
            return self._ogb_score(logits, y)
        if self.metric == "acc":
            pred = logits.argmax(-1) if self.type == "multiclass" else (logits > 0).long()
            return float((pred.view(-1) == y.view(-1).long()).float().mean())
        if self.metric in ("rmse", "mae"):
            y = y.view(logits.shape).float()
            known = ~torch.isnan(y)
            err = logits[known] - y[known]
            return float(err.pow(2).mean().sqrt() if self.metric == "rmse" else err.abs().mean())
        return _mean_over_tasks(self.metric, y.view(logits.shape).numpy(), logits.numpy())

    def _ogb_score(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        from ogb.graphproppred import Evaluator as GraphEvaluator
        from ogb.nodeproppred import Evaluator as NodeEvaluator

        evaluator_cls = NodeEvaluator if self.ogb_name.startswith("ogbn") else GraphEvaluator
        evaluator = evaluator_cls(self.ogb_name)
        y_pred = logits.argmax(-1, keepdim=True) if self.type == "multiclass" else logits
        y_true = y.view(-1, 1) if self.type == "multiclass" else y.view(logits.shape)
        return float(evaluator.eval({"y_true": y_true, "y_pred": y_pred})[self.metric])


def _mean_over_tasks(metric: str, y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean of a per-task binary metric, skipping tasks with one class only (OGB's rule)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    fn = roc_auc_score if metric == "rocauc" else average_precision_score
    scores = []
    for t in range(y_true.shape[1]):
        known = ~np.isnan(y_true[:, t])
        labels = y_true[known, t]
        if labels.size and 0 < labels.sum() < labels.size:
            scores.append(fn(labels, y_score[known, t]))
    if not scores:
        raise ConfigError(f"Cannot compute {metric}: no task has both positive and negative labels here.")
    return float(np.mean(scores))
