"""gin in, explicit objects out: the one place a parsed gin config becomes an :class:`Experiment`.

``gnn1000 train``, ``gnn1000 evaluate`` and Ray Tune trials call :func:`build_experiment` after
:func:`gnn1000.config.load`; it calls gin's references (:func:`gnn1000.config.reference`) in the
order the run's randomness depends on, and hands the objects and the operative config to the loop.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import gin
import torch

from gnn1000 import checkpoint, config, encoders
from gnn1000.errors import ConfigError, Gnn1000Error, plugin_error
from gnn1000.experiment import Experiment, make_optimizer, make_scheduler, pick_device
from gnn1000.ranks import Ranks
from gnn1000.recorded import SIZED_BY_DATA  # what the data sizes; every other parameter comes from gin
from gnn1000.rundir import RunDir
from gnn1000.registry import gin_name

class UnusedBindingWarning(UserWarning):
    """A gin binding to a component the run never builds."""


def _missing_settings(architecture: str, build) -> list[str]:
    """Required parameters of the architecture that neither the data nor gin provide."""
    bound = gin.get_bindings(f"architectures.{gin_name(architecture)}")
    return [p.name for p in inspect.signature(build).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in SIZED_BY_DATA and p.name not in bound]


def build_model(architecture: str, data) -> torch.nn.Module:
    """The gin-configured architecture sized for ``data``; graph-level data adds its ``readout``, and
    categorical inputs get the dataset's encoders in front (see :mod:`gnn1000.encoders`)."""
    build = config.reference("architectures", architecture)
    kwargs: dict[str, Any] = {}
    if getattr(data, "level", "node") == "graph":
        if "readout" not in inspect.signature(build).parameters:
            raise ConfigError(
                f"Architecture {architecture!r} has no 'readout' option, which graph-level dataset "
                f"{data.name!r} needs to pool node states per graph (OutputHead(readout=...))."
            )
        kwargs["readout"] = data.readout
    missing = _missing_settings(architecture, build)
    if missing:
        raise ConfigError(
            f"Architecture {architecture!r} needs more settings: {', '.join(missing)}. Bind them in gin, "
            f"for example '{gin_name(architecture)}.hidden_channels = 64' and "
            f"'{gin_name(architecture)}.num_layers = 7'."
        )
    try:
        model = build(in_channels=data.num_features, out_channels=data.num_outputs, edge_dim=data.edge_dim, **kwargs)
    except Gnn1000Error:
        raise
    except Exception as exc:  # a plugin's own error: its message first, not gin's call chain
        raise plugin_error(f"architecture {architecture!r}", exc) from exc
    return encoders.wrap(model, getattr(data, "encoders", None))


def _load_data(dataset: str, ranks: Ranks):
    """The dataset; data-parallel ranks on one machine share its cache, so the first of them fills
    it (copies, processes) before the others read it."""
    load = config.reference("datasets", dataset)
    first = ranks.local_rank == 0
    data = load() if first else None
    ranks.barrier()
    return data if first else load()


def build_experiment(run_dir: Path | str, **kwargs) -> Experiment:
    """The experiment the parsed gin config describes, in ``run_dir``; ``kwargs`` go to :class:`Experiment`
    (``progress``, ``on_epoch``, ``callbacks``, ``log``, ``ranks``)."""
    settings = config.settings()
    checkpoint.seed_everything(settings.seed)
    device = pick_device(settings.device)
    data = _load_data(settings.dataset, kwargs.get("ranks") or Ranks.current())
    # graph-level data has no sampler plugin; Experiment checks that none other than full_batch is named
    sampler = config.reference("samplers", settings.sampler)() if data.level == "node" else None
    model = build_model(settings.architecture, data).to(device)
    optimizer = make_optimizer(config.reference("optimizers", settings.optimizer), model, settings)
    scheduler = make_scheduler(config.reference("schedulers", settings.scheduler), optimizer, settings, data.task)
    unused = config.unused_bindings()
    if unused:  # before training: a binding that changes nothing must not pass for one that does
        built = (f"architecture {settings.architecture!r}, dataset {settings.dataset!r}, sampler "
                 f"{settings.sampler!r}, optimizer {settings.optimizer!r}, scheduler {settings.scheduler!r}")
        warnings.warn(f"These bindings have no effect: {', '.join(unused)}; this run builds {built}. "
                      f"Bind the components it builds (e.g. '{gin_name(settings.architecture)}.num_layers') "
                      f"or choose the component they configure.", UnusedBindingWarning, stacklevel=2)
    # the registered callbacks ``experiment.callbacks`` names, through gin (``my_callback.every = 2``)
    callbacks = [*(config.reference("callbacks", name)() for name in settings.callbacks), *kwargs.pop("callbacks", ())]
    return Experiment(model, data, sampler, settings, run_dir, optimizer=optimizer, scheduler=scheduler,
                      callbacks=callbacks, config_text=config.operative_config(), config_source=config.source(),
                      **kwargs)


def load_run(run_dir: Path | str, bindings: list[str] | tuple[str, ...] = (), **kwargs) -> Experiment:
    """Rebuild the experiment of an existing run directory from its operative config (plus ``bindings``)."""
    run = RunDir.existing(run_dir)
    config.load(run.config, bindings)
    return build_experiment(run.path, **kwargs)
