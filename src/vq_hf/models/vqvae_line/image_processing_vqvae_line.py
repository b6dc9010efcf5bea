"""Image processor for handwriting lines (ScribbleLens and the stand-in corpus).

A line of any size and colour mode becomes a grayscale strip ``target_height`` (32) pixels high, its width
scaled by the same factor (bicubic, rounding as the reference code: ``int(0.5 + w · 32 / h)``), values in
[0, 1] with ink dark. A batch is right-padded to a common width rounded up to ``pad_to_multiple_of`` (the
encoders downsample time by 4) and comes with a column mask that is True on real columns.
"""

from __future__ import annotations

import math

import numpy as np
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs

__all__ = ["VQVAELineImageProcessor"]

_PIL_MODES = {"1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "La", "RGBa", "PA"}


class VQVAELineImagesKwargs(ImagesKwargs, total=False):
    target_height: int
    pad_to_multiple_of: int
    padding_value: float


class VQVAELineImageProcessor(BaseImageProcessor):
    r"""Grayscale, fixed-height, variable-width line images → ``pixel_values`` + ``pixel_mask``.

    Args:
        target_height (`int`, defaults to 32): output height in pixels; widths scale proportionally.
        resample (`PILImageResampling`, defaults to BICUBIC): resampling filter of the resize.
        rescale_factor (`float`, defaults to 1/255): uint8 → [0, 1] factor.
        pad_to_multiple_of (`int`, defaults to 4): batch width is rounded up to a multiple of this.
        padding_value (`float`, defaults to 0.0): value of padded columns (the reference pads with zeros;
            models must use ``pixel_mask``, not the value, to ignore them).

    Call with one image or a list of images (PIL images of any 8-bit mode, or 2-D (H, W) / 3-D (H, W, C) or
    (C, H, W) numpy arrays / torch tensors, uint8 or float in [0, 1]; alpha is composited onto white):

        processor(images, return_tensors="pt") -> BatchFeature(
            pixel_values: float32 (B, 1, target_height, W), ink dark, W = max width rounded up,
            pixel_mask:   bool (B, W), True on real columns)
    """

    model_input_names = ["pixel_values", "pixel_mask"]
    valid_kwargs = VQVAELineImagesKwargs

    def __init__(
        self,
        target_height: int = 32,
        resample: int = PILImageResampling.BICUBIC,
        rescale_factor: float = 1 / 255,
        pad_to_multiple_of: int = 4,
        padding_value: float = 0.0,
        **kwargs,
    ):
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        if not isinstance(target_height, int) or isinstance(target_height, bool) or target_height < 1:
            raise ValueError(f"VQVAELineImageProcessor: target_height={target_height!r} must be a positive int")
        if not isinstance(pad_to_multiple_of, int) or isinstance(pad_to_multiple_of, bool) or pad_to_multiple_of < 1:
            raise ValueError(
                f"VQVAELineImageProcessor: pad_to_multiple_of={pad_to_multiple_of!r} must be a positive int"
            )
        if not (isinstance(rescale_factor, (int, float)) and rescale_factor > 0):
            raise ValueError(f"VQVAELineImageProcessor: rescale_factor={rescale_factor!r} must be a positive number")
        self.target_height = target_height
        self.resample = int(resample)
        self.rescale_factor = float(rescale_factor)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.padding_value = float(padding_value)

    # ------------------------------------------------------------------ single lines
    def _to_pil_gray(self, image, index: int):
        from PIL import Image

        where = f"VQVAELineImageProcessor: image {index}"
        if isinstance(image, Image.Image):
            if image.mode not in _PIL_MODES:
                raise ValueError(f"{where}: PIL mode {image.mode!r} is not an 8-bit mode; convert it to 'L' or 'RGB'")
            if image.width < 1 or image.height < 1:
                raise ValueError(f"{where}: empty image of size {image.size}")
            if "A" in image.mode or "a" in image.mode or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(paper, rgba)
            return image.convert("L")
        array = _as_numpy(image, where)
        return Image.fromarray(_to_gray_uint8(array, where))

    def resize_line(self, image, index: int = 0) -> np.ndarray:
        """One line → uint8 array (target_height, W'), W' = max(1, int(0.5 + W · target_height / H)).

        This is the exact resize the dataset loaders store, so stored lines and ``__call__`` agree bit for bit.
        """
        from PIL import Image

        gray = self._to_pil_gray(image, index)
        width, height = gray.size
        new_width = self.scaled_width(width, height)
        if (new_width, self.target_height) != (width, height):
            gray = gray.resize((new_width, self.target_height), Image.Resampling(self.resample))
        return np.asarray(gray, dtype=np.uint8)

    def scaled_width(self, width: int, height: int) -> int:
        """Width after scaling a ``width`` × ``height`` line to ``target_height`` (reference rounding)."""
        if width < 1 or height < 1:
            raise ValueError(f"VQVAELineImageProcessor: cannot scale an empty {width}x{height} image")
        return max(1, int(0.5 + width * self.target_height / height))

    # ------------------------------------------------------------------ batches
    def pad_lines(self, lines, return_tensors=None) -> BatchFeature:
        """Pad already-resized lines into a batch.

        Args:
            lines: sequence of (target_height, W_i) arrays/tensors, uint8 (rescaled by ``rescale_factor``) or
                float already in [0, 1].
        Returns:
            BatchFeature with ``pixel_values`` float32 (B, 1, H, W) and ``pixel_mask`` bool (B, W), W = max W_i
            rounded up to ``pad_to_multiple_of``.
        """
        if len(lines) == 0:
            raise ValueError("VQVAELineImageProcessor: cannot pad an empty batch")
        arrays = []
        for i, line in enumerate(lines):
            array = _as_numpy(line, f"VQVAELineImageProcessor: line {i}")
            if array.ndim != 2 or array.shape[0] != self.target_height or array.shape[1] < 1:
                raise ValueError(
                    f"VQVAELineImageProcessor: line {i} has shape {tuple(array.shape)}; "
                    f"expected ({self.target_height}, W>=1)"
                )
            if array.dtype == np.uint8:
                # Divide (not multiply by 1/255): bit-identical to the "uint8 / 255" of the input contract.
                array = array.astype(np.float32) / np.float32(1.0 / self.rescale_factor)
            else:
                array = array.astype(np.float32)
            arrays.append(array)
        widths = np.array([a.shape[1] for a in arrays], dtype=np.int64)
        width = int(math.ceil(widths.max() / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        pixel_values = np.full((len(arrays), 1, self.target_height, width), self.padding_value, dtype=np.float32)
        for i, array in enumerate(arrays):
            pixel_values[i, 0, :, : array.shape[1]] = array
        pixel_mask = np.arange(width)[None, :] < widths[:, None]
        return BatchFeature({"pixel_values": pixel_values, "pixel_mask": pixel_mask}, tensor_type=return_tensors)

    def preprocess(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        """Resize each line (see :meth:`resize_line`), rescale to [0, 1], pad, and return the column mask.

        ``kwargs`` may override ``target_height``, ``resample``, ``rescale_factor``, ``pad_to_multiple_of`` or
        ``padding_value`` for this call; anything else is an error.
        """
        unknown = sorted(set(kwargs) - set(self._config()))
        if unknown:
            raise TypeError(f"VQVAELineImageProcessor: unexpected argument(s) {unknown}")
        if kwargs:
            merged = {**self._config(), **kwargs}
            return type(self)(**merged).preprocess(images, return_tensors=return_tensors)
        if images is None:
            raise ValueError("VQVAELineImageProcessor: images is None")
        if not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("VQVAELineImageProcessor: empty list of images")
        lines = [self.resize_line(image, i) for i, image in enumerate(images)]
        return self.pad_lines(lines, return_tensors=return_tensors)

    def __call__(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def _config(self) -> dict:
        return {
            "target_height": self.target_height,
            "resample": self.resample,
            "rescale_factor": self.rescale_factor,
            "pad_to_multiple_of": self.pad_to_multiple_of,
            "padding_value": self.padding_value,
        }


def _as_numpy(value, where: str) -> np.ndarray:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of the package
        torch = None
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where}: expected a PIL image, numpy array or torch tensor, got {type(value).__name__}")
    return value


def _to_gray_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim == 3:
        if array.shape[-1] in (1, 3, 4):
            hwc = array
        elif array.shape[0] in (1, 3, 4):
            hwc = np.moveaxis(array, 0, -1)
        else:
            raise ValueError(f"{where}: 3-D array of shape {array.shape} has no channel axis of size 1, 3 or 4")
    elif array.ndim == 2:
        hwc = array[..., None]
    else:
        raise ValueError(f"{where}: expected a 2-D (H, W) or 3-D image array, got shape {array.shape}")
    if hwc.shape[0] < 1 or hwc.shape[1] < 1:
        raise ValueError(f"{where}: empty image of shape {array.shape}")
    if hwc.dtype == np.bool_:
        raise ValueError(f"{where}: boolean arrays are ambiguous (is True ink or paper?); pass uint8 0/255")
    if np.issubdtype(hwc.dtype, np.floating):
        if not np.isfinite(hwc).all():
            raise ValueError(f"{where}: image contains NaN or infinite values")
        if hwc.min() < 0.0 or hwc.max() > 1.0:
            raise ValueError(
                f"{where}: float image values must lie in [0, 1], got [{hwc.min():.3g}, {hwc.max():.3g}]"
            )
        hwc = np.rint(hwc.astype(np.float64) * 255.0).astype(np.uint8)
    elif np.issubdtype(hwc.dtype, np.integer):
        if hwc.dtype != np.uint8:
            if hwc.min() < 0 or hwc.max() > 255:
                raise ValueError(f"{where}: integer image values must lie in 0..255, got [{hwc.min()}, {hwc.max()}]")
            hwc = hwc.astype(np.uint8)
    else:
        raise TypeError(f"{where}: unsupported array dtype {hwc.dtype}")
    channels = hwc.shape[-1]
    if channels == 1:
        return np.ascontiguousarray(hwc[..., 0])
    rgb = hwc[..., :3].astype(np.float32)
    if channels == 4:
        # Transparent pixels become paper (white), as for PIL inputs.
        alpha = hwc[..., 3:4].astype(np.float32) / 255.0
        rgb = rgb * alpha + 255.0 * (1.0 - alpha)
    # ITU-R 601-2 luma, the transform PIL's convert("L") applies.
    gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)
