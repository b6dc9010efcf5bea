"""Recipes, overrides, checkpoint folders, Polyak averaging, data order and plots (no training)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
import torch
from torch import nn

from vq_hf.training_utils import checkpoints as ckpt
from vq_hf.training_utils.config import ConfigError, identity, identity_diff, load_recipe, parse_override
from vq_hf.training_utils.data_order import EpochSampler, IndexedDataset, SeededCollate
from vq_hf.training_utils.polyak import AverageState, averaged_model, polyak_average

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "training" / "configs"
VARIANTS = ("vanilla", "bn", "bn_cblr", "bn_ema", "bn_reest", "bn_reest_cblr")


# ------------------------------------------------------------------------------------------- recipes
def test_every_experiment_has_a_valid_recipe():
    from vq_hf.training_utils.tasks import get_task

    expected = [f"{task}/{v}.yaml" for task in ("cifar10", "cifar10_5x1024", "handwriting", "speech")
                for v in VARIANTS] + ["speech/no_bottleneck.yaml", "quickstart.yaml"]
    for rel in expected:
        path = CONFIGS / rel
        assert path.is_file(), rel
        recipe = load_recipe(path)
        config = get_task(recipe["task"]).build_config(recipe, source=str(path))  # validates model/quantizer
        variant = path.stem
        if variant == "no_bottleneck":
            assert not config.use_bottleneck
            continue
        q = config.quantizer_options()
        # the paper's BN before quantization: the quantizer's own (CIFAR), before the projection (sequences)
        bn = q["batch_norm"] if config.architecture == "cifar10" else config.batch_norm
        assert bn == (variant != "vanilla"), rel
        assert q["quantizer_type"] == {"bn_ema": "ema", "bn_reest": "reestimating",
                                       "bn_reest_cblr": "reestimating"}.get(variant, q["quantizer_type"])
        if variant.endswith("cblr"):
            assert q["codebook_lr_multiplier"] == 10.0, rel
        if path.parent.name == "cifar10_5x1024":
            assert (config.num_codebooks, config.codebook_size) == (5, 1024)
    # reference hyper-parameters (reference-implementation.md §4)
    cifar = load_recipe(CONFIGS / "cifar10" / "bn_reest.yaml")
    assert cifar["optimizer"]["learning_rate"] == 5e-4 and cifar["data"]["batch_size"] == 128
    assert cifar["training"]["polyak_decay"] == 0.998
    assert (cifar["quantizer"]["warmup_steps"], cifar["quantizer"]["reestimate_steps"]) == (2, 99)
    speech = load_recipe(CONFIGS / "speech" / "bn.yaml")
    assert speech["schedule"]["milestones"][0] == 32 and speech["optimizer"]["skip_step_norm"] == 10000
    hw = load_recipe(CONFIGS / "handwriting" / "bn_cblr.yaml")
    assert hw["optimizer"]["max_grad_norm"] == 10 and hw["schedule"]["name"] == "plateau"


def test_quantizer_section_takes_every_vector_quantizer_option():
    from vq_hf.training_utils.tasks import get_task

    recipe = load_recipe(CONFIGS / "quickstart.yaml", ["quantizer.check_finite=false", "quantizer.dead_code_window=7"])
    config = get_task(recipe["task"]).build_config(recipe)
    # the section is the config's nested quantizer dict, as written (seed from training.seed)
    assert config.quantizer == {**recipe["quantizer"], "seed": recipe["training"]["seed"]}
    assert config.quantizer["check_finite"] is False and config.quantizer["dead_code_window"] == 7
    with pytest.raises(ConfigError, match="unknown key 'model.check_finite'"):
        get_task(recipe["task"]).build_config(load_recipe(CONFIGS / "quickstart.yaml", ["model.check_finite=false"]))
    with pytest.raises(ConfigError, match=r"quickstart.yaml: invalid model/quantizer settings: .*ema_decay must be > 0"):
        get_task(recipe["task"]).build_config(load_recipe(CONFIGS / "quickstart.yaml", ["quantizer.ema_decay=0"]),
                                              source="quickstart.yaml")
    with pytest.raises(ConfigError, match=r"unknown VectorQuantizer option\(s\) \['codebook_sise'\]"):
        get_task(recipe["task"]).build_config(load_recipe(CONFIGS / "quickstart.yaml", ["quantizer.codebook_sise=8"]))


def test_overrides_and_errors_name_the_key(tmp_path):
    r = load_recipe(CONFIGS / "quickstart.yaml", ["optimizer.learning_rate=2e-3", "schedule.max_steps=7",
                                                 "optimizer.betas=[0.5, 0.9]", "schedule.max_minutes=null"])
    assert r["optimizer"]["learning_rate"] == 2e-3 and r["schedule"]["max_steps"] == 7
    assert r["optimizer"]["betas"] == [0.5, 0.9] and r["schedule"]["max_minutes"] is None
    assert parse_override("quantizer.codebook_size=512") == (["quantizer", "codebook_size"], 512)
    with pytest.raises(ConfigError, match="optimizer.lr"):
        load_recipe(CONFIGS / "quickstart.yaml", ["optimizer.lr=1"])
    with pytest.raises(ConfigError, match=r"training.mixed_precision: 'fp8' is not one of"):
        load_recipe(CONFIGS / "quickstart.yaml", ["training.mixed_precision=fp8"])
    with pytest.raises(ConfigError, match=r"schedule.max_steps: expected integer"):
        load_recipe(CONFIGS / "quickstart.yaml", ["schedule.max_steps=many"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_recipe(CONFIGS / "quickstart.yaml", ["max_steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: cifar10\nmodle: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown top-level key\(s\) \['modle'\]"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_recipe(tmp_path / "missing.yaml")
    a = identity(load_recipe(CONFIGS / "quickstart.yaml"))
    b = identity(load_recipe(CONFIGS / "quickstart.yaml", ["quantizer.codebook_size=64", "schedule.max_steps=9"]))
    assert identity_diff(a, b) == ["quantizer.codebook_size: checkpoint 128 vs now 64"]


def test_help_documents_every_flag(capsys):
    spec = importlib.util.spec_from_file_location("run_vq", REPO / "training" / "run_vq.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(SystemExit):
        mod.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--config", "--dataset_name", "--output_dir", "--max_steps", "--max_minutes", "--max_epochs",
                 "--resume_from_checkpoint", "--mixed_precision", "--overwrite_output_dir", "--push_to_hub",
                 "--gradient_accumulation_steps", "--seed", "section.key=value"):
        assert flag in text, flag


# ------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_folders_are_atomic_pruned_and_resolved(tmp_path):
    for step in (2, 4, 6):
        tmp = ckpt.temp_path(tmp_path, step)
        tmp.mkdir(parents=True)
        (tmp / "model.safetensors").write_bytes(b"x")
        ckpt.write_meta(tmp, {"step": step})
        ckpt.commit(tmp, ckpt.final_path(tmp_path, step))
        ckpt.prune(tmp_path, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 6]
    # a run killed while writing step 8 leaves only a temporary folder: latest is still step 6
    ckpt.temp_path(tmp_path, 8).mkdir()
    assert ckpt.resolve_checkpoint("latest", tmp_path).name == "step_6"
    assert ckpt.clean_partial(tmp_path) == [ckpt.temp_path(tmp_path, 8)]
    # a folder without meta.json is not a checkpoint
    (tmp_path / "checkpoints" / "step_9").mkdir()
    assert ckpt.resolve_checkpoint("latest", tmp_path).name == "step_6"
    with pytest.raises(ckpt.CheckpointError, match="meta.json is missing"):
        ckpt.resolve_checkpoint(str(tmp_path / "checkpoints" / "step_9"), tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="no complete checkpoint"):
        ckpt.resolve_checkpoint("latest", tmp_path / "elsewhere")


# ------------------------------------------------------------------------------------------- Polyak
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)
        self.register_buffer("counter", torch.zeros((), dtype=torch.long))


def test_polyak_averages_parameters_and_copies_live_buffers():
    net = _Net()
    w0 = net.lin.weight.detach().clone()
    avg = polyak_average(net, decay=0.5)  # starts from the initial weights (the reference behaviour)
    with torch.no_grad():
        net.lin.weight.add_(2.0)
        net.counter.fill_(7)
        net.bn.running_mean.fill_(3.0)
    avg.update_parameters(net)
    averaged = averaged_model(avg, net)
    assert torch.allclose(averaged.lin.weight, w0 + 1.0)  # 0.5·w0 + 0.5·(w0 + 2)
    assert int(averaged.counter) == 7 and torch.equal(averaged.bn.running_mean, net.bn.running_mean)
    assert torch.allclose(net.lin.weight, w0 + 2.0)  # the live model is untouched

    # training.polyak_debias: the average starts at the first visited weights, not at the initialisation
    fresh = _Net()
    late = polyak_average(fresh, decay=0.998, start_from_init=False)
    with torch.no_grad():
        fresh.lin.weight.add_(1.0)
    late.update_parameters(fresh)
    assert torch.equal(averaged_model(late, fresh).lin.weight, fresh.lin.weight)

    # the checkpointed state: averaged trained parameters and the count, no second copy of the buffers
    state = AverageState(avg, net).state_dict()
    assert set(state) == {"module.lin.weight", "module.lin.bias", "module.bn.weight", "module.bn.bias", "n_averaged"}
    other_net = _Net()
    other = polyak_average(other_net, decay=0.5)
    AverageState(other, other_net).load_state_dict(state)
    assert int(other.n_averaged) == 2 and torch.equal(other.module.lin.weight, avg.module.lin.weight)
    with pytest.raises(ValueError, match="does not match the model"):
        AverageState(other, other_net).load_state_dict({"n_averaged": state["n_averaged"]})


def test_polyak_leaves_an_ema_codebook_live():
    """An EMA codebook is already an average (requires_grad=False): the averaged model must use the live one."""
    from vq_hf import VectorQuantizer

    vq = VectorQuantizer(4, 8, quantizer_type="ema", ema_decay=0.5, seed=0)
    avg = polyak_average(vq, decay=0.9)
    assert "module.codebook" not in AverageState(avg, vq).state_dict()
    vq.train()
    for _ in range(3):
        vq(torch.randn(32, 4))
        avg.update_parameters(vq)
    assert torch.equal(averaged_model(avg, vq).codebook, vq.codebook)


# ------------------------------------------------------------------------------------------- data order
def test_epoch_sampler_and_seeded_collate_are_functions_of_seed_epoch_and_indices():
    s = EpochSampler(10, seed=3)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(2)
    assert list(s) != e1 and sorted(list(s)) == list(range(10))
    s.set_epoch(1)
    assert list(s) == e1

    from vq_hf.data.collators import LineImageCollator

    lines = [{"columns": torch.randint(0, 255, (40, 32), dtype=torch.uint8)} for _ in range(3)]
    ds = IndexedDataset(lines)
    coll = SeededCollate(LineImageCollator(crop_width=8, seed=0), seed=0, sampler=s)
    first = coll([ds[0], ds[1]])["pixel_values"]
    torch.manual_seed(123)  # the global RNG does not matter
    again = coll([ds[0], ds[1]])["pixel_values"]
    assert torch.equal(first, again)
    s.set_epoch(5)
    assert not torch.equal(coll([ds[0], ds[1]])["pixel_values"], first)


def test_plots_are_written_from_the_history(tmp_path):
    from vq_hf.training_utils.plots import plot_history
    from vq_hf.training_utils.tracking import History

    h = History(tmp_path / "h.jsonl")
    for step in (1, 2, 3, 4):
        h.append({"kind": "train", "step": step, "loss": 1.0 / step, "running_perplexity": [3.0, 4.0],
                  "norm_ratio": [0.5, 0.7]})
    for step in (2, 4):
        for w in ("raw", "polyak"):
            h.append({"kind": "eval", "step": step, "weights": w, "per": 0.5, "perplexity": [2.0, 3.0]})
    with h.path.open("a") as f:
        f.write('{"kind": "train", "step": 5, "lo')  # a row torn by SIGKILL
    assert h.truncate_after(2) == 4
    assert max(r["step"] for r in h.read()) == 2
    written = plot_history(h.read(), tmp_path, "per")
    names = sorted(p.name for p in written)
    assert names == ["curve_norm_ratio.png", "curve_per.png", "curve_perplexity.png", "curve_training_loss.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_vq_hf_eval_rejects_a_folder_without_a_model(tmp_path, capsys):
    from vq_hf.cli import main as vq_hf_main

    assert vq_hf_main(["eval", "--model", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_speech_chunks_do_not_depend_on_earlier_batches():
    """SpeechCollator's random 64-frame chunks are re-seeded per batch, so a resumed run crops identically."""
    from vq_hf.data import SpeechCollator

    items = [{"input_features": torch.randn(100 + 7 * i, 243), "phone_ids": [2, 3, 4], "phone_starts": [0, 40, 80],
              "phone_ends": [40, 80, 100 + 7 * i], "__index__": i} for i in range(4)]
    s = EpochSampler(4, seed=0)
    coll = SeededCollate(SpeechCollator(chunk_frames=16, seed=0), seed=0, sampler=s)
    first = coll([dict(it) for it in items[:2]])["input_features"]
    coll([dict(it) for it in items[2:]])  # another batch in between (or the prefetched one)
    again = coll([dict(it) for it in items[:2]])["input_features"]
    assert torch.equal(first, again)


def test_progress_perplexity_is_named_for_what_it_shows():
    from vq_hf.training_utils.tasks import get_task, perplexity_postfix

    assert perplexity_postfix([37.5]) == {"pplx": "37.5"}
    assert perplexity_postfix(12.0) == {"pplx": "12.0"}
    assert perplexity_postfix([30.0, 20.5]) == {"pplx_sum": "50.5"}  # Σ over codebooks, named as a sum
    assert perplexity_postfix(None) == {}
    summary = get_task("cifar10").summary({"raw": {"uniform_nelbo_bits_per_dim": 4.5, "perplexity": [30.0, 20.5]}})
    assert summary == "raw: uniform_nelbo_bits_per_dim=4.5000 pplx_sum=50.5"
