"""Masked batch normalisation over the last (channel) axis; padding is excluded from the statistics."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskedBatchNorm"]


class MaskedBatchNorm(nn.Module):
    """Batch norm for ``(..., C)`` inputs whose statistics ignore padded positions.

    In training, each channel is normalised with the mean and (biased) variance over the real positions
    of the batch, and the running statistics are updated with the unbiased variance, as
    ``nn.BatchNorm1d`` does. In eval, the running statistics are used. Statistics are computed in fp32
    under autocast; the output has the input's dtype.

    A batch with no real position leaves the running statistics untouched (decided on the device, no
    host synchronisation) and is normalised with the running statistics.

    Statistics are per process: under DDP every rank normalises with its own batch (like
    ``nn.BatchNorm``, not ``SyncBatchNorm``).

    Args:
        num_features: C.
        eps: added to the variance.
        momentum: running-statistics update rate.
        affine: learn a per-channel scale and shift.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()
            if self.affine:
                self.weight.fill_(1.0)
                self.bias.zero_()

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise.

        Args:
            x: ``(..., C)``.
            mask: ``(...)`` bool, True on real positions; None means all real.

        Returns:
            ``(..., C)`` in ``x.dtype``.
        """
        if x.dim() < 1 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"MaskedBatchNorm({self.num_features}): x must have shape (..., {self.num_features}); "
                f"got {tuple(x.shape)}"
            )
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:-1]):
            raise ValueError(
                f"MaskedBatchNorm: mask shape {tuple(mask.shape)} must equal x.shape[:-1] {tuple(x.shape[:-1])}"
            )
        dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float().reshape(-1, self.num_features)
            if self.training:
                if mask is None:
                    real = torch.ones(xf.shape[0], 1, dtype=torch.bool, device=x.device)
                else:
                    real = mask.reshape(-1, 1).to(device=x.device, dtype=torch.bool)
                weight = self.weight.float() if self.affine else None
                bias = self.bias.float() if self.affine else None
                y, mean, var, n = _MaskedBatchNormTrain.apply(
                    xf, real, weight, bias, self.running_mean, self.running_var, self.eps
                )
                with torch.no_grad():
                    has_data = n > 0
                    unbiased = var * (n / (n - 1.0).clamp_min(1.0))
                    mom = self.momentum * has_data.float()  # 0 leaves the running statistics untouched
                    self.running_mean.lerp_(mean, mom)
                    self.running_var.lerp_(unbiased, mom)
                    self.num_batches_tracked.add_(has_data.long())
            else:
                y = (xf - self.running_mean) * torch.rsqrt(self.running_var + self.eps)
                if self.affine:
                    y = torch.addcmul(self.bias.float(), y, self.weight.float())
        return y.reshape(x.shape).to(dtype)


class _MaskedBatchNormTrain(torch.autograd.Function):
    """Training-mode masked batch norm as one autograd node.

    Why: written with autograd ops it records ~65 small operators per forward + backward (masks, two
    reductions, ``where`` for the no-data case, the affine map), each a kernel launch on a GPU. With
    ``x̂ = (x − μ)·r``, ``r = (σ² + ε)^{-1/2}``, statistics over the n real rows R and ``g = ∂L/∂y · γ``,
    the input gradient has the closed form (sums over *all* rows, since padded outputs also depend on μ, σ)

        ∂L/∂x_j = r · (g_j − [j ∈ R] · (Σ_i g_i + x̂_j Σ_i g_i x̂_i) / n)

    and without real rows (running statistics used, constants) ``∂L/∂x_j = r·g_j``. Not twice
    differentiable.

    Inputs: ``x`` (M, C) fp32, ``real`` (M, 1) bool, ``weight`` / ``bias`` (C,) fp32 or None, the running
    statistics (used where the batch has no real row), ``eps``. Outputs: ``y`` (M, C) and, without
    gradient, the batch mean, biased variance (C,) and the number of real rows (0-dim).
    """

    @staticmethod
    def forward(ctx, x, real, weight, bias, running_mean, running_var, eps):
        # where(), not multiply: padding may hold anything, and NaN * 0 is NaN.
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        real_f = real.to(x.dtype)
        n = real_f.sum()
        inv_n = 1.0 / n.clamp_min(1.0)
        mean = torch.where(real, x, zero).sum(0) * inv_n
        centred = torch.where(real, x - mean, zero)
        var = (centred * centred).sum(0) * inv_n
        has_data = n > 0
        mean = torch.where(has_data, mean, running_mean)
        var = torch.where(has_data, var, running_var)
        rstd = torch.rsqrt(var + eps)
        xhat = (x - mean) * rstd
        y = xhat if weight is None else torch.addcmul(bias, xhat, weight)
        # Per-row factor of the statistics' gradient term: 1/n on real rows of a batch with data, else 0.
        stat_coef = real_f * (inv_n * has_data.to(x.dtype))
        ctx.save_for_backward(xhat, rstd, weight, stat_coef)
        ctx.mark_non_differentiable(mean, var, n)
        ctx.set_materialize_grads(False)
        return y, mean, var, n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _mean, _var, _n):
        xhat, rstd, weight, stat_coef = ctx.saved_tensors
        if dy is None:
            return None, None, None, None, None, None, None
        grad_x = grad_weight = grad_bias = None
        g = dy if weight is None else dy * weight
        if ctx.needs_input_grad[0]:
            gx = g * xhat
            t = torch.addcmul(g.sum(0), xhat, gx.sum(0))  # Σg + x̂_j·Σ g x̂, per row
            grad_x = torch.addcmul(g, t, stat_coef, value=-1.0) * rstd
        if weight is not None and ctx.needs_input_grad[2]:
            grad_weight = (dy * xhat).sum(0)
        if weight is not None and ctx.needs_input_grad[3]:
            grad_bias = dy.sum(0)
        return grad_x, None, grad_weight, grad_bias, None, None, None
