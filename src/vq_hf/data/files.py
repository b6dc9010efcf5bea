"""A user's own files as model inputs: finding them, and reading audio and images with one-line errors.

* :func:`find_input_files` expands files, folders (recursive) and glob patterns into ``(path, id)`` pairs; the id
  is the path relative to the input root (the folder, or the fixed prefix of a glob), so ids stay unique and
  readable for nested folders.
* :func:`read_audio` reads anything soundfile reads (wav of any sample format incl. float, flac, ogg), mixes it
  down to mono and resamples it with ``soxr`` to the rate asked for.
* :func:`read_image` opens an image with PIL and forces the decode, so a truncated file fails here, by name.

Every problem with one input is a :class:`BadInputError` carrying the path and a one-line reason, so callers
can either stop with ``<path>: <reason>`` or skip the file and report it.
"""

from __future__ import annotations

import glob
import io
import os
from pathlib import Path

import numpy as np

from vq_hf._extras import require

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".snd", ".w64", ".caf")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pgm", ".ppm", ".pbm")
_GLOB_CHARS = set("*?[")


class BadInputError(ValueError):
    """One input cannot be used; ``path`` names it and ``reason`` is the one-line cause."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard component (ids are relative to it)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def find_input_files(paths: list[str | os.PathLike], suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """Expand ``paths`` (files, folders searched recursively, glob patterns) into sorted ``(path, id)`` pairs.

    Folders and globs keep only files whose suffix (case-insensitive) is in ``suffixes``; a file named
    explicitly is kept whatever its suffix (it may be a bad input, which the reader then reports). Raises
    ``FileNotFoundError`` for a path that is neither a file, a folder nor a pattern matching something, and
    ``ValueError`` when two inputs would get the same id.
    """
    found: list[tuple[Path, str]] = []
    for raw in paths:
        text = str(raw)
        path = Path(text)
        if path.is_file():
            found.append((path, path.name))
        elif path.is_dir():
            members = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            found += [(p, p.relative_to(path).as_posix()) for p in members]
        elif _GLOB_CHARS & set(text):
            root = _glob_root(text)
            members = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            members = [p for p in members if p.suffix.lower() in suffixes]
            if not members:
                raise FileNotFoundError(f"{text}: the pattern matches no {'/'.join(suffixes[:4])}... file")
            found += [(p, p.relative_to(root).as_posix()) for p in members]
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    seen: dict[str, Path] = {}
    for p, ident in found:
        if ident in seen and seen[ident] != p:
            raise ValueError(f"inputs {seen[ident]} and {p} have the same id {ident!r}; pass their common folder instead")
        seen[ident] = p
    return found


def _resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    soxr = require("soxr", "speech", "resampling audio")

    # soxr's default "HQ" quality; float32 in, float32 out
    return soxr.resample(wave, rate, target_rate).astype(np.float32, copy=False)


def read_audio(source: str | os.PathLike | bytes, target_rate: int, name: str | None = None) -> tuple[np.ndarray, int]:
    """Audio file (path or bytes) → ``(mono float32 waveform in [−1, 1] at target_rate, the file's own rate)``.

    Channels are averaged; a different rate is resampled with soxr. Raises :class:`BadInputError` when the
    file cannot be decoded, holds no samples, or holds NaN/Inf samples.
    """
    sf = require("soundfile", "speech", "reading audio files")

    name = str(name if name is not None else source)
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        wave, rate = sf.read(handle, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError... by backend
        reason = " ".join(str(err).split()) or type(err).__name__
        raise BadInputError(name, f"cannot read audio ({reason})") from None
    return audio_array(wave, rate, target_rate, name), int(rate)


def audio_array(wave, rate: int, target_rate: int, name: str) -> np.ndarray:
    """An in-memory waveform ``(samples,)`` or ``(samples, channels)`` → checked mono float32 at ``target_rate``.

    Integer arrays are scaled from their type's full range to [−1, 1].
    """
    wave = np.asarray(wave)
    if wave.dtype.kind in "iu":
        info = np.iinfo(wave.dtype)
        wave = (wave.astype(np.float64) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    elif wave.dtype.kind != "f":
        raise BadInputError(name, f"audio of dtype {wave.dtype} is neither float nor integer")
    wave = wave.astype(np.float32, copy=False)
    if wave.ndim == 2:
        wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if wave.ndim != 1:
        raise BadInputError(name, f"expected audio of shape (samples,) or (samples, channels), got {wave.shape}")
    if wave.size == 0:
        raise BadInputError(name, "empty audio (0 samples)")
    if not np.isfinite(wave).all():
        raise BadInputError(name, f"{int((~np.isfinite(wave)).sum())} of {wave.size} samples are NaN or Inf")
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise BadInputError(name, f"sampling rate {rate!r} is not a positive integer")
    if int(rate) != int(target_rate):
        wave = _resample(wave, int(rate), int(target_rate))
    return np.ascontiguousarray(wave)


def read_image(source: str | os.PathLike | bytes, name: str | None = None):
    """Image file (path or bytes) → fully decoded ``PIL.Image``; :class:`BadInputError` when PIL cannot read it."""
    from PIL import Image

    name = str(name if name is not None else source)
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        image.load()
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError ("truncated"), SyntaxError...
        reason = " ".join(str(err).split()) or type(err).__name__
        raise BadInputError(name, f"cannot read image ({reason})") from None
    if image.width < 1 or image.height < 1:
        raise BadInputError(name, f"empty image of size {image.width}x{image.height}")
    return image


__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "BadInputError",
    "audio_array",
    "find_input_files",
    "read_audio",
    "read_image",
]
