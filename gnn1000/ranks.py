"""Where this process stands in a data-parallel run, and the few collectives the loop needs.

``Ranks()`` (no process group) is the single-process run: rank 0 of 1, every collective a no-op, so
the experiment loop has one code path. Under ``torch.distributed`` (Ray Train's TorchTrainer sets it
up) the loop shards each epoch's batches by rank, sums what the ranks computed and lets rank 0 score.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Ranks:
    """``rank`` of ``world`` processes that train one model together."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int | None = None):
        self.rank, self.world = rank, world
        self.local_rank = rank if local_rank is None else local_rank  # rank among this machine's processes

    @classmethod
    def current(cls) -> Ranks:
        """The process group torch.distributed holds, or the single process."""
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank()
            return cls(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))  # torchrun, Ray Train
        return cls()

    @property
    def parallel(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    def mine(self, items: list) -> list:
        """This rank's share of one epoch's batches: every ``world``-th, starting at ``rank``."""
        return items[self.rank::self.world]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum over ranks (in place; returned for chaining)."""
        if self.parallel:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order (pickled: for ragged per-rank results)."""
        if not self.parallel:
            return [value]
        out = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def from_main(self, value):
        """Rank 0's ``value`` on every rank (what rank 0 scored, so all ranks agree on best and stop)."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
