"""Memory a training epoch uses: CUDA's allocator peak on GPU; on CPU the epoch's resident-set peak
above what was resident before it (the interpreter, libraries and data are not the model's)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator statistics, or on Linux the resident-set high-water mark."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif _CLEAR_REFS.exists():
        try:
            _CLEAR_REFS.write_text("5")  # "5" resets VmHWM (Linux >= 4.0), which ru_maxrss reports
        except OSError:  # a sandbox may forbid it; the peak then counts from process start
            pass


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def current_mb(device: torch.device) -> float:
    """Memory in use now: CUDA's allocated bytes, or the resident set size."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# What a run's ``step_memory_mb`` measures, by device type (summary.json's ``memory_kind``).
KIND = {"cuda": "cuda max_memory_allocated during the epoch",
        "cpu": "cpu peak resident set added by the epoch"}
LABEL = {"cuda": "peak allocated", "cpu": "added by the epoch"}


def used_mb(device: torch.device, before_mb: float) -> float:
    """Since :func:`reset_peak`: CUDA's peak allocation, or on CPU the peak resident set above ``before_mb``."""
    if device.type == "cuda":
        return peak_mb(device)
    return max(peak_mb(device) - before_mb, 0.0)
