"""Shared fixtures: every test gets its own cache and user dirs, and never touches the network."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ("pytester",)  # tests/test_repository.py runs the slow gate on a small suite


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (long training or rendering) run only with ``AUDIOSTORY_SLOW=1``, as CI does."""
    if os.environ.get("AUDIOSTORY_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set AUDIOSTORY_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    cache = tmp_path / "_cache"
    monkeypatch.setenv("AUDIOSTORY_CACHE", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "_xdg"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "_hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("AUDIOSTORY_DEBUG", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.delenv("VISUAL", raising=False)
    return tmp_path


@pytest.fixture(autouse=True, scope="session")
def single_thread_torch():
    """Toy models run faster on one thread, and the test machine has two cores shared with other work."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture()
def models_dir(tmp_path, monkeypatch):
    """A copy of the bundled model registry without the bundled `demo` (tests may add one): what a release that
    bundles no demo looks like, whether or not this checkout bundles one."""
    import shutil

    from audiostory_cli.weights import download, registry

    folder = tmp_path / "bundled-models"
    shutil.copytree(registry.registry_dir(), folder, ignore=shutil.ignore_patterns("demo", "demo.toml"))
    monkeypatch.setattr(registry, "data_dir", lambda name: folder)
    monkeypatch.setattr(download, "data_dir", lambda name: folder)
    return folder
