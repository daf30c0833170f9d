"""``gnn1000 plot``: training curves of one or more runs (loss, every split's metric, learning rate)."""

from __future__ import annotations

import json
from pathlib import Path

from gnn1000 import safefs
from gnn1000.errors import ConfigError
from gnn1000.extras import require


def read_history(run_dir: Path) -> tuple[list[dict], str]:
    """(records of metrics.jsonl, the run's metric name)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no metrics.jsonl: give run directories made by 'gnn1000 train'.")
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or "epoch" not in record:
            raise ConfigError(f"{path} line {number} is not an epoch record ({line[:60]!r}); repair or remove "
                              f"that line ('gnn1000 train --resume {run_dir}' rewrites the file from the "
                              f"run's checkpoint).")
        records.append(record)
    if not records:
        raise ConfigError(f"{path} holds no epoch yet; plot it after its first epoch.")
    metric = next(k.removeprefix("valid_") for k in records[0] if k.startswith("valid_"))
    return records, metric


def plot_runs(run_dirs: list[Path], out: Path) -> Path:
    """Loss, train/valid/test metric and learning rate against epochs, one colour per run."""
    require("matplotlib", "plot", "gnn1000 plot")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.2))
    formats = fig.canvas.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in formats:
        plt.close(fig)
        raise ConfigError(f"--out {out}: the image format is chosen by the extension; use one of "
                          f"{', '.join('.' + f for f in sorted(formats))} (e.g. curves.png).")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    metrics = set()
    for i, run_dir in enumerate(run_dirs):
        records, metric = read_history(run_dir)
        metrics.add(metric)
        colour, name = colours[i % len(colours)], Path(run_dir).name
        epochs = [r["epoch"] for r in records]
        ax_loss.plot(epochs, [r["loss"] for r in records], color=colour, label=name)
        for split, style in (("train", ":"), ("valid", "-"), ("test", "--")):
            ax_metric.plot(epochs, [r[f"{split}_{metric}"] for r in records], style, color=colour,
                           label=f"{name} {split}")
        ax_lr.plot(epochs, [r.get("lr") for r in records], color=colour, label=name)
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_metric.set(title=" / ".join(sorted(metrics)) + " (dotted train, solid valid, dashed test)",
                  xlabel="epoch", ylabel=" / ".join(sorted(metrics)))
    ax_lr.set(title="learning rate", xlabel="epoch", ylabel="lr")
    for ax in (ax_loss, ax_metric, ax_lr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:  # whole or not at all, never through a planted link; the format follows out's extension
        safefs.write_atomic(out, lambda f: fig.savefig(f, dpi=110, format=out.suffix.lstrip(".").lower()))
    finally:
        plt.close(fig)
    return out
