"""Configuration of the speech VQ-VAE + CTC (model type ``"vqvae_speech"``; Łańcucki et al., 2020, Section IV-C).

Conv front-end (time /3) + 4-layer BiLSTM over 243-dim fbanks, BN + linear to 64, VQ, 1×1 conv to phones, CTC.
"""

from __future__ import annotations

from typing import Any

from vq_hf.models.configuration_vqvae import VQVAESequenceConfig

_LAYER_DEFAULTS = {"rnn_batch_norm": [False] * 4, "rnn_residual": [False] * 4, "rnn_subsample": [1] * 4}


class VQVAESpeechConfig(VQVAESequenceConfig):
    r"""Configuration for :class:`VQVAESpeechModel` / :class:`VQVAESpeechForCTC`.

    Args:
        input_feature_size (`int`, defaults to 243): feature dimension (3 × (80 mel + energy)).
        num_channels (`int`, defaults to 3): feature streams (static, Δ, ΔΔ), the conv stack's input channels.
        batch_norm, conv_*, rnn_*: the encoder, see :class:`~vq_hf.models.configuration_vqvae.VQVAESequenceConfig`
            (`rnn_projection_size=0`: forward and backward outputs are summed, DeepSpeech2).
        vocab_size (`int`, defaults to 44): CTC classes including the blank (<eps>, <unk>, 42 WSJ phones).
        ctc_blank_id (`int`, defaults to 0), ctc_loss_reduction (`str`), ctc_zero_infinity (`bool`): passed to
            `torch.nn.functional.ctc_loss`.
        latent_dim (`int`, defaults to 64), use_bottleneck, quantizer: see :class:`~vq_hf.models.VQVAEConfig`.
    """

    model_type = "vqvae_speech"
    architecture = "speech"
    default_quantizer = {"codebook_size": 2048}

    def __init__(
        self,
        input_feature_size: int = 243,
        num_channels: int = 3,
        batch_norm: bool = False,
        conv_channels: list[int] | None = None,
        conv_kernel_sizes: list[list[int]] | None = None,
        conv_strides: list[list[int]] | None = None,
        conv_activation: str = "hardtanh",
        rnn_num_layers: int = 4,
        rnn_hidden_size: int = 320,
        rnn_projection_size: int = 0,
        rnn_bias: bool = False,
        rnn_batch_norm: list[bool] | None = None,
        rnn_residual: list[bool] | None = None,
        rnn_subsample: list[int] | None = None,
        vocab_size: int = 44,
        ctc_blank_id: int = 0,
        ctc_loss_reduction: str = "mean",
        ctc_zero_infinity: bool = True,
        latent_dim: int = 64,
        use_bottleneck: bool = True,
        quantizer: dict[str, Any] | None = None,
        **kwargs,
    ):
        self.input_feature_size = input_feature_size
        self.num_channels = num_channels
        self.vocab_size = vocab_size
        self.ctc_blank_id = ctc_blank_id
        self.ctc_loss_reduction = ctc_loss_reduction
        self.ctc_zero_infinity = bool(ctc_zero_infinity)
        super().__init__(
            batch_norm=batch_norm,
            conv_channels=[32, 32] if conv_channels is None else conv_channels,
            conv_kernel_sizes=[[7, 7], [7, 7]] if conv_kernel_sizes is None else conv_kernel_sizes,
            conv_strides=[[1, 2], [3, 1]] if conv_strides is None else conv_strides,
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
        for name in ("input_feature_size", "num_channels", "vocab_size"):
            self._positive_int(name)
        if self.input_feature_size % self.num_channels:
            self._err(f"input_feature_size={self.input_feature_size} is not divisible by num_channels="
                      f"{self.num_channels} (the static/Δ/ΔΔ streams)")
        if not 0 <= self.ctc_blank_id < self.vocab_size:
            self._err(f"ctc_blank_id={self.ctc_blank_id} must index into vocab_size={self.vocab_size}")
        if self.ctc_loss_reduction not in ("mean", "sum", "none"):
            self._err(f"ctc_loss_reduction={self.ctc_loss_reduction!r} must be 'mean', 'sum' or 'none'")


__all__ = ["VQVAESpeechConfig"]
