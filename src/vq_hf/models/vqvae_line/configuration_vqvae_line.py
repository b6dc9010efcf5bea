"""Configuration of the handwriting-line VQ-VAE (model type ``"vqvae_line"``; Łańcucki et al., 2020, Section IV-B).

DeepSpeech2-style conv stack + BiLSTM over lines `image_size` px high (one latent every 4 columns by default),
one codebook, conditional column-gated PixelCNN over quantized gray levels.
"""

from __future__ import annotations

from typing import Any

from vq_hf.models.configuration_vqvae import VQVAESequenceConfig

_LAYER_DEFAULTS = {"rnn_batch_norm": [False, True], "rnn_residual": [False, True], "rnn_subsample": [1, 2]}


class VQVAELineConfig(VQVAESequenceConfig):
    r"""Configuration for :class:`VQVAELineModel`.

    Args:
        num_channels (`int`, defaults to 1), image_size (`int`, defaults to 32): channels and line height.
        batch_norm, conv_*, rnn_*: the encoder, see :class:`~vq_hf.models.configuration_vqvae.VQVAESequenceConfig`.
        mixer_hidden_size (`int`): width of the latent mixer that conditions the PixelCNN.
        pixelcnn_hidden_size, pixelcnn_num_layers, pixelcnn_kernel_size, pixelcnn_input_kernel_size,
        pixelcnn_out_layers: the column-gated PixelCNN; num_gray_levels (`int`, defaults to 4): its output levels.
        latent_dim (`int`, defaults to 128), use_bottleneck, quantizer: see :class:`~vq_hf.models.VQVAEConfig`.
    """

    model_type = "vqvae_line"
    architecture = "handwriting"
    default_quantizer = {"codebook_size": 4096}

    def __init__(
        self,
        num_channels: int = 1,
        image_size: int = 32,
        batch_norm: bool = False,
        conv_channels: list[int] | None = None,
        conv_kernel_sizes: list[list[int]] | None = None,
        conv_strides: list[list[int]] | None = None,
        conv_activation: str = "leaky_relu",
        rnn_num_layers: int = 2,
        rnn_hidden_size: int = 32,
        rnn_projection_size: int = 32,
        rnn_bias: bool = True,
        rnn_batch_norm: list[bool] | None = None,
        rnn_residual: list[bool] | None = None,
        rnn_subsample: list[int] | None = None,
        mixer_hidden_size: int = 64,
        pixelcnn_hidden_size: int = 64,
        pixelcnn_num_layers: int = 7,
        pixelcnn_kernel_size: int = 3,
        pixelcnn_input_kernel_size: int = 7,
        pixelcnn_out_layers: int = 2,
        num_gray_levels: int = 4,
        latent_dim: int = 128,
        use_bottleneck: bool = True,
        quantizer: dict[str, Any] | None = None,
        **kwargs,
    ):
        self.num_channels = num_channels
        self.image_size = image_size
        self.mixer_hidden_size = mixer_hidden_size
        self.pixelcnn_hidden_size = pixelcnn_hidden_size
        self.pixelcnn_num_layers = pixelcnn_num_layers
        self.pixelcnn_kernel_size = pixelcnn_kernel_size
        self.pixelcnn_input_kernel_size = pixelcnn_input_kernel_size
        self.pixelcnn_out_layers = pixelcnn_out_layers
        self.num_gray_levels = num_gray_levels
        super().__init__(
            batch_norm=batch_norm,
            conv_channels=[64, 128, 256, 256, 512, 512, 512] if conv_channels is None else conv_channels,
            conv_kernel_sizes=[[3, 3], [5, 5], [3, 3], [3, 3], [3, 3], [3, 3], [3, 2]]
            if conv_kernel_sizes is None else conv_kernel_sizes,
            conv_strides=[[1, 2], [2, 2], [1, 1], [1, 2], [1, 1], [1, 2], [1, 1]]
            if conv_strides is None else conv_strides,
            conv_activation=conv_activation,
            rnn_num_layers=rnn_num_layers,
            rnn_hidden_size=rnn_hidden_size,
            rnn_projection_size=rnn_projection_size,
            rnn_bias=rnn_bias,
            rnn_batch_norm=rnn_batch_norm,
            rnn_residual=rnn_residual,
            rnn_subsample=rnn_subsample,
            defaults=_LAYER_DEFAULTS,
            latent_dim=latent_dim,
            use_bottleneck=use_bottleneck,
            quantizer=quantizer,
            **kwargs,
        )

    def validate(self) -> None:
        super().validate()
        for name in ("num_channels", "image_size", "mixer_hidden_size", "pixelcnn_hidden_size",
                     "pixelcnn_num_layers", "pixelcnn_out_layers"):
            self._positive_int(name)
        if self.num_gray_levels is None or self.num_gray_levels < 2:
            self._err(f"num_gray_levels={self.num_gray_levels!r} must be >= 2")
        for name in ("pixelcnn_kernel_size", "pixelcnn_input_kernel_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1 or v % 2 == 0:
                self._err(f"{name}={v!r} must be a positive odd integer")
        h = self.image_size
        for (kt, kh), (st, sh) in zip(self.conv_kernel_sizes, self.conv_strides):
            h = (h + 2 * ((kh - 1) // 2) - kh) // sh + 1
        if h < 1:
            self._err(f"the conv stack reduces image_size={self.image_size} to height {h}; use fewer height strides")

    def input_dims_per_latent(self) -> int:
        """time_reduction · image_size · num_channels (Table II: log2 K / (4 · 32) = 0.094 for K = 4096)."""
        return self.time_reduction * self.image_size * self.num_channels


__all__ = ["VQVAELineConfig"]
