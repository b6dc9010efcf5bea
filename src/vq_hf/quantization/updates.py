"""Codebook update rules: the gradient rule (eq. 2) and the EMA rule (eq. 4).

Gradient rule (vanilla, reestimating): the loss is
``L_cb + β·L_commit = mean‖sg(z) − e‖² + β·mean‖z − sg(e)‖²``, both element means over the real positions
(N_real·G·D elements), as in the reference. Autograd through ``index_select`` delivers the codebook
gradient with ``index_add`` (no one-hot).

EMA rule: per codebook, ``N_i ← γN_i + (1−γ)n_i``, ``m_i ← γm_i + (1−γ)Σ_j z_j`` and
``w_i = m_i / Ñ_i`` with Laplace smoothing ``Ñ_i = (N_i + ε)/(n + Kε)·n``, ``n = Σ_i N_i``. Unlike the
reference (notes §1.3): the smoothed count is NOT written back into ``N``; the statistics start at
``N_i = 1, m_i = w_i`` (a pseudo-observation of the initial codeword) instead of zeros, so no de-biasing is
needed and an unused codeword keeps its value instead of exploding to ``w/ε``; everything is fp32.
"""

from __future__ import annotations

import torch

__all__ = ["vq_losses", "ema_accumulate_", "ema_apply_"]


def vq_losses(z: torch.Tensor, q: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook and commitment terms of eq. 2.

    Args:
        z: ``(G, N, D)`` fp32 encoder outputs (post-BN), with gradient.
        q: ``(G, N, D)`` fp32 selected codewords, with gradient to the codebook (gradient rule) or without.
        weights: ``(N,)`` fp32, 1 on real positions and 0 on padding.

    Returns:
        ``(codebook_loss, commitment_loss)``, 0-dim fp32; 0 when no position is real.
    """
    G, _, D = z.shape
    denom = (weights.sum() * (G * D)).clamp_min(1.0)
    codebook_loss = (((z.detach() - q) ** 2).sum(-1) * weights).sum() / denom
    commitment_loss = (((z - q.detach()) ** 2).sum(-1) * weights).sum() / denom
    return codebook_loss, commitment_loss


@torch.no_grad()
def ema_accumulate_(
    pending_count: torch.Tensor,
    pending_sum: torch.Tensor,
    z: torch.Tensor,
    codes: torch.Tensor,
    weights: torch.Tensor,
) -> None:
    """Add one micro-batch's assignment counts ``n_i`` and sums ``Σ z_j`` (fp32, ``index_add``).

    Args:
        pending_count: ``(G, K)`` fp32 accumulator.
        pending_sum: ``(G, K, D)`` fp32 accumulator.
        z: ``(G, N, D)`` vectors; codes: ``(G, N)``; weights: ``(N,)`` (0 excludes a position).
    """
    G, K = pending_count.shape
    D = pending_sum.shape[-1]
    N = codes.shape[1]
    flat = (codes + torch.arange(G, device=codes.device).unsqueeze(1) * K).reshape(-1)
    w = weights.to(torch.float32).expand(G, N)
    pending_count.view(-1).index_add_(0, flat, w.reshape(-1).to(pending_count.dtype))
    zw = torch.where(w.unsqueeze(-1) > 0, z.detach().float(), torch.zeros((), device=z.device))
    pending_sum.view(G * K, D).index_add_(0, flat, zw.reshape(G * N, D).to(pending_sum.dtype))


@torch.no_grad()
def ema_apply_(
    codebook: torch.Tensor,
    ema_count: torch.Tensor,
    ema_sum: torch.Tensor,
    pending_count: torch.Tensor,
    pending_sum: torch.Tensor,
    decay: float,
    epsilon: float,
) -> None:
    """Apply eq. 4 with the accumulated statistics, write the codebook, clear the accumulators.

    A codebook that received no real position during the whole step (all-masked batch) is left unchanged
    (decided on the device).
    """
    has_data = pending_count.sum(-1, keepdim=True) > 0  # (G, 1)
    keep = torch.where(has_data, decay, 1.0)
    ema_count.mul_(keep).add_(pending_count * (1.0 - keep))
    ema_sum.mul_(keep.unsqueeze(-1)).add_(pending_sum * (1.0 - keep).unsqueeze(-1))
    K = ema_count.shape[-1]
    n = ema_count.sum(-1, keepdim=True)
    smoothed = (ema_count + epsilon) / (n + K * epsilon) * n
    codebook.copy_(ema_sum / smoothed.unsqueeze(-1))
    pending_count.zero_()
    pending_sum.zero_()
