"""The registry: names, errors, gin wiring, and real third-party distributions through entry points."""

import textwrap

import gin
import pytest
import torch

from gnn1000 import registry
from gnn1000.errors import PluginLoadError, UnknownNameError
from gnn1000.registry import available, register, resolve

from helpers import TINY, bind_args, install_distributions, run_gnn1000, write_distribution


def test_builtins_are_listed_per_kind():
    assert {"gen", "gcn", "sage", "gat"} <= set(available("operators"))
    assert {"layernorm", "batchnorm", "graphnorm"} <= set(available("norms"))
    assert "resgnn" in available("architectures")
    assert "synthetic-proteins" in available("datasets")
    assert "full_batch" in available("samplers")


def test_resolve_normalises_names_and_passes_objects_through():
    resgnn = resolve("architectures", "resgnn")
    assert resolve("architectures", "ResGNN") is resgnn
    assert resolve("datasets", "synthetic_proteins") is resolve("datasets", "Synthetic Proteins")
    assert resolve("operators", torch.nn.Linear) is torch.nn.Linear


def test_unknown_name_names_kind_close_matches_and_all_choices():
    with pytest.raises(UnknownNameError) as err:
        resolve("operators", "gnc")
    message = str(err.value)
    assert "Unknown operator 'gnc'" in message
    assert "Did you mean 'gen', 'gcn'" in message or "Did you mean 'gcn', 'gen'" in message
    for name in available("operators"):
        assert name in message


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(UnknownNameError, match="architectures, callbacks, datasets, loggers, norms, operators, optimizers, samplers, schedulers, solvers"):
        available("operator")


def test_register_makes_a_component_resolvable_and_gin_configurable_through_a_reference():
    @register("operators", "scaled_identity_for_test")
    class ScaledIdentity(torch.nn.Module):
        def __init__(self, in_channels, out_channels, *, edge_dim=None, scale=1.0):
            super().__init__()
            self.scale = scale

        def forward(self, x, edge_index, edge_attr=None):
            return self.scale * x

    from gnn1000 import config

    assert resolve("operators", "scaled-identity-for-test") is ScaledIdentity  # the class itself
    configured = config.reference("operators", "scaled-identity-for-test")
    gin.parse_config("scaled_identity_for_test.scale = 3.0")
    assert configured(4, 4).scale == 3.0
    assert ScaledIdentity(4, 4).scale == 1.0  # built in Python: gin does not reach it
    gin.clear_config()
    gin.parse_config("operators.scaled_identity_for_test.scale = 5.0")  # kind as gin module
    assert configured(4, 4).scale == 5.0 and type(configured(4, 4)) is ScaledIdentity


def test_a_second_object_cannot_take_a_registered_name():
    with pytest.raises(ValueError, match="already registered"):
        @register("operators", "gen")
        class Impostor(torch.nn.Module):
            pass


# -- real third-party distributions --------------------------------------------------------------

DEMO_CONV = '''
import torch
from torch_geometric.nn import MessagePassing


class DemoConv(MessagePassing):
    """Mean of neighbours' linear features, times a gin-configurable scale."""

    def __init__(self, in_channels, out_channels, *, edge_dim=None, scale=1.0):
        super().__init__(aggr="mean")
        self.lin = torch.nn.Linear(in_channels, out_channels)
        self.scale = scale

    def forward(self, x, edge_index, edge_attr=None):
        return self.scale * self.propagate(edge_index, x=self.lin(x))
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """Two real distributions, built and installed by pip into a private site directory."""
    root = tmp_path_factory.mktemp("plugins")
    good = write_distribution(root, "gnn1000-demo-plugin", "gnn1000_demo_plugin",
                               {"conv.py": DEMO_CONV}, {"democonv": "gnn1000_demo_plugin.conv:DemoConv",
                                                        "twinconv": "gnn1000_demo_plugin.conv:DemoConv"})
    broken = write_distribution(root, "gnn1000-broken-plugin", "gnn1000_broken_plugin",
                                 {"conv.py": "import a_module_that_does_not_exist\n"},
                                 {"brokenconv": "gnn1000_broken_plugin.conv:BrokenConv"})
    rival = write_distribution(root, "gnn1000-rival-plugin", "gnn1000_rival_plugin",
                                {"conv.py": DEMO_CONV}, {"gen": "gnn1000_rival_plugin.conv:DemoConv",
                                                         "twinconv": "gnn1000_rival_plugin.conv:DemoConv"})
    return install_distributions(root / "site", good, broken, rival)


@pytest.fixture
def plugins_on_path(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    registry.refresh()
    yield plugin_site
    monkeypatch.undo()
    registry.refresh()


def test_third_party_operator_is_found_with_its_distribution(plugins_on_path):
    entries = {e.name: e for e in registry.describe("operators")}
    assert entries["democonv"].origin == "distribution gnn1000-demo-plugin 0.1.0"
    assert entries["gen"].origin == "built-in"
    conv = resolve("operators", "democonv")
    out = conv(4, 3)(torch.randn(5, 4), torch.tensor([[0, 1, 2], [1, 2, 3]]))
    assert out.shape == (5, 3)


def test_broken_plugin_breaks_only_its_own_name(plugins_on_path):
    assert "brokenconv" in available("operators")  # listing imports nothing
    with pytest.raises(PluginLoadError) as err:
        resolve("operators", "brokenconv")
    assert "gnn1000-broken-plugin" in str(err.value)
    assert "a_module_that_does_not_exist" in str(err.value)
    assert isinstance(err.value.__cause__, ModuleNotFoundError)
    with pytest.warns(UserWarning, match="'gen' is built in"):  # the rival plugin on the path
        assert resolve("operators", "gen") is not None
    assert resolve("operators", "democonv") is not None


def test_a_name_clash_keeps_the_built_in_and_refuses_to_guess_between_plugins(plugins_on_path):
    from gnn1000.plugins.operators.pyg_convs import GEN

    with pytest.warns(UserWarning, match="'gen' is built in; ignoring .*gnn1000-rival-plugin"):
        assert resolve("operators", "gen") is GEN
    with pytest.raises(PluginLoadError, match="'twinconv' is declared by more than one plugin"):
        resolve("operators", "twinconv")


def test_third_party_operator_trains_in_a_model_composed_from_gin(plugin_site, tmp_path):
    config = tmp_path / "demo.gin"
    config.write_text(textwrap.dedent("""\
        include 'fragments/synthetic-proteins.gin'
        experiment.architecture = 'resgnn'
        resgnn.operator = 'democonv'
        democonv.scale = 0.5
        """))
    env = {"PYTHONPATH": str(plugin_site)}
    listing = run_gnn1000(["list", "operators"], env_extra=env)
    assert listing.returncode == 0, listing.stderr
    assert "democonv" in listing.stdout and "distribution gnn1000-demo-plugin 0.1.0" in listing.stdout
    assert "brokenconv" in listing.stdout

    run_dir = tmp_path / "run"
    result = run_gnn1000(["train", str(config), "--run-dir", str(run_dir), "--no-progress",
                          *bind_args(TINY)], env_extra=env)
    assert result.returncode == 0, result.stderr
    assert "final test rocauc" in result.stdout
    operative = (run_dir / "config.gin").read_text()
    assert "democonv.scale = 0.5" in operative
    assert "resgnn.operator = 'democonv'" in operative
