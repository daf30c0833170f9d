"""The public API's docstring examples run (``make test`` builds the docs site strictly after pytest)."""

from __future__ import annotations

import doctest
import importlib

import pytest

PUBLIC = ["gnn1000.models", "gnn1000.nn.blocks", "gnn1000.nn.reversible", "gnn1000.nn.resolver",
          "gnn1000.plugins.architectures.revgnn", "gnn1000.plugins.architectures.resgnn"]


@pytest.mark.parametrize("module", PUBLIC)
def test_docstring_examples_run(module, one_thread):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_modules_have_examples():
    assert sum(doctest.testmod(importlib.import_module(m), report=False).attempted for m in PUBLIC) >= 6


def test_the_plugin_guide_names_every_registry_kind():
    from pathlib import Path

    from gnn1000.registry import KINDS

    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    assert [kind for kind in KINDS if f"| {kind} |" not in guide or f"`{kind}`" not in guide] == []
