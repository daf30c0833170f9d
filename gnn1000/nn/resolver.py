"""Turn ``operator`` / ``norm`` arguments (a registry name, a class or a callable) into modules.

Every block calls its operator as ``conv(x, edge_index, edge_attr)`` and its norm as
``norm(x, batch)``. An operator whose forward also names ``x0`` or ``layer`` (keyword arguments,
see :data:`STACK_INPUTS`) gets them from the stack it runs in. Registered components follow that convention; a plain PyG class
(``GCNConv``, ``SAGEConv``, ``torch_geometric.nn.BatchNorm``...) is adapted here by reading its
signature: ``edge_dim`` is passed only to constructors that name it, ``edge_attr`` only to
forwards that take it, ``batch`` only to norms that take it. Hand-written because PyG's own
``resolver`` hands classes back unbuilt and knows only PyG's classes, not our registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Union

import torch
from torch import Tensor

from gnn1000 import registry
from gnn1000.errors import ConfigError

#: What a stack hands to an operator whose ``forward`` names it, after ``(x, edge_index, edge_attr)``:
#: ``x0``, the stack's initial representation (the encoder's output; in RevGNN its group's slice),
#: for initial-residual operators such as GCNII; ``layer``, the 1-based index of the layer that
#: runs (None inside an equilibrium block, which has no depth). The one contract for every stack.
STACK_INPUTS = ("x0", "layer")

#: What ``operator=`` and ``norm=`` accept: a registry name, a ``torch.nn.Module`` class, or a callable
#: returning a module.
ModuleSpec = Union[str, Callable[..., torch.nn.Module]]


class LeadingArgs(torch.nn.Module):
    """Calls ``module`` with only its first ``num_args`` positional arguments (drops what it cannot take)."""

    def __init__(self, module: torch.nn.Module, num_args: int):
        super().__init__()
        self.module = module
        self.num_args = num_args

    def reset_parameters(self) -> None:
        reset(self.module)

    def forward(self, *args: Any, **stack_inputs: Any) -> Tensor:
        return self.module(*args[:self.num_args], **stack_inputs)


def reset(module: torch.nn.Module) -> None:
    """``module.reset_parameters()`` when it has one, else the same on each of its children."""
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    for child in module.children():
        reset(child)


def _parameters(fn: Callable) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # builtins without a signature: assume they take everything
        return {}


def takes_argument(fn: Callable, name: str, position: int) -> bool:
    """Whether ``fn`` takes ``name`` as its ``position``-th positional parameter (self excluded)."""
    params = [p for p in _parameters(fn).values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(params) > position and params[position].name == name


def stack_inputs(module: torch.nn.Module) -> frozenset[str]:
    """Which of :data:`STACK_INPUTS` ``module``'s forward takes (through :class:`LeadingArgs`)."""
    inner = module.module if isinstance(module, LeadingArgs) else module
    params = _parameters(inner.forward)
    return frozenset(name for name in STACK_INPUTS if name in params)


def pick_stack_inputs(wanted: frozenset[str], x0: Tensor | None, layer: int | None) -> dict[str, Any]:
    """The keyword arguments of :data:`STACK_INPUTS` an operator that takes ``wanted`` is called with."""
    given = {"x0": x0, "layer": layer}
    return {name: given[name] for name in wanted}


def _build(kind: str, spec: ModuleSpec, args: tuple, kwargs: dict[str, Any] | None) -> torch.nn.Module:
    if isinstance(spec, torch.nn.Module):
        raise ConfigError(
            f"{kind[:-1]}={spec!r} is a module instance, which every layer would share; pass its class, "
            f"a callable returning a new module, or a registered name ({', '.join(registry.available(kind))})."
        )
    factory = registry.resolve(kind, spec)
    if not callable(factory):
        raise ConfigError(f"{kind[:-1]}={spec!r} is neither a registered name, a class nor a callable.")
    try:
        module = factory(*args, **(kwargs or {}))
    except TypeError as exc:
        raise ConfigError(f"Building {kind[:-1]} {spec!r} with arguments {args} and "
                          f"{kind[:-1]}_kwargs={kwargs or {}} failed: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"{kind[:-1]} {spec!r} returned {type(module).__name__}, not a torch.nn.Module.")
    return module


def build_operator(operator: ModuleSpec, in_channels: int, out_channels: int, edge_dim: int | None = None,
                   operator_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """An operator module mapping ``in_channels`` to ``out_channels``, called as ``conv(x, edge_index, edge_attr)``.

    A conv with concatenated attention heads (``heads`` in ``operator_kwargs``, e.g. GATConv) is
    built with ``out_channels // heads`` channels per head, so its output keeps ``out_channels``.
    """
    kwargs = dict(operator_kwargs or {})
    factory = operator if not isinstance(operator, str) else registry.resolve("operators", operator)
    params = _parameters(factory)
    heads = kwargs.get("heads", 1)
    if heads != 1 and kwargs.get("concat", True) and "concat" in params:
        if out_channels % heads:
            raise ConfigError(f"operator {operator!r}: out_channels={out_channels} must be divisible by "
                              f"heads={heads}, because the heads are concatenated.")
        out_channels //= heads
    if edge_dim is not None and "edge_dim" in params:
        kwargs["edge_dim"] = edge_dim
    module = _build("operators", factory, (in_channels, out_channels), kwargs)
    if takes_argument(module.forward, "edge_attr", 2) and (edge_dim is None or "edge_dim" in params):
        return module
    return LeadingArgs(module, 2)  # the operator cannot use edge features: it gets (x, edge_index)


def build_norm(norm: ModuleSpec, channels: int, norm_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """A normalisation module over ``channels``, called as ``norm(x, batch)``."""
    module = _build("norms", norm, (channels,), norm_kwargs)
    return module if takes_argument(module.forward, "batch", 1) else LeadingArgs(module, 1)
