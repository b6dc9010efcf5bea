"""End-to-end runs of training/run_vq.py in-process on CPU: a complete folder, exact resume, bad inputs."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "run_vq.py"

# A tiny CIFAR-10 model: seconds per run on 2 shared cores.
TINY_CIFAR = [
    "model.hidden_size=8", "model.num_residual_layers=1", "model.latent_dim=32",
    "quantizer.num_codebooks=2", "quantizer.codebook_size=16", "quantizer.reservoir_size=64",
    "quantizer.warmup_steps=2", "quantizer.reestimate_every=2", "quantizer.reestimate_steps=2",
    "quantizer.kmeans_max_iters=5",
    "data.batch_size=4", "data.eval_batch_size=4", "data.max_train_samples=24", "data.max_eval_samples=8",
    "training.log_every=1", "training.eval_every=3", "training.save_every=2",
]


def _load_script():
    spec = importlib.util.spec_from_file_location("run_vq", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(argv: list[str]) -> int:
    """main(argv) with accelerate's process singletons reset (hf-conventions §7.2)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    try:
        return _load_script().main([str(a) for a in argv])
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def train_rows(out: pathlib.Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "logs" / "history.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny CIFAR-10 run (4 steps) shared by the tests that inspect a finished folder."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert run(["--output_dir", out, "--max_steps", 4, "--report_to", "none", "--no_progress_bar", *TINY_CIFAR]) == 0
    return out


def test_quickstart_tiny_run_leaves_a_complete_folder(tiny_run, tmp_path):
    out = tiny_run

    from vq_hf.cards import read_results
    from vq_hf.models import VQVAEModel

    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "results.json", "README.md",
                 "training_config.json", "curve_training_loss.png", "curve_uniform_nelbo_bits_per_dim.png",
                 "polyak/model.safetensors", "checkpoints/step_4/meta.json"):
        assert (out / name).is_file(), name
    model = VQVAEModel.from_pretrained(out)
    assert model.config.num_codebooks == 2 and model.config.quantizer["quantizer_type"] == "reestimating"

    res = read_results(out)
    assert res["task"] == "cifar10" and res["data_variant"].startswith("JPEG-CIFAR-10")
    assert res["training"]["steps"] == 4 and res["training"]["stop_reason"] == "max_steps"
    m = res["metrics"]
    assert m["uniform_nelbo_bits_per_dim"] == pytest.approx(
        m["reconstruction_bits_per_dim"] + m["uniform_rate_bits_per_dim"])
    # 8 × 8 positions × 2 codebooks × log2(16) bits over 3072 dims
    assert m["uniform_rate_bits_per_dim"] == pytest.approx(64 * 2 * 4 / 3072)
    assert len(m["perplexity"]) == 2 and all(1 <= p <= 16 for p in m["perplexity"])
    assert "metrics_polyak" in res and res["polyak_decay"] == 0.98  # the quickstart recipe
    assert res["evaluation_counts"]["num_examples"] == 8

    # the model card's model-index numbers are results.json's
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    by_type = {e.metric_type: e.metric_value for e in card.data.eval_results}
    assert by_type["uniform_nelbo_bits_per_dim"] == pytest.approx(m["uniform_nelbo_bits_per_dim"])
    assert by_type["reconstruction_bits_per_dim"] == pytest.approx(m["reconstruction_bits_per_dim"])

    # the finished folder's weights evaluate to the reported numbers
    from vq_hf.evaluation import cli as eval_cli

    assert eval_cli(["--model", str(out), "--max_samples", "8", "--batch_size", "3",
                     "--output", str(tmp_path / "eval.json")]) == 0
    ev = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert ev["reconstruction_bits_per_dim"] == pytest.approx(m["reconstruction_bits_per_dim"], rel=1e-5)
    assert ev["perplexity"] == pytest.approx(m["perplexity"], rel=1e-5)


def test_resume_reproduces_the_uninterrupted_losses(tmp_path):
    # accumulation 2 over 16 examples of batch 4: 2 optimizer steps per epoch, so the resume crosses an epoch
    # boundary; the quantizer re-estimates (k-means) at step 2, the checkpoint the second run resumes from
    common = ["--report_to", "none", "--no_progress_bar", *TINY_CIFAR, "training.gradient_accumulation_steps=2",
              "data.max_train_samples=16", "training.eval_every=null"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run(["--output_dir", full, "--max_steps", 5, *common]) == 0
    assert run(["--output_dir", part, "--max_steps", 2, *common]) == 0
    assert run(["--output_dir", part, "--max_steps", 5, "--resume_from_checkpoint", part / "checkpoints" / "step_2",
                *common]) == 0
    a, b = train_rows(full), train_rows(part)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5]
    for step in a:
        assert a[step] == b[step], (step, a[step], b[step])
    # weights, quantizer buffers and the Polyak average end identical
    from safetensors.torch import load_file

    for name in ("model.safetensors", "polyak/model.safetensors"):
        sa, sb = load_file(full / name), load_file(part / name)
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)
    ra, rb = json.loads((full / "results.json").read_text()), json.loads((part / "results.json").read_text())
    assert ra["metrics"] == rb["metrics"] and ra["metrics_polyak"] == rb["metrics_polyak"]


def test_existing_run_is_refused_and_checkpoint_of_another_config(tiny_run, capsys):
    base = ["--output_dir", tiny_run, "--max_steps", 6, "--report_to", "none", "--no_progress_bar", *TINY_CIFAR]
    assert run(base) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite_output_dir" in err
    # a different quantizer cannot resume this run's checkpoint
    assert run([*base, "quantizer.codebook_size=32", "--resume_from_checkpoint", "latest"]) == 2
    err = capsys.readouterr().err
    assert "different run configuration" in err and "quantizer.codebook_size: checkpoint 16 vs now 32" in err


def test_bad_inputs_fail_before_training(tmp_path, capsys):
    base = ["--report_to", "none", "--no_progress_bar", "--max_steps", 1, *TINY_CIFAR]
    assert run([*base, "--output_dir", tmp_path / "a", "optimizer.lerning_rate=1"]) == 2
    assert "optimizer.lerning_rate" in capsys.readouterr().err
    assert run([*base, "--output_dir", tmp_path / "b", "quantizer.quantizer_type=magic"]) == 2
    assert "magic" in capsys.readouterr().err
    assert run([*base, "--output_dir", tmp_path / "c", "model.hidden_sise=3"]) == 2
    assert "model.hidden_sise" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run([*base, "--output_dir", blocker / "sub"]) == 2
    assert "cannot write" in capsys.readouterr().err
    # a parquet dataset without the CIFAR columns
    import datasets

    bad = tmp_path / "bad_cifar"
    bad.mkdir()
    datasets.Dataset.from_dict({"picture": [b"x"] * 4, "label": [0] * 4}).to_parquet(str(bad / "train-0.parquet"))
    datasets.Dataset.from_dict({"picture": [b"x"] * 4, "label": [0] * 4}).to_parquet(str(bad / "test-0.parquet"))
    assert run([*base, "--output_dir", tmp_path / "d", "--dataset_name", bad]) == 2
    err = capsys.readouterr().err
    assert "'img'" in err and "column" in err
    assert not (tmp_path / "d" / "checkpoints").exists() or not any((tmp_path / "d" / "checkpoints").iterdir())
    assert run([*base, "--output_dir", tmp_path / "e", "--resume_from_checkpoint", "latest"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_non_finite_loss_stops_naming_the_step(tmp_path, capsys, monkeypatch):
    from vq_hf.models import VQVAEImageModel  # the quickstart's family model

    original = VQVAEImageModel.forward
    calls = {"n": 0}

    def poisoned(self, *a, **k):
        out = original(self, *a, **k)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:  # the third optimizer step
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(VQVAEImageModel, "forward", poisoned)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run_config.json").write_text("{}")  # an older run: replaced because of --overwrite_output_dir
    rc = run(["--output_dir", out, "--max_steps", 5, "--report_to", "none", "--no_progress_bar", *TINY_CIFAR,
              "--overwrite_output_dir"])
    assert rc == 3
    err = capsys.readouterr().err
    assert "non-finite training loss" in err and "step 3" in err and "step_2" in err
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step_2"]
    assert not (out / "results.json").exists()
    assert json.loads((out / "run_config.json").read_text())["recipe"]["task"] == "cifar10"


def test_bf16_autocast_and_wall_clock_budget(tmp_path):
    """bf16 mixed precision trains an EMA quantizer; --max_minutes stops at a step boundary with a full folder."""
    out = tmp_path / "bf16"
    assert run(["--output_dir", out, "--max_minutes", 0.0005, "--mixed_precision", "bf16", "--report_to", "none",
                "--no_progress_bar", *TINY_CIFAR, "schedule.max_steps=null", "quantizer.quantizer_type=ema"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["training"]["stop_reason"] == "max_minutes" and res["training"]["mixed_precision"] == "bf16"
    assert 1 <= res["training"]["steps"] < 20
    assert math.isfinite(res["metrics"]["uniform_nelbo_bits_per_dim"])
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")
    assert all(t.dtype in (torch.float32, torch.int64, torch.bool) for t in weights.values())


def test_push_to_hub_publishes_the_finished_folder(tmp_path, monkeypatch):
    import vq_hf.cards

    calls = []
    monkeypatch.setattr(vq_hf.cards, "publish", lambda folder, repo_id, **kw: calls.append((folder, repo_id, kw)))
    out = tmp_path / "pub"
    assert run(["--output_dir", out, "--max_steps", 1, "--report_to", "none", "--no_progress_bar", *TINY_CIFAR,
                "--push_to_hub", "--hub_model_id", "someone/tiny-vqvae"]) == 0
    (folder, repo_id, kw), = calls
    assert pathlib.Path(folder) == out and repo_id == "someone/tiny-vqvae"
    assert "checkpoints/*" in kw["ignore_patterns"] and "data/*" in kw["ignore_patterns"]
