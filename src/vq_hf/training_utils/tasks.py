"""The three tasks of the paper as the training script sees them: config, data, model, scalars, results.

Each :class:`Task` turns a validated recipe into a :class:`~vq_hf.models.VQVAEConfig`, loads its dataset
(the offline default when ``data.dataset_name`` is null), builds the model, and knows its evaluation metric and
the fields of ``results.json``. :func:`vq_hf.evaluation.evaluate_model` computes the numbers; this module does not
import it, so that ``vq-hf eval`` builds its data through the tasks without an import circle.
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

COUNT_KEYS = ("num_examples", "num_dims", "phone_errors", "reference_phones")


@dataclass
class TaskData:
    """Everything the loop needs from the data side."""

    train: Any  # None when only the evaluation split was loaded (build_data(..., eval_only=True))
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


def _model_fields(config_class) -> dict[str, Any]:
    """The recipe's ``model`` keys: the family config's own fields with their defaults (``quantizer`` is the
    recipe's section of that name, passed through as the config's nested dict)."""
    sig = inspect.signature(config_class.__init__)
    return {n: p.default for n, p in sig.parameters.items()
            if n not in ("self", "quantizer") and p.kind is not p.VAR_KEYWORD}


def open_keys(task: str) -> dict[str, list[str]]:
    """The valid keys of the recipe sections the model config owns: ``model`` (the family config's fields) and
    ``quantizer`` (``family`` and the VectorQuantizer arguments but ``dim``, which the model derives)."""
    from vq_hf.models.configuration_vqvae import family_config_class
    from vq_hf.quantization import VectorQuantizer

    quantizer = set(inspect.signature(VectorQuantizer.__init__).parameters) - {"self", "dim"}
    return {"model": sorted(_model_fields(family_config_class(task))), "quantizer": sorted(quantizer | {"family"})}


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
    return ds if ds is None or n is None or n >= len(ds) else ds.select(range(n))


STANDIN_CACHE = "vq_hf_standin"  # generated stand-in corpora, beside the datasets caches


def cache_root(recipe: dict, cache_dir=None) -> pathlib.Path | None:
    """Where derived data go: ``cache_dir``, else the recipe's ``data.cache_dir``; None = the datasets cache.

    Never a model folder: feature caches and generated corpora would be uploaded with the weights.
    """
    chosen = cache_dir if cache_dir is not None else recipe["data"].get("cache_dir")
    return None if chosen is None else pathlib.Path(chosen)


def _standin_folder(root: pathlib.Path | None) -> pathlib.Path:
    if root is None:
        import datasets

        return pathlib.Path(datasets.config.HF_DATASETS_CACHE) / STANDIN_CACHE
    return root / STANDIN_CACHE


def _jpeg_variant(ds) -> bool:
    """Whether the images are stored as JPEG (sniffed from the first row's bytes)."""
    try:
        table = ds.data.column("img")
        first = table[0].as_py()
        data = first.get("bytes") if isinstance(first, dict) else None
        return bool(data) and data[:3] == b"\xff\xd8\xff"
    except Exception:  # noqa: BLE001 - unknown storage: not provably JPEG
        return False


def _model_summary(config) -> dict:
    """results.json's ``model``: the family, the latent size and, with a bottleneck, the quantizer's key options
    (``batch_norm``: the paper's BN before quantization, the quantizer's own or the sequence models')."""
    out = {"architecture": config.architecture, "model_type": config.model_type, "latent_dim": config.latent_dim,
           "use_bottleneck": config.use_bottleneck}
    if config.use_bottleneck:
        q = config.quantizer_options()
        out.update({k: q[k] for k in ("quantizer_type", "codebook_size", "num_codebooks", "codebook_lr_multiplier")})
        out["batch_norm"] = bool(q["batch_norm"] or getattr(config, "batch_norm", False))
    return out


def perplexity_postfix(perplexity) -> dict[str, str]:
    """The perplexity shown on the progress bar and in the final summary, named for what it is: ``pplx`` for
    one codebook, ``pplx_sum`` (Σ over codebooks, DistSup's convention; results.json's ``perplexity_sum``) for
    several. ``curve_perplexity.png`` draws each codebook's evaluation value and the training mean."""
    if perplexity is None:
        return {}
    values = perplexity if isinstance(perplexity, (list, tuple)) else [perplexity]
    return {"pplx" if len(values) == 1 else "pplx_sum": f"{float(sum(values)):.1f}"}


class Task:
    name = ""
    main_metric = "loss"
    lower_is_better = True

    # ---------------------------------------------------------------- config and model
    def build_config(self, recipe: dict, source: str = "<recipe>"):
        """The family config of this task: ``model`` keys as its fields, the ``quantizer`` section as its nested
        quantizer dict (``seed`` defaults to ``training.seed``; run_vq.py passes a child of it)."""
        from vq_hf.models.configuration_vqvae import family_config_class

        config_class = family_config_class(self.name)
        validate_open_section(recipe, "model", _model_fields(config_class), source)
        quantizer = {"seed": recipe["training"]["seed"], **recipe["quantizer"]}
        try:
            return config_class(**recipe["model"], quantizer=quantizer)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: invalid model/quantizer settings: {e}") from None

    def build_model(self, config):
        from vq_hf.models import VQVAEModel

        return VQVAEModel(config)

    # ---------------------------------------------------------------- data
    def build_data(self, recipe: dict, config, cache_dir=None, processor_folder=None, eval_only=False) -> TaskData:
        """The recipe's data. ``cache_dir``: root of derived data (default: :func:`cache_root`);
        ``processor_folder``: a trained model's folder (its phone set and feature statistics);
        ``eval_only``: load only ``data.eval_split`` (``train`` is None) — evaluating never needs the training split.
        """
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
            pp = " ".join(f"{k}={v}" for k, v in perplexity_postfix(m.get("perplexity")).items())
            parts.append(f"{weights}: {self.main_metric}={val:.4f}" + (f" {pp}" if pp else ""))
        return "; ".join(parts)

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
            "model": _model_summary(model_config),
            "recipe": pathlib.Path(config_file).stem,
            "description": recipe["description"],
            "evaluation_counts": {k: final["raw"][k] for k in COUNT_KEYS if k in final["raw"]},
            "notes": list(data.notes),
            "vq_hf_version": vq_hf.__version__,
        }
        if "polyak" in final:
            out["metrics_polyak"] = scalars(final["polyak"])
            out["polyak_decay"] = recipe["training"]["polyak_decay"]
        # The final evaluation's (G, K) code histograms per weights: `vq-hf reproduce` plots code usage from them.
        counts = {w: m["code_counts"] for w, m in final.items() if m.get("code_counts") is not None}
        if counts:
            out["code_counts"] = counts
        return out


class Cifar10Task(Task):
    name = "cifar10"
    main_metric = "uniform_nelbo_bits_per_dim"

    def build_data(self, recipe, config, cache_dir=None, processor_folder=None, eval_only=False):
        from vq_hf.data import load_cifar10
        from vq_hf.data.collators import Cifar10Collator
        from vq_hf.models import VQVAEImageProcessor

        d = recipe["data"]
        if d["chunk_len"] is not None:
            raise ValueError(f"data.chunk_len={d['chunk_len']}: training crops apply to handwriting and speech, "
                             "not to CIFAR-10 images; remove it")
        source = d["dataset_name"] or "embedded"
        root = cache_root(recipe, cache_dir)
        dsd = load_cifar10(source, splits=[d["eval_split"]] if eval_only else None, cache_dir=root)
        train = None if eval_only else _limit(_split(dsd, d["train_split"], source), d["max_train_samples"])
        ev = _limit(_split(dsd, d["eval_split"], source), d["max_eval_samples"])
        for split, ds in ((d["train_split"], train), (d["eval_split"], ev)):
            if ds is not None:
                _check_columns(ds, (("pixels", "img"),), split, source)
        if source == "embedded":
            # the hub dataset the sample was taken from; the variant says what was actually used
            name, variant = "uoft-cs/cifar10", "JPEG-CIFAR-10 (embedded 2,000/500-image sample)"
        else:
            variant = "JPEG-CIFAR-10" if _jpeg_variant(ev if train is None else train) else "CIFAR-10"
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

    def build_data(self, recipe, config, cache_dir=None, processor_folder=None, eval_only=False):
        from vq_hf.data import load_scribblelens
        from vq_hf.data.scribblelens import read_stand_in_marker
        from vq_hf.data.collators import LineImageCollator
        from vq_hf.models import VQVAELineImageProcessor

        d = recipe["data"]
        source = d["dataset_name"]
        root = cache_root(recipe, cache_dir)
        notes = []
        if source is None:
            from vq_hf.standins.handwriting import make_handwriting_corpus

            source = str(make_handwriting_corpus(_standin_folder(root) / "synth_handwriting",
                                                 num_lines=d["synth_size"], seed=recipe["training"]["seed"]))
            name = "synthetic-handwriting"
        else:
            name = source
        # the generator marks its zips: a stand-in stays a stand-in whichever way it is passed in
        marker = read_stand_in_marker(source)
        if marker is None and d["dataset_name"] is None:  # generated here by a version that wrote no marker
            marker = {"lines": d["synth_size"]}
        if marker is not None:
            variant = f"stand-in handwriting lines ({marker['lines']} lines, vq-hf make-handwriting-corpus)"
            notes.append("trained on a stand-in corpus of rendered handwriting lines, not on ScribbleLens")
        else:
            variant = "ScribbleLens"
        splits = (d["eval_split"],) if eval_only else tuple(dict.fromkeys((d["train_split"], d["eval_split"])))
        dsd = load_scribblelens(source, splits=splits, target_height=config.image_size, cache_dir=root)
        train = None if eval_only else _limit(_split(dsd, d["train_split"], source), d["max_train_samples"])
        ev = _limit(_split(dsd, d["eval_split"], source), d["max_eval_samples"])
        for split, ds in ((d["train_split"], train), (d["eval_split"], ev)):
            if ds is not None:
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

    def build_data(self, recipe, config, cache_dir=None, processor_folder=None, eval_only=False):
        import json

        from vq_hf.data import SpeechCollator, load_wsj
        from vq_hf.data.wsj import _is_kaldi_dir, read_phones

        d = recipe["data"]
        source = d["dataset_name"]
        notes = []
        train_split, eval_split = d["train_split"], d["eval_split"]
        root = cache_root(recipe, cache_dir)
        if source is None:
            from filelock import FileLock

            from vq_hf.standins.speech import make_speech_corpus

            seed, n = recipe["training"]["seed"], d["synth_size"]
            corpus = _standin_folder(root) / f"synth_speech.{n}utts.seed{seed}"
            corpus.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(corpus) + ".lock"):  # runs sharing the cache generate it once
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
        common = dict(return_info=True, allow_commands=d["allow_scp_commands"],
                      cache_dir=None if root is None else root / "vq_hf_wsj", **kwargs)
        fe = kwargs.get("feature_extractor")
        if eval_only and "phones" in kwargs and fe is not None and fe.has_cmvn:
            # the model's CMVN statistics and phone set: the evaluated split is all that is read
            dirs = {eval_split: source} if _is_kaldi_dir(pathlib.Path(source)) else source
            dsd, info = load_wsj(dirs, splits=[eval_split], fit_cmvn=False, **common)
            train = None
        else:
            if eval_only:
                notes.append("the model folder lacks fitted CMVN statistics or phones.txt: refitted on "
                             f"{train_split!r}")
            dsd, info = load_wsj(source, train_split=train_split, **common)
            train = _limit(_split(dsd, train_split, source), d["max_train_samples"])
        ev = _limit(_split(dsd, eval_split, source), d["max_eval_samples"])
        for split, ds in ((train_split, train), (eval_split, ev)):
            if ds is not None:
                _check_columns(ds, ("input_features", "labels"), split, source)
        if train is not None:
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


# one Task per name of config.TASKS (the recipe's valid `task` values)
_TASK_OBJECTS = {t.name: t for t in (Cifar10Task(), HandwritingTask(), SpeechTask())}


def get_task(name: str) -> Task:
    if name not in _TASK_OBJECTS:
        raise ConfigError(f"task: {name!r} is not one of {sorted(_TASK_OBJECTS)}")
    return _TASK_OBJECTS[name]


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
