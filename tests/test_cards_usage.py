"""The usage snippets of every task's model card run as written against a saved model."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from vq_hf.cards import build_model_card


def _save_model(task, folder):
    from vq_hf.models import VQVAEConfig, VQVAEFeatureExtractor, VQVAEForCTC, VQVAEModel

    torch.manual_seed(0)
    if task == "cifar10":
        cfg = VQVAEConfig(architecture="cifar10", hidden_size=16, num_residual_layers=1, num_codebooks=2,
                          codebook_size=16, latent_dim=12)
        VQVAEModel(cfg).save_pretrained(str(folder))
    elif task == "handwriting":
        cfg = VQVAEConfig(architecture="handwriting", conv_channels=[4] * 7, rnn_hidden_size=8, rnn_projection_size=8,
                          codebook_size=16, latent_dim=8, mixer_hidden_size=8, pixelcnn_hidden_size=8,
                          pixelcnn_num_layers=2)
        VQVAEModel(cfg).save_pretrained(str(folder))
    else:
        cfg = VQVAEConfig(architecture="speech", conv_channels=[4, 4], rnn_num_layers=1, rnn_hidden_size=8,
                          codebook_size=8, latent_dim=4, vocab_size=6)
        VQVAEForCTC(cfg).save_pretrained(str(folder))
        rng = np.random.default_rng(0)
        VQVAEFeatureExtractor().fit_cmvn([0.1 * rng.standard_normal(16000) for _ in range(2)]).save_pretrained(str(folder))


def _make_inputs(task, folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    if task == "cifar10":
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    elif task == "handwriting":
        Image.fromarray(rng.integers(0, 256, (48, 150), dtype=np.uint8)).save(folder / "a.png")
    else:
        sf.write(folder / "a.wav", 0.1 * rng.standard_normal(22050), 22050, subtype="PCM_16")


def _blocks(text, lang):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("task", ["cifar10", "handwriting", "speech"])
def test_card_snippets_run_as_written(task, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    _save_model(task, model_dir)
    results = {"task": task, "dataset": "local", "data_variant": "test data", "split": "test",
               "metrics": {"codebook_perplexity": 3.0},
               "training": {"steps": 1, "wall_time_s": 1.0, "hardware": "cpu"}}
    card = str(build_model_card(results, repo_id=str(model_dir)))
    python_blocks = [b for b in _blocks(card, "python")]
    assert len(python_blocks) == 1
    namespace = {}
    exec(compile(python_blocks[0], f"<{task} card>", "exec"), namespace)  # noqa: S102 — the snippet under test
    assert isinstance(namespace["codes"], torch.Tensor) and namespace["codes"].dtype == torch.int64
    assert isinstance(namespace["units"], datasets.Dataset) and len(namespace["units"]) >= 1

    (bash,) = _blocks(card, "bash")
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(bash, comments=True)
    _make_inputs(task, tmp_path / argv[argv.index("--inputs") + 1].rstrip("/"))
    if argv[0] == "vq-hf" and shutil.which("vq-hf") is None:
        argv = [sys.executable, "-m", "vq_hf.cli"] + argv[1:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    units = datasets.load_from_disk(str(tmp_path / "units"))
    assert units["id"] == ["a.png" if task != "speech" else "a.wav"]
