"""Image processor for the CIFAR-10 VQ-VAE: uint8 images → `pixel_values` and `labels` (docs/architecture.md).

- `pixel_values`: float32 `(B, C, S, S)` = uint8 / 255 − 0.5 (the reference's input scaling);
- `labels`: int64 `(B, C, S, S)`, the uint8 values themselves (targets of the 256-way softmax; the reference's
  truncating `((x + 0.5) · 255).long()` is not reproduced).

Images are never resized or converted: a wrong size, channel count, mode or dtype is an error that names the
image and what was expected, because silently resampling would change the data the bits/dim are measured on.
Pure numpy/PIL (no torchvision).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

try:  # Pillow is a dependency, but keep the processor importable without it
    from PIL import Image as _PILImage
except ImportError:  # pragma: no cover
    _PILImage = None


class VQVAEImageProcessor(BaseImageProcessor):
    r"""Turns RGB uint8 images into CIFAR VQ-VAE inputs and targets.

    Args:
        image_size (`int`, defaults to 32): required height and width.
        num_channels (`int`, defaults to 3): required channels (PIL images must be in mode "RGB" for 3, "L" for 1).
        offset (`float`, defaults to 0.5): subtracted after scaling to [0, 1].

    Call with one image or a list/batch of images: PIL images, numpy arrays or torch tensors of dtype uint8,
    `(H, W, C)` or `(C, H, W)` (a batch may also be one `(B, H, W, C)` / `(B, C, H, W)` array). Returns a
    `BatchFeature` with `pixel_values` `(B, C, S, S)` float32 and, unless `return_labels=False`, `labels`
    `(B, C, S, S)` int64.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, image_size: int = 32, num_channels: int = 3, offset: float = 0.5, **kwargs):
        # BaseImageProcessor's kwargs machinery is for resize/normalize pipelines; this processor has none.
        for key in ("image_processor_type", "processor_class", "_valid_kwargs_names"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"VQVAEImageProcessor: image_size={image_size!r} must be a positive integer")
        if num_channels not in (1, 3):
            raise ValueError(f"VQVAEImageProcessor: num_channels={num_channels!r} must be 1 or 3")
        self.image_size = image_size
        self.num_channels = num_channels
        self.offset = float(offset)

    # ------------------------------------------------------------------ input normalisation
    def _to_chw_uint8(self, image: Any, index: int) -> np.ndarray:
        s, c = self.image_size, self.num_channels
        where = f"image {index}"
        if _PILImage is not None and isinstance(image, _PILImage.Image):
            want = "RGB" if c == 3 else "L"
            if image.mode != want:
                raise ValueError(
                    f"VQVAEImageProcessor: {where} has PIL mode {image.mode!r}; expected {want!r} "
                    f"(convert it explicitly, e.g. image.convert({want!r}))"
                )
            arr = np.asarray(image)
            arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
        else:
            if isinstance(image, torch.Tensor):
                image = image.detach().cpu().numpy()
            if not isinstance(image, np.ndarray):
                raise TypeError(
                    f"VQVAEImageProcessor: {where} is a {type(image).__name__}; expected a PIL image, a numpy "
                    "array or a torch tensor"
                )
            if image.dtype != np.uint8:
                raise ValueError(
                    f"VQVAEImageProcessor: {where} has dtype {image.dtype}; expected uint8 pixel values 0..255 "
                    "(float inputs are ambiguous about their scale)"
                )
            arr = image
            if arr.ndim == 2 and c == 1:
                arr = arr[None]
            if arr.ndim != 3:
                raise ValueError(
                    f"VQVAEImageProcessor: {where} has shape {tuple(image.shape)}; expected (H, W, C) or (C, H, W)"
                )
            if arr.shape[0] == c and arr.shape[1:] == (s, s):
                pass
            elif arr.shape[-1] == c and arr.shape[:2] == (s, s):
                arr = np.moveaxis(arr, -1, 0)
            else:
                raise ValueError(
                    f"VQVAEImageProcessor: {where} has shape {tuple(image.shape)}; expected {s}×{s} with {c} "
                    f"channels, i.e. ({s}, {s}, {c}) or ({c}, {s}, {s}) (images are not resized)"
                )
        if arr.shape != (c, s, s):
            raise ValueError(
                f"VQVAEImageProcessor: {where} is {arr.shape[2]}×{arr.shape[1]} with {arr.shape[0]} channel(s); "
                f"expected {s}×{s} with {c} (images are not resized)"
            )
        return np.ascontiguousarray(arr)

    def _as_list(self, images: Any) -> list:
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError("VQVAEImageProcessor: got an empty list of images")
            return list(images)
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            return list(images)
        return [images]

    # ------------------------------------------------------------------ public API
    def preprocess(self, images: Any, return_labels: bool = True, return_tensors: str | None = "pt", **kwargs):
        """Images → `BatchFeature(pixel_values, labels)`; see the class docstring."""
        if kwargs:
            raise TypeError(f"VQVAEImageProcessor.preprocess got unexpected arguments {sorted(kwargs)}")
        batch = np.stack([self._to_chw_uint8(img, i) for i, img in enumerate(self._as_list(images))])
        data = {"pixel_values": batch.astype(np.float32) / 255.0 - np.float32(self.offset)}
        if return_labels:
            data["labels"] = batch.astype(np.int64)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def __call__(self, images: Any, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def postprocess(self, values: torch.Tensor | np.ndarray, as_pil: bool = True) -> list:
        """Model-side values → images.

        `values`: `pixel_values` (float, `(B, C, S, S)`, the inverse scaling is applied and rounded) or integer
        pixel levels such as `labels` or `logits.argmax(-1)` (`(B, C, S, S)`). Returns a list of PIL images
        (`as_pil=True`) or uint8 `(S, S, C)` arrays.
        """
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        values = np.asarray(values)
        if values.ndim == 3:
            values = values[None]
        if values.ndim != 4 or values.shape[1] != self.num_channels:
            raise ValueError(
                f"VQVAEImageProcessor.postprocess: values of shape {values.shape}; "
                f"expected (B, {self.num_channels}, H, W)"
            )
        if np.issubdtype(values.dtype, np.floating):
            values = np.rint((values + self.offset) * 255.0)
        u8 = np.clip(values, 0, 255).astype(np.uint8)
        out = []
        for img in u8:
            hwc = np.moveaxis(img, 0, -1)
            if as_pil:
                if _PILImage is None:  # pragma: no cover
                    raise ImportError("VQVAEImageProcessor.postprocess(as_pil=True) needs Pillow")
                out.append(_PILImage.fromarray(hwc[..., 0] if self.num_channels == 1 else hwc))
            else:
                out.append(hwc)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        for key in ("_valid_kwargs_names", "_valid_processor_keys"):
            d.pop(key, None)
        return d


__all__ = ["VQVAEImageProcessor"]
