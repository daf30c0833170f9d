"""``gnn1000 train`` under torchrun (or srun through torchrun, or any ``env://`` process group).

``torchrun --nproc-per-node N -m gnn1000 train CONFIG`` starts N copies of the CLI; this module makes
them one data-parallel run, as ``--workers`` does on Ray Train: every rank runs the same experiment
loop (:class:`gnn1000.ranks.Ranks` shards the batches, DDP averages the gradients: gloo on CPU, NCCL
on GPU), rank 0 owns the run directory, and every other rank writes a scratch copy in the temporary
folder that is removed when it ends, so the run directory is the one a single-process run writes.
torchrun's agent ends every rank when one fails, so an error on rank 0 does not leave the others waiting.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from gnn1000.errors import ConfigError
from gnn1000.ranks import Ranks

SCRATCH = Path(tempfile.gettempdir()) / "gnn1000-torchrun"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


@dataclass
class Launch(Ranks):
    """This process's place among the processes a launcher started (rank 0 of 1 when none did): the
    :class:`~gnn1000.ranks.Ranks` it will have, and what joining and leaving the group takes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    own_group: bool = False  # this module set the process group up, so it also takes it down
    scratch: Path | None = None  # a non-main rank's run directory

    @classmethod
    def detect(cls) -> Launch:
        """A process group already set up (``env://`` by the caller), else torchrun's environment
        (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else the single process."""
        if dist.is_available() and dist.is_initialized():
            current = Ranks.current()
            return cls(current.rank, current.world, current.local_rank)
        world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
        if world is None or rank is None or world <= 1:
            return cls()
        return cls(rank, world, _env_int("LOCAL_RANK") or 0)

    def check_flags(self, args) -> None:
        """What a launched run cannot combine with, in one paragraph."""
        if not self.parallel:
            return
        if args.workers is not None:
            raise ConfigError(f"--workers {args.workers} starts its own data-parallel workers on Ray Train, but this "
                              f"process is already rank {self.rank} of {self.world} that torchrun (or another "
                              f"launcher) started: the two would nest. Launch with torchrun without --workers, or "
                              f"run 'gnn1000 train CONFIG --workers N' once, without torchrun.")
        if args.seeds is not None or args.folds is not None or (args.resume and _repeated(args.resume)):
            raise ConfigError("--seeds and --folds cannot run under torchrun: repeated runs train one process "
                              "each. Launch torchrun once per seed (--bind 'experiment.seed = K', --run-dir "
                              "DIR-K), or run the repeats without torchrun.")

    def take_scratch(self, args) -> None:
        """On a rank other than 0: the run directory becomes a scratch folder of its own (for --resume,
        a copy of the run to continue from), and the rank's messages and warnings are left to rank 0."""
        if not self.parallel or self.is_main:
            return
        run_id = os.environ.get("TORCHELASTIC_RUN_ID") or uuid.uuid4().hex
        self.scratch = SCRATCH / f"{run_id}-{os.getpid()}" / f"rank-{self.rank}"
        shutil.rmtree(self.scratch, ignore_errors=True)
        if args.resume:
            from gnn1000.tune.run_checkpoint import copy_run_dir

            copy_run_dir(Path(args.resume), self.scratch)
            args.resume = str(self.scratch)
        else:
            args.run_dir, args.overwrite = str(self.scratch), False
        args.no_progress = True
        logging.getLogger("gnn1000").setLevel(logging.WARNING)
        warnings.simplefilter("ignore")  # rank 0 shows the run's warnings once

    def join(self) -> Ranks:
        """The process group, set up after the config is loaded (its device chooses the backend):
        NCCL with each rank on GPU ``LOCAL_RANK`` of its machine when the run trains on CUDA, else gloo."""
        if not self.parallel:
            return Ranks()
        if not dist.is_initialized():
            import gin

            from gnn1000 import config
            from gnn1000.experiment import pick_device

            cuda = pick_device(config.settings().device).type == "cuda"
            if cuda:
                torch.cuda.set_device(self.local_rank)
                with gin.unlock_config():
                    gin.bind_parameter("experiment.device", f"cuda:{self.local_rank}")
            dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
            self.own_group = True
        return Ranks.current()

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc) -> bool:
        self.leave()
        return False

    def leave(self) -> None:
        """After the run, finished or failed: a scratch folder goes, and the group this module set up
        is taken down (no barrier: a rank that failed must not keep the others waiting)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch.parent, ignore_errors=True)
        if self.own_group and dist.is_initialized():
            dist.destroy_process_group()
            self.own_group = False


def _repeated(path: str) -> bool:
    from gnn1000.repeats import is_repeated_run

    return is_repeated_run(path)
