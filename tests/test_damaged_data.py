"""Damaged dataset files: processed files rebuilt, a fixed source copied to the cache again."""

from __future__ import annotations

import shutil
import stat

import pytest

from gnn1000.errors import CorruptFileError
from gnn1000.registry import resolve

from shared_data import DATA_ROOT, read_only_copy

pytestmark = pytest.mark.skipif(not (DATA_ROOT / "ogb" / "blogcatalog").is_dir(),
                                reason=f"shared BlogCatalog is absent under {DATA_ROOT}")


def blogcatalog_root(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(DATA_ROOT / "ogb" / "blogcatalog", root / "ogb" / "blogcatalog")
    for path in [root, *root.rglob("*")]:  # the shared copy's modes may be read-only
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return root


def test_a_truncated_processed_file_is_rebuilt_from_raw(tmp_path, monkeypatch):
    root = blogcatalog_root(tmp_path)  # writable: OGB processes in place
    monkeypatch.setenv("GNN1000_DATA", str(root))
    monkeypatch.setenv("GNN1000_CACHE", str(tmp_path / "cache"))
    first = resolve("datasets", "blogcatalog")()
    processed = root / "ogb" / "blogcatalog" / "processed" / "geometric_data_processed.pt"
    processed.write_bytes(processed.read_bytes()[: processed.stat().st_size // 3])
    with pytest.warns(UserWarning, match="rebuilding them from raw"):
        again = resolve("datasets", "blogcatalog")()
    assert again.graph.edge_index.equal(first.graph.edge_index)


def test_a_fixed_source_is_copied_to_the_cache_again(tmp_path, monkeypatch):
    source = blogcatalog_root(tmp_path)
    edges = source / "ogb" / "blogcatalog" / "raw" / "edge.csv.gz"
    good = edges.read_bytes()
    edges.write_bytes(good[: len(good) // 2])
    read_only = read_only_copy(source, tmp_path / "ro")
    monkeypatch.setenv("GNN1000_DATA", str(read_only))
    monkeypatch.setenv("GNN1000_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CorruptFileError, match="edge.csv.gz is damaged"):
        resolve("datasets", "blogcatalog")()
    assert (tmp_path / "cache" / "ogb" / "blogcatalog").is_dir()  # the damaged first copy

    fixed = read_only / "ogb" / "blogcatalog" / "raw" / "edge.csv.gz"
    fixed.parent.chmod(fixed.parent.stat().st_mode | stat.S_IWUSR)
    fixed.chmod(0o644)
    fixed.write_bytes(good)
    fixed.chmod(0o444)
    fixed.parent.chmod(fixed.parent.stat().st_mode & ~stat.S_IWUSR)
    with pytest.warns(UserWarning, match="changed since it was copied"):
        data = resolve("datasets", "blogcatalog")()
    assert data.graph.num_nodes == 10312
    assert not (read_only / "ogb" / "blogcatalog" / "processed").exists()
