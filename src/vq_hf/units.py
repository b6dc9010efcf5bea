"""Discrete units: the codes a trained VQ model assigns to every example of a dataset split.

:func:`extract_units` streams a ``datasets`` split through ``model.encode`` in batches and returns a
``datasets.Dataset`` with one row per example:

* ``id`` (string): the dataset's ``id`` column when it has one, else the example's index in the split.
* ``codes``: the example's codes, positions in order (images: row-major over the latent grid, e.g. 8 × 8 →
  64 positions; lines / utterances: left to right, padding removed). With one codebook a flat list of ints
  ``[z_0, z_1, ...]``; with G > 1 codebooks a list of positions, each ``[z_p^1, ..., z_p^G]``.
* ``shape``: the latent grid of the example before flattening (``[8, 8]`` for CIFAR-10, ``[T]`` for
  sequences), so ``np.asarray(codes).reshape(*shape, G)`` restores ``model.encode``'s layout.
* ``length``: number of entries of ``codes``.
* ``durations`` (only with ``dedup=True``): run lengths; consecutive repeats of the same code (all codebooks
  equal) are collapsed into one entry, so ``codes`` holds the runs and ``sum(durations)`` the original
  number of positions. Only sequences (speech, handwriting) can be de-duplicated.

``vq-hf units --model DIR --split test --output units/`` does this for a saved model and writes the
dataset with ``save_to_disk``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ._extras import require

# Batch keys that are targets or bookkeeping, never encoder inputs (used when ``encode`` takes **kwargs).
_NON_INPUT_KEYS = {"labels", "class_labels", "alignment", "text", "lengths", "id", "ids"}
_SHARD_ROWS = 4096  # rows buffered as Python lists before they become an Arrow table


def _encode_kwargs(model: torch.nn.Module, batch: dict) -> dict:
    """The entries of ``batch`` that ``model.encode`` accepts."""
    params = inspect.signature(model.encode).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {k: v for k, v in batch.items() if k not in _NON_INPUT_KEYS}
    return {k: v for k, v in batch.items() if k in params}


def _valid_lengths(encoded: Any, codes: torch.Tensor) -> torch.Tensor | None:
    """Per-example number of valid positions for sequence outputs, from ``lengths`` or ``mask``; None = all."""
    lengths = getattr(encoded, "lengths", None)
    mask = getattr(encoded, "mask", None)
    if lengths is not None:
        return torch.as_tensor(lengths).reshape(-1).to(torch.int64).cpu()
    if mask is not None:
        mask = torch.as_tensor(mask).cpu().bool()
        if mask.shape != codes.shape[:-1]:
            raise ValueError(
                f"extract_units: encode() returned mask of shape {tuple(mask.shape)} for codes {tuple(codes.shape)}"
            )
        if mask.dim() != 2:
            raise ValueError("extract_units: a padding mask is only supported for sequence codes (B, T, G)")
        # padding must be a suffix: a valid position after a padded one would be silently reordered
        if (mask[:, 1:] & ~mask[:, :-1]).any():
            raise ValueError("extract_units: encode() mask has valid positions after padding (not right-padded)")
        return mask.sum(dim=1).to(torch.int64)
    return None


def run_length_encode(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse consecutive identical rows of ``codes`` ``(T, G)``; returns ``(runs (R, G), durations (R,))``."""
    if codes.shape[0] == 0:
        return codes, np.zeros((0,), dtype=np.int64)
    change = np.ones(codes.shape[0], dtype=bool)
    change[1:] = (codes[1:] != codes[:-1]).any(axis=1)
    starts = np.flatnonzero(change)
    durations = np.diff(np.append(starts, codes.shape[0]))
    return codes[starts], durations


def _batches(dataset, batch_size: int) -> Iterator[list[dict]]:
    """Lists of example dicts (works for ``Dataset`` and ``IterableDataset``, any format)."""
    buf: list[dict] = []
    for example in dataset:
        buf.append(example)
        if len(buf) == batch_size:
            yield buf
            buf = []
    if buf:
        yield buf


def _default_collator(model: torch.nn.Module, processor: Any) -> Callable:
    arch = getattr(getattr(model, "config", None), "architecture", None)
    if arch == "cifar10":
        from vq_hf.data import Cifar10Collator

        return Cifar10Collator()
    if arch == "handwriting":
        from vq_hf.data import LineImageCollator

        return LineImageCollator(processor=processor)
    if arch == "speech":
        from vq_hf.data import SpeechCollator

        # whole utterances (chunk_frames=None): the splits already hold CMVN-normalised features, the collator
        # only pads them (its default crops 64-frame training chunks)
        return SpeechCollator(chunk_frames=None)
    raise ValueError(
        f"extract_units: cannot choose a collator for model architecture {arch!r}; pass collator=... "
        "(a callable turning a list of examples into the model's input tensors)"
    )


def _features(num_codebooks: int, dedup: bool):
    datasets = require("datasets", "train", "the units dataset")

    code = datasets.Value("int32")
    feats = {
        "id": datasets.Value("string"),
        "codes": datasets.List(code) if num_codebooks == 1 else datasets.List(datasets.List(code)),
        "shape": datasets.List(datasets.Value("int32")),
        "length": datasets.Value("int32"),
    }
    if dedup:
        feats["durations"] = datasets.List(datasets.Value("int32"))
    return datasets.Features(feats)


@torch.inference_mode()
def extract_units(
    model: torch.nn.Module,
    dataset,
    *,
    collator: Callable | None = None,
    processor: Any = None,
    batch_size: int = 32,
    dedup: bool = False,
    device: str | torch.device | None = None,
    id_column: str | None = "id",
    max_examples: int | None = None,
    progress: bool = True,
):
    """Encode every example of ``dataset`` and return its units as a ``datasets.Dataset``.

    Args:
        model: a model with ``encode(**inputs)`` returning an object with ``codes`` ``(B, *grid, G)`` int64 and,
            for padded sequences, ``lengths`` ``(B,)`` or a right-padding ``mask`` ``(B, T)`` (True = real) —
            e.g. :class:`vq_hf.models.VQVAEModel` / ``VQVAEForCTC``. It is moved to ``device`` and run in eval
            mode (its previous train/eval mode is restored afterwards).
        dataset: a ``datasets.Dataset`` or ``IterableDataset`` split, iterated in order (streaming: the whole
            split is never materialised as tensors).
        collator: turns a list of examples into the model inputs; default by ``model.config.architecture``
            (``Cifar10Collator``, ``LineImageCollator(processor)``, the speech collator of ``vq_hf.data``).
        processor: the image processor / feature extractor handed to the default collator.
        batch_size: examples per ``encode`` call.
        dedup: collapse runs of repeated codes (sequences only) and add the ``durations`` column.
        device: where to run; default CUDA when available, else the model's current device.
        id_column: the dataset column holding example ids (missing → the example index is used).
        max_examples: stop after this many examples (a quick look at a large split).
        progress: show a tqdm progress bar.

    Returns:
        ``datasets.Dataset`` with columns ``id``, ``codes``, ``shape``, ``length`` (+ ``durations``), described
        in this module's docstring; ``info.description`` holds a JSON summary (codebook size, counts).
    """
    datasets = require("datasets", "train", "the units dataset")
    tqdm = require("tqdm.auto", "train", "progress bars").tqdm

    if not hasattr(model, "encode"):
        raise TypeError(f"extract_units: {type(model).__name__} has no encode() method")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"extract_units: batch_size={batch_size!r} must be a positive int")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"extract_units: max_examples={max_examples!r} must be a positive int or None")
    if collator is None:
        collator = _default_collator(model, processor)
    if device is None:
        param = next(model.parameters(), None)
        device = "cuda" if torch.cuda.is_available() else (param.device if param is not None else "cpu")
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()

    total = len(dataset) if hasattr(dataset, "__len__") else None
    if max_examples is not None:
        total = max_examples if total is None else min(total, max_examples)
    bar = tqdm(total=total, desc="extract units", unit="ex", disable=not progress)

    shards, rows = [], {"id": [], "codes": [], "shape": [], "length": []}
    if dedup:
        rows["durations"] = []
    num_codebooks = None
    index = 0
    seen_positions = 0
    try:
        for examples in _batches(dataset, batch_size):
            if max_examples is not None and index >= max_examples:
                break
            if max_examples is not None:
                examples = examples[: max_examples - index]
            batch = collator(examples)
            inputs = {
                k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in _encode_kwargs(model, batch).items()
            }
            encoded = model.encode(**inputs)
            codes = encoded.codes if hasattr(encoded, "codes") else encoded
            codes = torch.as_tensor(codes).detach().to("cpu", torch.int64)
            if codes.dim() < 3 or codes.shape[0] != len(examples):
                raise ValueError(
                    f"extract_units: encode() returned codes of shape {tuple(codes.shape)} for a batch of "
                    f"{len(examples)}; expected (B, *positions, num_codebooks)"
                )
            if num_codebooks is None:
                num_codebooks = int(codes.shape[-1])
                if dedup and codes.dim() != 3:
                    raise ValueError(
                        f"extract_units: dedup=True needs sequence codes (B, T, G); this model gives a "
                        f"{codes.dim() - 2}-D latent grid {tuple(codes.shape[1:-1])} (images are not sequences)"
                    )
            lengths = _valid_lengths(encoded, codes) if codes.dim() == 3 else None
            arr = codes.numpy()
            for i, example in enumerate(examples):
                grid = arr[i]
                if lengths is not None:
                    grid = grid[: int(lengths[i])]
                shape = list(grid.shape[:-1])
                flat = grid.reshape(-1, num_codebooks)
                seen_positions += flat.shape[0]
                if dedup:
                    flat, durations = run_length_encode(flat)
                    rows["durations"].append(durations.tolist())
                ident = example.get(id_column) if (id_column and isinstance(example, dict)) else None
                rows["id"].append(str(index) if ident is None else str(ident))
                rows["codes"].append(flat[:, 0].tolist() if num_codebooks == 1 else flat.tolist())
                rows["shape"].append(shape)
                rows["length"].append(int(flat.shape[0]))
                index += 1
            bar.update(len(examples))
            if len(rows["id"]) >= _SHARD_ROWS:
                shards.append(datasets.Dataset.from_dict(rows, features=_features(num_codebooks, dedup)))
                rows = {k: [] for k in rows}
    finally:
        bar.close()
        model.train(was_training)

    if index == 0:
        raise ValueError("extract_units: the dataset yielded no examples")
    if rows["id"]:
        shards.append(datasets.Dataset.from_dict(rows, features=_features(num_codebooks, dedup)))
    units = datasets.concatenate_datasets(shards) if len(shards) > 1 else shards[0]
    config = getattr(model, "config", None)
    summary = {
        "num_examples": index,
        "num_positions": seen_positions,
        "num_codebooks": num_codebooks,
        "codebook_size": getattr(getattr(model, "quantizer", None), "codebook_size", None),
        "architecture": getattr(config, "architecture", None),
        "dedup": dedup,
    }
    units.info.description = json.dumps(summary)
    return units


# --------------------------------------------------------------------------------------------- CLI


def _load_split(architecture: str, args) -> Any:
    """One split of the task's dataset through the vq_hf.data loader of ``architecture``."""
    import vq_hf.data as data

    if architecture == "cifar10":
        source = args.dataset_name or data.cifar10.EMBEDDED
        # decode=False: the collator decodes each image once; no cached decoding pass over the split
        return data.load_cifar10(source, splits=[args.split], decode=False, cache_dir=args.cache_dir)[args.split]
    if architecture == "handwriting":
        if not args.dataset_name:
            raise SystemExit("vq-hf units: --dataset_name (the ScribbleLens corpus zip) is required for handwriting")
        kwargs = {"splits": [args.split], "cache_dir": args.cache_dir}
        if args.alignments:
            kwargs["alignments"] = args.alignments
        return data.load_scribblelens(args.dataset_name, **kwargs)[args.split]
    if architecture == "speech":
        return _load_speech_split(args)
    raise SystemExit(f"vq-hf units: unknown architecture {architecture!r} in the model config")


def _load_speech_split(args) -> Any:
    """A split of a Kaldi data root (one folder per split, or one Kaldi folder) with the model's phone set.

    With the model's fitted ``preprocessor_config.json`` and ``phones.txt`` (every training run writes both)
    only the requested split is read, normalised with the model's CMVN statistics. Otherwise ``load_wsj`` fits
    them on the root's ``train`` folder, compared with the model's statistics when it has any.
    """
    from vq_hf.data import load_wsj
    from vq_hf.data.wsj import _is_kaldi_dir, read_phones
    from vq_hf.models.vqvae_speech.feature_extraction_vqvae_speech import VQVAEFeatureExtractor

    if not args.dataset_name:
        raise SystemExit("vq-hf units: --dataset_name (a Kaldi data root: one folder per split) is required for speech")
    root = Path(args.dataset_name)
    if not root.is_dir():
        raise SystemExit(f"vq-hf units: --dataset_name {root}: not a directory")
    options = {"allow_commands": args.allow_scp_commands,
               "cache_dir": None if args.cache_dir is None else Path(args.cache_dir) / "vq_hf_wsj"}
    phones_file, model_fe = Path(args.model) / "phones.txt", Path(args.model) / "preprocessor_config.json"
    fe = VQVAEFeatureExtractor.from_pretrained(args.model) if model_fe.is_file() else None
    if fe is not None and fe.has_cmvn and phones_file.is_file():
        dirs = {args.split: root} if _is_kaldi_dir(root) else root
        dsd = load_wsj(dirs, splits=[args.split], fit_cmvn=False, feature_extractor=fe,
                       phones=read_phones(phones_file), **options)
        return dsd[args.split]
    if _is_kaldi_dir(root):
        dirs, train_split = {args.split: root}, args.split
    else:
        dirs = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and _is_kaldi_dir(p)}
        if args.split not in dirs:
            raise SystemExit(f"vq-hf units: split {args.split!r} not under {root} (Kaldi folders: {sorted(dirs)})")
        train_split = "train" if "train" in dirs else args.split
    if train_split != "train":
        print(
            f"vq-hf units: warning: no 'train' folder under {root}; CMVN statistics are fitted on {train_split!r}",
            file=sys.stderr,
        )
    kwargs = {"phones": read_phones(phones_file)} if phones_file.is_file() else {}
    dsd, info = load_wsj(dirs, train_split=train_split, return_info=True, **kwargs, **options)
    if model_fe.is_file():
        saved = json.loads(model_fe.read_text())
        a, b = saved.get("cmvn_mean"), info.feature_extractor.to_dict().get("cmvn_mean")
        if a is not None and b is not None and not np.allclose(np.asarray(a), np.asarray(b), atol=1e-4):
            print(
                f"vq-hf units: warning: CMVN statistics fitted on {dirs[train_split]} differ from the model's "
                f"{model_fe}; the units may not match those seen in training",
                file=sys.stderr,
            )
    return dsd[args.split]


def _load_model(path: str):
    from vq_hf.evaluation import load_model

    if not (Path(path) / "config.json").is_file():
        raise SystemExit(f"vq-hf units: {path}/config.json not found (expected a save_pretrained folder)")
    return load_model(path)


def _load_processor(path: str, architecture: str):
    if not (Path(path) / "preprocessor_config.json").is_file():
        return None
    if architecture == "handwriting":
        from vq_hf.models.vqvae_line.image_processing_vqvae_line import VQVAELineImageProcessor

        return VQVAELineImageProcessor.from_pretrained(path)
    if architecture == "speech":
        from vq_hf.models.vqvae_speech.feature_extraction_vqvae_speech import VQVAEFeatureExtractor

        return VQVAEFeatureExtractor.from_pretrained(path)
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vq-hf units",
        description="Extract the discrete units (codes) of a dataset split with a trained model and save them "
        "as a datasets.Dataset (save_to_disk). Columns: id, codes, shape, length (+ durations with --dedup).",
    )
    p.add_argument("--model", required=True,
                   help="folder written by save_pretrained (config.json + weights), or a hub model id")
    p.add_argument(
        "--dataset_name",
        default=None,
        help="cifar10: hub id / parquet folder (default: the embedded sample); handwriting: corpus zip; "
        "speech: Kaldi data root with one folder per split, or one Kaldi folder (a train folder is needed only "
        "when the model folder lacks a fitted preprocessor_config.json and phones.txt)",
    )
    p.add_argument("--alignments", default=None, help="handwriting: optional alignment zip")
    p.add_argument("--cache_dir", default=None,
                   help="root for feature caches (default: the datasets cache, $HF_DATASETS_CACHE); nothing is "
                        "written into the model folder")
    p.add_argument("--allow_scp_commands", action="store_true",
                   help="speech: run piped wav.scp / feats.scp entries (`sph2pipe ... |`) as shell commands; "
                        "only for a corpus you trust (refused otherwise)")
    p.add_argument("--split", default="test")
    p.add_argument("--output", required=True, help="output folder for save_to_disk")
    p.add_argument("--dedup", action="store_true", help="collapse runs of repeated codes (sequences only)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--max_examples", type=int, default=None)
    p.add_argument("--no_progress", action="store_true")
    return p


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vq_hf.hub import HubRepoError, local_model_folder

    try:
        args.model = str(local_model_folder(args.model))
    except HubRepoError as e:
        raise SystemExit(f"vq-hf units: --model: {e}") from None
    model = _load_model(args.model)
    architecture = model.config.architecture
    try:
        dataset = _load_split(architecture, args)
    except (ValueError, FileNotFoundError, ConnectionError) as e:  # bad data: one line, no traceback
        raise SystemExit(f"vq-hf units: data: {e}") from None
    units = extract_units(
        model,
        dataset,
        processor=_load_processor(args.model, architecture),
        batch_size=args.batch_size,
        dedup=args.dedup,
        device=args.device,
        max_examples=args.max_examples,
        progress=not args.no_progress,
    )
    out = Path(args.output)
    units.save_to_disk(str(out))
    summary = json.loads(units.info.description)
    summary.update(output=str(out), split=args.split, model=args.model)
    print(json.dumps(summary), file=sys.stdout)
    return 0
