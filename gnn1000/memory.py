"""Peak memory of the process: CUDA's allocator on GPU, resident set size on CPU."""

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
