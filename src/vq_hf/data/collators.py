"""Collators: rows of the image datasets → the model inputs of docs/architecture.md.

- :class:`Cifar10Collator`: ``pixels`` uint8 (3, 32, 32) (or a raw ``img``) → ``pixel_values`` float32
  (B, 3, 32, 32) = uint8 / 255 − 0.5 and ``labels`` int64 (B, 3, 32, 32) = the uint8 values.
- :class:`LineImageCollator`: ``columns`` uint8 (W, 32) (or a raw ``image``) → ``pixel_values`` float32
  (B, 1, 32, W) in [0, 1] and ``pixel_mask`` bool (B, W), W padded to a multiple of 4, optionally with
  random fixed-width training crops, lengths, per-column alignments and transcripts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.vqvae_line.image_processing_vqvae_line import VQVAELineImageProcessor

__all__ = ["Cifar10Collator", "LineImageCollator", "IGNORE_INDEX"]

IGNORE_INDEX = -100


def _as_tensor(value, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        return torch.as_tensor(np.asarray(value))
    raise TypeError(f"{where}: expected an array or tensor, got {type(value).__name__}")


def _as_uint8(value: torch.Tensor, where: str) -> torch.Tensor:
    """uint8 as is; other integer tensors (e.g. datasets' int64 default) after a range check."""
    if value.dtype == torch.uint8:
        return value
    if value.dtype.is_floating_point or value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{where}: expected uint8 pixel values, got dtype {value.dtype}")
    if value.numel() and (int(value.min()) < 0 or int(value.max()) > 255):
        raise ValueError(f"{where}: pixel values outside 0..255 ([{int(value.min())}, {int(value.max())}])")
    return value.to(torch.uint8)


@dataclass
class Cifar10Collator:
    """Batch CIFAR-10 rows into ``pixel_values`` and ``labels`` (the 256-way targets).

    Each example is a mapping with ``pixels`` (uint8, (3, 32, 32)) as produced by
    :func:`vq_hf.data.load_cifar10`, or a raw ``img`` (PIL image / ``{"bytes": ...}``); ``label`` (the class)
    is returned as ``class_labels`` only when ``return_class_labels`` — models do not take it.

    Returns:
        dict with ``pixel_values`` float32 (B, 3, 32, 32) = uint8 / 255 − 0.5 and ``labels`` int64
        (B, 3, 32, 32) = the uint8 values (exact, no rounding involved).
    """

    return_class_labels: bool = False

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        from .cifar10 import decode_cifar10_image

        if len(examples) == 0:
            raise ValueError("Cifar10Collator: empty batch")
        pixels = []
        for i, example in enumerate(examples):
            if "pixels" in example:
                value = _as_tensor(example["pixels"], f"Cifar10Collator: example {i} 'pixels'")
            elif "img" in example:
                value = torch.from_numpy(decode_cifar10_image(example["img"]))
            else:
                raise KeyError(f"Cifar10Collator: example {i} has neither 'pixels' nor 'img' (keys: {list(example)})")
            if tuple(value.shape) != (3, 32, 32):
                raise ValueError(
                    f"Cifar10Collator: example {i} pixels have shape {tuple(value.shape)}; expected (3, 32, 32)"
                )
            pixels.append(_as_uint8(value, f"Cifar10Collator: example {i} pixels"))
        labels = torch.stack(pixels).to(torch.int64)
        batch = {"pixel_values": labels.to(torch.float32).div_(255.0).sub_(0.5), "labels": labels}
        if self.return_class_labels:
            batch["class_labels"] = torch.as_tensor([int(e["label"]) for e in examples], dtype=torch.int64)
        return batch


@dataclass
class LineImageCollator:
    """Pad handwriting lines into ``pixel_values`` (B, 1, 32, W) and ``pixel_mask`` (B, W).

    Each example is a mapping with ``columns`` (uint8, (W_i, 32): one row per image column, as stored by
    :func:`vq_hf.data.load_scribblelens`) or a raw ``image`` (any size/mode; resized by the processor).

    Args:
        processor: the :class:`VQVAELineImageProcessor` whose height, padding multiple (default 4) and
            padding value are used; a default one when None.
        crop_width: if set, each line longer than this is cut to a random window of ``crop_width`` columns
            (the reference trains on 128-column chunks); shorter lines are kept whole and masked.
        seed: seed of the crop offsets. ``None`` draws them from torch's global RNG, which
            ``DataLoader`` seeds per worker (reproducible under ``accelerate.utils.set_seed``).
        return_lengths: add ``lengths`` int64 (B,), real columns per line.
        return_alignment: add ``alignment`` int64 (B, W), per-column class ids padded with -100.
        return_text: add ``text``, the list of transcripts.
    """

    processor: VQVAELineImageProcessor | None = None
    crop_width: int | None = None
    seed: int | None = None
    return_lengths: bool = False
    return_alignment: bool = False
    return_text: bool = False
    _generator: torch.Generator | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.processor is None:
            self.processor = VQVAELineImageProcessor()
        if self.crop_width is not None and (not isinstance(self.crop_width, int) or self.crop_width < 1):
            raise ValueError(f"LineImageCollator: crop_width={self.crop_width!r} must be a positive int or None")
        if self.seed is not None:
            self._generator = torch.Generator().manual_seed(int(self.seed))

    def _line(self, example: Mapping, i: int) -> np.ndarray:
        if "columns" in example:
            columns = _as_tensor(example["columns"], f"LineImageCollator: example {i} 'columns'")
            if columns.ndim != 2 or columns.shape[1] != self.processor.target_height or columns.shape[0] < 1:
                raise ValueError(
                    f"LineImageCollator: example {i} 'columns' has shape {tuple(columns.shape)}; "
                    f"expected (W>=1, {self.processor.target_height})"
                )
            return _as_uint8(columns, f"LineImageCollator: example {i} 'columns'").numpy().T
        if "image" in example:
            return self.processor.resize_line(example["image"], i)
        raise KeyError(f"LineImageCollator: example {i} has neither 'columns' nor 'image' (keys: {list(example)})")

    def _offset(self, width: int) -> int:
        if self.crop_width is None or width <= self.crop_width:
            return 0
        high = width - self.crop_width + 1
        return int(torch.randint(high, (1,), generator=self._generator).item())

    def __call__(self, examples: Sequence[Mapping]) -> dict:
        if len(examples) == 0:
            raise ValueError("LineImageCollator: empty batch")
        lines, alignments = [], []
        for i, example in enumerate(examples):
            line = self._line(example, i)
            alignment = None
            if self.return_alignment:
                if example.get("alignment") is None:
                    raise KeyError(
                        f"LineImageCollator: example {i} has no 'alignment' (load the corpus with alignments=...)"
                    )
                alignment = _as_tensor(example["alignment"], f"LineImageCollator: example {i} 'alignment'")
                if alignment.ndim != 1 or alignment.shape[0] != line.shape[1]:
                    raise ValueError(
                        f"LineImageCollator: example {i} alignment has {tuple(alignment.shape)} entries for "
                        f"{line.shape[1]} columns"
                    )
            start = self._offset(line.shape[1])
            stop = line.shape[1] if self.crop_width is None else start + self.crop_width
            lines.append(line[:, start:stop])
            if alignment is not None:
                alignments.append(alignment[start:stop].to(torch.int64))
        batch = dict(self.processor.pad_lines(lines, return_tensors="pt"))
        if self.return_lengths:
            batch["lengths"] = torch.as_tensor([line.shape[1] for line in lines], dtype=torch.int64)
        if self.return_alignment:
            padded = torch.full(batch["pixel_mask"].shape, IGNORE_INDEX, dtype=torch.int64)
            for i, alignment in enumerate(alignments):
                padded[i, : alignment.shape[0]] = alignment
            batch["alignment"] = padded
        if self.return_text:
            batch["text"] = [example.get("text") for example in examples]
        return batch
