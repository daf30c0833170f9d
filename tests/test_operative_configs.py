"""Moving gin to the edge changed no run: the operative configs recorded before the change (in
tests/data/operative_configs) hold today too. New parameters may appear, at their defaults only."""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import pytest
from gin import config_parser
from operative_cases import CASES
from shared_data import requires, shared_data  # noqa: F401  (session fixture)

import gnn1000.tune.space  # noqa: F401  registers `search`, which a tune file binds
from gnn1000 import config, registry
from gnn1000.build import build_experiment

RECORDED = Path(__file__).parent / "data" / "operative_configs"
# Parameters added since the recording, by name, with the only value they may take there.
NEW_PARAMETERS = {"operator_kwargs": None, "norm_kwargs": None, "input_dropout": 0.0, "edge_dropout": 0.0,
                  "optimizer": "adam", "scheduler": "none", "precision": "32", "patience": None, "loggers": [],
                  "callbacks": [], "ema_decay": None, "deterministic": False, "compare_step_memory": [], "compile": False}

pytestmark = pytest.mark.usefixtures("one_thread")


class _Values(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_configurable_name, evaluate):
        return f"@{scoped_configurable_name}"

    def macro(self, macro_name):
        return f"%{macro_name}"


def bindings(text: str) -> dict[str, object]:
    """'selector.parameter' -> value of every binding in a gin text."""
    return {f"{st.selector}.{st.arg_name}": st.value
            for st in config_parser.ConfigParser(io.StringIO(text), _Values())
            if isinstance(st, config_parser.BindingStatement)}


def default_of(key: str):
    """The signature default of a parameter of a registered component, by its gin selector."""
    selector, param = key.rsplit(".", 1)
    entries = registry.find_by_gin_name(selector.split(".")[-1])
    assert entries, f"{key}: a new configurable that is not a registered component"
    return inspect.signature(registry.resolve(entries[0].kind, entries[0].name)).parameters[param].default


NEEDS = {"ogbg-molhiv-quick": "ogb/ogbg_molhiv", "blogcatalog-quick": "ogb/blogcatalog"}


@pytest.mark.parametrize("case", [pytest.param(case, marks=requires(NEEDS[case]) if case in NEEDS else ())
                                  for case in sorted(CASES)])
def test_operative_config_is_unchanged(case, shared_data, tmp_path):  # noqa: F811
    name, extra = CASES[case]
    config.load(name, extra, search=name.startswith("tune/"))
    now = bindings(build_experiment(tmp_path / "run", progress=False).config_text)
    before = bindings((RECORDED / f"{case}.gin").read_text())
    changed = {key: (value, now.get(key, "<missing>")) for key, value in before.items() if now.get(key) != value}
    assert not changed, f"{name}: bindings changed (recorded, now): {changed}"
    for key in now.keys() - before.keys():
        param = key.rsplit(".", 1)[1]
        expected = NEW_PARAMETERS[param] if param in NEW_PARAMETERS else default_of(key)
        assert now[key] == expected, f"{name}: new binding {key} = {now[key]!r}, not its default {expected!r}"
