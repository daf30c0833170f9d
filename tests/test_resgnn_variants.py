"""ResGNN's weight tying and activation checkpointing: same model, same gradients, same statistics."""

import pytest
import torch

from gnn1000.plugins.architectures.resgnn import ResGNN

IN, HIDDEN, OUT, EDGE_DIM = 5, 16, 4, 3


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def graph():
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(30, IN, generator=gen), torch.randint(30, (2, 120), generator=gen),
            torch.rand(120, EDGE_DIM, generator=gen))


def step(model):
    model.train()
    torch.manual_seed(3)  # checkpoint replays the dropout RNG; both runs start from the same state
    model(*graph()).square().sum().backward()
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("weight_tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("norm", ["layernorm", "batchnorm"])
def test_checkpoint_gives_the_same_gradients_and_statistics(norm, weight_tied):
    torch.manual_seed(0)
    plain = ResGNN(IN, HIDDEN, OUT, 6, norm=norm, dropout=0.2, edge_dim=EDGE_DIM, weight_tied=weight_tied)
    ckpt = ResGNN(IN, HIDDEN, OUT, 6, norm=norm, dropout=0.2, edge_dim=EDGE_DIM, weight_tied=weight_tied,
                  checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    grads, grads_ckpt = step(plain), step(ckpt)
    for name, g in grads.items():
        torch.testing.assert_close(grads_ckpt[name], g, rtol=1e-5, atol=1e-7, msg=name)
    # Recomputing a block in backward must not update BatchNorm's running statistics a second time.
    for (name, a), (_, b) in zip(plain.named_buffers(), ckpt.named_buffers()):
        assert torch.equal(a, b), name


def test_weight_tied_reuses_one_block():
    tied = ResGNN(IN, HIDDEN, OUT, 40, weight_tied=True)
    untied = ResGNN(IN, HIDDEN, OUT, 1)
    assert len(tied.blocks) == 1
    assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in untied.parameters())
    out = tied(*graph()[:2])
    assert out.shape == (30, OUT)


@pytest.mark.parametrize("checkpoint", [False, True], ids=["autograd", "checkpoint"])
def test_plain_stack_feeds_each_block_only_the_last_output(checkpoint):
    # GCNII's stack: X_{l+1} = f_l(X_l), with the operator's x0 and beta_l, and no residual sum.
    torch.manual_seed(0)
    model = ResGNN(IN, HIDDEN, OUT, 4, operator="gcn2", norm="identity", residual=False, checkpoint=checkpoint)
    x, edge_index, _ = graph()
    model.eval()
    h = x0 = model.encoder(x)
    for layer, block in enumerate(model.blocks, start=1):
        h = block(h, edge_index, x0=x0, layer=layer)
    torch.testing.assert_close(model(x, edge_index), model.head(h))
    residual = ResGNN(IN, HIDDEN, OUT, 4, operator="gcn2", norm="identity")
    residual.load_state_dict(model.state_dict())
    assert not torch.allclose(residual.eval()(x, edge_index), model(x, edge_index))
