"""Recipe files: load a YAML recipe, apply ``section.key=value`` overrides, validate every key and value.

A recipe states the whole experiment in seven sections::

    task: cifar10                 # cifar10 | handwriting | speech
    description: "..."            # one line, copied into the model card
    model: {...}                  # VQVAEConfig architecture keys
    quantizer: {...}              # VQVAEConfig quantizer keys (the VectorQuantizer arguments)
    optimizer: {...}              # Adam, codebook LR, gradient clipping
    schedule: {...}               # LR schedule and the training budget
    data: {...}                   # dataset, splits, batch sizes
    training: {...}               # seed, accumulation, Polyak, eval / checkpoint cadence

``optimizer``, ``schedule``, ``data`` and ``training`` have a fixed schema (``SCHEMA`` below, with defaults);
``model`` and ``quantizer`` are checked against the model config class by the caller
(:func:`validate_open_section`), so this module knows nothing of models.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import pathlib
from dataclasses import dataclass
from typing import Any, Callable

import yaml

TASKS = ("cifar10", "handwriting", "speech")


class ConfigError(ValueError):
    """A recipe or an override names an unknown key or holds an invalid value."""


@dataclass(frozen=True)
class Key:
    """One schema entry: accepted types, default, optional choices or check."""

    types: tuple
    default: Any
    choices: tuple | None = None
    nullable: bool = False
    check: Callable[[Any], bool] | None = None
    check_text: str = ""
    help: str = ""


def _pos(v) -> bool:
    return v > 0


def _nonneg(v) -> bool:
    return v >= 0


_NUM = (int, float)

SCHEMA: dict[str, dict[str, Key]] = {
    "optimizer": {
        "name": Key((str,), "adam", choices=("adam", "adamw")),
        "learning_rate": Key(_NUM, 5e-4, check=_pos, check_text="> 0"),
        "betas": Key((list,), [0.9, 0.999], check=lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
                     check_text="two numbers in [0, 1)"),
        "eps": Key(_NUM, 1e-8, check=_pos, check_text="> 0"),
        "weight_decay": Key(_NUM, 0.0, check=_nonneg, check_text=">= 0"),
        "max_grad_norm": Key(_NUM, None, nullable=True, check=_pos, check_text="> 0 (null = no clipping)"),
        "skip_step_norm": Key(_NUM, None, nullable=True, check=_pos,
                              check_text="> 0 (null = never skip); a step whose gradient norm exceeds it is skipped"),
    },
    "schedule": {
        "name": Key((str,), "constant", choices=("constant", "multistep", "plateau")),
        "unit": Key((str,), "steps", choices=("steps", "epochs"),
                    help="what multistep milestones count; plateau always steps at evaluation"),
        "milestones": Key((list,), [], check=lambda v: all(isinstance(m, int) and m > 0 for m in v),
                          check_text="a list of positive integers"),
        "gamma": Key(_NUM, 0.5, check=_pos, check_text="> 0"),
        "factor": Key(_NUM, 0.8, check=lambda v: 0 < v < 1, check_text="in (0, 1)"),
        "patience": Key((int,), 3, check=_nonneg, check_text=">= 0"),
        "min_lr": Key(_NUM, 0.0, check=_nonneg, check_text=">= 0"),
        "monitor": Key((str,), "loss", help="the evaluation metric that drives the plateau schedule"),
        "max_steps": Key((int,), None, nullable=True, check=_pos, check_text="> 0"),
        "max_epochs": Key((int,), None, nullable=True, check=_pos, check_text="> 0"),
        "max_minutes": Key(_NUM, None, nullable=True, check=_pos, check_text="> 0"),
    },
    "data": {
        "dataset_name": Key((str,), None, nullable=True,
                            help="hub id or local folder; null = the offline default of the task"),
        "train_split": Key((str,), "train"),
        "eval_split": Key((str,), "test"),
        "batch_size": Key((int,), 32, check=_pos, check_text="> 0"),
        "eval_batch_size": Key((int,), 64, check=_pos, check_text="> 0"),
        "max_train_samples": Key((int,), None, nullable=True, check=_pos, check_text="> 0"),
        "max_eval_samples": Key((int,), None, nullable=True, check=_pos, check_text="> 0"),
        "chunk_len": Key((int,), None, nullable=True, check=_pos,
                         check_text="> 0 (training crops of handwriting columns / speech frames)"),
        "num_workers": Key((int,), 0, check=_nonneg, check_text=">= 0"),
        "synth_size": Key((int,), 200, check=_pos, check_text="> 0",
                          help="lines / utterances of the stand-in corpus generated when dataset_name is null"),
        "cache_dir": Key((str,), None, nullable=True,
                         help="root of feature caches and generated stand-in corpora; null = the datasets cache "
                              "($HF_DATASETS_CACHE). Never the output folder: it is what gets uploaded"),
        "allow_scp_commands": Key((bool,), False,
                                  help="speech: run piped wav.scp / feats.scp entries (`sph2pipe ... |`) as shell "
                                       "commands; only for a trusted corpus (refused otherwise)"),
    },
    "training": {
        "seed": Key((int,), 0),
        "gradient_accumulation_steps": Key((int,), 1, check=_pos, check_text="> 0"),
        "mixed_precision": Key((str,), "no", choices=("no", "fp16", "bf16")),
        "polyak_decay": Key(_NUM, 0.998, nullable=True, check=lambda v: 0 <= v < 1,
                            check_text="in [0, 1) (null or 0 = no averaging)"),
        "polyak_debias": Key((bool,), False),
        "eval_every": Key((int,), 1000, nullable=True, check=_pos,
                          check_text="> 0 (optimizer steps; null = only at epoch ends / the end)"),
        "eval_each_epoch": Key((bool,), False, help="also evaluate at the end of every epoch (drives plateau LR)"),
        "save_every": Key((int,), 1000, check=_pos, check_text="> 0 (optimizer steps)"),
        "log_every": Key((int,), 10, check=_pos, check_text="> 0 (optimizer steps)"),
        "keep_last": Key((int,), 1, check=_pos,
                         check_text="> 0 (checkpoints kept; writes are atomic, so 1 always leaves a complete one)"),
        "max_eval_batches": Key((int,), None, nullable=True, check=_pos,
                                check_text="> 0 (periodic evaluations only; the final one is complete)"),
    },
}

TOP_LEVEL = ("task", "description", "model", "quantizer") + tuple(SCHEMA)


def _type_name(types: tuple) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "boolean", list: "list", dict: "mapping"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _check_value(where: str, key: Key, value):
    if value is None:
        if key.nullable:
            return None
        raise ConfigError(f"{where}: null is not allowed (expected {_type_name(key.types)})")
    ok = isinstance(value, key.types) and not (isinstance(value, bool) and bool not in key.types)
    if not ok:
        raise ConfigError(f"{where}: expected {_type_name(key.types)}, got {value!r} ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {list(key.choices)}")
    if key.check is not None and not key.check(value):
        raise ConfigError(f"{where}: {value!r} must be {key.check_text}")
    if float in key.types and isinstance(value, int) and not isinstance(value, bool) and int not in key.types:
        value = float(value)
    return value


def parse_override(token: str) -> tuple[list[str], Any]:
    """``"optimizer.learning_rate=1e-3"`` → (["optimizer", "learning_rate"], 0.001). Values are YAML."""
    if "=" not in token:
        raise ConfigError(f"override {token!r}: expected section.key=value (e.g. optimizer.learning_rate=1e-3)")
    path, raw = token.split("=", 1)
    parts = path.strip().split(".")
    if not path.strip() or any(not p for p in parts):
        raise ConfigError(f"override {token!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {token!r}: value is not valid YAML ({e})") from None
    # YAML 1.1 reads "1e-3" as a string; recipes and overrides mean a number.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") and not value.isalpha() else value
        except ValueError:
            pass
    return parts, value


def _coerce_numbers(obj):
    """YAML 1.1 leaves "5e-4" as a string; turn such strings into floats throughout a loaded recipe."""
    if isinstance(obj, dict):
        return {k: _coerce_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_coerce_numbers(v) for v in obj]
    if isinstance(obj, str):
        try:
            if any(c in obj for c in "eE") and any(c.isdigit() for c in obj):
                return float(obj)
        except ValueError:
            pass
    return obj


def check_override_keys(overrides: list[str], open_keys: Callable[[str], dict] | None = None,
                        task: str | None = None) -> None:
    """Every override names a known key; a typo is reported against the override, with the section's keys.

    ``open_keys(task)`` → ``{"model": keys, "quantizer": keys}``: the sections whose keys the model config owns
    (unchecked here when not given). ``task`` is the run's task (an override ``task=...`` wins).
    """
    parsed = [(token, *parse_override(token)) for token in overrides]
    task = next((v for _, parts, v in parsed if parts == ["task"]), task)
    open_known = open_keys(task) if open_keys is not None and task in TASKS else {}
    for token, parts, _ in parsed:
        section = parts[0]
        if section not in TOP_LEVEL:
            raise ConfigError(f"override {token!r}: unknown section {section!r}; sections: {list(TOP_LEVEL)}")
        known = sorted(SCHEMA[section]) if section in SCHEMA else sorted(open_known.get(section, ()))
        if len(parts) < 2 or not known:
            continue
        if parts[1] not in known:
            close = difflib.get_close_matches(parts[1], known, n=1)
            hint = f" (did you mean {section}.{close[0]}?)" if close else ""
            raise ConfigError(f"override {token!r}: {section} has no key {parts[1]!r}{hint}; "
                              f"valid {section} keys: {', '.join(known)}")


def load_recipe(path: str | pathlib.Path | None, overrides: list[str] = (),
                open_keys: Callable[[str], dict] | None = None) -> dict:
    """Read a recipe, apply overrides, fill defaults and validate the fixed sections.

    Raises :class:`ConfigError` naming the override, or the file, and the key for anything unknown or invalid.
    ``open_keys``: see :func:`check_override_keys`.
    """
    raw: dict = {}
    source = "<no config file>"
    if path is not None:
        path = pathlib.Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"--config {source}: no such file")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
        raw = _coerce_numbers(raw)
    check_override_keys(list(overrides), open_keys, raw.get("task", "cifar10"))
    cfg = copy.deepcopy(raw)
    for token in overrides:
        parts, value = parse_override(token)
        node = cfg
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {token!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return validate_recipe(cfg, source)


def validate_recipe(cfg: dict, source: str = "<recipe>") -> dict:
    unknown = [k for k in cfg if k not in TOP_LEVEL]
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; known: {list(TOP_LEVEL)}")
    out: dict[str, Any] = {}
    task = cfg.get("task", "cifar10")
    if task not in TASKS:
        raise ConfigError(f"{source}: task: {task!r} is not one of {list(TASKS)}")
    out["task"] = task
    desc = cfg.get("description", "")
    if not isinstance(desc, str):
        raise ConfigError(f"{source}: description: expected a string, got {desc!r}")
    out["description"] = desc
    for section in ("model", "quantizer"):
        sec = cfg.get(section) or {}
        if not isinstance(sec, dict):
            raise ConfigError(f"{source}: {section}: expected a mapping, got {sec!r}")
        out[section] = dict(sec)
    for section, schema in SCHEMA.items():
        sec = cfg.get(section) or {}
        if not isinstance(sec, dict):
            raise ConfigError(f"{source}: {section}: expected a mapping, got {sec!r}")
        bad = [k for k in sec if k not in schema]
        if bad:
            raise ConfigError(
                f"{source}: unknown key(s) {[f'{section}.{k}' for k in bad]}; known in {section}: {sorted(schema)}"
            )
        out[section] = {
            k: _check_value(f"{source}: {section}.{k}", spec, sec.get(k, copy.deepcopy(spec.default)))
            for k, spec in schema.items()
        }
    s = out["schedule"]
    if s["name"] == "multistep" and not s["milestones"]:
        raise ConfigError(f"{source}: schedule.milestones: a multistep schedule needs at least one milestone")
    return out


def validate_open_section(recipe: dict, section: str, known: dict[str, Any], source: str = "<recipe>") -> None:
    """Check ``recipe[section]`` keys against ``known`` (name → default value, e.g. a model config's dict).

    Types are checked where the default is not None: a number for a number, a string for a string, etc.
    """
    for k, v in recipe[section].items():
        if k not in known:
            close = [n for n in known if n.split("_")[0] == k.split("_")[0]][:6]
            hint = f" (similar: {close})" if close else ""
            raise ConfigError(f"{source}: unknown key '{section}.{k}'{hint}; see the model config for the full list")
        d = known[k]
        if d is None or v is None:
            continue
        if isinstance(d, bool) != isinstance(v, bool):
            raise ConfigError(f"{source}: {section}.{k}: expected {type(d).__name__}, got {v!r}")
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            if not isinstance(v, (int, float)) or (isinstance(d, int) and isinstance(v, float) and not v.is_integer()):
                raise ConfigError(f"{source}: {section}.{k}: expected {type(d).__name__}, got {v!r}")
        elif isinstance(d, str) and not isinstance(v, str):
            raise ConfigError(f"{source}: {section}.{k}: expected a string, got {v!r}")
        elif isinstance(d, (list, tuple)) and not isinstance(v, (list, tuple)):
            raise ConfigError(f"{source}: {section}.{k}: expected a list, got {v!r}")


# What a checkpoint can only resume unchanged: state shapes (model, quantizer, optimizer groups, Polyak), the
# optimizer state's meaning and the data order. Budgets, evaluation / checkpoint cadence, gradient clipping
# (optimizer.max_grad_norm / skip_step_norm) and mixed precision may change on resume.
IDENTITY_KEYS = ("task", "model", "quantizer", ("optimizer", "name"), ("optimizer", "learning_rate"),
                 ("optimizer", "betas"), ("optimizer", "eps"), ("optimizer", "weight_decay"),
                 ("data", "dataset_name"),
                 ("data", "train_split"), ("data", "batch_size"), ("data", "chunk_len"),
                 ("data", "max_train_samples"), ("training", "seed"), ("training", "gradient_accumulation_steps"),
                 ("training", "polyak_decay"), ("schedule", "name"), ("schedule", "milestones"),
                 ("schedule", "unit"))


def identity(recipe: dict) -> dict:
    """The parts of a recipe that define a run (a checkpoint can only resume the same identity)."""
    out = {}
    for k in IDENTITY_KEYS:
        if isinstance(k, tuple):
            out[".".join(k)] = recipe[k[0]].get(k[1])
        else:
            out[k] = recipe[k]
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def identity_diff(a: dict, b: dict) -> list[str]:
    """Human-readable differences between two identities (flattened dotted keys)."""

    def flat(d, prefix=""):
        items = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                items.update(flat(v, key + "."))
            else:
                items[key] = v
        return items

    fa, fb = flat(a), flat(b)
    return [f"{k}: checkpoint {fa.get(k)!r} vs now {fb.get(k)!r}"
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def fingerprint(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
