"""A config's model as another architecture or at another depth, and one training step's memory.

``gnn1000 bench depth`` sweeps a config's model over architectures and depths, and the default job
compares its RevGNN's step memory with a ResGNN of the same depth and width: both need the same
model rebuilt with another ``experiment.architecture`` and ``num_layers`` while the width, operator,
norm and dropouts stay what the config gave its own architecture. Each step is measured in a fresh
interpreter (as ``gnn1000 bench memory`` does) so no allocation of one measurement inflates another.
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gnn1000.errors import ConfigError

#: Model names a sweep takes: (registered architecture, the bindings that make the variant).
VARIANTS = {"resgnn": ("resgnn", {}), "revgnn": ("revgnn", {}), "wt-resgnn": ("resgnn", {"weight_tied": True}),
            "wt-revgnn": ("revgnn", {"weight_tied": True}), "deq": ("deq", {})}
#: What a variant keeps of the config's own architecture (where the variant's constructor takes it).
SHARED = ("hidden_channels", "operator", "operator_kwargs", "norm", "norm_kwargs", "dropout", "input_dropout",
          "edge_dropout", "branch_scale", "dropout_masks", "num_groups", "stream_dtype", "residual")


def check_variant(model: str) -> str:
    if model not in VARIANTS:
        raise ConfigError(f"model {model!r} is not one of {', '.join(VARIANTS)} (the models a depth sweep "
                          f"or experiment.compare_step_memory can build).")
    return model


def variant_bindings(model: str, layers: int) -> list[str]:
    """Bindings that, after the loaded config, make its model ``model`` with ``layers`` layers (for an
    equilibrium model: ``layers`` solver iterations at most, and as many warm-start steps)."""
    import gin

    from gnn1000 import config
    from gnn1000.registry import gin_name, resolve

    arch, extra = VARIANTS[check_variant(model)]
    source = config.settings().architecture
    bound = gin.get_bindings(f"architectures.{gin_name(source)}")
    takes = inspect.signature(resolve("architectures", arch)).parameters
    values = {k: bound[k] for k in SHARED if k in bound and k in takes}
    values.update(extra, num_layers=layers)
    if arch == "deq":
        values["fwd_max_iter"] = layers
    return [f"experiment.architecture = {arch!r}"] + [f"{gin_name(arch)}.{k} = {v!r}" for k, v in values.items()]


def measure_step(config_path: str | Path, bindings: list[str]) -> dict:
    """One training step of the configured model, in this process: build it, prime the optimizer's
    state, reset the peak, step on the sampler's first training batch."""
    import torch

    from gnn1000 import config, memory
    from gnn1000.build import _load_data, build_model
    from gnn1000.checkpoint import seed_everything
    from gnn1000.experiment import pick_device
    from gnn1000.ranks import Ranks

    config.load(config_path, bindings)
    settings = config.settings()
    seed_everything(settings.seed)
    device = pick_device(settings.device)
    data = _load_data(settings.dataset, Ranks.current())
    if data.level != "node":
        raise ConfigError(f"step memory is measured on node-level datasets; {data.name!r} is graph-level.")
    batch = next(iter(config.reference("samplers", settings.sampler)().batches(data.graph, train=True))).to(device)
    model = build_model(settings.architecture, data).to(device)
    optimizer = config.reference("optimizers", settings.optimizer)(model.parameters(), lr=settings.lr)

    def step() -> None:
        optimizer.zero_grad(set_to_none=False)
        out = model(batch.x, batch.edge_index, batch.edge_attr)
        data.task.loss(out[batch.train_mask], batch.y[batch.train_mask]).backward()
        optimizer.step()

    model.train()
    step()  # the optimizer's state and the gradients are resident before the measured step, as in training
    gc.collect()
    before = memory.current_mb(device)
    memory.reset_peak(device)
    start = time.perf_counter()
    step()
    return {"step_memory_mb": memory.used_mb(device, before), "step_s": time.perf_counter() - start,
            "parameters": sum(p.numel() for p in model.parameters()), "device": device.type}


def step_memory(config_path: str | Path, bindings: list[str], timeout: float = 600) -> dict:
    """:func:`measure_step` in a fresh interpreter; a failure (out of memory, a bad setting) is
    returned as ``{"error": ...}``, not raised."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # freed tensors go back to the OS at once
    cmd = [sys.executable, "-m", "gnn1000.variants", str(config_path), *bindings]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_step_memory(run_config: Path, summary: dict, models: list[str]) -> dict:
    """One training step of the run's own model and of each of ``models`` at the run's depth and
    width, measured alike; added to ``summary`` as ``step_memory_comparison``. Reads the run's
    architecture from the loaded gin config."""
    import gin

    from gnn1000 import config
    from gnn1000.registry import gin_name

    own = config.settings().architecture
    if gin.get_bindings(f"architectures.{gin_name(own)}").get("weight_tied"):
        own = f"wt-{own}"
    layers = summary["num_layers"]
    results = {model: step_memory(run_config, variant_bindings(model, layers))
               for model in dict.fromkeys([own, *models]) if model in VARIANTS}
    summary["step_memory_comparison"] = {"layers": layers, "own": own, "models": results}
    return summary


if __name__ == "__main__":
    print(json.dumps(measure_step(sys.argv[1], sys.argv[2:])))
