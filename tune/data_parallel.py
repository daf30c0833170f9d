"""One model trained data-parallel on Ray Train: ``gnn1000 train CONFIG --workers N``.

Every worker runs the ``gnn1000 train`` experiment loop (:class:`gnn1000.experiment.Experiment`) from
the flattened gin text, wrapped in DDP (gloo on CPU, NCCL on GPU), on its share of each epoch's
batches. Each worker writes a scratch run directory of its own; rank 0 reports its own to Ray Train
as the checkpoint after every epoch, and the calling process copies that checkpoint into ``run_dir``,
so ``run_dir`` holds rank 0's run only and is complete after every epoch, on one machine or a cluster.
A lost worker restarts the whole group from the last checkpoint (``max_failures``).
"""

from __future__ import annotations

import contextlib
import math
import os
import queue as queue_module
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchTrainer
from ray.util.queue import Queue

from gnn1000 import config as gin_config
from gnn1000.callbacks import REPORT, Callback
from gnn1000.errors import ConfigError, Gnn1000Error
from gnn1000.tune.cluster import ray_cause, ray_session
from gnn1000.tune.run_checkpoint import mirror, reported, restore_run_dir

SCRATCH = Path(tempfile.gettempdir()) / "gnn1000-train"
DONE = "gnn1000_done"  # the key of the report sent after the summary is written
MIRROR_WAIT_S = 120.0  # how long rank 0 waits for the caller's copy of an epoch before training on regardless


def check_workers(workers: int, gpus_per_worker: float, cpus_per_worker: int, cluster: dict) -> None:
    """Refuse, in one paragraph, what cannot run: bad counts, or more than the cluster has (Ray
    Train would otherwise wait for the resources forever)."""
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers {workers}: the number of data-parallel workers must be an integer >= 1.")
    if gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker}: must be >= 0 (0 trains on CPUs).")
    if workers > 1 and 0 < gpus_per_worker < 1:
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g} with --workers {workers}: data-parallel workers "
                          f"cannot share a GPU (NCCL refuses two ranks on one device); give each a whole GPU "
                          f"(--gpus-per-worker 1) or train on CPUs (0).")
    if not isinstance(cpus_per_worker, int) or cpus_per_worker < 1:
        raise ConfigError(f"cpus_per_worker={cpus_per_worker}: each worker needs an integer >= 1 of CPUs.")
    want = {"CPU": workers * cpus_per_worker, "GPU": workers * gpus_per_worker}
    have = {kind: cluster.get(kind, 0) for kind in want}
    short = [f"{want[k]:g} {k}s but the cluster has {have[k]:g}" for k in want if want[k] > have[k]]
    if short:
        hint = ("leave --gpus-per-worker out (0) to train on CPUs, or start Ray on machines with GPUs"
                if want["GPU"] > have["GPU"] else "use fewer --workers or add machines to the cluster")
        raise ConfigError(f"--workers {workers} needs {'; '.join(short)}. Ray Train would wait for them "
                          f"forever; {hint}.")


class _Forward(UserCallback):
    """On the Ray Train controller: hands rank 0's record and the persisted checkpoint to the caller."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint):
        self.queue.put(("report", metrics[0], checkpoint))

    def after_exception(self, run_context, worker_exceptions):
        failed = ", ".join(f"rank {rank}: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"
                           for rank, exc in sorted(worker_exceptions.items()))
        self.queue.put(("failure", failed, None))


def fit_data_parallel(config_text: str, run_dir: str | Path, *, workers: int,
                      gpus_per_worker: float = 0.0, cpus_per_worker: int = 1,
                      storage: str | None = None, max_failures: int = 0,
                      resume: bool = False, on_epoch: Callable[[dict, Path], None] | None = None,
                      name: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Train the experiment ``config_text`` (flattened gin) in ``workers`` Ray Train workers on the Ray
    already initialised; ``run_dir`` receives rank 0's run after every epoch, then
    ``on_epoch(record, run_dir)`` runs here. ``resume`` continues the run in ``run_dir`` from its last
    checkpoint. ``storage``: Ray Train's storage_path (default ``run_dir``'s parent ``/ray-train``).
    Returns the last epoch's record. ``log`` hears of worker failures as they happen.
    """
    check_workers(workers, gpus_per_worker, cpus_per_worker, ray.cluster_resources())
    run_dir = Path(run_dir).resolve()
    name = name or f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
    storage = storage or str(run_dir.parent / "ray-train")
    storage = storage if "://" in storage else str(Path(storage).expanduser().resolve())
    forward = Queue(actor_options={"num_cpus": 0})
    stop = Queue(actor_options={"num_cpus": 0})  # the caller asks the workers to end after their next epoch
    mirrored = Queue(actor_options={"num_cpus": 0})  # the epochs run_dir holds, for rank 0 to wait on
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"config_text": config_text, "workdir": os.getcwd(), "use_gpu": gpus_per_worker > 0,
                           "resume_from": str(run_dir) if resume else None, "scratch": str(SCRATCH / uuid.uuid4().hex),
                           "stop": stop, "mirrored": mirrored},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker={"CPU": cpus_per_worker,
                                                           **({"GPU": gpus_per_worker} if gpus_per_worker else {})}),
        run_config=RunConfig(name=name, storage_path=storage, callbacks=[_Forward(forward)],
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    outcome: dict = {}

    def fit() -> None:  # in a thread, so that on_epoch runs in the caller's
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001  re-raised in the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="gnn1000-train-fit", daemon=True)
    thread.start()
    last: dict | None = None
    try:
        while thread.is_alive() or not forward.empty():
            try:
                kind, record, checkpoint = forward.get(timeout=0.5)
            except queue_module.Empty:
                continue
            if kind == "failure":
                log(f"worker failure ({record}); Ray Train restarts the workers from the last checkpoint "
                    f"if FailureConfig(max_failures={max_failures}) allows")
                continue
            if checkpoint is not None:
                with checkpoint.as_directory() as saved:
                    mirror(Path(saved), run_dir)
                mirrored.put(record.get("epoch", 0))
            if record.get(DONE):
                continue
            last = record
            if on_epoch is not None:
                on_epoch(record, run_dir)
        thread.join()
    except BaseException:
        # on_epoch raised (Tune stopping the trial raises SystemExit in it): end the Ray Train run
        # too, or its workers would keep their CPUs and GPUs reserved for a run nobody reads
        stop.put(True)
        mirrored.put(math.inf)  # rank 0 waits for no copy that will not come
        thread.join()
        raise
    finally:
        for each in (forward, stop, mirrored):
            ray.kill(each.actor)
    if "error" in outcome:
        raise _user_error(outcome["error"]) from outcome["error"]
    return last or {}


def _user_error(exc: BaseException) -> BaseException:
    """A worker's own gnn1000 error (a bad setting, the NaN stop), not Ray's wrapping of it."""
    for failure in getattr(exc, "worker_failures", {}).values():
        cause = ray_cause(failure)
        if isinstance(cause, Gnn1000Error):
            return cause
    return exc


class _StopRequested(Exception):
    """Raised in every worker after an epoch's report when the caller has asked the run to end."""


def _train_worker(loop_config: dict) -> None:
    """One Ray Train worker: the experiment loop on this rank's share, reporting every epoch."""
    from gnn1000 import checkpoint
    from gnn1000.build import build_experiment
    from gnn1000.ranks import Ranks
    from gnn1000.resume import resume_entry

    context = ray.train.get_context()
    rank = context.get_world_rank()
    if os.path.isdir(loop_config["workdir"]):  # relative paths (dataset roots) mean what they mean for the caller
        os.chdir(loop_config["workdir"])
    device = str(ray.train.torch.get_device()) if loop_config["use_gpu"] else "cpu"
    gin_config.load(None, [loop_config["config_text"], f"experiment.device = {device!r}"])
    run_dir = Path(loop_config["scratch"]) / f"rank-{rank}"
    reported_here = ray.train.get_checkpoint()  # a checkpoint of this run: the group was restarted
    # --resume: the run directory itself (on a cluster it must be on storage every node reads)
    start = reported_here or (ray.train.Checkpoint.from_directory(loop_config["resume_from"])
                              if loop_config["resume_from"] else None)
    restored = restore_run_dir(run_dir, start)
    main = rank == 0
    stop_requested = loop_config["stop"]
    report = TrainReport(run_dir, main, lambda: not stop_requested.empty(),
                         lambda epoch: _wait_until_mirrored(loop_config["mirrored"], epoch))
    experiment = build_experiment(run_dir, progress=False, log=print if main else (lambda _: None),
                                  ranks=Ranks.current(), callbacks=[report])
    if reported_here is not None:  # a worker was lost: the records say so (resumes.jsonl, config.gin's header)
        entry = resume_entry(checkpoint.load_latest(experiment.run.last)[0]["epoch"], {},
                             experiment.run.last.name)
        entry["reason"] = "Ray Train restarted the worker group from this checkpoint after a worker failed"
        experiment.run.record_resume(entry)
    try:
        experiment.fit(resume=restored)  # holds and releases the scratch run directory (RunSession)
        report.send(experiment, {DONE: True})  # the checkpoint with summary.json
    except _StopRequested:
        pass  # the caller stopped reading: the run ends after the epoch it last reported
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last rank out removes the run's scratch folder
            run_dir.parent.rmdir()


def _wait_until_mirrored(mirrored: Queue, epoch: int) -> None:
    """Block until the caller has copied ``epoch`` into its run directory, or MIRROR_WAIT_S passed (a
    slow caller must not stop training for good; a killed local one takes the workers with it)."""
    deadline = time.monotonic() + MIRROR_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            if mirrored.get(timeout=left) >= epoch:
                return
        except queue_module.Empty:
            break
    print(f"the run directory's copy of epoch {epoch} took over {MIRROR_WAIT_S:g} s; training on", flush=True)


class TrainReport(Callback):
    """Every rank reports each epoch to Ray Train once its run directory holds it (a barrier); rank
    0's report carries that directory as the checkpoint, and rank 0 starts the next epoch only once
    the caller's run directory holds this one (``wait_mirrored``): that copy, which a killed caller
    leaves to resume from, is never more than the epoch in progress behind the workers. After a
    report, every rank ends the run together when the caller asked rank 0 to (``stop_asked()``)."""

    order = REPORT

    def __init__(self, run_dir: Path, main: bool, stop_asked: Callable[[], bool],
                 wait_mirrored: Callable[[int], None]):
        self.run_dir = run_dir
        self.main = main
        self.stop_asked = stop_asked
        self.wait_mirrored = wait_mirrored

    def send(self, trainer, metrics: dict) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(self.run_dir)) if self.main else None
        ray.train.report(metrics, checkpoint=checkpoint)
        if self.main and "epoch" in metrics:
            self.wait_mirrored(metrics["epoch"])
        if trainer.ranks.from_main(self.main and self.stop_asked()):  # all ranks end together
            raise _StopRequested

    def on_epoch_end(self, trainer, record):
        self.send(trainer, reported(record))


def train_with_workers(run, *, resume: bool, workers: int, gpus_per_worker: float | None = None,
                       address: str | None = None, storage: str | None = None,
                       max_failures: int = 0) -> dict:
    """``gnn1000 train --workers``: the parsed gin config trained data-parallel into ``run`` (a
    :class:`~gnn1000.rundir.RunDir`), on the cluster at ``address`` or a new local Ray; returns the
    run's summary."""
    import json

    import gin

    from gnn1000.rundir import RunSession

    gpus = gpus_per_worker or 0.0
    config_text = gin.config_str()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if address is None and workers > cpus:  # a local Ray sized past the real CPUs would start them all, starved
        raise ConfigError(f"--workers {workers}: this machine gives gnn1000 {cpus} CPU{'s' if cpus != 1 else ''}, and "
                          f"each worker needs one; use --workers {cpus} or fewer, or join a cluster with --address.")
    # the workers write scratch copies; a run that reported nothing is removed whatever stopped it
    with RunSession(run, new=not resume, discard_on=(BaseException,)):
        with ray_session(address or "local", num_cpus=cpus):
            print(f"training on {workers} Ray Train workers ({gpus:g} GPU and 1 CPU each); "
                  f"Ray Train storage: {storage or run.path.resolve().parent / 'ray-train'}", flush=True)
            fit_data_parallel(config_text, run.path, workers=workers, gpus_per_worker=gpus, storage=storage,
                              resume=resume, max_failures=max_failures)
    return json.loads(run.summary.read_text())
