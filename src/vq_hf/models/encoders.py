"""Encoders of the VQ-VAE family (reference-implementation.md §4).

- :class:`ConvEncoder`: CIFAR-10, 32×32 → 8×8 (two stride-2 convs, residual blocks, 1×1 to the latent channels).
- :class:`DeepSpeech2Encoder`: strided Conv2d stack over (time, height/frequency) + BiLSTM stack; used by the
  handwriting (one latent every 4 columns) and speech (time /3) models. Variable lengths are handled exactly:
  padded frames are zeroed after every layer, excluded from batch-norm statistics and skipped by the LSTMs
  (packed sequences), so a sequence gives the same features whatever padding it is batched with (eval mode).
- :class:`LatentProjection`: the sequence models' (masked) BatchNorm1d on encoder features followed by the
  Linear projection into the quantizer (reference master ``VQBottleneck``: BN *before* the projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..quantization.normalization import MaskedBatchNorm
from .configuration_vqvae import VQVAEConfig


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """`(B,)` lengths → bool `(B, max_len)`, True on real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


# ----------------------------------------------------------------------------------------------- CIFAR


class ResidualBlock(nn.Module):
    """ReLU → Conv3×3 → BN → ReLU → Conv1×1 → BN, plus identity; no ReLU after the sum (reference `Residual`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(self.conv1(F.relu(x)))
        h = self.norm2(self.conv2(F.relu(h)))
        return x + h


class ConvEncoder(nn.Module):
    """CIFAR encoder: `(B, 3, S, S)` → `(B, latent_dim, S/4, S/4)`."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        c = config.hidden_size
        self.conv1 = nn.Conv2d(config.num_channels, c, 4, stride=2, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 4, stride=2, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c)
        self.residuals = nn.ModuleList([ResidualBlock(c) for _ in range(config.num_residual_layers)])
        self.proj = nn.Conv2d(c, config.latent_dim, 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(pixel_values)))
        h = self.norm2(self.conv2(h))
        for block in self.residuals:
            h = block(h)
        return self.proj(h)


# ----------------------------------------------------------------------------------------------- DeepSpeech2

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "hardtanh": lambda: nn.Hardtanh(0.0, 20.0),
}


class ConvStack(nn.Module):
    """Conv2d → masked BN2d → activation, over `(B, C, T, H)`; strides/kernels are `[time, height]` pairs."""

    def __init__(self, config: VQVAEConfig, in_height: int):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.time_geometry: list[tuple[int, int, int]] = []
        in_ch, h = config.num_channels, in_height
        for out_ch, (kt, kh), (st, sh) in zip(config.conv_channels, config.conv_kernel_sizes, config.conv_strides):
            pt, ph = (kt - 1) // 2, (kh - 1) // 2
            self.convs.append(nn.Conv2d(in_ch, out_ch, (kt, kh), stride=(st, sh), padding=(pt, ph), bias=False))
            self.norms.append(MaskedBatchNorm(out_ch))
            self.time_geometry.append((kt, st, pt))
            h = (h + 2 * ph - kh) // sh + 1
            in_ch = out_ch
        self.activation = _ACTIVATIONS[config.conv_activation]()
        self.output_size = in_ch * h

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x `(B, C, T, H)`, lengths `(B,)` → features `(B, T', C'·H')`, lengths `(B,)`."""
        mask = lengths_to_mask(lengths, x.shape[2])
        x = x * mask[:, None, :, None].to(x.dtype)
        for conv, norm, (k, s, p) in zip(self.convs, self.norms, self.time_geometry):
            x = conv(x)
            lengths = conv_output_lengths(lengths, k, s, p)
            mask = lengths_to_mask(lengths, x.shape[2])
            # channel-last for MaskedBatchNorm; padding excluded from the statistics
            x = norm(x.permute(0, 2, 3, 1), mask[:, :, None].expand(-1, -1, x.shape[3])).permute(0, 3, 1, 2)
            x = self.activation(x)
            # zero padding so that the next conv sees exactly what an unpadded sequence would (zero padding)
            x = x * mask[:, None, :, None].to(x.dtype)
        b, c, t, h = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * h), lengths


class BiLSTMLayer(nn.Module):
    """(masked BN1d) → BiLSTM → Linear projection (or sum of directions) → (ReLU residual) → (subsample)."""

    def __init__(self, input_size: int, config: VQVAEConfig, index: int):
        super().__init__()
        hidden = config.rnn_hidden_size
        self.norm = MaskedBatchNorm(input_size) if config.rnn_batch_norm[index] else None
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True, bidirectional=True, bias=config.rnn_bias)
        self.projection = (
            nn.Linear(2 * hidden, config.rnn_projection_size, bias=False) if config.rnn_projection_size else None
        )
        self.residual = bool(config.rnn_residual[index])
        self.subsample = int(config.rnn_subsample[index])
        self.hidden = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = lengths_to_mask(lengths, x.shape[1])
        h = x
        if self.norm is not None:
            h = self.norm(h, mask)
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        if self.projection is not None:
            out = self.projection(out)
        else:
            out = out[..., : self.hidden] + out[..., self.hidden :]
        if self.residual:
            out = F.relu(out + x)
        out = out * mask[..., None].to(out.dtype)
        if self.subsample > 1:
            out = out[:, :: self.subsample]
            lengths = torch.div(lengths + self.subsample - 1, self.subsample, rounding_mode="floor")
        return out, lengths


class DeepSpeech2Encoder(nn.Module):
    """Conv stack + BiLSTM stack.

    Input `(B, C, T, H)` (time first, then height/frequency) and lengths `(B,)`; output features
    `(B, T / time_reduction, rnn_output_size)` with padded frames zeroed, and output lengths `(B,)`.
    """

    def __init__(self, config: VQVAEConfig, in_height: int):
        super().__init__()
        self.conv = ConvStack(config, in_height)
        size = self.conv.output_size
        layers = []
        for i in range(config.rnn_num_layers):
            layers.append(BiLSTMLayer(size, config, i))
            size = config.rnn_output_size
        self.rnns = nn.ModuleList(layers)
        self.output_size = size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, lengths = self.conv(x, lengths)
        if bool((lengths < 1).any()):
            raise ValueError(
                f"an input is too short for the encoder: output lengths {lengths.tolist()} after the conv stack"
            )
        for layer in self.rnns:
            h, lengths = layer(h, lengths)
        return h, lengths


class LatentProjection(nn.Module):
    """Sequence models: masked BatchNorm1d on encoder features (optional) → Linear into the quantizer space."""

    def __init__(self, input_size: int, config: VQVAEConfig):
        super().__init__()
        self.norm = MaskedBatchNorm(input_size) if config.batch_norm else None
        self.linear = nn.Linear(input_size, config.latent_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x `(B, T, F)`, mask bool `(B, T)` → `(B, T, latent_dim)`."""
        if self.norm is not None:
            x = self.norm(x, mask)
        return self.linear(x)


__all__ = [
    "ConvEncoder",
    "DeepSpeech2Encoder",
    "LatentProjection",
    "ResidualBlock",
    "conv_output_lengths",
    "lengths_to_mask",
]
