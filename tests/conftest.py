"""Shared test set-up: offline hub, local (non-Colab) runtime, headless matplotlib, a private cache."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["SEGLIB_ENV"] = "local"
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
CAMVID = SHARED_DATA / "camvid_segnet"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep downloads/extractions/synthetic data of the tests out of ~/.cache."""
    os.environ["SEGLIB_CACHE"] = str(tmp_path_factory.mktemp("seglib_cache"))
    yield


def need(path: Path) -> Path:
    """Skip the test when a shared real dataset is not beside the project (never on CI)."""
    if not path.exists():
        pytest.skip(f"{path} not present (real datasets live in ../shared/data)")
    return path


@pytest.fixture
def camvid() -> Path:
    return need(CAMVID)


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test (restored after): on a shared 2-core machine oversubscribed
    threads make each step several times slower and timings unsteady."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
