"""gin composition: shipped names, includes, bindings, and errors that list what is valid."""

import textwrap

import pytest

from gnn1000 import config
from gnn1000.errors import ConfigError
from gnn1000.build import build_model


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_config_is_found_by_name_with_or_without_suffix():
    assert config.find_config("default") == config.find_config("default.gin")
    assert "default" in config.shipped_configs()
    loaded = config.load("default")
    assert loaded.name == "default"
    assert config.settings().architecture == "revgnn"  # the default job is a RevGNN


def test_missing_config_names_close_shipped_configs():
    with pytest.raises(ConfigError) as err:
        config.find_config("defualt")
    assert "Did you mean default" in str(err.value)
    assert "Shipped configs" in str(err.value)


def test_includes_resolve_relative_to_the_including_file_then_shipped_configs(tmp_path):
    _write(tmp_path / "shared" / "data.gin", "synthetic_proteins.num_tasks = 5\n")
    _write(tmp_path / "exp" / "parts" / "model.gin", """\
        include '../../shared/data.gin'
        resgnn.num_layers = 3
        """)
    main = _write(tmp_path / "exp" / "main.gin", """\
        include 'fragments/synthetic-proteins.gin'
        include 'parts/model.gin'
        resgnn.hidden_channels = 12
        """)
    config.load(main)
    data = config.reference("datasets", "synthetic-proteins")(num_nodes=50, avg_degree=4)
    assert data.num_outputs == 5
    model = build_model(config.settings().architecture, data)
    assert len(model.blocks) == 3 and model.encoder.out_features == 12


def test_missing_include_names_the_including_file(tmp_path):
    main = _write(tmp_path / "main.gin", "include 'nowhere.gin'\n")
    with pytest.raises(ConfigError, match=r"include 'nowhere.gin' in .*main.gin was not found"):
        config.load(main)


def test_bindings_override_the_file():
    config.load("default", ["resgnn.num_layers = 2", "experiment.lr = 0.5"])
    assert config.settings().lr == 0.5


def test_unknown_configurable_suggests_close_names_and_lists_all():
    with pytest.raises(ConfigError) as err:
        config.load("default", ["regnn.num_layers = 3"])
    message = str(err.value)
    assert "No configurable matching 'regnn'" in message
    assert "Did you mean" in message and "resgnn" in message.split("Did you mean")[1].split("?")[0]
    assert "synthetic_proteins" in message and "experiment" in message


def test_unknown_parameter_lists_the_parameters():
    with pytest.raises(ConfigError) as err:
        config.load("default", ["resgnn.num_layer = 3"])
    message = str(err.value)
    assert "doesn't have a parameter named 'num_layer'" in message
    assert "Did you mean num_layers" in message
    assert "hidden_channels" in message and "weight_tied" in message


def test_malformed_binding_and_syntax_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not of the form"):
        config.load("default", ["resgnn.num_layers"])
    bad = _write(tmp_path / "bad.gin", "resgnn.num_layers = = 3\n")
    with pytest.raises(ConfigError, match="syntax"):
        config.load(bad)


def test_invalid_experiment_values_are_rejected():
    config.load("default", ["experiment.epochs = 0"])
    with pytest.raises(ConfigError, match="epochs=0 must be a positive integer"):
        config.settings()


def test_a_search_file_given_to_train_points_to_gnn1000_tune():
    import gnn1000.tune.space  # noqa: F401  registers `search` with gin, as in a process that tunes

    with pytest.raises(ConfigError, match="run it with 'gnn1000 tune FILE'"):
        config.load("tune/resgnn")


def test_runs_of_shipped_configs_are_named_for_the_config_path():
    from gnn1000.rundir import RunDir

    loaded = config.load("ogbn-proteins/revgnn-deep")
    assert loaded.name == "ogbn-proteins/revgnn-deep"
    assert RunDir.new(loaded.name).path.name.startswith("ogbn-proteins-revgnn-deep-")


def test_load_works_as_a_library_call_in_a_fresh_interpreter():
    import subprocess
    import sys

    code = ("from gnn1000 import config; config.load('ogbn-proteins/revgnn-deep'); "
            "import gin; print(gin.query_parameter('revgnn.num_layers'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1001"


def test_gin_text_is_parsed_through_one_delegate():
    """config, resume and the tune layer share gnn1000.gin_text instead of a ParserDelegate each."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    owners = [str(path.relative_to(repo)) for folder in ("gnn1000", "tune", "registry", "plugins")
              for path in (repo / folder).rglob("*.py")
              for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.ClassDef) and any("ParserDelegate" in ast.unparse(b) for b in node.bases)]
    assert owners == ["gnn1000/gin_text.py"]
