"""Bits per dimension, latent rates and negative ELBOs (the paper's Tables II and III).

Notation: a split has D data dimensions in total (sub-pixels), its decoder assigns a total negative
log-likelihood NLL (nats) to the data given the codes, and the encoder emits L latent positions, each
carrying one code from each of G codebooks of size K.

* Reconstruction bits/dim:   ``BPD = NLL / (D · ln 2)``                           :func:`bits_per_dim`
* Uniform rate (bits):       ``R_uni = L · G · log2 K``                            :func:`uniform_rate_bits`
* Unigram rate (bits):       ``R_uni-gram = −Σ_{l,g} log2 p̂_g(z_{l,g})``          :func:`unigram_rate_bits`
  with ``p̂_g`` the code frequencies of codebook g estimated on a dataset split (by default, the codes
  being scored, in which case ``R = L · Σ_g H_g`` with ``H_g`` the dataset-level entropy in bits).
* NELBO bits/dim:            ``(NLL / ln 2 + R) / D``                              :func:`nelbo_bits_per_dim`

The NELBO is the cost of transmitting the data: the codes under a prior p(z) plus the data under the
decoder given the codes, ``−ELBO = −log p(x|z=q(x)) − log p(z=q(x))`` (paper eq. 9; q is deterministic
so the KL term reduces to ``−log p(z)``).

What the published numbers are:

* **CIFAR-10 (Table III).** D = 3 · 32 · 32 = 3072 per image, 256 levels per sub-pixel (max 8 bits/dim),
  an 8 × 8 latent grid (L = 64 per image). The column "Reconstruction BPD" is the **uniform NELBO**,
  ``BPD + 64 · G · log2 K / 3072``: DistSup's ``bpd`` adds the uniform-prior rate (1.1667 bits/dim for
  8 × 128, 1.0417 for 5 × 1024), as does the VQ-VAE paper's 4.67 for 10 × 512. Compare our
  ``uniform_nelbo_bits_per_dim`` with Table III, not ``reconstruction_bits_per_dim``.
  Bits/dim computed on JPEG-compressed CIFAR images (our embedded sample) are not comparable with
  numbers on the lossless dataset.
* **ScribbleLens (Table II).** Gray pixels quantised to 4 levels (target ``min(⌊4x⌋, 3)``; max 2 bits/dim),
  32 rows, one latent per 4 columns (so one latent covers 4 · 32 = 128 dims), K = 4096. "Rec. BPD" is
  the reconstruction BPD alone; "Uniform NELBO" = ``BPD + log2(4096)/128`` (= BPD + 0.09375); "Unigram
  NELBO" = ``BPD + log2(pplx)/128``, i.e. our unigram rate with p̂ estimated on the scored split
  (``log2 pplx = H``). Padded columns are excluded from D and from the latents.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._arrays import check_range, codes_2d, to_numpy
from .codebook import code_counts, entropy_from_counts

LN2 = math.log(2.0)

CIFAR10_DIMS_PER_IMAGE = 3 * 32 * 32
CIFAR10_LATENTS_PER_IMAGE = 8 * 8
HANDWRITING_LEVELS = 4
HANDWRITING_ROWS = 32
HANDWRITING_COLUMNS_PER_LATENT = 4
HANDWRITING_DIMS_PER_LATENT = HANDWRITING_ROWS * HANDWRITING_COLUMNS_PER_LATENT


def _total(x: Any, name: str) -> float:
    arr = to_numpy(x).astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains non-finite values")
    return float(arr.sum())


def _positive_dims(num_dims: Any) -> float:
    d = _total(num_dims, "num_dims")
    if d <= 0:
        raise ValueError(f"num_dims must be positive, got {d!r}")
    return d


def bits_per_dim(nll_nats_total: Any, num_dims: Any) -> float:
    """Pooled reconstruction bits per dimension: ``Σ NLL_nats / (Σ num_dims · ln 2)``.

    Args:
        nll_nats_total: total negative log-likelihood in nats (a scalar, or per-example totals that are
            summed — never a mean of per-batch bits/dim).
        num_dims: number of data dimensions scored (scalar or per-example, summed), e.g. 3072 per
            CIFAR-10 image, ``32 · real columns`` per handwriting line.
    """
    return _total(nll_nats_total, "nll_nats_total") / (_positive_dims(num_dims) * LN2)


def uniform_rate_bits(num_latents: Any, codebook_size: int, num_codebooks: int = 1) -> float:
    """Bits to send ``num_latents`` positions × ``num_codebooks`` codes under a uniform prior 1/K.

    ``num_latents · num_codebooks · log2 K``; e.g. one CIFAR-10 image with 8 × 128 codebooks:
    64 · 8 · 7 = 3584 bits (1.1667 bits/dim).
    """
    if int(codebook_size) < 1:
        raise ValueError(f"codebook_size must be a positive integer, got {codebook_size!r}")
    if int(num_codebooks) < 1:
        raise ValueError(f"num_codebooks must be a positive integer, got {num_codebooks!r}")
    n = _total(num_latents, "num_latents")
    if n < 0:
        raise ValueError(f"num_latents must be non-negative, got {n!r}")
    return n * int(num_codebooks) * math.log2(int(codebook_size))


def unigram_rate_bits(
    codes: Any,
    codebook_size: int,
    counts: Any = None,
    *,
    mask: Any = None,
    smoothing: float = 0.0,
) -> float:
    """Bits to send ``codes`` under a unigram prior per codebook: ``−Σ_{l,g} log2 p̂_g(z_{l,g})``.

    Args:
        codes: integer codes ``(..., num_codebooks)`` (the quantizer's layout) or ``(N,)`` for one codebook.
        codebook_size: K.
        counts: ``(num_codebooks, K)`` code counts that define ``p̂_g = (n_gk + α) / (Σ_k n_gk + α·K)``,
            estimated on a dataset split (e.g. train, with :func:`~vq_hf.metrics.code_counts`). ``None``
            estimates them on ``codes`` themselves, giving ``L · Σ_g H_g`` — the paper's Table II
            "Unigram NELBO" rate.
        mask: optional bool ``codes.shape[:-1]``, True on real positions.
        smoothing: additive (Laplace) pseudo-count α. With α = 0 a code that never occurs in ``counts``
            has probability 0 and infinite cost: that raises, naming how many codes are affected.
    """
    c2 = codes_2d(codes, mask)
    check_range(c2, codebook_size)
    k = int(codebook_size)
    if counts is None:
        counts_arr = code_counts(c2, k)
    else:
        counts_arr = to_numpy(counts).astype(np.float64)
        if counts_arr.ndim == 1:
            counts_arr = counts_arr[None]
        if counts_arr.shape != (c2.shape[1], k):
            raise ValueError(
                f"counts: shape {tuple(counts_arr.shape)} does not match (num_codebooks={c2.shape[1]}, "
                f"codebook_size={k})"
            )
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing!r}")
    if c2.shape[0] == 0:
        return 0.0
    counts_arr = np.asarray(counts_arr, dtype=np.float64) + float(smoothing)
    totals = counts_arr.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise ValueError("counts: a codebook has no counts; the unigram prior is undefined")
    probs = counts_arr / totals
    p = probs[np.arange(c2.shape[1])[None, :], c2]  # (N, G): probability of each emitted code
    zero = int((p == 0).sum())
    if zero:
        raise ValueError(
            f"unigram_rate_bits: {zero} code(s) have zero probability under `counts` (never seen in the split "
            f"the prior was estimated on); pass smoothing > 0 (e.g. 1.0) or estimate counts on more data"
        )
    return float(-np.log2(p).sum())


def nelbo_bits_per_dim(recon_bits_total: Any, rate_bits_total: Any, num_dims: Any) -> float:
    """Negative ELBO in bits per dimension: ``(recon_bits_total + rate_bits_total) / num_dims``.

    ``recon_bits_total`` is the decoder NLL in **bits** (``NLL_nats / ln 2``); ``rate_bits_total`` is
    :func:`uniform_rate_bits` or :func:`unigram_rate_bits`.
    """
    return (_total(recon_bits_total, "recon_bits_total") + _total(rate_bits_total, "rate_bits_total")) / (
        _positive_dims(num_dims)
    )


def nelbo_report(
    nll_nats_total: Any,
    num_dims: Any,
    codes: Any,
    codebook_size: int,
    *,
    counts: Any = None,
    mask: Any = None,
    smoothing: float = 0.0,
) -> dict[str, float]:
    """All the numbers of Tables II/III for a split, from its total NLL and its codes.

    Returns a dict with ``reconstruction_bits_per_dim`` (BPD), ``uniform_rate_bits_per_dim``,
    ``unigram_rate_bits_per_dim``, ``uniform_nelbo_bits_per_dim`` (Table III's "Reconstruction BPD" on
    CIFAR-10, Table II's "Uniform NELBO"), ``unigram_nelbo_bits_per_dim`` (Table II's "Unigram NELBO"),
    ``codebook_entropy_bits`` (Σ over codebooks of the code entropy under the prior, per latent position),
    ``num_dims``, ``num_latents`` (positions) and ``num_codebooks``.
    """
    c2 = codes_2d(codes, mask)
    check_range(c2, codebook_size)
    dims = _positive_dims(num_dims)
    recon_bits = _total(nll_nats_total, "nll_nats_total") / LN2
    uni = uniform_rate_bits(c2.shape[0], codebook_size, c2.shape[1])
    ug = unigram_rate_bits(c2, codebook_size, counts, smoothing=smoothing)
    prior_counts = code_counts(c2, codebook_size) if counts is None else counts
    return {
        "reconstruction_bits_per_dim": recon_bits / dims,
        "uniform_rate_bits_per_dim": uni / dims,
        "unigram_rate_bits_per_dim": ug / dims,
        "uniform_nelbo_bits_per_dim": (recon_bits + uni) / dims,
        "unigram_nelbo_bits_per_dim": (recon_bits + ug) / dims,
        "codebook_entropy_bits": float(entropy_from_counts(to_numpy(prior_counts) + smoothing, 2.0).sum()),
        "num_dims": int(dims) if float(dims).is_integer() else dims,
        "num_latents": int(c2.shape[0]),
        "num_codebooks": int(c2.shape[1]),
    }
