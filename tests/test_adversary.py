"""Runs that survive the adversary (issues #24, #25): artifacts that would run code, planted symlinks,
a kill between best.pt and last.pt, non-finite weights, unchecked options, damaged run directories and
a filesystem that says no.

Every case checks what the bad-input suite checks (exit code 2, one paragraph, no traceback, the run
directory's checksums before and after) and, for the security cases, that a victim file outside the run
keeps its content and that no marker file was created by unpickled code.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from gnn1000 import safefs
from gnn1000.cli import main as cli_main

from helpers import TINY, bind_args
from shared_data import DATA_ROOT
from test_bad_inputs import NEW, checksums, copy_of_run, finished_run, nothing, run_with, write  # noqa: F401  a fixture

VICTIM = b"a file outside the run that must keep this content\n"


class Payload:
    """Unpickling this creates ``path``: what a malicious pickle in a shared artifact would do."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def malicious(path: Path, marker: Path, **extra) -> None:
    torch.save({"epoch": 1, "model": {"w": Payload(marker)}, **extra}, path)


# -- setups: each plants its condition in a copy of the finished run -----------------------------------

def link(name: str, to: str = "victim"):
    """A symlink ``name`` in the run, to the victim file beside it (or to another run's file)."""
    def change(run: Path):
        target = run.parent / to
        planted = run / name
        planted.unlink(missing_ok=True)
        planted.symlink_to(target)
    return change


def _other_runs_last(run: Path):
    other = run.parent / "other-run"
    shutil.copytree(run, other)
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "last.pt").symlink_to(other / "checkpoints" / "last.pt")


def _evil_checkpoint(name: str, remove_prev: bool = False):
    def change(run: Path):
        malicious(run / "checkpoints" / name, run.parent / "marker")
        if remove_prev:
            (run / "checkpoints" / "last.prev.pt").unlink()
    return change


def _checkpoints_from_another_run(run: Path):
    """This run's checkpoints replaced by copies of another run's (plain files, not links)."""
    other = run.parent / "other-run"
    shutil.copytree(run, other)
    (other / "run-id").write_text("0" * 32 + "\n")
    for name in ("last.pt", "last.prev.pt", "best.pt"):
        state = torch.load(other / "checkpoints" / name, weights_only=True)
        state["run_id"] = "0" * 32
        torch.save(state, run / "checkpoints" / name)


def _nan_best(run: Path):
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    for tensor in state["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(state, run / "checkpoints" / "best.pt")


def _garbage_metrics(run: Path):
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text(lines[0] + "garbage, not a record\n" + "".join(lines[1:]))


def _wider_config(run: Path):
    config = run / "config.gin"
    config.write_text(config.read_text().replace("hidden_channels = 16", "hidden_channels = 24"))


def _model_not_a_dict(run: Path):
    torch.save({"epoch": 1, "model": [1, 2, 3]}, run / "checkpoints" / "best.pt")


def repeated_parent(tmp, run):
    """A --seeds parent: its manifest, config and one finished seed run."""
    parent = tmp / "run"
    parent.mkdir()
    shutil.copytree(run, parent / "seed-0")
    shutil.copy(run / "config.gin", parent / "config.gin")
    (parent / "repeats.json").write_text('{"kind": "seeds", "repeats": [["seed-0", []]]}\n')
    return parent


RUN = "{tmp}/run"
TUNE = ["tune", "{tmp}/search.gin", "--storage", "{tmp}/new"]


def search_file(space: str, *lines: str) -> bytes:
    """A tiny search over ``space`` (the dict's items, as gin text)."""
    return "\n".join(["include 'tune/resgnn.gin'", "synthetic_proteins.num_nodes = 200", "experiment.epochs = 2",
                      *lines, f"search.space = {{{space}}}", ""]).encode()


CASES = [
    # security: nothing loaded runs code (the marker must never appear)
    ("evil best.pt", run_with(_evil_checkpoint("best.pt")), ["evaluate", RUN], "best.pt cannot be read"),
    ("evil last.pt", run_with(_evil_checkpoint("last.pt", remove_prev=True)), ["train", "--resume", RUN, "--no-progress"], "last.pt cannot be read"),
    ("evil last.pt predict", run_with(_evil_checkpoint("last.pt")), ["predict", RUN, "--checkpoint", "last"], "last.pt cannot be read"),
    # planted symlinks: refused, the victim untouched
    ("symlink .lock", run_with(link(".lock")), ["train", "--resume", RUN, "--no-progress"], ".lock is a symbolic link"),
    ("symlink last.pt tmp", run_with(link("checkpoints/.last.pt.tmp")), ["train", "--resume", RUN, "--no-progress", "--bind", "experiment.epochs = 4"], ".last.pt.tmp is a symbolic link"),
    ("symlink metrics tmp", run_with(link(".metrics.jsonl.tmp")), ["train", "--resume", RUN, "--no-progress", "--bind", "experiment.epochs = 4"], ".metrics.jsonl.tmp is a symbolic link"),
    ("symlink summary.json", run_with(link("summary.json")), ["train", "--resume", RUN, "--no-progress", "--bind", "experiment.epochs = 4"], "summary.json is a symbolic link"),
    ("symlink last.pt other run", run_with(_other_runs_last), ["train", "--resume", RUN, "--no-progress", "--bind", "experiment.epochs = 4"], "last.pt is a symbolic link"),
    ("symlink best.pt evaluate", run_with(link("checkpoints/best.pt")), ["evaluate", RUN], "best.pt is a symbolic link"),
    ("symlink predictions.csv", run_with(link("predictions.csv")), ["predict", RUN], "predictions.csv is a symbolic link"),
    ("symlink curves.png", run_with(link("curves.png")), ["plot", RUN], "curves.png is a symbolic link"),
    ("dangling run-dir", lambda tmp, run: (tmp / "gone").symlink_to(tmp / "nowhere") or tmp / "gone", ["train", "--run-dir", "{tmp}/gone", *bind_args(TINY)], "is a symbolic link to {tmp}/nowhere, which does not exist"),
    ("resume another run's last.pt", run_with(_checkpoints_from_another_run), ["train", "--resume", RUN, "--no-progress", "--bind", "experiment.epochs = 4"], "belongs to another run (run id 00000000000000000000000000000000"),
    ("evaluate another run's best.pt", run_with(_checkpoints_from_another_run), ["evaluate", RUN], "best.pt belongs to another run"),
    # non-finite weights: nothing computed, nothing written, the right diagnosis
    ("predict NaN best.pt", run_with(_nan_best), ["predict", RUN], "holds non-finite weights"),
    ("evaluate NaN best.pt", run_with(_nan_best), ["evaluate", RUN], "holds non-finite weights"),
    # options checked where they enter
    ("step.gamma<0", nothing, [*NEW, "--bind", "experiment.scheduler = 'step'", "--bind", "step.gamma = -1.0"], "step.gamma=-1.0 is not allowed: it must be a number > 0"),
    ("step.step_size 0", nothing, [*NEW, "--bind", "experiment.scheduler = 'step'", "--bind", "step.step_size = 0"], "step.step_size=0 must be a positive integer"),
    ("plateau.factor 2", nothing, [*NEW, "--bind", "experiment.scheduler = 'plateau'", "--bind", "plateau.factor = 2.0"], "plateau.factor=2.0 is not allowed: it must be a number in (0, 1)"),
    ("adam.betas 1.5", nothing, [*NEW, "--bind", "adam.betas = (1.5, 0.9)"], "adam.betas[0]=1.5 is not allowed: it must be a number in [0, 1)"),
    ("sgd.momentum<0", nothing, [*NEW, "--bind", "experiment.optimizer = 'sgd'", "--bind", "sgd.momentum = -1.0"], "sgd.momentum=-1.0 is not allowed: it must be a number >= 0"),
    ("weight_tied 'False'", nothing, [*NEW, "--bind", "resgnn.weight_tied = 'False'"], "resgnn.weight_tied='False' is not allowed: it must be True or False (write False without quotes in gin)"),
    ("checkpoint 'yes'", nothing, [*NEW, "--bind", "resgnn.checkpoint = 'yes'"], "resgnn.checkpoint='yes' is not allowed: it must be True or False"),
    ("dropout '0.5'", nothing, [*NEW, "--bind", "resgnn.dropout = '0.5'"], "resgnn.dropout='0.5' is not a number"),
    ("edge_dropout 1", nothing, [*NEW, "--bind", "resgnn.edge_dropout = 1.0"], "resgnn.edge_dropout=1.0 is out of range"),
    ("input_dropout<0", nothing, [*NEW, "--bind", "resgnn.input_dropout = -0.1"], "resgnn.input_dropout=-0.1 is out of range"),
    ("train ''", nothing, ["train", "", "--run-dir", "{tmp}/new"], "CONFIG is an empty string"),
    ("run-dir ''", nothing, ["train", "--run-dir", "", *bind_args(TINY)], "--run-dir is an empty string"),
    ("resume ''", nothing, ["train", "--resume", ""], "--resume is an empty string"),
    ("predict --out ''", copy_of_run, ["predict", RUN, "--out", ""], "--out is an empty string"),
    # what would hang: a size check before building, the worker count against the real CPUs
    ("num_layers 1e9", nothing, [*NEW, "--bind", "resgnn.num_layers = 1000000000"], "resgnn.num_layers=1,000,000,000 with blocks 16 channels wide needs at least"),
    ("workers 99", nothing, [*NEW, "--workers", "99"], "--workers 99: this machine gives gnn1000"),
    # misleading messages
    ("resume typo", copy_of_run, ["train", "--resume", RUN, "--bind", "resgnn.num_layer = 5"], "Did you mean num_layers"),
    ("config includes itself", write("self.gin", b"include 'self.gin'\nexperiment.epochs = 1\n"), ["train", "{tmp}/self.gin", "--run-dir", "{tmp}/new"], "self.gin includes itself"),
    ("tu name with ../", nothing, [*NEW, "--bind", "experiment.dataset = 'tu'", "--bind", "tu.name = '../../MUTAG'"], "tu.name='../../MUTAG' is not a TU dataset name"),
    ("evaluate seeds parent", repeated_parent, ["evaluate", RUN], "holds repeated runs (--seeds/--folds), one model each: give gnn1000 evaluate one of them ({tmp}/run/seed-0)"),
    ("predict seeds parent", repeated_parent, ["predict", RUN], "give gnn1000 predict one of them"),
    ("plot seeds parent", repeated_parent, ["plot", RUN], "give gnn1000 plot one of them"),
    ("bench memory depths -1", nothing, ["bench", "memory", "--depths", "-1", "--out", "{tmp}/new/bench"], "gnn1000 bench memory --depths -1: every value must be a positive integer"),
    ("bench speed nodes 0", nothing, ["bench", "speed", "--nodes", "0"], "gnn1000 bench speed --nodes 0: must be a positive integer"),
    # damaged and foreign run directories
    ("plot garbage line", run_with(_garbage_metrics), ["plot", RUN], "metrics.jsonl line 2 is not an epoch record"),
    ("config.gin mismatch", run_with(_wider_config), ["evaluate", RUN], "does not match the run's config.gin: parameter 'encoder.weight' has shape (16, "),
    ("model not a dict", run_with(_model_not_a_dict), ["evaluate", RUN], "best.pt is not a gnn1000 checkpoint: it is readable but holds a 'model' entry that is a list"),
    ("plot --out .txt", copy_of_run, ["plot", RUN, "--out", "{tmp}/curves.txt"], "the image format is chosen by the extension"),
    # a search space beyond an option's range: gnn1000's own message before any trial (not Ray's TypeError)
    ("tune dropout space > 1", write("search.gin", search_file("'resgnn.dropout': ('uniform', 0.2, 1.5)")), TUNE,
     "search.space['resgnn.dropout'] = ('uniform', 0.2, 1.5) can sample resgnn.dropout = 1.4999999999999998, which gnn1000 refuses: resgnn.dropout=1.4999999999999998 is out of range"),
    ("tune lr choice < 0", write("search.gin", search_file("'experiment.lr': ('choice', [0.01, -1.0])")), TUNE,
     "can sample experiment.lr = -1.0, which gnn1000 refuses: experiment.lr=-1.0 is not allowed: it must be a number > 0"),
    ("tune step.gamma space", write("search.gin", search_file("'step.gamma': ('choice', [0.5, 0.0])", "experiment.scheduler = 'step'")), TUNE,
     "search.space['step.gamma'] = ('choice', [0.5, 0.0]) can sample step.gamma = 0.0, which gnn1000 refuses: step.gamma=0.0 is not allowed"),
    # tune --resume unpickles the search state: refused where ownership cannot be checked
    ("tune resume from gs://", nothing, ["tune", "tune/resgnn", "--resume", "--storage", "gs://lab-bucket/searches"],
     "--resume refuses gs://lab-bucket/searches: restoring a search unpickles its files (Ray's experiment state)"),
    ("tune resume from s3://", nothing, ["tune", "tune/resgnn", "--resume", "--storage", "s3://lab-bucket/searches"],
     "on s3:// storage gnn1000 cannot check who that was"),
    ("tune operator option space", write("search.gin", search_file("'gen.t': ('uniform', -1.0, 1.0)")), TUNE,
     "can sample gen.t = -1.0, which gnn1000 refuses: gen.t=-1.0 is not allowed: it must be a number > 0"),
]


@pytest.mark.parametrize("name, setup, args, expected", CASES, ids=[c[0] for c in CASES])
def test_adversarial_input(name, setup, args, expected, tmp_path, finished_run, capsys, one_thread):
    (tmp_path / "victim").write_bytes(VICTIM)
    watched = setup(tmp_path, finished_run)
    fill = {"tmp": tmp_path}
    before = checksums(watched)
    capsys.readouterr()
    code = cli_main([a.format(**fill) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    message = err[err.find(f"gnn1000 {args[0]}: "):].strip()
    assert message.startswith(f"gnn1000 {args[0]}: error: "), err
    assert "\n" not in message and "Traceback" not in message, err  # one paragraph
    assert expected.format(**fill) in message, err
    assert "Training stopped" not in message  # a trained model is only looked at here
    assert checksums(watched) == before  # nothing lost, nothing changed
    assert (tmp_path / "victim").read_bytes() == VICTIM
    assert not (tmp_path / "marker").exists()  # no unpickled code ran
    assert not [p for p in Path(tmp_path).rglob(".*.tmp") if not p.is_symlink()]  # no temporary left behind
    assert not (tmp_path / "run" / "predictions.csv").is_file() or (tmp_path / "run" / "predictions.csv").is_symlink()
    if watched.name == "new":
        assert not watched.exists()


# -- cases that succeed safely, or need more than one command -------------------------------------------

@pytest.mark.skipif(not (DATA_ROOT / "planetoid" / "Cora" / "raw").is_dir(), reason=f"shared Cora is absent under {DATA_ROOT}")
@pytest.mark.parametrize("root", ["writable", "read-only"])
def test_malicious_processed_dataset_is_rebuilt_not_unpickled(root, tmp_path, capsys, monkeypatch, one_thread):
    """PyG retries a refused weights-only load with full unpickling; gnn1000 rebuilds from raw/ in its
    own cache instead, and leaves the (perhaps shared) data folder byte for byte as it was."""
    from shared_data import read_only_copy

    folder = tmp_path / "data" / "planetoid" / "Cora"
    shutil.copytree(DATA_ROOT / "planetoid" / "Cora" / "raw", folder / "raw")
    (folder / "processed").mkdir()
    marker = tmp_path / "marker"
    torch.save((Payload(marker), None, None), folder / "processed" / "data.pt")
    data = tmp_path / "data" if root == "writable" else read_only_copy(tmp_path / "data", tmp_path / "ro-data")
    before = checksums(data)
    monkeypatch.setenv("GNN1000_DATA", str(data))
    monkeypatch.setenv("GNN1000_CACHE", str(tmp_path / "cache"))
    args = ["train", "--run-dir", str(tmp_path / "run"), "--no-progress", *bind_args(TINY),
            "--bind", "experiment.dataset = 'cora'", "--bind", "experiment.epochs = 1"]
    with pytest.warns(UserWarning, match="rebuilding them from raw/"):
        assert cli_main(args) == 0, capsys.readouterr().err
    assert not marker.exists()
    assert checksums(data) == before  # the data folder is never written
    rebuilt = tmp_path / "cache" / "planetoid" / "Cora" / "processed" / "data.pt"
    torch.load(rebuilt, weights_only=True)  # the rebuild is gnn1000's own, loadable weights-only
    assert cli_main(["evaluate", str(tmp_path / "run")]) == 0
    assert not marker.exists() and checksums(data) == before


def _search_folder(storage: Path) -> Path:
    """A search folder Tune would restore, holding a pickle that creates the marker."""
    folder = storage / "resgnn-20260101-000000"
    folder.mkdir(parents=True)
    with open(folder / "tuner.pkl", "wb") as f:
        import pickle
        pickle.dump(Payload(storage.parent / "marker"), f)
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    return folder


@pytest.mark.parametrize("how", ["writable by others", "owned by another user"])
def test_tune_resume_refuses_a_foreign_search(how, tmp_path, capsys):
    pytest.importorskip("ray")
    from ray import tune

    folder = _search_folder(tmp_path / "storage")
    if not tune.Tuner.can_restore(str(folder)):
        pytest.skip("this Ray does not recognise the planted search folder as restorable")
    if how == "writable by others":
        folder.chmod(0o777)
    elif os.getuid() == 0:
        os.chown(folder / "tuner.pkl", 65534, 65534)
    else:
        pytest.skip("giving a file to another user needs root")
    before = checksums(folder)
    code = cli_main(["tune", "tune/resgnn", "--resume", "--storage", str(tmp_path / "storage")])
    err = capsys.readouterr().err
    assert code == 2, err
    message = err[err.find("gnn1000 tune: "):].strip()
    assert "\n" not in message and "Traceback" not in message
    assert "--resume refuses" in message and ("may be written by others" in message or "belongs to user id" in message)
    assert checksums(folder) == before
    assert not (tmp_path / "marker").exists()


def test_tune_resume_checks_a_file_uri_storage_as_a_local_folder(tmp_path, capsys):
    """--storage file:///... is a local folder: a search there that others may write is refused too."""
    pytest.importorskip("ray")
    from ray import tune

    folder = _search_folder(tmp_path / "storage")
    if not tune.Tuner.can_restore(str(folder)):
        pytest.skip("this Ray does not recognise the planted search folder as restorable")
    (folder / "tuner.pkl").chmod(0o666)
    before = checksums(folder)
    code = cli_main(["tune", "tune/resgnn", "--resume", "--storage", (tmp_path / "storage").as_uri()])
    err = capsys.readouterr().err
    assert code == 2, err
    message = err[err.find("gnn1000 tune: "):].strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"--resume refuses {folder}: {folder / 'tuner.pkl'} may be written by others" in message
    assert checksums(folder) == before and not (tmp_path / "marker").exists()


def test_symlinked_run_dir_is_its_target(tmp_path, one_thread):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    assert cli_main(["train", "--run-dir", str(tmp_path / "link"), "--no-progress", *bind_args(TINY),
                     "--bind", "experiment.epochs = 1"]) == 0
    assert (tmp_path / "target" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "link").is_symlink()  # the link itself stays as it was


def test_kill_between_last_and_best_is_reconciled(tmp_path, monkeypatch, capsys, one_thread):
    """last.pt is committed first; a kill before best.pt leaves records naming an epoch best.pt lacks:
    evaluate scores the recorded epoch, and a resume rewrites best.pt from it."""
    from gnn1000 import checkpoint
    from gnn1000.callbacks import RunFiles

    run = tmp_path / "run"

    def killed(self, trainer):
        raise KeyboardInterrupt  # stands for a SIGKILL right after last.pt was renamed into place

    with monkeypatch.context() as patch:
        patch.setattr(RunFiles, "save_best", killed)
        assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(TINY),
                         "--bind", "experiment.epochs = 1"]) == 130
    assert not (run / "checkpoints" / "best.pt").exists()
    assert checkpoint.load(run / "checkpoints" / "last.pt")["best"]["epoch"] == 1
    assert checkpoint.best_weights(run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt").name == "last.pt"
    assert cli_main(["evaluate", str(run)]) == 0  # the recorded best epoch, from last.pt
    assert cli_main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert checkpoint.load(run / "checkpoints" / "best.pt")["epoch"] == 1
    import json
    assert json.loads((run / "summary.json").read_text())["best"]["epoch"] == 1


def test_full_disk_during_checkpoint_keeps_the_last_good_one(tmp_path, finished_run, monkeypatch, capsys, one_thread):
    """ENOSPC while the new checkpoint is written: one paragraph saying how much it needed; last.pt,
    last.prev.pt and metrics.jsonl are those of the last finished epoch and the run resumes."""
    run = copy_of_run(tmp_path, finished_run)
    kept = {name: checksums(run / name) for name in ("checkpoints/last.pt", "checkpoints/last.prev.pt", "metrics.jsonl")}
    real_fsync = os.fsync

    def full(fd):  # the data went to the page cache; the disk has no room for it
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    capsys.readouterr()
    code = cli_main(["train", "--resume", str(run), "--no-progress", "--bind", "experiment.epochs = 4"])
    err = capsys.readouterr().err
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 2, err
    message = err[err.find("gnn1000 train: "):].strip()
    assert "\n" not in message and "Traceback" not in message
    assert "Could not write the checkpoint" in message and "No space left on device" in message
    assert "bytes)" in message  # how much it needed
    assert {name: checksums(run / name) for name in kept} == kept
    assert not list(run.rglob(".*.tmp"))
    assert cli_main(["train", "--resume", str(run), "--no-progress", "--bind", "experiment.epochs = 4"]) == 0


@pytest.mark.parametrize("command, out, error", [
    ("predict", "predictions.csv", errno.ENOSPC),
    ("predict", "predictions.csv", errno.EACCES),
    ("plot", "curves.png", errno.ENOSPC),
    ("plot", "curves.png", errno.EACCES),
])
def test_refused_write_leaves_no_partial_file(command, out, error, tmp_path, finished_run, monkeypatch, capsys, one_thread):
    run = copy_of_run(tmp_path, finished_run)
    before = checksums(run)
    real_open = safefs.open_temporary

    def refusing(path):
        fd = real_open(path)
        if error == errno.EACCES:
            os.close(fd)
            raise PermissionError(error, os.strerror(error), str(path))
        os.write(fd, b"half a file")
        os.close(fd)
        os.chmod(path, 0o444)  # the library's own write of the rest fails like a full disk
        return os.open("/dev/full", os.O_WRONLY)

    monkeypatch.setattr(safefs, "open_temporary", refusing)
    capsys.readouterr()
    code = cli_main([command, str(run)])
    err = capsys.readouterr().err
    assert code == 2, err
    message = err[err.find(f"gnn1000 {command}: "):].strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"Could not write {run / out}" in message
    assert ("No space left on device" if error == errno.ENOSPC else "Permission denied") in message
    assert not (run / out).exists() and not list(run.rglob(".*.tmp"))
    assert checksums(run) == before


def test_binding_to_a_component_the_run_never_builds_warns_before_training(tmp_path, one_thread):
    from gnn1000.build import UnusedBindingWarning

    with pytest.warns(UnusedBindingWarning, match=r"no effect: .*revgnn\.num_layers.*this run builds architecture 'resgnn'"):
        assert cli_main(["train", "--run-dir", str(tmp_path / "run"), "--no-progress", *bind_args(TINY),
                         "--bind", "revgnn.num_layers = 5", "--bind", "experiment.epochs = 1"]) == 0


# -- a real full disk: a small tmpfs the test mounts itself ---------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs at tmp_path/disk, unmounted afterwards; skipped where mounting is not allowed."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.getuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_disk_full_mid_run_keeps_the_last_good_checkpoint_and_resumes_exactly(small_disk, finished_run, capsys, one_thread):
    """Two epochs fit; the disk is then filled to half a checkpoint: epoch 3 stops with one paragraph,
    epoch 2's checkpoint and records stay whole, and after space is freed the run resumes to exactly
    the uninterrupted run's metrics."""
    import json

    run = small_disk / "run"
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(TINY),
                     "--bind", "experiment.epochs = 2"]) == 0
    size = (run / "checkpoints" / "last.pt").stat().st_size
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # everything but half a checkpoint (and room for the small records)
        free = shutil.disk_usage(small_disk).free - (size // 2 + 4 * 4096)
        f.write(b"\0" * max(free, 0))
    kept = checksums(run / "checkpoints") | checksums(run / "metrics.jsonl")
    capsys.readouterr()
    code = cli_main(["train", "--resume", str(run), "--no-progress", "--bind", "experiment.epochs = 3"])
    err = capsys.readouterr().err
    assert code == 2, err
    message = err[err.find("gnn1000 train: "):].strip()
    assert "\n" not in message and "Traceback" not in message, err
    assert "No space left on device" in message and "bytes)" in message, message
    assert checksums(run / "checkpoints") | checksums(run / "metrics.jsonl") == kept
    assert not list(run.rglob(".*.tmp"))
    filler.unlink()
    assert cli_main(["train", "--resume", str(run), "--no-progress", "--bind", "experiment.epochs = 3"]) == 0
    resumed = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    uninterrupted = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "loss", "train_rocauc", "valid_rocauc", "test_rocauc", "lr")
    assert [{k: r[k] for k in keys} for r in resumed] == [{k: r[k] for k in keys} for r in uninterrupted]


def test_kill_loop_on_a_disk_that_fills_halfway_resumes_to_the_uninterrupted_run(small_disk, tmp_path, capfd, one_thread):
    """#24's kill loop: SIGKILLs at random moments (half of them inside checkpoint writes) on a run whose
    disk fills once half its epochs are done. While it is full every start is killed or stops on the
    full disk, and last.pt stays the last good epoch's; once space is freed the run resumes, through more
    kills, to exactly the uninterrupted run's metrics and final weights."""
    import itertools
    import json
    import random

    from gnn1000 import checkpoint
    from test_run_safety import _start, history, kill_at_a_random_moment, stable

    reference = tmp_path / "reference"
    proc = _start(reference, pause=0.0)
    proc.join()
    assert proc.exitcode == 0
    expected = stable(history(reference))
    epochs = len(expected)

    run, filler = small_disk / "run", small_disk / "filler"
    last, tmp_file = run / "checkpoints" / "last.pt", run / "checkpoints" / ".last.pt.tmp"
    rng, turn = random.Random(2424), itertools.count()
    counts = {"kills": 0, "inside writes": 0, "stopped by the full disk": 0, "finished": 0}

    def attempt(moments: list[str]) -> int | None:
        """One start, killed at a random moment (the kinds by turns): None, or the exit code if it
        ended by itself first."""
        proc = _start(run, pause=0.03)
        if kill_at_a_random_moment(proc, rng, moments[next(turn) % len(moments)], tmp_file):
            counts["kills"] += 1
            counts["inside writes"] += tmp_file.exists()
            return None
        return proc.exitcode

    def trained() -> int:
        for path in (last, checkpoint.previous(last)):  # a kill between the two renames leaves only .prev
            if path.is_file():
                return checkpoint.load(path)["epoch"]
        return 0

    while trained() < epochs // 2:  # the first half, with kills after a write, inside one, at any moment
        assert attempt(["after a write", "inside a write", "any"]) is None, "a start ended before the disk filled"
    while tmp_file.exists():  # a whole temporary a kill left frees a checkpoint's space when the next start
        assert attempt(["just after a write"]) is None  # deletes it: the disk fills between writes
    size = max(p.stat().st_size for p in (last, checkpoint.previous(last)) if p.is_file())
    with open(filler, "wb") as f:  # everything but half a checkpoint
        f.write(b"\0" * max(shutil.disk_usage(small_disk).free - size // 2, 0))
    at_fill = trained()
    for starts in range(1, 31):  # the disk is full: nothing can be committed; a start stops at its first write
        code = attempt(["any", "after a write"])
        if code is not None:
            assert code != 0, "a run finished on a full disk"
            counts["stopped by the full disk"] += 1
        if counts["stopped by the full disk"] >= 3 and starts >= 6:
            break
    assert counts["stopped by the full disk"] >= 3
    assert trained() == at_fill and checkpoint.load(last)["epoch"] == at_fill  # the last good one, whole
    assert [r["epoch"] for r in history(run)] == list(range(1, at_fill + 1))
    filler.unlink()  # space freed: the rest of the run, with kills
    while not (run / "summary.json").exists() and counts["kills"] < 24:  # mostly inside writes: slow progress
        if attempt(["inside a write", "inside a write", "inside a write", "any"]) == 0:
            counts["finished"] += 1
    if not (run / "summary.json").exists():
        proc = _start(run, pause=0.0)
        proc.join()
        assert proc.exitcode == 0
    with capfd.disabled():
        print(f"\nkill loop on a disk full from epoch {at_fill}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    assert counts["kills"] >= 20
    records = history(run)
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))  # each once
    assert stable(records) == expected
    mine, theirs = checkpoint.load(last)["model"], checkpoint.load(reference / "checkpoints" / "last.pt")["model"]
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert json.loads((run / "summary.json").read_text())["test_at_best_valid"] == \
        json.loads((reference / "summary.json").read_text())["test_at_best_valid"]


# -- as an unprivileged user: the filesystem says no ----------------------------------------------------

NOBODY = 65534


class _AsNobody:
    """This process with the effective user and group of nobody, for filesystem checks, and root again
    after (the interpreter itself lives under /root here, unreachable by a new process as nobody)."""

    def __enter__(self):
        os.setegid(NOBODY)
        os.seteuid(NOBODY)
        return self

    def __exit__(self, *exc):
        os.seteuid(0)
        os.setegid(0)


def _as_nobody(args: list[str], cwd: Path, capsys) -> tuple[int, str]:
    import matplotlib.pyplot  # noqa: F401  imported while the library folders are readable
    import gnn1000.plot, gnn1000.predictions, gnn1000.build  # noqa: F401, E401

    here = os.getcwd()
    capsys.readouterr()
    os.chdir(cwd)
    try:
        with _AsNobody():
            code = cli_main(args)
    finally:
        os.chdir(here)
    return code, capsys.readouterr().err


def _open_for_all(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.mark.parametrize("case", ["run-dir under a read-only folder", "runs/ in an unwritable cwd",
                                  "predict into an unwritable run", "predict --out unwritable",
                                  "resume with a foreign .lock", "plot --out unwritable", "unreadable config"])
def test_refused_by_the_filesystem_as_an_unprivileged_user(case, tmp_path, finished_run, capsys, one_thread):
    if os.getuid() != 0:
        pytest.skip("switching to an unprivileged user needs root (run as that user, these cases are the same)")
    if not hasattr(os, "seteuid"):
        pytest.skip("this platform cannot switch the effective user")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="gnn1000-nobody-"))  # pytest's tmp_path is private to root
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        locked = base / "locked"  # root's, readable by all, writable by nobody else
        locked.mkdir()
        run = base / "run"
        shutil.copytree(finished_run, run)
        _open_for_all(base)
        tiny = [*bind_args(TINY), "--bind", "experiment.epochs = 1", "--no-progress"]
        args, cwd, says = {
            "run-dir under a read-only folder": (["train", "--run-dir", str(locked / "new"), *tiny], home, "Could not create the run directory"),
            "runs/ in an unwritable cwd": (["train", *tiny], locked, "Could not create the run directory runs/"),
            "predict into an unwritable run": (["predict", str(run)], home, f"Could not write {run / 'predictions.csv'}"),
            "predict --out unwritable": (["predict", str(run), "--out", str(locked / "p.csv")], home, f"Could not write {locked / 'p.csv'}"),
            "resume with a foreign .lock": (["train", "--resume", str(run), "--no-progress"], home, "Could not open the lock file"),
            "plot --out unwritable": (["plot", str(run), "--out", str(locked / "c.png")], home, f"Could not write {locked / 'c.png'}"),
            "unreadable config": (["train", str(locked / "secret.gin"), "--run-dir", str(home / "new")], home, f"Config {locked / 'secret.gin'} cannot be read"),
        }[case]
        if case == "resume with a foreign .lock":  # the run is the user's, its lock file root's
            for p in [run, *run.rglob("*")]:
                os.chown(p, NOBODY, NOBODY)
            (run / ".lock").write_text("")
            os.chown(run / ".lock", 0, 0)
        if case == "unreadable config":
            (locked / "secret.gin").write_text("experiment.epochs = 1\n")
            (locked / "secret.gin").chmod(0o600)
        before = checksums(run) | checksums(locked)
        code, err = _as_nobody(args, cwd, capsys)
        message = err[err.find(f"gnn1000 {args[0]}: "):].strip()
        assert code == 2, err
        assert message.startswith(f"gnn1000 {args[0]}: error: ") and "\n" not in message, err
        assert "Traceback" not in err
        assert says in message and "Permission denied" in message, message
        assert checksums(run) | checksums(locked) == before
        assert not [p for p in locked.iterdir() if p.name != "secret.gin"] and not (run / "predictions.csv").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_nan_before_any_optimizer_step_is_not_blamed_on_the_learning_rate(tmp_path):
    from gnn1000 import guard
    from gnn1000.rundir import RunDir

    message = str(guard.stop(RunDir(tmp_path / "run"), "loss", float("nan"), 1, 0, 0.01))
    assert "before any optimizer step, so the learning rate is not the cause" in message
    assert "lower learning rate" not in message and "experiment.lr" not in message
    later = str(guard.stop(RunDir(tmp_path / "run"), "loss", float("nan"), 2, 3, 0.01))
    assert "lower learning rate" in later  # after steps the rate may well be the cause


def test_seeds_trained_for_different_lengths_are_flagged_in_the_summary(tmp_path, one_thread):
    import json

    parent = tmp_path / "seeds"
    tiny = [*bind_args(TINY), "--bind", "experiment.epochs = 1", "--no-progress"]
    assert cli_main(["train", "--seeds", "2", "--run-dir", str(parent), *tiny]) == 0
    assert "trained_alike" not in json.loads((parent / "summary.json").read_text())
    assert cli_main(["train", "--resume", str(parent / "seed-0"), "--no-progress", "--bind", "experiment.epochs = 2"]) == 0
    with pytest.warns(UserWarning, match=r"different numbers of epochs \(seed-0: 2, seed-1: 1\)"):
        assert cli_main(["train", "--resume", str(parent), "--no-progress"]) == 0
    summary = json.loads((parent / "summary.json").read_text())
    assert summary["trained_alike"] is False and "seed-0: 2, seed-1: 1" in summary["note"]


def test_tune_address_of_a_plain_http_server_fails_at_once(capsys):
    """Ray retried forever against a port that answers TCP but is no Ray head."""
    pytest.importorskip("ray")
    import http.server
    import threading

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        code = cli_main(["tune", "tune/resgnn", "--address", f"127.0.0.1:{port}"])
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert code == 2, err
    message = err[err.find("gnn1000 tune: "):].strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"something listens at 127.0.0.1:{port}, but it is not a Ray head (it replied b'" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_bench_on_cuda_without_cuda_is_one_paragraph(capsys):
    assert cli_main(["bench", "speed", "--device", "cuda"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("gnn1000 bench: error: gnn1000 bench speed --device cuda: ") and "\n" not in message
    assert "CUDA is not available here" in message


def test_data_parallel_mirror_never_writes_through_a_planted_link(tmp_path):
    from gnn1000.tune.run_checkpoint import mirror

    saved, run = tmp_path / "saved", tmp_path / "run"
    (saved / "checkpoints").mkdir(parents=True)
    (saved / "checkpoints" / "last.pt").write_bytes(b"new weights")
    (run / "checkpoints").mkdir(parents=True)
    (tmp_path / "victim").write_bytes(VICTIM)
    (run / "checkpoints" / ".last.pt.mirror").symlink_to(tmp_path / "victim")
    mirror(saved, run)
    assert (tmp_path / "victim").read_bytes() == VICTIM
    assert (run / "checkpoints" / "last.pt").read_bytes() == b"new weights"


def test_data_parallel_mirror_commits_last_pt_before_best_pt_and_the_records(tmp_path, monkeypatch):
    # A driver killed mid-mirror must not leave a best.pt (or records) from an epoch last.pt lacks.
    from gnn1000.tune import run_checkpoint

    saved, run = tmp_path / "saved", tmp_path / "run"
    (saved / "checkpoints").mkdir(parents=True)
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "checkpoints/last.prev.pt", "config.gin",
                 "metrics.jsonl", "summary.json"):
        (saved / name).write_text(name)
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(run_checkpoint.os, "replace",
                        lambda tmp, target: (renamed.append(Path(target).relative_to(run).as_posix()),
                                             real_replace(tmp, target)))
    run_checkpoint.mirror(saved, run)
    assert renamed[:3] == ["checkpoints/last.prev.pt", "checkpoints/last.pt", "checkpoints/best.pt"]
    assert sorted(renamed[3:]) == ["config.gin", "metrics.jsonl", "summary.json"]
