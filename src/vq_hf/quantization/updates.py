"""Codebook update rules: the gradient rule (eq. 2) and the EMA rule (eq. 4).

Gradient rule (vanilla, reestimating): the loss is
``L_cb + β·L_commit = mean‖sg(z) − e‖² + β·mean‖z − sg(e)‖²``, both element means over the real positions
(N_real·G·D elements), as in the reference. :func:`gradient_rule_step` computes the gather, both terms and
the straight-through output as one autograd node whose backward is one fused multiply-add for ``z`` and one
``index_add`` for the codebook (no one-hot); the EMA rule uses the same node with a codebook that has no
gradient.

EMA rule: per codebook, ``N_i ← γN_i + (1−γ)n_i``, ``m_i ← γm_i + (1−γ)Σ_j z_j`` and
``w_i = m_i / Ñ_i`` with Laplace smoothing ``Ñ_i = (N_i + ε)/(n + Kε)·n``, ``n = Σ_i N_i``. Unlike the
reference (notes §1.3): the smoothed count is NOT written back into ``N``; the statistics start at
``N_i = 1, m_i = w_i`` (a pseudo-observation of the initial codeword) instead of zeros, so no de-biasing is
needed and an unused codeword keeps its value instead of exploding to ``w/ε``; everything is fp32.
"""

from __future__ import annotations

import torch

from .search import flat_code_index

__all__ = ["gradient_rule_step", "ema_accumulate_", "ema_apply_"]


class _GradientRuleStep(torch.autograd.Function):
    """Gather + eq. 2 losses + straight-through as one autograd node.

    Why a custom node: autograd through ``index_select``, two squared errors, masks and means records ~25
    small operators per step, each a kernel launch on a GPU, where the bottleneck is launch-bound. The two
    losses have the same value (``mean‖z − e‖²``) and analytic gradients, so one saved tensor
    ``w·(z − e)`` serves the whole backward:

        ∂L/∂z = ∂L/∂out + 2(β·g_loss + g_commit)/n · w(z − e)        (straight-through + commitment)
        ∂L/∂e_k = −2(g_loss + g_codebook)/n · Σ_{j: code j = k} w_j(z_j − e_k)   (one index_add)

    with n = N_real·G·D. Not twice differentiable (``once_differentiable``).
    """

    @staticmethod
    def forward(ctx, z, codebook, codes, weights, commitment_cost):
        G, N, D = z.shape
        K = codebook.shape[1]
        flat = flat_code_index(codes, K)
        q = codebook.reshape(G * K, D).index_select(0, flat).view(G, N, D)
        diff = z - q
        wd = diff * weights.view(1, N, 1)
        two_over_n = 2.0 / (weights.sum() * (G * D)).clamp_min(1.0)
        # weights are 0/1, so Σ w(z − e)·(z − e) is the masked squared error in one reduction.
        mse = torch.dot(wd.reshape(-1), diff.reshape(-1)) * (0.5 * two_over_n)
        ctx.save_for_backward(wd, flat, two_over_n)
        ctx.commitment_cost = commitment_cost
        ctx.codebook_shape = codebook.shape
        ctx.set_materialize_grads(False)  # unused outputs get no zero tensors (and no kernels) in backward
        codebook_loss, commitment_loss = mse, mse.clone()
        if not codebook.requires_grad:
            ctx.mark_non_differentiable(codebook_loss)  # EMA rule: the codebook term has nothing to train
        return q, mse * (1.0 + commitment_cost), codebook_loss, commitment_loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, g_loss, g_codebook, g_commit):
        wd, flat, two_over_n = ctx.saved_tensors
        grad_z = grad_codebook = None
        if ctx.needs_input_grad[0]:
            coef = _sum_grads(g_loss, ctx.commitment_cost, g_commit)
            if coef is None:
                grad_z = grad_out
            else:
                scale = coef * two_over_n
                grad_z = wd * scale if grad_out is None else torch.addcmul(grad_out, wd, scale)
        if ctx.needs_input_grad[1]:
            coef = _sum_grads(g_loss, 1.0, g_codebook)
            if coef is not None:
                G, K, D = ctx.codebook_shape
                summed = torch.zeros(G * K, D, dtype=wd.dtype, device=wd.device).index_add_(0, flat, wd.reshape(-1, D))
                grad_codebook = (summed * (coef * -two_over_n)).view(G, K, D)
        return grad_z, grad_codebook, None, None, None


def _sum_grads(g_loss, loss_weight, g_term):
    """``loss_weight·g_loss + g_term`` for incoming gradients that may be None (output not used)."""
    if g_loss is None:
        return g_term
    scaled = g_loss * loss_weight if loss_weight != 1.0 else g_loss
    return scaled if g_term is None else scaled + g_term


def gradient_rule_step(
    z: torch.Tensor, codebook: torch.Tensor, codes: torch.Tensor, weights: torch.Tensor, commitment_cost: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize with the straight-through estimator and the eq. 2 losses.

    Args:
        z: ``(G, N, D)`` fp32 encoder outputs (post-BN), with gradient.
        codebook: ``(G, K, D)`` fp32 codewords; with ``requires_grad`` (gradient rule) the codebook loss
            reaches it, without (EMA rule) only ``z`` gets gradients.
        codes: ``(G, N)`` int64 chosen codewords.
        weights: ``(N,)`` fp32, 1 on real positions and 0 on padding.
        commitment_cost: β.

    Returns:
        ``(quantized, loss, codebook_loss, commitment_loss)``: ``quantized`` (G, N, D) equals the chosen
        codewords exactly (so ``decode(codes)`` reproduces it bit for bit) with the gradient passed straight
        to ``z``; ``loss = codebook_loss + β·commitment_loss``; the two terms are element means over the
        N_real·G·D real elements, 0 when no position is real.
    """
    return _GradientRuleStep.apply(z, codebook, codes, weights, float(commitment_cost))


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
    flat = flat_code_index(codes, K)
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
