"""A search file's ``search.*`` bindings: which gin bindings to sample, and how to schedule the trials.

A search file is an ordinary gin config (it includes a runnable model config) plus::

    search.space = {
        'resgnn.dropout': ('uniform', 0.0, 0.5),
        'experiment.lr': ('loguniform', 1e-4, 1e-2),
        'revgnn.num_groups': ('choice', [2, 3, 4]),
    }
    search.num_samples = 16
    search.algorithm = 'optuna'        # or 'random'
    search.scheduler = 'asha'          # or 'pbt', 'fifo'
    search.gpus_per_trial = 0.5        # two trials share a GPU

Each key is a gin binding ``configurable.parameter``; each value names a Ray Tune distribution and
its arguments. Every trial runs the included config with one sample of these bindings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gin
from gin import config_parser
import numpy as np
from ray import tune

from gnn1000 import gin_text
from gnn1000.errors import ConfigError, Gnn1000Error, check_number, check_positive_ints, paragraph

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

ALGORITHMS = {"random": "Ray Tune's random sampling", "optuna": "Optuna's TPE (model-based)"}
SCHEDULERS = {"asha": "stop weak trials early", "pbt": "population-based training",
              "fifo": "run every trial to the end"}
# What PBT may change in a running trial, which then continues from a checkpoint with the new
# value: the loop's step settings a resume may change, and the dropouts (no weights depend on them).
PERTURBABLE_SETTINGS = ("experiment.lr", "experiment.weight_decay", "experiment.grad_clip")
PERTURBABLE_PARAMETERS = ("dropout", "input_dropout", "edge_dropout")


def perturbable(key: str) -> bool:
    """Whether PBT may change the binding ``key`` in a running trial (see :data:`PERTURBABLE_SETTINGS`)."""
    return key in PERTURBABLE_SETTINGS or key.rsplit(".", 1)[-1] in PERTURBABLE_PARAMETERS


@gin.configurable("search")
@dataclass
class SearchConfig:
    """How to search; every field is a gin binding ``search.<field>``."""

    space: dict = field(default_factory=dict)
    num_samples: int = 8
    algorithm: str = "random"  # see ALGORITHMS
    scheduler: str = "asha"  # see SCHEDULERS
    max_concurrent: int = 0  # 0: as many as the cluster's resources hold (see gpus/cpus_per_trial)
    cpus_per_trial: int = 1  # with workers_per_trial > 1: per worker
    gpus_per_trial: float | None = None  # None: 1 when the cluster has GPUs, else 0; per worker as above
    workers_per_trial: int = 1  # > 1: each trial is a data-parallel run of this many Ray Train workers
    perturbation_interval: int = 4  # PBT: epochs between a trial's chances to exploit a better one
    grace_period: int = 5  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: float = 3.0  # ASHA: keep the best 1/reduction_factor at every rung
    max_failures: int = 2  # retries of a crashed trial, each from its last checkpoint
    seed: int | None = 0  # of the sampler, so a search samples the same configs again

    def __post_init__(self):
        if not isinstance(self.space, dict) or not self.space:
            raise ConfigError("search.space must be a non-empty dict of 'configurable.parameter' -> "
                              "(distribution, args...), e.g. {'experiment.lr': ('loguniform', 1e-4, 1e-2)}.")
        for setting, allowed in (("algorithm", ALGORITHMS), ("scheduler", SCHEDULERS)):
            value = getattr(self, setting)
            if value not in allowed:
                listed = "; ".join(f"'{name}' ({what})" for name, what in allowed.items())
                raise ConfigError(f"search.{setting}={value!r} is not one of the choices: {listed}.")
        check_positive_ints("search", num_samples=self.num_samples, cpus_per_trial=self.cpus_per_trial,
                            grace_period=self.grace_period, workers_per_trial=self.workers_per_trial,
                            perturbation_interval=self.perturbation_interval)
        check_number("search", "gpus_per_trial", self.gpus_per_trial, low=0, allow_none=True)
        if self.gpus_per_trial is not None and self.gpus_per_trial > 1 and self.gpus_per_trial % 1:
            raise ConfigError(f"search.gpus_per_trial={self.gpus_per_trial!r}: Ray shares a GPU only in "
                              "fractions below 1; above 1, give a whole number of GPUs.")
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
        self._check_combination()

    def _check_combination(self) -> None:
        """What the algorithm and the scheduler each accept, checked before Ray starts."""
        grid = [key for key, spec in self.space.items() if spec[0] == "grid"]
        if self.algorithm == "optuna" and grid:
            raise ConfigError(f"search.algorithm='optuna' cannot take 'grid' specs ({', '.join(grid)}): Optuna "
                              "samples every value itself. Use ('choice', [...]) for them, or "
                              "search.algorithm='random' to try every grid value.")
        if self.workers_per_trial > 1 and self.scheduler == "pbt":
            raise ConfigError(f"search.workers_per_trial={self.workers_per_trial} cannot be combined with "
                              "search.scheduler='pbt' yet: PBT's exploits of multi-worker trials are untested. "
                              "Use search.scheduler='asha' or 'fifo' for multi-worker trials.")
        if self.scheduler != "pbt":
            return
        if self.algorithm != "random":
            raise ConfigError(f"search.scheduler='pbt' needs search.algorithm='random' (Ray Tune runs no "
                              f"search algorithm under PBT: PBT explores by itself), not {self.algorithm!r}.")
        fixed = [key for key in self.space if not perturbable(key)]
        if fixed:
            raise ConfigError(
                f"search.scheduler='pbt' cannot search {', '.join(fixed)}: PBT changes the searched values of "
                f"a running trial, which then goes on from its checkpoint, so it may only perturb "
                f"{', '.join(PERTURBABLE_SETTINGS)} and any '<architecture>.dropout', '.input_dropout' or "
                f"'.edge_dropout'. "
                f"Bind the others to fixed values, or use search.scheduler='asha' or 'fifo' to search them.")

    def param_space(self) -> dict:
        """The Ray Tune param_space: binding -> Tune distribution."""
        return {key: to_domain(key, spec) for key, spec in self.space.items()}

    def mutations(self) -> dict:
        """PBT's hyperparam_mutations: lists for choices (PBT shifts along them), domains otherwise."""
        return {key: list(spec[1]) if spec[0] in ("choice", "grid") else to_domain(key, spec)
                for key, spec in self.space.items()}


class KeepInRange:
    """PBT's explore step multiplies a number by 0.8 or 1.2 with no bounds; this puts each value back
    into its spec's range, so a dropout never leaves [low, high] (a dropout above 1 would crash)."""

    def __init__(self, space: dict):
        self.bounds = {key: (spec[1], spec[2] - (1 if spec[0].endswith("randint") else 0))
                       for key, spec in space.items() if spec[0] not in ("choice", "grid")}

    def __call__(self, config: dict) -> dict:
        for key, (low, high) in self.bounds.items():
            if key in config:
                config[key] = type(config[key])(min(max(config[key], low), high))
        return config


def _check_key(key) -> None:
    if not isinstance(key, str) or "." not in key or key.startswith("search."):
        raise ConfigError(f"search.space key {key!r} must be a gin binding 'configurable.parameter' "
                          "(for example 'resgnn.dropout'), and not a search.* setting.")
    if key == "experiment.epochs":
        raise ConfigError("search.space cannot sample experiment.epochs: the scheduler decides how many epochs "
                          "each trial gets. Set experiment.epochs to the most any trial may train.")


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


def extreme_values(spec) -> list:
    """The values at the edges of what a spec can sample (every value of a list): where an option's
    allowed range would be crossed first."""
    name, args = spec[0], spec[1:]
    if name in ("choice", "grid"):
        return list(args[0])
    if name in ("randint", "lograndint"):
        return [int(args[0]), int(args[1]) - 1]  # Ray excludes high
    if name in ("quniform", "qloguniform"):
        low, high, q = args
        return [round(low / q) * q, round(high / q) * q]  # Ray rounds each sample to a multiple of q
    return [args[0], math.nextafter(args[1], args[0])]  # high itself is never drawn


def check_sampled_values(space: dict, check) -> None:
    """Refuse a space that can sample a value gnn1000 would refuse, before any trial runs: each key at
    each of its extreme values (the other keys as the search file binds them) goes through
    ``check(params)``, which raises gnn1000's own error for a value it does not allow, as every trial
    drawing it would, one by one, inside Ray."""
    for key, spec in space.items():
        for value in extreme_values(spec):
            try:
                check({key: value})
            except Gnn1000Error as exc:
                raise ConfigError(f"search.space[{key!r}] = {spec!r} can sample {key} = {gin_literal(value)}, "
                                  f"which gnn1000 refuses: {paragraph(exc)} Keep the search space within the "
                                  f"option's allowed values.") from None


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


def without_search(config_text: str) -> str:
    """A flattened search config minus its ``search.*`` bindings: the plain experiment config that
    ``gnn1000 train`` (and a data-parallel trial's workers) accept."""
    lines = config_text.splitlines(keepends=True)
    statements = gin_text.parse(config_text, "the search config").statements
    starts = [st.location.line_num - 1 for st in statements] + [len(lines)]
    dropped = set()
    for st, start, end in zip(statements, starts, starts[1:]):
        if isinstance(st, config_parser.BindingStatement) and st.selector.split(".")[-1] == "search":
            dropped.update(range(start, end))
    return "".join(line for n, line in enumerate(lines) if n not in dropped)
