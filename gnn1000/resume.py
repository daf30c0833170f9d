"""``--resume`` with bindings: which settings may change, what changed, and applying it.

A checkpoint fixes the model's shape, its data and the random draws that made it; what may change
without breaking that is how long and how fast it trains and how it is evaluated. Everything else is
refused before anything in the run directory is touched, naming each binding.
"""

from __future__ import annotations

from datetime import datetime, timezone

from gnn1000 import recorded, registry
from gnn1000.errors import ConfigError, Gnn1000Error
from gnn1000.settings import ExperimentConfig

# What may change when a trained model is only evaluated (gnn1000 evaluate / predict --bind); each
# sampler adds the options it registers as ``evaluation_options`` (how many views, parts...).
EVALUATION = (
    "experiment.device", "experiment.precision", "experiment.batch_size",
    "data.root", "data.cache",
)
# What may change on resume: the loop's length and step, and evaluation (read fresh each epoch).
MUTABLE = (
    "experiment.epochs", "experiment.lr", "experiment.weight_decay", "experiment.grad_clip",
    "experiment.patience", "experiment.loggers", "experiment.deterministic",
    *EVALUATION,
)


def _declared(kind: str, name: str, what: str, default=()):
    """What the plugin registered as ``name`` declared at registration (``register(kind, name, what=...)``)."""
    try:
        return registry.entry(kind, name).info.get(what, default)
    except Gnn1000Error:  # an unknown or broken plugin: the configuration layer names it when it builds
        return default


def evaluation_options(sampler: str) -> tuple[str, ...]:
    """``<sampler>.<option>`` for each option the sampler declares changes only how it evaluates."""
    return tuple(f"{registry.gin_name(sampler)}.{option}"
                 for option in _declared("samplers", sampler, "evaluation_options"))


def _sampler_options(config_text: str, keys, source: str) -> tuple[str, ...]:
    """The evaluation options of the run's sampler and of any sampler ``keys`` name."""
    samplers = {str(bound_values(config_text, source).get("experiment.sampler", ExperimentConfig.sampler))}
    samplers |= {entry.name for key in keys for entry in registry.find_by_gin_name(key.rpartition(".")[0], "samplers")}
    return tuple(option for sampler in sorted(samplers) for option in evaluation_options(sampler))


def fitted_to_epochs(scheduler: str) -> bool:
    """Whether the schedule's shape is fixed by experiment.epochs when the run starts (it declares
    ``fitted_to_epochs=True`` at registration, as ``cosine`` does)."""
    return bool(_declared("schedulers", scheduler, "fitted_to_epochs", False))


def bound_values(text: str, source: str) -> dict[str, object]:
    """``scope/configurable.parameter`` (or a macro's name) -> value, for every binding in a gin text."""
    from gin import config_parser  # here: the loop imports this module, and a Python-built run has no gin

    from gnn1000 import gin_text

    values = {}
    for st in gin_text.parse(text, source).statements:
        if isinstance(st, config_parser.BindingStatement):
            selector = f"{st.scope}/{st.selector}" if st.scope else st.selector
            values[f"{selector}.{st.arg_name}" if st.arg_name else selector] = st.value
    return values


def _short(key: str) -> str:
    """'gnn1000.experiment.lr' and 'experiment.lr' are one setting."""
    selector, _, arg = key.rpartition(".")
    return f"{selector.split('.')[-1]}.{arg}" if selector else key


def changed(old_text: str, new_text: str, source: str) -> dict[str, tuple]:
    """``key -> (old, new)`` for every setting ``new_text`` binds to another value than ``old_text``."""
    old = {_short(k): v for k, v in bound_values(old_text, source).items()}
    new = {_short(k): v for k, v in bound_values(new_text, "the new settings").items()}
    if recorded.HEADER in old_text:  # a Python-built run recorded what it read back, gin's config lists every default
        new = {k: v for k, v in new.items() if k in old or k in MUTABLE}
    return {key: (old.get(key, "(default)"), value) for key, value in new.items()
            if old.get(key, "(default)") != value}


def check_bindings(config_text: str, bindings: list[str], source: str, also: tuple[str, ...] = ()) -> dict[str, tuple]:
    """The settings ``bindings`` change against a run's config.gin, as ``key -> (old, new)``; raise,
    naming each, if any of them may not change on resume (``also``: more that may, e.g. what PBT perturbs)."""
    changes = changed(config_text, "\n".join(bindings), source)
    mutable = (*MUTABLE, *_sampler_options(config_text, changes, source), *also)
    refused = [key for key in changes if key not in mutable]
    scheduler = str(bound_values(config_text, source).get("experiment.scheduler", ExperimentConfig.scheduler))
    scheduled = fitted_to_epochs(scheduler)
    if scheduled and "experiment.epochs" in changes:
        refused.append("experiment.epochs")  # the restored schedule's decay is fitted to the old length
    if refused:
        not_epochs = f" (not experiment.epochs: a {scheduler} schedule is fitted to it)" if scheduled else ""
        listed = "; ".join(f"{key} = {changes[key][1]!r} (the run has {changes[key][0]!r})" for key in refused)
        raise ConfigError(
            f"--resume cannot change {listed}: the checkpoint was made with the run's own value, so the "
            f"model, data or random draws would no longer match it. Settings that may change on resume: "
            f"{', '.join(mutable)}{not_epochs}. To train with the new value, start a new run, e.g. "
            f"'gnn1000 train {source} --run-dir NEW_DIR --bind ...'. Nothing in the run directory was changed.")
    return changes


def check_evaluation_bindings(config_text: str, bindings: list[str], source: str, command: str) -> None:
    """Refuse, naming each, bindings that change anything but how a trained model is evaluated."""
    changes = changed(config_text, "\n".join(bindings), source)
    evaluation = (*EVALUATION, *_sampler_options(config_text, changes, source))
    refused = [key for key in changes if key not in evaluation]
    if refused:
        listed = "; ".join(f"{key} = {changes[key][1]!r} (the run has {changes[key][0]!r})" for key in refused)
        raise ConfigError(
            f"{command} --bind cannot change {listed}: the trained weights were made with the run's own "
            f"value. Only evaluation settings may be bound: {', '.join(evaluation)}. To train with another "
            f"value, start a new run with 'gnn1000 train {source} --run-dir NEW_DIR --bind ...'.")


def check_epochs(epochs: int, done: int, run_path) -> None:
    if epochs < done:
        raise ConfigError(f"experiment.epochs={epochs} but {run_path} has already trained {done} epochs; "
                          f"give experiment.epochs >= {done} (equal: just rewrite its summary).")


def apply_to_optimizer(optimizer, scheduler, lr: float, weight_decay: float) -> None:
    """The restored optimizer state carries the old lr and weight decay: take the config's. Under a
    schedule the new lr becomes its base rate, and the current rate keeps its place in the schedule."""
    for group in optimizer.param_groups:
        base = group.get("initial_lr", group["lr"])
        group["lr"] = group["lr"] * (lr / base) if base else lr
        if "initial_lr" in group:
            group["initial_lr"] = lr
        if "weight_decay" in group:
            group["weight_decay"] = weight_decay
    for schedule in [scheduler, *getattr(scheduler, "_schedulers", [])]:  # SequentialLR holds others
        if hasattr(schedule, "base_lrs"):
            schedule.base_lrs = [lr] * len(schedule.base_lrs)


def resume_entry(after_epoch: int, changes: dict[str, tuple], checkpoint: str) -> dict:
    return {"after_epoch": after_epoch, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": checkpoint,
            "changed": {key: {"from": old, "to": new} for key, (old, new) in changes.items()}}


def config_header(entries: list[dict]) -> str:
    """The comment block at the top of config.gin that says what changed at which epoch."""
    if not entries:
        return ""
    lines = ["# This run was resumed; the settings below are the ones it uses from the last resume on.",
             "# What changed at each resume (also in resumes.jsonl):"]
    for entry in entries:
        changed = ", ".join(f"{k}: {v['from']!r} -> {v['to']!r}" for k, v in entry["changed"].items()) or "nothing"
        lines.append(f"#   after epoch {entry['after_epoch']} ({entry['at']}): {changed}")
    return "\n".join(lines) + "\n\n"
