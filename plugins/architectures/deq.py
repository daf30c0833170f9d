"""DEQ-GNN: an infinitely deep weight-tied GNN, Z* = f(Z*, X), solved by ``gnn1000.nn.DEQ``.

f is the paper's block (``EquilibriumBlock``). Left as the paper writes it, the equilibrium forgets
its input on Cora: the encoded features are ~1e-3 per channel against O(1) for Conv(Z), so
Norm(Z' + X) washes X out and every node settles on the same Z* (one class, loss ln 7). The
options below are the field's remedies, each on by default where it is needed to learn:

* ``injection_norm``: the encoded input passes through its own norm, so X enters f at Z's scale.
* ``init_gain``: the Z-path conv (conv1) starts with weights scaled by this gain, so f starts
  contractive and the solve converges from the first epoch.
* ``weight_norm``: weight normalisation (torch.nn.utils.parametrizations) of the block's convs.
* ``jac_reg``: Hutchinson penalty on ||J_f||_F^2, which keeps f contractive while it trains.
* ``pretrain_epochs`` + ``handover``: the first epochs train the unrolled model (f applied
  ``num_layers`` times from zero); ``handover='warm_start'`` then starts every solve from that
  unrolled state, so the equilibrium takes over the fixed point the warm-up was approaching.

The model learns the epoch through ``set_epoch(epoch)`` (1-based; the experiment loop calls it
before each epoch); the epoch is a buffer, so a checkpoint restores the mode with the weights.
``pop_metrics()`` returns deq_warmup and the solver statistics of the epoch's training solves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gnn1000.errors import ConfigError, check_bools
from gnn1000.nn.deq import GRADIENTS, DEQ, SolverConvergenceWarning  # noqa: F401  re-exported
from gnn1000.registry import register

from gnn1000.nn.base import DeepGNN
from gnn1000.nn.blocks import shared_dropout_mask
from gnn1000.nn.resolver import ModuleSpec, build_norm, build_operator, pick_stack_inputs, reset, stack_inputs

HANDOVERS = ("warm_start", "zeros")


class EquilibriumBlock(torch.nn.Module):
    """The paper's f: Z' = Conv(Z); Z'' = Norm(Z' + X); Z''' = Conv(Dropout(ReLU(Z''))); Norm(ReLU(Z''' + Z')).

    Operators that take ``x0`` get the injected input X; ``layer`` is None (an equilibrium has no depth).
    """

    def __init__(self, channels: int, *, operator: ModuleSpec = "gen", norm: ModuleSpec = "layernorm",
                 edge_dim: int | None = None, operator_kwargs: dict | None = None, norm_kwargs: dict | None = None):
        super().__init__()
        self.conv1 = build_operator(operator, channels, channels, edge_dim, operator_kwargs)
        self.norm1 = build_norm(norm, channels, norm_kwargs)
        self.conv2 = build_operator(operator, channels, channels, edge_dim, operator_kwargs)
        self.norm2 = build_norm(norm, channels, norm_kwargs)
        self.conv_inputs = stack_inputs(self.conv1)

    def forward(self, z: Tensor, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | None = None) -> Tensor:
        extra = pick_stack_inputs(self.conv_inputs, x, None)
        z1 = self.conv1(z, edge_index, edge_attr, **extra)
        h = F.relu(self.norm1(z1 + x, batch))
        if dropout_mask is not None:
            h = h * dropout_mask
        z3 = self.conv2(h, edge_index, edge_attr, **extra)
        return self.norm2(F.relu(z3 + z1), batch)


def _scale(module: torch.nn.Module, gain: float) -> None:
    """Scale every weight matrix of ``module`` by ``gain`` (weight-normed ones through their direction)."""
    with torch.no_grad():
        for sub in _weights(module):
            if torch.nn.utils.parametrize.is_parametrized(sub, "weight"):
                sub.parametrizations.weight.original0.mul_(gain)  # weight norm's magnitude g
            else:
                sub.weight.mul_(gain)


def _weights(module: torch.nn.Module):
    """(submodule, name) of every 2-D weight matrix: what weight norm and the init gain act on."""
    for sub in module.modules():
        weight = sub._parameters.get("weight") if hasattr(sub, "_parameters") else None
        if isinstance(weight, torch.nn.Parameter) and weight.dim() == 2:
            yield sub


@register("architectures", "deq")
class DEQGNN(DeepGNN):
    """Equilibrium GNN: encoder -> Z* = f(Z*, X) -> output head.

    ``num_layers`` is the depth of the unrolled weight-tied model used during warm-up
    (``pretrain_epochs``) and of the hand-over's warm start; the equilibrium itself has no depth.
    """

    config_name = "deq"
    hops = None  # unbounded: the fixed point sees as many hops as its solver iterates

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int, *,
                 operator: ModuleSpec = "gen", norm: ModuleSpec = "layernorm", dropout: float = 0.0,
                 edge_dim: int | None = None, operator_kwargs: dict | None = None, norm_kwargs: dict | None = None,
                 solver="broyden", bwd_solver="broyden", fwd_tol: float = 1e-3, fwd_max_iter: int = 30,
                 bwd_tol: float = 1e-3, bwd_max_iter: int = 40, stop_mode: str = "rel",
                 gradient: str = "implicit", pretrain_epochs: int = 0, readout: str | None = None,
                 input_dropout: float = 0.0, injection_norm: bool = True, init_gain: float = 0.5,
                 weight_norm: bool = False, jac_reg: float = 0.0, handover: str = "warm_start",
                 edge_dropout: float = 0.0):
        check_bools("deq", injection_norm=injection_norm, weight_norm=weight_norm)
        if gradient not in GRADIENTS:
            raise ConfigError(f"deq.gradient={gradient!r} is not supported; choose one of {', '.join(GRADIENTS)}.")
        if not isinstance(pretrain_epochs, int) or pretrain_epochs < 0:
            raise ConfigError(f"deq.pretrain_epochs={pretrain_epochs!r} must be a non-negative integer.")
        if handover not in HANDOVERS:
            raise ConfigError(f"deq.handover={handover!r} is not supported; choose one of {', '.join(HANDOVERS)}.")
        if not init_gain > 0:
            raise ConfigError(f"deq.init_gain={init_gain!r} must be positive (1 keeps the conv's own init).")
        super().__init__(in_channels, hidden_channels, out_channels, num_layers, operator=operator, norm=norm,
                         dropout=dropout, edge_dim=edge_dim, operator_kwargs=operator_kwargs,
                         norm_kwargs=norm_kwargs, readout=readout, input_dropout=input_dropout,
                         edge_dropout=edge_dropout, solver=solver, bwd_solver=bwd_solver, fwd_tol=fwd_tol,
                         fwd_max_iter=fwd_max_iter, bwd_tol=bwd_tol, bwd_max_iter=bwd_max_iter,
                         stop_mode=stop_mode, gradient=gradient, pretrain_epochs=pretrain_epochs,
                         injection_norm=injection_norm, init_gain=init_gain, weight_norm=weight_norm,
                         jac_reg=jac_reg, handover=handover)

    def build_stack(self, hidden_channels, num_layers, *, operator, norm, dropout, edge_dim, operator_kwargs,
                    norm_kwargs, pretrain_epochs, injection_norm, init_gain, weight_norm, handover, **solve):
        self.pretrain_epochs = pretrain_epochs
        self.injection_norm = build_norm(norm, hidden_channels, norm_kwargs) if injection_norm else None
        block = EquilibriumBlock(hidden_channels, operator=operator, norm=norm, edge_dim=edge_dim,
                                 operator_kwargs=operator_kwargs, norm_kwargs=norm_kwargs)
        self.init_gain = init_gain
        _scale(block.conv1, init_gain)
        if weight_norm:
            for sub in list(_weights(block.conv1)) + list(_weights(block.conv2)):
                torch.nn.utils.parametrizations.weight_norm(sub, "weight")
        self.deq = DEQ(block, **solve, warm_start_steps=num_layers if handover == "warm_start" else 0)
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    def reset_stack(self) -> None:
        """Fresh weights, with the first conv scaled by ``init_gain`` again (the contractive start)."""
        for module in (self.injection_norm, self.block):
            if module is not None:
                reset(module)
        _scale(self.block.conv1, self.init_gain)

    def repr_options(self) -> dict:
        return {"gradient": self.deq.gradient, "pretrain_epochs": self.pretrain_epochs}

    @property
    def block(self) -> EquilibriumBlock:
        return self.deq.f

    @property
    def solver(self):
        return self.deq.solver

    @property
    def bwd_solver(self):
        return self.deq.bwd_solver

    @property
    def solver_stats(self):
        return self.deq.solver_stats

    # -- epochs and metrics ---------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Tell the model which (1-based) training epoch starts; decides warm-up vs equilibrium."""
        self.epoch.fill_(int(epoch))

    @property
    def warming_up(self) -> bool:
        return 0 < self.pretrain_epochs and int(self.epoch) <= self.pretrain_epochs

    def pop_metrics(self) -> dict[str, float]:
        """Per-epoch solver summary (mean iterations and residuals, non-converged count); resets it."""
        return {"deq_warmup": float(self.warming_up), **self.deq.pop_metrics("deq")}

    # -- forward --------------------------------------------------------------------------------

    def run_stack(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None, batch: Tensor | None) -> Tensor:
        self.deq.solver_stats = {"forward": None, "backward": None}
        inj = h if self.injection_norm is None else self.injection_norm(h, batch)
        # The solve and its implicit backward both use the one graph DropEdge left: f stays one function.
        # One dropout mask for every application of f: f must be the same function at each iterate.
        mask = shared_dropout_mask(inj, self.dropout, self.training)
        if self.warming_up:
            return self.deq.unrolled(inj, edge_index, edge_attr, batch, mask, steps=self.num_layers)
        return self.deq(inj, edge_index, edge_attr, batch, mask)
