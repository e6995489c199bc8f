"""Shared test fixtures. Tests run offline; real sample data is read from ../shared/data."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REFBENCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample data folder; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (set REFBENCH_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own refbench and HF caches, never the user's."""
    base = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("REFBENCH_CACHE", str(base / "refbench"))
    monkeypatch.setenv("HF_HOME", str(base / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(base / "hf" / "datasets"))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models on a busy 2-core box run far faster on one intra-op thread
    (use with `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    from tests.helpers import one_thread as threads

    with threads():
        yield
