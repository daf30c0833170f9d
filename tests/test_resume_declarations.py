"""What may change on ``--resume`` (and in ``evaluate --bind``) beyond the loop's own settings is
declared by the plugins at registration, not named in the core: a third-party sampler's
evaluation-only options and a third-party schedule fitted to the epoch count are honoured alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnn1000 import registry, resume
from gnn1000.errors import ConfigError, normalize


@pytest.fixture
def third_party(monkeypatch):
    """A sampler and a schedule as another distribution would register them, for this test only."""
    for kind, name in (("samplers", "my_views"), ("schedulers", "my_decay")):
        monkeypatch.setitem(registry._entries[kind], normalize(name), None)  # removed again afterwards

    @registry.register("samplers", "my_views", evaluation_options=("views",))
    class MyViews:
        def __init__(self, parts: int = 2, views: int = 1):
            self.parts, self.views = parts, views

    @registry.register("schedulers", "my_decay", fitted_to_epochs=True)
    def my_decay(optimizer, *, epochs, mode="max"):
        return None


def run_config(sampler: str, scheduler: str = "none") -> str:
    return (f"experiment.epochs = 3\nexperiment.sampler = {sampler!r}\nexperiment.scheduler = {scheduler!r}\n"
            f"my_views.parts = 2\n")


def test_a_sampler_declares_the_options_that_only_change_evaluation(third_party):
    config = run_config("my_views")
    resume.check_evaluation_bindings(config, ["my_views.views = 5"], "config.gin", "gnn1000 evaluate")
    assert resume.check_bindings(config, ["my_views.views = 5"], "config.gin") == {"my_views.views": ("(default)", 5)}
    with pytest.raises(ConfigError, match=r"cannot change my_views\.parts = 4.*my_views\.views"):
        resume.check_evaluation_bindings(config, ["my_views.parts = 4"], "config.gin", "gnn1000 evaluate")
    with pytest.raises(ConfigError, match=r"--resume cannot change my_views\.parts"):
        resume.check_bindings(config, ["my_views.parts = 4"], "config.gin")


def test_a_schedule_fitted_to_the_epochs_keeps_them_on_resume(third_party):
    assert resume.check_bindings(run_config("my_views"), ["experiment.epochs = 5"], "c.gin") == \
        {"experiment.epochs": (3, 5)}
    with pytest.raises(ConfigError, match="not experiment.epochs: a my_decay schedule is fitted to it"):
        resume.check_bindings(run_config("my_views", "my_decay"), ["experiment.epochs = 5"], "c.gin")


def test_the_built_in_declarations_keep_what_resume_allowed_before():
    config = run_config("random_partition", "cosine")
    resume.check_evaluation_bindings(config, ["random_partition.num_views = 4", "random_partition.eval_parts = 2"],
                                     "c.gin", "gnn1000 evaluate")
    with pytest.raises(ConfigError, match="a cosine schedule is fitted to it"):
        resume.check_bindings(config, ["experiment.epochs = 5"], "c.gin")
    assert resume.check_bindings(run_config("random_partition", "step"), ["experiment.epochs = 5"], "c.gin")


def test_the_resume_rules_name_no_plugin():
    source = (Path(resume.__file__)).read_text()
    names = [n for kind in ("samplers", "schedulers") for n in registry.available(kind) if n != "none"]
    assert [n for n in names if f"'{n}" in source or f"{registry.gin_name(n)}." in source] == []
