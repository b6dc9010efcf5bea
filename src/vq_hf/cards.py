"""Model cards from ``results.json`` and publishing a trained model folder to the Hub.

The training script writes ``<output>/results.json`` next to the saved model; :func:`write_model_card`
turns it into ``<output>/README.md`` (a :class:`huggingface_hub.ModelCard` rendered from the package's
Jinja template, with the metrics as ``model-index`` eval results), and :func:`publish` uploads the folder
with that README (transformers' ``push_to_hub`` would replace it with a generic card).

results.json schema
-------------------
::

    {
      "task": "cifar10" | "handwriting" | "speech",    # required; = VQVAEConfig.architecture
      "dataset": "uoft-cs/cifar10",                     # required; dataset id (Hub id or local name)
      "data_variant": "JPEG-CIFAR-10 sample (embedded)", # required; what was actually used, human-readable
      "split": "test",                                  # required; the evaluated split
      "metrics": {"uniform_nelbo_bits_per_dim": 4.71,   # required; name -> number (or per-codebook list)
                  "codebook_perplexity": 812.4, ...},
      "metrics_polyak": {...},                          # optional; same names, Polyak-averaged weights
      "polyak_decay": 0.998,                            # optional; shown with metrics_polyak
      "training": {                                     # required
        "steps": 20000,                                 #   optimizer steps
        "wall_time_s": 5400.0,                          #   seconds of training
        "hardware": "1x NVIDIA H100 80GB",              #   free text
        "config_path": "training/configs/cifar10/reest_bn.yaml",
        "seed": 0
      },
      "model": {                                        # optional; quantizer/model facts for the card
        "quantizer_type": "reestimating", "codebook_size": 128, "num_codebooks": 8,
        "batch_norm": true, "codebook_lr_multiplier": 10.0, "num_parameters": 1234567
      },
      "model_name": "vqvae-cifar10-8x128",              # optional; default built from task and quantizer
      "license": "apache-2.0",                          # optional; default apache-2.0
      "notes": ["..."],                                 # optional; extra caveats printed in the card
      "main_metric": "uniform_nelbo_bits_per_dim",      # optional; listed first in the card's table
      "description": "EMA + BN, 8x128 ...",            # optional; one line about the recipe
      "recipe": "ema_bn"                                # optional; recipe name
    }

Other keys are allowed and ignored by the card (the training script also writes ``vq_hf_version``).

Metric names used across vq_hf (anything else is shown without an explanation): see
:data:`METRIC_MEANINGS`. Scalar finite metrics become ``EvalResult`` entries (``metric_type`` = the
name; Polyak ones ``<name>_polyak``); lists and non-finite values are shown in the card's table and
listed as left out of the metadata.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_card_template.md")

RESULTS_FILE = "results.json"
README_FILE = "README.md"
DEFAULT_IGNORE_PATTERNS = ("checkpoints/*", "logs/*", "runs/*", "*.pkl", "optimizer.bin", "scheduler.bin")

# What a model card says about each task (pipeline tag, model class, descriptions); the task names themselves are
# training_utils's.
TASK_CARDS = {
    "cifar10": {
        "task_type": "image-to-image",
        "task_name": "Image reconstruction (VQ-VAE)",
        "model_class": "VQVAEModel",
        "tags": ["image", "cifar10"],
        "description": "unsupervised VQ-VAE on 32×32 colour images, 256-way softmax per sub-pixel",
        "architecture": (
            "A convolutional encoder with residual blocks maps a 32×32 image to an 8×8 grid of latent vectors; each "
            "vector is split into {num_codebooks} group(s) quantized independently against codebooks of {codebook_size} "
            "codes; a deconvolutional decoder predicts a 256-way categorical distribution for every sub-pixel."
        ),
        "intended_use": (
            "Discrete image tokens (8×8 positions × {num_codebooks} code(s) of {code_bits} bits each) for "
            "training priors or token models on small natural images, and research on VQ codebook training. "
            "Not a production image codec."
        ),
    },
    "handwriting": {
        "task_type": "image-to-image",
        "task_name": "Handwriting line reconstruction (VQ-VAE + PixelCNN)",
        "model_class": "VQVAEModel",
        "tags": ["handwriting", "scribblelens"],
        "description": "unsupervised autoencoder of 32-pixel-high handwritten text lines, 4-level pixels",
        "architecture": (
            "A DeepSpeech2-style convolutional + bidirectional-LSTM encoder reads a 32-pixel-high text line and emits one "
            "latent vector every 4 pixel columns; it is quantized against a codebook of {codebook_size} codes and a "
            "conditional PixelCNN decoder models the line's pixels at 4 gray levels (at most 2 bits/dim)."
        ),
        "intended_use": (
            "Discrete units of handwriting (one code per 4 columns) for unsupervised segmentation and character "
            "discovery, or as input tokens for downstream models; research on VQ codebook training."
        ),
    },
    "speech": {
        "task_type": "automatic-speech-recognition",
        "task_name": "Phone recognition (CTC) through a VQ bottleneck",
        "model_class": "VQVAEForCTC",
        "tags": ["speech", "ctc", "wsj"],
        "description": "supervised phone recognition with CTC through a VQ bottleneck",
        "architecture": (
            "A DeepSpeech2-style convolutional + bidirectional-LSTM encoder reads 243-dim log-mel filterbank features "
            "(80 bands + energy, Δ, ΔΔ, global CMVN) and emits one latent every 3 frames (30 ms); it is quantized against "
            "a codebook of {codebook_size} codes and a CTC head predicts phones from the codes."
        ),
        "intended_use": (
            "Discrete speech units at 30 ms (codes that carry phonetic information) and phone recognition research; "
            "the CTC head is not a full speech recognizer (no language model, no words)."
        ),
    },
}

# Usage snippets of the model cards, per task; ``{repo}`` becomes the repo id / folder. They must run as written
# (tests/test_cards_usage.py executes them against a saved model).
USAGE = {
    "cifar10": {
        "python": """import numpy as np
from vq_hf import VQVAEImageProcessor, VQVAEModel
from vq_hf.units import extract_units

model = VQVAEModel.from_pretrained("{repo}")
processor = VQVAEImageProcessor()  # 32×32 RGB uint8 arrays or PIL images; no resizing
images = [np.zeros((32, 32, 3), dtype=np.uint8), np.full((32, 32, 3), 255, dtype=np.uint8)]
codes = model.encode(**processor(images, return_labels=False)).codes  # (B, 8, 8, num_codebooks)
units = extract_units(model, images)  # datasets.Dataset: id, codes, shape, length""",
        "bash": "vq-hf units --model {repo} --inputs my_images/ --output units/   # every image under the folder "
        "(32×32; --resize scales others)",
        "inputs": "my_images",
    },
    "handwriting": {
        "python": """from PIL import Image
from vq_hf import VQVAELineImageProcessor, VQVAEModel
from vq_hf.units import extract_units

model = VQVAEModel.from_pretrained("{repo}")
processor = VQVAELineImageProcessor()  # any line image; scaled to 32 pixels high
line = Image.new("L", (200, 40), color=255)  # a text line (white paper, dark ink)
codes = model.encode(**processor([line], return_tensors="pt")).codes  # (B, ⌈W/4⌉, 1): a code per 4 columns
units = extract_units(model, [line], dedup=True)  # codes + durations (runs of repeated codes)""",
        "bash": "vq-hf units --model {repo} --inputs my_lines/ --output units/ --dedup   # every line image under the folder",
        "inputs": "my_lines",
    },
    "speech": {
        "python": """import numpy as np
from vq_hf import VQVAEFeatureExtractor, VQVAEForCTC
from vq_hf.units import extract_units

model = VQVAEForCTC.from_pretrained("{repo}")
feature_extractor = VQVAEFeatureExtractor.from_pretrained("{repo}")  # holds the training CMVN statistics
audio = 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)  # 1 s of 16 kHz audio
codes = model.encode(**feature_extractor(audio, sampling_rate=16000, return_tensors="pt")).codes  # a code per 30 ms
units = extract_units(model, [(audio, 16000)], dedup=True)  # any rate: resampled with soxr""",
        "bash": "vq-hf units --model {repo} --inputs my_recordings/ --output units/ --dedup   # every audio file "
        "under the folder (wav/flac/ogg, any rate, mono or stereo)",
        "inputs": "my_recordings",
    },
}

METRIC_MEANINGS = {
    "bits_per_dim": "decoder negative log-likelihood of the data given the codes, bits per dimension, pooled over the split",
    "reconstruction_bits_per_dim": "decoder negative log-likelihood of the data given the codes, bits per dimension, "
    "pooled over the split (ScribbleLens: the paper's Table II \"Rec. BPD\")",
    "uniform_rate_bits_per_dim": "bits to send the codes under a uniform prior (positions × codebooks × log2 K), per dimension",
    "unigram_rate_bits_per_dim": "bits to send the codes under the split's own code frequencies, per dimension",
    "uniform_nelbo_bits_per_dim": "reconstruction + uniform-prior code rate, bits per dimension (CIFAR-10: the quantity "
    "of the paper's Table III; ScribbleLens: Table II \"Uniform NELBO\")",
    "unigram_nelbo_bits_per_dim": "reconstruction + unigram-prior code rate, bits per dimension (Table II \"Unigram NELBO\")",
    "codebook_perplexity": "dataset-level 2^H of code usage over the split, one value per codebook (1 = one code "
    "used, K = uniform use)",
    "perplexity": "dataset-level 2^H of code usage over the split, one value per codebook (1 = one code used, "
    "K = uniform use)",
    "perplexity_sum": "codebook perplexities summed over codebooks (DistSup's CIFAR-10 convention, max codebooks × K)",
    "codebook_entropy_bits": "entropy H of code usage over the split, bits per latent position, one value per "
    "codebook (their sum is the unigram code rate per position)",
    "used_codes": "number of distinct codes used on the split, per codebook",
    "dead_code_fraction": "fraction of codes never used on the split",
    "phone_error_rate": "pooled phone error rate Σ edit distance / Σ reference length (fraction; ×100 for %)",
    "phone_errors": "total edit distance (substitutions + deletions + insertions) over the split",
    "reference_phones": "total number of reference phones in the split",
    "num_examples": "examples evaluated",
    "num_dims": "data dimensions scored (sub-pixels / real pixels)",
    "num_latents": "latent positions scored",
    "loss": "training objective on the split",
    "reconstruction_loss": "reconstruction term of the objective (nats per dimension)",
    "vq_loss": "codebook + commitment terms of the objective",
    "purity": "units → their majority reference label (phone / character), frame accuracy: Σ_z max_y p(y, z)",
    "cluster_purity": "reference labels → their majority unit, frame accuracy: Σ_y max_z p(y, z)",
    "pnmi": "mutual information of units and reference labels over the label entropy, I(y; z) / H(y)",
    "nmi": "I(y; z) / ((H(y) + H(z)) / 2)",
    "boundary_f1": "F1 of unit change points against reference label boundaries (±20 ms speech, ±1 latent handwriting)",
    "mapped_error_rate": "units mapped to majority labels, repeats collapsed, edit distance to the reference / its length",
    "bitrate_bits_per_second": "de-duplicated units per second × their entropy in bits",
    "bitrate_bits_per_column": "de-duplicated units per pixel column × their entropy in bits",
    "mean_segment_length": "reference frames per run of equal units",
    "used_units": "distinct units on the split",
    "abx_within_speaker": "ABX error of the units over reference segments, A, B, X from one speaker (0.5 = chance)",
    "abx_across_speaker": "ABX error, A and B from one speaker, X from another (0.5 = chance)",
}


# --------------------------------------------------------------------------------------------- validation


def _require(mapping: dict, key: str, where: str, kinds: type | tuple[type, ...]) -> Any:
    if key not in mapping:
        raise ValueError(f"{where}: missing required field {key!r}")
    value = mapping[key]
    if not isinstance(value, kinds):
        names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{where}: field {key!r} must be {names}, got {type(value).__name__} ({value!r})")
    return value


def validate_results(results: dict) -> None:
    """Check ``results`` against the results.json schema of this module; raise ``ValueError`` naming the field."""
    if not isinstance(results, dict):
        raise ValueError(f"results: expected a dict (the content of results.json), got {type(results).__name__}")
    task = _require(results, "task", "results", str)
    if task not in TASK_CARDS:
        raise ValueError(f"results: field 'task' must be one of {sorted(TASK_CARDS)}, got {task!r}")
    for key in ("dataset", "data_variant", "split"):
        _require(results, key, "results", str)
    for key in ("metrics", "metrics_polyak"):
        if key == "metrics_polyak" and key not in results:
            continue
        metrics = _require(results, key, "results", dict)
        for name, value in metrics.items():
            if not _is_number(value) and not (
                isinstance(value, (list, tuple)) and value and all(_is_number(v) for v in value)
            ):
                raise ValueError(f"results.{key}: metric {name!r} must be a number or a list of numbers, got {value!r}")
    training = _require(results, "training", "results", dict)
    _require(training, "steps", "results.training", numbers.Integral)
    _require(training, "wall_time_s", "results.training", numbers.Real)
    _require(training, "hardware", "results.training", str)
    if "model" in results and not isinstance(results["model"], dict):
        raise ValueError(f"results: field 'model' must be a dict, got {type(results['model']).__name__}")
    if "notes" in results and not (
        isinstance(results["notes"], list) and all(isinstance(n, str) for n in results["notes"])
    ):
        raise ValueError("results: field 'notes' must be a list of strings")


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_finite_scalar(v: Any) -> bool:
    return _is_number(v) and math.isfinite(float(v))


# --------------------------------------------------------------------------------------------- rendering


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return str(int(v))
    if _is_number(v):
        return f"{float(v):.6g}"
    return str(v)


def _fmt_duration(seconds: float) -> str:
    s = float(seconds)
    if s < 120:
        return f"{s:.0f} s"
    h, rem = divmod(int(round(s)), 3600)
    m = rem // 60
    return (f"{h} h {m} min" if h else f"{m} min") + f" ({s:.0f} s)"


def _lookup(key: str, *dicts: dict) -> Any:
    for d in dicts:
        if isinstance(d, dict) and d.get(key) is not None:
            return d[key]
    return None


def _comparability_notes(results: dict) -> list[str]:
    variant = results["data_variant"]
    low = variant.lower()
    given = results.get("notes", [])
    # the training script may already have written the caveat; don't repeat it
    already = any("not comparable" in n.lower() for n in given)
    notes = []
    if "jpeg" in low and not already:
        notes.append(
            f"Evaluated on {variant}: JPEG compression changes the pixel statistics (blocking, smoothed colours), so "
            "bits/dim and NELBO values here are **not comparable** with numbers on the lossless CIFAR-10 test set, "
            "such as the paper's Table III or the VQ-VAE paper."
        )
    if any(w in low for w in ("synthetic", "stand-in", "standin", "rendered", "festival")) and not already:
        notes.append(
            f"Evaluated on {variant}, a synthetic stand-in corpus: its numbers are **not comparable** with the "
            "paper's ScribbleLens / WSJ results."
        )
    notes.extend(given)
    return notes


def _metric_rows(results: dict) -> tuple[list[dict], bool]:
    metrics = results["metrics"]
    polyak = results.get("metrics_polyak") or {}
    names = list(metrics) + [n for n in polyak if n not in metrics]
    main = results.get("main_metric")
    if main in names:  # the recipe's headline number first
        names.remove(main)
        names.insert(0, main)
    rows = [
        {
            "name": n,
            "value": _fmt(metrics.get(n)),
            "polyak": _fmt(polyak.get(n)),
            "meaning": ("**main metric** — " if n == main else "") + METRIC_MEANINGS.get(n, ""),
        }
        for n in names
    ]
    return rows, bool(polyak)


def _dataset_id(results: dict) -> tuple[str, bool]:
    """(identifier for the metadata, whether it looks like a Hub dataset id). Free text becomes a slug."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    name = results["dataset"].strip()
    try:
        validate_repo_id(name)
        return name, True
    except HFValidationError:
        pass
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].rstrip("-")
    return slug or results["task"], False


def _eval_results(results: dict) -> tuple[list, list[str]]:
    from huggingface_hub import EvalResult

    task = TASK_CARDS[results["task"]]
    common = dict(
        task_type=task["task_type"],
        task_name=task["task_name"],
        dataset_type=_dataset_id(results)[0],
        dataset_name=results["data_variant"],
        dataset_split=results["split"],
    )
    out, left_out = [], []
    decay = results.get("polyak_decay")
    for suffix, metrics in (("", results["metrics"]), ("_polyak", results.get("metrics_polyak") or {})):
        for name, value in metrics.items():
            if not _is_finite_scalar(value):
                left_out.append(name + suffix)
                continue
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
            extra = {}
            if suffix:
                extra["metric_name"] = f"{name} (Polyak-averaged weights)"
                if decay is not None:
                    extra["metric_config"] = f"polyak_decay={decay}"
            else:
                extra["metric_name"] = name
            out.append(EvalResult(metric_type=name + suffix, metric_value=value, **common, **extra))
    return out, left_out


def _config_yaml(training_config: dict) -> str:
    import yaml

    plain = json.loads(json.dumps(training_config, default=str))  # paths, enums, numpy scalars → JSON types
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True).strip()


def build_model_card(
    results: dict,
    training_config: dict | None = None,
    *,
    repo_id: str | None = None,
    template_path: str | os.PathLike | None = None,
):
    """Render the model card of a trained model.

    Args:
        results: the results.json content (schema in this module's docstring; validated).
        training_config: the recipe (the training YAML as a dict); shown in full in the card and used for
            quantizer facts missing from ``results["model"]``.
        repo_id: Hub id used in the usage snippets (default: ``"path/to/model"``).
        template_path: a Jinja markdown template (default: the package's ``model_card_template.md``).

    Returns:
        A :class:`huggingface_hub.ModelCard` whose ``data.eval_results`` hold the finite scalar metrics.
    """
    from huggingface_hub import ModelCard, ModelCardData

    validate_results(results)
    training_config = dict(training_config or {})
    task_key = results["task"]
    task = TASK_CARDS[task_key]
    model_info = results.get("model") or {}
    training = results["training"]

    facts = {
        key: _lookup(key, model_info, training_config)
        for key in ("quantizer_type", "codebook_size", "num_codebooks", "batch_norm", "codebook_lr_multiplier")
    }
    num_codebooks = facts["num_codebooks"] or 1
    codebook_size = facts["codebook_size"]
    quantizer_type = facts["quantizer_type"] or "unknown"
    model_name = results.get("model_name") or (
        f"vqvae-{task_key}-{quantizer_type}"
        + (f"-{num_codebooks}x{codebook_size}" if codebook_size is not None else "")
    )

    quantizer_summary = f"{quantizer_type} update rule, {num_codebooks} codebook(s) × {_fmt(codebook_size)} codes"
    if facts["batch_norm"] is not None:
        quantizer_summary += ", batch norm before quantization" if facts["batch_norm"] else ", no batch norm"
    if facts["codebook_lr_multiplier"] not in (None, 1, 1.0):
        quantizer_summary += f", codebook learning rate × {_fmt(facts['codebook_lr_multiplier'])}"

    eval_results, left_out = _eval_results(results)
    tags = ["vq_hf", "vector-quantization", "vq-vae", "discrete-units", *task["tags"], f"quantizer-{quantizer_type}"]
    extra_meta = {"vq_hf": {k: v for k, v in {"task": task_key, **facts}.items() if v is not None}}
    card_data = ModelCardData(
        library_name="vq_hf",
        license=results.get("license", "apache-2.0"),
        tags=tags,
        datasets=[_dataset_id(results)[0]] if _dataset_id(results)[1] else None,
        model_name=model_name,
        eval_results=eval_results or None,
        **extra_meta,
    )

    caveats = _comparability_notes(results)
    notes = list(caveats)
    if left_out:
        notes.append(
            "Not in the model-index metadata (not a finite scalar; shown in the table only): "
            + ", ".join(f"`{n}`" for n in left_out)
            + "."
        )
    rows, has_polyak = _metric_rows(results)
    fmt_args = {
        "num_codebooks": num_codebooks,
        "codebook_size": _fmt(codebook_size),
        "code_bits": _fmt(math.log2(codebook_size)) if codebook_size else "log2 K",
    }
    limitations = [
        "Numbers come from one training run with the budget listed above; the paper reports medians of several runs "
        "trained for far longer.",
    ] + caveats
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path or DEFAULT_TEMPLATE_PATH),
        model_name=model_name,
        architecture_summary=task["architecture"].format(**fmt_args),
        task_description=task["description"],
        quantizer_summary=quantizer_summary,
        dataset_description=f"{results['data_variant']} (`{results['dataset']}`)",
        eval_description=results["data_variant"],
        eval_split=results["split"],
        comparability_notes=notes,
        metric_rows=rows,
        has_polyak=has_polyak,
        intended_use=task["intended_use"].format(**fmt_args),
        model_class=task["model_class"],
        repo_id_or_path=repo_id or "path/to/model",
        usage_python=USAGE[task_key]["python"].replace("{repo}", repo_id or "path/to/model"),
        usage_bash=USAGE[task_key]["bash"].replace("{repo}", repo_id or "path/to/model"),
        training_steps=_fmt(training["steps"]),
        training_wall_time=_fmt_duration(training["wall_time_s"]),
        training_hardware=training["hardware"],
        training_seed=_fmt(training.get("seed")),
        training_config_path=(f"`{training['config_path']}`" if training.get("config_path") else "—")
        + (f" — {results['description']}" if isinstance(results.get("description"), str) else ""),
        training_config_yaml=_config_yaml(training_config) if training_config else "",
        limitations="\n".join(f"- {line}" for line in limitations),
    )
    return card


# --------------------------------------------------------------------------------------------- files and Hub


def read_results(folder: str | os.PathLike) -> dict:
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.json in the model folder (the training script writes it)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None


def _load_training_config(folder: Path, results: dict) -> dict:
    """The recipe: ``training_config.json``/``.yaml`` in the folder, else ``training.config_path`` if readable."""
    import yaml

    candidates = [folder / "training_config.json", folder / "training_config.yaml"]
    cfg_path = (results.get("training") or {}).get("config_path")
    if cfg_path:
        p = Path(cfg_path)
        candidates += [p] if p.is_absolute() else [folder / p, Path.cwd() / p]
    for p in candidates:
        if p.is_file():
            text = p.read_text(encoding="utf-8")
            try:
                data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
            except (json.JSONDecodeError, yaml.YAMLError) as err:
                raise ValueError(f"{p}: could not parse the training configuration ({err})") from None
            if not isinstance(data, dict):
                raise ValueError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
            return data
    return {}


def write_model_card(
    folder: str | os.PathLike,
    training_config: dict | None = None,
    *,
    repo_id: str | None = None,
    template_path: str | os.PathLike | None = None,
):
    """Read ``folder/results.json``, render the card and write ``folder/README.md``; returns the card.

    ``training_config`` defaults to ``folder/training_config.{json,yaml}`` or the YAML named by
    ``results["training"]["config_path"]`` (relative to the folder or the working directory), else none.
    """
    folder = Path(folder)
    results = read_results(folder)
    if training_config is None:
        training_config = _load_training_config(folder, results)
    card = build_model_card(results, training_config, repo_id=repo_id, template_path=template_path)
    card.save(str(folder / README_FILE))
    return card


def publish(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    api: Any = None,
    private: bool = False,
    commit_message: str = "Upload vq_hf model",
    token: str | None = None,
    revision: str | None = None,
    ignore_patterns: tuple[str, ...] | list[str] = DEFAULT_IGNORE_PATTERNS,
):
    """Upload a saved model folder to the Hub with our model card as its README.

    The folder must hold ``config.json`` and ``*.safetensors`` weights (``save_pretrained`` output). If it
    has ``results.json``, ``README.md`` is (re)generated from it first, with ``repo_id`` in the usage
    snippets; otherwise an existing ``README.md`` is uploaded as is, and with neither this raises.
    Training-state files (``checkpoints/``, ``logs/``, optimizer/scheduler states) are skipped
    (``ignore_patterns``).

    Args:
        api: an object with ``create_repo`` and ``upload_folder`` (default ``HfApi(token=token)``); tests
            pass a fake.

    Returns:
        What ``api.upload_folder`` returns (a ``CommitInfo`` for ``HfApi``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"publish: {folder} is not a directory")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"publish: {folder / 'config.json'} is missing (save the model with save_pretrained)")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"publish: no *.safetensors weights in {folder}")
    if (folder / RESULTS_FILE).is_file():
        write_model_card(folder, repo_id=repo_id)
    elif not (folder / README_FILE).is_file():
        raise FileNotFoundError(
            f"publish: {folder} has neither results.json nor README.md; write results.json (see vq_hf.cards) "
            "so the model card can be built"
        )
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    kwargs = {"revision": revision} if revision is not None else {}
    return api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message=commit_message,
        ignore_patterns=list(ignore_patterns),
        **kwargs,
    )
