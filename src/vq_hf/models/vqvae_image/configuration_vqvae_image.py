"""Configuration of the CIFAR-10 VQ-VAE (model type ``"vqvae_image"``; Łańcucki et al., 2020, Section IV-A).

Convolutional encoder S×S → S/4×S/4, several codebooks over channel groups, mirrored decoder with an independent
256-way softmax per sub-pixel. Defaults are the paper's recipe (8 codebooks × 128 codewords, 32 channels each).
"""

from __future__ import annotations

from typing import Any

from vq_hf.models.configuration_vqvae import VQVAEConfig


class VQVAEImageConfig(VQVAEConfig):
    r"""Configuration for :class:`VQVAEImageModel`.

    Args:
        num_channels (`int`, defaults to 3): image channels.
        image_size (`int`, defaults to 32): side length, divisible by 4 (two stride-2 convolutions).
        hidden_size (`int`, defaults to 256), num_residual_layers (`int`, defaults to 2): encoder/decoder width
            and residual blocks.
        latent_dim (`int`): quantized channels, all codebooks together; defaults to 32 per codebook.
        use_bottleneck (`bool`), quantizer (`dict`): see :class:`~vq_hf.models.VQVAEConfig`. The quantizer's
            own BatchNorm (`quantizer["batch_norm"]`, statistics shared across the codebooks' channel groups by
            default) is the paper's "BN before quantization" for this model.
    """

    model_type = "vqvae_image"
    architecture = "cifar10"
    default_quantizer = {"codebook_size": 128, "num_codebooks": 8}

    def __init__(
        self,
        num_channels: int = 3,
        image_size: int = 32,
        hidden_size: int = 256,
        num_residual_layers: int = 2,
        latent_dim: int | None = None,
        use_bottleneck: bool = True,
        quantizer: dict[str, Any] | None = None,
        **kwargs,
    ):
        self.num_channels = num_channels
        self.image_size = image_size
        self.hidden_size = hidden_size
        self.num_residual_layers = num_residual_layers
        if latent_dim is None:
            groups = (self.default_quantizer if quantizer is None else quantizer).get("num_codebooks", 1)
            latent_dim = 32 * groups if isinstance(groups, int) else groups  # a bad count is reported below
        super().__init__(latent_dim=latent_dim, use_bottleneck=use_bottleneck, quantizer=quantizer, **kwargs)

    def validate(self) -> None:
        for name in ("num_channels", "image_size", "hidden_size"):
            self._positive_int(name)
        if isinstance(self.num_residual_layers, bool) or not isinstance(self.num_residual_layers, int) \
                or self.num_residual_layers < 0:
            self._err(f"num_residual_layers={self.num_residual_layers!r} must be a non-negative integer")
        if self.image_size % 4:
            self._err(f"image_size={self.image_size} must be divisible by 4 (two stride-2 convolutions)")
        if self.quantizer.get("batch_norm") and not self.use_bottleneck:
            self._err("quantizer.batch_norm=True needs use_bottleneck=True: this model's BN is the quantizer's own")

    @property
    def latent_grid(self) -> int:
        """Side of the latent grid (image_size / 4)."""
        return self.image_size // 4

    def input_dims_per_latent(self) -> int:
        """num_channels · 4 · 4: one latent position covers a 4×4 patch (rate 1.167 bits/dim for 8×128)."""
        return self.num_channels * (self.image_size // self.latent_grid) ** 2


__all__ = ["VQVAEImageConfig"]
