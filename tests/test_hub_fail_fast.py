"""A mistyped hub id fails in one line at once: offline, on a 404, or with the hub unreachable (no retries)."""

from __future__ import annotations

import time

import huggingface_hub
import pytest
from huggingface_hub.errors import RepositoryNotFoundError

from vq_hf.evaluation import cli as eval_cli
from vq_hf.hub import HubRepoError, check_hub_repo


def _answer_404(*args, **kwargs):
    from httpx2 import Request, Response

    url = "https://huggingface.co/api/datasets/no-such-user/no-such-dataset"
    raise RepositoryNotFoundError("404 Client Error", response=Response(404, request=Request("GET", url)))


@pytest.fixture
def online(monkeypatch):
    """The hub "reachable" (no real network in tests): what it answers is monkeypatched per test."""
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)

    def no_download(*args, **kwargs):
        raise AssertionError("datasets.load_dataset must not run for an id the hub refused")

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", no_download)


@pytest.fixture
def model_folder(tmp_path):
    from vq_hf.models import VQVAEConfig, VQVAEModel

    VQVAEModel(VQVAEConfig(architecture="cifar10", hidden_size=16, num_residual_layers=1)).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def test_404_is_one_line_naming_the_id(online, monkeypatch, model_folder, capsys):
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", _answer_404)
    with pytest.raises(HubRepoError, match=r"hub dataset 'no-such-user/no-such-dataset' does not exist \(.*404"):
        check_hub_repo("no-such-user/no-such-dataset")
    rc = eval_cli(["--model", str(model_folder), "--dataset_name", "no-such-user/no-such-dataset"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "'no-such-user/no-such-dataset' does not exist" in err[-1] and "Traceback" not in "".join(err)
    assert eval_cli(["--model", "no-such/model"]) == 2
    assert "hub model 'no-such/model' does not exist" in capsys.readouterr().err


def test_unreachable_hub_fails_at_once_with_the_offline_hint(online, monkeypatch):
    calls = []

    def unreachable(self, repo_id, **kwargs):
        calls.append(kwargs.get("timeout"))
        from httpx2 import ConnectError

        raise ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", unreachable)
    with pytest.raises(HubRepoError, match=r"'a/b': cannot reach the hub \(ConnectError.*HF_HUB_OFFLINE=1"):
        check_hub_repo("a/b")
    assert calls == [pytest.approx(10.0)]  # one probe with a short timeout, no retry loop


def test_offline_mode_asks_nothing_and_fails_fast(monkeypatch, model_folder, capsys):
    assert huggingface_hub.is_offline_mode()  # conftest: HF_HUB_OFFLINE=1

    def no_probe(*args, **kwargs):
        raise AssertionError("offline: the hub must not be asked")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", no_probe)
    check_hub_repo("uoft-cs/cifar10")  # offline: cached copies stay usable, so no verdict here
    start = time.perf_counter()
    rc = eval_cli(["--model", str(model_folder), "--dataset_name", "no-such-user/no-such-dataset"])
    rc_model = eval_cli(["--model", "no-such/model"])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert rc == 2 and rc_model == 2
    assert "'no-such-user/no-such-dataset'" in err and "'no-such/model'" in err and "Traceback" not in err
    assert elapsed < 10  # measured ~25 s of retries before (datasets.load_dataset with the network down)
