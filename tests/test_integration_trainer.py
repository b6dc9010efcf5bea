"""training/run_vq.py drives the quantizer by optimizer steps, checked through what a run saves.

With gradient accumulation the quantizer's step counter, its re-estimation schedule and its EMA statistics
must count optimizer steps, not micro-batches (docs/quantization.md, "Gradient accumulation"). These tests
read the quantizer buffers out of the checkpoints (``checkpoints/step_N/model.safetensors``) and the finished
folder, so they hold for any implementation of the loop that keeps the CLI and its outputs.

Mutant these catch (planted and seen failing): the ``set_update_boundary(unwrapped, accelerator.sync_gradients)``
call deleted from training/run_vq.py — every micro-batch then advances the quantizer (step 10 after 5
optimizer steps) and re-estimates on the micro-batch schedule. ``test_resume_reproduces_the_uninterrupted_losses``
passes with it (both runs share the bug).
"""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from safetensors.torch import load_file

from test_training_run import TINY_CIFAR, run

# 24 train images, batch 4, accumulation 2: 6 micro-batches = 3 optimizer steps per epoch.
ACCUM = 2
COMMON = ["--report_to", "none", "--no_progress_bar", *TINY_CIFAR, f"training.gradient_accumulation_steps={ACCUM}",
          "training.eval_every=null", "training.keep_last=100"]
VECTORS_PER_MICRO_BATCH = 4 * 8 * 8  # batch 4 × the 8×8 latent grid, per codebook


def quantizer_state(path: pathlib.Path) -> dict[str, torch.Tensor]:
    """The quantizer's tensors of a saved model, keyed by their name inside the quantizer module."""
    sd = load_file(path)
    prefixes = {k[: -len("codebook")] for k in sd if k.endswith("codebook")}
    assert len(prefixes) == 1, f"expected one quantizer in {path}: {sorted(prefixes)}"
    (prefix,) = prefixes
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def test_schedule_counts_optimizer_steps_under_accumulation(tmp_path):
    """Warm-up 2, k-means every 2 steps for 4 steps: re-estimations at optimizer steps 2 and 4 (0-based
    positions), i.e. during the 3rd and 5th optimizer steps — read from a checkpoint after every step."""
    out = tmp_path / "run"
    assert run(["--output_dir", out, "--max_steps", 5, *COMMON, "training.save_every=1",
                "quantizer.reestimate_steps=4"]) == 0
    seen = []
    for step in range(1, 6):
        q = quantizer_state(out / "checkpoints" / f"step_{step}" / "model.safetensors")
        assert int(q["step"]) == step, f"checkpoint step_{step}: quantizer step {int(q['step'])}"
        assert int(q["micro_step"]) == 0
        seen.append(int(q["num_reestimations"]))
    assert seen == [0, 0, 1, 1, 2]
    final = quantizer_state(out / "model.safetensors")
    assert int(final["step"]) == 5 and int(final["num_reestimations"]) == 2
    res = json.loads((out / "results.json").read_text())
    assert res["training"]["steps"] == 5
    assert res["training"]["examples_seen"] == 5 * 4 * ACCUM


def test_ema_statistics_update_once_per_optimizer_step(tmp_path):
    """EMA (γ = 0.5) after warm-up 2 and 4 optimizer steps: 2 updates, each with both micro-batches'
    vectors, so Σ_k count_k = K·γ² + 2·256·(1 − γ²) per codebook (K = 16)."""
    out = tmp_path / "run"
    assert run(["--output_dir", out, "--max_steps", 4, *COMMON, "training.save_every=100",
                "quantizer.quantizer_type=ema", "quantizer.ema_decay=0.5"]) == 0
    q = quantizer_state(out / "model.safetensors")
    assert int(q["step"]) == 4
    gamma, updates, k = 0.5, 4 - 2, 16
    expected = k * gamma**updates + ACCUM * VECTORS_PER_MICRO_BATCH * (1 - gamma**updates)
    torch.testing.assert_close(q["ema_count"].sum(-1), torch.full((2,), expected), rtol=1e-5, atol=1e-3)
    assert not q["pending_count"].any()  # applied at the last micro-batch of the step, nothing left over


def _params(folder: pathlib.Path) -> dict[str, torch.Tensor]:
    """Trainable weights outside the quantizer (which k-means and BN statistics change without the optimizer)."""
    from vq_hf.models import VQVAEModel

    model = VQVAEModel.from_pretrained(folder)
    return {n: p.detach().clone() for n, p in model.named_parameters() if "quantizer" not in n}


@pytest.mark.parametrize("threshold, skipped", [(1e-12, True), (1e12, False)])
def test_skip_step_norm_skips_the_optimizer_step(tmp_path, threshold, skipped):
    """optimizer.skip_step_norm: a step whose gradient norm exceeds it is not applied, and is logged as
    skipped. With a threshold below every norm the weights after 1 and 2 steps are the same (the initial
    ones); with one above every norm the steps are applied."""
    common = [*COMMON, "training.save_every=100", "quantizer.warmup_steps=10", f"optimizer.skip_step_norm={threshold}"]
    folders = []
    for steps in (1, 2):
        out = tmp_path / f"s{steps}"
        assert run(["--output_dir", out, "--max_steps", steps, *common]) == 0
        folders.append(out)
    rows = [json.loads(x) for x in (folders[1] / "logs" / "history.jsonl").read_text().splitlines()]
    flags = [r["skipped_step"] for r in rows if r["kind"] == "train"]
    assert flags == [skipped] * 2
    a, b = _params(folders[0]), _params(folders[1])
    assert a.keys() == b.keys() and a
    same = all(torch.equal(a[n], b[n]) for n in a)
    assert same is skipped
