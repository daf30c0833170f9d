"""What a result needs to be reproduced from its run directory alone: the environment record that every
``summary.json`` carries, and the ``experiment.deterministic`` switch.

The record holds what OGB's leaderboard form asks for (package versions, hardware) plus the git commit
of the config file's repository, so a run can be traced back to the code and config that made it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

# record key -> distribution name
PACKAGES = {"gnn1000": "gnn1000", "torch": "torch", "torch_geometric": "torch-geometric", "ogb": "ogb",
            "ray": "ray", "gin": "gin-config"}
GIT_TIMEOUT_S = 5  # a hung network filesystem must not hold up the end of a run


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # an optional one (Ray) that is not installed
        return None


def git_state(path: Path | str | None) -> dict | None:
    """``{"repository", "commit", "dirty"}`` of the git repository holding ``path``; None when there is
    no path, it is in no repository, or git is missing or too slow."""
    if path is None:
        return None
    folder = Path(path).resolve()
    folder = folder if folder.is_dir() else folder.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=True).stdout.strip()

    try:
        return {"repository": git("rev-parse", "--show-toplevel"), "commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):  # no git, not a repository, no commit yet, timed out
        return None


def environment(config_path: Path | str | None = None) -> dict:
    """Package versions, Python, platform, CPUs, CUDA / cuDNN and GPUs, and the git state of the
    repository holding ``config_path`` (null when there is none)."""
    cuda = torch.cuda.is_available()
    return {
        "packages": {name: _version(dist) for name, dist in PACKAGES.items()},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "config": str(config_path) if config_path is not None else None,
        "git": git_state(config_path),
    }


def hardware(env: dict) -> str:
    """'NVIDIA H200 x1 (CUDA 12.8); 16 CPUs, Linux-...' from an environment record."""
    gpus = env.get("gpus") or []
    accel = (f"{gpus[0]} x{len(gpus)} (CUDA {env.get('cuda')}); " if gpus else "no GPU; ")
    return f"{accel}{env.get('cpu_count')} CPUs, {env.get('platform')}"


@contextlib.contextmanager
def deterministic(enabled: bool, device: torch.device):
    """``torch.use_deterministic_algorithms`` for the body when ``enabled`` (an op with no deterministic
    implementation then raises, naming itself); the previous setting is restored afterwards. On CUDA,
    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` for deterministic matrix products: set here unless the user
    set it (it must be set before the process's first cuBLAS call to take effect)."""
    if not enabled:
        yield
        return
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False  # benchmarking picks kernels by timing, which varies
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


__all__ = ["environment", "git_state", "hardware", "deterministic", "PACKAGES"]
