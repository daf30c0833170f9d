"""What a run built in Python records as its ``config.gin``, so the CLI can rebuild it.

``gnn1000 evaluate``, ``predict`` and ``train --resume`` rebuild a run from its config.gin. gin writes
that file for the runs the configuration layer builds; for ``Experiment(model, data, sampler,
settings, run_dir)`` built by hand this module writes it, without importing gin:

- the architecture and the sampler are named by looking their classes up in the registry;
- a :class:`~gnn1000.nn.base.DeepGNN` keeps the arguments it was built with (``model.arguments``);
  other models' and the sampler's are read back from the attributes named like their constructor's
  parameters (PyG's convention: a module keeps its sizes and options); a rebuild on the meta device
  checks that those arguments give the trained model's parameter shapes;
- the dataset and its options come from ``data.source`` (set by :func:`gnn1000.data.load_dataset`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import torch

from gnn1000 import registry
from gnn1000.encoders import Encoded
from gnn1000.nn.base import DeepGNN
from gnn1000.settings import ExperimentConfig

# What the configuration layer passes an architecture from the data; every other argument is recorded.
SIZED_BY_DATA = ("in_channels", "out_channels", "edge_dim", "readout")
HEADER = "# Recorded by gnn1000 for a run built in Python"  # config.gin's first line; see resume.changed
_MISSING = object()


def registry_name(kind: str, obj) -> str | None:
    """The name ``obj``'s class is registered under in ``kind``, or None (without loading any entry)."""
    cls = obj if isinstance(obj, type) else type(obj)
    target = f"{cls.__module__}:{cls.__qualname__}"
    for entry in registry.describe(kind):
        if entry.obj is cls or entry.target == target:
            return entry.name
    return None


def _literal(value) -> bool:
    """Whether ``repr(value)`` is a gin literal."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return not isinstance(value, float) or value == value and abs(value) != float("inf")
    if isinstance(value, (list, tuple)):
        return all(_literal(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _literal(v) for k, v in value.items())
    return False


def arguments(obj, skip: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """(constructor arguments read back from ``obj``'s attributes, the parameters that could not be)."""
    found, unread = {}, []
    for p in inspect.signature(type(obj)).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in skip:
            continue
        value = getattr(obj, p.name, _MISSING)
        if value is not _MISSING and _literal(value):
            found[p.name] = value
        else:
            unread.append(p.name)
    return found, unread


def model_arguments(model: torch.nn.Module) -> tuple[dict, list[str]]:
    """(the architecture's constructor arguments a gin file can hold, the parameters it cannot), less
    what the configuration layer takes from the data."""
    if not isinstance(model, DeepGNN):
        return arguments(model, skip=SIZED_BY_DATA)
    given = {k: v for k, v in model.arguments.items() if k not in SIZED_BY_DATA}
    return {k: v for k, v in given.items() if _literal(v)}, [k for k, v in given.items() if not _literal(v)]


def _sizes(cls, data) -> dict:
    """What :func:`gnn1000.build.build_model` passes the architecture from the data."""
    sizes = {"in_channels": data.num_features, "out_channels": data.num_outputs, "edge_dim": data.edge_dim}
    if getattr(data, "level", "node") == "graph":
        sizes["readout"] = data.readout
    return {k: v for k, v in sizes.items() if k in inspect.signature(cls).parameters}


def rebuilds(model: torch.nn.Module, args: dict, data) -> bool:
    """Whether ``type(model)(**args)``, sized for ``data``, has ``model``'s parameter and buffer shapes."""
    def shapes(module):
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    try:
        with torch.device("meta"):  # no memory, no initialisation cost
            rebuilt = type(model)(**args, **_sizes(type(model), data))
    except Exception:  # an argument read back wrongly fails the constructor: not rebuildable
        return False
    return shapes(rebuilt) == shapes(model)


def describe(model: torch.nn.Module, data, sampler, settings: ExperimentConfig,
             warn: Callable[[str], None]) -> tuple[ExperimentConfig, str]:
    """``settings`` naming what was built (architecture, dataset, sampler), and config.gin's text."""
    inner = model.model if isinstance(model, Encoded) else model
    architecture = registry_name("architectures", inner)
    source = getattr(data, "source", None)
    names = {"architecture": architecture or f"{type(inner).__module__}:{type(inner).__qualname__}",
             "dataset": source[0] if source else settings.dataset}
    if sampler is not None:
        names["sampler"] = registry_name("samplers", sampler) or settings.sampler
    settings = dataclasses.replace(settings, **names)
    lines = [f"{HEADER}: the registry names of what it trained and",
             "# the arguments read back from the objects; gnn1000 evaluate / predict / train --resume rebuild it."]
    problems = []
    if architecture is None:
        problems.append(f"{names['architecture']} is not a registered architecture: the CLI cannot rebuild it")
    else:
        args, unread = model_arguments(inner)
        if unread:
            lines.append(f"# Not readable from the model or not a gin literal, so at their defaults: "
                         f"{', '.join(unread)}.")
        if not rebuilds(inner, args, data):
            problems.append(f"the {architecture} arguments read back from the model do not rebuild its parameter "
                            f"shapes (unreadable: {', '.join(unread) or 'none'}): the CLI cannot load its weights")
    if source is None:
        problems.append(f"the dataset's options were not recorded (build it with gnn1000.data.load_dataset("
                        f"{settings.dataset!r}, ...)): the CLI rebuilds {settings.dataset!r} with its defaults")
    for problem in problems:
        warn(f"warning: config.gin of this Python-built run: {problem}.")
        lines.append(f"# WARNING: {problem}.")
    lines += [f"experiment.{f.name} = {getattr(settings, f.name)!r}" for f in dataclasses.fields(settings)
              if _literal(getattr(settings, f.name))]
    if source is not None:
        lines += [f"{registry.gin_name(source[0])}.{k} = {v!r}" for k, v in source[1].items()]
    if architecture is not None:
        lines += [f"{registry.gin_name(architecture)}.{k} = {v!r}" for k, v in args.items()]
    if sampler is not None and settings.sampler is not None and registry_name("samplers", sampler):
        lines += [f"{registry.gin_name(settings.sampler)}.{k} = {v!r}" for k, v in arguments(sampler)[0].items()]
    return settings, "\n".join(lines) + "\n"
