"""RevGNN and its reversible engine: exact gradients at depth, constant-memory bookkeeping, user-facing errors."""

import pytest
import torch
from torch_geometric.nn import GraphConv

from gnn1000.errors import ConfigError
from gnn1000.nn.blocks import LayerDropoutMasks, PreActBlock
from gnn1000.nn.reversible import GroupedCoupling, ReversibleStack
from gnn1000.plugins.architectures.revgnn import RevGNN
from gnn1000.registry import register

IN, OUT, EDGE_DIM = 5, 4, 3
HIDDEN = 24  # divisible by 2, 3 and 4 groups


@register("operators", "test-graphconv")
class ThirdPartyGraphConv(torch.nn.Module):
    """An operator the way another package would register one: PyG's GraphConv, no edge features."""

    def __init__(self, in_channels, out_channels, *, edge_dim=None):
        super().__init__()
        self.conv = GraphConv(in_channels, out_channels, aggr="mean")

    def forward(self, x, edge_index, edge_attr=None):
        return self.conv(x, edge_index)


OPERATORS = ["gen", "gcn", "sage", "gat", "test-graphconv"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny graphs: one thread is fastest


def tiny_graph(nodes=30, edges=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(nodes, IN, generator=gen), torch.randint(nodes, (2, edges), generator=gen),
            torch.rand(edges, EDGE_DIM, generator=gen))


def make_pair(layers, **opts):
    """A reversible RevGNN and a plain-autograd one holding the same weights."""
    torch.manual_seed(1)
    rev = RevGNN(IN, opts.pop("hidden", HIDDEN), OUT, layers, edge_dim=EDGE_DIM, **opts)
    ref = RevGNN(IN, rev.encoder.out_features, OUT, layers, edge_dim=EDGE_DIM, reversible=False, **opts)
    ref.load_state_dict(rev.state_dict())
    return rev, ref


def gradients(model, graph, seed=5, batch=None):
    """Output, input gradient and parameter gradients of one training-mode step."""
    x, edge_index, edge_attr = graph
    x = x.clone().requires_grad_()
    model.train()
    torch.manual_seed(seed)  # the same dropout mask for both models
    out = model(x, edge_index, edge_attr, batch)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out * weights).sum().backward()
    return out.detach(), x.grad, {name: p.grad for name, p in model.named_parameters()}


def assert_gradients_match(rev, ref, graph, rtol, batch=None):
    out, gx, gp = gradients(rev, graph, batch=batch)
    out_ref, gx_ref, gp_ref = gradients(ref, graph, batch=batch)
    torch.testing.assert_close(out, out_ref, rtol=1e-6, atol=1e-6)
    assert (gx - gx_ref).norm() <= rtol * gx_ref.norm(), "input gradient"
    scale = torch.cat([g.flatten() for g in gp_ref.values() if g is not None]).norm()
    for name, g_ref in gp_ref.items():
        g = gp[name]
        assert (g is None) == (g_ref is None), name
        if g_ref is not None:
            # A gradient that is zero by symmetry (GAT's att_dst under softmax) is held to a floor.
            assert (g - g_ref).norm() <= rtol * max(g_ref.norm(), 1e-6 * scale), name


@pytest.mark.parametrize("masks", ["per_layer", "shared"])
@pytest.mark.parametrize("weight_tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("groups", [2, 3, 4])
@pytest.mark.parametrize("operator", OPERATORS)
def test_gradients_match_plain_autograd_at_64_layers(operator, groups, weight_tied, masks):
    rev, ref = make_pair(64, operator=operator, num_groups=groups, weight_tied=weight_tied, dropout=0.2,
                         dropout_masks=masks)
    assert_gradients_match(rev, ref, tiny_graph(), rtol=1e-5)


@pytest.mark.parametrize("operator,groups,weight_tied", [("gen", 2, False), ("sage", 3, True)])
def test_gradients_match_plain_autograd_at_1001_layers(operator, groups, weight_tied):
    rev, ref = make_pair(1001, operator=operator, num_groups=groups, weight_tied=weight_tied,
                         dropout=0.1, hidden=12)
    assert_gradients_match(rev, ref, tiny_graph(nodes=12, edges=40), rtol=1e-4)


@pytest.mark.parametrize("operator", ["gen", "gcn"])
def test_gradients_match_with_edge_dropout(operator):
    """DropEdge draws one graph per forward; the reversible backward must run on that same graph."""
    rev, ref = make_pair(64, operator=operator, num_groups=2, dropout=0.2, dropout_masks="per_layer",
                         edge_dropout=0.3)
    assert_gradients_match(rev, ref, tiny_graph(), rtol=1e-5)


@pytest.mark.parametrize("weight_tied", [False, True], ids=["untied", "tied"])
def test_gradients_match_with_a_learnable_branch_scale(weight_tied):
    rev, ref = make_pair(64, operator="gcn", num_groups=2, weight_tied=weight_tied, dropout=0.2,
                         branch_scale=0.1)
    scales = [name for name, _ in rev.named_parameters() if name.endswith(".scale")]
    assert len(scales) == 2 * len(rev.stack.blocks)
    assert_gradients_match(rev, ref, tiny_graph(), rtol=1e-5)


@pytest.mark.parametrize("bad", [0, -0.1, "small"])
def test_bad_branch_scale_is_refused(bad):
    with pytest.raises(ConfigError, match="branch_scale"):
        RevGNN(IN, HIDDEN, OUT, 2, num_groups=2, branch_scale=bad)


def test_float32_stream_as_in_the_paper_is_close_at_64_layers():
    """stream_dtype=None adds in float32: the reconstruction is approximate, still far below 1e-3."""
    rev, ref = make_pair(64, operator="gen", num_groups=2, dropout=0.2, stream_dtype=None)
    assert_gradients_match(rev, ref, tiny_graph(), rtol=1e-3)


def test_state_dict_is_the_same_in_both_modes():
    rev, ref = make_pair(4, num_groups=2)
    assert list(rev.state_dict()) == list(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(rev.state_dict().values(), ref.state_dict().values()))


@pytest.mark.parametrize("groups", [2, 3, 4])
def test_inverse_recovers_the_input(groups):
    torch.manual_seed(0)
    channels = HIDDEN // groups
    blocks = [GroupedCoupling([PreActBlock(channels, channels, operator="gen") for _ in range(groups)])
              for _ in range(16)]
    stack = ReversibleStack(blocks, 16).eval()
    x, edge_index, edge_attr = tiny_graph()
    x = torch.randn(x.size(0), HIDDEN)
    with torch.no_grad():
        y = stack(x, edge_index)
    assert not torch.allclose(y, x)
    torch.testing.assert_close(stack.inverse(y, edge_index), x, rtol=1e-5, atol=1e-5)


def test_inverse_with_the_forwards_dropout_mask():
    rev, _ = make_pair(8, num_groups=2, dropout=0.3)
    x = torch.randn(30, HIDDEN)
    _, edge_index, _ = tiny_graph()
    mask = torch.empty_like(x).bernoulli_(0.7).div_(0.7)
    rev.train()
    with torch.no_grad():
        y = rev.stack(x, edge_index, None, None, mask)
        torch.testing.assert_close(rev.stack.inverse(y, edge_index, None, None, mask), x, rtol=1e-5, atol=1e-5)


def test_inverse_with_per_layer_masks():
    rev, _ = make_pair(8, num_groups=2, dropout=0.3)
    x = torch.randn(30, HIDDEN)
    _, edge_index, _ = tiny_graph()
    masks = LayerDropoutMasks(x, 0.3)
    rev.train()
    with torch.no_grad():
        y = rev.stack(x, edge_index, None, None, masks)
        torch.testing.assert_close(rev.stack.inverse(y, edge_index, None, None, masks), x, rtol=1e-5, atol=1e-5)


def mask_seen_by_layers(model, graph):
    """The dropout mask each layer's first body got in one training forward."""
    seen = []
    for block in model.stack.blocks:
        block.bodies[0].register_forward_hook(lambda mod, args, out: seen.append(args[4]))
    model.train()(*graph)
    return seen


@pytest.mark.parametrize("masks", ["per_layer", "shared"])
def test_dropout_masks_per_layer_or_shared(masks):
    model, _ = make_pair(4, num_groups=2, dropout=0.5, dropout_masks=masks)
    seen = mask_seen_by_layers(model, tiny_graph())
    assert len(seen) == 4 and all(m is not None for m in seen)
    same = [torch.equal(seen[0], m) for m in seen[1:]]
    assert same == ([False] * 3 if masks == "per_layer" else [True] * 3)


def saved_bytes(model, graph):
    """Bytes autograd keeps for the backward of one training forward."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(*graph)
    return total


def test_per_layer_masks_are_regenerated_not_stored():
    """Per-layer masks keep what the backward holds flat in depth: 8 and 64 layers save the same bytes."""
    graph = tiny_graph()
    shallow, _ = make_pair(8, num_groups=2, dropout=0.5, dropout_masks="per_layer")
    deep, _ = make_pair(64, num_groups=2, dropout=0.5, dropout_masks="per_layer")
    assert saved_bytes(shallow, graph) == saved_bytes(deep, graph)


@pytest.mark.parametrize("weight_tied", [False, True], ids=["untied", "tied"])
def test_each_block_body_runs_once_in_the_backward(weight_tied):
    layers, groups = 6, 3
    model, _ = make_pair(layers, num_groups=groups, weight_tied=weight_tied, dropout=0.2)
    calls = {}
    for block in model.stack.blocks:
        for body in block.bodies:
            body.register_forward_hook(lambda mod, args, out: calls.__setitem__(mod, calls.get(mod, 0) + 1))
    x, edge_index, edge_attr = tiny_graph()
    out = model.train()(x, edge_index, edge_attr)
    uses = layers if weight_tied else 1  # how often each body runs in one pass
    assert sorted(calls.values()) == [uses] * (groups * len(model.stack.blocks))
    out.sum().backward()
    assert sorted(calls.values()) == [2 * uses] * (groups * len(model.stack.blocks))


def test_callers_input_stays_intact_and_readable():
    model, _ = make_pair(8, num_groups=2, dropout=0.2)
    x, edge_index, edge_attr = tiny_graph()
    x.requires_grad_()
    h = x.detach().clone()
    out = model.train()(x, edge_index, edge_attr)
    out.sum().backward()
    assert x.untyped_storage().nbytes() == x.numel() * x.element_size()
    assert torch.equal(x.detach(), h)
    assert torch.equal(edge_attr, tiny_graph()[2])


def test_second_backward_and_autograd_grad_work():
    model, _ = make_pair(8, num_groups=2)
    x, edge_index, edge_attr = tiny_graph()
    out = model.train()(x, edge_index, edge_attr)
    loss = out.square().sum()
    first = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True, allow_unused=True)
    loss.backward(retain_graph=True)
    loss.backward()
    for g, p in zip(first, model.parameters()):
        if g is not None:
            torch.testing.assert_close(p.grad, 2 * g)


def test_double_backward_is_a_clear_error():
    model, _ = make_pair(4, num_groups=2)
    x, edge_index, edge_attr = tiny_graph()
    x.requires_grad_()
    out = model.train()(x, edge_index, edge_attr)
    with pytest.raises(RuntimeError, match="first-order only.*reversible=False"):
        torch.autograd.grad(out.sum(), x, create_graph=True)


@pytest.mark.parametrize("weight_tied", [False, True], ids=["untied", "tied"])
def test_batchnorm_statistics_after_a_step_equal_plain_autograd(weight_tied):
    rev, ref = make_pair(6, num_groups=2, norm="batchnorm", dropout=0.1, weight_tied=weight_tied)
    graph = tiny_graph()
    assert_gradients_match(rev, ref, graph, rtol=1e-5)
    buffers = dict(ref.named_buffers())
    assert any("running_mean" in name for name in buffers)
    for name, value in rev.named_buffers():
        assert torch.equal(value, buffers[name]), name
    for name, count in rev.named_buffers():  # one step: each norm counted once per use, not again in backward
        if name.endswith("num_batches_tracked"):
            assert int(count) == (6 if weight_tied and name.startswith("stack") else 1), name


def test_graphnorm_sees_each_graph_of_the_batch():
    rev, ref = make_pair(8, num_groups=2, norm="graphnorm", readout="mean")
    graph = tiny_graph()
    batch = torch.arange(30) // 15
    assert_gradients_match(rev, ref, graph, rtol=1e-5, batch=batch)
    rev.eval()
    with torch.no_grad():
        per_graph = rev(*graph, batch)
        as_one = rev(*graph, torch.zeros(30, dtype=torch.long))
    assert per_graph.shape == (2, OUT) and as_one.shape == (1, OUT)


def test_edge_features_are_encoded_once_and_split_per_group():
    model, _ = make_pair(3, num_groups=3, operator="gen")
    assert model.edge_encoder.out_features == HIDDEN
    for block in model.stack.blocks:  # each group's conv takes its HIDDEN/3 slice as is
        assert all(not hasattr(body.conv.conv, "lin_edge") for body in block.bodies)


def test_eval_forward_equals_reference():
    rev, ref = make_pair(16, num_groups=2, dropout=0.5)
    graph = tiny_graph()
    with torch.no_grad():
        torch.testing.assert_close(rev.eval()(*graph), ref.eval()(*graph))
    torch.testing.assert_close(rev.eval()(*graph), ref.eval()(*graph))  # grad mode, still eval


def test_weight_tied_has_one_block():
    model = RevGNN(IN, HIDDEN, OUT, 50, num_groups=2, weight_tied=True)
    untied = RevGNN(IN, HIDDEN, OUT, 2, num_groups=2)
    assert len(model.stack.blocks) == 1
    block_params = sum(p.numel() for p in untied.stack.blocks[0].parameters())
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in untied.parameters()) - block_params


@pytest.mark.parametrize("hidden,groups,match", [(10, 3, "not divisible by num_groups=3"),
                                                 (10, 1, "must be an integer >= 2")])
def test_group_errors_name_the_problem(hidden, groups, match):
    with pytest.raises(ConfigError, match=match):
        RevGNN(IN, hidden, OUT, 4, num_groups=groups)


def test_randomness_inside_a_block_is_refused():
    with pytest.raises(ConfigError, match="revgnn.dropout"):
        RevGNN(IN, HIDDEN, OUT, 2, operator="gat", num_groups=2, operator_kwargs={"attention_dropout": 0.5})


def test_unknown_dropout_masks_is_refused():
    with pytest.raises(ConfigError, match="per_layer"):
        RevGNN(IN, HIDDEN, OUT, 2, num_groups=2, dropout_masks="per-block")


def test_unknown_stream_dtype_is_refused():
    with pytest.raises(ConfigError, match="stream_dtype"):
        RevGNN(IN, HIDDEN, OUT, 2, stream_dtype="float16")
