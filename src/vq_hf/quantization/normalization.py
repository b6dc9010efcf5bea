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
                    m = torch.ones(xf.shape[0], 1, dtype=torch.float32, device=x.device)
                else:
                    m = mask.reshape(-1, 1).to(torch.float32)
                # where(), not multiply: padding may hold anything, and NaN * 0 is NaN.
                real = m > 0
                xz = torch.where(real, xf, torch.zeros((), device=x.device))
                n = m.sum()
                n_safe = n.clamp_min(1.0)
                mean = xz.sum(0) / n_safe
                centred = torch.where(real, xf - mean, torch.zeros((), device=x.device))
                var = (centred * centred).sum(0) / n_safe
                has_data = n > 0
                mean = torch.where(has_data, mean, self.running_mean)
                var = torch.where(has_data, var, self.running_var)
                with torch.no_grad():
                    unbiased = var * (n / (n - 1.0).clamp_min(1.0))
                    mom = self.momentum * has_data.float()
                    self.running_mean.mul_(1.0 - mom).add_(mom * mean.detach())
                    self.running_var.mul_(1.0 - mom).add_(mom * unbiased.detach())
                    self.num_batches_tracked.add_(has_data.long())
            else:
                mean, var = self.running_mean, self.running_var
            y = (xf - mean) * torch.rsqrt(var + self.eps)
            if self.affine:
                y = y * self.weight.float() + self.bias.float()
        return y.reshape(x.shape).to(dtype)
