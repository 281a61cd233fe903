"""The repository around the code: the slow-test gate, the README's links, the declared licence."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_slow_tests_run_only_with_audiostory_slow(pytester, monkeypatch):
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    pytester.makepyfile(
        test_gate="""
        import pytest

        @pytest.mark.slow
        def test_long():
            pass

        def test_quick():
            pass
    """
    )
    monkeypatch.delenv("AUDIOSTORY_SLOW", raising=False)
    default = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs")
    default.assert_outcomes(passed=1, skipped=1)
    default.stdout.fnmatch_lines(["*slow: set AUDIOSTORY_SLOW=1 to run*"])
    monkeypatch.setenv("AUDIOSTORY_SLOW", "1")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_readme_links_point_at_files_that_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", text) if not m.startswith(("http", "#"))}
    assert {"docs/demo-model.md", "docs/training.md", "LICENSE", "benchmarks/RESULTS.md"} <= targets
    assert [t for t in targets if not (ROOT / t).exists()] == []


def test_the_declared_licence_is_the_licence_file():
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0" in (ROOT / "LICENSE").read_text(encoding="utf-8")
