"""Tiny end-to-end runs of the handwriting and speech recipes on the stand-in corpus generators."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from test_training_run import REPO, run

CONFIGS = REPO / "training" / "configs"

TINY_SEQ = ["model.rnn_num_layers=1", "model.rnn_hidden_size=8", "model.latent_dim=16",
            "quantizer.codebook_size=32", "quantizer.reservoir_size=64", "quantizer.kmeans_restarts=1",
            "quantizer.kmeans_max_iters=5", "data.batch_size=4", "data.eval_batch_size=4", "training.log_every=1",
            "--max_steps", "4", "--report_to", "none", "--no_progress_bar"]


TINY_HW = ["model.conv_channels=[8,8]", "model.conv_kernel_sizes=[[3,3],[3,3]]", "model.conv_strides=[[2,2],[2,2]]",
           "model.rnn_projection_size=8", "model.mixer_hidden_size=8", "model.pixelcnn_hidden_size=8",
           "model.pixelcnn_num_layers=2", "data.synth_size=16", "data.chunk_len=32"]


def test_handwriting_recipe_trains_on_the_stand_in_corpus(tmp_path):
    out, cache = tmp_path / "hw", tmp_path / "cache"
    assert run(["--config", CONFIGS / "handwriting" / "bn_reest_cblr.yaml", "--output_dir", out, *TINY_SEQ,
                *TINY_HW, f"data.cache_dir={cache}"]) == 0
    # the generated corpus and the datasets caches go to data.cache_dir, never into the uploadable run folder
    assert len(list((cache / "vq_hf_standin" / "synth_handwriting").glob("*.zip"))) == 1
    assert any(cache.rglob("*.arrow")) and not (out / "data").exists()
    res = json.loads((out / "results.json").read_text())
    m = res["metrics"]
    assert res["task"] == "handwriting" and "stand-in" in res["data_variant"]
    assert 0 < m["reconstruction_bits_per_dim"] <= 2.5  # 4 gray levels: 2 bits/dim is uniform guessing
    # Table II: uniform NELBO = BPD + log2(K) / (4 columns · 32 rows)
    assert m["uniform_nelbo_bits_per_dim"] == pytest.approx(m["reconstruction_bits_per_dim"] + 5 / 128)
    assert m["unigram_nelbo_bits_per_dim"] <= m["uniform_nelbo_bits_per_dim"] + 1e-9
    from vq_hf.models import VQVAEModel

    assert VQVAEModel.from_pretrained(out).config.architecture == "handwriting"
    assert (out / "curve_reconstruction_bits_per_dim.png").is_file()


@pytest.mark.skipif(shutil.which("festival") is None, reason="the stand-in speech corpus needs Festival")
def test_speech_recipe_trains_with_pooled_per(tmp_path):
    out = tmp_path / "sp"
    assert run(["--config", CONFIGS / "speech" / "bn_reest_cblr.yaml", "--output_dir", out, *TINY_SEQ,
                "model.conv_channels=[4,4]", "data.synth_size=12"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "speech" and res["split"] == "dev"  # WSJ's test_dev93 → the stand-in dev split
    # unit quality of the eval split is in results.json and the card's model-index
    for key in ("purity", "pnmi", "boundary_f1", "mapped_error_rate", "bitrate_bits_per_second", "used_units"):
        assert key in res["metrics"], key
    assert res["unit_quality"]["frames_per_unit"] == 3
    assert "type: pnmi" in (out / "README.md").read_text()
    counts = res["evaluation_counts"]
    assert res["metrics"]["phone_error_rate"] == pytest.approx(counts["phone_errors"] / counts["reference_phones"])
    from vq_hf.data.wsj import read_phones

    phones = read_phones(out / "phones.txt")  # load_wsj's `phone id` format, what `vq-hf units` reads back
    assert phones[:2] == ["<eps>", "<unk>"]
    from vq_hf.models import VQVAEForCTC

    model = VQVAEForCTC.from_pretrained(out)
    assert model.config.vocab_size == len(phones)
    # vq-hf eval reproduces the final PER of the run from the saved folder
    from vq_hf.evaluation import cli as eval_cli

    assert eval_cli(["--model", str(out), "--split", "dev", "--output", str(tmp_path / "e.json")]) == 0
    ev = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert ev["phone_error_rate"] == pytest.approx(res["metrics"]["phone_error_rate"])
    # the same with the stand-in corpus named explicitly and the recipe's WSJ split name; it was generated in
    # the datasets cache, not in the run folder
    assert not (out / "data").exists()
    # datasets reads HF_DATASETS_CACHE once, at its import: an earlier test in the session may have fixed it
    import datasets

    standins = pathlib.Path(datasets.config.HF_DATASETS_CACHE) / "vq_hf_standin"
    corpus = standins / "synth_speech.12utts.seed0"  # data.synth_size=12, the recipe's training.seed
    assert corpus.is_dir()
    assert eval_cli(["--model", str(out), "--dataset_name", str(corpus), "--split", "test_dev93",
                     "--output", str(tmp_path / "e2.json")]) == 0
    ev2 = json.loads((tmp_path / "e2.json").read_text())["metrics"]
    assert ev2["phone_error_rate"] == pytest.approx(res["metrics"]["phone_error_rate"])
    # vq-hf units reads the run folder's phones.txt and preprocessor_config.json
    from vq_hf.units import cli as units_cli

    assert units_cli(["--model", str(out), "--dataset_name", str(corpus), "--split", "dev",
                      "--output", str(tmp_path / "units"), "--no_progress", "--device", "cpu"]) == 0


def test_speech_no_bottleneck_baseline_runs(tmp_path):
    if shutil.which("festival") is None:
        pytest.skip("the stand-in speech corpus needs Festival")
    out = tmp_path / "nb"
    assert run(["--config", CONFIGS / "speech" / "no_bottleneck.yaml", "--output_dir", out, *TINY_SEQ,
                "model.conv_channels=[4,4]", "data.synth_size=12"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert "phone_error_rate" in res["metrics"] and "perplexity" not in res["metrics"]


def test_handwriting_resume_with_random_crops_is_exact(tmp_path):
    """Random 32-column training crops: a run resumed mid-epoch sees the same crops as an uninterrupted one."""
    from test_training_run import train_rows

    common = ["--config", CONFIGS / "handwriting" / "bn.yaml", *TINY_SEQ, *TINY_HW, "training.save_every=2",
              "schedule.name=constant", "training.eval_each_epoch=false"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run(["--output_dir", full, *common, "--max_steps", "5"]) == 0
    assert run(["--output_dir", part, *common, "--max_steps", "2"]) == 0
    assert run(["--output_dir", part, *common, "--max_steps", "5", "--resume_from_checkpoint", "latest"]) == 0
    a, b = train_rows(full), train_rows(part)
    assert sorted(a) == [1, 2, 3, 4, 5] and a == b
