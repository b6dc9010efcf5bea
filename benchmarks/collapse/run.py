"""Codebook-collapse benchmark: one small CIFAR-10 autoencoder, one bottleneck swapped per method.

    python benchmarks/collapse/run.py --seeds 3 --output benchmarks/results/collapse

trains the same conv autoencoder (8×8 latent grid of ``--dim`` channels, one code per position) with each
method for ``--steps`` Adam steps on a fixed subset of the CIFAR-10 training images, then evaluates on test
images: reconstruction MSE (the main metric, pixels in [0, 1]), dataset-level perplexity / K and the
fraction of codes never used on the test set ("dead at end"), plus the wall time of the training loop.
Every ``--log_every`` steps the batch perplexity / K is recorded for the usage figure.

Writes ``<output>.md`` (table, machine, settings), ``<output>.json`` (every run) and ``<output>_usage.png``.
Methods (``--methods`` to choose a subset):

- ``vanilla``: gradient rule, no BN, codebook at the base LR.
- ``ours``: BN before VQ + data-dependent re-estimation (warm-up, k-means++ every ``reestimate_every`` over
  the first half of training) + codebook LR × 10 (Łańcucki et al. 2020).
- ``ours+revival``: ``ours`` + dead-code revival after the re-estimation window.
- ``ema+expiry``: EMA codebook (γ = 0.99) + dead codes (EMA count per step < 2, vector-quantize-pytorch's
  usual ``threshold_ema_dead_code``) re-seeded every step from batch vectors (our revival with
  ``revive_every=1`` and a one-batch reservoir: the current batch, as there).
- ``rotation``: ``vanilla`` with the rotation-trick gradient estimator.
- ``cosine``: ``vanilla`` with l2-normalised inputs and codewords.
- ``fsq``: finite scalar quantization with levels whose product matches K (default [4, 4, 4, 4] = 256 codes,
  the same 8 bits per position), linear projections in and out.
- ``vqp``: vector-quantize-pytorch's ``VectorQuantize`` (``kmeans_init=True``, ``threshold_ema_dead_code=2``,
  its other defaults: EMA decay 0.8, rotation trick on) in the same model.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine_info  # noqa: E402

from vq_hf.quantization import (  # noqa: E402
    CodebookUsageAccumulator,
    FiniteScalarQuantizer,
    VectorQuantizer,
    codebook_param_groups,
    perplexity_from_counts,
)

METHODS = ("vanilla", "ours", "ours+revival", "ema+expiry", "rotation", "cosine", "fsq", "vqp")
DEFAULT_CIFAR = "/work/shared/data/cifar10/plain_text"


def load_images(folder: str, split: str, count: int) -> torch.Tensor:
    """The first ``count`` images of a CIFAR-10 parquet split as ``(count, 3, 32, 32)`` floats in [0, 1]."""
    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    files = sorted(Path(folder).glob(f"{split}-*.parquet"))
    if not files:
        raise SystemExit(f"collapse benchmark: no {split}-*.parquet under {folder!r}")
    images = []
    for f in files:
        column = pq.read_table(f, columns=["img"]).column("img").to_pylist()
        for item in column:
            images.append(np.asarray(Image.open(io.BytesIO(item["bytes"])).convert("RGB")))
            if len(images) == count:
                break
        if len(images) == count:
            break
    if len(images) < count:
        raise SystemExit(f"collapse benchmark: {split} has {len(images)} images, fewer than the {count} asked for")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


class VQPBottleneck(nn.Module):
    """vector-quantize-pytorch's VectorQuantize behind our bottleneck interface (codes, loss)."""

    def __init__(self, dim: int, codebook_size: int):
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.vq = VectorQuantize(dim=dim, codebook_size=codebook_size, kmeans_init=True,
                                 threshold_ema_dead_code=2, accept_image_fmap=True)
        self.codebook_size = codebook_size

    def forward(self, x):
        quantized, indices, loss = self.vq(x)
        return quantized, indices.reshape(-1), loss.sum()


class OursBottleneck(nn.Module):
    def __init__(self, quantizer: nn.Module):
        super().__init__()
        self.quantizer = quantizer
        self.codebook_size = quantizer.codebook_size

    def forward(self, x):
        out = self.quantizer(x)
        return out.quantized, out.codes.reshape(-1), out.loss


class AutoEncoder(nn.Module):
    """32×32×3 → 8×8×dim → 32×32×3; ~0.1 M parameters."""

    def __init__(self, dim: int, bottleneck: nn.Module):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Conv2d(64, dim, 1)
        )
        self.bottleneck = bottleneck
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, 64, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 4, 2, 1),
        )

    def forward(self, images):
        q, codes, vq_loss = self.bottleneck(self.encoder(images - 0.5))
        return self.decoder(q) + 0.5, codes, vq_loss


def make_bottleneck(method: str, args, seed: int) -> nn.Module:
    D, K, S = args.dim, args.codebook_size, args.steps
    common = dict(channel_first=True, seed=seed, search_backend="torch")
    robust = dict(quantizer_type="reestimating", batch_norm=True, codebook_lr_multiplier=10.0,
                  warmup_steps=args.warmup, reestimate_every=args.reestimate_every, reestimate_steps=S // 2,
                  reservoir_size=16 * K, kmeans_max_iters=20)
    if method == "vanilla":
        q = VectorQuantizer(D, K, **common)
    elif method == "ours":
        q = VectorQuantizer(D, K, **robust, **common)
    elif method == "ours+revival":
        q = VectorQuantizer(D, K, **robust, dead_code_threshold=1.0, revive_every=args.reestimate_every, **common)
    elif method == "ema+expiry":
        q = VectorQuantizer(D, K, quantizer_type="ema", dead_code_threshold=2.0, revive_every=1,
                            reservoir_size=args.batch_size * 64, **common)
    elif method == "rotation":
        q = VectorQuantizer(D, K, gradient_estimator="rotation", **common)
    elif method == "cosine":
        q = VectorQuantizer(D, K, distance="cosine", **common)
    elif method == "fsq":
        levels = [int(v) for v in args.fsq_levels.split(",")]
        if math.prod(levels) != K:
            print(f"note: FSQ levels {levels} give {math.prod(levels)} codes, K = {K}", file=sys.stderr)
        q = FiniteScalarQuantizer(levels, dim=D, channel_first=True)
    elif method == "vqp":
        return VQPBottleneck(D, K)
    else:
        raise SystemExit(f"collapse benchmark: unknown method {method!r}; choose from {METHODS}")
    return OursBottleneck(q)


def batch_perplexity(codes: torch.Tensor, K: int) -> float:
    hist = torch.bincount(codes, minlength=K).float().unsqueeze(0)
    return float(perplexity_from_counts(hist)[0])


def run_one(method: str, seed: int, train: torch.Tensor, test: torch.Tensor, args) -> dict:
    torch.manual_seed(seed)
    model = AutoEncoder(args.dim, make_bottleneck(method, args, seed))
    K = model.bottleneck.codebook_size
    optimizer = torch.optim.Adam(codebook_param_groups(model, args.lr))
    order = torch.Generator().manual_seed(seed)
    curve = []
    model.train()
    start = time.perf_counter()
    step = 0
    while step < args.steps:
        for idx in torch.randperm(train.shape[0], generator=order).split(args.batch_size):
            if step == args.steps or len(idx) < args.batch_size:
                break
            images = train[idx]
            recon, codes, vq_loss = model(images)
            loss = (recon - images).pow(2).mean() + vq_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % args.log_every == 0 or step == args.steps - 1:
                curve.append((step, batch_perplexity(codes.detach(), K) / K))
            step += 1
    wall = time.perf_counter() - start
    model.eval()
    acc = CodebookUsageAccumulator(1, K)
    se, n = 0.0, 0
    with torch.no_grad():
        for images in test.split(250):
            recon, codes, _ = model(images)
            se += float((recon.clamp(0, 1) - images).pow(2).sum())
            n += images.numel()
            acc.update(codes.reshape(-1, 1))
    usage = acc.compute()
    return {
        "method": method,
        "seed": seed,
        "test_mse": se / n,
        "perplexity_over_K": float(usage["perplexity"][0]) / K,
        "dead_fraction": 1.0 - float(usage["used_codes"][0]) / K,
        "wall_s": wall,
        "curve": curve,
    }


def summarise(runs: list[dict], methods: list[str]) -> list[dict]:
    rows = []
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        if not rs:
            continue

        def stat(key):
            vals = [r[key] for r in rs]
            mean = sum(vals) / len(vals)
            sd = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
            return mean, sd

        rows.append({"method": m, **{k: stat(k) for k in ("test_mse", "perplexity_over_K", "dead_fraction", "wall_s")}})
    return rows


def write_outputs(runs, methods, args, info, output: Path) -> None:
    rows = summarise(runs, methods)
    lines = [
        "# Codebook-collapse benchmark (CIFAR-10, CPU scale)",
        "",
        f"Command: `python benchmarks/collapse/run.py {shlex.join(sys.argv[1:])}`",
        "",
        f"Model: conv autoencoder 32×32×3 → 8×8×{args.dim} → 32×32×3, one code per latent position, "
        f"K = {args.codebook_size}; {args.train_images} training images, {args.test_images} test images; "
        f"{args.steps} Adam steps (lr {args.lr}), batch {args.batch_size}; seeds {sorted({r['seed'] for r in runs})}.",
        f"Machine: {info['cpu']}, {info['cpu_cores_visible']} cores visible, torch {info['torch']} "
        f"({info['torch_threads']} threads), load average at start {info['load_average_at_start']}, "
        f"{info['time_utc']} UTC. {args.note}",
        "",
        "Mean ± sample s.d. over seeds. Test MSE: pixels in [0, 1] (lower is better). Perplexity / K: dataset-level "
        "code perplexity on the test images over the codebook size. Dead at end: fraction of the K codes never used "
        "on the test images. Wall: seconds of the training loop (shared CPU: only roughly comparable).",
        "",
        "| method | test MSE | perplexity / K | dead at end | wall s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r[k][0]:.4f} ± {r[k][1]:.4f}" for k in ("test_mse", "perplexity_over_K", "dead_fraction")]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + f" | {r['wall_s'][0]:.0f} |")
    lines += ["", f"Code usage over training (batch perplexity / K, mean over seeds): `{output.name}_usage.png`.", ""]
    tmp = output.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, output.with_suffix(".md"))
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": info, "args": vars(args), "runs": runs}, indent=1))
    os.replace(tmp, output.with_suffix(".json"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no usage figure", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for m in methods:
        curves = [r["curve"] for r in runs if r["method"] == m]
        if not curves:
            continue
        steps = [s for s, _ in curves[0]]
        mean = [sum(c[i][1] for c in curves) / len(curves) for i in range(len(steps))]
        ax.plot(steps, mean, label=m)
    ax.set_xlabel("step")
    ax.set_ylabel("batch perplexity / K")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Code usage over training")
    fig.tight_layout()
    png = output.parent / f"{output.name}_usage.png"
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--output", default="benchmarks/results/collapse", help="path prefix of the .md/.json/_usage.png")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--data", default=DEFAULT_CIFAR, help="folder with CIFAR-10 {train,test}-*.parquet")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--codebook_size", type=int, default=256)
    p.add_argument("--fsq_levels", default="4,4,4,4")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--reestimate_every", type=int, default=50)
    p.add_argument("--train_images", type=int, default=10000)
    p.add_argument("--test_images", type=int, default=1000)
    p.add_argument("--log_every", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--note", default="", help="free text for the machine line (e.g. that the CPU was shared)")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"collapse benchmark: unknown method(s) {unknown}; choose from {METHODS}")
    if args.seeds < 1 or args.steps < 1:
        raise SystemExit("collapse benchmark: --seeds and --steps must be >= 1")
    torch.set_num_threads(args.threads)
    train = load_images(args.data, "train", args.train_images)
    test = load_images(args.data, "test", args.test_images)
    info = machine_info("cpu")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in range(args.seeds):
        for m in methods:
            r = run_one(m, seed, train, test, args)
            runs.append(r)
            print(f"{m:14s} seed {seed}: test MSE {r['test_mse']:.4f}  ppl/K {r['perplexity_over_K']:.3f}  "
                  f"dead {r['dead_fraction']:.3f}  {r['wall_s']:.0f} s", flush=True)
            write_outputs(runs, methods, args, info, output)  # partial results survive an interruption


if __name__ == "__main__":
    main()
