#!/usr/bin/env python
"""Train a VQ-VAE of "Robust Training of Vector Quantized Bottleneck Models" with 🤗 Accelerate.

    accelerate launch training/run_vq.py                     # quickstart: embedded CIFAR-10 sample, CPU, minutes
    accelerate launch training/run_vq.py --config training/configs/cifar10/bn_reest_cblr.yaml \\
        --dataset_name uoft-cs/cifar10 --output_dir runs/x --max_steps 50000 [--max_minutes 30] \\
        [--resume_from_checkpoint runs/x/checkpoints/step_40000 | latest] [--mixed_precision bf16] \\
        [section.key=value ...]

Read `main` first: recipe → output folder → Accelerator (trackers, project folders) → data → model, optimizer
(codebooks in their own LR group), Polyak average → resume → `train` (epochs of `train_epoch`, each returning
why it stopped) → final evaluation → the finished folder (weights, config, processor, results.json, plots,
model card) → optional push to the Hub. See docs/training.md.
"""

import argparse
import dataclasses
import datetime
import enum
import json
import math
import pathlib
import shutil
import sys
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "quickstart.yaml"
DEFAULT_OUTPUT_DIR = "runs/quickstart"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="run_vq.py",
        description=(
            "Train a VQ-VAE (Łańcucki et al., 2020) with Accelerate. Every recipe key can be overridden with "
            "section.key=value (YAML values), e.g. optimizer.learning_rate=1e-3 quantizer.codebook_size=512. "
            "Sections: task, description, model, quantizer, optimizer, schedule, data, training (docs/training.md)."
        ),
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="recipe YAML (training/configs/<task>/<variant>.yaml); default: training/configs/quickstart.yaml, "
                        "the CIFAR-10 quickstart on the embedded sample")
    p.add_argument("--output_dir", default=None,
                   help=f"run folder: checkpoints/, logs/, the finished model (default {DEFAULT_OUTPUT_DIR}, or "
                        "runs/<config folder>/<config name> for another --config)")
    p.add_argument("--overwrite_output_dir", action="store_true",
                   help="delete an existing run in --output_dir instead of refusing to start")
    p.add_argument("--dataset_name", default=None,
                   help="= data.dataset_name: hub id or local folder (CIFAR-10 parquet, ScribbleLens zip/folder, "
                        "Kaldi data dir); unset = the recipe's, null there = the offline default of the task")
    p.add_argument("--max_steps", type=int, default=None,
                   help="= schedule.max_steps: optimizer steps to train. Flags left unset keep the recipe's value")
    p.add_argument("--max_epochs", type=int, default=None, help="= schedule.max_epochs: passes over the train split")
    p.add_argument("--max_minutes", type=float, default=None,
                   help="= schedule.max_minutes: wall-clock training budget, counted over resumed segments too")
    p.add_argument("--resume_from_checkpoint", default=None,
                   help="a checkpoint folder (<output_dir>/checkpoints/step_N) or 'latest' (the newest complete "
                        "one of --output_dir); continues with identical losses to an uninterrupted run")
    p.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None,
                   help="= training.mixed_precision; the quantizer always computes distances and statistics in fp32")
    p.add_argument("--gradient_accumulation_steps", type=int, default=None,
                   help="= training.gradient_accumulation_steps")
    p.add_argument("--seed", type=int, default=None, help="= training.seed (data order, init, quantizer RNG)")
    p.add_argument("--eval_every", type=int, default=None, help="= training.eval_every (optimizer steps)")
    p.add_argument("--save_every", type=int, default=None, help="= training.save_every (optimizer steps)")
    p.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard",
                   help="tensorboard (default) writes <output_dir>/logs/tensorboard; the JSON-lines history "
                        "<output_dir>/logs/history.jsonl is always kept")
    p.add_argument("--no_progress_bar", action="store_true", help="disable the tqdm progress bar")
    p.add_argument("--push_to_hub", action="store_true",
                   help="upload the finished folder with vq_hf.cards.publish (needs network and a token)")
    p.add_argument("--hub_model_id", default=None, help="repository id for --push_to_hub (user/name)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="recipe overrides, applied after the file and before the flags above")
    args = p.parse_intermixed_args(argv)
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push_to_hub needs --hub_model_id user/name")
    return args


def flag_overrides(args) -> list[str]:
    """Command-line flags are shorthands for recipe keys; they win over the file and key=value overrides."""
    pairs = [("data.dataset_name", args.dataset_name), ("schedule.max_steps", args.max_steps),
             ("schedule.max_epochs", args.max_epochs), ("schedule.max_minutes", args.max_minutes),
             ("training.mixed_precision", args.mixed_precision),
             ("training.gradient_accumulation_steps", args.gradient_accumulation_steps),
             ("training.seed", args.seed), ("training.eval_every", args.eval_every),
             ("training.save_every", args.save_every)]
    return [f"{k}={json.dumps(v)}" for k, v in pairs if v is not None]



class RunError(Exception):
    """A one-line reason to stop (printed by the main process as ``run_vq.py: ...``) and the exit code."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class Stop(str, enum.Enum):
    """Why `train_epoch` returned; all but EPOCH_END end the run (the value goes into results.json)."""

    EPOCH_END = "epoch_end"
    MAX_STEPS = "max_steps"
    MAX_EPOCHS = "max_epochs"
    MAX_MINUTES = "max_minutes"
    NON_FINITE = "non_finite_loss"


@dataclasses.dataclass
class TrainState:
    """Where the run is: what a checkpoint's meta.json stores, plus the running loss of the current log window."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    elapsed_before: float = 0.0  # training seconds of earlier (resumed) segments
    started: float = dataclasses.field(default_factory=time.monotonic)
    last_checkpoint: pathlib.Path | None = None
    saved_step: int | None = None  # the step of last_checkpoint
    loss_sum: float = 0.0
    loss_count: int = 0
    bad_loss: float | None = None  # the non-finite loss that stopped the run

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started


@dataclasses.dataclass
class Run:
    """What `main` composes once and the loop uses: the recipe, the accelerate objects, data and model."""

    args: argparse.Namespace
    recipe: dict
    task: object
    model_config: object
    config_name: str
    identity: dict
    out_dir: pathlib.Path
    accelerator: object
    data: object = None
    model: torch.nn.Module = None  # as prepared by accelerate (DDP-wrapped on several processes)
    unwrapped: torch.nn.Module = None
    optimizer: torch.optim.Optimizer = None
    scheduler: object = None
    sampler: object = None
    train_dl: object = None
    eval_dl: object = None
    averaged: object = None  # torch.optim.swa_utils.AveragedModel, or None without Polyak averaging
    history: object = None
    bar: object = None

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


# ---------------------------------------------------------------------------------------------- set-up
def default_output_dir(config: str) -> str:
    cfg = pathlib.Path(config)
    return DEFAULT_OUTPUT_DIR if cfg.resolve() == DEFAULT_CONFIG.resolve() else f"runs/{cfg.parent.name}/{cfg.stem}"


def recorded_config_name(config: str) -> str:
    """The recipe path for results.json and the card: repository-relative when it is one of ours."""
    try:
        return str(pathlib.Path(config).resolve().relative_to(HERE.parent))
    except ValueError:
        return str(config)


def read_recipe(args) -> tuple[dict, object]:
    """The validated recipe and its task; an unknown override key is reported against the override."""
    from vq_hf.training_utils import tasks
    from vq_hf.training_utils.config import ConfigError, load_recipe

    try:
        recipe = load_recipe(args.config, list(args.overrides) + flag_overrides(args), open_keys=tasks.open_keys)
        task = tasks.get_task(recipe["task"])
    except (ConfigError, ValueError) as e:
        raise RunError(str(e)) from None
    s = recipe["schedule"]
    if not (s["max_steps"] or s["max_epochs"] or s["max_minutes"]):
        raise RunError("no training budget: set --max_steps, --max_epochs or --max_minutes "
                       "(schedule.max_steps / max_epochs / max_minutes)")
    return recipe, task


def build_model_config(task, recipe: dict, source: str):
    """The model config of the recipe; the quantizer's generator seed is a child of the run seed."""
    from vq_hf.training_utils.config import ConfigError
    from vq_hf.training_utils.seeding import QUANTIZER, derive_seed

    seeded = {**recipe, "quantizer": {"seed": derive_seed(recipe["training"]["seed"], QUANTIZER),
                                      **recipe["quantizer"]}}
    try:
        return task.build_config(seeded, source=source)
    except (ConfigError, ValueError) as e:
        raise RunError(str(e)) from None


def needs_unused_parameters(model_config) -> bool:
    """During the warm-up pass-through the codebook gets no gradient: DDP must then tolerate unused parameters."""
    quantizer = getattr(model_config, "quantizer", None)
    warmup = (quantizer or {}).get("warmup_steps") if isinstance(quantizer, dict) else None
    warmup = getattr(model_config, "warmup_steps", 0) if warmup is None else warmup
    return bool(getattr(model_config, "use_bottleneck", True) and warmup)


def make_accelerator(args, recipe: dict, model_config, out_dir: pathlib.Path):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration

    t = recipe["training"]
    accelerator = Accelerator(
        mixed_precision=t["mixed_precision"],
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "logs")),
        # The quantizer all-reduces its own statistics: DDP must not overwrite rank buffers with rank 0's.
        kwargs_handlers=[DistributedDataParallelKwargs(
            broadcast_buffers=False, find_unused_parameters=needs_unused_parameters(model_config))],
    )
    check_mixed_precision(accelerator, t["mixed_precision"])
    return accelerator


def check_mixed_precision(accelerator, mixed_precision: str) -> None:
    """Say once what mixed precision does on a CPU; refuse fp16 there (accelerate would silently train in fp32)."""
    if accelerator.device.type != "cpu" or mixed_precision == "no":
        return
    if mixed_precision == "fp16":
        raise RunError("--mixed_precision fp16 needs a GPU: on a CPU accelerate applies no fp16 autocast, so the run "
                       "would silently train in fp32; use --mixed_precision bf16 (bf16 autocast on CPU) or no")
    if accelerator.is_main_process:
        print("mixed precision bf16 on CPU: forward passes run under torch.autocast('cpu', torch.bfloat16) "
              "(matmuls and convolutions in bf16); weights, optimizer state and the quantizer's distances and "
              "statistics stay fp32")


def holds_something(folder: pathlib.Path) -> bool:
    """Anything but a generated stand-in corpus (data/) or an empty checkpoints/ (left by a run that failed early)."""
    if not folder.is_dir():
        return folder.exists()
    return not all(p.is_dir() and (p.name == "data" or (p.name == "checkpoints" and not any(p.iterdir())))
                   for p in folder.iterdir())


def check_output_dir(run: Run) -> pathlib.Path | None:
    """The checkpoint to resume (None: a fresh run); refuses foreign checkpoints and occupied folders.

    Only the main process inspects the folder; every rank learns its verdict (or DDP would hang).
    """
    from accelerate.utils import broadcast_object_list

    from vq_hf.training_utils import checkpoints as ckpt

    verdict = [None, None]  # [error, resume path]
    if run.is_main:
        try:
            verdict[1] = resolve_resume(run)
            ckpt.check_writable(run.out_dir)
            for p in ckpt.clean_partial(run.out_dir):
                print(f"removed an incomplete checkpoint left by an interrupted run: {p}")
        except (ckpt.CheckpointError, FileExistsError, PermissionError) as e:
            verdict[0] = str(e)
    broadcast_object_list(verdict)
    if verdict[0] is not None:
        raise RunError(verdict[0])
    return verdict[1]


def resolve_resume(run: Run) -> pathlib.Path | None:
    from vq_hf.training_utils import checkpoints as ckpt
    from vq_hf.training_utils.config import identity_diff

    args, out_dir = run.args, run.out_dir
    if args.resume_from_checkpoint:
        path = ckpt.resolve_checkpoint(args.resume_from_checkpoint, out_dir)
        diff = identity_diff(ckpt.read_meta(path)["identity"], run.identity)
        if diff:
            raise ckpt.CheckpointError(f"--resume_from_checkpoint {path}: the checkpoint belongs to a different run "
                                       f"configuration ({'; '.join(diff[:8])})")
        return path
    if holds_something(out_dir):
        if not args.overwrite_output_dir:
            what = "a run" if (out_dir / "run_config.json").exists() else "files"
            raise FileExistsError(
                f"--output_dir {out_dir} already holds {what}; pass --overwrite_output_dir to replace it, "
                f"--resume_from_checkpoint latest to continue it, or choose another --output_dir")
        shutil.rmtree(out_dir)
    return None


def load_data(run: Run):
    """The main process loads (and caches, or generates a stand-in corpus) first; the others then reuse it."""
    error = None
    with run.accelerator.main_process_first():
        try:
            data = run.task.build_data(run.recipe, run.model_config)  # caches: data.cache_dir or the datasets cache
        except (ValueError, FileNotFoundError, ConnectionError, KeyError, OSError) as e:
            data, error = None, f"data: {e}"
            run.accelerator.set_trigger()
    if run.accelerator.check_trigger():  # every rank stops if any failed
        raise RunError(error or "data: loading failed on another process")
    batch_size = run.recipe["data"]["batch_size"]
    if len(data.train) < batch_size:
        raise RunError(f"data: the train split has {len(data.train)} examples, fewer than data.batch_size="
                       f"{batch_size}; lower the batch size")
    return data


def build_model(run: Run) -> torch.nn.Module:
    """The model, initialised from the run seed's MODEL_INIT child (the same weights on every rank)."""
    from accelerate.utils import set_seed

    from vq_hf.training_utils.seeding import MODEL_INIT, RANK, derive_seed

    seed = run.recipe["training"]["seed"]
    torch.manual_seed(derive_seed(seed, MODEL_INIT))
    model = run.task.build_model(run.model_config)
    set_seed(derive_seed(seed, RANK, run.accelerator.process_index))  # everything random after this point
    if run.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"task {run.recipe['task']}: {len(run.data.train)} train / {len(run.data.eval)} {run.data.eval_split} "
              f"examples ({run.data.variant}); model {type(model).__name__} with {n_params / 1e6:.2f} M parameters")
    return model


def build_optimizer(run: Run, model: torch.nn.Module):
    from vq_hf.quantization import codebook_param_groups
    from vq_hf.training_utils import tasks

    o = run.recipe["optimizer"]
    groups = codebook_param_groups(model, lr=o["learning_rate"], weight_decay=o["weight_decay"])
    cls = torch.optim.AdamW if o["name"] == "adamw" else torch.optim.Adam
    optimizer = cls(groups, lr=o["learning_rate"], betas=tuple(o["betas"]), eps=o["eps"],
                    weight_decay=o["weight_decay"])
    return optimizer, tasks.build_scheduler(optimizer, run.recipe["schedule"])


def build_loaders(run: Run):
    """Train order and crops are functions of (seed, epoch, indices) only, so a resumed run sees the same batches."""
    from vq_hf.training_utils import tasks
    from vq_hf.training_utils.data_order import EpochSampler

    d, seed = run.recipe["data"], run.recipe["training"]["seed"]
    sampler = EpochSampler(len(run.data.train), seed=seed)
    train_set, train_collate = tasks.seeded_loader_inputs(run.data, seed, sampler)
    train_dl = torch.utils.data.DataLoader(train_set, batch_size=d["batch_size"], sampler=sampler,
                                           collate_fn=train_collate, drop_last=True, num_workers=d["num_workers"])
    eval_dl = torch.utils.data.DataLoader(run.data.eval, batch_size=d["eval_batch_size"], shuffle=False,
                                          collate_fn=run.data.eval_collator, num_workers=d["num_workers"])
    return sampler, train_dl, eval_dl


def prepare(run: Run, model: torch.nn.Module) -> None:
    """accelerate.prepare, the Polyak average and what save_state must hold besides model and optimizer."""
    from vq_hf.training_utils.polyak import AverageState, polyak_average

    acc, t = run.accelerator, run.recipe["training"]
    run.model, run.optimizer, run.train_dl, run.eval_dl = acc.prepare(model, run.optimizer, run.train_dl, run.eval_dl)
    run.unwrapped = acc.unwrap_model(run.model)
    if t["polyak_decay"]:
        run.averaged = polyak_average(run.unwrapped, t["polyak_decay"], start_from_init=not t["polyak_debias"])
        acc.register_for_checkpointing(AverageState(run.averaged, run.unwrapped))
    acc.register_for_checkpointing(run.scheduler)


def start_state(run: Run, resume_path: pathlib.Path | None) -> TrainState:
    """A fresh state (recording run_config.json), or the checkpoint's, with accelerate's state loaded."""
    from vq_hf.training_utils import checkpoints as ckpt
    from vq_hf.training_utils.config import fingerprint

    existing = ckpt.list_checkpoints(run.out_dir)
    state = TrainState(last_checkpoint=existing[-1][1] if existing else None,
                       saved_step=existing[-1][0] if existing else None)
    if resume_path is None:
        if run.is_main:
            (run.out_dir / "run_config.json").write_text(json.dumps(
                {"recipe": run.recipe, "config_file": run.config_name, "identity": run.identity,
                 "fingerprint": fingerprint(run.identity), "argv": run.args.argv}, indent=2))
        return state
    try:
        run.accelerator.load_state(str(resume_path))
    except (ValueError, KeyError, RuntimeError) as e:
        raise RunError(f"--resume_from_checkpoint {resume_path}: cannot load it ({e})") from None
    meta = ckpt.read_meta(resume_path)
    state.step, state.epoch, state.batches_in_epoch = meta["step"], meta["epoch"], meta["batches_in_epoch"]
    state.elapsed_before = meta["elapsed_seconds"]
    state.last_checkpoint, state.saved_step = resume_path, meta["step"]
    if state.batches_in_epoch >= len(run.train_dl):  # saved on the epoch's last step, before its end-of-epoch work
        finish_epoch(run, state)
    if run.is_main:
        dropped = run.history.truncate_after(state.step)
        print(f"resumed from {resume_path} at step {state.step} (epoch {state.epoch}, batch "
              f"{state.batches_in_epoch}); dropped {dropped} history rows written after it")
    return state


# ---------------------------------------------------------------------------------------------- the budget
def steps_per_epoch(run: Run) -> int:
    # accelerate ends an accumulation window at the end of the data loader
    return math.ceil(len(run.train_dl) / run.recipe["training"]["gradient_accumulation_steps"])


def step_limit(run: Run) -> tuple[int | None, str | None]:
    """The step the run ends at by max_steps / max_epochs (whichever comes first), and which one."""
    s = run.recipe["schedule"]
    limits = {"max_steps": s["max_steps"], "max_epochs": s["max_epochs"] and s["max_epochs"] * steps_per_epoch(run)}
    limits = {k: v for k, v in limits.items() if v}
    which = min(limits, key=limits.get) if limits else None
    return limits.get(which), which


def announce_budget(run: Run) -> None:
    """One line at the start: where the run will stop, and whether max_epochs cuts it short of max_steps."""
    s = run.recipe["schedule"]
    limit, which = step_limit(run)
    parts = [f"{k}={s[k]}" for k in ("max_steps", "max_epochs", "max_minutes") if s[k]]
    line = f"budget: {', '.join(parts)} ({steps_per_epoch(run)} optimizer steps per epoch)"
    if limit:
        line += f"; stops at step {limit} by {which}"
    if which == "max_epochs" and s["max_steps"]:
        line += (f", before max_steps={s['max_steps']}: raise --max_epochs (or schedule.max_epochs=null) "
                 f"to train {s['max_steps']} steps")
    if s["max_minutes"]:
        line += f"{'' if limit else '; stops'} (or after {s['max_minutes']} minutes of training, if sooner)"
    print(line)


def budget_stop(run: Run, state: TrainState) -> Stop | None:
    s = run.recipe["schedule"]
    if s["max_steps"] and state.step >= s["max_steps"]:
        return Stop.MAX_STEPS
    if s["max_epochs"] and state.epoch >= s["max_epochs"]:
        return Stop.MAX_EPOCHS
    if s["max_minutes"] and state.elapsed() >= 60 * s["max_minutes"]:
        run.accelerator.set_trigger()
    # every rank stops at the same step: the first clock to run out decides for all
    return Stop.MAX_MINUTES if run.accelerator.check_trigger() else None


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate(run: Run, state: TrainState, full: bool) -> dict:
    """Raw and Polyak weights on the eval split; logs and returns {"raw": metrics, "polyak": metrics}."""
    from vq_hf.evaluation import evaluate_model
    from vq_hf.training_utils.polyak import averaged_model
    from vq_hf.training_utils.tracking import log_code_usage, log_metrics

    max_batches = None if full else run.recipe["training"]["max_eval_batches"]
    models = {"raw": run.unwrapped}
    if run.averaged is not None:
        models["polyak"] = averaged_model(run.averaged, run.unwrapped)
    results = {weights: evaluate_model(m, run.eval_dl, run.task.name, accelerator=run.accelerator,
                                       max_batches=max_batches) for weights, m in models.items()}
    for weights, metrics in results.items():
        scalars = {k: v for k, v in metrics.items() if k != "code_counts"}
        run.history.append({"kind": "eval", "step": state.step, "epoch": state.epoch, "weights": weights, **scalars})
        log_metrics(run.accelerator, f"eval_{weights}", scalars, state.step)
    log_code_usage(run.accelerator, "eval_raw/code_usage", results["raw"].get("code_counts"), state.step)
    return results


def periodic_eval(run: Run, state: TrainState) -> None:
    s = run.recipe["schedule"]
    results = evaluate(run, state, full=False)
    if s["name"] == "plateau":
        if s["monitor"] not in results["raw"]:
            raise RunError(f"schedule.monitor={s['monitor']!r} is not an evaluation metric "
                           f"(available: {sorted(results['raw'])})")
        run.scheduler.step(results["raw"][s["monitor"]])
    if run.is_main:
        run.bar.write(f"step {state.step}: " + run.task.summary(results))


# ---------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(run: Run, state: TrainState) -> None:
    """accelerate's save_state into a temporary folder, renamed when complete (atomic); older ones pruned.

    accelerate's automatic checkpoint naming writes in place and deletes the oldest checkpoint before the new
    one is complete, so a kill -9 while saving could leave no complete checkpoint: this writer keeps one.
    """
    from vq_hf.training_utils import checkpoints as ckpt
    from vq_hf.training_utils.config import fingerprint

    acc, out_dir = run.accelerator, run.out_dir
    tmp, final = ckpt.temp_path(out_dir, state.step), ckpt.final_path(out_dir, state.step)
    if run.is_main and tmp.exists():
        shutil.rmtree(tmp)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if run.is_main:
        ckpt.write_meta(tmp, {
            "step": state.step, "epoch": state.epoch, "batches_in_epoch": state.batches_in_epoch,
            "elapsed_seconds": state.elapsed(), "identity": run.identity, "fingerprint": fingerprint(run.identity),
            "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        ckpt.commit(tmp, final)
        ckpt.prune(out_dir, run.recipe["training"]["keep_last"], protect=final)
    acc.wait_for_everyone()
    state.last_checkpoint, state.saved_step = final, state.step


# ---------------------------------------------------------------------------------------------- training
def train_micro_batch(run: Run, batch: dict):
    """Forward, finiteness check (agreed by all ranks before any backward), backward, optimizer step.

    Returns (model output, loss value, whether the optimizer step was skipped); the output is None when the
    loss was not finite on some rank.
    """
    from vq_hf.quantization import set_update_boundary

    acc, o = run.accelerator, run.recipe["optimizer"]
    with acc.accumulate(run.model):
        # EMA statistics, reservoir pushes and the re-estimation schedule advance once per optimizer step,
        # on its last micro-batch.
        set_update_boundary(run.unwrapped, acc.sync_gradients)
        out = run.model(**batch)
        loss_value = float(out.loss.detach())  # one host sync per micro-batch, shared with the running loss
        if not math.isfinite(loss_value):
            acc.set_trigger()
        if acc.check_trigger():
            return None, loss_value, False
        acc.backward(out.loss)
        skipped = False
        if acc.sync_gradients:
            grad_norm = acc.clip_grad_norm_(run.model.parameters(), o["max_grad_norm"] or float("inf"))
            skipped = bool(o["skip_step_norm"] and float(grad_norm) > o["skip_step_norm"])
        if not skipped:
            run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    return out, loss_value, skipped


def log_train_step(run: Run, state: TrainState, out, skipped: bool) -> None:
    from vq_hf.training_utils import tasks
    from vq_hf.training_utils.tracking import log_metrics

    lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(run.optimizer.param_groups)}
    row = {"loss": state.loss_sum / max(state.loss_count, 1), "lr": lrs.get("default"),
           "codebook_lr": next((v for k, v in lrs.items() if k.startswith("codebook")), None),
           "skipped_step": skipped, **run.task.train_scalars(out)}
    run.history.append({"kind": "train", "step": state.step, "epoch": state.epoch, **row})
    log_metrics(run.accelerator, "train", row, state.step)
    run.bar.set_postfix(loss=f"{row['loss']:.4f}", **tasks.perplexity_postfix(row.get("perplexity")))
    state.loss_sum, state.loss_count = 0.0, 0


def after_optimizer_step(run: Run, state: TrainState, out, skipped: bool) -> Stop | None:
    """Averaging, LR schedule, logging, evaluation and checkpoint cadence of one optimizer step."""
    t, s = run.recipe["training"], run.recipe["schedule"]
    state.step += 1
    run.bar.update(1)
    if run.averaged is not None:
        run.averaged.update_parameters(run.unwrapped)
    if s["name"] == "multistep" and s["unit"] == "steps":
        run.scheduler.step()
    if state.step % t["log_every"] == 0 or state.step == 1:
        log_train_step(run, state, out, skipped)
    end_of_epoch = state.batches_in_epoch == len(run.train_dl)
    if (t["eval_every"] and state.step % t["eval_every"] == 0) or (t["eval_each_epoch"] and end_of_epoch):
        periodic_eval(run, state)
    stop = budget_stop(run, state)
    if state.step % t["save_every"] == 0 or stop is not None:
        save_checkpoint(run, state)
    return stop


def train_epoch(run: Run, state: TrainState) -> Stop:
    """The rest of epoch `state.epoch`, from batch `state.batches_in_epoch`; returns why it stopped."""
    from vq_hf.quantization import start_epoch

    acc = run.accelerator
    # The data order of epoch e is a function of (seed, e) only; accelerate's loader would otherwise number
    # epochs by its own iteration count, which restarts at 0 in a resumed process.
    run.train_dl.set_epoch(state.epoch)
    run.sampler.set_epoch(state.epoch)
    start_epoch(run.unwrapped, state.epoch)  # epoch-mode re-estimation; a no-op repeat when resuming mid-epoch
    batches = run.train_dl if state.batches_in_epoch == 0 else acc.skip_first_batches(run.train_dl,
                                                                                      state.batches_in_epoch)
    for batch in batches:
        out, loss_value, skipped = train_micro_batch(run, batch)
        if out is None:
            state.bad_loss = loss_value
            return Stop.NON_FINITE
        state.batches_in_epoch += 1
        state.loss_sum, state.loss_count = state.loss_sum + loss_value, state.loss_count + 1
        stop = after_optimizer_step(run, state, out, skipped) if acc.sync_gradients else None
        if stop is not None:
            return stop
    return Stop.EPOCH_END


def finish_epoch(run: Run, state: TrainState) -> None:
    s = run.recipe["schedule"]
    if s["name"] == "multistep" and s["unit"] == "epochs":
        run.scheduler.step()
    state.epoch, state.batches_in_epoch = state.epoch + 1, 0


def train(run: Run, state: TrainState) -> Stop:
    """Epochs until a budget, or a non-finite loss, stops the run; the last state is always checkpointed."""
    from tqdm.auto import tqdm

    run.bar = tqdm(total=step_limit(run)[0], initial=state.step, desc="train", dynamic_ncols=True,
                   disable=not run.is_main or run.args.no_progress_bar)
    stop = budget_stop(run, state)
    while stop is None:
        stop = train_epoch(run, state)
        if stop is Stop.EPOCH_END:
            finish_epoch(run, state)
            stop = budget_stop(run, state)
    run.bar.close()
    if stop is not Stop.NON_FINITE and state.saved_step != state.step:
        save_checkpoint(run, state)
    return stop


# ---------------------------------------------------------------------------------------------- outputs
def save_models(run: Run) -> None:
    """The folder root holds the raw weights (what the last checkpoint continues); polyak/ the average, with the
    live model's buffers (docs/training.md, "Polyak averaging"). Each folder loads on its own."""
    from vq_hf.training_utils.polyak import averaged_model

    folders = {run.out_dir: run.unwrapped}
    if run.averaged is not None:
        folders[run.out_dir / "polyak"] = averaged_model(run.averaged, run.unwrapped)
    for folder, model in folders.items():
        model.eval().save_pretrained(folder, safe_serialization=True)
        if run.data.processor is not None:
            run.data.processor.save_pretrained(folder)
        for name, text in run.data.extra_files.items():  # e.g. speech phones.txt (CTC class ids)
            (folder / name).write_text(text)
        # `vq-hf eval --model <folder>` finds the run's data settings
        (folder / "training_config.json").write_text(json.dumps(run.recipe, indent=2))


def write_results(run: Run, state: TrainState, stop: Stop, final: dict) -> None:
    from vq_hf.cards import write_model_card
    from vq_hf.training_utils import tasks
    from vq_hf.training_utils.plots import plot_history

    acc, t, d = run.accelerator, run.recipe["training"], run.recipe["data"]
    training = {"steps": state.step, "epochs_completed": state.epoch, "stop_reason": stop.value,
                "wall_time_s": round(state.elapsed(), 1), "hardware": tasks.hardware(acc),
                "num_processes": acc.num_processes, "mixed_precision": t["mixed_precision"],
                "batch_size": d["batch_size"], "gradient_accumulation_steps": t["gradient_accumulation_steps"],
                "examples_seen": state.step * d["batch_size"] * t["gradient_accumulation_steps"] * acc.num_processes,
                "last_checkpoint": str(state.last_checkpoint)}
    results = run.task.results(recipe=run.recipe, config_file=run.config_name, final=final, data=run.data,
                               model_config=run.model_config, training=training)
    # discrete-unit quality (purity, PNMI, ABX...) of the eval split, where it has frame alignments
    from vq_hf.unit_evaluation import merge_into_results, unit_quality_for_results

    quality = unit_quality_for_results(run.unwrapped, run.data.eval, seed=t["seed"])
    if quality is not None:
        merge_into_results(results, quality)
    (run.out_dir / "results.json").write_text(json.dumps(results, indent=2))
    plot_history(run.history.read(), run.out_dir, run.task.main_metric,
                 title=f"{run.recipe['task']}: {pathlib.Path(run.args.config).stem}")
    write_model_card(run.out_dir)


def report_size(run: Run) -> None:
    from vq_hf.training_utils.checkpoints import checkpoints_dir, disk_usage

    total, ckpts = disk_usage(run.out_dir), disk_usage(checkpoints_dir(run.out_dir))
    print(f"{run.out_dir} holds {total / 1e6:.1f} MB, of which checkpoints {ckpts / 1e6:.1f} MB "
          f"({100 * ckpts / max(total, 1):.0f} %; training.keep_last={run.recipe['training']['keep_last']})")


def push(run: Run) -> None:
    from vq_hf.cards import DEFAULT_IGNORE_PATTERNS, publish

    # generated stand-in corpora (data/) are not part of the model
    publish(run.out_dir, run.args.hub_model_id, ignore_patterns=(*DEFAULT_IGNORE_PATTERNS, "data/*"))
    print(f"pushed {run.out_dir} to https://huggingface.co/{run.args.hub_model_id}")


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv if argv is None else argv)
    args.output_dir = args.output_dir or default_output_dir(args.config)
    # accelerate, the task modules and the model are imported after argument parsing so that --help is instant
    from vq_hf.training_utils.config import identity
    from vq_hf.training_utils.guard import NonFiniteLossError
    from vq_hf.training_utils.tracking import History

    try:
        recipe, task = read_recipe(args)
        model_config = build_model_config(task, recipe, source=args.config)
    except RunError as e:
        print(f"run_vq.py: {e}", file=sys.stderr)
        return e.code
    out_dir = pathlib.Path(args.output_dir)
    accelerator = None
    try:
        accelerator = make_accelerator(args, recipe, model_config, out_dir)
        run = Run(args=args, recipe=recipe, task=task, model_config=model_config,
                  config_name=recorded_config_name(args.config), identity=identity(recipe),
                  out_dir=out_dir, accelerator=accelerator)
        resume_path = check_output_dir(run)
        run.data = load_data(run)
        model = build_model(run)
        run.optimizer, run.scheduler = build_optimizer(run, model)
        run.sampler, run.train_dl, run.eval_dl = build_loaders(run)
        prepare(run, model)
        run.history = History(out_dir / "logs" / "history.jsonl", enabled=run.is_main)
        accelerator.init_trackers("tensorboard")  # <output_dir>/logs/tensorboard
        state = start_state(run, resume_path)
        if run.is_main:
            announce_budget(run)

        stop = train(run, state)
        if stop is Stop.NON_FINITE:
            raise RunError(str(NonFiniteLossError(state.step + 1, state.bad_loss, state.last_checkpoint)), code=3)
        final = evaluate(run, state, full=True)
        if run.is_main:
            print(f"finished ({stop.value}) at step {state.step}, epoch {state.epoch}: " + task.summary(final))
            save_models(run)
            write_results(run, state, stop, final)
            print(f"wrote {out_dir}: weights (raw; Polyak-averaged in polyak/), results.json, plots, README.md")
            report_size(run)
            if args.push_to_hub:
                push(run)
        accelerator.wait_for_everyone()
    except RunError as e:
        if accelerator is None or accelerator.is_main_process:
            print(f"run_vq.py: {e}", file=sys.stderr)
        return e.code
    finally:
        if accelerator is not None:
            accelerator.end_training()  # closes the trackers
    return 0


if __name__ == "__main__":
    sys.exit(main())
