"""Raw inputs of :func:`vq_hf.units.extract_units`: files, arrays, PIL images or a dataset column → model inputs.

One class per model family turns one raw value into the processed example (:meth:`load`, which raises
:class:`~vq_hf.data.files.BadInputError` naming the input) and a list of processed examples into the tensors
``model.encode`` takes (:meth:`collate`):

* speech: audio → mono, resampled with soxr to the feature extractor's rate → fbank + deltas → the model
  folder's CMVN statistics → ``input_features`` / ``attention_mask``;
* handwriting: any image → the line processor's resize to the model's height → ``pixel_values`` / ``pixel_mask``;
* CIFAR-10: a ``S``×``S`` image (mode converted to RGB) → ``pixel_values``; another size is a bad input unless
  ``resize=True`` (bicubic).

:func:`raw_items` enumerates the inputs as ``(id, name, value)`` lazily, so a folder of many files is read one
batch at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from vq_hf.data.files import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    BadInputError,
    audio_array,
    find_input_files,
    read_audio,
    read_image,
)

logger = logging.getLogger("vq_hf.units")


def _is_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("datasets.") and hasattr(obj, "column_names")


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.")


def _is_array_with_rate(obj: Any) -> bool:
    return (
        isinstance(obj, tuple)
        and len(obj) == 2
        and isinstance(obj[1], (int, np.integer))
        and not isinstance(obj[0], (str, Path))
    )


def raw_items(inputs: Any, architecture: str, column: str | None, id_column: str | None) -> Iterator[tuple[str, str, Any]]:
    """``(id, name for messages, value)`` for every input; file paths are expanded by :func:`find_input_files`."""
    suffixes = AUDIO_SUFFIXES if architecture == "speech" else IMAGE_SUFFIXES
    if _is_dataset(inputs):
        if column is None or column not in inputs.column_names:
            raise ValueError(f"extract_units: column={column!r} is not a column of the dataset ({inputs.column_names})")
        dataset = inputs
        feature = getattr(dataset, "features", None) and dataset.features.get(column)
        if type(feature).__name__ in ("Audio", "Image"):
            # raw bytes/paths: we decode with soundfile/PIL ourselves (no torchcodec needed, and one error per file)
            dataset = dataset.cast_column(column, type(feature)(decode=False))
        for index, example in enumerate(dataset):
            value = example[column]
            ident = example.get(id_column) if id_column else None
            name = value.get("path") if isinstance(value, dict) and value.get("path") else None
            name = name or (value if isinstance(value, str) else f"{column}[{index}]")
            yield (str(index) if ident is None else str(ident)), str(name), value
        return
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if _is_array_with_rate(inputs) or _is_pil(inputs) or isinstance(inputs, (np.ndarray, torch.Tensor, dict)):
        inputs = [inputs]
    inputs = list(inputs)
    if inputs and all(isinstance(v, (str, Path)) for v in inputs):
        for path, ident in find_input_files(inputs, suffixes):
            yield ident, str(path), path
        return
    for index, value in enumerate(inputs):
        if isinstance(value, (str, Path)):
            yield Path(value).name, str(value), Path(value)
        else:
            yield str(index), f"input {index}", value


def _source(value: Any) -> tuple[Any, bool]:
    """(path-or-bytes, True) for file-like values (paths, datasets' {"bytes", "path"} dicts), else (value, False)."""
    if isinstance(value, (str, Path)):
        return value, True
    if isinstance(value, dict) and ("bytes" in value or "path" in value) and "array" not in value:
        if value.get("bytes") is not None:
            return value["bytes"], True
        if value.get("path"):
            return value["path"], True
    return value, False


class SpeechInputs:
    """Audio → CMVN-normalised fbank features of the model's feature extractor."""

    def __init__(self, processor, sampling_rate: int | None = None):
        if processor is None or not getattr(processor, "has_cmvn", False):
            raise ValueError(
                "extract_units: a speech model needs its feature extractor with CMVN statistics (the model folder's "
                "preprocessor_config.json, written by training); pass processor=VQVAEFeatureExtractor.from_pretrained(DIR)"
            )
        self.processor = processor
        self.sampling_rate = sampling_rate
        self._told = False

    def _tell_resampling(self, rate: int) -> None:
        target = self.processor.sampling_rate
        if rate != target and not self._told:
            self._told = True
            logger.warning("resampling audio to the feature extractor's %d Hz with soxr (first input at %d Hz)", target, rate)

    def load(self, value: Any, name: str) -> np.ndarray:
        fe = self.processor
        target = fe.sampling_rate
        source, is_file = _source(value)
        if is_file:
            wave, rate = read_audio(source, target, name=name)
            self._tell_resampling(rate)
        else:
            if isinstance(value, dict):
                array, rate = value.get("array"), value.get("sampling_rate")
            elif _is_array_with_rate(value):
                array, rate = value
            else:
                array, rate = value, self.sampling_rate
            if rate is None:
                raise ValueError(
                    f"extract_units: {name} is a bare array; give its rate as (array, rate), "
                    "{'array': ..., 'sampling_rate': ...} or extract_units(..., sampling_rate=...)"
                )
            if isinstance(array, torch.Tensor):
                array = array.detach().cpu().numpy()
            wave = audio_array(array, rate, target, name)
            self._tell_resampling(int(rate))
        if fe.num_frames(wave.shape[0]) == 0:
            raise BadInputError(
                name,
                f"{1000.0 * wave.shape[0] / target:.1f} ms of audio is shorter than one {fe.frame_length_ms:g} ms frame",
            )
        return fe.apply_cmvn(fe.extract(wave))

    def collate(self, items: list[np.ndarray]) -> dict:
        from transformers import BatchFeature

        padded = self.processor.pad(
            BatchFeature({"input_features": items}), padding="longest", return_attention_mask=True, return_tensors="pt"
        )
        return {"input_features": padded["input_features"], "attention_mask": padded["attention_mask"]}


def _as_image(value: Any, name: str):
    from PIL import Image

    source, is_file = _source(value)
    if is_file:
        return read_image(source, name=name)
    if _is_pil(value):
        return value
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype != np.uint8:
        raise BadInputError(name, f"image array of dtype {array.dtype}; expected uint8 pixel values 0..255")
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)  # (C, H, W) → (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    try:
        return Image.fromarray(array)
    except Exception as err:
        raise BadInputError(name, f"cannot read an image from an array of shape {array.shape} ({err})") from None


class LineImageInputs:
    """Any line image → the line processor's fixed-height uint8 line."""

    def __init__(self, processor):
        self.processor = processor

    def load(self, value: Any, name: str) -> np.ndarray:
        image = _as_image(value, name)
        try:
            return self.processor.resize_line(image)
        except (ValueError, TypeError) as err:
            raise BadInputError(name, str(err).split(": ", 1)[-1]) from None

    def collate(self, items: list[np.ndarray]) -> dict:
        batch = self.processor.pad_lines(items, return_tensors="pt")
        return {"pixel_values": batch["pixel_values"], "pixel_mask": batch["pixel_mask"]}


class FixedImageInputs:
    """An ``S``×``S`` image (CIFAR-10 model) → ``pixel_values``; other sizes need ``resize=True``."""

    def __init__(self, processor, resize: bool = False):
        self.processor = processor
        self.resize = resize

    def load(self, value: Any, name: str) -> np.ndarray:
        from PIL import Image

        image = _as_image(value, name)
        size, channels = self.processor.image_size, self.processor.num_channels
        mode = "RGB" if channels == 3 else "L"
        if image.mode != mode:
            image = image.convert(mode)
        if image.size != (size, size):
            if not self.resize:
                raise BadInputError(
                    name,
                    f"image is {image.width}x{image.height}; this model takes {size}x{size} images "
                    "(pass --resize / resize=True to scale it)",
                )
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        return self.processor(image, return_labels=False, return_tensors=None)["pixel_values"][0]

    def collate(self, items: list[np.ndarray]) -> dict:
        return {"pixel_values": torch.from_numpy(np.stack(items))}


def default_processor(model) -> Any:
    """The model folder's saved processor (``preprocessor_config.json``), else the family's default one."""
    config = model.config
    arch = getattr(config, "architecture", None)
    folder = getattr(model, "name_or_path", None) or getattr(config, "_name_or_path", None)
    if folder and (Path(folder) / "preprocessor_config.json").is_file():
        processor = load_processor(folder, arch)
        if processor is not None:
            return processor
    if arch == "cifar10":
        from vq_hf.models import VQVAEImageProcessor

        return VQVAEImageProcessor(image_size=int(config.image_size), num_channels=int(config.num_channels))
    if arch == "handwriting":
        from vq_hf.models import VQVAELineImageProcessor

        return VQVAELineImageProcessor(target_height=int(config.image_size))
    return None


def load_processor(path: str | Path, architecture: str | None):
    """The processor saved in a model folder, by architecture (None when the folder has none)."""
    if not (Path(path) / "preprocessor_config.json").is_file():
        return None
    if architecture == "handwriting":
        from vq_hf.models import VQVAELineImageProcessor

        return VQVAELineImageProcessor.from_pretrained(str(path))
    if architecture == "speech":
        from vq_hf.models import VQVAEFeatureExtractor

        return VQVAEFeatureExtractor.from_pretrained(str(path))
    if architecture == "cifar10":
        from vq_hf.models import VQVAEImageProcessor

        return VQVAEImageProcessor.from_pretrained(str(path))
    return None


def input_handler(model, processor=None, *, resize: bool = False, sampling_rate: int | None = None):
    """The :class:`SpeechInputs` / :class:`LineImageInputs` / :class:`FixedImageInputs` for ``model``."""
    arch = getattr(getattr(model, "config", None), "architecture", None)
    processor = processor if processor is not None else default_processor(model)
    if arch == "speech":
        return SpeechInputs(processor, sampling_rate)
    if arch == "handwriting":
        return LineImageInputs(processor)
    if arch == "cifar10":
        return FixedImageInputs(processor, resize=resize)
    raise ValueError(f"extract_units: raw inputs are not supported for model architecture {arch!r}")


__all__ = [
    "FixedImageInputs",
    "LineImageInputs",
    "SpeechInputs",
    "default_processor",
    "input_handler",
    "load_processor",
    "raw_items",
]
