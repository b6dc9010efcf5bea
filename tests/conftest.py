import os

# Offline everywhere: set before transformers / datasets / huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib

import pytest
import torch

# One intra-op thread: the tests use tiny tensors, where OpenMP start-up costs more than it saves
# (measured: a small BatchNorm took 45 ms with 2 threads on a loaded 2-core machine, 0.1 ms with 1).
torch.set_num_threads(1)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_dir():
    """../shared beside the checkout (CI lays a copy there)."""
    if not SHARED.exists():
        pytest.skip("../shared is not present beside the checkout")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
