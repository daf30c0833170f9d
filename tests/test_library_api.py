"""gnn1000 as a library: the public imports, constructors in PyG's style, gin kept at the edge,
named models, and a plain PyG training loop with no gin and no CLI."""

from __future__ import annotations

import io

import gin
import pytest
import torch
import torch.nn.functional as F
from gin import config_parser
from test_revgnn import EDGE_DIM, IN, OUT, assert_gradients_match, tiny_graph
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from gnn1000 import DEQGNN, ResGNN, RevGNN, config, create_model, list_models
from gnn1000.errors import ConfigError, UnknownNameError
from gnn1000.models import MODELS
from gnn1000.nn import GroupedCoupling, PreActBlock, ReversibleStack

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_public_names_are_the_library_classes():
    import gnn1000.nn as gnn_nn
    from gnn1000.plugins.architectures.revgnn import RevGNN as PluginRevGNN

    assert RevGNN is PluginRevGNN and {ResGNN.__name__, DEQGNN.__name__} == {"ResGNN", "DEQGNN"}
    assert callable(create_model) and callable(list_models)
    assert {"ReversibleStack", "GroupedCoupling", "PreActBlock"} <= set(gnn_nn.__all__)
    from gnn1000.solvers import Anderson, Broyden, FixedPoint, build_solver

    assert {type(build_solver(name)) for name in ("anderson", "broyden", "fixed_point")} == {Anderson, Broyden, FixedPoint}


def test_gin_bindings_do_not_reach_models_built_in_python():
    config.load(None, ["revgnn.num_groups = 4", "layernorm.eps = 0.5"])
    gin.parse_config("revgnn.num_groups = 4\nlayernorm.eps = 0.5")
    model = RevGNN(8, 16, 3, 10)
    assert model.stack.num_groups == 2
    assert {m.eps for m in model.modules() if type(m).__name__ == "LayerNorm"} == {1e-5}
    configured = config.reference("architectures", "revgnn")(8, 16, 3, 10)  # the config layer's build
    assert configured.stack.num_groups == 4 and type(configured) is RevGNN
    assert {m.eps for m in configured.modules() if type(m).__name__ == "LayerNorm"} == {0.5}


@pytest.mark.parametrize("operator, kwargs", [(GCNConv, None), (SAGEConv, None), (GATConv, {"heads": 2})],
                         ids=["GCNConv", "SAGEConv", "GATConv-2-heads"])
def test_a_plain_pyg_conv_trains_and_keeps_exact_reversible_gradients(operator, kwargs):
    torch.manual_seed(1)
    rev = RevGNN(IN, 24, OUT, 16, edge_dim=EDGE_DIM, operator=operator, operator_kwargs=kwargs, dropout=0.2)
    ref = RevGNN(IN, 24, OUT, 16, edge_dim=EDGE_DIM, operator=operator, operator_kwargs=kwargs, dropout=0.2,
                 reversible=False)
    ref.load_state_dict(rev.state_dict())
    graph = tiny_graph()
    assert_gradients_match(rev, ref, graph, rtol=1e-5)
    before = [p.detach().clone() for p in rev.parameters()]
    optimizer = torch.optim.Adam(rev.parameters(), lr=0.01)
    optimizer.zero_grad()
    rev(*graph).square().mean().backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, rev.parameters()))


def test_concatenated_heads_keep_the_width_or_are_refused_clearly():
    block = PreActBlock(12, 12, operator=GATConv, operator_kwargs={"heads": 3})
    x, edge_index, _ = tiny_graph()
    assert block(torch.randn(x.size(0), 12), edge_index).shape == (x.size(0), 12)
    with pytest.raises(ConfigError, match="divisible by heads=5"):
        PreActBlock(12, 12, operator=GATConv, operator_kwargs={"heads": 5})


def test_operator_and_norm_take_names_classes_callables_and_kwargs():
    x, edge_index, edge_attr = tiny_graph()
    for norm in ("batchnorm", torch.nn.LayerNorm, lambda c, **kw: torch.nn.BatchNorm1d(c, **kw)):
        model = ResGNN(IN, 16, OUT, 2, operator=lambda i, o: GCNConv(i, o), norm=norm, edge_dim=EDGE_DIM)
        assert model(x, edge_index, edge_attr).shape == (x.size(0), OUT)
    model = ResGNN(IN, 16, OUT, 2, norm_kwargs={"eps": 0.25}, operator_kwargs={"aggr": "max"})
    assert {m.eps for m in model.modules() if type(m).__name__ == "LayerNorm"} == {0.25}
    with pytest.raises(ConfigError, match="module instance"):
        ResGNN(IN, 16, OUT, 2, operator=GCNConv(16, 16))
    with pytest.raises(UnknownNameError, match="Did you mean .*'gcn'"):
        ResGNN(IN, 16, OUT, 2, operator="gnc")


@pytest.mark.parametrize("build", [lambda: RevGNN(IN, 16, OUT, 3, edge_dim=EDGE_DIM),
                                   lambda: ResGNN(IN, 16, OUT, 3, edge_dim=EDGE_DIM),
                                   lambda: DEQGNN(IN, 16, OUT, 3, edge_dim=EDGE_DIM)], ids=["rev", "res", "deq"])
def test_reset_parameters_draws_new_weights_and_repr_shows_sizes(build):
    model = build()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.reset_parameters()
    changed = [name for name, p in model.named_parameters() if not torch.equal(before[name], p)]
    assert "encoder.weight" in changed and any(".lin" in name or "conv" in name for name in changed)
    assert f"{IN}, 16, {OUT}" in repr(model) or type(model).__name__ == "DEQGNN"


def test_from_conv_wraps_a_user_conv_like_group_add_rev():
    x, edge_index, _ = tiny_graph()
    stack = ReversibleStack.from_conv(GCNConv(4, 4), num_groups=2, num_layers=5)
    h = torch.randn(x.size(0), 8)
    y = stack(h, edge_index)
    coupling = stack.blocks[0]
    assert isinstance(coupling, GroupedCoupling) and coupling.num_groups == 2
    copies = [body.conv.module.lin.weight for block in stack.blocks for body in block.bodies]
    assert len({w.data_ptr() for w in copies}) == 10  # every group of every layer owns its weights
    torch.testing.assert_close(stack.inverse(y, edge_index), h, atol=1e-5, rtol=1e-5)


def test_list_models_filters_like_timm():
    assert list_models() == sorted(MODELS)
    assert set(list_models("*rev*")) >= {"revgnn-deep", "revgnn-wide", "wt-revgnn-224", "revgat"}
    assert "resgnn-64" not in list_models("*rev*") and list_models("deq-*") == ["deq-gnn-224", "deq-gnn-64"]
    with pytest.raises(UnknownNameError, match="Did you mean 'revgnn-deep'"):
        create_model("revgnn-dep", in_channels=8, out_channels=2)


def test_create_model_applies_the_table_and_overrides():
    model = create_model("revgat", in_channels=8, out_channels=5, num_layers=2)
    assert isinstance(model, RevGNN) and model.stack.num_layers == 2 and model.hidden_channels == 240
    assert model.stack.blocks[0].bodies[0].conv.conv.heads == 3  # the table's operator options
    model = create_model("revgat", in_channels=8, out_channels=5, num_layers=2, operator="sage")
    assert type(model.stack.blocks[0].bodies[0].conv).__name__ == "SAGE"  # gat's options dropped


def _fragment_bindings(name: str) -> dict[str, object]:
    class Values(config_parser.ParserDelegate):
        def configurable_reference(self, scoped_configurable_name, evaluate):
            return scoped_configurable_name

        def macro(self, macro_name):
            return macro_name

    text = (config.configs_root() / "models" / f"{name}.gin").read_text()
    return {f"{st.selector}.{st.arg_name}": st.value for st in config_parser.ConfigParser(io.StringIO(text), Values())
            if isinstance(st, config_parser.BindingStatement)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_shipped_model_fragment_binds_exactly_its_table_entry(name):
    spec = MODELS[name]
    expected = {"experiment.architecture": spec.architecture,
                **{f"{config.registry.gin_name(spec.architecture)}.{k}": v for k, v in spec.kwargs.items()},
                **{f"{spec.kwargs['operator']}.{k}": v for k, v in spec.operator_kwargs.items()},
                **{f"{spec.kwargs.get('norm', 'layernorm')}.{k}": v for k, v in spec.norm_kwargs.items()}}
    assert _fragment_bindings(name) == expected


def test_a_plain_pyg_training_loop_trains_a_named_model():
    """No gin, no CLI: a user's own loop over a PyG graph."""
    from torch_geometric.datasets import FakeDataset

    torch.manual_seed(0)
    data = FakeDataset(num_graphs=1, avg_num_nodes=60, num_channels=8, num_classes=3, edge_dim=4)[0]
    model = create_model("revgnn-deep", in_channels=8, out_channels=3, num_layers=4, hidden_channels=16,
                         edge_dim=4, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data.x, data.edge_index, data.edge_attr), data.y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_optimizer_and_scheduler_are_registered_components_and_the_loop_records_lr(tmp_path):
    from gnn1000.build import build_experiment
    from helpers import TINY

    config.load("default", [*TINY, "experiment.epochs = 4", "experiment.lr = 0.1", "experiment.optimizer = 'sgd'",
                            "sgd.momentum = 0.5", "experiment.scheduler = 'cosine'", "cosine.warmup_epochs = 2"])
    experiment = build_experiment(tmp_path / "run", progress=False, log=lambda _: None)
    assert type(experiment.optimizer).__name__ == "SGD" and experiment.optimizer.defaults["momentum"] == 0.5
    assert "cosine.warmup_epochs = 2" in experiment.config_text and "sgd.momentum = 0.5" in experiment.config_text
    experiment.fit()
    lrs = [record["lr"] for record in experiment.run.read_metrics()]
    # warm-up from 1% of the rate over two epochs, then cosine decay over the remaining two
    assert lrs == pytest.approx([0.001, 0.0505, 0.1, 0.05])


def test_a_plateau_schedule_follows_the_validation_score(tmp_path):
    from gnn1000.build import build_experiment
    from helpers import TINY

    config.load("default", [*TINY, "experiment.scheduler = 'plateau'", "plateau.patience = 0",
                            "plateau.factor = 0.5", "experiment.lr = 0.1"])
    experiment = build_experiment(tmp_path / "run", progress=False, log=lambda _: None)
    assert experiment.scheduler.mode == "max"  # ROC-AUC: higher is better
    experiment.fit()
    lrs = [record["lr"] for record in experiment.run.read_metrics()]
    assert all(b in (a, a / 2) for a, b in zip(lrs, lrs[1:]))


def test_the_loop_runs_on_python_objects_without_importing_gin(tmp_path):
    """Experiment(model, data, sampler, settings, run_dir) in a fresh interpreter: gin never loads."""
    import subprocess
    import sys

    script = f"""
import sys, torch
torch.set_num_threads(1)
from gnn1000 import RevGNN
from gnn1000.checkpoint import seed_everything
from gnn1000.experiment import Experiment, ExperimentConfig
from gnn1000.registry import resolve
seed_everything(0)
data = resolve("datasets", "synthetic-proteins")(num_nodes=120, avg_degree=4, num_tasks=4)
model = RevGNN(data.num_features, 16, data.num_outputs, 3, edge_dim=data.edge_dim)
settings = ExperimentConfig(epochs=2, device="cpu", lr=0.01)
summary = Experiment(model, data, resolve("samplers", "full_batch")(), settings, {str(tmp_path / "run")!r},
                     progress=False, log=lambda _: None).fit()
assert summary["epochs"] == 2 and summary["final"]["lr"] == 0.01, summary
assert "gin" not in sys.modules, "gin was imported"
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_resumed_run_continues_the_learning_rate_schedule(tmp_path):
    from gnn1000.build import build_experiment
    from helpers import TINY

    schedule = [*TINY, "experiment.lr = 0.1", "experiment.scheduler = 'step'", "step.step_size = 1",
                "step.gamma = 0.5"]
    config.load("default", [*schedule, "experiment.epochs = 4"])
    build_experiment(tmp_path / "whole", progress=False, log=lambda _: None).fit()
    config.load("default", [*schedule, "experiment.epochs = 2"])
    build_experiment(tmp_path / "resumed", progress=False, log=lambda _: None).fit()
    config.load("default", [*schedule, "experiment.epochs = 4"])
    resumed = build_experiment(tmp_path / "resumed", progress=False, log=lambda _: None)
    resumed.fit(resume=True)
    whole = [r["lr"] for r in build_experiment(tmp_path / "whole", progress=False).run.read_metrics()]
    assert whole == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert [r["lr"] for r in resumed.run.read_metrics()] == pytest.approx(whole)


def test_the_encoder_wrapper_forwards_the_epoch_protocol():
    from gnn1000.data import Encoders
    from gnn1000.encoders import Encoded
    from gnn1000.protocols import EpochAware

    deq = DEQGNN(4, 8, 2, 2, pretrain_epochs=3)
    wrapped = Encoded(deq, Encoders(dim=4, node=lambda dim: torch.nn.Embedding(10, dim)))
    assert isinstance(wrapped, EpochAware)
    wrapped.set_epoch(2)
    assert deq.warming_up and wrapped.pop_metrics()["deq_warmup"] == 1.0
    assert Encoded(ResGNN(4, 8, 2, 2), Encoders(dim=4, node=lambda dim: torch.nn.Embedding(10, dim))).pop_metrics() == {}


def test_missing_architecture_settings_are_named_before_anything_is_built():
    from gnn1000.build import build_model
    from helpers import TINY

    config.load(None, [b for b in TINY if not b.startswith("resgnn.")] + ["experiment.architecture = 'revgnn'"])
    data = config.reference("datasets", "synthetic-proteins")()
    with pytest.raises(ConfigError, match="needs more settings: hidden_channels, num_layers"):
        build_model("revgnn", data)
