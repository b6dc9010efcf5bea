"""End-to-end CIFAR-10 training step: our VQVAEModel (cifar10, 8 codebooks × 128 codes) against the same
model with vector-quantize-pytorch's layer swapped in for ours (8 heads, separate codebook per head, EMA).

A step = forward (pixel_values, labels) → loss → backward → Adam step, on random CIFAR-shaped batches.
CUDA: batch 128 under bf16 autocast (the issue's setting). CPU: batch 16, fp32 (bf16 autocast on CPU
measures the CPU's bf16 emulation, not the model).

The quantizer's share of the step: the quantizer alone, forward + backward on the latent shape and dtype
captured from the model (a forward hook), timed the same way, divided by the step time.

    python benchmarks/bench_cifar_step.py --device cpu
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, measure_interleaved, time_fn, parse_timing_args  # noqa: E402

BATCH = {"cpu": 16, "cuda": 128}


class VQPAdapter(nn.Module):
    """vector-quantize-pytorch's VectorQuantize behind our quantizer's call and output signature."""

    def __init__(self, ours):
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.dim = ours.dim
        self.num_codebooks = ours.num_codebooks
        self.codebook_size = ours.codebook_size
        self.channel_first = ours.channel_first
        kwargs = dict(heads=self.num_codebooks, separate_codebook_per_head=True) if self.num_codebooks > 1 else {}
        self.vq = VectorQuantize(dim=self.dim, codebook_size=self.codebook_size, decay=ours.ema_decay,
                                 commitment_weight=ours.commitment_cost, **kwargs)

    def forward(self, x, mask=None):
        from vq_hf.quantization import VectorQuantizerOutput
        from vq_hf.quantization.metrics import code_histogram, perplexity_from_counts

        if self.channel_first:
            x = x.movedim(1, -1)
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-1])
        flat_mask = None if mask is None else mask.reshape(shape[0], -1).bool()
        q, codes, loss = self.vq(flat, mask=flat_mask)
        codes = codes.reshape(*shape[:-1], self.num_codebooks)
        q = q.reshape(shape)
        if self.channel_first:
            q = q.movedim(-1, 1)
        g = self.num_codebooks
        counts = code_histogram(codes.reshape(-1, g), self.codebook_size)
        zeros = torch.zeros(g, device=x.device)
        return VectorQuantizerOutput(
            quantized=q, codes=codes, loss=loss, codebook_loss=torch.zeros((), device=x.device),
            commitment_loss=loss, perplexity=perplexity_from_counts(counts), running_perplexity=zeros,
            used_codes=(counts > 0).sum(-1), dead_code_fraction=zeros, norm_ratio=zeros,
            latents=x.detach().float(), quantizing=True, reestimated=False)


def _swap_quantizers(model):
    from vq_hf.quantization import VectorQuantizer

    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, VectorQuantizer):
                setattr(module, child_name, VQPAdapter(child).to(next(child.parameters()).device))
                swapped += 1
    if swapped == 0:
        raise RuntimeError("no VectorQuantizer found in VQVAEModel to swap")
    return model


def _quantizer(model):
    from vq_hf.quantization import VectorQuantizer

    for module in model.modules():
        if isinstance(module, (VectorQuantizer, VQPAdapter)):
            return module
    raise RuntimeError("no quantizer module in the model")


def make_step(device, batch, swap, state, quantizer_type="vanilla"):
    def make():
        from vq_hf.models import VQVAEConfig, VQVAEModel

        torch.manual_seed(0)
        config = VQVAEConfig(architecture="cifar10", quantizer_type=quantizer_type)
        model = VQVAEModel(config)
        if swap:
            _swap_quantizers(model)
        model.to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)
        gen = torch.Generator().manual_seed(0)
        labels = torch.randint(0, 256, (batch, 3, 32, 32), generator=gen)
        pixel_values = (labels.float() / 255.0 - 0.5).to(device)
        labels = labels.to(device)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                    else contextlib.nullcontext())
        seen = {}
        vq = _quantizer(model)

        def capture(module, args, kwargs, output):
            x = args[0] if args else kwargs["x"]
            seen.setdefault("shape", (x.shape, x.dtype))

        hook = vq.register_forward_hook(capture, with_kwargs=True)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                out = model(pixel_values=pixel_values, labels=labels)
            out.loss.backward()
            opt.step()

        step()
        hook.remove()
        state.update(seen=seen, vq=vq, autocast=autocast, config=config)
        return step

    return make


def quantizer_alone_ms(device, state, warmup, repeats):
    shape, dtype = state["seen"]["shape"]
    vq = state["vq"]
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    probe = torch.randn(shape, device=device, dtype=dtype)

    def fn():
        x.grad = None
        with state["autocast"]:
            out = vq(x)
            ((out.quantized * probe).float().sum() + out.loss).backward()

    return time_fn(fn, device, warmup, repeats)["median_ms"]


def run(device: str, warmup: int, repeats: int) -> list[Row]:
    batch = BATCH[device]
    cfg = dict(batch=batch, precision="bf16 autocast" if device == "cuda" else "fp32")
    print(f"CIFAR-10 8×128 training step {cfg}", flush=True)
    variants = [("ours VQVAEModel cifar10 8×128", False, "vanilla"),
                ("ours VQVAEModel cifar10 8×128, EMA quantizer", False, "ema"),
                ("same model, vector-quantize-pytorch 1.32 layer (EMA, rotation trick)", True, "ema")]
    states = [{} for _ in variants]
    entries = [(impl, cfg, make_step(device, batch, swap, state, qt))
               for (impl, swap, qt), state in zip(variants, states)]
    rows = measure_interleaved("cifar_step", entries, device, warmup, repeats)
    for row, state in zip(rows, states):
        if row.error is None:
            try:
                q_ms = quantizer_alone_ms(device, state, warmup, repeats)
                row.extra.update(quantizer_ms=q_ms, quantizer_share=q_ms / row.median_ms,
                                 latent_shape=list(state["seen"]["shape"][0]))
            except Exception as err:  # noqa: BLE001 - recorded in the row
                row.extra["quantizer_share_error"] = f"{type(err).__name__}: {err}"[:200]
    return rows


def main(argv=None):
    run(*parse_timing_args(argv, __doc__.splitlines()[0], cuda_repeats=100))


if __name__ == "__main__":
    main()
