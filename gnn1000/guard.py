"""The NaN stop: a training step is checked (loss, gradient norm, updated weights) before anything
else uses it, and the error names a checkpoint whose every tensor is finite and how to go on."""

from __future__ import annotations

import math

import torch

from gnn1000 import checkpoint
from gnn1000.errors import CorruptFileError, NonFiniteLossError


def grad_norm(parameters, clip: float | None) -> torch.Tensor:
    """The total gradient norm, clipping to ``clip`` when it is set."""
    parameters = [p for p in parameters if p.grad is not None]
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(parameters, clip)
    return torch.nn.utils.get_total_norm([p.grad for p in parameters])


def nonfinite_parameter(model: torch.nn.Module) -> str | None:
    """The first parameter or buffer holding NaN or Inf, by name."""
    named = [(name, t) for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_floating_point()]
    # One fused norm (one device sync) per step; it is non-finite exactly when some element is.
    if not named or torch.isfinite(torch.nn.utils.get_total_norm([t.detach() for _, t in named])):
        return None
    return next((name for name, t in named if not torch.isfinite(t).all()), None)


def finite_checkpoint(last) -> tuple[str, int] | None:
    """(path, epoch) of the newest of last.pt / last.prev.pt whose every tensor is finite."""
    for path in (last, checkpoint.previous(last)):
        if not path.is_file():
            continue
        try:
            state = checkpoint.load(path)
        except CorruptFileError:
            continue
        if not checkpoint.nonfinite_tensors({"model": state["model"], "optimizer": state.get("optimizer", {})}):
            return str(path), state["epoch"]
    return None


def stop(run, what: str, value, epoch: int, step: int | str, lr: float) -> NonFiniteLossError:
    """The error for a non-finite ``what``: where it happened, the finite checkpoint, the way on."""
    value = float(value) if isinstance(value, (int, float)) or torch.is_tensor(value) else value
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    lower = f"{lr / 10:g}" if isinstance(lr, (int, float)) and math.isfinite(lr) else "0.001"
    kept = finite_checkpoint(run.last)
    if epoch == 1 and step == 0 and what in ("loss", "gradient norm"):
        # no optimizer step has been taken: the initial weights, not the learning rate, produced it
        return NonFiniteLossError(
            f"Training stopped: the {what} is {shown} in epoch 1, batch 0, before any optimizer step, so the "
            f"learning rate is not the cause: the model's output overflows with its initial weights. Under "
            f"experiment.precision = '16' try '32' or 'bf16'; otherwise check the scale of the input features "
            f"and the model's depth or width (e.g. a branch_scale, or a norm), then start again: gnn1000 train "
            f"{run.config} --run-dir {run.path} --overwrite --bind ...")
    if kept is not None:
        path, done = kept
        way = (f"The last good checkpoint is {path} (epoch {done}); every tensor in it is finite. Continue "
               f"from it with a lower learning rate: gnn1000 train --resume {run.path} "
               f"--bind 'experiment.lr = {lower}'")
    else:
        way = (f"No epoch had finished with finite weights, so there is no checkpoint to continue from; "
               f"start again with a lower learning rate: gnn1000 train {run.config} --run-dir {run.path} "
               f"--overwrite --bind 'experiment.lr = {lower}'")
    return NonFiniteLossError(
        f"Training stopped: the {what} is {shown} in epoch {epoch}, batch {step} (experiment.lr = {lr:g}). "
        f"{way} (or tighten experiment.grad_clip).")


class UpdateOverflow(RuntimeError):
    """An optimizer update too large for float32 in step ``step``; the NaN guard (a callback, which
    knows the run's checkpoints) turns it into the NaN stop."""

    def __init__(self, step: int):
        super().__init__(f"the optimizer update of step {step} overflows float32")
        self.step = step


def optimizer_step(optimizer, step: int, scaler=None) -> None:
    """``optimizer.step()`` (through the gradient scaler when there is one); an update too large for
    float32 raises :class:`UpdateOverflow`, not torch's traceback."""
    try:
        scaler.step(optimizer) if scaler is not None else optimizer.step()
    except RuntimeError as exc:
        if "overflow" not in str(exc):
            raise
        raise UpdateOverflow(step) from None


def check_step(run, model, loss, norm, epoch: int, step: int, lr: float) -> None:
    """After ``optimizer.step()``: the loss, the gradient norm and every updated weight are finite."""
    for what, value in (("loss", loss), ("gradient norm", norm)):
        if not torch.isfinite(value).all():
            raise stop(run, what, value.detach(), epoch, step, lr)
    bad = nonfinite_parameter(model)
    if bad is not None:
        raise stop(run, f"weight {bad!r} after the optimizer step", "non-finite", epoch, step, lr)


def check_outputs(run, split: str, logits: torch.Tensor, epoch: int, lr: float) -> None:
    """Predictions must be finite before they are scored (sklearn would fail) or checkpointed."""
    if not torch.isfinite(logits).all():
        raise stop(run, f"model output on the {split} split (finite weights, overflowing activations)",
                   "non-finite", epoch, "evaluation", lr)
