"""VQ layer forward + backward, side by side in one process: our VectorQuantizer (vanilla, EMA, several
codebooks), vector-quantize-pytorch 1.32 (the anchor), a plain torch reference, and the search alone
(distance GEMM alone, our chunked GEMM search, the fused Triton kernel on CUDA).

One "step" = forward of the layer on x (N, d) with requires_grad, a loss ``(quantized · probe).sum() + vq
loss``, and backward (gradients w.r.t. x and the codebook where it has one). Results stay fp32.

    python benchmarks/bench_vq_layer.py --device cpu
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, measure_interleaved, parse_timing_args  # noqa: E402

# (N, d, K, codebooks) per device. CPU sizes are the CPU anchor (N=8,192, d=64, K=4,096) and K=512.
SIZES = {
    "cpu": [(8192, 64, 4096, 1), (8192, 64, 512, 1)],
    "cuda": [(65536, 64, 4096, 1), (262144, 64, 4096, 1), (65536, 64, 512, 1)],
}
# The CIFAR-10 bottleneck of the paper's 8×128 model: 128 images × 8×8 positions, 256 channels = 8 × 32.
CIFAR_SHAPE = (8192, 256, 128, 8)
# A distance-block budget that fits a CPU core's L2 cache (compare with search.py's default).
CPU_CHUNK_MB = 2


def _vq_loss(x, q, commitment=0.25):
    return torch.nn.functional.mse_loss(q, x.detach()) + commitment * torch.nn.functional.mse_loss(x, q.detach())


def _precision(fn, tf32=False):
    """Global switches set on every call: implementations are timed interleaved, so each sets its own."""
    def call():
        torch.backends.cuda.matmul.allow_tf32 = tf32
        return fn()

    return call


def make_plain_torch(n, d, k, device, tf32=False):
    """The textbook vanilla VQ: GEMM + argmin (no grad) + gather, straight-through, codebook + commitment."""
    def make():
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(n, d, device=device, generator=gen, requires_grad=True)
        cb = torch.nn.Parameter(torch.randn(k, d, device=device, generator=gen))
        probe = torch.randn(n, d, device=device, generator=gen)

        def step():
            x.grad = cb.grad = None
            with torch.no_grad():
                codes = ((cb * cb).sum(1) - 2.0 * x @ cb.t()).argmin(1)
            q = cb[codes]
            out = x + (q - x).detach()
            ((out * probe).sum() + _vq_loss(x, q)).backward()

        return _precision(step, tf32)

    return make


def make_gemm_only(n, d, k, device, tf32=False):
    def make():
        x = torch.randn(n, d, device=device)
        cb = torch.randn(k, d, device=device)
        return _precision(lambda: x @ cb.t(), tf32)

    return make


def make_search(n, d, k, g, device, fused):
    """Search only (no autograd): our chunked GEMM + argmin, or the fused Triton kernel."""
    def make():
        from vq_hf.quantization import search

        x = torch.randn(g, n, d // g, device=device)
        cb = torch.randn(g, k, d // g, device=device)
        if fused:
            from vq_hf.quantization import fused_search

            if not fused_search.is_available(x):
                raise RuntimeError("fused kernel not available (needs CUDA and Triton)")
            return _precision(lambda: fused_search.fused_nearest_codes(x, cb))
        return _precision(lambda: search.chunked_nearest_codes(x, cb))

    return make


def make_ours(n, d, k, g, device, quantizer_type, **options):
    def make():
        from vq_hf.quantization import VectorQuantizer

        torch.manual_seed(0)
        vq = VectorQuantizer(d, k, num_codebooks=g, quantizer_type=quantizer_type, **options).to(device).train()
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(n, d, device=device, generator=gen, requires_grad=True)
        probe = torch.randn(n, d, device=device, generator=gen)

        def step():
            x.grad = None
            vq.zero_grad(set_to_none=True)
            out = vq(x)
            ((out.quantized * probe).sum() + out.loss).backward()

        return _precision(step)

    return make


def make_vqp(n, d, k, g, device, rotation_trick=True):
    def make():
        from vector_quantize_pytorch import VectorQuantize

        torch.manual_seed(0)
        kwargs = dict(heads=g, separate_codebook_per_head=True) if g > 1 else {}
        vq = VectorQuantize(dim=d, codebook_size=k, decay=0.99, commitment_weight=0.25,
                            rotation_trick=rotation_trick, **kwargs).to(device).train()
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(1, n, d, device=device, generator=gen, requires_grad=True)
        probe = torch.randn(1, n, d, device=device, generator=gen)

        def step():
            x.grad = None
            vq.zero_grad(set_to_none=True)
            q, _, loss = vq(x)
            ((q * probe).sum() + loss).backward()

        return _precision(step)

    return make


def run(device: str, warmup: int, repeats: int, sizes=None, cifar: bool = True) -> list[Row]:
    rows = []
    cuda = device == "cuda"
    for n, d, k, g in sizes or SIZES[device]:
        cfg = dict(N=n, d=d, K=k, codebooks=g)
        print(f"VQ layer fwd+bwd {cfg}", flush=True)
        entries = [
            ("vector-quantize-pytorch 1.32 EMA (rotation trick, default)", make_vqp(n, d, k, g, device, True)),
            ("vector-quantize-pytorch 1.32 EMA (straight-through)", make_vqp(n, d, k, g, device, False)),
            ("plain torch fp32 (GEMM+argmin+gather)", make_plain_torch(n, d, k, device)),
        ]
        if cuda:
            entries.append(("plain torch TF32 (GEMM+argmin+gather)", make_plain_torch(n, d, k, device, tf32=True)))
        entries += [(f"ours {qt}", make_ours(n, d, k, g, device, qt)) for qt in ("vanilla", "ema")]
        if cuda:
            # The torch search path on the GPU (GEMM + argmin; EMA statistics by index_add): what the fused
            # kernel (search_backend="auto" on CUDA) saves.
            entries += [(f"ours {qt}, search_backend='torch'", make_ours(n, d, k, g, device, qt, search_backend="torch"))
                        for qt in ("vanilla", "ema")]
        else:
            # Cache-sized row chunks: the (chunk, K) distance block stays in L2 instead of streaming to DRAM.
            entries.append((f"ours vanilla, search_memory_mb={CPU_CHUNK_MB}",
                            make_ours(n, d, k, g, device, "vanilla", search_memory_mb=CPU_CHUNK_MB)))
        rows += measure_interleaved("vq_fwd_bwd", [(i, cfg, m) for i, m in entries], device, warmup, repeats)
        entries = [("distance GEMM alone fp32", make_gemm_only(n, d, k, device))]
        if cuda:
            entries += [("distance GEMM alone TF32", make_gemm_only(n, d, k, device, True)),
                        ("fused Triton kernel (tf32x3 + fp64 re-check)", make_search(n, d, k, g, device, True))]
        entries.append(("ours chunked GEMM + argmin (search.py)", make_search(n, d, k, g, device, False)))
        rows += measure_interleaved("search", [(i, cfg, m) for i, m in entries], device, warmup, repeats)
    if cifar:
        n, d, k, g = CIFAR_SHAPE
        cfg = dict(N=n, d=d, K=k, codebooks=g)
        print(f"VQ layer fwd+bwd, CIFAR bottleneck {cfg}", flush=True)
        entries = [
            ("vector-quantize-pytorch 1.32 EMA (rotation trick, default)", make_vqp(n, d, k, g, device, True)),
            ("plain torch fp32 (GEMM+argmin+gather)", make_plain_torch_groups(n, d, k, g, device)),
        ] + [(f"ours {qt}", make_ours(n, d, k, g, device, qt)) for qt in ("vanilla", "ema")]
        rows += measure_interleaved("vq_fwd_bwd", [(i, cfg, m) for i, m in entries], device, warmup, repeats)
    return rows


def make_plain_torch_groups(n, d, k, g, device):
    """Plain torch reference with G codebooks over split channels (batched GEMM)."""
    def make():
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(n, d, device=device, generator=gen, requires_grad=True)
        cb = torch.nn.Parameter(torch.randn(g, k, d // g, device=device, generator=gen))
        probe = torch.randn(n, d, device=device, generator=gen)

        def step():
            x.grad = cb.grad = None
            xg = x.view(n, g, d // g).transpose(0, 1)  # (G, N, D)
            with torch.no_grad():
                codes = ((cb * cb).sum(-1)[:, None, :] - 2.0 * torch.bmm(xg, cb.transpose(1, 2))).argmin(-1)
            q = torch.gather(cb, 1, codes[..., None].expand(-1, -1, d // g)).transpose(0, 1).reshape(n, d)
            out = x + (q - x).detach()
            ((out * probe).sum() + _vq_loss(x, q)).backward()

        return _precision(step)

    return make


def main(argv=None):
    run(*parse_timing_args(argv, __doc__.splitlines()[0], cuda_repeats=50))


if __name__ == "__main__":
    main()
