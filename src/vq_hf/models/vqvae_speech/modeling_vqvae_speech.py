"""The speech VQ-VAE (Łańcucki et al., 2020, Section IV-C).

- :class:`VQVAESpeechModel`: `input_features` `(B, T, 243)`, `attention_mask` `(B, T)` → codes and quantized
  latents (no loss; the base model of :class:`VQVAESpeechForCTC`).
- :class:`VQVAESpeechForCTC`: quantized latents → 1×1 conv → CTC over phones (blank 0) + VQ terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vq_hf.metrics.ctc import ctc_greedy_decode
from vq_hf.models.decoders import CTCHead
from vq_hf.models.encoders import DeepSpeech2Encoder, LatentProjection, lengths_to_mask
from vq_hf.models.modeling_vqvae import (
    VQVAECTCOutput,
    VQVAEDecoderOutput,
    VQVAEEncoderOutput,
    VQVAEForCTC,
    VQVAEModel,
    VQVAEOutput,
    check_float_input,
    prefix_lengths,
)

from .configuration_vqvae_speech import VQVAESpeechConfig


class VQVAESpeechModel(VQVAEModel):
    """Conv front-end over (time, frequency) with the static/Δ/ΔΔ streams as channels → BiLSTM stack →
    (masked BN1d) → linear → `VectorQuantizer`."""

    config_class = VQVAESpeechConfig
    main_input_name = "input_features"

    def __init__(self, config: VQVAESpeechConfig):
        super().__init__(config)
        self.encoder = DeepSpeech2Encoder(config, config.input_feature_size // config.num_channels)
        # BN1d on encoder features *before* the projection (reference master), none in the quantizer by default
        self.projection = LatentProjection(self.encoder.output_size, config)
        self._build_quantizer()
        self._finish_init()

    def _encode(self, input_features=None, attention_mask=None):
        """Features → (latents `(B, T', D)`, mask `(B, T')`, lengths `(B,)`)."""
        cfg = self.config
        f = cfg.input_feature_size
        x = check_float_input("input_features", input_features, 3, f"(batch, frames, {f})")
        if x.shape[2] != f:
            raise ValueError(f"`input_features` must have shape (batch, frames, {f}), got {tuple(x.shape)}")
        lengths = prefix_lengths(attention_mask, x.shape[0], x.shape[1], "attention_mask", x.device)
        b, t, _ = x.shape
        # (static, Δ, ΔΔ) streams as channels over (time, frequency), as the reference's (T, 81, 3) layout
        x = x.view(b, t, cfg.num_channels, f // cfg.num_channels).permute(0, 2, 1, 3)
        feats, lat_lengths = self.encoder(x, lengths)
        mask = lengths_to_mask(lat_lengths, feats.shape[1])
        return self.projection(feats, mask), mask, lat_lengths

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VQVAEOutput | tuple:
        r"""
        Args:
            input_features: `(B, T, 243)` fbank + energy with Δ, ΔΔ (CMVN applied).
            attention_mask: `(B, T)` 1 on real frames (all real when absent).
        """
        if "labels" in kwargs:
            raise ValueError("the speech base model has no head for `labels`; use VQVAEForCTC for phone targets")
        if kwargs:
            raise TypeError(f"{type(self).__name__}.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        latents, mask, lengths = self._encode(input_features, attention_mask)
        quantized, vq = self._quantize(latents, mask)
        out = VQVAEOutput(**self._vq_outputs(latents, quantized, vq, mask, lengths))
        return out if return_dict else out.to_tuple()

    @torch.no_grad()
    def encode(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> VQVAEEncoderOutput:
        """Codes `(B, T', num_codebooks)` with `lengths` and `mask` of the valid latents, in eval mode (no
        quantizer state changes; the mode is restored)."""
        return self._units(input_features=input_features, attention_mask=attention_mask)

    @torch.no_grad()
    def decode_codes(
        self, codes: torch.Tensor | VQVAEEncoderOutput, mask: torch.Tensor | None = None
    ) -> VQVAEDecoderOutput:
        """The codewords (`quantized`) of `codes` `(B, T', G)` (or of :meth:`encode`'s output)."""
        if isinstance(codes, VQVAEEncoderOutput):
            mask = codes.mask if mask is None else mask
            codes = codes.codes
        with self._eval_mode():
            q = self._codewords(codes)
            self._sequence_mask(q, mask)
        return VQVAEDecoderOutput(quantized=q)


class VQVAESpeechForCTC(VQVAEForCTC):
    """`VQVAESpeechModel` → 1×1 conv → CTC (blank `ctc_blank_id`)."""

    config_class = VQVAESpeechConfig

    def __init__(self, config: VQVAESpeechConfig):
        super().__init__(config)
        self.vqvae = VQVAESpeechModel(config)
        self.ctc_head = CTCHead(config)
        self.post_init()

    @property
    def quantizer(self):
        return self.vqvae.quantizer

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VQVAECTCOutput | tuple:
        r"""
        Args:
            input_features: `(B, T, 243)` fbank + energy with Δ, ΔΔ (CMVN applied).
            attention_mask: `(B, T)` 1 on real frames (all real when absent).
            labels: `(B, L)` int64 phone ids, padded with −100; the blank id never appears as a target.
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__}.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        base = self.vqvae(input_features=input_features, attention_mask=attention_mask, return_dict=True)
        logits = self.ctc_head(base.quantized)
        lengths = base.code_lengths
        ctc_loss = loss = None
        if labels is not None:
            ctc_loss = self._ctc_loss(logits, lengths, labels)
            loss = ctc_loss + base.vq_loss
        out = VQVAECTCOutput(
            loss=loss,
            logits=logits,
            ctc_loss=ctc_loss,
            vq_loss=base.vq_loss,
            codes=base.codes,
            quantized=base.quantized,
            latents=base.latents,
            perplexity=base.perplexity,
            codebook_loss=base.codebook_loss,
            commitment_loss=base.commitment_loss,
            running_perplexity=base.running_perplexity,
            used_codes=base.used_codes,
            dead_code_fraction=base.dead_code_fraction,
            norm_ratio=base.norm_ratio,
            output_lengths=lengths,
            codes_mask=base.codes_mask,
        )
        return out if return_dict else out.to_tuple()

    def _ctc_loss(self, logits: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if labels.dim() != 2 or labels.shape[0] != logits.shape[0] or labels.is_floating_point():
            raise ValueError(
                f"`labels` must be an int tensor (batch, max_label_length), got {tuple(labels.shape)} {labels.dtype}"
            )
        real = labels != -100
        if bool((real & ((labels < 0) | (labels >= cfg.vocab_size))).any()):
            raise ValueError(f"`labels` must be phone ids in [0, {cfg.vocab_size}) or -100 (padding)")
        if bool((real & (labels == cfg.ctc_blank_id)).any()):
            raise ValueError(f"`labels` contain the CTC blank id {cfg.ctc_blank_id}; it can never be a target")
        target_lengths = real.sum(1)
        targets = labels.masked_select(real)
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V), fp32 under autocast
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return F.ctc_loss(
                log_probs,
                targets,
                lengths,
                target_lengths,
                blank=cfg.ctc_blank_id,
                reduction=cfg.ctc_loss_reduction,
                zero_infinity=cfg.ctc_zero_infinity,
            )

    @torch.no_grad()
    def encode(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> VQVAEEncoderOutput:
        """Discrete codes of the speech encoder (see :meth:`VQVAESpeechModel.encode`)."""
        return self.vqvae.encode(input_features=input_features, attention_mask=attention_mask)

    @torch.no_grad()
    def decode_codes(
        self, codes: torch.Tensor | VQVAEEncoderOutput, mask: torch.Tensor | None = None
    ) -> VQVAEDecoderOutput:
        """CTC logits from codes alone: `logits` `(B, T', vocab_size)`, equal to the eval-mode forward pass."""
        out = self.vqvae.decode_codes(codes, mask=mask)
        return VQVAEDecoderOutput(logits=self.ctc_head(out.quantized), quantized=out.quantized)

    def greedy_decode(self, logits: torch.Tensor, output_lengths: torch.Tensor | None = None) -> list[list[int]]:
        """Best-path CTC decoding of `logits` `(B, T', V)` → phone-id lists."""
        return ctc_greedy_decode(logits, output_lengths, self.config.ctc_blank_id)


__all__ = ["VQVAESpeechForCTC", "VQVAESpeechModel"]
