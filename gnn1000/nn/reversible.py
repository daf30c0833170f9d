"""The grouped reversible stack: L blocks run as ONE autograd function with activation memory O(ND).

Hand-written because PyG's ``GroupAddRev`` (one autograd function per block) evaluates every f_i
twice in its backward (once to invert, once to differentiate), frees its caller's input storage and
updates BatchNorm statistics again while inverting. Here each f_i runs exactly once in the backward,
with grad enabled: its value reconstructs the block input and its vector-Jacobian product gives the
gradients. The forward keeps only the stack's output (plus the graph and the shared dropout mask, or
the seed that regenerates each layer's own mask).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from gnn1000.errors import ConfigError
from gnn1000.nn.blocks import LayerDropoutMasks, layer_dropout_mask, preserved_buffers
from gnn1000.nn.resolver import LeadingArgs, pick_stack_inputs, reset, stack_inputs, takes_argument


def _chunks(t: Tensor | None, groups: int) -> list[Tensor | None]:
    return [None] * groups if t is None else list(t.chunk(groups, dim=-1))


def _needs_x0(body: torch.nn.Module) -> bool:
    """Whether a coupling body uses the stack's initial representation (it says so, or takes ``x0``)."""
    return getattr(body, "needs_x0", "x0" in stack_inputs(body))


class ConvBody(torch.nn.Module):
    """A user's conv as a coupling body: ``body(x, edge_index, edge_attr, batch, dropout_mask, x0, layer)``.

    The dropout mask multiplies the input; ``edge_attr`` reaches convs whose forward takes it, and
    ``x0`` / ``layer`` those that name them (:data:`~gnn1000.nn.resolver.STACK_INPUTS`).
    """

    def __init__(self, conv: torch.nn.Module):
        super().__init__()
        self.conv = conv if takes_argument(conv.forward, "edge_attr", 2) else LeadingArgs(conv, 2)
        self.conv_inputs = stack_inputs(self.conv)

    @property
    def needs_x0(self) -> bool:
        return "x0" in self.conv_inputs

    def reset_parameters(self) -> None:
        reset(self.conv)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | None = None,
                x0: Tensor | None = None, layer: int | None = None) -> Tensor:
        if dropout_mask is not None:
            x = x * dropout_mask
        return self.conv(x, edge_index, edge_attr, **pick_stack_inputs(self.conv_inputs, x0, layer))


class GroupedCoupling(torch.nn.Module):
    r"""One grouped reversible block: Y_0 = X_2 + ... + X_C, Y_i = X_i + f_i(Y_{i-1}), out cat(Y_i).

    Inverse: X_i = Y_i - f_i(Y_{i-1}) for i = C..2, then Y_0 = X_2 + ... + X_C and X_1 = Y_1 - f_1(Y_0).

    Args:
        bodies: The C >= 2 functions f_i, each mapping (N, D / C) to (N, D / C) and called as
            ``f_i(x, edge_index, edge_attr, batch, dropout_mask)`` (e.g. :class:`PreActBlock`), plus
            the keyword arguments of :data:`~gnn1000.nn.resolver.STACK_INPUTS` they name.
            :meth:`from_conv` builds them from one plain conv.

    Edge features, the dropout mask and the initial representation ``x0`` arrive with
    ``hidden_channels`` columns and are split the same way as the node features, so group i sees its
    own slice (as in the paper's code). ``layer`` is the block's 1-based depth in its stack. The bodies run in
    ``compute_dtype``; the additions stay in the dtype of ``x`` (the residual stream's).
    """

    def __init__(self, bodies: list[torch.nn.Module]):
        super().__init__()
        if len(bodies) < 2:
            raise ConfigError(f"a grouped reversible block needs at least 2 groups, got {len(bodies)}")
        self.bodies = torch.nn.ModuleList(bodies)
        self.body_inputs = [stack_inputs(body) for body in bodies]

    @property
    def needs_x0(self) -> bool:
        return any(_needs_x0(body) for body in self.bodies)

    def _call(self, i: int, y: Tensor, edge_index: Tensor, edge_attr: Tensor | None, batch: Tensor | None,
              mask: Tensor | None, x0: Tensor | None, layer: int | None) -> Tensor:
        """f_i on its group's slices, with the stack inputs its body takes."""
        return self.bodies[i](y, edge_index, edge_attr, batch, mask,
                              **pick_stack_inputs(self.body_inputs[i], x0, layer))

    @classmethod
    def from_conv(cls, conv: torch.nn.Module, num_groups: int) -> GroupedCoupling:
        """Wrap a conv over D / C channels into C groups, like PyG's ``GroupAddRev(conv, num_groups)``.

        Each group gets its own copy of ``conv`` with freshly reset parameters.

        >>> from torch_geometric.nn import GCNConv
        >>> block = GroupedCoupling.from_conv(GCNConv(4, 4), num_groups=2)
        >>> x, edge_index = torch.randn(5, 8), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
        >>> y = block(x, edge_index)
        >>> torch.allclose(block.inverse(y, edge_index), x, atol=1e-5)
        True
        """
        bodies = [ConvBody(conv if i == 0 else copy.deepcopy(conv)) for i in range(num_groups)]
        for body in bodies[1:]:
            body.reset_parameters()
        return cls(bodies)

    @property
    def num_groups(self) -> int:
        return len(self.bodies)

    def reset_parameters(self) -> None:
        for body in self.bodies:
            reset(body)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_groups={self.num_groups}, body={self.bodies[0]!r})"

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | None = None,
                compute_dtype: torch.dtype | None = None, x0: Tensor | None = None,
                layer: int | None = None) -> Tensor:
        groups, dtype = self.num_groups, compute_dtype or x.dtype
        xs, es, ms = x.chunk(groups, dim=-1), _chunks(edge_attr, groups), _chunks(dropout_mask, groups)
        x0s = _chunks(x0, groups)
        y = sum(xs[1:])
        ys = []
        for i in range(groups):
            y = xs[i] + self._call(i, y.to(dtype), edge_index, es[i], batch, ms[i], x0s[i], layer)
            ys.append(y)
        return torch.cat(ys, dim=-1)

    @torch.no_grad()
    def inverse(self, y: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | None = None,
                compute_dtype: torch.dtype | None = None, x0: Tensor | None = None,
                layer: int | None = None) -> Tensor:
        groups, dtype = self.num_groups, compute_dtype or y.dtype
        ys, es, ms = y.chunk(groups, dim=-1), _chunks(edge_attr, groups), _chunks(dropout_mask, groups)
        x0s = _chunks(x0, groups)
        xs: list[Tensor] = [None] * groups  # type: ignore[list-item]
        for i in reversed(range(groups)):
            y_prev = ys[i - 1] if i > 0 else sum(xs[1:])
            xs[i] = ys[i] - self._call(i, y_prev.to(dtype), edge_index, es[i], batch, ms[i], x0s[i], layer)
        return torch.cat(xs, dim=-1)

    def reverse_step(self, y: Tensor, grad_y: Tensor, edge_index: Tensor, edge_attr: Tensor | None,
                     batch: Tensor | None, dropout_mask: Tensor | None, grads: dict[Tensor, Tensor],
                     edge_grads: list[Tensor | None] | None,
                     compute_dtype: torch.dtype | None = None, x0: Tensor | None = None,
                     layer: int | None = None, x0_grads: list[Tensor | None] | None = None) -> tuple[Tensor, Tensor]:
        """From this block's output and its gradient: its input and the input's gradient.

        Parameter gradients are summed into ``grads`` (keyed by parameter), edge-feature gradients
        into ``edge_grads`` and those of the initial representation into ``x0_grads`` (one slot per
        group each). Each f_i is evaluated once.
        """
        groups, dtype = self.num_groups, compute_dtype or y.dtype
        ys, gys = y.chunk(groups, dim=-1), grad_y.chunk(groups, dim=-1)
        es, ms, x0s = _chunks(edge_attr, groups), _chunks(dropout_mask, groups), _chunks(x0, groups)
        xs: list[Tensor] = [None] * groups  # type: ignore[list-item]
        grad_xs: list[Tensor] = [None] * groups  # type: ignore[list-item]
        carried = None  # dL/dY_i arriving through f_{i+1}'s input
        for i in reversed(range(groups)):
            grad_xs[i] = gys[i] if carried is None else gys[i] + carried  # dL/dY_i = dL/dX_i
            y_prev = (ys[i - 1] if i > 0 else sum(xs[1:])).detach().requires_grad_()
            edge = None
            if es[i] is not None:
                edge = es[i].detach().requires_grad_(edge_grads is not None)
            start = None if x0s[i] is None else x0s[i].detach().requires_grad_(x0_grads is not None)
            params = [p for p in self.bodies[i].parameters() if p.requires_grad]
            with torch.enable_grad():
                f = self._call(i, y_prev.to(dtype), edge_index, edge, batch, ms[i], start, layer)
            xs[i] = ys[i] - f.detach()
            extra = [(t, slots) for t, slots in ((edge, edge_grads), (start, x0_grads))
                     if t is not None and t.requires_grad]
            got = torch.autograd.grad(f, [y_prev, *params, *(t for t, _ in extra)], grad_xs[i], allow_unused=True)
            del f
            carried = got[0]
            for p, g in zip(params, got[1:1 + len(params)]):
                if g is not None:
                    grads[p] = g if p not in grads else grads[p] + g
            for (_, slots), g in zip(extra, got[1 + len(params):]):
                if g is not None:
                    slots[i] = g if slots[i] is None else slots[i] + g
        # Y_0 = X_2 + ... + X_C: its gradient reaches every group but the first.
        if carried is not None:
            for j in range(1, groups):
                grad_xs[j] = grad_xs[j] + carried
        return torch.cat(xs, dim=-1), torch.cat(grad_xs, dim=-1)


class _ReversibleStackFunction(torch.autograd.Function):
    """Forward without a graph through all blocks; backward walks them in reverse, reconstructing."""

    @staticmethod
    def forward(ctx, stack: ReversibleStack, compute_dtype: torch.dtype, x: Tensor, edge_attr: Tensor | None,
                x0: Tensor | None, edge_index: Tensor, batch: Tensor | None,
                dropout_mask: Tensor | LayerDropoutMasks | None, *params: Tensor) -> Tensor:
        y = x
        for layer in range(stack.num_layers):
            y = stack.block(layer)(y, edge_index, edge_attr, batch, layer_dropout_mask(dropout_mask, layer),
                                   compute_dtype, x0=x0, layer=layer + 1)
        if y is x:  # never hand the caller's tensor back as our output
            y = x.clone()
        ctx.stack, ctx.compute_dtype, ctx.params = stack, compute_dtype, params
        device = x.device.type  # the backward recomputes each f_i as the forward did, autocast included
        ctx.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        ctx.layer_masks = dropout_mask if isinstance(dropout_mask, LayerDropoutMasks) else None  # a seed, not L masks
        ctx.save_for_backward(y, edge_attr, x0, edge_index, batch, None if ctx.layer_masks else dropout_mask)
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "RevGNN's reversible backward is first-order only: create_graph=True (double backward) "
                "is not supported. Build the model with reversible=False for higher-order gradients."
            )
        y, edge_attr, x0, edge_index, batch, dropout_mask = ctx.saved_tensors
        dropout_mask = ctx.layer_masks or dropout_mask
        stack: ReversibleStack = ctx.stack
        needs_x, needs_edge, needs_x0 = ctx.needs_input_grad[2:5]
        grads: dict[Tensor, Tensor] = {}
        edge_grads = [None] * stack.num_groups if needs_edge else None
        x0_grads = [None] * stack.num_groups if needs_x0 else None
        # The recomputation runs the norms in training mode again; their statistics must count once.
        device, dtype, enabled = ctx.autocast
        with preserved_buffers(stack), torch.autocast(device, dtype=dtype, enabled=enabled):
            for layer in reversed(range(stack.num_layers)):
                y, grad_y = stack.block(layer).reverse_step(y, grad_y, edge_index, edge_attr, batch,
                                                            layer_dropout_mask(dropout_mask, layer), grads,
                                                            edge_grads, ctx.compute_dtype, x0=x0,
                                                            layer=layer + 1, x0_grads=x0_grads)
        grad_edge = _joined(edge_grads, edge_attr, stack.num_groups) if needs_edge else None
        grad_x0 = _joined(x0_grads, x0, stack.num_groups) if needs_x0 else None
        param_grads = tuple(grads.get(p) for p in ctx.params)
        return (None, None, grad_y if needs_x else None, grad_edge, grad_x0, None, None, None, *param_grads)


def _joined(group_grads: list[Tensor | None], like: Tensor, groups: int) -> Tensor | None:
    """One gradient from the per-group ones (zeros for a group its body ignored; None if all did)."""
    if all(g is None for g in group_grads):
        return None
    return torch.cat([g if g is not None else torch.zeros_like(c)
                      for g, c in zip(group_grads, like.chunk(groups, dim=-1))], dim=-1)


class ReversibleStack(torch.nn.Module):
    """``num_layers`` grouped reversible blocks, or one block applied ``num_layers`` times (weight-tied).

    Args:
        blocks: ``num_layers`` :class:`GroupedCoupling` blocks, or one (weight-tied).
        num_layers: Depth L.
        reversible: True: activation memory O(ND), inputs reconstructed in the backward pass.
        stream_dtype: dtype of the residual stream (see below), or None for the input's.

    Shapes: ``x`` (N, D), ``edge_index`` (2, E), ``edge_attr`` (E, D) or None, ``batch`` (N,),
    ``dropout_mask`` (N, D) -> (N, D). When a block's operator takes ``x0`` (GCNII's initial
    residual), the stack's input ``x`` is handed to every block as ``x0`` and ``layer`` counts from 1
    (:data:`~gnn1000.nn.resolver.STACK_INPUTS`); its gradient is exact in the reversible backward too.
    ``dropout_mask`` may instead be a
    :class:`~gnn1000.nn.blocks.LayerDropoutMasks`: each layer then gets its own mask, regenerated from
    one seed in the backward pass, so memory stays flat in depth.

    >>> from torch_geometric.nn import GCNConv
    >>> stack = ReversibleStack.from_conv(GCNConv(4, 4), num_groups=2, num_layers=3)
    >>> x = torch.randn(5, 8, requires_grad=True)
    >>> stack(x, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])).sum().backward()
    >>> x.grad.shape
    torch.Size([5, 8])

    ``reversible=False`` runs the same modules through plain autograd (memory O(LND)): the reference
    the reversible backward is checked against; the state_dict is the same in both modes.

    ``stream_dtype`` is the dtype of the residual stream the blocks add into (the bodies compute in
    the input's dtype). float64 makes the backward's reconstruction X_i = Y_i - f_i(Y_{i-1}) exact to
    ~1e-12 instead of float32's rounding, which the inverse amplifies over hundreds of layers; it costs
    one float64 copy of the N x D stream, nothing per layer. None keeps the input's dtype.
    """

    def __init__(self, blocks: list[GroupedCoupling], num_layers: int, *, reversible: bool = True,
                 stream_dtype: torch.dtype | None = torch.float64):
        super().__init__()
        if len(blocks) not in (1, num_layers):
            raise ConfigError(f"give 1 (weight-tied) or num_layers={num_layers} blocks, not {len(blocks)}")
        if len({b.num_groups for b in blocks}) != 1:
            raise ConfigError("every block of a reversible stack needs the same number of groups")
        self.blocks = torch.nn.ModuleList(blocks)
        self.num_layers = num_layers
        self.reversible = reversible
        self.stream_dtype = stream_dtype

    @classmethod
    def from_conv(cls, conv: torch.nn.Module, num_groups: int, num_layers: int = 1, *,
                  weight_tied: bool = False, **kwargs) -> ReversibleStack:
        """A stack of ``num_layers`` :meth:`GroupedCoupling.from_conv` blocks around copies of ``conv``."""
        blocks = [GroupedCoupling.from_conv(conv if i == 0 else copy.deepcopy(conv), num_groups)
                  for i in range(1 if weight_tied else num_layers)]
        for block in blocks[1:]:
            block.reset_parameters()
        return cls(blocks, num_layers, **kwargs)

    @property
    def num_groups(self) -> int:
        return self.blocks[0].num_groups

    def reset_parameters(self) -> None:
        for block in self.blocks:
            block.reset_parameters()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_layers={self.num_layers}, num_groups={self.num_groups}, "
                f"weight_tied={self.weight_tied}, reversible={self.reversible})")

    @property
    def weight_tied(self) -> bool:
        return len(self.blocks) == 1 and self.num_layers > 1

    def block(self, layer: int) -> GroupedCoupling:
        return self.blocks[0 if len(self.blocks) == 1 else layer]

    @property
    def needs_x0(self) -> bool:
        return any(block.needs_x0 for block in self.blocks)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | LayerDropoutMasks | None = None) -> Tensor:
        compute_dtype = x.dtype
        x0 = x if self.needs_x0 else None
        h = x.to(self.stream_dtype or compute_dtype)
        if self.reversible and torch.is_grad_enabled():
            params = [p for p in self.parameters() if p.requires_grad]
            h = _ReversibleStackFunction.apply(self, compute_dtype, h, edge_attr, x0, edge_index, batch,
                                               dropout_mask, *params)
        else:
            for layer in range(self.num_layers):
                h = self.block(layer)(h, edge_index, edge_attr, batch, layer_dropout_mask(dropout_mask, layer),
                                      compute_dtype, x0=x0, layer=layer + 1)
        return h.to(compute_dtype)

    @torch.no_grad()
    def inverse(self, y: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | LayerDropoutMasks | None = None,
                x0: Tensor | None = None) -> Tensor:
        """The stack's input from its output (run in eval mode, or with the forward's dropout mask(s)).
        A stack whose operators take ``x0`` needs it: it is the input being reconstructed."""
        if self.needs_x0 and x0 is None:
            raise ConfigError("this stack's operators take x0 (the stack's input), so inverting it needs x0.")
        compute_dtype = y.dtype
        y = y.to(self.stream_dtype or compute_dtype)
        for layer in reversed(range(self.num_layers)):
            y = self.block(layer).inverse(y, edge_index, edge_attr, batch, layer_dropout_mask(dropout_mask, layer),
                                          compute_dtype, x0=x0, layer=layer + 1)
        return y.to(compute_dtype)
