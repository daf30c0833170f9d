"""The paper's named models, defined once: ``create_model(name, ...)`` and ``list_models(pattern)``.

:data:`MODELS` is the one source of truth for these models' architecture and hyper-parameters: the
bindings of each shipped ``configs/models/<name>.gin`` are generated from its entry by
``python -m gnn1000.models`` (only the comment above them is written by hand), and
``python -m gnn1000.models --check`` (a test) says when a file is not what the table generates.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gnn1000.errors import UnknownNameError, unknown_name_message
from gnn1000.registry import gin_name, resolve


@dataclass(frozen=True)
class ModelSpec:
    """One named model: its registered architecture and constructor arguments."""

    architecture: str
    kwargs: dict[str, Any]
    operator_kwargs: dict[str, Any] = field(default_factory=dict)
    norm_kwargs: dict[str, Any] = field(default_factory=dict)
    about: str = ""


_GEN_SOFTMAX = {"aggr": "softmax", "t": 1.0, "learn_t": True}
_DEQ = {"num_layers": 3, "pretrain_epochs": 0, "operator": "gen", "norm": "layernorm", "dropout": 0.1,
        "solver": "broyden", "bwd_solver": "broyden", "fwd_tol": 1e-3, "fwd_max_iter": 30, "bwd_tol": 1e-3,
        "bwd_max_iter": 40, "stop_mode": "rel", "gradient": "implicit"}

MODELS: dict[str, ModelSpec] = {
    "revgnn-deep": ModelSpec("revgnn", {"hidden_channels": 80, "num_layers": 1001, "num_groups": 2, "dropout": 0.1,
                                        "operator": "gen", "norm": "layernorm"}, _GEN_SOFTMAX,
                             about="1001 reversible layers x 80 channels (ogbn-proteins 87.74 ROC-AUC, 2.86 GB)"),
    "revgnn-wide": ModelSpec("revgnn", {"hidden_channels": 224, "num_layers": 448, "num_groups": 2, "dropout": 0.2,
                                        "operator": "gen", "norm": "layernorm"}, _GEN_SOFTMAX,
                             about="448 reversible layers x 224 channels (ogbn-proteins 88.24 ROC-AUC)"),
    "wt-revgnn-224": ModelSpec("revgnn", {"hidden_channels": 224, "num_layers": 112, "num_groups": 2,
                                          "weight_tied": True, "dropout": 0.1, "operator": "gen",
                                          "norm": "layernorm"}, _GEN_SOFTMAX,
                               about="weight-tied RevGNN, 112 layers x 224 channels"),
    "resgnn-64": ModelSpec("resgnn", {"hidden_channels": 64, "num_layers": 112, "dropout": 0.1, "operator": "gen",
                                      "norm": "layernorm"}, _GEN_SOFTMAX,
                           about="the residual baseline at 112 layers x 64 channels"),
    "revgcn-deep": ModelSpec("revgnn", {"hidden_channels": 128, "num_layers": 28, "num_groups": 2, "dropout": 0.5,
                                        "operator": "gcn", "norm": "batchnorm"},
                             about="RevGCN-Deep, 28 layers x 128 channels (ogbn-arxiv)"),
    "revsage": ModelSpec("revgnn", {"hidden_channels": 128, "num_layers": 28, "num_groups": 2, "dropout": 0.5,
                                    "operator": "sage", "norm": "batchnorm"}, {"aggr": "mean"},
                         about="RevSAGE, 28 layers x 128 channels (ogbn-arxiv)"),
    "revgat": ModelSpec("revgnn", {"hidden_channels": 240, "num_layers": 28, "num_groups": 2, "dropout": 0.5,
                                   "operator": "gat", "norm": "batchnorm"}, {"heads": 3, "attention_dropout": 0.0},
                        about="RevGAT, 28 layers x 240 channels, 3 heads (ogbn-arxiv)"),
    "revgnn-160": ModelSpec("revgnn", {"hidden_channels": 160, "num_layers": 56, "num_groups": 2, "dropout": 0.2,
                                       "operator": "gen", "norm": "layernorm"}, _GEN_SOFTMAX,
                            about="56 reversible layers x 160 channels (ogbn-products)"),
    "revgnn-256": ModelSpec("revgnn", {"hidden_channels": 256, "num_layers": 14, "num_groups": 2, "dropout": 0.5,
                                       "readout": "mean", "operator": "gen"}, _GEN_SOFTMAX,
                            about="14 reversible layers x 256 channels, mean readout (ogbg-molhiv)"),
    "deq-gnn-64": ModelSpec("deq", {"hidden_channels": 64, **_DEQ}, {"aggr": "max"},
                            about="equilibrium GNN, 64 channels"),
    "deq-gnn-224": ModelSpec("deq", {"hidden_channels": 224, **_DEQ}, {"aggr": "max"},
                             about="equilibrium GNN, 224 channels"),
}


def list_models(pattern: str = "*") -> list[str]:
    """Names of the paper's models matching a shell-style ``pattern``, sorted.

    >>> print(", ".join(list_models("*rev*")[:3]))
    revgat, revgcn-deep, revgnn-160
    """
    return sorted(name for name in MODELS if fnmatch.fnmatch(name, pattern))


def create_model(name: str, in_channels: int, out_channels: int, **overrides: Any) -> torch.nn.Module:
    """Build one of the paper's models by name, with any constructor argument overridden.

    Args:
        name: A name from :func:`list_models`.
        in_channels: Width of the input node features.
        out_channels: Number of outputs per node (per graph with ``readout``).
        **overrides: Constructor arguments that replace the model's own (``num_layers=8``,
            ``edge_dim=8``...). ``operator_kwargs`` / ``norm_kwargs`` are merged into the model's;
            a different ``operator`` or ``norm`` drops the model's options for the old one.

    >>> model = create_model("revgnn-deep", in_channels=8, out_channels=112, num_layers=3, hidden_channels=16)
    >>> type(model).__name__, model.stack.num_layers
    ('RevGNN', 3)
    """
    if name not in MODELS:
        raise UnknownNameError(unknown_name_message("model", name, list_models()))
    spec = MODELS[name]
    kwargs = {**spec.kwargs, **overrides}
    for part, own in (("operator", spec.operator_kwargs), ("norm", spec.norm_kwargs)):
        inherited = own if kwargs.get(part) == spec.kwargs.get(part) else {}
        merged = {**inherited, **(overrides.get(f"{part}_kwargs") or {})}
        if merged:
            kwargs[f"{part}_kwargs"] = merged
    return resolve("architectures", spec.architecture)(in_channels=in_channels, out_channels=out_channels, **kwargs)


# -- the shipped gin fragments, generated from MODELS -------------------------------------------------

GENERATED = ("# Generated from gnn1000.models.MODELS by 'python -m gnn1000.models': change the table, "
             "not the lines below.")


def gin_bindings(name: str) -> list[str]:
    """The gin bindings that build ``MODELS[name]``: its architecture, arguments and component options."""
    spec = MODELS[name]
    arch = gin_name(spec.architecture)
    lines = [f"experiment.architecture = {spec.architecture!r}", *(f"{arch}.{k} = {v!r}" for k, v in spec.kwargs.items())]
    for part, options in (("operator", spec.operator_kwargs), ("norm", spec.norm_kwargs)):
        if options:
            component = spec.kwargs.get(part) or \
                inspect.signature(resolve("architectures", spec.architecture)).parameters[part].default
            lines += [f"{gin_name(component)}.{k} = {v!r}" for k, v in options.items()]
    return lines


def configs_folder() -> Path:
    """``configs/models`` of this checkout or installed copy."""
    return Path(str(importlib.resources.files("gnn1000.configs"))) / "models"


def _prose(text: str) -> str:
    """The hand-written comment above a fragment's generated bindings."""
    if GENERATED in text:
        return text.split(GENERATED, 1)[0]
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")), len(lines))
    return "".join(lines[:end])


def render(name: str, prose: str = "") -> str:
    """``configs/models/<name>.gin``: ``prose``, then the bindings generated from the table."""
    head = prose.rstrip("\n") + "\n" if prose.strip() else ""
    return head + GENERATED + "\n" + "\n".join(gin_bindings(name)) + "\n"


def stale_configs(folder: Path | None = None) -> list[str]:
    """Names whose fragment in ``folder`` is missing or not what :data:`MODELS` generates, and
    fragments that have no entry in the table."""
    folder = folder or configs_folder()
    stale = [name for name in MODELS if not (folder / f"{name}.gin").is_file()
             or (text := (folder / f"{name}.gin").read_text()) != render(name, _prose(text))]
    return sorted(stale + [p.stem for p in folder.glob("*.gin") if p.stem not in MODELS])


def write_configs(folder: Path | None = None) -> list[str]:
    """Regenerate every table entry's fragment in ``folder``, keeping each file's comment; the names rewritten."""
    folder = folder or configs_folder()
    written = []
    for name in MODELS:
        path = folder / f"{name}.gin"
        old = path.read_text() if path.is_file() else ""
        new = render(name, _prose(old))
        if new != old:
            path.write_text(new)
            written.append(name)
    return written


__all__ = ["MODELS", "ModelSpec", "create_model", "list_models"]


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        stale = stale_configs()
        print(f"not generated from gnn1000.models.MODELS: {', '.join(stale)}; run 'python -m gnn1000.models'"
              if stale else "configs/models is what gnn1000.models.MODELS generates")
        sys.exit(1 if stale else 0)
    print("\n".join(f"wrote configs/models/{name}.gin" for name in write_configs()) or "nothing to write")
