"""Conditional column-gated PixelCNN (reference ``ColumnGatedPixelCNN``; van den Oord et al., 2016).

Handwriting lines are generated column by column (time, left to right) and, within a column, row by row (top to
bottom). Internally the image `(B, 1, H, W)` is transposed to `(B, 1, W, H)` so that the classic gated PixelCNN
orders apply: the *vertical* stack is causal over columns of the line, the *horizontal* stack over rows inside
the current column. Causality comes from padding + shifts (no masked weights):

- vertical conv, kernel `(k//2 + 1, k)`, padded above only: output at column t sees columns ≤ t; it reaches the
  horizontal stack only through a one-column shift, so pixel (t, s) never sees column t through it;
- horizontal conv, kernel `(1, k//2 + 1)`, padded on the left only; in the first layer the input is also shifted
  by one row, so pixel (t, s) sees rows < s of column t (type-A mask), later layers include their own position.

Conditioning (one vector per column, already upsampled from the latents) is added to both stacks of every layer
through a 1×1 conv and broadcast over the rows. A learnable per-row bias (reference: `(1, C, 1, H)`) is added in
the first layer. Gray levels are the targets; the input is `level / (levels − 1)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_vqvae import VQVAEConfig


def _shift_down(x: torch.Tensor) -> torch.Tensor:
    """Shift along the first spatial axis by one (row r receives row r − 1; row 0 receives zeros)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def _shift_right(x: torch.Tensor) -> torch.Tensor:
    """Shift along the second spatial axis by one (position s receives s − 1)."""
    return F.pad(x, (1, 0))[..., :-1]


class GatedLayer(nn.Module):
    """One gated layer with vertical and horizontal stacks, conditioning, residual and skip outputs."""

    def __init__(self, channels_in: int, channels: int, kernel: int, cond_channels: int, first: bool):
        super().__init__()
        self.first = first
        self.k = kernel
        self.vconv = nn.Conv2d(channels_in, 2 * channels, (kernel // 2 + 1, kernel))
        self.hconv = nn.Conv2d(channels_in, 2 * channels, (1, kernel // 2 + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.cond = nn.Conv1d(cond_channels, 4 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.skip = nn.Conv2d(channels, channels, 1)

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor, row_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.k
        v_feat = self.vconv(F.pad(v, (k // 2, k // 2, k // 2, 0)))
        h_in = _shift_right(h) if self.first else h
        h_feat = self.hconv(F.pad(h_in, (k // 2, 0, 0, 0))) + self.v_to_h(_shift_down(v_feat))
        cv, ch = self.cond(cond)[..., None].chunk(2, dim=1)  # (B, 2C, R, 1) each, broadcast over rows
        v_feat = v_feat + cv
        h_feat = h_feat + ch
        if row_bias is not None:
            v_feat = v_feat + row_bias
            h_feat = h_feat + row_bias
        va, vb = v_feat.chunk(2, dim=1)
        ha, hb = h_feat.chunk(2, dim=1)
        v_out = torch.tanh(va) * torch.sigmoid(vb)
        gated = torch.tanh(ha) * torch.sigmoid(hb)
        h_out = self.h_out(gated)
        if not self.first:  # the first layer's input contains the current pixel: no residual from it
            h_out = h_out + h
        return v_out, h_out, self.skip(gated)


class ColumnGatedPixelCNN(nn.Module):
    """Conditional gated PixelCNN over gray-level lines.

    forward(levels `(B, 1, H, W)` int64 in [0, L), cond `(B, Cc, W)`) → logits `(B, 1, H, W, L)`, where the logit
    at (h, w) depends only on columns < w and rows < h of column w (plus the conditioning).
    """

    def __init__(self, config: VQVAEConfig, cond_channels: int):
        super().__init__()
        c = config.pixelcnn_hidden_size
        self.levels = config.num_gray_levels
        self.height = config.image_size
        self.row_bias = nn.Parameter(torch.zeros(1, 2 * c, 1, self.height))
        layers = [GatedLayer(1, c, config.pixelcnn_input_kernel_size, cond_channels, first=True)]
        layers += [
            GatedLayer(c, c, config.pixelcnn_kernel_size, cond_channels, first=False)
            for _ in range(config.pixelcnn_num_layers - 1)
        ]
        self.layers = nn.ModuleList(layers)
        self.out = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(config.pixelcnn_out_layers - 1))
        self.logits = nn.Conv2d(c, self.levels, 1)

    def forward(self, levels: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if levels.shape[2] != self.height:
            raise ValueError(f"PixelCNN: image height {levels.shape[2]} != configured image_size {self.height}")
        x = (levels.to(cond.dtype) / (self.levels - 1)).transpose(2, 3)  # (B, 1, W, H)
        v = h = x
        skip = 0
        for i, layer in enumerate(self.layers):
            v, h, s = layer(v, h, cond, self.row_bias if i == 0 else None)
            skip = skip + s
        out = F.relu(skip)
        for conv in self.out:
            out = F.relu(conv(out))
        logits = self.logits(out)  # (B, L, W, H)
        return logits.permute(0, 3, 2, 1).unsqueeze(1)  # (B, 1, H, W, L)

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, do_sample: bool = False, generator: torch.Generator | None = None):
        """Autoregressive decoding from the conditioning alone, column by column, then row by row.

        Returns `(levels (B, 1, H, W) int64, logits (B, 1, H, W, L))`; the logits are those the model assigns
        to the produced image, i.e. exactly `forward(levels, cond)`. Greedy (argmax) unless `do_sample`.
        Cost: H·W forward passes over the columns decoded so far.
        """
        b, _, width = cond.shape
        canvas = torch.zeros(b, 1, self.height, width, dtype=torch.long, device=cond.device)
        for t in range(width):
            for s in range(self.height):
                # causal: columns > t cannot influence column t, so decode on the prefix only
                step_logits = self.forward(canvas[..., : t + 1], cond[..., : t + 1])[:, 0, s, t]
                if do_sample:
                    probs = torch.softmax(step_logits.float(), dim=-1)
                    canvas[:, 0, s, t] = torch.multinomial(probs, 1, generator=generator)[:, 0]
                else:
                    canvas[:, 0, s, t] = step_logits.argmax(-1)
        return canvas, self.forward(canvas, cond)


__all__ = ["ColumnGatedPixelCNN", "GatedLayer"]
