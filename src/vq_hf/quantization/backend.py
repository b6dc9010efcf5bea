"""The choice of nearest-code search, made in one place: :func:`select_search`.

Two implementations return the same thing (``codes (G, N) int64, distances (G, N) fp32``): the chunked torch
GEMM search (``search.py``, the reference) and the fused Triton kernel (``fused_search.py``), which can also
add the EMA statistics (per-code counts and sums) of the assignment in its epilogue. The quantizer and k-means
ask :func:`select_search` which one serves a tensor and call what it returns; neither module below imports
this one, so the three form no circle. ``fused_search`` is imported on first use only: Triton is optional and
its import is slow.
"""

from __future__ import annotations

from typing import Optional

import torch

from .search import DEFAULT_SEARCH_MEMORY_MB, SEARCH_BACKENDS, chunked_nearest_codes

__all__ = ["NearestCodeSearch", "select_search", "nearest_codes"]

_FUSED = None  # None after a failed import, the module after a successful one
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


class NearestCodeSearch:
    """A search chosen by :func:`select_search`; call it as ``search(x, codebook, memory_mb=..., counts=None,
    sums=None, weights=None) -> (codes, distances)``.

    ``accumulates_statistics`` says whether ``counts`` (G, K) / ``sums`` (G, K, D) (and optional ``weights``
    (N,)) may be passed to have the assignment's EMA statistics added to them in place (the fused kernel's
    epilogue). ``memory_mb`` is the chunked torch search's distance-block budget.
    """

    __slots__ = ("name", "accumulates_statistics")

    def __init__(self, name: str, accumulates_statistics: bool):
        self.name = name
        self.accumulates_statistics = accumulates_statistics

    def __call__(
        self,
        x: torch.Tensor,
        codebook: torch.Tensor,
        *,
        memory_mb: float = DEFAULT_SEARCH_MEMORY_MB,
        counts: Optional[torch.Tensor] = None,
        sums: Optional[torch.Tensor] = None,
        weights: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.accumulates_statistics:
            return _fused_module().fused_nearest_codes(x, codebook, counts=counts, sums=sums, weights=weights)
        if counts is not None or sums is not None or weights is not None:
            raise ValueError("the torch search does not accumulate statistics; see NearestCodeSearch.accumulates_statistics")
        return chunked_nearest_codes(x, codebook, memory_mb=memory_mb)

    def __repr__(self) -> str:
        return f"NearestCodeSearch({self.name!r})"


_TORCH_SEARCH = NearestCodeSearch("torch", accumulates_statistics=False)
_FUSED_SEARCH = NearestCodeSearch("triton", accumulates_statistics=True)


def select_search(x: torch.Tensor, backend: str = "auto") -> NearestCodeSearch:
    """The search ``backend`` (one of :data:`vq_hf.quantization.search.SEARCH_BACKENDS`) uses for ``x``.

    ``"auto"``: the fused kernel for CUDA tensors when it is available
    (:func:`vq_hf.quantization.fused_search.is_available`), the torch search otherwise; ``"torch"``: always
    the torch search; ``"triton"``: always the kernel.

    Raises:
        ValueError: unknown backend.
        RuntimeError: ``"triton"`` where the kernel cannot run (Triton does not import, or CPU tensors
            without Triton's interpreter).
    """
    if backend not in SEARCH_BACKENDS:
        raise ValueError(f"search backend must be one of {SEARCH_BACKENDS}, got {backend!r}")
    if backend == "torch":
        return _TORCH_SEARCH
    fused = _fused_module()
    if backend == "auto":
        return _FUSED_SEARCH if (x.is_cuda and fused is not None and fused.is_available(x)) else _TORCH_SEARCH
    if fused is None or not fused.triton_importable():
        raise RuntimeError("search backend 'triton' needs Triton, which does not import here; use 'auto' or 'torch'")
    if not x.is_cuda and not fused.interpreting():
        raise RuntimeError(
            f"search backend 'triton' got {x.device.type} tensors: the kernel runs on CUDA, or on CPU only under "
            "Triton's interpreter (TRITON_INTERPRET=1 set before triton is imported); use 'auto' or 'torch'"
        )
    return _FUSED_SEARCH


def nearest_codes(
    x: torch.Tensor,
    codebook: torch.Tensor,
    memory_mb: float = DEFAULT_SEARCH_MEMORY_MB,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codeword (squared Euclidean) for every row, per codebook, by the search :func:`select_search`
    picks (the Triton kernel on CUDA when available with ``"auto"``).

    Args:
        x: ``(G, N, D)`` vectors (G independent groups); computed in float32, also under autocast.
        codebook: ``(G, K, D)`` codewords.
        memory_mb: budget for one ``(G, chunk, K)`` fp32 distance block of the torch search.
        backend: one of :data:`vq_hf.quantization.search.SEARCH_BACKENDS`.

    Returns:
        codes ``(G, N)`` int64 and distances ``(G, N)`` float32, the squared distance to the chosen code
        (clamped at 0 against cancellation). Ties go to the lowest index.
    """
    search = select_search(x, backend)
    # Distances in fp32 even under autocast: bf16 cancellation picks wrong codes on un-centred data.
    with torch.autocast(device_type=x.device.type, enabled=False):
        return search(x.float(), codebook.float(), memory_mb=memory_mb)
