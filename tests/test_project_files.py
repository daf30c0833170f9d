"""The files a user cites and reads before upgrading: CITATION.cff and CHANGELOG.md."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_citation_names_the_paper_and_the_software():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and "version" not in cff  # pyproject has it
    paper = cff["preferred-citation"]
    assert paper["title"] == "Training Graph Neural Networks with 1000 Layers"
    assert [a["family-names"] for a in paper["authors"]] == ["Li", "Müller", "Ghanem", "Koltun"]
    assert (paper["year"], paper["volume"]) == (2021, 139)


def test_changelog_keeps_an_unreleased_section():
    text = (REPO / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in text and "## [Unreleased]" in text
