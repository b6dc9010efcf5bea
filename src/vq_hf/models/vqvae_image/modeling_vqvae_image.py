"""The CIFAR-10 VQ-VAE: `pixel_values` `(B, 3, 32, 32)` → logits `(B, 3, 32, 32, 256)`; loss = NLL (nats/dim) +
VQ terms (Łańcucki et al., 2020, Section IV-A)."""

from __future__ import annotations

import torch

from vq_hf.metrics.bits import LN2
from vq_hf.models.decoders import CIFAR_LEVELS, ConvDecoder
from vq_hf.models.encoders import ConvEncoder
from vq_hf.models.modeling_vqvae import (
    VQVAEDecoderOutput,
    VQVAEEncoderOutput,
    VQVAEModel,
    VQVAEOutput,
    check_float_input,
)

from .configuration_vqvae_image import VQVAEImageConfig


class VQVAEImageModel(VQVAEModel):
    """Convolutional encoder → (the quantizer's BN) → `VectorQuantizer` over channel groups → mirrored decoder."""

    config_class = VQVAEImageConfig
    main_input_name = "pixel_values"
    codes_layout = "(batch, h, w, num_codebooks)"

    def __init__(self, config: VQVAEImageConfig):
        super().__init__(config)
        self.encoder = ConvEncoder(config)
        # the quantizer's own BN, statistics shared across the channel groups (reference robustvq)
        self._build_quantizer(channel_first=True)
        self.decoder = ConvDecoder(config)
        self._finish_init()

    def _encode(self, pixel_values=None):
        """`(B, C, S, S)` → latents `(B, latent_dim, S/4, S/4)`; no mask or lengths."""
        s, c = self.config.image_size, self.config.num_channels
        x = check_float_input("pixel_values", pixel_values, 4, f"(batch, {c}, {s}, {s})")
        if tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"`pixel_values` must have shape (batch, {c}, {s}, {s}), got {tuple(x.shape)}")
        return self.encoder(x), None, None

    def _labels(self, pixel_values: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            # round, never truncate (the reference's ((x + 0.5) · 255).long() moves values 1..63 one level down)
            return torch.round((pixel_values.detach().float() + 0.5) * 255.0).clamp(0, CIFAR_LEVELS - 1).long()
        return self._check_labels(labels, pixel_values.shape, CIFAR_LEVELS)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VQVAEOutput | tuple:
        r"""
        Args:
            pixel_values: `(B, 3, 32, 32)` = uint8 / 255 − 0.5.
            labels: uint8 values `(B, 3, 32, 32)` int64 (derived by rounding when absent).
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__}.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        latents, mask, lengths = self._encode(pixel_values)
        quantized, vq = self._quantize(latents, mask)
        fields = self._vq_outputs(latents, quantized, vq, mask, lengths)
        targets = self._labels(pixel_values, labels)
        logits = self.decoder(quantized)
        nll = self._nll(logits, targets)
        recon = nll.mean()
        loss = recon + fields["vq_loss"]
        out = VQVAEOutput(
            loss=loss,
            logits=logits,
            reconstruction_loss=recon,
            nll=nll,
            nll_per_example=nll.flatten(1).sum(1),
            dims_per_example=torch.full((nll.shape[0],), nll[0].numel(), dtype=torch.long, device=nll.device),
            bits_per_dim=recon.detach() / LN2,
            uniform_rate_bits_per_dim=torch.tensor(self.config.uniform_rate_bits_per_dim(), device=loss.device),
            **fields,
        )
        return out if return_dict else out.to_tuple()

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> VQVAEEncoderOutput:
        """Codes `(B, S/4, S/4, num_codebooks)` in eval mode (no quantizer state changes; the mode is restored)."""
        return self._units(pixel_values=pixel_values)

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor | VQVAEEncoderOutput) -> VQVAEDecoderOutput:
        """`reconstruction` = argmax pixel values and their `logits`, identical to the eval-mode forward pass.

        Args:
            codes: `(B, S/4, S/4, num_codebooks)`, or the :class:`VQVAEEncoderOutput` of :meth:`encode`.
        """
        if isinstance(codes, VQVAEEncoderOutput):
            codes = codes.codes
        with self._eval_mode():
            q = self._codewords(codes)
            logits = self.decoder(q)
        return VQVAEDecoderOutput(reconstruction=logits.argmax(-1), logits=logits, quantized=q)


__all__ = ["VQVAEImageModel"]
