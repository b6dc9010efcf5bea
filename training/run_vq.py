#!/usr/bin/env python
"""Train a VQ-VAE of "Robust Training of Vector Quantized Bottleneck Models" with 🤗 Accelerate.

    accelerate launch training/run_vq.py                     # quickstart: embedded CIFAR-10 sample, CPU, minutes
    accelerate launch training/run_vq.py --config training/configs/cifar10/bn_reest_cblr.yaml \\
        --dataset_name uoft-cs/cifar10 --output_dir runs/x --max_steps 50000 [--max_minutes 30] \\
        [--resume_from_checkpoint runs/x/checkpoints/step_40000 | latest] [--mixed_precision bf16] \\
        [section.key=value ...]

The loop, top to bottom: recipe → output folder checks → Accelerator → data → model → optimizer (codebooks in
their own LR group) → resume → train (accumulation-aware quantizer updates, Polyak averaging, non-finite
guard, periodic evaluation of raw and averaged weights, atomic checkpoints) → final evaluation → the finished
folder (weights, config, processor, results.json, plots, model card) → optional push to the Hub.
See docs/training.md.
"""

from __future__ import annotations

import argparse
import datetime
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


def holds_something(folder: pathlib.Path) -> bool:
    """Anything but a generated stand-in corpus (data/) or an empty checkpoints/ (left by a run that failed early)."""
    if not folder.is_dir():
        return folder.exists()
    for p in folder.iterdir():
        if p.name == "data" and p.is_dir():
            continue
        if p.name == "checkpoints" and p.is_dir() and not any(p.iterdir()):
            continue
        return True
    return False


def main(argv=None) -> int:
    args = parse_args(argv)
    # Imports after argument parsing so that --help is instant.
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import broadcast, broadcast_object_list, set_seed
    from tqdm.auto import tqdm

    from vq_hf.training_utils import checkpoints as ckpt
    from vq_hf.training_utils import tasks
    from vq_hf.training_utils.config import ConfigError, fingerprint, identity, identity_diff, load_recipe
    from vq_hf.training_utils.data_order import EpochSampler
    from vq_hf.training_utils.guard import NonFiniteLossError
    from vq_hf.training_utils.plots import plot_history
    from vq_hf.training_utils.polyak import PolyakAverage
    from vq_hf.training_utils.tracking import History, TensorBoard

    # ------------------------------------------------------------------ recipe and output folder (no work yet)
    try:
        recipe = load_recipe(args.config, list(args.overrides) + flag_overrides(args))
        task = tasks.get_task(recipe["task"])
        model_config = task.build_config(recipe, source=args.config)
    except (ConfigError, ValueError) as e:
        print(f"run_vq.py: {e}", file=sys.stderr)
        return 2
    sched, tcfg, dcfg = recipe["schedule"], recipe["training"], recipe["data"]
    if not (sched["max_steps"] or sched["max_epochs"] or sched["max_minutes"]):
        print("run_vq.py: no training budget: set --max_steps, --max_epochs or --max_minutes "
              "(schedule.max_steps / max_epochs / max_minutes)", file=sys.stderr)
        return 2
    if args.output_dir is None:
        is_default = pathlib.Path(args.config).resolve() == DEFAULT_CONFIG.resolve()
        cfg_path = pathlib.Path(args.config)
        args.output_dir = DEFAULT_OUTPUT_DIR if is_default else f"runs/{cfg_path.parent.name}/{cfg_path.stem}"
    out_dir = pathlib.Path(args.output_dir)
    run_identity = identity(recipe)
    try:  # recorded in results.json and the card: repository-relative when it is one of ours
        config_name = str(pathlib.Path(args.config).resolve().relative_to(HERE.parent))
    except ValueError:
        config_name = str(args.config)

    accelerator = Accelerator(
        mixed_precision=tcfg["mixed_precision"],
        gradient_accumulation_steps=tcfg["gradient_accumulation_steps"],
        # The quantizer all-reduces its own statistics; DDP must not overwrite rank buffers with rank 0's.
        # During the warm-up pass-through the codebook gets no gradient: DDP must tolerate unused parameters.
        kwargs_handlers=[DistributedDataParallelKwargs(
            broadcast_buffers=False,
            find_unused_parameters=bool(model_config.use_bottleneck
                                        and model_config.quantizer.get("warmup_steps", 0) > 0))],
    )
    main_proc = accelerator.is_main_process

    def fail(msg: str, code: int = 2) -> int:
        if main_proc:
            print(f"run_vq.py: {msg}", file=sys.stderr)
        return code

    resume_path, error = None, None
    try:
        if args.resume_from_checkpoint:
            resume_path = ckpt.resolve_checkpoint(args.resume_from_checkpoint, out_dir)
            meta = ckpt.read_meta(resume_path)
            diff = identity_diff(meta["identity"], run_identity)
            if diff:
                raise ckpt.CheckpointError(
                    f"--resume_from_checkpoint {resume_path}: the checkpoint belongs to a different run "
                    f"configuration ({'; '.join(diff[:8])})")
        elif main_proc and holds_something(out_dir):
            if not args.overwrite_output_dir:
                what = "a run" if (out_dir / "run_config.json").exists() else "files"
                raise FileExistsError(
                    f"--output_dir {out_dir} already holds {what}; pass --overwrite_output_dir to replace it, "
                    f"--resume_from_checkpoint latest to continue it, or choose another --output_dir")
            shutil.rmtree(out_dir)
        if main_proc:
            ckpt.check_writable(out_dir)
            for p in ckpt.clean_partial(out_dir):
                print(f"removed an incomplete checkpoint left by an interrupted run: {p}")
    except (ckpt.CheckpointError, FileExistsError, PermissionError) as e:
        error = str(e)
    # Only the main process inspects the folder: every rank must learn its verdict (or DDP would hang).
    verdict = [error]
    broadcast_object_list(verdict)
    if verdict[0] is not None:
        return fail(verdict[0])

    # ------------------------------------------------------------------ data and model
    set_seed(tcfg["seed"])
    data, error = None, None
    # The main process loads (and caches, or generates a stand-in corpus) first; the others then reuse it.
    with accelerator.main_process_first():
        try:
            data = task.build_data(recipe, model_config)  # caches: data.cache_dir or the datasets cache
        except (ValueError, FileNotFoundError, ConnectionError, KeyError, OSError) as e:
            error = f"data: {e}"
    failed = torch.tensor([0.0 if error is None else 1.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        failed = accelerator.reduce(failed, "sum")
    if failed.item():
        return fail(error or "data: loading failed on another process")
    model = task.build_model(model_config)
    if main_proc:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"task {recipe['task']}: {len(data.train)} train / {len(data.eval)} {data.eval_split} examples "
              f"({data.variant}); model {type(model).__name__} with {n_params / 1e6:.2f} M parameters")

    from vq_hf.quantization import codebook_param_groups, set_update_boundary, start_epoch

    ocfg = recipe["optimizer"]
    groups = codebook_param_groups(model, lr=ocfg["learning_rate"], weight_decay=ocfg["weight_decay"])
    opt_cls = torch.optim.AdamW if ocfg["name"] == "adamw" else torch.optim.Adam
    optimizer = opt_cls(groups, lr=ocfg["learning_rate"], betas=tuple(ocfg["betas"]), eps=ocfg["eps"],
                        weight_decay=ocfg["weight_decay"])
    scheduler = tasks.build_scheduler(optimizer, sched)

    train_sampler = EpochSampler(len(data.train), seed=tcfg["seed"])
    train_set, train_collate = tasks.seeded_loader_inputs(data, tcfg["seed"], train_sampler)
    train_dl = torch.utils.data.DataLoader(train_set, batch_size=dcfg["batch_size"], sampler=train_sampler,
                                           collate_fn=train_collate, drop_last=True,
                                           num_workers=dcfg["num_workers"])
    eval_dl = torch.utils.data.DataLoader(data.eval, batch_size=dcfg["eval_batch_size"], shuffle=False,
                                          collate_fn=data.eval_collator, num_workers=dcfg["num_workers"])
    if len(train_dl) == 0:
        return fail(f"data: the train split has {len(data.train)} examples, fewer than data.batch_size="
                    f"{dcfg['batch_size']}; lower the batch size")
    model, optimizer, train_dl, eval_dl = accelerator.prepare(model, optimizer, train_dl, eval_dl)
    unwrapped = accelerator.unwrap_model(model)
    polyak = None
    if tcfg["polyak_decay"]:
        polyak = PolyakAverage(unwrapped, tcfg["polyak_decay"], debias=tcfg["polyak_debias"])
        accelerator.register_for_checkpointing(polyak)
    accelerator.register_for_checkpointing(scheduler)

    # ------------------------------------------------------------------ resume
    step, epoch, batches_done, elapsed_before = 0, 0, 0, 0.0
    history = History(out_dir / "logs" / "history.jsonl", enabled=main_proc)
    if resume_path is not None:
        accelerator.load_state(str(resume_path))
        meta = ckpt.read_meta(resume_path)
        step, epoch, batches_done = meta["step"], meta["epoch"], meta["batches_in_epoch"]
        elapsed_before = meta["elapsed_seconds"]
        if batches_done >= len(train_dl):  # saved at the end of an epoch
            epoch, batches_done = epoch + 1, 0
        if main_proc:
            dropped = history.truncate_after(step)
            print(f"resumed from {resume_path} at step {step} (epoch {epoch}, batch {batches_done}); "
                  f"dropped {dropped} history rows written after it")
    elif main_proc:
        (out_dir / "run_config.json").write_text(json.dumps(
            {"recipe": recipe, "config_file": config_name, "identity": run_identity,
             "fingerprint": fingerprint(run_identity), "argv": list(sys.argv if argv is None else argv)},
            indent=2))
    tb = TensorBoard(out_dir / "logs" / "tensorboard", enabled=main_proc and args.report_to == "tensorboard")

    # ------------------------------------------------------------------ helpers used by the loop
    def evaluate(full: bool) -> dict:
        """Raw and Polyak weights on the eval split; logs and returns {"raw": metrics, "polyak": metrics}."""
        max_batches = None if full else tcfg["max_eval_batches"]
        results = {"raw": task.evaluate(unwrapped, eval_dl, accelerator, max_batches=max_batches)}
        if polyak is not None:
            averaged = polyak.averaged_model(unwrapped)
            results["polyak"] = task.evaluate(averaged, eval_dl, accelerator, max_batches=max_batches)
        unwrapped.train()
        for weights, metrics in results.items():
            scalars = {k: v for k, v in metrics.items() if k != "code_counts"}
            history.append({"kind": "eval", "step": step, "epoch": epoch, "weights": weights, **scalars})
            tb.scalars(f"eval_{weights}", scalars, step)
        tb.code_usage("eval_raw/code_usage", results["raw"].get("code_counts"), step)
        return results

    def periodic_eval() -> None:
        res = evaluate(full=False)
        if sched["name"] == "plateau":
            if sched["monitor"] not in res["raw"]:
                raise KeyError(f"schedule.monitor={sched['monitor']!r} is not an evaluation metric "
                               f"(available: {sorted(res['raw'])})")
            scheduler.step(res["raw"][sched["monitor"]])
        if main_proc:
            bar.write(f"step {step}: " + task.summary(res))

    def save_checkpoint() -> pathlib.Path:
        tmp, final = ckpt.temp_path(out_dir, step), ckpt.final_path(out_dir, step)
        if main_proc and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main_proc:
            ckpt.write_meta(tmp, {
                "step": step, "epoch": epoch, "batches_in_epoch": batches_done,
                "elapsed_seconds": elapsed_before + (time.monotonic() - t_start),
                "identity": run_identity, "fingerprint": fingerprint(run_identity),
                "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
            ckpt.commit(tmp, final)
            ckpt.prune(out_dir, tcfg["keep_last"], protect=final)
        accelerator.wait_for_everyone()
        return final

    def out_of_budget() -> str | None:
        reason = None
        if sched["max_steps"] and step >= sched["max_steps"]:
            reason = "max_steps"
        elif sched["max_minutes"] and elapsed_before + time.monotonic() - t_start >= 60 * sched["max_minutes"]:
            reason = "max_minutes"
        # Every rank must stop at the same step; rank 0's clock decides.
        flag = broadcast(torch.tensor([{None: 0, "max_steps": 1, "max_minutes": 2}[reason]],
                                      device=accelerator.device))
        return {0: None, 1: "max_steps", 2: "max_minutes"}[int(flag.item())]

    # ------------------------------------------------------------------ train
    t_start = time.monotonic()
    existing = ckpt.list_checkpoints(out_dir)
    last_saved = existing[-1][1] if existing else None
    total = sched["max_steps"] or (sched["max_epochs"] * math.ceil(len(train_dl) / tcfg["gradient_accumulation_steps"])
                                   if sched["max_epochs"] else None)
    bar = tqdm(total=total, initial=step, disable=not main_proc or args.no_progress_bar, desc="train",
               dynamic_ncols=True)
    stop_reason = out_of_budget()
    running = {"loss": 0.0, "n": 0}
    try:
        while stop_reason is None:
            if sched["max_epochs"] and epoch >= sched["max_epochs"]:
                stop_reason = "max_epochs"
                break
            # The data order of epoch e is a function of (seed, e) only; accelerate's loader would otherwise
            # number epochs by its own iteration count, which restarts at 0 in a resumed process.
            train_dl.set_epoch(epoch)
            train_sampler.set_epoch(epoch)
            start_epoch(unwrapped, epoch)  # epoch-mode re-estimation; a no-op repeat when resuming mid-epoch
            epoch_dl = train_dl if batches_done == 0 else accelerator.skip_first_batches(train_dl, batches_done)
            for batch in epoch_dl:
                with accelerator.accumulate(model):
                    # EMA statistics, reservoir pushes and the re-estimation schedule advance once per
                    # optimizer step, on its last micro-batch.
                    set_update_boundary(unwrapped, accelerator.sync_gradients)
                    out = model(**batch)
                    loss = out.loss
                    # One host sync per micro-batch, shared by the finite check and the running loss.
                    loss_value = float(loss.detach())
                    bad = not math.isfinite(loss_value)
                    if accelerator.num_processes > 1:  # every rank stops together
                        flag = torch.tensor([float(bad)], device=accelerator.device)
                        bad = bool(accelerator.reduce(flag, "sum").item())
                    if bad:
                        raise NonFiniteLossError(step + 1, loss_value, last_saved)
                    accelerator.backward(loss)
                    skipped = False
                    if accelerator.sync_gradients:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(),
                                                                ocfg["max_grad_norm"] or float("inf"))
                        if ocfg["skip_step_norm"] and float(grad_norm) > ocfg["skip_step_norm"]:
                            skipped = True
                    if not skipped:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                batches_done += 1
                running["loss"] += loss_value
                running["n"] += 1
                if not accelerator.sync_gradients:
                    continue

                # ---- one optimizer step done
                step += 1
                bar.update(1)
                if polyak is not None:
                    polyak.update(unwrapped)
                if sched["name"] == "multistep" and sched["unit"] == "steps":
                    scheduler.step()
                if step % tcfg["log_every"] == 0 or step == 1:
                    lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
                    row = {"loss": running["loss"] / max(running["n"], 1), "lr": lrs.get("default"),
                           "codebook_lr": next((v for k, v in lrs.items() if k.startswith("codebook")), None),
                           "skipped_step": skipped, **task.train_scalars(out)}
                    history.append({"kind": "train", "step": step, "epoch": epoch, **row})
                    tb.scalars("train", row, step)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", **tasks.perplexity_postfix(row.get("perplexity")))
                    running = {"loss": 0.0, "n": 0}
                end_of_epoch = batches_done == len(train_dl)
                if ((tcfg["eval_every"] and step % tcfg["eval_every"] == 0)
                        or (tcfg["eval_each_epoch"] and end_of_epoch)):
                    periodic_eval()
                stop_reason = out_of_budget()
                if step % tcfg["save_every"] == 0 or stop_reason:
                    last_saved = save_checkpoint()
                if stop_reason:
                    break
            else:  # the epoch ran to its end
                if sched["name"] == "multistep" and sched["unit"] == "epochs":
                    scheduler.step()
                epoch, batches_done = epoch + 1, 0
                continue
            break
    except NonFiniteLossError as e:
        bar.close()
        tb.close()
        return fail(str(e), code=3)
    bar.close()
    if last_saved is None or ckpt.read_meta(last_saved)["step"] != step:
        last_saved = save_checkpoint()
    train_seconds = elapsed_before + time.monotonic() - t_start

    # ------------------------------------------------------------------ final evaluation and the finished folder
    final = evaluate(full=True)
    if main_proc:
        print(f"finished ({stop_reason}) at step {step}, epoch {epoch}: " + task.summary(final))
    accelerator.wait_for_everyone()
    if main_proc:
        # The folder root holds the raw weights (what the last checkpoint continues); polyak/ the average,
        # with the live model's buffers (docs/training.md, "Polyak averaging").
        unwrapped.eval()
        unwrapped.save_pretrained(out_dir, safe_serialization=True)
        if polyak is not None:
            averaged = polyak.averaged_model(unwrapped).eval()
            averaged.save_pretrained(out_dir / "polyak", safe_serialization=True)
        if data.processor is not None:
            data.processor.save_pretrained(out_dir)
            if polyak is not None:
                data.processor.save_pretrained(out_dir / "polyak")
        for name, text in data.extra_files.items():  # e.g. speech phones.txt (CTC class ids)
            (out_dir / name).write_text(text)
            if polyak is not None:
                (out_dir / "polyak" / name).write_text(text)
        (out_dir / "training_config.json").write_text(json.dumps(recipe, indent=2))
        if polyak is not None:  # `vq-hf eval --model <out>/polyak` finds the run's data settings too
            shutil.copy(out_dir / "training_config.json", out_dir / "polyak" / "training_config.json")
        results = task.results(
            recipe=recipe, config_file=config_name, final=final, data=data, model_config=model_config,
            training={"steps": step, "epochs_completed": epoch, "stop_reason": stop_reason,
                      "wall_time_s": round(train_seconds, 1), "hardware": tasks.hardware(accelerator),
                      "num_processes": accelerator.num_processes, "mixed_precision": tcfg["mixed_precision"],
                      "batch_size": dcfg["batch_size"],
                      "gradient_accumulation_steps": tcfg["gradient_accumulation_steps"],
                      "examples_seen": step * dcfg["batch_size"] * tcfg["gradient_accumulation_steps"]
                      * accelerator.num_processes,
                      "last_checkpoint": str(last_saved)})
        # discrete-unit quality (purity, PNMI, ABX...) on the eval split where it has frame alignments
        from vq_hf.unit_evaluation import merge_into_results, unit_quality_for_results

        quality = unit_quality_for_results(unwrapped, data.eval, seed=recipe["training"]["seed"])
        if quality is not None:
            merge_into_results(results, quality)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2))
        plot_history(history.read(), out_dir, task.main_metric,
                     title=f"{recipe['task']}: {pathlib.Path(args.config).stem}")
        tasks.write_model_card(out_dir)
        print(f"wrote {out_dir}: weights (raw; Polyak-averaged in polyak/), results.json, plots, README.md")
        if args.push_to_hub:
            from vq_hf.cards import DEFAULT_IGNORE_PATTERNS, publish

            # generated stand-in corpora (data/) are not part of the model
            publish(out_dir, args.hub_model_id, ignore_patterns=(*DEFAULT_IGNORE_PATTERNS, "data/*"))
            print(f"pushed {out_dir} to https://huggingface.co/{args.hub_model_id}")
    tb.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
