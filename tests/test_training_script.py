"""training/run_vq.py as a reader and a user meet it: its shape, its messages, its seeds and its run folder."""

from __future__ import annotations

import ast
import json
import pathlib

import pytest
import torch

from test_training_run import SCRIPT, TINY_CIFAR, run

BASE = ["--report_to", "none", "--no_progress_bar", *TINY_CIFAR]


# ------------------------------------------------------------------------------------------- shape
def _functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(SCRIPT.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_main_reads_top_to_bottom():
    """main ≤ 80 lines, no closures, no for/else; train_epoch says why it stopped."""
    funcs = _functions()
    main = funcs["main"]
    assert main.end_lineno - main.lineno + 1 <= 80
    for name, fn in funcs.items():
        nested = [n.name for n in ast.walk(fn) if isinstance(n, ast.FunctionDef) and n is not fn]
        assert not nested, f"{name} defines closures {nested}"
        assert not any(isinstance(n, (ast.For, ast.While)) and n.orelse for n in ast.walk(fn)), f"{name}: for/else"
        assert not any(isinstance(n, ast.Continue) for n in ast.walk(fn)), f"{name}: continue"
    assert ast.unparse(funcs["train_epoch"].returns) == "Stop"


def test_tasks_and_evaluation_do_not_import_each_other():
    src = pathlib.Path(__file__).resolve().parents[1] / "src" / "vq_hf"
    tree = ast.parse((src / "training_utils" / "tasks.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.endswith("evaluation") for m in imported), imported


# ------------------------------------------------------------------------------------------- messages
def test_a_mistyped_override_names_the_override_and_the_section_keys(tmp_path, capsys):
    assert run([*BASE, "--output_dir", tmp_path / "a", "--max_steps", 1, "quantizer.codebok_size=64"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "override 'quantizer.codebok_size=64'" in err and "quickstart.yaml" not in err
    assert "did you mean quantizer.codebook_size?" in err and "num_codebooks" in err and "commitment_cost" in err
    # a fixed section: its schema's keys
    assert run([*BASE, "--output_dir", tmp_path / "b", "--max_steps", 1, "training.keep_lst=3"]) == 2
    err = capsys.readouterr().err
    assert "override 'training.keep_lst=3'" in err and "keep_last" in err and "polyak_decay" in err
    assert run([*BASE, "--output_dir", tmp_path / "c", "--max_steps", 1, "trainig.seed=3"]) == 2
    assert "override 'trainig.seed=3': unknown section 'trainig'" in capsys.readouterr().err
    # a mistyped key in a recipe file is still reported against the file
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: cifar10\nschedule:\n  max_step: 3\n")
    assert run([*BASE, "--output_dir", tmp_path / "d", "--config", recipe]) == 2
    assert f"{recipe}: unknown key(s) ['schedule.max_step']" in capsys.readouterr().err


def test_mixed_precision_on_cpu_is_explained_or_refused(tmp_path, capsys):
    assert run([*BASE, "--output_dir", tmp_path / "fp16", "--max_steps", 1, "--mixed_precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fp16 needs a GPU" in err and "bf16" in err
    assert not (tmp_path / "fp16" / "checkpoints").exists()
    assert run([*BASE, "--output_dir", tmp_path / "bf16", "--max_steps", 1, "--mixed_precision", "bf16"]) == 0
    out = capsys.readouterr().out
    assert out.count("mixed precision bf16 on CPU") == 1 and "torch.autocast('cpu', torch.bfloat16)" in out


def test_max_epochs_that_cuts_max_steps_short_says_so_at_the_start(tmp_path, capsys):
    # 24 examples / batch 4 = 6 steps per epoch: 2 epochs end the run at step 12, before max_steps=50
    assert run([*BASE, "--output_dir", tmp_path / "r", "--max_steps", 50, "--max_epochs", 2,
                "training.eval_every=null", "training.save_every=100"]) == 0
    out = capsys.readouterr().out
    budget = next(line for line in out.splitlines() if line.startswith("budget:"))
    assert out.index("budget:") < out.index("finished")
    assert "stops at step 12 by max_epochs, before max_steps=50" in budget
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["training"]["stop_reason"] == "max_epochs" and res["training"]["steps"] == 12


# ------------------------------------------------------------------------------------------- run folder
def test_checkpoints_are_lean_and_the_folder_size_is_reported(tmp_path, capsys):
    out = tmp_path / "run"
    assert run([*BASE, "--output_dir", out, "--max_steps", 6, "training.eval_every=null"]) == 0
    stdout = capsys.readouterr().out
    # keep_last defaults to 1: only the newest (complete) checkpoint stays
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_6"]
    line = next(x for x in stdout.splitlines() if x.startswith(f"{out} holds"))
    assert "MB, of which checkpoints" in line and "training.keep_last=1" in line
    # the Polyak state holds the averaged trained parameters once, not a second copy of the model's buffers
    ckpt = out / "checkpoints" / "step_6"
    from safetensors.torch import load_file

    model_keys = set(load_file(ckpt / "model.safetensors"))
    polyak = torch.load(ckpt / "custom_checkpoint_0.pkl", weights_only=False)
    trained = {k.removeprefix("module.") for k in polyak if k != "n_averaged"}
    assert trained and trained < model_keys
    buffers = {k for k in model_keys if "reservoir" in k or "running_mean" in k}
    assert buffers and not trained & buffers


def test_tensorboard_scalars_and_code_usage_go_through_accelerate_trackers(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert run(["--no_progress_bar", *TINY_CIFAR, "--output_dir", out, "--max_steps", 3, "--report_to",
                "tensorboard"]) == 0
    acc = EventAccumulator(str(out / "logs" / "tensorboard"), size_guidance={"histograms": 0}).Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/perplexity/codebook_1", "eval_raw/uniform_nelbo_bits_per_dim",
            "eval_polyak/reconstruction_bits_per_dim"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]
    assert "eval_raw/code_usage/codebook_0" in tags["histograms"]


# ------------------------------------------------------------------------------------------- seeds
def test_one_seed_scheme_spawned_children():
    import numpy as np

    from vq_hf.training_utils.data_order import EpochSampler
    from vq_hf.training_utils.seeding import DATA_ORDER, MODEL_INIT, QUANTIZER, derive_seed

    # derive_seed(seed, k) is the k-th child that SeedSequence(seed).spawn() hands out
    child = np.random.SeedSequence(7).spawn(QUANTIZER + 1)[QUANTIZER]
    assert derive_seed(7, QUANTIZER) == int(child.generate_state(1)[0])
    assert len({derive_seed(7, k) for k in (DATA_ORDER, MODEL_INIT, QUANTIZER)}) == 3
    assert derive_seed(7, DATA_ORDER, 0) != derive_seed(8, DATA_ORDER, 0)
    s = EpochSampler(50, seed=7)
    s.set_epoch(3)
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(derive_seed(7, DATA_ORDER, 3))).tolist()
    assert list(s) == expected


def _quantizer_seed(folder) -> int:
    config = json.loads((folder / "config.json").read_text())
    return config["quantizer"]["seed"] if isinstance(config.get("quantizer"), dict) else config["seed"]


def test_the_run_seed_sets_init_and_quantizer_seed(tmp_path):
    from vq_hf.training_utils.seeding import QUANTIZER, derive_seed

    for seed in (0, 1):
        assert run([*BASE, "--output_dir", tmp_path / f"s{seed}", "--max_steps", 1, "--seed", seed,
                    "training.eval_every=null"]) == 0
    assert _quantizer_seed(tmp_path / "s1") == derive_seed(1, QUANTIZER)
    a = json.loads((tmp_path / "s0" / "logs" / "history.jsonl").read_text().splitlines()[0])["loss"]
    b = json.loads((tmp_path / "s1" / "logs" / "history.jsonl").read_text().splitlines()[0])["loss"]
    assert a != b
    # an explicit quantizer.seed in the recipe wins
    assert run([*BASE, "--output_dir", tmp_path / "q", "--max_steps", 1, "quantizer.seed=5",
                "training.eval_every=null"]) == 0
    assert _quantizer_seed(tmp_path / "q") == 5
