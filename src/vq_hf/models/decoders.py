"""Decoders of the VQ-VAE family (reference-implementation.md §4).

- :class:`ConvDecoder`: CIFAR-10, mirror of the encoder, `(B, latent_dim, 8, 8)` → logits `(B, 3, 32, 32, 256)`
  (an independent 256-way softmax per sub-pixel).
- :class:`LatentMixer`: handwriting, the small 1-D conv stack (reference ``ConvStack1D``) that turns quantized
  latents into the PixelCNN's conditioning; padded latents are zeroed after every layer so they never leak into
  real ones.
- :class:`CTCHead`: speech, the paper's 1×1 convolution from the quantized latents to phone logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_vqvae import VQVAEConfig
from .encoders import ResidualBlock

CIFAR_LEVELS = 256


class ConvDecoder(nn.Module):
    """CIFAR decoder: `(B, latent_dim, S/4, S/4)` → logits `(B, num_channels, S, S, 256)`."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        c = config.hidden_size
        self.num_channels = config.num_channels
        self.proj = nn.Conv2d(config.latent_dim, c, 1, bias=False)
        self.norm0 = nn.BatchNorm2d(c)
        self.residuals = nn.ModuleList([ResidualBlock(c) for _ in range(config.num_residual_layers)])
        self.up1 = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)
        self.norm1 = nn.BatchNorm2d(c)
        self.up2 = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)
        self.norm2 = nn.BatchNorm2d(c)
        self.out = nn.Conv2d(c, config.num_channels * CIFAR_LEVELS, 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.norm0(self.proj(latents))
        for block in self.residuals:
            h = block(h)
        h = F.relu(self.norm1(self.up1(h)))
        h = F.relu(self.norm2(self.up2(h)))
        logits = self.out(h)  # (B, C·256, S, S), channel-major: index c·256 + v
        b, _, hgt, wid = logits.shape
        return logits.view(b, self.num_channels, CIFAR_LEVELS, hgt, wid).permute(0, 1, 3, 4, 2)


class LatentMixer(nn.Module):
    """`(B, latent_dim, T)` → `(B, mixer_hidden_size, T)`: 1×1 conv, two dilated (1, 2) and two plain residual
    k=3 convs (pre-activation), final ReLU. `mask` `(B, T)` zeroes padded latents after every layer."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        c = config.mixer_hidden_size
        self.inp = nn.Conv1d(config.latent_dim, c, 1)
        self.blocks = nn.ModuleList(nn.Conv1d(c, c, 3, padding=d, dilation=d) for d in (1, 2, 1, 1))

    def forward(self, latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(latents.dtype)
        h = self.inp(latents * m) * m
        for conv in self.blocks:
            h = (h + conv(F.relu(h))) * m
        return F.relu(h)


class CTCHead(nn.Module):
    """The paper's 1×1 convolution over time from quantized latents to CTC logits: `(B, T, D)` → `(B, T, V)`."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.proj = nn.Conv1d(config.latent_dim, config.vocab_size, 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.proj(latents.transpose(1, 2)).transpose(1, 2)


__all__ = ["CIFAR_LEVELS", "CTCHead", "ConvDecoder", "LatentMixer"]
