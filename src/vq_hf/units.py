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

Inputs (see :func:`extract_units`): your own files (folders, globs; audio for speech models, images for image
models), in-memory arrays / PIL images, any ``datasets`` column, or a prepared split of the model's corpus.
Raw inputs are read and checked one by one in :mod:`vq_hf.unit_inputs`; a bad one stops the run naming it, or is
skipped and reported (``skip_bad_inputs``).

    vq-hf units --model DIR --inputs recordings/ --output units/              # one row per audio file
    vq-hf units --model DIR --dataset_name user/ds --column audio --split test --output units/
    vq-hf units --model DIR --dataset_name corpus_root --split test --output units/   # the model's own corpus

The output is written to a temporary folder and renamed, with ``units_report.json`` (rows written, skipped
inputs with their cause); a non-empty output folder is refused without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ._extras import require

logger = logging.getLogger("vq_hf.units")

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


def _encoded_rows(model, batches: Iterator[tuple[list[str], dict]], device, dedup: bool, rows_out: Callable) -> tuple[int, int, int | None]:
    """Encode every ``(ids, inputs)`` batch and hand each example's row to ``rows_out``; returns counts."""
    num_codebooks = None
    index = seen_positions = 0
    for ids, batch in batches:
        inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in _encode_kwargs(model, batch).items()}
        encoded = model.encode(**inputs)
        codes = encoded.codes if hasattr(encoded, "codes") else encoded
        codes = torch.as_tensor(codes).detach().to("cpu", torch.int64)
        if codes.dim() < 3 or codes.shape[0] != len(ids):
            raise ValueError(
                f"extract_units: encode() returned codes of shape {tuple(codes.shape)} for a batch of "
                f"{len(ids)}; expected (B, *positions, num_codebooks)"
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
        for i, ident in enumerate(ids):
            grid = arr[i]
            if lengths is not None:
                grid = grid[: int(lengths[i])]
            shape = list(grid.shape[:-1])
            flat = grid.reshape(-1, num_codebooks)
            seen_positions += flat.shape[0]
            durations = None
            if dedup:
                flat, durations = run_length_encode(flat)
            rows_out(str(index) if ident is None else str(ident), flat, shape, durations, num_codebooks)
            index += 1
    return index, seen_positions, num_codebooks


def _dataset_batches(dataset, collator, batch_size, id_column, max_examples, bar) -> Iterator[tuple[list, dict]]:
    """Batches of an already-prepared split (the model's own corpus format) through its collator."""
    index = 0
    for examples in _batches(dataset, batch_size):
        if max_examples is not None and index >= max_examples:
            break
        if max_examples is not None:
            examples = examples[: max_examples - index]
        ids = [
            (example.get(id_column) if (id_column and isinstance(example, dict)) else None) for example in examples
        ]
        ids = [str(index + i) if ident is None else ident for i, ident in enumerate(ids)]
        index += len(examples)
        yield ids, collator(examples)
        bar.update(len(examples))


def _raw_batches(items, handler, batch_size, max_examples, skip_bad_inputs, skipped, bar) -> Iterator[tuple[list, dict]]:
    """Batches of raw inputs: each loaded on its own (a bad one is named, or skipped and recorded), then collated."""
    from vq_hf.data.files import BadInputError

    ids, loaded, taken = [], [], 0
    for ident, name, value in items:
        if max_examples is not None and taken >= max_examples:
            break
        try:
            example = handler.load(value, name)
        except BadInputError as err:
            if not skip_bad_inputs:
                raise
            skipped.append({"path": err.path, "reason": err.reason})
            logger.warning("skipping %s: %s", err.path, err.reason)
            bar.update(1)
            continue
        ids.append(ident)
        loaded.append(example)
        taken += 1
        if len(loaded) == batch_size:
            yield ids, handler.collate(loaded)
            bar.update(len(loaded))
            ids, loaded = [], []
    if loaded:
        yield ids, handler.collate(loaded)
        bar.update(len(loaded))


@torch.inference_mode()
def extract_units(
    model: torch.nn.Module,
    inputs,
    processor: Any = None,
    *,
    column: str | None = None,
    sampling_rate: int | None = None,
    resize: bool = False,
    skip_bad_inputs: bool = False,
    collator: Callable | None = None,
    batch_size: int = 32,
    dedup: bool = False,
    device: str | torch.device | None = None,
    id_column: str | None = "id",
    max_examples: int | None = None,
    progress: bool = True,
):
    """Encode every input and return the units as a ``datasets.Dataset`` (one row per input).

    Args:
        model: a model with ``encode(**inputs)`` returning an object with ``codes`` ``(B, *grid, G)`` int64 and,
            for padded sequences, ``lengths`` ``(B,)`` or a right-padding ``mask`` ``(B, T)`` (True = real) —
            e.g. :class:`vq_hf.VQVAEModel` / ``VQVAEForCTC``. It is moved to ``device`` and run in eval
            mode (its previous train/eval mode is restored afterwards).
        inputs: what to encode, one of
            * file paths (a path, or a list): files, folders (searched recursively) or glob patterns — audio
              (anything soundfile reads) for speech models, images for image models; ``id`` = the path relative
              to its input folder;
            * in-memory values (one, or a list): ``(array, sampling_rate)`` tuples or ``{"array",
              "sampling_rate"}`` dicts for speech (a bare array needs ``sampling_rate=``), PIL images or uint8
              arrays for image models; ``id`` = the position;
            * a ``datasets.Dataset`` / ``IterableDataset`` with ``column=``: that column holds audio (decoded or
              not), file paths, or images;
            * a prepared split of the model's own corpus format (``load_cifar10`` / ``load_scribblelens`` /
              ``load_wsj``) without ``column``: encoded through ``collator`` as before.
        processor: feature extractor / image processor; default the one saved in the model folder
            (``model.name_or_path``), else the family's default (speech needs the saved CMVN statistics).
        column: the dataset column holding the raw inputs (see ``inputs``).
        sampling_rate: the rate of bare audio arrays.
        resize: CIFAR models: scale images of another size to the model's size (bicubic) instead of refusing them.
        skip_bad_inputs: skip an input that cannot be read, is empty, shorter than one frame or holds NaN/Inf, and
            list it in the summary's ``skipped``; by default it raises :class:`vq_hf.data.files.BadInputError`
            (``"<path>: <cause>"``).
        collator: prepared splits only: turns a list of examples into the model inputs; default by
            ``model.config.architecture``.
        batch_size: examples per ``encode`` call.
        dedup: collapse runs of repeated codes (sequences only) and add the ``durations`` column.
        device: where to run; default CUDA when available, else the model's current device.
        id_column: the dataset column holding example ids (missing → the example index is used).
        max_examples: stop after this many examples (a quick look at a large split).
        progress: show a tqdm progress bar.

    Returns:
        ``datasets.Dataset`` with columns ``id``, ``codes``, ``shape``, ``length`` (+ ``durations``), described
        in this module's docstring; ``info.description`` holds a JSON summary (codebook size, counts, and the
        skipped inputs as ``[{"path", "reason"}]``).
    """
    datasets = require("datasets", "train", "the units dataset")
    tqdm = require("tqdm.auto", "train", "progress bars").tqdm

    from vq_hf.unit_inputs import _is_dataset, input_handler, raw_items

    if not hasattr(model, "encode"):
        raise TypeError(f"extract_units: {type(model).__name__} has no encode() method")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"extract_units: batch_size={batch_size!r} must be a positive int")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"extract_units: max_examples={max_examples!r} must be a positive int or None")
    if device is None:
        param = next(model.parameters(), None)
        device = "cuda" if torch.cuda.is_available() else (param.device if param is not None else "cpu")
    device = torch.device(device)
    architecture = getattr(getattr(model, "config", None), "architecture", None)

    prepared_split = _is_dataset(inputs) and column is None
    total = len(inputs) if (_is_dataset(inputs) and hasattr(inputs, "__len__")) else None
    if max_examples is not None:
        total = max_examples if total is None else min(total, max_examples)
    bar = tqdm(total=total, desc="extract units", unit="ex", disable=not progress)
    skipped: list[dict] = []
    if prepared_split:
        if collator is None:
            collator = _default_collator(model, processor)
        batches = _dataset_batches(inputs, collator, batch_size, id_column, max_examples, bar)
    else:
        handler = input_handler(model, processor, resize=resize, sampling_rate=sampling_rate)
        items = raw_items(inputs, architecture, column, id_column)
        batches = _raw_batches(items, handler, batch_size, max_examples, skip_bad_inputs, skipped, bar)

    shards, rows = [], {"id": [], "codes": [], "shape": [], "length": []}
    if dedup:
        rows["durations"] = []

    def add_row(ident, flat, shape, durations, num_codebooks):
        nonlocal rows
        rows["id"].append(ident)
        rows["codes"].append(flat[:, 0].tolist() if num_codebooks == 1 else flat.tolist())
        rows["shape"].append(shape)
        rows["length"].append(int(flat.shape[0]))
        if dedup:
            rows["durations"].append(durations.tolist())
        if len(rows["id"]) >= _SHARD_ROWS:
            shards.append(datasets.Dataset.from_dict(rows, features=_features(num_codebooks, dedup)))
            rows = {k: [] for k in rows}

    was_training = model.training
    model.to(device).eval()
    try:
        count, seen_positions, num_codebooks = _encoded_rows(model, batches, device, dedup, add_row)
    finally:
        bar.close()
        model.train(was_training)

    if count == 0:
        if skipped:
            raise ValueError(f"extract_units: all {len(skipped)} inputs were bad (first: {skipped[0]['path']}: "
                             f"{skipped[0]['reason']})")
        raise ValueError("extract_units: the inputs yielded no examples")
    if rows["id"]:
        shards.append(datasets.Dataset.from_dict(rows, features=_features(num_codebooks, dedup)))
    units = datasets.concatenate_datasets(shards) if len(shards) > 1 else shards[0]
    config = getattr(model, "config", None)
    summary = {
        "num_examples": count,
        "num_positions": seen_positions,
        "num_codebooks": num_codebooks,
        "codebook_size": _codebook_size(model),
        "architecture": architecture,
        "dedup": dedup,
        "num_skipped": len(skipped),
        "skipped": skipped,
    }
    units.info.description = json.dumps(summary)
    return units


def _codebook_size(model) -> int | None:
    """K from the model's quantizer module (the config layout is being redesigned), else the config."""
    quantizer = getattr(model, "quantizer", None)
    if isinstance(getattr(quantizer, "codebook_size", None), int):
        return quantizer.codebook_size
    codebook = getattr(quantizer, "codebook", None)
    if isinstance(codebook, torch.Tensor) and codebook.dim() == 3:
        return int(codebook.shape[1])
    return getattr(getattr(model, "config", None), "codebook_size", None)


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
    from vq_hf.unit_inputs import load_processor

    return load_processor(path, architecture)


def _load_column_dataset(name: str, split: str | None):
    """Any ``datasets`` dataset: a ``save_to_disk`` folder, or whatever ``load_dataset`` takes (Hub id, local
    folder such as an audiofolder/imagefolder, a loading script...); one split of it."""
    datasets = require("datasets", "train", "loading a datasets dataset")

    path = Path(name)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
    else:
        loaded = datasets.load_dataset(name, split=split) if split else datasets.load_dataset(name)
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split is None:
            if len(loaded) != 1:
                raise ValueError(f"{name} has the splits {sorted(loaded)}; choose one with --split")
            split = next(iter(loaded))
        if split not in loaded:
            raise ValueError(f"{name} has no split {split!r} (splits: {sorted(loaded)})")
        loaded = loaded[split]
    return loaded


def push_units(folder: str | os.PathLike, repo_id: str, *, api=None, private: bool = False) -> str:
    """Upload a ``vq-hf units`` output folder to the Hub as a dataset repository (parquet + report + card).

    ``api`` is a :class:`huggingface_hub.HfApi` (default a new one, using the saved token); tests pass a fake
    with the same ``create_repo`` / ``upload_folder`` methods. Returns the repository id.
    """
    import tempfile

    datasets = require("datasets", "train", "the units dataset")

    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    folder = Path(folder)
    units = datasets.load_from_disk(str(folder))
    summary = json.loads(units.info.description or "{}")
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        (staging / "data").mkdir()
        units.to_parquet(str(staging / "data" / "units-00000-of-00001.parquet"))
        if (folder / REPORT_FILE).is_file():
            shutil.copyfile(folder / REPORT_FILE, staging / REPORT_FILE)
        columns = ", ".join(f"`{c}`" for c in units.column_names)
        (staging / "README.md").write_text(
            "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*.parquet\n"
            "tags:\n- vq_hf\n- discrete-units\n---\n\n"
            f"# Discrete units\n\nExtracted with `vq-hf units` (vq_hf): {len(units)} rows, columns {columns}.\n\n"
            f"```json\n{json.dumps(summary, indent=2)}\n```\n",
            encoding="utf-8",
        )
        api.upload_folder(folder_path=str(staging), repo_id=repo_id, repo_type="dataset",
                          commit_message=f"Add {len(units)} rows of discrete units (vq-hf units)")
    return repo_id


REPORT_FILE = "units_report.json"


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception of a chain (datasets wraps generator errors in DatasetGenerationError)."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        nxt = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if nxt is None:
            break
        err = nxt
    return err


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, KeyError) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text


def _write_atomically(units, out: Path, report: dict, overwrite: bool) -> None:
    """save_to_disk into a temporary sibling folder, then rename it to ``out`` (no half-written output)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        units.save_to_disk(str(tmp))
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        old = None
        if out.exists():
            if not overwrite and (not out.is_dir() or any(out.iterdir())):
                raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it")
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vq-hf units",
        description="Extract the discrete units (codes) of your own files, of any datasets column, or of a split "
        "of the model's corpus, and save them as a datasets.Dataset (save_to_disk). Columns: id, codes, shape, "
        "length (+ durations with --dedup); OUT/units_report.json lists skipped inputs.",
    )
    p.add_argument("--model", required=True,
                   help="folder written by save_pretrained (config.json + weights), or a hub model id")
    p.add_argument(
        "--inputs", nargs="+", default=None, metavar="PATH",
        help="files, folders (searched recursively) or glob patterns: audio (anything soundfile reads; resampled "
        "with soxr to the model's rate, mixed down to mono) for speech models, images for image models; "
        "id = path relative to the input folder",
    )
    p.add_argument(
        "--dataset_name",
        default=None,
        help="with --column: any datasets dataset (Hub id, local folder, save_to_disk folder). Without --column: "
        "the model's own corpus — cifar10: hub id / parquet folder (default: the embedded sample); handwriting: "
        "corpus zip; speech: Kaldi data root with one folder per split, or one Kaldi folder (a train folder is "
        "needed only when the model folder lacks a fitted preprocessor_config.json and phones.txt)",
    )
    p.add_argument("--column", default=None, help="the column of --dataset_name holding audio, file paths or images")
    p.add_argument("--alignments", default=None, help="handwriting corpus: optional alignment zip")
    p.add_argument("--cache_dir", default=None,
                   help="root for feature caches (default: the datasets cache, $HF_DATASETS_CACHE); nothing is "
                        "written into the model folder")
    p.add_argument("--allow_scp_commands", action="store_true",
                   help="speech: run piped wav.scp / feats.scp entries (`sph2pipe ... |`) as shell commands; "
                        "only for a corpus you trust (refused otherwise)")
    p.add_argument("--split", default=None, help="dataset split (default: test for the model's corpus; the only "
                   "split of a --column dataset)")
    p.add_argument("--output", required=True, help="output folder for save_to_disk (must be empty or absent)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    p.add_argument("--skip_bad_inputs", action="store_true",
                   help="skip unreadable / empty / too short / NaN inputs and list them in units_report.json "
                   "(default: stop with exit 2 naming the input, writing nothing)")
    p.add_argument("--resize", action="store_true", help="CIFAR models: scale images of another size to the model's")
    p.add_argument("--dedup", action="store_true", help="collapse runs of repeated codes (sequences only)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--max_examples", type=int, default=None)
    p.add_argument("--push_to_hub", default=None, metavar="REPO", help="also upload the units as a Hub dataset repo")
    p.add_argument("--no_progress", action="store_true")
    return p


def cli(argv: list[str] | None = None, *, hub_api=None) -> int:
    args = build_parser().parse_args(argv)
    from vq_hf.hub import HubRepoError, local_model_folder

    try:
        args.model = str(local_model_folder(args.model))
    except HubRepoError as e:
        raise SystemExit(f"vq-hf units: --model: {e}") from None
    out = Path(args.output)
    try:
        if args.inputs and args.dataset_name:
            raise ValueError("give either --inputs or --dataset_name, not both")
        if args.column and not args.dataset_name:
            raise ValueError("--column needs --dataset_name")
        if out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it")
        model = _load_model(args.model)
        architecture = model.config.architecture
        processor = _load_processor(args.model, architecture)
        common = dict(batch_size=args.batch_size, dedup=args.dedup, device=args.device,
                      max_examples=args.max_examples, progress=not args.no_progress)
        if args.inputs or args.column:
            source = args.inputs if args.inputs else _load_column_dataset(args.dataset_name, args.split)
            units = extract_units(model, source, processor, column=args.column, resize=args.resize,
                                  skip_bad_inputs=args.skip_bad_inputs, **common)
        else:
            args.split = args.split or "test"
            try:
                dataset = _load_split(architecture, args)
            except (ValueError, FileNotFoundError, ConnectionError) as e:  # bad data: one line, no traceback
                raise ValueError(f"data: {_one_line(_root_cause(e))}") from None
            units = extract_units(model, dataset, processor, **common)
        summary = json.loads(units.info.description)
        report = {"num_units_rows": len(units), "skipped": summary["skipped"]}
        _write_atomically(units, out, report, args.overwrite)
    except SystemExit as err:  # the corpus loaders' one-line usage errors: exit 2 like every bad input
        if not isinstance(err.code, str):
            raise
        print(err.code if err.code.startswith("vq-hf units:") else f"vq-hf units: {err.code}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 — a CLI ends with one line naming the cause, not a traceback
        cause = _root_cause(err)
        expected = (ValueError, OSError, RuntimeError, KeyError, TypeError)
        if not isinstance(err, expected) and not type(err).__module__.startswith("datasets"):
            raise
        print(f"vq-hf units: {_one_line(cause)}", file=sys.stderr)
        return 2
    if args.push_to_hub:
        push_units(out, args.push_to_hub, api=hub_api)
    summary.update(output=str(out), model=args.model, num_units_rows=len(units))
    if args.split:
        summary["split"] = args.split
    summary.pop("skipped", None)
    print(json.dumps(summary), file=sys.stdout)
    return 0
