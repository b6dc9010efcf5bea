"""The handwriting-line VQ-VAE: `pixel_values` `(B, 1, 32, W)`, `pixel_mask` `(B, W)` → PixelCNN logits
`(B, 1, 32, W, L)` over `L` gray levels; loss = NLL over real pixels (nats/dim) + VQ terms (Łańcucki et al., 2020,
Section IV-B)."""

from __future__ import annotations

import torch

from vq_hf.metrics.bits import LN2
from vq_hf.models.decoders import LatentMixer
from vq_hf.models.encoders import DeepSpeech2Encoder, LatentProjection, lengths_to_mask
from vq_hf.models.modeling_vqvae import (
    VQVAEDecoderOutput,
    VQVAEEncoderOutput,
    VQVAEModel,
    VQVAEOutput,
    check_float_input,
    prefix_lengths,
)
from vq_hf.models.pixelcnn import ColumnGatedPixelCNN

from .configuration_vqvae_line import VQVAELineConfig


class VQVAELineModel(VQVAEModel):
    """DeepSpeech2 encoder over columns → (masked BN1d) → linear → `VectorQuantizer` → latent mixer →
    conditional column-gated PixelCNN."""

    config_class = VQVAELineConfig
    main_input_name = "pixel_values"

    def __init__(self, config: VQVAELineConfig):
        super().__init__(config)
        self.encoder = DeepSpeech2Encoder(config, config.image_size)
        # BN1d on encoder features *before* the projection (reference master), none in the quantizer by default
        self.projection = LatentProjection(self.encoder.output_size, config)
        self._build_quantizer()
        self.mixer = LatentMixer(config)
        self.decoder = ColumnGatedPixelCNN(config, cond_channels=config.mixer_hidden_size)
        self._finish_init()

    def _encode(self, pixel_values=None, pixel_mask=None):
        """Lines → (latents `(B, T', D)`, mask `(B, T')`, lengths `(B,)`)."""
        h, c = self.config.image_size, self.config.num_channels
        x = check_float_input("pixel_values", pixel_values, 4, f"(batch, {c}, {h}, width)")
        if x.shape[1] != c or x.shape[2] != h:
            raise ValueError(f"`pixel_values` must have shape (batch, {c}, {h}, width), got {tuple(x.shape)}")
        lengths = prefix_lengths(pixel_mask, x.shape[0], x.shape[3], "pixel_mask", x.device)
        feats, lat_lengths = self.encoder(x.transpose(2, 3), lengths)  # (B, C, W, H): time first
        mask = lengths_to_mask(lat_lengths, feats.shape[1])
        return self.projection(feats, mask), mask, lat_lengths

    def _conditioning(self, quantized: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
        cond = self.mixer(quantized.transpose(1, 2), mask)
        r = self.config.time_reduction
        if cond.shape[-1] * r < width:
            raise ValueError(f"{cond.shape[-1]} latents × {r} columns cannot condition a line of width {width}")
        return cond.repeat_interleave(r, dim=-1)[..., :width]

    def gray_levels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Gray values in [0, 1] → levels ⌊L·x⌋ in [0, L) (the PixelCNN's targets)."""
        levels = self.config.num_gray_levels
        return (pixel_values.float() * levels).floor().clamp(0, levels - 1).long()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VQVAEOutput | tuple:
        r"""
        Args:
            pixel_values: `(B, 1, 32, W)` gray in [0, 1].
            labels: gray levels `(B, 1, 32, W)` in [0, num_gray_levels) (derived as ⌊L·x⌋ when absent).
            pixel_mask: `(B, W)` bool, True on real columns (all real when absent).
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__}.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        cfg = self.config
        latents, mask, lat_lengths = self._encode(pixel_values, pixel_mask)
        quantized, vq = self._quantize(latents, mask)
        fields = self._vq_outputs(latents, quantized, vq, mask, lat_lengths)
        targets = (
            self.gray_levels(pixel_values)
            if labels is None
            else self._check_labels(labels, pixel_values.shape, cfg.num_gray_levels)
        )
        width = pixel_values.shape[3]
        logits = self.decoder(targets, self._conditioning(quantized, mask, width))
        col_mask = lengths_to_mask(
            pixel_mask.bool().sum(1) if pixel_mask is not None else torch.full_like(lat_lengths, width), width
        )
        pix_mask = col_mask[:, None, None, :].expand_as(targets).float()
        nll = self._nll(logits, targets) * pix_mask
        recon = nll.sum() / pix_mask.sum()
        loss = recon + fields["vq_loss"]
        out = VQVAEOutput(
            loss=loss,
            logits=logits,
            reconstruction_loss=recon,
            nll=nll,
            nll_per_example=nll.flatten(1).sum(1),
            dims_per_example=pix_mask.flatten(1).sum(1).long(),
            bits_per_dim=recon.detach() / LN2,
            uniform_rate_bits_per_dim=torch.tensor(cfg.uniform_rate_bits_per_dim(), device=loss.device),
            **fields,
        )
        return out if return_dict else out.to_tuple()

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> VQVAEEncoderOutput:
        """Codes `(B, T', num_codebooks)` with `lengths` and `mask` of the valid latents, in eval mode (no
        quantizer state changes; the mode is restored)."""
        return self._units(pixel_values=pixel_values, pixel_mask=pixel_mask)

    @torch.no_grad()
    def decode_codes(
        self,
        codes: torch.Tensor | VQVAEEncoderOutput,
        mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        do_sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> VQVAEDecoderOutput:
        """Gray levels from codes alone: autoregressive generation column by column (H·W PixelCNN passes), or
        teacher forcing with `labels` (the logits then equal those of the eval-mode forward pass).

        Args:
            codes: `(B, T', G)`, or the :class:`VQVAEEncoderOutput` of :meth:`encode` (its `mask` is then used).
            mask: `(B, T')` True on valid latents (all valid when absent).
            labels: gray levels `(B, 1, H, T'·4)` to score under teacher forcing instead of generating.
            do_sample, generator: sample instead of argmax when generating.
        """
        if isinstance(codes, VQVAEEncoderOutput):
            mask = codes.mask if mask is None else mask
            codes = codes.codes
        cfg = self.config
        with self._eval_mode():
            q = self._codewords(codes)
            mask = self._sequence_mask(q, mask)
            width = q.shape[1] * cfg.time_reduction if labels is None else labels.shape[-1]
            cond = self._conditioning(q, mask, width)
            if labels is not None:
                shape = (q.shape[0], cfg.num_channels, cfg.image_size, width)
                levels = self._check_labels(labels, shape, cfg.num_gray_levels)
                logits = self.decoder(levels, cond)
                return VQVAEDecoderOutput(reconstruction=logits.argmax(-1), logits=logits, quantized=q)
            levels, logits = self.decoder.generate(cond, do_sample=do_sample, generator=generator)
        return VQVAEDecoderOutput(reconstruction=levels, logits=logits, quantized=q)


__all__ = ["VQVAELineModel"]
