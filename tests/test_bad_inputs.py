"""Every bad input a user can give: exit code 2, one paragraph naming what was wrong (no traceback),
and nothing lost (the run directory's checksums are the same before and after).

Each case is (name, setup, args, expected text). ``setup(tmp_path, finished_run)`` builds the
condition (a finished run to resume, a corrupt file, a dataset copy) and returns the path whose
files must not change; ``args`` may use ``{run}`` and ``{tmp}``.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import socket
from pathlib import Path

import pytest
import torch

from gnn1000.cli import main as cli_main
from gnn1000.registry import register

from helpers import TINY, bind_args
from shared_data import DATA_ROOT, read_only_copy

NEW = ["train", "--run-dir", "{tmp}/new", "--no-progress", *bind_args(TINY)]


def checksums(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.name != ".lock"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(TINY)]) == 0
    finally:
        torch.set_num_threads(threads)  # later tests run with the thread count they expect
    return run


@register("operators", "exploding_op")
class ExplodingOp(torch.nn.Module):
    """A third-party operator whose constructor rejects its input with its own exception."""

    def __init__(self, in_channels, out_channels, *, edge_dim=None):
        super().__init__()
        raise ValueError("exploding_op needs in_channels to be a prime number")


# -- setups ----------------------------------------------------------------------------------------

def nothing(tmp, run):
    return tmp / "new"


def copy_of_run(tmp, run):
    shutil.copytree(run, tmp / "run")
    return tmp / "run"


def write(name: str, content: bytes):
    def setup(tmp, run):
        (tmp / name).write_bytes(content)
        return tmp
    return setup


def run_with(change):
    """A copy of the finished run, then ``change(run_dir)``."""
    def setup(tmp, run):
        copy = copy_of_run(tmp, run)
        change(copy)
        return copy
    return setup


def _empty_config(run):
    (run / "config.gin").write_text("")


def _random_last(run):
    (run / "checkpoints" / "last.pt").write_bytes(bytes(range(256)) * 40)
    (run / "checkpoints" / "last.prev.pt").unlink()


def _random_best(run):
    (run / "checkpoints" / "best.pt").write_bytes(bytes(reversed(range(256))) * 40)


def _bad_middle_metrics(run):
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "last.prev.pt").rename(run / "checkpoints" / "last.pt")
    # an old-style checkpoint without records: metrics.jsonl is the only history
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    del state["history"]
    torch.save(state, run / "checkpoints" / "last.pt")


def _no_checkpoint(run):
    shutil.rmtree(run / "checkpoints")


def blogcatalog(change):
    """A read-only copy of the shared BlogCatalog with ``change(folder)`` applied, as the data root."""
    def setup(tmp, run):
        if not (DATA_ROOT / "ogb" / "blogcatalog").is_dir():
            pytest.skip("shared BlogCatalog is absent")
        folder = tmp / "data" / "ogb" / "blogcatalog"
        shutil.copytree(DATA_ROOT / "ogb" / "blogcatalog", folder)
        change(folder)
        read_only_copy(tmp / "data", tmp / "ro-data")
        shutil.rmtree(tmp / "data")
        setup.env = {"GNN1000_DATA": str(tmp / "ro-data"), "GNN1000_CACHE": str(tmp / "cache")}
        return tmp / "ro-data"
    return setup


def _truncate_edges(folder):
    edges = folder / "raw" / "edge.csv.gz"
    edges.write_bytes(edges.read_bytes()[: edges.stat().st_size // 2])


def _thirty_percent_of_edges(folder):
    edges = folder / "raw" / "edge.csv.gz"
    lines = gzip.decompress(edges.read_bytes()).splitlines(keepends=True)
    edges.write_bytes(gzip.compress(b"".join(lines[: len(lines) * 3 // 10])))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


BLOG = ["--bind", "experiment.dataset = 'blogcatalog'", "--bind", "experiment.epochs = 1"]

CASES = [
    # experiment values
    ("weight_decay<0", nothing, [*NEW, "--bind", "experiment.weight_decay = -0.1"], "experiment.weight_decay=-0.1 is not allowed: it must be a number >= 0"),
    ("seed string", nothing, [*NEW, "--bind", "experiment.seed = 'abc'"], "experiment.seed='abc' is not allowed: it must be an integer in [0, 4294967295]"),
    ("seed -1", nothing, [*NEW, "--bind", "experiment.seed = -1"], "experiment.seed=-1 is not allowed"),
    ("lr as text", nothing, [*NEW, "--bind", "experiment.lr = '0.01'"], "experiment.lr='0.01' is not allowed: it must be a number > 0 (write it without quotes in gin)"),
    ("lr 0", nothing, [*NEW, "--bind", "experiment.lr = 0"], "experiment.lr=0 is not allowed"),
    ("lr inf", nothing, [*NEW, "--bind", "experiment.lr = 1e999"], "experiment.lr=inf is not allowed: it must be a number > 0"),
    ("epochs 0", nothing, [*NEW, "--bind", "experiment.epochs = 0"], "experiment.epochs=0 must be a positive integer"),
    ("grad_clip<0", nothing, [*NEW, "--bind", "experiment.grad_clip = -1.0"], "experiment.grad_clip=-1.0 is not allowed: it must be a number > 0, or None"),
    ("ema_decay=1", nothing, [*NEW, "--bind", "experiment.ema_decay = 1.0"], "experiment.ema_decay=1.0 is not allowed: it must be a number in (0, 1), or None"),
    ("batch_size text", nothing, [*NEW, "--bind", "experiment.batch_size = 'x'"], "experiment.batch_size='x' must be a positive integer"),
    ("device", nothing, [*NEW, "--bind", "experiment.device = 'banana'"], "experiment.device='banana' is not a device"),
    ("dataset name", nothing, [*NEW, "--bind", "experiment.dataset = 'cora2'"], "Unknown dataset 'cora2'"),
    ("architecture not text", nothing, [*NEW, "--bind", "experiment.architecture = 3"], "experiment.architecture=3 must be a registry name"),
    # operator, sampler, solver and dataset values
    ("gat heads 0", nothing, [*NEW, "--bind", "resgnn.operator = 'gat'", "--bind", "gat.heads = 0"], "gat.heads=0 must be a positive integer"),
    ("gat dropout", nothing, [*NEW, "--bind", "resgnn.operator = 'gat'", "--bind", "gat.attention_dropout = 1.5"], "gat.attention_dropout=1.5 is not allowed: it must be a number in [0, 1)"),
    ("gen aggr", nothing, [*NEW, "--bind", "gen.aggr = 'median'"], "gen.aggr='median' is not supported"),
    ("gen t", nothing, [*NEW, "--bind", "gen.t = -1.0"], "gen.t=-1.0 is not allowed: it must be a number > 0"),
    ("operator init raises", nothing, [*NEW, "--bind", "resgnn.operator = 'exploding_op'"], "plugin 'exploding_op' failed while building architecture 'resgnn' (built through 'resgnn'): ValueError: exploding_op needs in_channels to be a prime number"),
    ("random_partition parts 0", nothing, [*NEW, "--bind", "experiment.sampler = 'random_partition'", "--bind", "random_partition.num_parts = 0"], "random_partition.num_parts=0 must be a positive integer"),
    ("random_partition views text", nothing, [*NEW, "--bind", "experiment.sampler = 'random_partition'", "--bind", "random_partition.num_views = 'x'"], "random_partition.num_views='x' must be a positive integer"),
    ("random_partition too many parts", nothing, [*NEW, "--bind", "experiment.sampler = 'random_partition'", "--bind", "random_partition.num_parts = 100000"], "random_partition: 100000 parts for a graph of 240 nodes"),
    ("cluster per batch", nothing, [*NEW, "--bind", "experiment.sampler = 'cluster'", "--bind", "cluster.num_parts = 4", "--bind", "cluster.clusters_per_batch = 5"], "cluster.clusters_per_batch=5 exceeds cluster.num_parts=4"),
    ("anderson lam", nothing, [*NEW, "--bind", "experiment.architecture = 'deq'", "--bind", "deq.hidden_channels = 8", "--bind", "deq.num_layers = 1", "--bind", "deq.solver = 'anderson'", "--bind", "anderson.lam = 'x'"], "anderson.lam='x' is not allowed: it must be a number (write it without quotes in gin)"),
    ("fixed_point damping", nothing, [*NEW, "--bind", "experiment.architecture = 'deq'", "--bind", "deq.hidden_channels = 8", "--bind", "deq.num_layers = 1", "--bind", "deq.solver = 'fixed_point'", "--bind", "fixed_point.damping = 2.0"], "fixed_point.damping=2.0 is not allowed: it must be a number in (0, 1]"),
    ("deq tol", nothing, [*NEW, "--bind", "experiment.architecture = 'deq'", "--bind", "deq.hidden_channels = 8", "--bind", "deq.num_layers = 1", "--bind", "deq.fwd_tol = 'x'"], "tol='x' is not allowed"),
    ("synthetic nodes text", nothing, [*NEW, "--bind", "synthetic_proteins.num_nodes = 'abc'"], "synthetic_proteins.num_nodes='abc' is not allowed: it must be an integer >= 0"),
    ("synthetic within_species", nothing, [*NEW, "--bind", "synthetic_proteins.within_species = 2.0"], "synthetic_proteins.within_species=2.0 is not allowed: it must be a number in [0, 1]"),
    ("proteins aggr", nothing, [*NEW, "--bind", "experiment.dataset = 'ogbn-proteins'", "--bind", "ogbn_proteins.node_feature_aggr = 'max'"], "ogbn_proteins.node_feature_aggr='max'; choose one of sum, mean"),
    # config files and gin
    ("binary config", write("binary.gin", bytes(range(128, 256)) * 4), ["train", "{tmp}/binary.gin", "--run-dir", "{tmp}/new"], "binary.gin is not a gin config: it is not UTF-8 text"),
    ("gin import missing", write("imports.gin", b"import no_such_module_for_gnn1000\nexperiment.epochs = 1\n"), ["train", "{tmp}/imports.gin", "--run-dir", "{tmp}/new"], "a gin 'import' failed: module 'no_such_module_for_gnn1000' is not installed"),
    ("undefined macro", write("macro.gin", b"include 'default.gin'\nresgnn.hidden_channels = %HIDDEN\n"), ["train", "{tmp}/macro.gin", "--run-dir", "{tmp}/new"], "gin macro %HIDDEN is used in"),
    ("gin syntax", write("syntax.gin", b"experiment.epochs = = 3\n"), ["train", "{tmp}/syntax.gin", "--run-dir", "{tmp}/new"], "gin syntax error"),
    ("configurable typo", nothing, [*NEW, "--bind", "regnn.num_layers = 2"], "Did you mean revgnn, resgnn"),
    ("parameter typo", nothing, [*NEW, "--bind", "resgnn.num_layer = 2"], "Did you mean num_layers"),
    ("binding without =", nothing, [*NEW, "--bind", "resgnn.num_layers"], "is not of the form 'configurable.parameter = value'"),
    ("missing config", nothing, ["train", "{tmp}/nope.gin", "--run-dir", "{tmp}/new"], "is neither a file nor a shipped config"),
    # run directories
    ("run-dir is a file", write("afile", b"keep me\n"), ["train", "--run-dir", "{tmp}/afile", *bind_args(TINY)], "--run-dir '{tmp}/afile' is an existing file, not a folder"),
    ("run-dir holds a run", copy_of_run, ["train", "--run-dir", "{tmp}/run", "--no-progress", *bind_args(TINY)], "already holds a run (config.gin, metrics.jsonl, summary.json, checkpoints; 3 epoch records)"),
    ("resume with run-dir", copy_of_run, ["train", "--resume", "{tmp}/run", "--run-dir", "{tmp}/run"], "give no CONFIG, --run-dir or --overwrite with it"),
    ("resume missing", nothing, ["train", "--resume", "{tmp}/nowhere"], "Run directory '{tmp}/nowhere' does not exist"),
    ("resume a file", write("afile", b"x"), ["train", "--resume", "{tmp}/afile"], "is a file, not a run directory"),
    ("resume empty config", run_with(_empty_config), ["train", "--resume", "{tmp}/run"], "config.gin is empty: it should hold the run's operative gin config"),
    ("resume model shape", copy_of_run, ["train", "--resume", "{tmp}/run", "--bind", "resgnn.hidden_channels = 32"], "--resume cannot change resgnn.hidden_channels = 32 (the run has 16)"),
    ("resume dataset and seed", copy_of_run, ["train", "--resume", "{tmp}/run", "--bind", "experiment.dataset = 'cora'", "--bind", "experiment.seed = 5"], "experiment.dataset = 'cora' (the run has 'synthetic-proteins'); experiment.seed = 5 (the run has 0)"),
    ("resume sampler training", copy_of_run, ["train", "--resume", "{tmp}/run", "--bind", "experiment.sampler = 'random_partition'"], "--resume cannot change experiment.sampler"),
    ("resume fewer epochs", copy_of_run, ["train", "--resume", "{tmp}/run", "--bind", "experiment.epochs = 2"], "experiment.epochs=2 but {tmp}/run has already trained 3 epochs"),
    ("resume no checkpoint", run_with(_no_checkpoint), ["train", "--resume", "{tmp}/run", "--no-progress"], "it has no checkpoint yet"),
    ("resume random last.pt", run_with(_random_last), ["train", "--resume", "{tmp}/run", "--no-progress"], "last.pt cannot be read: it is truncated, damaged or not a gnn1000 checkpoint"),
    ("resume torn middle record", run_with(_bad_middle_metrics), ["train", "--resume", "{tmp}/run", "--no-progress"], "metrics.jsonl line 2 is not JSON"),
    ("evaluate random best.pt", run_with(_random_best), ["evaluate", "{tmp}/run"], "best.pt cannot be read: it is truncated, damaged or not a gnn1000 checkpoint (UnpicklingError: its contents are not a torch-saved dict of tensors)"),
    # datasets
    ("truncated edge.csv.gz", blogcatalog(_truncate_edges), [*NEW, *BLOG], "raw/edge.csv.gz is damaged (Compressed file ended before the end-of-stream marker was reached)"),
    ("30% of the edges", blogcatalog(_thirty_percent_of_edges), [*NEW, *BLOG], "but OGB's count files (num-node-list.csv.gz, num-edge-list.csv.gz) say 10,312 and 333,983"),
    # tune
    ("tune dead address", nothing, ["tune", "tune/resgnn", "--address", "127.0.0.1:{port}"], "no Ray head answers at 127.0.0.1:{port}"),
]


@pytest.mark.parametrize("name, setup, args, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, setup, args, expected, tmp_path, finished_run, capsys, monkeypatch, one_thread):
    watched = setup(tmp_path, finished_run)
    for key, value in getattr(setup, "env", {}).items():
        monkeypatch.setenv(key, value)
    port = closed_port()
    fill = {"tmp": tmp_path, "run": finished_run, "port": port}
    before = checksums(watched)
    capsys.readouterr()
    code = cli_main([a.format(**fill) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    message = err[err.find(f"gnn1000 {args[0]}: "):].strip()  # after any loader's progress bar
    assert message.startswith(f"gnn1000 {args[0]}: error: "), err
    assert "\n" not in message and "Traceback" not in message, err  # one paragraph
    assert expected.format(**fill) in message, err
    assert checksums(watched) == before  # nothing lost, nothing changed
    if watched.name == "new":
        assert not watched.exists()  # a new run that could not start leaves nothing
