"""Shared fixtures: an isolated cache per test and the optional ../shared/adbench folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ADBENCH = REPO_ROOT.parent / "shared" / "adbench"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Small networks run fastest on one thread; it also keeps tests steady on a loaded machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never read or write the user's real cache, and ignore a SWIFTHYDRA_DATA of the caller."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("SWIFTHYDRA_DATA", raising=False)
    monkeypatch.delenv("SWIFTHYDRA_ADBENCH_URL", raising=False)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared ADBench folder beside the repository; tests using it skip when it is absent."""
    if not (SHARED_ADBENCH / "classical").is_dir():
        pytest.skip("../shared/adbench is not beside the repository")
    return SHARED_ADBENCH
