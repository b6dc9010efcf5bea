"""CIFAR-10 as a ``datasets.DatasetDict``: hub id, local parquet folder/files, or the embedded sample.

The source layout is the hub's ``uoft-cs/cifar10``: parquet files ``{train,test}-*.parquet`` with an ``img``
column (``Image``: JPEG/PNG bytes) and a ``label`` column (``ClassLabel`` over the ten class names).
``load_cifar10`` keeps that layout and, by default, adds a decoded ``pixels`` column (uint8, (3, 32, 32),
channels first) through one cached ``Dataset.map``, so training never decodes an image twice. Images stay
uint8 on disk and in batches; :class:`vq_hf.data.collators.Cifar10Collator` makes the model inputs
(``pixel_values`` = uint8 / 255 − 0.5, ``labels`` = the uint8 values).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .._extras import require
from ..hub import HUB_ID

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
EMBEDDED = "embedded"
IMAGE_SHAPE = (3, 32, 32)
_SPLIT_PREFIXES = {
    "train": "train", "test": "test", "validation": "validation", "valid": "validation", "dev": "validation"
}

__all__ = ["CIFAR10_CLASSES", "EMBEDDED", "embedded_sample_dir", "load_cifar10", "decode_cifar10_image"]


def embedded_sample_dir() -> Path:
    """The folder of the small CIFAR-10 sample shipped inside the package (see its README.md)."""
    return Path(__file__).resolve().parent / "cifar10_sample"


def _split_of(path: Path) -> str | None:
    stem = path.name.lower()
    for prefix, split in _SPLIT_PREFIXES.items():
        if stem.startswith(prefix + "-") or stem.startswith(prefix + ".") or stem.startswith(prefix + "_"):
            return split
    return None


def _data_files_from_folder(folder: Path) -> dict[str, list[str]]:
    files = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if not files:
        raise FileNotFoundError(f"load_cifar10: no *.parquet files under {str(folder)!r}")
    out: dict[str, list[str]] = {}
    unknown = []
    for path in files:
        split = _split_of(path)
        if split is None:
            unknown.append(str(path))
        else:
            out.setdefault(split, []).append(str(path))
    if unknown:
        # Refuse rather than drop: a file we cannot place in a split is a layout error the user must see.
        raise ValueError(
            f"load_cifar10: cannot tell the split of {len(unknown)} parquet file(s) under {str(folder)!r} "
            f"(names must start with train-/test-/validation-): {unknown[:5]}"
        )
    return out


def _resolve_source(source) -> tuple[str, object]:
    """Returns ("files", {split: [paths]}) or ("hub", hub_id)."""
    if source is None or (isinstance(source, str) and source == EMBEDDED):
        return "files", _data_files_from_folder(embedded_sample_dir())
    if isinstance(source, Mapping):
        files: dict[str, list[str]] = {}
        for split, paths in source.items():
            paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
            for p in paths:
                if not Path(p).is_file():
                    raise FileNotFoundError(f"load_cifar10: data file for split {split!r} not found: {str(p)!r}")
            files[str(split)] = [str(p) for p in paths]
        return "files", files
    if isinstance(source, (list, tuple)):
        files = {}
        for p in source:
            p = Path(p)
            if not p.is_file():
                raise FileNotFoundError(f"load_cifar10: data file not found: {str(p)!r}")
            split = _split_of(p)
            if split is None:
                raise ValueError(f"load_cifar10: cannot tell the split of {str(p)!r}; pass a dict {{split: paths}}")
            files.setdefault(split, []).append(str(p))
        return "files", files
    path = Path(source)
    if path.is_dir():
        return "files", _data_files_from_folder(path)
    if path.is_file():
        return _resolve_source([path])
    if isinstance(source, str) and HUB_ID.match(source):
        return "hub", source
    raise FileNotFoundError(
        f"load_cifar10: {str(source)!r} is neither an existing folder/parquet file nor a hub id like 'uoft-cs/cifar10'"
    )


def decode_cifar10_image(image) -> np.ndarray:
    """One CIFAR image (PIL image or ``{"bytes": ...}`` dict) → uint8 array (3, 32, 32), channels first."""
    from PIL import Image

    if isinstance(image, dict):
        if image.get("bytes") is not None:
            image = Image.open(io.BytesIO(image["bytes"]))
        elif image.get("path"):
            image = Image.open(image["path"])
        else:
            raise ValueError("image dict has neither 'bytes' nor 'path'")
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.size != (32, 32):
        raise ValueError(f"expected a 32x32 image, got {image.size[0]}x{image.size[1]}")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def _decode_batch(batch, indices, split):
    pixels = []
    for image, index in zip(batch["img"], indices):
        try:
            pixels.append(decode_cifar10_image(image))
        except Exception as err:  # noqa: BLE001 - re-raised with the row that caused it
            raise ValueError(f"load_cifar10: split {split!r} row {index}: unreadable image ({err})") from err
    return {"pixels": pixels}


def load_cifar10(
    source: str | os.PathLike | Mapping | Sequence | None = EMBEDDED,
    *,
    splits: Sequence[str] | None = None,
    validation_size: int | float | None = None,
    seed: int = 0,
    decode: bool = True,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
):
    """Load CIFAR-10 as a ``datasets.DatasetDict``.

    Args:
        source: ``"embedded"`` / ``None`` (the 2,000 + 500 image sample inside the package; offline default),
            a hub id such as ``"uoft-cs/cifar10"``, a local folder holding ``{train,test}-*.parquet`` files
            (searched recursively, e.g. the hub's ``plain_text/`` layout), a parquet file or list of them,
            or a dict ``{split: path or [paths]}``.
        splits: keep only these splits (e.g. ``["test"]``); default all found.
        validation_size: carve a ``validation`` split out of ``train`` — an int (rows) or a float
            fraction — stratified by class with ``seed``. ``None`` / 0 keeps train whole.
        seed: seed of the validation carve-out.
        decode: add the ``pixels`` column (uint8, (3, 32, 32)) with a cached ``map`` and
            ``set_format("torch", columns=["pixels", "label"], dtype=torch.uint8)`` (both uint8 tensors).
            With ``False`` the raw ``img``/``label`` dataset is returned untouched (images are decoded lazily
            by ``datasets``).
        cache_dir: ``datasets`` cache folder (default ``HF_DATASETS_CACHE``).
        num_proc: processes for the decoding ``map``.

    Returns:
        ``DatasetDict`` with splits among train / validation / test; columns ``img`` (Image), ``label``
        (ClassLabel of :data:`CIFAR10_CLASSES`) and, when ``decode``, ``pixels``.

    Raises:
        FileNotFoundError / ValueError naming the source, split, column or row that is wrong; ConnectionError
        when a hub id cannot be reached (e.g. offline).
    """
    datasets = require("datasets", "train", "loading CIFAR-10")
    import torch

    kind, resolved = _resolve_source(source)
    if kind == "hub":
        from ..hub import check_hub_repo

        check_hub_repo(resolved, "dataset")  # a typo or an unreachable hub fails now, not after retries
        try:
            dsd = datasets.load_dataset(resolved, cache_dir=None if cache_dir is None else str(cache_dir))
        except Exception as err:  # noqa: BLE001 - turned into an actionable message
            raise ConnectionError(
                f"load_cifar10: could not load hub dataset {resolved!r} ({type(err).__name__}: {err}). "
                "Offline? Pass a local folder with {train,test}-*.parquet files or use the embedded sample."
            ) from err
    else:
        files = dict(resolved)
        if splits is not None:
            missing = [s for s in splits if s not in files]
            if missing:
                raise ValueError(f"load_cifar10: split(s) {missing} not found; available: {sorted(files)}")
            files = {s: files[s] for s in splits}
        _check_parquet_files(files)
        dsd = datasets.load_dataset(
            "parquet", data_files=files, cache_dir=None if cache_dir is None else str(cache_dir)
        )
    if splits is not None:
        missing = [s for s in splits if s not in dsd]
        if missing:
            raise ValueError(f"load_cifar10: split(s) {missing} not found; available: {sorted(dsd)}")
        dsd = datasets.DatasetDict({s: dsd[s] for s in splits})

    dsd = datasets.DatasetDict({name: _normalise_split(ds, name) for name, ds in dsd.items()})

    if validation_size:
        if "validation" in dsd:
            raise ValueError("load_cifar10: the source already has a 'validation' split; drop validation_size")
        if "train" not in dsd:
            raise ValueError("load_cifar10: validation_size needs a 'train' split to carve from")
        if isinstance(validation_size, float) and not 0.0 < validation_size < 1.0:
            raise ValueError(f"load_cifar10: validation_size={validation_size} must be in (0, 1) as a fraction")
        if isinstance(validation_size, int) and not 0 < validation_size < len(dsd["train"]):
            raise ValueError(
                f"load_cifar10: validation_size={validation_size} must be in (0, {len(dsd['train'])}) rows"
            )
        parts = dsd["train"].train_test_split(test_size=validation_size, seed=seed, stratify_by_column="label")
        # Flattened so each split is one contiguous Arrow table (no indices mapping on every read).
        dsd["train"], dsd["validation"] = parts["train"].flatten_indices(), parts["test"].flatten_indices()

    if decode:
        features = dsd[next(iter(dsd))].features.copy()
        features["pixels"] = datasets.Array3D(shape=IMAGE_SHAPE, dtype="uint8")
        features["img"] = datasets.Image(decode=False)
        for name in list(dsd):
            # The map sees undecoded {bytes, path} dicts: a map over decoded PIL images makes datasets re-encode
            # them on write (a second, lossy JPEG pass that also drops the file names).
            dsd[name] = dsd[name].cast_column("img", datasets.Image(decode=False)).map(
                _decode_batch,
                batched=True,
                with_indices=True,
                fn_kwargs={"split": name},
                features=features,
                num_proc=num_proc,
                desc=f"decode CIFAR-10 {name}",
            )
            dsd[name] = dsd[name].cast_column("img", datasets.Image())
            # dtype: datasets' torch formatter would otherwise widen uint8 to int64 (8x the bytes per batch).
            dsd[name].set_format("torch", columns=["pixels", "label"], dtype=torch.uint8)
    return dsd


def _check_parquet_files(files: dict[str, list[str]]) -> None:
    """Readable parquet and non-empty splits, checked from the footers before datasets builds anything."""
    pq = require("pyarrow.parquet", "train", "reading CIFAR-10 parquet files")

    for split, paths in files.items():
        rows = 0
        for path in paths:
            try:
                rows += pq.ParquetFile(path).metadata.num_rows
            except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
                raise ValueError(f"load_cifar10: {path!r} is not a readable parquet file ({err})") from err
        if rows == 0:
            raise ValueError(f"load_cifar10: split {split!r} is empty ({', '.join(paths)})")


def _normalise_split(ds, name: str):
    datasets = require("datasets", "train", "loading CIFAR-10")

    if len(ds) == 0:
        raise ValueError(f"load_cifar10: split {name!r} is empty")
    if "img" not in ds.column_names and "image" in ds.column_names:
        ds = ds.rename_column("image", "img")
    for column in ("img", "label"):
        if column not in ds.column_names:
            raise ValueError(
                f"load_cifar10: split {name!r} has no {column!r} column (columns: {ds.column_names}); "
                "expected the uoft-cs/cifar10 layout img/label"
            )
    if not isinstance(ds.features["img"], datasets.Image):
        ds = ds.cast_column("img", datasets.Image())
    label = ds.features["label"]
    if isinstance(label, datasets.ClassLabel):
        if tuple(label.names) != CIFAR10_CLASSES:
            raise ValueError(f"load_cifar10: split {name!r} label names {label.names} are not CIFAR-10's")
    else:
        labels = np.asarray(ds.data.column("label").to_numpy(zero_copy_only=False))
        bad = np.flatnonzero((labels < 0) | (labels > 9))
        if bad.size:
            raise ValueError(
                f"load_cifar10: split {name!r} row {int(bad[0])}: label {labels[bad[0]]} outside 0..9 "
                f"({bad.size} such rows)"
            )
        ds = ds.cast_column("label", datasets.ClassLabel(names=list(CIFAR10_CLASSES)))
    return ds
