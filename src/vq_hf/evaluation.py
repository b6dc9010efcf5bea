"""Dataset-level evaluation of a VQ-VAE: ``evaluate_model`` (used by the training loop) and ``vq-hf eval``.

Every number is pooled over the whole split — never a mean of per-batch values:

- CIFAR-10 / handwriting: total decoder NLL over all real dimensions → reconstruction bits/dim, plus the
  uniform and unigram code rates and NELBOs of Tables II/III (:func:`vq_hf.metrics.bits_per_dim` etc.);
- speech: greedy CTC decoding, edit distances summed over the split / reference phones summed
  (pooled PER, Table I);
- every task with a bottleneck: per-codebook dataset-level perplexity 2^H, entropy and used codes.

Under DDP each rank scores its shard and ``accelerator.gather_for_metrics`` collects per-example
quantities, which drops the samples accelerate duplicates to even out the last batch, so the result equals
a single-process evaluation.

    vq-hf eval --model runs/x --dataset_name /data/cifar10 --split test      # prints metrics JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext

import numpy as np
import torch

from vq_hf.metrics import (
    bits_per_dim,
    codebook_perplexity,
    ctc_greedy_decode,
    edit_distance_counts,
    nelbo_bits_per_dim,
    uniform_rate_bits,
)
from vq_hf.metrics.bits import LN2
from vq_hf.quantization import code_histogram


def _per_example_histogram(codes: torch.Tensor, mask: torch.Tensor | None, codebook_size: int) -> torch.Tensor:
    """codes (B, ..., G) → (B, G, K) float32 counts of each example's real positions."""
    b, g = codes.shape[0], codes.shape[-1]
    rows = codes.reshape(b, -1, g).long().permute(0, 2, 1).reshape(b * g, -1)  # (B·G, P): one row per histogram
    w = None
    if mask is not None:
        w = mask.reshape(b, 1, -1).to(torch.float32).expand(b, g, -1).reshape(b * g, -1)
    return code_histogram(rows, codebook_size, w).view(b, g, codebook_size)


def _gather(accelerator, t: torch.Tensor) -> torch.Tensor:
    if accelerator is None:
        return t
    return accelerator.gather_for_metrics(t)


@torch.no_grad()
def evaluate_model(model, dataloader, task: str, accelerator=None, max_batches: int | None = None) -> dict:
    """Score ``model`` on every batch of ``dataloader`` (or the first ``max_batches``); returns a flat dict.

    Keys: ``loss``, ``num_examples`` and, by task,
    cifar10/handwriting: ``reconstruction_bits_per_dim``, ``uniform_rate_bits_per_dim``,
    ``unigram_rate_bits_per_dim``, ``uniform_nelbo_bits_per_dim``, ``unigram_nelbo_bits_per_dim``;
    speech: ``phone_error_rate`` (fraction), ``phone_errors``, ``reference_phones``;
    with a bottleneck: ``perplexity`` / ``used_codes`` / ``codebook_entropy_bits`` per codebook (a number for
    one codebook, a list otherwise), ``perplexity_sum`` and ``code_counts`` ((G, K) list, for histograms).
    """
    was_training = model.training
    model.eval()
    cfg = model.config
    quantizer = getattr(model, "quantizer", None)
    has_vq = quantizer is not None
    k = int(quantizer.codebook_size) if has_vq else 0
    device = accelerator.device if accelerator is not None else next(model.parameters()).device

    loss_sum, n_examples, has_loss = 0.0, 0, False
    nll_total, dims_total = 0.0, 0.0
    latents_total = 0.0
    errors, ref_len = 0, 0
    counts = None
    for i, batch in enumerate(dataloader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {key: v.to(device) if isinstance(v, torch.Tensor) else v for key, v in batch.items()}
        with accelerator.autocast() if accelerator is not None else nullcontext():
            out = model(**batch)
        bsz = next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]
        if out.loss is not None:
            has_loss = True
            loss_sum += float(_gather(accelerator, out.loss.detach().float().reshape(1).repeat(bsz)).sum())
        n_examples += int(_gather(accelerator, torch.ones(bsz, device=device)).sum())

        if task == "speech":
            hyps = ctc_greedy_decode(out.logits.float(), out.output_lengths, blank_id=cfg.ctc_blank_id)
            refs = [[int(x) for x in row if x != -100] for row in batch["labels"].tolist()]
            per_ex = torch.tensor([edit_distance_counts([h], [r]) for h, r in zip(hyps, refs)],
                                  dtype=torch.long, device=device).reshape(-1, 2)
            per_ex = _gather(accelerator, per_ex)
            errors += int(per_ex[:, 0].sum())
            ref_len += int(per_ex[:, 1].sum())
        else:
            nll_total += float(_gather(accelerator, out.nll_per_example.detach().double()).sum())
            dims_total += float(_gather(accelerator, out.dims_per_example.detach().double()).sum())

        if has_vq and out.codes is not None:
            mask = getattr(out, "codes_mask", None)
            hist = _per_example_histogram(out.codes, mask, k)
            hist = _gather(accelerator, hist).sum(0).double().cpu()
            counts = hist if counts is None else counts + hist
            if mask is not None:
                latents_total += float(_gather(accelerator, mask.reshape(bsz, -1).sum(1).double()).sum())
            else:
                latents_total += float(_gather(accelerator, torch.full(
                    (bsz,), float(np.prod(out.codes.shape[1:-1])), dtype=torch.float64, device=device)).sum())
    model.train(was_training)

    if n_examples == 0:
        raise ValueError("evaluate_model: the evaluation split produced no batches")
    m: dict = {"num_examples": n_examples}
    if has_loss:
        m["loss"] = loss_sum / n_examples
    if task == "speech":
        if ref_len == 0:
            raise ValueError("evaluate_model: the evaluation split has no reference phones (all labels padding)")
        m.update(phone_error_rate=errors / ref_len, phone_errors=errors, reference_phones=ref_len)
    else:
        m["reconstruction_bits_per_dim"] = bits_per_dim(nll_total, dims_total)
        m["num_dims"] = dims_total
    if counts is not None:
        c = counts.numpy()
        usage = codebook_perplexity(counts=c, base=2.0)  # per codebook: 2^H, H in bits, used codes
        d = usage.to_dict()  # a number for one codebook, a list otherwise
        m.update(perplexity=d["perplexity"], perplexity_sum=d["perplexity_sum"], used_codes=d["used_codes"],
                 codebook_entropy_bits=d["entropy"], code_counts=c.tolist())
        if task != "speech":
            g = c.shape[0]
            recon_bits = nll_total / LN2
            uni = uniform_rate_bits(latents_total, k, g)
            unigram = latents_total * float(usage.entropy.sum())  # −Σ log2 p̂ with p̂ estimated on this split
            m.update(
                uniform_rate_bits_per_dim=uni / dims_total,
                unigram_rate_bits_per_dim=unigram / dims_total,
                uniform_nelbo_bits_per_dim=nelbo_bits_per_dim(recon_bits, uni, dims_total),
                unigram_nelbo_bits_per_dim=nelbo_bits_per_dim(recon_bits, unigram, dims_total),
            )
    return m


# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vq-hf eval",
        description="Evaluate a trained vq-hf model folder on a dataset split and print the metrics as JSON "
                    "(pooled bits/dim and NELBOs, pooled PER, dataset-level perplexity per codebook).",
    )
    p.add_argument("--model", required=True,
                   help="a folder written by training/run_vq.py (or save_pretrained), or a hub model id")
    p.add_argument("--dataset_name", default=None,
                   help="hub id or local folder / corpus of the model's task; default: the task's offline default "
                        "(CIFAR-10: the embedded sample). Only --split is read: a test-only folder is enough")
    p.add_argument("--split", default="test", help="split to evaluate")
    p.add_argument("--cache_dir", default=None,
                   help="root for feature caches and generated stand-in corpora (default: the datasets cache, "
                        "$HF_DATASETS_CACHE); nothing is written into the model folder")
    p.add_argument("--allow_scp_commands", action="store_true",
                   help="speech: run piped wav.scp / feats.scp entries (`sph2pipe ... |`) as shell commands; "
                        "only for a corpus you trust (refused otherwise)")
    p.add_argument("--batch_size", type=int, default=64, help="evaluation batch size")
    p.add_argument("--max_samples", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--output", default=None, help="also write the JSON to this file")
    p.add_argument("--include_code_counts", action="store_true", help="keep the (G, K) code histogram in the JSON")
    return p


def load_model(folder):
    """The model class of the folder's task (VQVAEForCTC for speech, VQVAEModel otherwise), in eval mode."""
    from vq_hf.models import VQVAEConfig, VQVAEForCTC, VQVAEModel

    config = VQVAEConfig.from_pretrained(folder)  # the family's config (0.1.0 folders converted)
    cls = VQVAEForCTC if config.architecture == "speech" else VQVAEModel
    return cls.from_pretrained(folder, config=config).eval()


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import pathlib

    from vq_hf.hub import HubRepoError, local_model_folder
    from vq_hf.training_utils.config import validate_recipe
    from vq_hf.training_utils.tasks import get_task

    try:
        folder = local_model_folder(args.model)
    except HubRepoError as e:
        print(f"vq-hf eval: --model {args.model}: {e}", file=sys.stderr)
        return 2
    if not (folder / "config.json").is_file():
        print(f"vq-hf eval: --model {folder}: no config.json (not a model folder)", file=sys.stderr)
        return 2
    try:
        model = load_model(folder)
    except (OSError, ValueError) as e:
        print(f"vq-hf eval: --model {folder}: {e}", file=sys.stderr)
        return 2
    task = get_task(model.config.architecture)
    # Start from the training run's data settings (stand-in corpus size and seed, chunking) when known.
    trained = {}
    if (folder / "training_config.json").is_file():
        trained = json.loads((folder / "training_config.json").read_text())
    data_cfg = dict(trained.get("data") or {})
    # cache_dir and allow_scp_commands come from this command line only: a downloaded model folder's
    # training_config.json must not point caches elsewhere or switch on shell commands
    data_cfg.update({"train_split": data_cfg.get("train_split", args.split), "eval_split": args.split,
                     "eval_batch_size": args.batch_size, "max_eval_samples": args.max_samples,
                     "cache_dir": args.cache_dir, "allow_scp_commands": args.allow_scp_commands})
    if args.dataset_name is not None:
        data_cfg["dataset_name"] = args.dataset_name
    recipe = validate_recipe({"task": task.name, "data": data_cfg,
                              "training": {"seed": (trained.get("training") or {}).get("seed", 0)}})
    try:
        data = task.build_data(recipe, model.config, processor_folder=folder, eval_only=True)
    except (ValueError, FileNotFoundError, ConnectionError, KeyError) as e:
        print(f"vq-hf eval: data: {e}", file=sys.stderr)
        return 2
    loader = torch.utils.data.DataLoader(data.eval, batch_size=args.batch_size, shuffle=False,
                                         collate_fn=data.eval_collator)
    metrics = evaluate_model(model, loader, task.name)
    if not args.include_code_counts:
        metrics.pop("code_counts", None)
    result = {"model": str(folder), "task": task.name, "dataset": data.dataset_name, "data_variant": data.variant,
              "split": args.split, "metrics": metrics}
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        pathlib.Path(args.output).write_text(text + "\n")
    return 0
