"""``experiment.compile = True``: torch.compile of the training steps gives eager's gradients, for
ResGNN, RevGNN (its hand-written reversible backward) and DEQ-GNN (its implicit backward), and does not
recompile for a new batch size (dynamic shapes) or a new solver iteration count (the solve stays eager).

The compiled graphs run on backend 'aot_eager': it traces and partitions exactly as inductor does
(dynamo, AOTAutograd's forward and backward graphs) but runs them with eager kernels, where inductor
would build C++ for every graph, minutes per model on a small shared CPU. ``bench speed --compile``
times inductor itself.
"""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import TINY

from gnn1000 import compilation
from gnn1000 import config as gin_config
from gnn1000.build import build_experiment
from gnn1000.errors import ConfigError
from gnn1000.plugins.architectures.deq import DEQGNN
from gnn1000.plugins.architectures.resgnn import ResGNN
from gnn1000.plugins.architectures.revgnn import RevGNN
from gnn1000.settings import ExperimentConfig

MODELS = {
    "resgnn": lambda: ResGNN(8, 16, 3, 2, edge_dim=8),
    "revgnn": lambda: RevGNN(8, 16, 3, 2, edge_dim=8, num_groups=2),
    # a loose tolerance, so the solves stop after different numbers of iterations
    "deq": lambda: DEQGNN(8, 16, 3, 2, edge_dim=8, fwd_tol=0.05, bwd_tol=0.05, fwd_max_iter=20, bwd_max_iter=20),
}
SIZES = [(40, 160), (64, 300), (52, 220)]  # nodes, edges of three random graphs


def gradients(model, out: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    F.mse_loss(out, torch.zeros_like(out)).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", MODELS)
def test_compiled_gradients_equal_eager_ones_without_recompiling(name, one_thread):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = MODELS[name]()
    graphs_compiled = []

    def counting_backend(graph_module, inputs):
        from torch._dynamo.backends.debugging import aot_eager

        graphs_compiled.append(graph_module)
        return aot_eager(graph_module, inputs)

    fast = compilation.compiled(model, backend=counting_backend)
    after_first, iterations = None, set()
    for nodes, edges in SIZES:
        x, edge_index, edge_attr = torch.randn(nodes, 8), torch.randint(nodes, (2, edges)), torch.rand(edges, 8)
        eager = gradients(model, model(x, edge_index, edge_attr))
        got = gradients(model, fast(x, edge_index, edge_attr))
        assert got.keys() == eager.keys() and len(got) == len(list(model.parameters()))
        for key, value in eager.items():
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")
        if name == "deq":
            iterations.add(model.solver_stats["forward"].iterations)
        after_first = len(graphs_compiled) if after_first is None else after_first
    assert after_first > 0  # it was compiled, not run eagerly
    assert len(graphs_compiled) == after_first, f"{name} recompiled for a new graph size or iteration count"
    if name == "deq":
        assert len(iterations) > 1, iterations  # the solves did run different numbers of iterations


def test_a_compiled_run_trains_as_an_eager_one_and_saves_the_same_weights(tmp_path, monkeypatch, one_thread):
    """experiment.compile through the loop: the same losses and scores, and checkpoints whose keys are
    the model's own (evaluation and --resume load them without torch.compile)."""
    monkeypatch.setattr(compilation, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    runs = {}
    for compiled in (False, True):
        gin_config.load(None, [*TINY, "experiment.epochs = 2", f"experiment.compile = {compiled}"])
        runs[compiled] = build_experiment(tmp_path / str(compiled), progress=False)
        runs[compiled].fit()
    assert runs[True].trained is not runs[True].model and runs[False].trained is runs[False].model

    def history(run: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "step_memory_mb")}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    eager, compiled = history(tmp_path / "False"), history(tmp_path / "True")
    assert len(compiled) == 2
    for one, two in zip(eager, compiled, strict=True):
        assert two == pytest.approx(one, rel=1e-5)
    saved = torch.load(tmp_path / "True" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert saved.keys() == runs[False].model.state_dict().keys()


def test_compile_is_a_switch():
    with pytest.raises(ConfigError, match="experiment.compile='yes' must be True or False"):
        ExperimentConfig(compile="yes")
