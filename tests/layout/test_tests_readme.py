"""tests/README.md maps every feature package to its tests, and names every test file (so it cannot go stale)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_feature_and_test_file_is_in_the_tests_readme() -> None:
    text = (ROOT / "tests/README.md").read_text()
    features = sorted(p.parent.name for p in (ROOT / "include").glob("*/__init__.py"))
    assert [f for f in features if f"`{f}`" not in text and f"`{f} (" not in text] == []
    files = sorted(str(p.relative_to(ROOT / "tests")) for p in (ROOT / "tests").rglob("test_*.py"))
    assert [f for f in files if f"`{f}`" not in text] == []


def test_every_test_file_the_tests_readme_names_exists() -> None:
    import re

    named = re.findall(r"`((?:unit|integration|dags|e2e|layout)/test_\w+\.py)`", (ROOT / "tests/README.md").read_text())
    assert named and [f for f in named if not (ROOT / "tests" / f).is_file()] == []
