"""mkdocs hook: lay out the gnn1000 package as installed, so mkdocstrings can read it statically.

pyproject maps registry/, plugins/, tune/, bench/ and configs/ into ``gnn1000.*`` (package-dir);
griffe finds only top-level packages (and follows links back to their folders), so a copy of the
sources under build/docs-src joins them, remade on every build.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "build" / "docs-src"


@event_priority(100)  # before mkdocstrings reads build/docs-src: hooks otherwise run after the plugins
def on_config(config, **kwargs):
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(SOURCE, ignore_errors=True)
    sources = shutil.ignore_patterns("__pycache__", "*.gin")
    shutil.copytree(ROOT / mapping["gnn1000"], SOURCE / "gnn1000", ignore=sources)
    for name, folder in mapping.items():
        if name != "gnn1000":
            shutil.copytree(ROOT / folder, SOURCE / name.replace(".", "/"), ignore=sources)
    return config
