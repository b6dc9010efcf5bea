"""The three tasks of the paper as the training script sees them: config, data, model, scalars, results.

Each :class:`Task` turns a validated recipe into a :class:`~vq_hf.models.VQVAEConfig`, loads its dataset
(the offline default when ``data.dataset_name`` is null), builds the model, and knows its evaluation metric
(:mod:`vq_hf.evaluation` computes the numbers) and the fields of ``results.json``.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
from dataclasses import dataclass
from typing import Any

import torch

from .config import ConfigError, validate_open_section
from .data_order import IndexedDataset, SeededCollate

def _quantizer_keys() -> set[str]:
    """The VectorQuantizer options: the VQVAEConfig fields that belong to the recipe's quantizer section."""
    from vq_hf.quantization import VectorQuantizer

    return set(inspect.signature(VectorQuantizer.__init__).parameters)


COUNT_KEYS = ("num_examples", "num_dims", "phone_errors", "reference_phones")


@dataclass
class TaskData:
    """Everything the loop needs from the data side."""

    train: Any
    eval: Any
    train_collator: Any
    eval_collator: Any
    processor: Any
    variant: str  # e.g. "JPEG-CIFAR-10"; goes into results.json and the model card
    dataset_name: str
    eval_split: str
    notes: list = dataclasses.field(default_factory=list)
    phones: list | None = None  # speech: CTC class id → phone symbol
    extra_files: dict = dataclasses.field(default_factory=dict)  # name → text, saved beside the model


def _config_fields() -> dict[str, Any]:
    from vq_hf.models import VQVAEConfig

    sig = inspect.signature(VQVAEConfig.__init__)
    return {n: p.default for n, p in sig.parameters.items()
            if n not in ("self", "kwargs", "architecture") and p.kind is not p.VAR_KEYWORD}


def build_scheduler(optimizer, sched: dict):
    """``constant`` | ``multistep`` (steps or epochs, stepped by the loop) | ``plateau`` (stepped at evaluation)."""
    if sched["name"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=sched["milestones"], gamma=sched["gamma"])
    if sched["name"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=sched["factor"],
                                                          patience=sched["patience"], min_lr=sched["min_lr"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _check_columns(ds, needed: tuple, split: str, source: str) -> None:
    cols = list(ds.column_names)
    for alternatives in needed:
        alts = (alternatives,) if isinstance(alternatives, str) else alternatives
        if not any(a in cols for a in alts):
            raise ValueError(f"dataset {source!r} split {split!r} has no column {' or '.join(map(repr, alts))} "
                             f"(columns: {cols})")


def _split(dsd, name: str, source: str):
    if name not in dsd:
        raise ValueError(f"dataset {source!r} has no split {name!r} (available: {sorted(dsd)})")
    return dsd[name]


def _limit(ds, n):
    return ds if n is None or n >= len(ds) else ds.select(range(n))


def _jpeg_variant(ds) -> bool:
    """Whether the images are stored as JPEG (sniffed from the first row's bytes)."""
    try:
        table = ds.data.column("img")
        first = table[0].as_py()
        data = first.get("bytes") if isinstance(first, dict) else None
        return bool(data) and data[:3] == b"\xff\xd8\xff"
    except Exception:  # noqa: BLE001 - unknown storage: not provably JPEG
        return False


class Task:
    name = ""
    main_metric = "loss"
    lower_is_better = True

    # ---------------------------------------------------------------- config and model
    def build_config(self, recipe: dict, source: str = "<recipe>"):
        from vq_hf.models import VQVAEConfig

        known = _config_fields()
        quantizer_keys = _quantizer_keys()
        quantizer_known = {k: v for k, v in known.items() if k in quantizer_keys}
        model_known = {k: v for k, v in known.items() if k not in quantizer_known}
        validate_open_section(recipe, "quantizer", quantizer_known, source)
        validate_open_section(recipe, "model", model_known, source)
        kwargs = {**recipe["model"], **recipe["quantizer"]}
        kwargs.setdefault("seed", recipe["training"]["seed"])
        try:
            return VQVAEConfig(architecture=self.name, **kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: invalid model/quantizer settings: {e}") from None

    def build_model(self, config):
        from vq_hf.models import VQVAEModel

        return VQVAEModel(config)

    # ---------------------------------------------------------------- data
    def build_data(self, recipe: dict, config, cache_dir: pathlib.Path, processor_folder=None) -> TaskData:
        raise NotImplementedError

    # ---------------------------------------------------------------- logging
    def train_scalars(self, out) -> dict:
        """Per-step scalars from a model output: losses, batch / running perplexity, usage, norm ratio."""
        row = {}
        for k in ("reconstruction_loss", "vq_loss", "ctc_loss"):
            v = getattr(out, k, None)
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                row[k] = float(v.detach())
        for k in ("perplexity", "running_perplexity", "used_codes", "dead_code_fraction", "norm_ratio"):
            v = getattr(out, k, None)
            if isinstance(v, torch.Tensor):
                row[k] = [float(x) for x in v.detach().float().reshape(-1).tolist()]
        return row

    def summary(self, results: dict) -> str:
        parts = []
        for weights, m in results.items():
            val = m.get(self.main_metric)
            pp = m.get("perplexity")
            pp = sum(pp) if isinstance(pp, list) else pp
            parts.append(f"{weights}: {self.main_metric}={val:.4f}" + (f" pplx={pp:.1f}" if pp is not None else ""))
        return "; ".join(parts)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, model, dataloader, accelerator=None, max_batches=None) -> dict:
        from vq_hf.evaluation import evaluate_model

        return evaluate_model(model, dataloader, self.name, accelerator=accelerator, max_batches=max_batches)

    # ---------------------------------------------------------------- results.json
    def results(self, *, recipe, config_file, final, data: TaskData, training: dict, model_config) -> dict:
        """results.json in the schema of :mod:`vq_hf.cards` (plus the full recipe for reproduction)."""
        import vq_hf

        def scalars(m: dict) -> dict:
            # the card wants metrics as numbers or lists of numbers: counts go to "evaluation_counts" and the
            # (G, K) code histogram stays in the TensorBoard logs
            return {k: v for k, v in m.items() if k not in COUNT_KEYS and k != "code_counts" and v is not None}

        out = {
            "task": self.name,
            "dataset": data.dataset_name,
            "data_variant": data.variant,
            "split": data.eval_split,
            "main_metric": self.main_metric,
            "metrics": scalars(final["raw"]),
            "training": {**training, "config_path": config_file, "seed": recipe["training"]["seed"]},
            "model": {k: getattr(model_config, k) for k in (
                "architecture", "quantizer_type", "codebook_size", "num_codebooks", "latent_dim", "batch_norm",
                "codebook_lr_multiplier", "use_bottleneck")},
            "recipe": pathlib.Path(config_file).stem,
            "description": recipe["description"],
            "evaluation_counts": {k: final["raw"][k] for k in COUNT_KEYS if k in final["raw"]},
            "notes": list(data.notes),
            "vq_hf_version": vq_hf.__version__,
        }
        if not model_config.use_bottleneck:
            for k in ("quantizer_type", "codebook_size", "num_codebooks", "batch_norm", "codebook_lr_multiplier"):
                out["model"].pop(k, None)
        if "polyak" in final:
            out["metrics_polyak"] = scalars(final["polyak"])
            out["polyak_decay"] = recipe["training"]["polyak_decay"]
        return out


class Cifar10Task(Task):
    name = "cifar10"
    main_metric = "uniform_nelbo_bits_per_dim"

    def build_data(self, recipe, config, cache_dir, processor_folder=None):
        from vq_hf.data import load_cifar10
        from vq_hf.data.collators import Cifar10Collator
        from vq_hf.models import VQVAEImageProcessor

        d = recipe["data"]
        if d["chunk_len"] is not None:
            raise ValueError(f"data.chunk_len={d['chunk_len']}: training crops apply to handwriting and speech, "
                             "not to CIFAR-10 images; remove it")
        source = d["dataset_name"] or "embedded"
        dsd = load_cifar10(source, splits=None)
        train = _limit(_split(dsd, d["train_split"], source), d["max_train_samples"])
        ev = _limit(_split(dsd, d["eval_split"], source), d["max_eval_samples"])
        for split, ds in ((d["train_split"], train), (d["eval_split"], ev)):
            _check_columns(ds, (("pixels", "img"),), split, source)
        if source == "embedded":
            # the hub dataset the sample was taken from; the variant says what was actually used
            name, variant = "uoft-cs/cifar10", "JPEG-CIFAR-10 (embedded 2,000/500-image sample)"
        else:
            variant = "JPEG-CIFAR-10" if _jpeg_variant(train) else "CIFAR-10"
            name = source
        notes = []
        if variant.startswith("JPEG"):
            notes.append("images are JPEG-compressed: bits/dim are not comparable with lossless CIFAR-10 results")
        processor = VQVAEImageProcessor(image_size=config.image_size, num_channels=config.num_channels)
        collator = Cifar10Collator()
        return TaskData(train=train, eval=ev, train_collator=collator, eval_collator=collator,
                        processor=processor, variant=variant, dataset_name=name, eval_split=d["eval_split"],
                        notes=notes)


class HandwritingTask(Task):
    name = "handwriting"
    main_metric = "reconstruction_bits_per_dim"

    def build_data(self, recipe, config, cache_dir, processor_folder=None):
        from vq_hf.data import load_scribblelens
        from vq_hf.data.collators import LineImageCollator
        from vq_hf.models import VQVAELineImageProcessor

        d = recipe["data"]
        source = d["dataset_name"]
        notes = []
        if source is None:
            from vq_hf.standins.handwriting import make_handwriting_corpus

            source = str(make_handwriting_corpus(pathlib.Path(cache_dir) / "synth_handwriting",
                                                 num_lines=d["synth_size"], seed=recipe["training"]["seed"]))
            name, variant = "synthetic-handwriting", f"stand-in handwriting lines ({d['synth_size']} lines, " \
                                                    f"vq-hf make-handwriting-corpus)"
            notes.append("trained on a stand-in corpus of rendered handwriting lines, not on ScribbleLens")
        else:
            name, variant = source, "ScribbleLens"
        splits = tuple(dict.fromkeys((d["train_split"], d["eval_split"])))
        dsd = load_scribblelens(source, splits=splits, target_height=config.image_size)
        train = _limit(_split(dsd, d["train_split"], source), d["max_train_samples"])
        ev = _limit(_split(dsd, d["eval_split"], source), d["max_eval_samples"])
        for split, ds in ((d["train_split"], train), (d["eval_split"], ev)):
            _check_columns(ds, (("columns", "image"),), split, source)
        processor = VQVAELineImageProcessor(target_height=config.image_size)
        return TaskData(train=train, eval=ev,
                        train_collator=LineImageCollator(processor=processor, crop_width=d["chunk_len"], seed=0),
                        eval_collator=LineImageCollator(processor=processor), processor=processor,
                        variant=variant, dataset_name=name, eval_split=d["eval_split"], notes=notes)


# The stand-in speech corpus has train/dev/test; the WSJ recipes name the WSJ sets.
SYNTH_SPEECH_SPLITS = {"train_si284": "train", "test_dev93": "dev", "test_eval92": "test"}


class SpeechTask(Task):
    name = "speech"
    main_metric = "phone_error_rate"

    def build_model(self, config):
        from vq_hf.models import VQVAEForCTC

        return VQVAEForCTC(config)

    def build_data(self, recipe, config, cache_dir, processor_folder=None):
        import json

        from vq_hf.data import SpeechCollator, load_wsj
        from vq_hf.data.wsj import read_phones

        d = recipe["data"]
        source = d["dataset_name"]
        notes = []
        train_split, eval_split = d["train_split"], d["eval_split"]
        if source is None:
            from vq_hf.standins.speech import make_speech_corpus

            seed, n = recipe["training"]["seed"], d["synth_size"]
            corpus = pathlib.Path(cache_dir) / f"synth_speech.{n}utts.seed{seed}"
            if not (corpus / "corpus.json").is_file():
                make_speech_corpus(corpus, n, seed=seed, overwrite=True)
            source = str(corpus)
            name, variant = "synthetic-speech", f"stand-in speech ({n} Festival-spoken CMU ARCTIC prompts, " \
                                                 f"vq-hf make-speech-corpus)"
        elif (pathlib.Path(source) / "corpus.json").is_file():  # a folder written by `vq-hf make-speech-corpus`
            name, variant = source, "stand-in speech (vq-hf make-speech-corpus)"
        else:
            name, variant = source, "WSJ"
        if variant != "WSJ":
            notes.append("trained on a stand-in corpus of synthetic speech, not on WSJ")
            if train_split in SYNTH_SPEECH_SPLITS or eval_split in SYNTH_SPEECH_SPLITS:
                notes.append(f"WSJ split names mapped to the stand-in corpus's: {SYNTH_SPEECH_SPLITS}")
            train_split = SYNTH_SPEECH_SPLITS.get(train_split, train_split)
            eval_split = SYNTH_SPEECH_SPLITS.get(eval_split, eval_split)
        kwargs = {}
        if processor_folder is not None:  # evaluation of a trained model: its phone set and features
            from vq_hf.models import VQVAEFeatureExtractor

            phones_file = pathlib.Path(processor_folder) / "phones.txt"
            if phones_file.is_file():
                kwargs["phones"] = read_phones(phones_file)
            kwargs["feature_extractor"] = VQVAEFeatureExtractor.from_pretrained(processor_folder)
        dsd, info = load_wsj(source, train_split=train_split, return_info=True,
                             cache_dir=pathlib.Path(cache_dir) / "wsj_cache", **kwargs)
        train = _limit(_split(dsd, train_split, source), d["max_train_samples"])
        ev = _limit(_split(dsd, eval_split, source), d["max_eval_samples"])
        for split, ds in ((train_split, train), (eval_split, ev)):
            _check_columns(ds, ("input_features", "labels"), split, source)
        _check_columns(train, ("phone_ids", "phone_starts", "phone_ends"), train_split, source)
        if "vocab_size" not in recipe["model"]:
            config.vocab_size = len(info.phones)  # before the model is built: the CTC head follows the data
        if config.vocab_size != len(info.phones):
            raise ValueError(f"model.vocab_size={config.vocab_size} but the dataset has {len(info.phones)} CTC "
                             f"classes ({info.phones[:6]}...); leave model.vocab_size unset to take it from the data")
        data = TaskData(train=train, eval=ev,
                        train_collator=SpeechCollator(chunk_frames=d["chunk_len"], seed=0),
                        eval_collator=SpeechCollator(chunk_frames=None), processor=info.feature_extractor,
                        variant=variant, dataset_name=name, eval_split=eval_split, notes=notes)
        data.phones = list(info.phones)
        # phones.txt in load_wsj's own format (`phone id` per line), as `vq-hf units` / `vq-hf eval` read it back
        data.extra_files = {"phones.txt": (info.path / "phones.txt").read_text(encoding="utf-8"),
                            "load_report.json": json.dumps(info.report, indent=2, default=str)}
        return data


TASKS = {t.name: t for t in (Cifar10Task(), HandwritingTask(), SpeechTask())}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task: {name!r} is not one of {sorted(TASKS)}")
    return TASKS[name]


def seeded_loader_inputs(data: TaskData, seed: int, sampler):
    """Wrap the train split and collator so random crops depend only on (seed, epoch, batch indices)."""
    return IndexedDataset(data.train), SeededCollate(data.train_collator, seed, sampler)


def hardware(accelerator) -> str:
    """Free-text description of what trained the model, for results.json and the card."""
    import os

    n = accelerator.num_processes
    if accelerator.device.type == "cuda":
        return f"{n}x {torch.cuda.get_device_name(accelerator.device)}"
    cpu = f"{os.cpu_count()}-core CPU"
    return cpu if n == 1 else f"{n} processes on a {cpu}"


def write_model_card(folder: pathlib.Path) -> pathlib.Path:
    """README.md of the finished folder, built by vq_hf.cards from results.json."""
    from vq_hf import cards

    return cards.write_model_card(folder)
