"""``gnn1000 predict``: a table of the model's predictions, one row per node (or graph) with its split.

Columns: ``node`` (or ``graph``), ``split`` (train / valid / test, or '' for nodes in none), ``y_pred``
(the class for multi-class tasks) and ``score_<k>`` per output (softmax or sigmoid probability, or the
regressed value). CSV or Parquet by the file's extension. For OGB datasets the test split is also saved
in the Evaluator's input form (``y_pred``, test order), the form OGB-LSC's ``save_test_submission``
stores; the ogbn/ogbg leaderboards take the Evaluator's score through their submission form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gnn1000 import safefs
from gnn1000.data import SPLITS
from gnn1000.errors import ConfigError
from gnn1000.extras import require

FORMATS = (".csv", ".parquet")


def split_of_rows(data) -> np.ndarray:
    """The split name of every node (node-level) or graph (graph-level)."""
    if data.level == "node":
        count = data.graph.num_nodes
        masks = {s: data.graph[f"{s}_mask"].cpu() for s in SPLITS}
    else:
        count = len(data.dataset)
        masks = {s: torch.zeros(count, dtype=torch.bool).index_fill_(0, data.split[s].cpu(), True) for s in SPLITS}
    split = np.full(count, "", dtype=object)
    for name, mask in masks.items():
        split[mask.numpy()] = name
    return split


def table(logits: torch.Tensor, data) -> pd.DataFrame:
    """One row per node or graph: its id, split, predicted class (multi-class) and per-output scores."""
    logits = logits.detach().float().cpu()
    task = data.task
    if task.type == "multiclass":
        scores = logits.softmax(-1)
    elif task.type == "regression":
        scores = logits
    else:
        scores = logits.sigmoid()
    frame = pd.DataFrame({"node" if data.level == "node" else "graph": np.arange(len(logits)),
                          "split": split_of_rows(data)})
    if task.type == "multiclass":
        frame["y_pred"] = logits.argmax(-1).numpy()
    for k in range(scores.size(-1)):
        frame[f"score_{k}"] = scores[:, k].numpy()
    return frame


def write(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix not in FORMATS:
        raise ConfigError(f"--out {path}: write predictions to a {' or '.join(FORMATS)} file (chosen by extension).")
    if path.suffix == ".parquet":
        require("pyarrow", "parquet", "Writing predictions as Parquet")
        safefs.write_atomic(path, lambda f: frame.to_parquet(f, index=False))
    else:  # whole or not at all, and never through a link planted in the run directory
        safefs.write_atomic(path, lambda f: frame.to_csv(f, index=False))


def ogb_test_submission(logits: torch.Tensor, data, path: Path) -> Path | None:
    """``y_pred`` of the test split in OGB's Evaluator input form, as ``<path stem>.ogb-test.npz``;
    None for datasets that are not OGB's."""
    task = data.task
    if task.ogb_name is None:
        return None
    test = data.graph.test_mask.nonzero().view(-1) if data.level == "node" else data.split["test"]
    test_logits = logits.detach().float().cpu()[test.cpu()]
    y_pred = test_logits.argmax(-1, keepdim=True) if task.type == "multiclass" else test_logits
    out = path.with_name(f"{path.stem}.ogb-test.npz")
    safefs.write_atomic(out, lambda f: np.savez_compressed(f, y_pred=y_pred.numpy(), index=test.cpu().numpy(),
                                                          dataset=task.ogb_name))
    return out
