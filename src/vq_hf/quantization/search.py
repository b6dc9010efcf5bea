"""Nearest-codeword search on torch: fp32 expansion GEMM + argmin, chunked by a memory budget.

The squared distance ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖² is computed with one batched GEMM per chunk of rows.
‖x‖² does not change the argmin, so it is added only to the selected minimum. Rows are processed in
chunks so that the (G, chunk, K) distance block stays under ``memory_mb``; the N×K matrix is never
materialised for large inputs.

This is the reference, the CPU path and the fallback of the fused Triton kernel (``fused_search.py``); it
imports nothing of this package, so both can build on it. Which of the two serves a call is decided in one
place, :func:`vq_hf.quantization.backend.select_search`.
"""

from __future__ import annotations

import torch

__all__ = [
    "flat_code_index",
    "chunked_nearest_codes",
    "DEFAULT_SEARCH_MEMORY_MB",
    "CPU_SEARCH_BLOCK_MB",
    "SEARCH_BACKENDS",
]

# "auto": the fused Triton kernel on CUDA when Triton imports, the torch path otherwise; "torch": always the
# torch path (the reference); "triton": always the kernel (CUDA, or CPU under Triton's interpreter for tests).
SEARCH_BACKENDS = ("auto", "torch", "triton")

DEFAULT_SEARCH_MEMORY_MB = 256
# On CPU a distance block that stays in cache is faster than one big GEMM + argmin pass over memory
# (benchmarks/README.md: 1.5x faster and 13x less peak memory for N=8192, K=4096 with 2 MiB blocks), so the
# budget there is capped at this size; ``memory_mb`` stays an upper bound everywhere.
CPU_SEARCH_BLOCK_MB = 2


def flat_code_index(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``(G, N)`` codes → ``(G·N,)`` row indices into the ``(G·K, D)`` view of a ``(G, K, D)`` codebook (or a
    ``(G·K,)`` histogram): one gather / ``index_add_`` then serves every group at once."""
    G = codes.shape[0]
    return (codes + torch.arange(G, device=codes.device).unsqueeze(1) * codebook_size).reshape(-1)


def chunked_nearest_codes(
    x: torch.Tensor,
    codebook: torch.Tensor,
    memory_mb: float = DEFAULT_SEARCH_MEMORY_MB,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codeword (squared Euclidean) for every row, per codebook, on torch.

    Args:
        x: ``(G, N, D)`` vectors (G independent groups); computed in float32.
        codebook: ``(G, K, D)`` codewords; computed in float32.
        memory_mb: budget for one ``(G, chunk, K)`` fp32 distance block; rows are processed in chunks.

    Returns:
        codes ``(G, N)`` int64 and distances ``(G, N)`` float32, the squared distance to the chosen code
        (clamped at 0 against cancellation). Ties go to the lowest index.
    """
    if x.dim() != 3 or codebook.dim() != 3:
        raise ValueError(
            f"nearest_codes expects x (G, N, D) and codebook (G, K, D); got x {tuple(x.shape)}, "
            f"codebook {tuple(codebook.shape)}"
        )
    if x.shape[0] != codebook.shape[0] or x.shape[2] != codebook.shape[2]:
        raise ValueError(
            f"nearest_codes: x {tuple(x.shape)} and codebook {tuple(codebook.shape)} disagree on G or D"
        )
    if codebook.shape[1] < 1:
        raise ValueError("nearest_codes: codebook has no codewords (K = 0)")
    if memory_mb <= 0:
        raise ValueError(f"nearest_codes: memory_mb must be > 0, got {memory_mb}")
    # Distances in fp32 even under autocast: bf16 cancellation picks wrong codes on un-centred data.
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        codebook = codebook.float()
        G, N, _ = x.shape
        K = codebook.shape[1]
        codes = torch.empty(G, N, dtype=torch.long, device=x.device)
        dists = torch.empty(G, N, dtype=torch.float32, device=x.device)
        if N == 0:
            return codes, dists
        cb_t = codebook.transpose(1, 2)  # (G, D, K)
        cb_sq = (codebook * codebook).sum(-1).unsqueeze(1)  # (G, 1, K)
        budget = memory_mb if x.is_cuda else min(memory_mb, CPU_SEARCH_BLOCK_MB)
        rows = max(1, int(budget * 2**20) // (4 * G * K))
        for start in range(0, N, rows):
            xc = x[:, start : start + rows]
            # ‖c‖² − 2 x·c, then argmin; ‖x‖² is added to the minimum only.
            partial = torch.baddbmm(cb_sq, xc, cb_t, beta=1.0, alpha=-2.0)
            best, idx = partial.min(dim=-1)
            codes[:, start : start + rows] = idx
            dists[:, start : start + rows] = (best + (xc * xc).sum(-1)).clamp_min_(0.0)
        return codes, dists
