"""`vq-hf eval` / `vq-hf units` on a folder holding only the evaluated split, for each task; caches never land in
the model folder (they go to the datasets cache or --cache_dir)."""

from __future__ import annotations

import json
import re
import shutil
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from vq_hf.evaluation import cli as eval_cli
from vq_hf.units import cli as units_cli


def _snapshot(folder):
    """Every file of a folder with its size and mtime: equal snapshots = nothing written, removed or touched."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _as_trained(model, task, **data):
    """The recipe record a training run leaves beside the weights (it trained on a ``train`` split)."""
    recipe = {"task": task, "data": {"train_split": "train", "eval_split": "test", **data}, "training": {"seed": 0}}
    (model / "training_config.json").write_text(json.dumps(recipe))


def _eval(tmp_path, model, data, split, *extra):
    out = tmp_path / f"eval_{split}_{len(list(tmp_path.glob('eval_*.json')))}.json"
    rc = eval_cli(["--model", str(model), "--dataset_name", str(data), "--split", split, "--output", str(out),
                   *extra])
    assert rc == 0
    return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------------- CIFAR-10


def test_cifar_eval_and_units_on_a_test_only_parquet_folder(tmp_path):
    from vq_hf.data.cifar10 import embedded_sample_dir
    from vq_hf.models import VQVAEConfig, VQVAEModel

    only_test = tmp_path / "cifar_test_only"
    only_test.mkdir()
    for f in embedded_sample_dir().glob("test-*.parquet"):
        shutil.copy(f, only_test / f.name)
    torch.manual_seed(0)
    model = tmp_path / "model"
    VQVAEModel(VQVAEConfig(architecture="cifar10", hidden_size=16, num_residual_layers=1)).save_pretrained(model)
    _as_trained(model, "cifar10")
    before = _snapshot(model)

    cache = tmp_path / "cache"
    res = _eval(tmp_path, model, only_test, "test", "--max_samples", "16", "--batch_size", "8", "--cache_dir", str(cache))
    assert res["split"] == "test" and res["metrics"]["num_examples"] == 16
    assert res["metrics"]["reconstruction_bits_per_dim"] > 0
    assert any(cache.rglob("*.arrow"))  # the datasets cache went where it was told
    assert units_cli(["--model", str(model), "--dataset_name", str(only_test), "--split", "test", "--max_examples",
                      "4", "--output", str(tmp_path / "units"), "--no_progress", "--device", "cpu"]) == 0
    assert _snapshot(model) == before
    # a split the folder lacks is still one clear line
    assert eval_cli(["--model", str(model), "--dataset_name", str(only_test), "--split", "train"]) == 2


# ---------------------------------------------------------------------------------------------- handwriting


def _drop_from_zip(src, dst, names):
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            if info.filename not in names:
                b.writestr(info, a.read(info.filename))


def test_handwriting_eval_on_a_corpus_with_only_the_test_list_is_a_stand_in(tmp_path):
    from vq_hf.standins import handwriting as synth
    from vq_hf.data.scribblelens import STANDIN_MARKER, dat_name
    from vq_hf.models import VQVAEConfig, VQVAELineImageProcessor, VQVAEModel

    full = tmp_path / "hw.zip"
    synth.generate_corpus(full, 8, seed=3, scribes=2, height=40, min_chars=8, max_chars=14, test_fraction=0.25)
    only_test = tmp_path / "hw_test_only.zip"
    _drop_from_zip(full, only_test, {dat_name("train")})
    torch.manual_seed(0)
    cfg = VQVAEConfig(architecture="handwriting", conv_channels=[4] * 7, rnn_hidden_size=8, rnn_projection_size=8,
                      mixer_hidden_size=8, pixelcnn_hidden_size=8, pixelcnn_num_layers=2)
    model = tmp_path / "model"
    VQVAEModel(cfg).save_pretrained(model)
    VQVAELineImageProcessor(target_height=cfg.image_size).save_pretrained(model)
    _as_trained(model, "handwriting", dataset_name=str(full))
    before = _snapshot(model)

    res = _eval(tmp_path, model, only_test, "test", "--batch_size", "2")
    assert res["metrics"]["num_examples"] == 2
    # the generator's marker travels with the zip: a stand-in is never recorded as ScribbleLens
    assert "stand-in" in res["data_variant"] and "8 lines" in res["data_variant"]
    assert units_cli(["--model", str(model), "--dataset_name", str(only_test), "--split", "test",
                      "--output", str(tmp_path / "units"), "--no_progress", "--device", "cpu"]) == 0
    assert _snapshot(model) == before
    # without the marker (the real corpus's layout) it is ScribbleLens
    real_like = tmp_path / "real_like.zip"
    _drop_from_zip(only_test, real_like, {STANDIN_MARKER})
    assert _eval(tmp_path, model, real_like, "test", "--batch_size", "2")["data_variant"] == "ScribbleLens"


# ---------------------------------------------------------------------------------------------- speech

RATE = 16000


def _kaldi_dir(root, name, utts, seed):
    d = root / name
    (d / "wav").mkdir(parents=True)
    wav_lines, ctm = [], []
    rng = np.random.default_rng(seed)
    for i, utt in enumerate(utts):
        t = np.arange(int((0.5 + 0.3 * i) * RATE)) / RATE
        audio = 0.2 * np.sin(2 * np.pi * (180 + 60 * i + 20 * seed) * t) + 0.02 * rng.standard_normal(t.shape)
        sf.write(d / "wav" / f"{utt}.wav", np.round(audio * 32767).astype(np.int16), RATE, subtype="PCM_16")
        wav_lines.append(f"{utt} {d / 'wav' / (utt + '.wav')}")
        frames = 1 + (len(t) - 400) // 160
        bounds = np.linspace(0, frames, 4).round().astype(int)
        ctm += [f"{utt} 1 {s * 0.01:.2f} {(e - s) * 0.01:.2f} {p}"
                for p, s, e in zip(["SIL", "AH", "T"], bounds[:-1], bounds[1:])]
    (d / "wav.scp").write_text("".join(line + "\n" for line in wav_lines))
    (d / "phones.ctm").write_text("".join(line + "\n" for line in ctm))
    return d


@pytest.fixture
def speech_model(tmp_path):
    """A model folder as training leaves it (fitted preprocessor_config.json, phones.txt) and its corpus."""
    from vq_hf.data import load_wsj
    from vq_hf.models import VQVAEConfig, VQVAEForCTC

    root = tmp_path / "corpus"
    _kaldi_dir(root, "train", ["tr1", "tr2", "tr3"], seed=0)
    _kaldi_dir(root, "test", ["te1", "te2", "te3"], seed=1)
    model = tmp_path / "model"
    _, info = load_wsj(root, return_info=True, output_dir=model, cache_dir=tmp_path / "fit_cache")
    torch.manual_seed(0)
    cfg = VQVAEConfig(architecture="speech", conv_channels=[4, 4], rnn_num_layers=1, rnn_hidden_size=8,
                      vocab_size=len(info.phones))
    VQVAEForCTC(cfg).save_pretrained(model)
    _as_trained(model, "speech", dataset_name=str(root))
    return model, root


def test_speech_eval_and_units_on_a_root_holding_only_the_test_folder(tmp_path, speech_model, monkeypatch):
    model, root = speech_model
    only_test = tmp_path / "only_test"
    shutil.copytree(root / "test", only_test / "test")
    before = _snapshot(model)
    cache = tmp_path / "feature_cache"
    res = _eval(tmp_path, model, only_test, "test", "--cache_dir", str(cache))
    # normalised with the model's CMVN statistics: the same numbers as with the training folder beside it
    full = _eval(tmp_path, model, root, "test")
    assert res["metrics"]["num_examples"] == 3
    assert res["metrics"]["phone_error_rate"] == full["metrics"]["phone_error_rate"]
    assert res["metrics"]["loss"] == pytest.approx(full["metrics"]["loss"], rel=1e-5)
    assert any((cache / "vq_hf_wsj").iterdir())  # the feature cache is under --cache_dir ...
    assert _snapshot(model) == before  # ... and nothing was written into the model folder
    # a single Kaldi folder works too, for eval and units
    assert _eval(tmp_path, model, only_test / "test", "test")["metrics"]["num_examples"] == 3
    assert units_cli(["--model", str(model), "--dataset_name", str(only_test), "--split", "test",
                      "--output", str(tmp_path / "units"), "--no_progress", "--device", "cpu"]) == 0
    assert _snapshot(model) == before


def test_speech_eval_refuses_piped_wav_scp_unless_allowed(tmp_path, speech_model, capsys):
    model, root = speech_model
    data = tmp_path / "piped"
    test = shutil.copytree(root / "test", data / "test")
    flag = tmp_path / "ran"
    lines = (test / "wav.scp").read_text().splitlines()
    utt, path = lines[0].split(maxsplit=1)
    lines[0] = f"{utt} touch {flag}; cat {path} |"
    (test / "wav.scp").write_text("\n".join(lines) + "\n")
    assert eval_cli(["--model", str(model), "--dataset_name", str(data), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert f"{test / 'wav.scp'} line 1" in err and "--allow_scp_commands" in err and "Traceback" not in err
    assert not flag.exists()
    assert units_cli(["--model", str(model), "--dataset_name", str(data), "--split", "test",
                      "--output", str(tmp_path / "u"), "--no_progress"]) == 2  # one line, exit 2 (issue #11)
    assert re.search(r"vq-hf units: .*wav.scp line 1: .* shell command", capsys.readouterr().err)
    assert not flag.exists()
    res = _eval(tmp_path, model, data, "test", "--allow_scp_commands")
    assert flag.exists() and res["metrics"]["num_examples"] == 3
    assert f"line 1: touch {flag}" in capsys.readouterr().err


def test_training_recipe_key_allow_scp_commands(tmp_path, speech_model):
    """Training reads the opt-in from the recipe (`data.allow_scp_commands=true`), off by default."""
    from vq_hf.data import KaldiDataError
    from vq_hf.models import VQVAEConfig
    from vq_hf.training_utils.config import load_recipe
    from vq_hf.training_utils.tasks import get_task

    _, root = speech_model
    data = tmp_path / "piped"
    for split in ("train", "test"):
        shutil.copytree(root / split, data / split)
    flag = tmp_path / "ran"
    lines = (data / "train" / "wav.scp").read_text().splitlines()
    utt, path = lines[1].split(maxsplit=1)
    lines[1] = f"{utt} touch {flag}; cat {path} |"
    (data / "train" / "wav.scp").write_text("\n".join(lines) + "\n")
    task = get_task("speech")
    base = ["task=speech", f"data.dataset_name={data}", f"data.cache_dir={tmp_path / 'cache'}"]
    recipe = load_recipe(None, base)
    assert recipe["data"]["allow_scp_commands"] is False
    with pytest.raises(KaldiDataError, match=r"train/wav.scp line 2: .* data.allow_scp_commands=true"):
        task.build_data(recipe, VQVAEConfig(architecture="speech"))
    assert not flag.exists()
    recipe = load_recipe(None, [*base, "data.allow_scp_commands=true"])
    data_ = task.build_data(recipe, VQVAEConfig(architecture="speech"))
    assert flag.exists() and len(data_.train) == 3 and len(data_.eval) == 3
