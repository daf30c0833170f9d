"""The paper's presets have one source, ``gnn1000.models.MODELS``: the shipped ``configs/models``
fragments are generated from it, and a fragment that drifts from the table is caught."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

from gnn1000 import models


def test_the_shipped_fragments_are_what_the_table_generates():
    assert models.stale_configs() == []
    result = subprocess.run([sys.executable, "-m", "gnn1000.models", "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_table_change_makes_its_fragment_stale_until_regenerated_keeping_its_comment(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    shutil.copytree(models.configs_folder(), folder)
    spec = models.MODELS["revsage"]
    monkeypatch.setitem(models.MODELS, "revsage", dataclasses.replace(
        spec, kwargs={**spec.kwargs, "num_layers": 14}, operator_kwargs={"aggr": "max"}))
    (folder / "orphan.gin").write_text("revgnn.num_layers = 3\n")
    assert models.stale_configs(folder) == ["orphan", "revsage"]
    comment = (folder / "revsage.gin").read_text().split(models.GENERATED)[0]
    assert models.write_configs(folder) == ["revsage"]
    text = (folder / "revsage.gin").read_text()
    assert text.startswith(comment) and "revgnn.num_layers = 14\n" in text and "sage.aggr = 'max'\n" in text
    assert models.stale_configs(folder) == ["orphan"]  # a fragment without an entry is named, never deleted
