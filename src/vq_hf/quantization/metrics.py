"""Codebook-usage metrics: per-batch histograms, perplexity, and a dataset-level accumulator.

Perplexity is exp(H) with H the entropy (nats) of the code histogram, i.e. 2^H with H in bits — the same
number; the paper reports it over all tokens of a dataset (use :class:`CodebookUsageAccumulator`).
"""

from __future__ import annotations

import torch

from .distributed import all_reduce_sum_
from .search import flat_code_index

__all__ = ["code_histogram", "perplexity_from_counts", "update_usage_", "CodebookUsageAccumulator"]


def code_histogram(
    codes: torch.Tensor,
    codebook_size: int,
    weights: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-codebook histogram with ``index_add`` (no one-hot): the one code histogram of the package (the
    quantizer's batch statistics, :func:`vq_hf.metrics.code_counts`, the evaluation's per-example counts).

    Args:
        codes: ``(G, N)`` int64 code indices (G independent rows: codebooks, or examples × codebooks).
        codebook_size: K.
        weights: ``(N,)`` or ``(G, N)`` weights (1 for real positions, 0 for padding) or None.
        dtype: of the counts; float32 is exact up to 2^24 per code, ``torch.int64`` for dataset-level counts.

    Returns:
        ``(G, K)`` counts.
    """
    G, N = codes.shape
    flat = flat_code_index(codes, codebook_size)
    if weights is None:
        w = torch.ones(G * N, dtype=dtype, device=codes.device)
    else:
        w = weights.to(dtype).expand(G, N).reshape(-1)
    hist = torch.zeros(G * codebook_size, dtype=dtype, device=codes.device)
    hist.index_add_(0, flat, w)
    return hist.view(G, codebook_size)


def perplexity_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of each row of ``counts`` ``(..., K)``; an all-zero row gives 1."""
    counts = counts.to(torch.float64)
    total = counts.sum(-1, keepdim=True)
    p = counts / total.clamp_min(1e-300)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    return torch.exp(entropy).to(torch.float32)


@torch.no_grad()
def update_usage_(
    usage_ema: torch.Tensor, last_used_step: torch.Tensor, hist: torch.Tensor, step: int, decay: float
) -> None:
    """A training forward's usage bookkeeping: blend the batch's code distribution into ``usage_ema``
    (``(G, K)``, behind ``running_perplexity``; the first batch with data sets it) and stamp ``step`` on
    the codes used (``last_used_step``, behind ``dead_code_fraction``). Device-side decisions only."""
    total = hist.sum(-1, keepdim=True)
    p = hist / total.clamp_min(1.0)
    started = usage_ema.sum(-1, keepdim=True) > 0
    d = torch.where(started, decay, 0.0)
    usage_ema.copy_(torch.where(total > 0, d * usage_ema + (1 - d) * p, usage_ema))
    last_used_step.copy_(torch.where(hist > 0, step, last_used_step))


class CodebookUsageAccumulator:
    """Dataset-level code usage: accumulate histograms over many batches, then compute perplexity.

    ``compute()`` sums the histograms over DDP ranks (a collective: call it on every rank).

    Example:
        >>> acc = CodebookUsageAccumulator(num_codebooks=1, codebook_size=4)
        >>> acc.update(torch.tensor([[0], [1], [1], [3]]))
        >>> acc.compute()["used_codes"].tolist()
        [3]
    """

    def __init__(self, num_codebooks: int, codebook_size: int, device: torch.device | str | None = None):
        if num_codebooks < 1:
            raise ValueError(f"num_codebooks must be >= 1, got {num_codebooks}")
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.counts = torch.zeros(num_codebooks, codebook_size, dtype=torch.float64, device=device)

    def reset(self) -> None:
        self.counts.zero_()

    @torch.no_grad()
    def update(self, codes: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            codes: ``(..., num_codebooks)`` int64, as returned in ``VectorQuantizerOutput.codes``.
            mask: ``(...)`` bool, True on real positions (padding is not counted), or None.
        """
        if codes.dim() < 1 or codes.shape[-1] != self.num_codebooks:
            raise ValueError(
                f"codes must have shape (..., {self.num_codebooks}); got {tuple(codes.shape)}"
            )
        if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
        flat = codes.reshape(-1, self.num_codebooks).long()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}); got range [{int(flat.min())}, {int(flat.max())}]"
            )
        weights = None
        if mask is not None:
            if tuple(mask.shape) != tuple(codes.shape[:-1]):
                raise ValueError(f"mask shape {tuple(mask.shape)} must equal codes.shape[:-1] {tuple(codes.shape[:-1])}")
            weights = mask.reshape(-1).to(device=flat.device, dtype=torch.float32)
        if self.counts.device != flat.device:
            self.counts = self.counts.to(flat.device)
        hist = code_histogram(flat.t(), self.codebook_size, weights)
        self.counts += hist.to(torch.float64)

    @torch.no_grad()
    def compute(self) -> dict[str, torch.Tensor]:
        """``perplexity`` (G,) = 2^H(bits) over everything seen (all ranks), ``entropy_bits`` (G,),
        ``used_codes`` (G,) int64, ``num_tokens`` (0-dim) positions counted (per codebook)."""
        counts = all_reduce_sum_(self.counts.clone())
        total = counts.sum(-1)
        p = counts / total.unsqueeze(-1).clamp_min(1e-300)
        entropy_bits = -(p * torch.log2(p.clamp_min(1e-300))).sum(-1)
        return {
            "perplexity": torch.pow(2.0, entropy_bits).to(torch.float32),
            "entropy_bits": entropy_bits.to(torch.float32),
            "used_codes": (counts > 0).sum(-1),
            "num_tokens": total[0].round().to(torch.int64),
        }
