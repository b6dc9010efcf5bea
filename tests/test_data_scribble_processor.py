"""VQVAELineImageProcessor: grayscale, 32-px height, padding + column mask, serialisation, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vq_hf.models.vqvae_line.image_processing_vqvae_line import VQVAELineImageProcessor


def _line(width, height, value=100):
    return Image.fromarray(np.full((height, width), value, dtype=np.uint8))


def test_resize_pad_and_mask():
    processor = VQVAELineImageProcessor()
    out = processor([_line(301, 64), _line(50, 100), _line(9, 32)], return_tensors="pt")
    widths = [int(0.5 + 301 * 32 / 64), int(0.5 + 50 * 32 / 100), 9]  # 151, 16, 9 (reference rounding)
    assert out["pixel_values"].shape == (3, 1, 32, 152) and out["pixel_values"].dtype == torch.float32
    assert out["pixel_mask"].dtype == torch.bool and out["pixel_mask"].sum(1).tolist() == widths
    assert torch.allclose(out["pixel_values"][0, 0, :, :151], torch.full((32, 151), 100 / 255))
    assert torch.all(out["pixel_values"][1, 0, :, 16:] == 0)
    single = processor(_line(40, 32), return_tensors="np")
    assert isinstance(single["pixel_values"], np.ndarray) and single["pixel_values"].shape == (1, 1, 32, 40)


def test_input_kinds_agree():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (48, 90), dtype=np.uint8)
    processor = VQVAELineImageProcessor()
    reference = processor(Image.fromarray(gray), return_tensors="pt")["pixel_values"]
    for variant in (gray, torch.from_numpy(gray), gray[..., None], gray[None], gray.astype(np.float32) / 255,
                    gray.astype(np.int32)):
        assert torch.equal(processor(variant, return_tensors="pt")["pixel_values"], reference)
    rgb = np.stack([gray, gray, gray], axis=-1)
    assert torch.equal(processor(Image.fromarray(rgb), return_tensors="pt")["pixel_values"], reference)
    assert torch.equal(processor(rgb, return_tensors="pt")["pixel_values"], reference)
    # Transparent pixels are paper (white), not black ink.
    rgba = np.zeros((32, 8, 4), dtype=np.uint8)
    assert processor(rgba, return_tensors="pt")["pixel_values"].min() == 1.0
    assert processor(Image.fromarray(rgba), return_tensors="pt")["pixel_values"].min() == 1.0


def test_save_and_load_preprocessor_config(tmp_path):
    processor = VQVAELineImageProcessor(target_height=16, pad_to_multiple_of=8, padding_value=1.0)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "VQVAELineImageProcessor" and saved["target_height"] == 16
    loaded = VQVAELineImageProcessor.from_pretrained(tmp_path)
    out = loaded(_line(30, 32), return_tensors="pt")
    assert out["pixel_values"].shape == (1, 1, 16, 16) and out["pixel_mask"].sum() == 15
    assert torch.all(out["pixel_values"][..., 15:] == 1.0)
    assert VQVAELineImageProcessor.from_pretrained(tmp_path, target_height=24).target_height == 24
    # Per-call overrides do not change the processor.
    assert processor(_line(30, 32), target_height=32, return_tensors="pt")["pixel_values"].shape[2] == 32
    assert processor.target_height == 16


@pytest.mark.parametrize(
    "image, error, message",
    [
        ("a.png", TypeError, "image 0: expected a PIL image, numpy array or torch tensor, got str"),
        (np.zeros((2, 3, 4, 5), np.uint8), ValueError, "expected a 2-D"),
        (np.zeros((0, 10), np.uint8), ValueError, "empty image"),
        (np.zeros((10, 10, 7), np.uint8), ValueError, "no channel axis of size 1, 3 or 4"),
        (np.full((4, 4), 1.5, np.float32), ValueError, r"float image values must lie in \[0, 1\]"),
        (np.full((4, 4), np.nan, np.float32), ValueError, "NaN"),
        (np.full((4, 4), 300, np.int32), ValueError, "0..255"),
        (np.zeros((4, 4), bool), ValueError, "boolean arrays are ambiguous"),
        (Image.new("I;16", (8, 8)), ValueError, "PIL mode 'I;16' is not an 8-bit mode"),
    ],
)
def test_bad_images_are_rejected_by_name(image, error, message):
    with pytest.raises(error, match=message):
        VQVAELineImageProcessor()(image)


def test_bad_arguments():
    with pytest.raises(ValueError, match="target_height=0"):
        VQVAELineImageProcessor(target_height=0)
    with pytest.raises(ValueError, match="pad_to_multiple_of=2.5"):
        VQVAELineImageProcessor(pad_to_multiple_of=2.5)
    processor = VQVAELineImageProcessor()
    with pytest.raises(ValueError, match="empty list"):
        processor([])
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['size'\]"):
        processor(_line(8, 32), size=4)
    with pytest.raises(ValueError, match=r"image 1: .*empty image"):
        processor([_line(8, 32), np.zeros((32, 0), np.uint8)])
    with pytest.raises(ValueError, match=r"line 0 has shape \(16, 5\); expected \(32, W>=1\)"):
        processor.pad_lines([np.zeros((16, 5), np.uint8)])
