"""Nearest-codeword search: fp32 expansion GEMM + argmin, chunked by a memory budget.

The squared distance ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖² is computed with one batched GEMM per chunk of rows.
‖x‖² does not change the argmin, so it is added only to the selected minimum. Rows are processed in
chunks so that the (G, chunk, K) distance block stays under ``memory_mb``; the N×K matrix is never
materialised for large inputs. On CUDA, when ``vq_hf.quantization.fused_search`` imports and reports
``is_available(x)``, its Triton kernel (distance + argmin in one pass) is used instead, with the same
contract.
"""

from __future__ import annotations

import torch

__all__ = ["flat_code_index", "nearest_codes", "fused_nearest_codes", "use_fused_search", "DEFAULT_SEARCH_MEMORY_MB", "SEARCH_BACKENDS"]

# "auto": the fused Triton kernel on CUDA when Triton imports, the torch path otherwise; "torch": always the
# torch path (the reference); "triton": always the kernel (CUDA, or CPU under Triton's interpreter for tests).
SEARCH_BACKENDS = ("auto", "torch", "triton")

DEFAULT_SEARCH_MEMORY_MB = 256
# On CPU a distance block that stays in cache is faster than one big GEMM + argmin pass over memory
# (benchmarks/README.md: 1.5x faster and 13x less peak memory for N=8192, K=4096 with 2 MiB blocks), so the
# budget there is capped at this size; ``memory_mb`` stays an upper bound everywhere.
CPU_SEARCH_BLOCK_MB = 2

_FUSED = None  # False after a failed import, the module after a successful one
_FUSED_TRIED = False


def _fused_module():
    global _FUSED, _FUSED_TRIED
    if not _FUSED_TRIED:
        _FUSED_TRIED = True
        try:
            from . import fused_search  # noqa: PLC0415 - lazy on purpose: Triton is optional and CUDA-only
        except ImportError:
            fused_search = None
        _FUSED = fused_search
    return _FUSED


def flat_code_index(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``(G, N)`` codes → ``(G·N,)`` row indices into the ``(G·K, D)`` view of a ``(G, K, D)`` codebook (or a
    ``(G·K,)`` histogram): one gather / ``index_add_`` then serves every group at once."""
    G = codes.shape[0]
    return (codes + torch.arange(G, device=codes.device).unsqueeze(1) * codebook_size).reshape(-1)


def use_fused_search(x: torch.Tensor, backend: str = "auto") -> bool:
    """Whether ``backend`` sends the search of ``x`` to the fused Triton kernel.

    Raises:
        ValueError: unknown backend.
        RuntimeError: ``"triton"`` where the kernel cannot run (Triton does not import, or CPU tensors
            without Triton's interpreter).
    """
    if backend not in SEARCH_BACKENDS:
        raise ValueError(f"search backend must be one of {SEARCH_BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    fused = _fused_module()
    if backend == "auto":
        return bool(x.is_cuda and fused is not None and fused.is_available(x))
    if fused is None or not fused.triton_importable():
        raise RuntimeError("search backend 'triton' needs Triton, which does not import here; use 'auto' or 'torch'")
    if not x.is_cuda and not fused.interpreting():
        raise RuntimeError(
            f"search backend 'triton' got {x.device.type} tensors: the kernel runs on CUDA, or on CPU only under "
            "Triton's interpreter (TRITON_INTERPRET=1 set before triton is imported); use 'auto' or 'torch'"
        )
    return True


def fused_nearest_codes(x: torch.Tensor, codebook: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused kernel's search (:func:`vq_hf.quantization.fused_search.fused_nearest_codes`, which also takes
    ``counts`` / ``sums`` / ``weights`` EMA accumulators); call where :func:`use_fused_search` said yes."""
    return _fused_module().fused_nearest_codes(x, codebook, **kwargs)


def nearest_codes(
    x: torch.Tensor,
    codebook: torch.Tensor,
    memory_mb: float = DEFAULT_SEARCH_MEMORY_MB,
    use_fused: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codeword (squared Euclidean) for every row, per codebook.

    Args:
        x: ``(G, N, D)`` float32 vectors (G independent groups).
        codebook: ``(G, K, D)`` float32 codewords.
        memory_mb: budget for one ``(G, chunk, K)`` fp32 distance block; rows are processed in chunks.
        use_fused: allow the Triton kernel on CUDA when it is available.

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
        if use_fused and x.is_cuda:
            fused = _fused_module()
            if fused is not None and fused.is_available(x):
                return fused.fused_nearest_codes(x, codebook)
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
