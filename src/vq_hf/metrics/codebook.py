"""Dataset-level codebook usage: code counts, entropy, perplexity, used codes.

For one codebook with K codes and code frequencies p̂_k = n_k / Σ_j n_j over a whole split,

    H_b   = −Σ_k p̂_k · log_b p̂_k          (entropy in base b: bits for b = 2, nats for b = e)
    pplx  = b^{H_b} = exp(H_e) = 2^{H_2}   (the same number in any base: the effective codebook size)
    used  = #{k : n_k > 0}

Perplexity ranges from 1 (one code used) to K (uniform usage). This is the *dataset-level* value of
the paper's Tables I/II (all positions of a split pooled before the histogram), not the mean of
per-batch perplexities (which is always lower: a batch sees fewer distinct codes). With several
codebooks each is measured separately; ``perplexity_sum`` adds them, the DistSup CIFAR-10 convention
(maximum num_codebooks · K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..quantization.metrics import code_histogram
from ._arrays import check_range, codes_2d, to_numpy


def code_counts(codes: Any, codebook_size: int, *, mask: Any = None) -> np.ndarray:
    """Histogram of codes per codebook.

    Args:
        codes: integer indices, shape ``(..., num_codebooks)`` (the quantizer's layout) or ``(N,)`` for
            one codebook; torch tensors, numpy arrays or nested lists.
        codebook_size: K; every code must lie in ``[0, K)``.
        mask: optional bool of shape ``codes.shape[:-1]``, True on real positions (padding excluded).

    Returns:
        int64 array ``(num_codebooks, K)``. Counts add across batches and across DDP ranks.
    """
    c2 = codes_2d(codes, mask)
    check_range(c2, codebook_size)
    rows = torch.from_numpy(np.ascontiguousarray(c2.T))  # (num_codebooks, num_positions)
    return code_histogram(rows, int(codebook_size), dtype=torch.int64).numpy()


@dataclass
class CodebookPerplexity:
    """Dataset-level usage of each codebook; arrays have shape ``(num_codebooks,)``.

    Attributes:
        perplexity: ``2^{H_2} = exp(H_e)`` per codebook, in ``[1, K]``.
        entropy: ``H`` per codebook in the base given by ``base`` (bits for 2).
        used_codes: number of codes with a non-zero count, per codebook.
        num_positions: number of positions counted (per codebook; the same for all).
        codebook_size: K.
        base: logarithm base of ``entropy``.
    """

    perplexity: np.ndarray
    entropy: np.ndarray
    used_codes: np.ndarray
    num_positions: int
    codebook_size: int
    base: float

    @property
    def perplexity_sum(self) -> float:
        """Σ over codebooks (DistSup CIFAR-10 convention, max num_codebooks · K)."""
        return float(self.perplexity.sum())

    @property
    def entropy_nats(self) -> np.ndarray:
        return self.entropy * math.log(self.base)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly values: scalars for one codebook, lists (one per codebook) otherwise."""

        def val(a: np.ndarray, cast=float):
            vals = [cast(v) for v in a.tolist()]
            return vals[0] if len(vals) == 1 else vals

        return {
            "perplexity": val(self.perplexity),
            "entropy": val(self.entropy),
            "used_codes": val(self.used_codes, int),
            "perplexity_sum": self.perplexity_sum,
            "num_positions": int(self.num_positions),
            "codebook_size": int(self.codebook_size),
            "base": float(self.base),
        }


def entropy_from_counts(counts: Any, base: float = 2.0) -> np.ndarray:
    """Entropy of the empirical distribution of each row of ``counts`` ``(num_codebooks, K)``, in base ``base``.

    Rows that sum to zero (nothing counted) raise: their entropy is undefined.
    """
    c = to_numpy(counts).astype(np.float64)
    if c.ndim == 1:
        c = c[None]
    if c.ndim != 2:
        raise ValueError(f"counts: expected shape (num_codebooks, codebook_size), got {tuple(c.shape)}")
    if (c < 0).any():
        raise ValueError("counts: negative entries")
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and != 1, got {base!r}")
    totals = c.sum(axis=1, keepdims=True)
    empty = np.flatnonzero(totals[:, 0] == 0)
    if empty.size:
        raise ValueError(f"counts: codebook(s) {empty.tolist()} have no counted positions; entropy is undefined")
    p = c / totals
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return np.maximum(-plogp.sum(axis=1) / math.log(base), 0.0)  # 0.0, not -0.0, for a single used code


def codebook_perplexity(
    codes: Any = None,
    codebook_size: int | None = None,
    base: float = 2.0,
    *,
    mask: Any = None,
    counts: Any = None,
) -> CodebookPerplexity:
    """Dataset-level perplexity ``2^H`` (= ``exp(H_nats)``), entropy and used codes per codebook.

    Pass either the codes of the whole split (``codes`` ``(..., num_codebooks)`` or ``(N,)``, with an
    optional padding ``mask``) or accumulated ``counts`` ``(num_codebooks, K)`` from :func:`code_counts`
    (summed over batches / ranks) — streaming evaluation keeps only the counts.

    Example: codes ``[0, 0, 1, 1]`` with K = 4 → H = 1 bit, perplexity 2, used_codes 2.
    """
    if (codes is None) == (counts is None):
        raise ValueError("codebook_perplexity: pass exactly one of `codes` or `counts`")
    if counts is None:
        if codebook_size is None:
            raise ValueError("codebook_perplexity: `codebook_size` is required with `codes`")
        counts = code_counts(codes, codebook_size, mask=mask)
    else:
        counts = to_numpy(counts)
        if counts.ndim == 1:
            counts = counts[None]
        if codebook_size is not None and counts.shape[-1] != int(codebook_size):
            raise ValueError(
                f"counts: last dimension {counts.shape[-1]} does not match codebook_size={codebook_size}"
            )
    entropy = entropy_from_counts(counts, base)
    perplexity = np.power(float(base), entropy)
    return CodebookPerplexity(
        perplexity=perplexity,
        entropy=entropy,
        used_codes=(np.asarray(counts) > 0).sum(axis=1).astype(np.int64),
        num_positions=int(np.asarray(counts)[0].sum()),
        codebook_size=int(np.asarray(counts).shape[-1]),
        base=float(base),
    )
