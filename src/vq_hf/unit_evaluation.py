"""`vq-hf unit-quality`: how well a model's units follow the reference phones / characters of an aligned split.

Speech: a Kaldi data root with phone CTMs (``vq-hf make-speech-corpus`` writes them, WSJ via ``ali-to-phones
--ctm-output``); handwriting: a ScribbleLens-format zip with per-column alignments. Units come from
:func:`vq_hf.units.extract_units` on whole utterances / lines and are upsampled onto the reference frames by the
encoder's stride (``config.time_reduction``: latent t covers frames [t·s, (t+1)·s), see
:func:`vq_hf.metrics.unit_quality.units_to_frames`). Metrics: :func:`vq_hf.metrics.unit_quality.unit_quality_metrics`.

Reference frames: speech 10 ms feature frames (boundary tolerance ±2 frames = ±20 ms); handwriting the resized
line's pixel columns (tolerance ±4 columns = ±1 latent; the "bitrate" is in bits per column, reported as
``bitrate_bits_per_column``). Frames that no alignment segment covers are left out. ABX items are the reference
segments without silence / blank / word space.

``--kmeans_floor`` adds the floor every learned unit inventory should beat: k-means with the model's K on the
input frames of the training split (speech: the 243-dim CMVN'd fbank frames, 10 ms; handwriting: the 32 pixel
values of each column), assigned frame by frame on the evaluated split and scored the same way (fairseq's HuBERT
iteration 0 uses k-means on MFCCs for this reason).

    vq-hf unit-quality --model runs/speech --dataset_name corpus/ --split test --kmeans_floor --output uq.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

SPEECH_TOLERANCE_FRAMES = 2  # ±20 ms at 10 ms frames
SPEECH_IGNORED = ("SIL", "<eps>", "<unk>")
HANDWRITING_IGNORED = ("*", "_")  # blank, word space (vq_hf.data.scribblelens BLANK / SPACE)


def _frame_labels(example: dict, task: str, names: list[str]) -> np.ndarray:
    """Reference label name per frame (None where no segment covers it)."""
    if task == "speech":
        labels = np.full(int(example["num_frames"]), None, dtype=object)
        for pid, start, end in zip(example["phone_ids"], example["phone_starts"], example["phone_ends"]):
            labels[int(start) : int(end)] = names[int(pid)]
        return labels
    alignment = example.get("alignment")
    if alignment is None:
        raise ValueError("the handwriting split has no alignments; pass --alignments (the alignment zip)")
    return np.asarray([names[int(a)] for a in alignment], dtype=object)


def _label_names(dataset, task: str) -> list[str]:
    feature = dataset.features["phone_ids" if task == "speech" else "alignment"]
    return list(feature.feature.names)


def _score(labels: list, units: list, speakers: list | None, task: str, seed: int) -> dict[str, Any]:
    from vq_hf.metrics.unit_quality import unit_quality_metrics

    keep = [lab != None for lab in labels]  # noqa: E711 — elementwise on object arrays
    ls = [lab[k].astype(str) for lab, k in zip(labels, keep)]
    us = [u[k] for u, k in zip(units, keep)]
    tolerance = SPEECH_TOLERANCE_FRAMES if task == "speech" else 4
    out = unit_quality_metrics(
        ls, us, frame_seconds=0.01 if task == "speech" else 1.0, boundary_tolerance=tolerance, speakers=speakers,
        ignore_labels=SPEECH_IGNORED if task == "speech" else HANDWRITING_IGNORED, seed=seed,
    )
    if task != "speech":
        out["bitrate_bits_per_column"] = out.pop("bitrate_bits_per_second")
    return out


def _speakers(dataset, task: str) -> list[str] | None:
    column = "speaker" if task == "speech" else "scribe"
    if column not in dataset.column_names:
        return None
    return [str(s) for s in dataset[column]]


def _input_frames(example: dict, task: str) -> np.ndarray:
    if task == "speech":
        return np.asarray(example["input_features"], dtype=np.float32)
    return np.asarray(example["columns"], dtype=np.float32) / 255.0  # (W, H): one row per column


def model_units_on_frames(model, dataset, task: str, batch_size: int = 16, device=None) -> list[np.ndarray]:
    """Each example's units upsampled onto its reference frames (by ``config.time_reduction``)."""
    from vq_hf.metrics.unit_quality import codebook_tuples_to_ids, units_to_frames
    from vq_hf.units import extract_units

    stride = int(model.config.time_reduction)
    rows = extract_units(model, dataset, batch_size=batch_size, device=device, progress=False)
    out = []
    for example, codes in zip(dataset, rows["codes"]):
        n = int(example["num_frames"]) if task == "speech" else len(example["alignment"])
        out.append(units_to_frames(codebook_tuples_to_ids(np.asarray(codes)), stride, n))
    return out


def kmeans_floor_units(train, dataset, task: str, k: int, seed: int = 0, max_train_frames: int = 100_000) -> list[np.ndarray]:
    """k-means (``k`` clusters, seeded) on the training split's input frames, assigned to ``dataset``'s frames."""
    from vq_hf.quantization import kmeans, nearest_codes

    frames = np.concatenate([_input_frames(ex, task) for ex in train])
    rng = np.random.default_rng(seed)
    if frames.shape[0] > max_train_frames:
        frames = frames[np.sort(rng.choice(frames.shape[0], max_train_frames, replace=False))]
    if frames.shape[0] < k:
        raise ValueError(f"k-means floor: {frames.shape[0]} training frames for k={k} clusters")
    result = kmeans(torch.from_numpy(frames), k, max_iters=50, generator=torch.Generator().manual_seed(seed))
    codebook = result.centroids[None].float()
    return [nearest_codes(torch.from_numpy(_input_frames(ex, task))[None], codebook)[0][0].numpy() for ex in dataset]


def evaluate_unit_quality(model, dataset, *, train=None, kmeans_floor: bool = False, batch_size: int = 16,
                          device=None, seed: int = 0) -> dict[str, Any]:
    """Unit-quality metrics of ``model`` on an aligned split (and the k-means floor fitted on ``train``)."""
    task = model.config.architecture
    if task not in ("speech", "handwriting"):
        raise ValueError(f"unit quality needs frame alignments: speech or handwriting models, not {task!r}")
    names = _label_names(dataset, task)
    labels = [_frame_labels(ex, task, names) for ex in dataset]
    speakers = _speakers(dataset, task)
    result: dict[str, Any] = {
        "task": task,
        "frames_per_unit": int(model.config.time_reduction),
        "reference_frame": "10 ms feature frame" if task == "speech" else "pixel column of the 32-high line",
        "boundary_tolerance": "±2 frames (±20 ms)" if task == "speech" else "±4 columns (±1 latent)",
        **_score(labels, model_units_on_frames(model, dataset, task, batch_size, device), speakers, task, seed),
    }
    if kmeans_floor:
        if train is None:
            raise ValueError("the k-means floor needs the training split")
        k = _codebook_size(model)
        floor = kmeans_floor_units(train, dataset, task, k, seed)
        result["kmeans_floor"] = {"k": k, **_score(labels, floor, speakers, task, seed)}
    return result


def _codebook_size(model) -> int:
    from vq_hf.units import _codebook_size

    return int(_codebook_size(model))


# --------------------------------------------------------------------------------------------- results.json


UNIT_METRICS = (
    "purity", "cluster_purity", "pnmi", "nmi", "boundary_f1", "mapped_error_rate", "bitrate_bits_per_second",
    "bitrate_bits_per_column", "mean_segment_length", "used_units", "abx_within_speaker", "abx_across_speaker",
)


def merge_into_results(results: dict, quality: dict[str, Any]) -> dict:
    """Put the unit-quality numbers into a results.json dict: ``metrics[name]`` (and the k-means floor's as
    ``kmeans_floor_<name>``), the settings (frames per unit, tolerance...) under ``unit_quality``."""
    metrics = results.setdefault("metrics", {})
    for name in UNIT_METRICS:
        if quality.get(name) is not None:
            metrics[name] = quality[name]
        if (quality.get("kmeans_floor") or {}).get(name) is not None:
            metrics[f"kmeans_floor_{name}"] = quality["kmeans_floor"][name]
    results["unit_quality"] = {k: v for k, v in quality.items() if k not in UNIT_METRICS and k != "kmeans_floor"}
    return results


def unit_quality_for_results(model, dataset, seed: int = 0) -> dict[str, Any] | None:
    """:func:`evaluate_unit_quality` for the training script's final evaluation, or None where it does not apply
    (CIFAR, no bottleneck, or an eval split without frame alignments)."""
    task = getattr(model.config, "architecture", None)
    if task not in ("speech", "handwriting") or not getattr(model.config, "use_bottleneck", True):
        return None
    if ("phone_ids" if task == "speech" else "alignment") not in dataset.column_names:
        return None
    return evaluate_unit_quality(model, dataset, seed=seed)


def add_to_results(model_dir: str | Path, quality: dict[str, Any]) -> dict:
    """Merge the unit-quality numbers into ``<model_dir>/results.json`` (:func:`merge_into_results`) and
    re-render the model card; returns the updated results."""
    from vq_hf.cards import RESULTS_FILE, read_results, write_model_card

    results = merge_into_results(read_results(model_dir), quality)
    path = Path(model_dir) / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    write_model_card(model_dir)
    return results


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vq-hf unit-quality",
        description="Purity, PNMI, NMI, boundary F1, mapped error rate, bitrate, segment length, used units and "
        "ABX within/across speakers of a model's units on an aligned split (speech: Kaldi root with phone CTMs; "
        "handwriting: corpus zip with alignments). Prints JSON.",
    )
    p.add_argument("--model", required=True, help="folder written by save_pretrained")
    p.add_argument("--dataset_name", required=True,
                   help="speech: Kaldi data root (one folder per split, train included); handwriting: corpus zip")
    p.add_argument("--alignments", default=None, help="handwriting: alignment zip (default: the one in the corpus zip)")
    p.add_argument("--split", default="test")
    p.add_argument("--cache_dir", default=None, help="root for feature caches (default: the datasets cache)")
    p.add_argument("--allow_scp_commands", action="store_true",
                   help="speech: run piped wav.scp entries (`sph2pipe ... |`) as shell commands (trusted corpora only)")
    p.add_argument("--output", default=None, help="also write the JSON here")
    p.add_argument("--kmeans_floor", action="store_true", help="add k-means (same K) on the input frames as a floor")
    p.add_argument("--update_results", action="store_true",
                   help="merge the numbers into the model folder's results.json and re-render its model card")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    return p


def _load(args, task: str):
    if task == "speech":
        from vq_hf.units import _load_speech_split

        split = _load_speech_split(args)
        train = None
        if args.kmeans_floor:
            train_args = argparse.Namespace(**{**vars(args), "split": "train"})
            train = _load_speech_split(train_args)
        return split, train
    from vq_hf.data import load_scribblelens
    from vq_hf.data.scribblelens import DEFAULT_ALIGNMENTS

    splits = [args.split] + (["train"] if args.kmeans_floor and args.split != "train" else [])
    dsd = load_scribblelens(args.dataset_name, alignments=args.alignments or DEFAULT_ALIGNMENTS, splits=splits)
    return dsd[args.split], dsd["train"] if args.kmeans_floor else None


def cli(argv: list[str] | None = None) -> int:
    from vq_hf.units import _load_model, _one_line, _root_cause

    args = build_parser().parse_args(argv)
    try:
        model = _load_model(args.model)
        task = model.config.architecture
        if task not in ("speech", "handwriting"):
            raise ValueError(f"unit quality needs frame alignments: speech or handwriting models, not {task!r}")
        dataset, train = _load(args, task)
        quality = evaluate_unit_quality(model, dataset, train=train, kmeans_floor=args.kmeans_floor,
                                        batch_size=args.batch_size, device=args.device, seed=args.seed)
        quality.update(model=args.model, dataset=args.dataset_name, split=args.split)
        if args.update_results:
            add_to_results(args.model, quality)
    except (ValueError, OSError, RuntimeError, KeyError) as err:
        print(f"vq-hf unit-quality: {_one_line(_root_cause(err))}", file=sys.stderr)
        return 2
    text = json.dumps(quality, indent=2)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0
