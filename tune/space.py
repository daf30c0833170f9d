"""A search file's ``search.*`` bindings: which gin bindings to sample, and how to schedule the trials.

A search file is an ordinary gin config (it includes a runnable model config) plus::

    search.space = {
        'resgnn.dropout': ('uniform', 0.0, 0.5),
        'experiment.lr': ('loguniform', 1e-4, 1e-2),
        'revgnn.num_groups': ('choice', [2, 3, 4]),
    }
    search.num_samples = 16

Each key is a gin binding ``configurable.parameter``; each value names a Ray Tune distribution and
its arguments. Every trial runs the included config with one sample of these bindings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gin
import numpy as np
from ray import tune

from gnn1000.errors import ConfigError, check_positive_ints

# spec name -> (Ray Tune sampler, what its arguments are); grid tries every value in every sample.
DISTRIBUTIONS = {
    "choice": (tune.choice, "a list of values"),
    "grid": (tune.grid_search, "a list of values, each tried (times num_samples)"),
    "uniform": (tune.uniform, "low, high"),
    "quniform": (tune.quniform, "low, high, q"),
    "loguniform": (tune.loguniform, "low, high"),
    "qloguniform": (tune.qloguniform, "low, high, q"),
    "randint": (tune.randint, "low, high (high excluded)"),
    "lograndint": (tune.lograndint, "low, high (high excluded)"),
}


@gin.configurable("search")
@dataclass
class SearchConfig:
    """How to search; every field is a gin binding ``search.<field>``."""

    space: dict = field(default_factory=dict)
    num_samples: int = 8
    max_concurrent: int = 0  # 0: as many as the cluster has GPUs (or CPUs, without GPUs)
    cpus_per_trial: int = 1
    grace_period: int = 5  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: float = 3.0  # ASHA: keep the best 1/reduction_factor at every rung
    max_failures: int = 2  # retries of a crashed trial, each from its last checkpoint
    seed: int | None = 0  # of the sampler, so a search samples the same configs again

    def __post_init__(self):
        if not isinstance(self.space, dict) or not self.space:
            raise ConfigError("search.space must be a non-empty dict of 'configurable.parameter' -> "
                              "(distribution, args...), e.g. {'experiment.lr': ('loguniform', 1e-4, 1e-2)}.")
        check_positive_ints("search", num_samples=self.num_samples, cpus_per_trial=self.cpus_per_trial,
                            grace_period=self.grace_period)
        if not isinstance(self.max_concurrent, int) or self.max_concurrent < 0:
            raise ConfigError(f"search.max_concurrent={self.max_concurrent!r} must be 0 (follow the "
                              "cluster's GPUs or CPUs) or a positive integer.")
        if not self.reduction_factor > 1:
            raise ConfigError(f"search.reduction_factor={self.reduction_factor!r} must be greater than 1.")
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ConfigError(f"search.max_failures={self.max_failures!r} must be -1 (retry forever), "
                              "0 or a positive integer.")
        for key, spec in self.space.items():
            _check_key(key)
            _check_spec(key, spec)

    def param_space(self) -> dict:
        """The Ray Tune param_space: binding -> Tune distribution."""
        return {key: to_domain(key, spec) for key, spec in self.space.items()}


def _check_key(key) -> None:
    if not isinstance(key, str) or "." not in key or key.startswith("search."):
        raise ConfigError(f"search.space key {key!r} must be a gin binding 'configurable.parameter' "
                          "(for example 'resgnn.dropout'), and not a search.* setting.")
    if key == "experiment.epochs":
        raise ConfigError("search.space cannot sample experiment.epochs: ASHA decides how many epochs each "
                          "trial gets. Set experiment.epochs to the most any trial may train.")


def _check_spec(key: str, spec) -> None:
    allowed = "; ".join(f"('{name}', {args})" for name, (_, args) in DISTRIBUTIONS.items())
    if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in DISTRIBUTIONS:
        raise ConfigError(f"search.space[{key!r}] = {spec!r} is not a distribution. Allowed: {allowed}.")
    name, args = spec[0], spec[1:]
    if name in ("choice", "grid"):
        if len(args) != 1 or not isinstance(args[0], (list, tuple)) or not args[0]:
            raise ConfigError(f"search.space[{key!r}] = {spec!r}: '{name}' takes one non-empty list, "
                              f"e.g. ('{name}', [2, 3, 4]).")
        return
    expected = 3 if name.startswith("q") else 2
    if len(args) != expected or not all(isinstance(a, (int, float)) for a in args):
        raise ConfigError(f"search.space[{key!r}] = {spec!r}: '{name}' takes {DISTRIBUTIONS[name][1]}.")
    if not args[0] < args[1] or ("log" in name and args[0] <= 0):
        raise ConfigError(f"search.space[{key!r}] = {spec!r}: need low < high"
                          f"{' and low > 0' if 'log' in name else ''}.")


def to_domain(key: str, spec):
    _check_spec(key, spec)
    sampler = DISTRIBUTIONS[spec[0]][0]
    if spec[0] in ("choice", "grid"):
        return sampler(list(spec[1]))
    return sampler(*spec[1:])


def candidate_values(spec) -> list | None:
    """Every value a spec can give, when that is a short list (choice, grid, small int ranges)."""
    name, args = spec[0], spec[1:]
    if name in ("choice", "grid"):
        return list(args[0])
    if name in ("randint", "lograndint") and args[1] - args[0] <= 64:
        return list(range(int(args[0]), int(args[1])))
    return None


def check_group_divisibility(space: dict, bound) -> None:
    """Every sampled ``<arch>.num_groups`` must divide that architecture's hidden_channels.

    ``bound(selector)`` returns the value the base config binds (or None). Checking before the search
    starts beats a trial crashing for every group count that does not divide the channels.
    """
    for key, spec in space.items():
        scope, param = key.rsplit(".", 1)
        if param != "num_groups":
            continue
        groups = candidate_values(spec)
        if groups is None:
            raise ConfigError(f"search.space[{key!r}] = {spec!r}: sample group counts from a list "
                              f"(('choice', [2, 3, 4])) so that every one can be checked to divide "
                              f"{scope}.hidden_channels.")
        channel_key = f"{scope}.hidden_channels"
        if channel_key in space:
            channels = candidate_values(space[channel_key])
            if channels is None:
                raise ConfigError(f"search.space[{channel_key!r}] must be a list (('choice', [...])) when "
                                  f"{key} is searched too, so that every pair can be checked.")
        else:
            channels = [bound(channel_key)]
            if channels[0] is None:
                raise ConfigError(f"{key} is searched but {channel_key} is not bound; bind it to a "
                                  f"multiple of {math.lcm(*map(int, groups))}.")
        bad = [(c, g) for c in channels for g in groups if int(c) % int(g)]
        if bad:
            lcm = math.lcm(*map(int, groups))
            pairs = ", ".join(f"{g} does not divide {c}" for c, g in bad)
            raise ConfigError(f"{key} choices {groups} must all divide {channel_key} ({pairs}). Use "
                              f"hidden_channels that are multiples of {lcm}.")


def gin_literal(value) -> str:
    """A sampled value written as gin (Python) source; numpy scalars become plain Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        items = ", ".join(gin_literal(v) for v in value)
        return f"[{items}]" if isinstance(value, list) else f"({items}{',' if len(value) == 1 else ''})"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    raise ConfigError(f"Cannot write sampled value {value!r} ({type(value).__name__}) as a gin binding; "
                      "search over numbers, strings, booleans, None or lists of them.")


def bindings_for(params: dict) -> list[str]:
    """One trial's sampled values as gin binding lines."""
    return [f"{key} = {gin_literal(value)}" for key, value in sorted(params.items())]
