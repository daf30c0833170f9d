"""Callbacks: the Trainer's hooks, in Python and as registered plugins from another distribution,
and a callback's state surviving a kill and ``--resume`` through the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import pytest
import torch
from helpers import TINY, bind_args, install_distributions, run_gnn1000, write_distribution

from gnn1000 import checkpoint

fcntl = pytest.importorskip("fcntl")

COUNTER = textwrap.dedent('''
    import os
    import signal

    from gnn1000.callbacks import Callback


    class EpochCounter(Callback):
        """Counts epochs by ``increment`` (a gin option); the count is its checkpointed state.
        Appends "epoch count" to $COUNTER_FILE; SIGKILLs its process as epoch $KILL_AT starts."""

        state_key = "epoch_counter"

        def __init__(self, increment=1):
            self.increment = increment
            self.count = 0

        def on_epoch_end(self, trainer, record):
            self.count += self.increment
            with open(os.environ["COUNTER_FILE"], "a") as f:
                f.write(f"{trainer.epoch} {self.count}\\n")

        def on_epoch_start(self, trainer):
            if str(trainer.epoch) == os.environ.get("KILL_AT"):
                os.kill(os.getpid(), signal.SIGKILL)

        def state_dict(self):
            return {"count": self.count}

        def load_state_dict(self, state):
            self.count = state["count"]
''')


@pytest.fixture(scope="module")
def counter_site(tmp_path_factory):
    """A real distribution declaring the callback ``epoch_counter`` in ``gnn1000.callbacks``."""
    root = tmp_path_factory.mktemp("callback-plugin")
    source = write_distribution(root, "gnn1000-counter-plugin", "gnn1000_counter_plugin", {"counter.py": COUNTER},
                                {"epoch_counter": "gnn1000_counter_plugin.counter:EpochCounter"},
                                group="gnn1000.callbacks")
    return install_distributions(root / "site", source)


def test_a_callback_from_another_distribution_keeps_its_state_through_a_kill_and_resume(counter_site, tmp_path):
    run, counts = tmp_path / "run", tmp_path / "counts.txt"
    env = {"PYTHONPATH": str(counter_site), "COUNTER_FILE": str(counts), "OMP_NUM_THREADS": "1"}
    listing = run_gnn1000(["list", "callbacks"], env_extra=env)
    assert listing.returncode == 0, listing.stderr
    assert "epoch_counter" in listing.stdout and "distribution gnn1000-counter-plugin 0.1.0" in listing.stdout

    bindings = [*TINY, "experiment.epochs = 4", "experiment.callbacks = ['epoch_counter']",
                "epoch_counter.increment = 2"]
    killed = run_gnn1000(["train", "--run-dir", str(run), "--no-progress", *bind_args(bindings)],
                         env_extra={**env, "KILL_AT": "3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert checkpoint.load(run / "checkpoints" / "last.pt")["callbacks"]["epoch_counter"] == {"count": 4}

    resumed = run_gnn1000(["train", "--resume", str(run), "--no-progress"], env_extra=env)
    assert resumed.returncode == 0, resumed.stderr
    # the count goes on from the checkpoint's (4 after epoch 2), not from a new callback's 0
    assert counts.read_text().split("\n")[:-1] == ["1 2", "2 4", "3 6", "4 8"]
    assert "epoch_counter.increment = 2" in (run / "config.gin").read_text()
    assert json.loads((run / "summary.json").read_text())["config"]["callbacks"] == ["epoch_counter"]


def test_trainer_calls_python_callbacks_in_order_without_a_run_directory(one_thread):
    """``Trainer(..., callbacks=[...])`` alone: the step loop with no files, hooks in their order, and
    ``should_stop`` set by a callback ends the fit after that epoch."""
    from gnn1000.callbacks import Callback
    from gnn1000.registry import resolve
    from gnn1000.settings import ExperimentConfig
    from gnn1000.trainer import Trainer

    torch.manual_seed(0)
    data = resolve("datasets", "synthetic-proteins")(num_nodes=60, avg_degree=4, num_tasks=2)
    model = resolve("architectures", "resgnn")(data.num_features, 8, data.num_outputs, 2, edge_dim=data.edge_dim)

    class Recorder(Callback):
        def __init__(self, name, calls, order=0):
            self.name, self.calls, self.order = name, calls, order

        def on_fit_start(self, trainer):
            self.calls.append((self.name, "fit_start"))

        def on_epoch_start(self, trainer):
            self.calls.append((self.name, "epoch_start", trainer.epoch))

        def on_after_optimizer_step(self, trainer, step, loss, norm):
            self.calls.append((self.name, "step", trainer.epoch, step, bool(torch.isfinite(loss))))

        def on_evaluate_end(self, trainer, predictions):
            self.calls.append((self.name, "evaluated", sorted(predictions)))

        def on_epoch_end(self, trainer, record):
            self.calls.append((self.name, "epoch_end", record["epoch"], trainer.history[-1] is record))
            trainer.should_stop = trainer.epoch == 2

        def on_fit_end(self, trainer, summary):
            self.calls.append((self.name, "fit_end", summary["epochs"]))

    calls = []
    trainer = Trainer(model, data, resolve("samplers", "full_batch")(), ExperimentConfig(epochs=5, device="cpu"),
                      callbacks=[Recorder("late", calls, order=10), Recorder("early", calls)], progress=False)
    summary = trainer.fit()
    assert summary["epochs"] == 2 and summary["stopped_early"]
    expected = [("fit_start",)]
    for e in (1, 2):  # full batch: one optimizer step per epoch
        expected += [("epoch_start", e), ("step", e, 0, True), ("evaluated", ["test", "train", "valid"]),
                     ("epoch_end", e, True)]
    expected.append(("fit_end", 2))
    assert calls == [(who, *call) for call in expected for who in ("early", "late")]  # by order, not as given


def test_a_hook_that_raises_reaches_every_callbacks_on_exception_and_the_caller(one_thread, tmp_path):
    from gnn1000.callbacks import Callback
    from gnn1000.experiment import Experiment
    from gnn1000.registry import resolve
    from gnn1000.settings import ExperimentConfig

    data = resolve("datasets", "synthetic-proteins")(num_nodes=60, avg_degree=4, num_tasks=2)
    model = resolve("architectures", "resgnn")(data.num_features, 8, data.num_outputs, 2, edge_dim=data.edge_dim)
    seen = []

    class Fails(Callback):
        def on_epoch_end(self, trainer, record):
            if trainer.epoch == 2:
                raise RuntimeError("the callback failed")

    class Hears(Callback):
        def on_exception(self, trainer, exc):
            seen.append(str(exc))

    experiment = Experiment(model, data, resolve("samplers", "full_batch")(), ExperimentConfig(epochs=3, device="cpu"),
                            tmp_path / "run", callbacks=[Fails(), Hears()], progress=False, log=lambda _: None)
    with pytest.raises(RuntimeError, match="the callback failed"):
        experiment.fit()
    assert seen == ["the callback failed"]
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1  # epoch 2 was not committed
    fd = os.open(tmp_path / "run" / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the fit's session released the run when it failed
    finally:
        os.close(fd)


def test_a_run_written_before_callbacks_evaluates_predicts_and_resumes(tmp_path, one_thread, capsys):
    """tests/data/run_before_callbacks: 2 epochs with ``ema_decay`` trained by the code before the
    Trainer/Callback split (its checkpoints have no ``callbacks`` entry); the average goes on."""
    import shutil
    from pathlib import Path

    from gnn1000.cli import main

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "run_before_callbacks", run)
    before = json.loads((run / "summary.json").read_text())
    assert "callbacks" not in checkpoint.load(run / "checkpoints" / "last.pt")
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["valid_rocauc"] == before["best"]["valid_rocauc"]
    assert main(["predict", str(run)]) == 0 and (run / "predictions.csv").is_file()
    assert main(["train", "--resume", str(run), "--no-progress", "--bind", "experiment.epochs = 3"]) == 0
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 3 and [r["epoch"] for r in state["history"]] == [1, 2, 3]
    assert int(state["averaged"]["n_averaged"]) == 3  # one step per epoch: continued, not restarted
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3
