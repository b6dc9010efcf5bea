"""``vq-hf reproduce``: the paper's Tables I–III from one command each — every variant, several seeds, medians.

    vq-hf reproduce table3 --budget smoke --seeds 2 --output runs/table3
    vq-hf reproduce table1 --budget gpu --seeds 5 --output runs/table1 --dataset_name /data/wsj \\
        --launcher "accelerate launch --num_processes 8"

Every row of a table is a recipe of ``training/configs/<task>/<variant>.yaml``; a budget
(``training/configs/reproduce/<budget>.yaml``) shrinks it to the time at hand. Each (variant, seed) is one
``training/run_vq.py`` process writing ``<output>/runs/<variant>/seed<k>/`` (``runs/<recipe folder>/<variant>/
seed<k>`` for Table III's two bottlenecks), so the tables use the same recipes, checkpoints and multi-GPU
launch as single runs. The command is resumable: a run with a complete ``results.json`` is reused, a killed run
continues from its latest checkpoint (exact resume, docs/training.md), so re-running the same command after a
``kill -9`` finishes the table with the numbers an uninterrupted run gives. ``report.md``, ``table.csv``,
``runs.csv`` and the figures are rewritten atomically from whatever runs are complete. See docs/reproduction.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import yaml

VARIANTS = ("vanilla", "bn", "bn_cblr", "bn_ema", "bn_reest", "bn_reest_cblr")
LABELS = {
    "vanilla": "vanilla VQ",
    "bn": "+ BN",
    "bn_cblr": "+ BN + codebook LR",
    "bn_ema": "+ BN + EMA",
    "bn_reest": "+ BN + data-dep reest",
    "bn_reest_cblr": "+ BN + data-dep reest + codebook LR",
    "no_bottleneck": "no bottleneck",
}
# The variants whose advantage over vanilla VQ is the paper's main claim (the report checks it per group).
REESTIMATION = ("bn_reest", "bn_reest_cblr")


class ReproduceError(Exception):
    """A bad argument, a missing file or a run directory of other settings: one line, no traceback."""


@dataclass(frozen=True)
class Column:
    key: str            # short name (CSV prefix)
    label: str          # report header
    metric: str         # results.json metrics key
    scale: float = 1.0  # e.g. 100 for PER in %
    lower_is_better: bool = True
    paper: dict = dataclasses.field(default_factory=dict)  # variant -> figure in the paper
    digits: int = 3


@dataclass(frozen=True)
class Group:
    folder: str  # training/configs/<folder>/
    label: str   # "" for a table with one group, else e.g. "8 × 128"
    variants: tuple
    columns: tuple


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    task: str
    groups: tuple
    paper_note: str
    def group(self, folder: str) -> Group:
        return next(g for g in self.groups if g.folder == folder)


def _fig(*values, variants=VARIANTS) -> dict:
    return dict(zip(variants, values))


def _pplx(paper: dict) -> Column:
    return Column("perplexity", "Pplx", "perplexity_sum", lower_is_better=False, paper=paper, digits=1)


TABLES = {
    "table1": Table(
        "table1", "Table I: speech (WSJ), phone error rate and code perplexity", "speech",
        (Group("speech", "", VARIANTS + ("no_bottleneck",), (
            Column("per", "Dev PER (%)", "phone_error_rate", scale=100.0, digits=1,
                   paper={**_fig(16.9, 17.6, 13.1, 10.5, 10.4, 9.8), "no_bottleneck": 11.6}),
            _pplx(_fig(16, 16.5, 151, 61.8, 393, 574)))),),
        "paper: WSJ test_dev93, 85 epochs, one run per row"),
    "table2": Table(
        "table2", "Table II: handwriting (ScribbleLens), bits per dimension", "handwriting",
        (Group("handwriting", "", VARIANTS, (
            Column("rec_bpd", "Rec. BPD", "reconstruction_bits_per_dim",
                   paper=_fig(0.213, 0.216, 0.212, 0.207, 0.200, 0.200)),
            _pplx(_fig(322, 260, 432, 1118, 2388, 2446)),
            Column("uniform_nelbo", "Uniform NELBO bits", "uniform_nelbo_bits_per_dim",
                   paper=_fig(0.307, 0.309, 0.306, 0.301, 0.294, 0.294)),
            Column("unigram_nelbo", "Unigram NELBO bits", "unigram_nelbo_bits_per_dim",
                   paper=_fig(0.278, 0.278, 0.281, 0.287, 0.288, 0.288)))),),
        "paper: ScribbleLens test lines, 150 epochs, K = 4096"),
    "table3": Table(
        "table3", "Table III: CIFAR-10 test bits/dim (uniform NELBO, the paper's \"Reconstruction BPD\")", "cifar10",
        (Group("cifar10", "8 × 128", VARIANTS, (
            Column("bpd", "BPD", "uniform_nelbo_bits_per_dim",
                   paper=_fig(4.679, 4.677, 4.677, 4.683, 4.665, 4.659)),
            _pplx({}))),
         Group("cifar10_5x1024", "5 × 1024", VARIANTS, (
             Column("bpd", "BPD", "uniform_nelbo_bits_per_dim",
                    paper=_fig(4.811, 4.809, 4.796, 4.798, 4.807, 4.802)),
             _pplx({})))),
        "paper: lossless CIFAR-10 test set, 500k steps, median of five runs"),
}


# ---------------------------------------------------------------------------------------------- locations
def find_script(explicit: str | None = None) -> pathlib.Path:
    """training/run_vq.py: --script, else under the current directory, else beside the installed source tree."""
    if explicit:
        p = pathlib.Path(explicit)
        if not p.is_file():
            raise ReproduceError(f"--script {p}: no such file")
        return p.resolve()
    candidates = [pathlib.Path.cwd() / "training" / "run_vq.py",
                  pathlib.Path(__file__).resolve().parents[2] / "training" / "run_vq.py"]
    for p in candidates:
        if p.is_file():
            return p.resolve()
    raise ReproduceError("training/run_vq.py not found (looked in " + ", ".join(str(c) for c in candidates)
                         + "); run from a vq-hf checkout or pass --script path/to/run_vq.py")


def load_budget(configs: pathlib.Path, budget: str, table: str) -> dict:
    path = configs / "reproduce" / f"{budget}.yaml"
    if not path.is_file():
        raise ReproduceError(f"budget {budget!r}: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ReproduceError(f"{path}: not valid YAML ({e})") from None
    if table not in data:
        raise ReproduceError(f"{path}: no section {table!r} (has {sorted(data)})")
    section = data[table] or {}
    known = {"seeds", "corpus", "report_to", "overrides", "groups", "description"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ReproduceError(f"{path}: {table}: unknown key(s) {unknown}; known: {sorted(known)}")
    section = dict(section, path=str(path))
    return section


def _recipe_quantizer_keys(recipe_path: pathlib.Path) -> set:
    raw = yaml.safe_load(recipe_path.read_text()) or {}
    return set((raw.get("quantizer") or {}).keys())


def override_tokens(sections: dict, recipe_path: pathlib.Path, where: str) -> list[str]:
    """``{section: {key: value}}`` → ``section.key=value`` tokens for run_vq.py.

    ``quantizer`` keys reach only recipes that set the key themselves (re-estimation settings do not turn a
    vanilla recipe into an invalid one, and nothing reaches the no-bottleneck baseline).
    """
    tokens = []
    qkeys = None
    for section, values in (sections or {}).items():
        if not isinstance(values, dict):
            raise ReproduceError(f"{where}: {section}: expected a mapping of keys, got {values!r}")
        for key, value in values.items():
            if section == "quantizer":
                qkeys = _recipe_quantizer_keys(recipe_path) if qkeys is None else qkeys
                if key not in qkeys:
                    continue
            tokens.append(f"{section}.{key}={json.dumps(value)}")
    return tokens


def _parse_sets(tokens: list[str]) -> dict:
    """--set section.key=value → {section: {key: value}} (values are YAML)."""
    out: dict = {}
    for t in tokens:
        if "=" not in t or "." not in t.split("=", 1)[0]:
            raise ReproduceError(f"--set {t!r}: expected section.key=value, e.g. schedule.max_steps=12000")
        path, raw = t.split("=", 1)
        section, key = path.split(".", 1)
        out.setdefault(section, {})[key] = yaml.safe_load(raw) if raw.strip() else None
    return out


# ---------------------------------------------------------------------------------------------- run plan
@dataclass
class RunSpec:
    group: str
    variant: str
    seed: int
    recipe: pathlib.Path
    run_dir: pathlib.Path
    tokens: list

    @property
    def name(self) -> str:
        return f"{self.group}/{self.variant}/seed{self.seed}"


def plan_runs(table: Table, configs: pathlib.Path, budget: dict, seeds: int, out: pathlib.Path,
              variants: list[str] | None, dataset_name: str | None, user_sets: dict) -> list[RunSpec]:
    wanted = None
    if variants:
        wanted = set(variants)
        known = {v for g in table.groups for v in g.variants}
        if len(table.groups) > 1:
            known |= {f"{g.folder}/{v}" for g in table.groups for v in g.variants}
        bad = sorted(wanted - known)
        if bad:
            raise ReproduceError(f"--variants: {bad} not in {table.name} (rows: {sorted(known)})")
    single = len(table.groups) == 1
    specs = []
    for g in table.groups:
        for v in g.variants:
            if wanted is not None and v not in wanted and f"{g.folder}/{v}" not in wanted:
                continue
            recipe = configs / g.folder / f"{v}.yaml"
            if not recipe.is_file():
                raise ReproduceError(f"{table.name}: recipe {recipe} does not exist")
            base = override_tokens(budget.get("overrides"), recipe, budget["path"])
            base += override_tokens((budget.get("groups") or {}).get(g.folder), recipe, budget["path"])
            if dataset_name is not None:
                base.append(f"data.dataset_name={json.dumps(dataset_name)}")
            base += override_tokens(user_sets, recipe, "--set")
            for k in range(seeds):
                run_dir = out / "runs" / (v if single else f"{g.folder}/{v}") / f"seed{k}"
                specs.append(RunSpec(g.folder, v, k, recipe, run_dir, base + [f"training.seed={k}"]))
    if not specs:
        raise ReproduceError(f"--variants selects no row of {table.name}")
    return specs


def read_complete_results(run_dir: pathlib.Path) -> dict | None:
    """results.json when it is complete (parses and names its metrics), else None."""
    path = run_dir / "results.json"
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(res, dict) or not isinstance(res.get("metrics"), dict) or "training" not in res:
        return None
    return res


def expected_recipe(spec: RunSpec) -> dict:
    from vq_hf.training_utils.config import ConfigError, load_recipe

    try:
        return json.loads(json.dumps(load_recipe(spec.recipe, spec.tokens), default=str))
    except ConfigError as e:
        raise ReproduceError(f"{spec.name}: {e}") from None


def check_same_settings(spec: RunSpec, recipe: dict) -> None:
    """A finished run is reused only if it was trained with the recipe this command would run now."""
    from vq_hf.training_utils.config import identity_diff

    path = spec.run_dir / "training_config.json"
    if not path.is_file():
        return
    try:
        done = json.loads(path.read_text())
    except ValueError:
        return
    diff = identity_diff(done, recipe)
    if diff:
        raise ReproduceError(f"{spec.run_dir} was trained with other settings ({'; '.join(diff[:4])}); "
                             "delete it or choose another --output")


def run_command(spec: RunSpec, launcher: list[str], script: pathlib.Path, report_to: str) -> list[str]:
    from vq_hf.training_utils.checkpoints import list_checkpoints

    cmd = [*launcher, str(script), "--config", str(spec.recipe), "--output_dir", str(spec.run_dir),
           "--no_progress_bar", "--report_to", report_to, *spec.tokens]
    if list_checkpoints(spec.run_dir):
        cmd += ["--resume_from_checkpoint", "latest"]
    elif spec.run_dir.exists() and any(spec.run_dir.iterdir()):
        cmd.append("--overwrite_output_dir")  # killed before its first checkpoint: nothing to keep
    return cmd


def _die_with_parent() -> None:
    """Linux: the training process gets SIGKILL when `vq-hf reproduce` dies, so a kill -9 leaves no orphan that
    would race the next invocation in the same run folder."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def execute(specs: list[RunSpec], commands: dict, jobs: int, env: dict, logs: pathlib.Path, lock_fd: int,
            say) -> dict:
    """Run the commands, at most ``jobs`` at once; returns {run name: exit code}."""
    pending = [s for s in specs if s.name in commands]
    running: dict = {}
    codes = {}
    logs.mkdir(parents=True, exist_ok=True)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                s = pending.pop(0)
                log_path = logs / (s.name.replace("/", "__") + ".log")
                log = open(log_path, "a")
                log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(commands[s.name])}\n")
                log.flush()
                resumed = "--resume_from_checkpoint" in commands[s.name]
                say(f"start {s.name}{' (resuming from its latest checkpoint)' if resumed else ''}; log {log_path}")
                proc = subprocess.Popen(commands[s.name], stdout=log, stderr=subprocess.STDOUT, env=env,
                                        pass_fds=(lock_fd,), preexec_fn=_die_with_parent)
                running[s.name] = (proc, log, time.monotonic(), log_path)
            time.sleep(0.2)
            for name, (proc, log, t0, log_path) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                log.close()
                del running[name]
                codes[name] = rc
                if rc == 0:
                    say(f"done  {name} in {time.monotonic() - t0:.0f} s")
                else:
                    say(f"FAILED {name} (exit code {rc}); see {log_path}")
    finally:
        for proc, log, _, _ in running.values():
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    return codes


# ---------------------------------------------------------------------------------------------- data
def prepare_data(table: Table, budget: dict, out: pathlib.Path, say) -> str | None:
    """The stand-in corpus for speech / handwriting, generated once into <output>/data; None for CIFAR."""
    from vq_hf import cli

    corpus = budget.get("corpus") or {}
    data_dir = out / "data"
    if table.task == "speech":
        n = int(corpus.get("utterances", 250))
        path = data_dir / f"synth_speech.{n}utts.seed0"
        if not (path / "corpus.json").is_file():  # written last: its presence means complete
            say(f"generating the stand-in speech corpus ({n} utterances) into {path}")
            rc = cli.main(["make-speech-corpus", str(path), "--utterances", str(n), "--seed", "0", "--overwrite",
                           "--jobs", str(max(1, min(4, os.cpu_count() or 1)))])
            if rc:
                raise ReproduceError(f"vq-hf make-speech-corpus {path} failed (exit code {rc})")
        return str(path)
    if table.task == "handwriting":
        n = int(corpus.get("lines", 400))
        path = data_dir / f"synth_handwriting.{n}lines.seed0.zip"
        if not path.is_file():  # written to a temporary name and renamed
            say(f"generating the stand-in handwriting corpus ({n} lines) into {path}")
            rc = cli.main(["make-handwriting-corpus", str(path), "--lines", str(n), "--seed", "0", "--quiet"])
            if rc:
                raise ReproduceError(f"vq-hf make-handwriting-corpus {path} failed (exit code {rc})")
        return str(path)
    return None


# ---------------------------------------------------------------------------------------------- aggregation
def metric_value(metrics: dict, column: Column) -> float | None:
    v = metrics.get(column.metric)
    if v is None and column.metric == "perplexity_sum":
        p = metrics.get("perplexity")
        v = sum(p) if isinstance(p, list) else p
    if v is None:
        return None
    return float(v) * column.scale


def summarize(values: list[float]) -> dict:
    """Median and range over seeds (the paper reports the median of five runs)."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values)}


def aggregate(table: Table, per_run: dict) -> list[dict]:
    """``per_run``: {(group, variant): [metrics dict of each finished seed]} → one row per (group, variant)."""
    rows = []
    for g in table.groups:
        for v in g.variants:
            if (g.folder, v) not in per_run:
                continue
            runs = per_run[(g.folder, v)]
            row = {"group": g.folder, "bottleneck": g.label, "variant": v, "model": LABELS[v], "seeds": len(runs)}
            for c in g.columns:
                vals = [x for x in (metric_value(m, c) for m in runs) if x is not None]
                s = summarize(vals)
                row.update({f"{c.key}_median": s["median"], f"{c.key}_min": s["min"], f"{c.key}_max": s["max"],
                            f"{c.key}_paper": c.paper.get(v)})
            rows.append(row)
    return rows


def ordering_verdicts(table: Table, rows: list[dict]) -> list[str]:
    """Per group: is the paper's main ordering (re-estimation better than vanilla VQ on the main metric and on
    perplexity) separated beyond the seed spread, i.e. do the min–max ranges not overlap?"""
    out = []
    for g in table.groups:
        by = {r["variant"]: r for r in rows if r["group"] == g.folder}
        prefix = f"{g.label}: " if g.label else ""
        if "vanilla" not in by or not any(v in by for v in REESTIMATION):
            out.append(f"{prefix}ordering not checked (needs vanilla and a re-estimation row)")
            continue
        for c in (g.columns[0], next(c for c in g.columns if c.key == "perplexity")):
            van = by["vanilla"]
            for v in REESTIMATION:
                if v not in by or by[v][f"{c.key}_median"] is None or van[f"{c.key}_median"] is None:
                    continue
                r = by[v]
                lo_r, hi_r, lo_v, hi_v = r[f"{c.key}_min"], r[f"{c.key}_max"], van[f"{c.key}_min"], van[f"{c.key}_max"]
                better = (hi_r < lo_v) if c.lower_is_better else (lo_r > hi_v)
                worse = (lo_r > hi_v) if c.lower_is_better else (hi_r < lo_v)
                if min(r["seeds"], van["seeds"]) < 2:
                    verdict = "one seed: no spread to compare against"
                elif better:
                    verdict = "paper's ordering holds beyond the seed spread"
                elif worse:
                    verdict = "REVERSED beyond the seed spread"
                else:
                    direction = "better" if ((r[f"{c.key}_median"] < van[f"{c.key}_median"]) == c.lower_is_better) \
                        else "worse"
                    verdict = f"not separated: the min–max ranges overlap (median {direction} than vanilla)"
                out.append(f"{prefix}{c.label}, {LABELS[v]} vs vanilla VQ: {verdict}")
    return out


def _fmt(x, digits) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown_table(table: Table, rows: list[dict]) -> str:
    """The paper's layout: one line per model, per metric "median [min–max]" and the paper's figure beside it."""
    cells = [(g, c) for g in table.groups for c in g.columns]
    header = ["Model", "seeds"]
    for g, c in cells:
        name = f"{g.label} {c.label}".strip()
        header += [f"{name}: median [min–max]", "paper"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    variants = list(dict.fromkeys(v for g in table.groups for v in g.variants))
    for v in variants:
        found = {r["group"]: r for r in rows if r["variant"] == v}
        if not found:
            continue
        seeds = "/".join(str(found[g.folder]["seeds"]) if g.folder in found else "0" for g in table.groups)
        line = [LABELS[v], seeds]
        for g, c in cells:
            r = found.get(g.folder)
            if r is None or r[f"{c.key}_median"] is None:
                line += ["–" if v not in g.variants or r is None else "N/A", _fmt(c.paper.get(v), c.digits)
                         if c.paper.get(v) is not None else ("N/A" if v == "no_bottleneck" else "–")]
                continue
            line += [f"{_fmt(r[c.key + '_median'], c.digits)} [{_fmt(r[c.key + '_min'], c.digits)}–"
                     f"{_fmt(r[c.key + '_max'], c.digits)}]", _fmt(c.paper.get(v), c.digits)]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def csv_text(table: Table, rows: list[dict]) -> str:
    keys = ["table", "group", "bottleneck", "variant", "model", "seeds"]
    cols = list(dict.fromkeys(c.key for g in table.groups for c in g.columns))
    for k in cols:
        keys += [f"{k}_median", f"{k}_min", f"{k}_max", f"{k}_paper"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys} | {"table": table.name})
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- output files
def write_atomic(path: pathlib.Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def read_history(run_dir: pathlib.Path) -> list[dict]:
    """logs/history.jsonl; a row repeated after a resume (same kind, step, weights) keeps its last copy."""
    path = run_dir / "logs" / "history.jsonl"
    rows = {}
    if not path.is_file():
        return []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        rows[(r.get("kind"), r.get("step"), r.get("weights"))] = r
    return list(rows.values())


def _curve(rows: list[dict], key: str, **match) -> dict:
    out = {}
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()) and r.get(key) is not None:
            val = r[key]
            out[r["step"]] = float(sum(val) / len(val)) if isinstance(val, list) and key == "norm_ratio" else \
                float(sum(val)) if isinstance(val, list) else float(val)
    return out


def write_figures(table: Table, specs: list[RunSpec], weights: str, out: pathlib.Path) -> list[pathlib.Path]:
    """Per group: main metric, perplexity and norm ratio against steps (median line, min–max band over seeds, all
    variants in one plot), and code-usage rank plots of the final evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for g in table.groups:
        main = g.columns[0]
        panels = [(main.metric, f"{main.label} ({weights} weights, eval)", "eval", main.scale, False),
                  ("perplexity", "perplexity, sum over codebooks (eval)", "eval", 1.0, False),
                  ("norm_ratio", "|encoder output| / |codeword| (train)", "train", 1.0, True)]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        drawn = False
        for i, v in enumerate(g.variants):
            runs = [s for s in specs if s.group == g.folder and s.variant == v and read_complete_results(s.run_dir)]
            if not runs:
                continue
            hist = [read_history(s.run_dir) for s in runs]
            color = f"C{i}"
            for ax, (key, title, kind, scale, log) in zip(axes, panels):
                match = {"kind": kind, "weights": weights} if kind == "eval" else {"kind": kind}
                curves = [_curve(h, key, **match) for h in hist]
                steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
                if not steps:
                    continue
                arr = np.array([[c[s] * scale for s in steps] for c in curves])
                ax.plot(steps, np.median(arr, 0), color=color, lw=1.2, label=LABELS[v])
                if len(curves) > 1:
                    ax.fill_between(steps, arr.min(0), arr.max(0), color=color, alpha=0.2, lw=0)
                if log:
                    ax.set_yscale("log")
                ax.set_title(title, fontsize=9)
                ax.set_xlabel("optimizer step")
                drawn = True
        if drawn:
            axes[0].legend(fontsize=7)
            for ax in axes:
                ax.grid(alpha=0.3)
            fig.suptitle(f"{table.title}{' — ' + g.label if g.label else ''}: median over seeds, band = min–max",
                         fontsize=10)
            fig.tight_layout()
            written.append(_save_figure(fig, out / "figures" / f"curves_{g.folder}.png"))
        plt.close(fig)

        quantized = [v for v in g.variants if v != "no_bottleneck"]
        fig, axes = plt.subplots(1, len(quantized), figsize=(3 * len(quantized), 3), squeeze=False)
        drawn = False
        for ax, v in zip(axes[0], quantized):
            for s in specs:
                if s.group != g.folder or s.variant != v:
                    continue
                res = read_complete_results(s.run_dir)
                counts = ((res or {}).get("code_counts") or {}).get(weights) or ((res or {}).get("code_counts") or {}).get("raw")
                if not counts:
                    continue
                c = np.asarray(counts, dtype=float).reshape(-1)  # all codebooks pooled
                freq = np.sort(c[c > 0])[::-1] / max(c.sum(), 1.0)
                ax.loglog(np.arange(1, len(freq) + 1), freq, lw=1,
                          label=f"seed {s.seed}: {len(freq)} of {c.size} used")
                drawn = True
            ax.set_title(LABELS[v], fontsize=8)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
            ax.set_xlabel("rank of the used code (all codebooks)", fontsize=7)
            ax.grid(alpha=0.3)
        if drawn:
            axes[0][0].set_ylabel("share of test-set codes")
            fig.suptitle(f"code usage at the end of training{' — ' + g.label if g.label else ''} "
                         f"(final evaluation, sorted)", fontsize=9)
            fig.tight_layout()
            written.append(_save_figure(fig, out / "figures" / f"code_usage_{g.folder}.png"))
        plt.close(fig)
    return written


def _save_figure(fig, path: pathlib.Path) -> pathlib.Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_atomic(path, buf.getvalue())
    return path


def write_outputs(table: Table, specs: list[RunSpec], settings: dict, out: pathlib.Path, weights: str,
                  failed: dict) -> list[dict]:
    per_run: dict = {}
    run_rows = []
    variants_seen, notes, missing = set(), [], []
    wall = 0.0
    for s in specs:
        res = read_complete_results(s.run_dir)
        if res is None:
            missing.append(s.name)
            continue
        metrics = res.get("metrics_polyak") if weights == "polyak" and res.get("metrics_polyak") else res["metrics"]
        per_run.setdefault((s.group, s.variant), []).append(metrics)
        variants_seen.add(res.get("data_variant", "?"))
        notes += [n for n in res.get("notes", []) if n not in notes]
        wall += float((res.get("training") or {}).get("wall_time_s") or 0.0)
        g = table.group(s.group)
        run_rows.append({"group": s.group, "variant": s.variant, "seed": s.seed,
                         "steps": (res.get("training") or {}).get("steps"),
                         **{c.key: metric_value(metrics, c) for c in g.columns}})
    rows = aggregate(table, per_run)
    write_atomic(out / "table.csv", csv_text(table, rows))
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for r in run_rows for k in r))
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(run_rows)
    write_atomic(out / "runs.csv", buf.getvalue())
    figures = write_figures(table, specs, weights, out) if run_rows else []

    budget = settings["budget"]
    lines = [f"# {table.title}", "",
             f"`{settings['command']}`", "",
             f"- budget **{budget}** (`{settings['budget_file']}`); {settings['seeds']} seed(s) per row "
             f"(training.seed = 0…{settings['seeds'] - 1}); metrics of the **{weights}** weights on the run's "
             "evaluation split, median [min–max] over seeds",
             f"- data: {'; '.join(sorted(variants_seen)) or 'no finished run'}",
             f"- comparability: {comparability(table, budget, variants_seen, notes)}",
             f"- launcher `{settings['launcher']}`, OMP_NUM_THREADS={settings['threads']}, "
             f"{settings['jobs']} run(s) at a time; training time summed over runs: {wall / 60:.1f} min", "",
             markdown_table(table, rows), "",
             f"Paper figures ({table.paper_note}).", "", "## Ordering (min–max ranges over seeds)", ""]
    lines += [f"- {v}" for v in ordering_verdicts(table, rows)]
    if missing or failed:
        lines += ["", "## Incomplete", ""]
        lines += [f"- {name}: {'failed, exit code ' + str(failed[name]) if name in failed else 'not finished'}"
                  for name in missing]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{p.stem}](figures/{p.name})" for p in figures]
    lines += ["", f"Per-run values: `runs.csv`; runs in `runs/`; logs in `logs/`.", ""]
    write_atomic(out / "report.md", "\n".join(lines))
    return rows


def comparability(table: Table, budget: str, variants_seen: set, notes: list) -> str:
    parts = []
    if budget != "gpu":
        parts.append(f"the {budget} budget shrinks models and schedules, so absolute values are not comparable "
                     "with the paper's; only the ordering of the rows is")
    else:
        parts.append("the paper's schedules")
    parts += notes
    if table.task == "cifar10" and not any(n.startswith("images are JPEG") for n in notes) and variants_seen:
        parts.append("lossless CIFAR-10 as the paper")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vq-hf reproduce",
        description="Run every row of one of the paper's tables for several seeds through training/run_vq.py and "
                    "write report.md, table.csv, runs.csv and figures/ (median and min–max over seeds beside the "
                    "paper's figures). Re-running the same command reuses finished runs and resumes killed ones "
                    "from their latest checkpoint. See docs/reproduction.md.")
    p.add_argument("table", choices=sorted(TABLES), help="table1 (speech), table2 (handwriting), table3 (CIFAR-10)")
    p.add_argument("--budget", required=True,
                   help="smoke | cpu | gpu: recipe overrides in training/configs/reproduce/<budget>.yaml")
    p.add_argument("--seeds", type=int, default=None, help="seeds per row, 0…N-1 (default: the budget's)")
    p.add_argument("--output", required=True, help="folder for runs/, data/, logs/, figures/, report.md, table.csv")
    p.add_argument("--dataset_name", default=None,
                   help="data.dataset_name for every run (WSJ Kaldi dir, ScribbleLens zip, CIFAR-10 parquet folder); "
                        "default: table1/2 a stand-in corpus generated once into <output>/data, table3 the budget's")
    p.add_argument("--variants", default=None,
                   help="comma-separated rows to run (e.g. vanilla,bn_reest_cblr; cifar10_5x1024/vanilla for one "
                        "bottleneck of table3); default all")
    p.add_argument("--launcher", default="python",
                   help='how to start run_vq.py: "python" (this interpreter) or e.g. "accelerate launch '
                        '--num_processes 8"')
    p.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (default 1)")
    p.add_argument("--weights", choices=("polyak", "raw"), default="polyak",
                   help="report the Polyak-averaged weights (as the paper) or the raw ones")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="section.key=value",
                   help="extra recipe override for every run, after the budget's (repeatable), e.g. "
                        "schedule.max_steps=12000")
    p.add_argument("--script", default=None, help="path of run_vq.py (default: training/run_vq.py of the checkout)")
    p.add_argument("--dry_run", action="store_true", help="print the run_vq.py commands and exit")
    return p


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = "vq-hf reproduce " + shlex.join(argv)
    try:
        return reproduce(args)
    except ReproduceError as e:
        print(f"vq-hf reproduce: {e}", file=sys.stderr)
        return 2


def reproduce(args) -> int:
    import fcntl

    def say(msg: str) -> None:
        print(f"[reproduce {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    table = TABLES[args.table]
    script = find_script(args.script)
    configs = script.parent / "configs"
    budget = load_budget(configs, args.budget, table.name)
    seeds = args.seeds if args.seeds is not None else int(budget.get("seeds", 1))
    if seeds < 1:
        raise ReproduceError(f"--seeds {seeds}: need at least 1")
    if args.jobs < 1:
        raise ReproduceError(f"--jobs {args.jobs}: need at least 1")
    launcher = shlex.split(args.launcher)
    if not launcher:
        raise ReproduceError("--launcher: empty")
    if launcher == ["python"]:
        launcher = [sys.executable]
    report_to = budget.get("report_to", "none")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    out = pathlib.Path(args.output).resolve()
    user_sets = _parse_sets(args.sets)
    dataset_name = args.dataset_name
    if dataset_name is not None and pathlib.Path(dataset_name).exists():
        dataset_name = str(pathlib.Path(dataset_name).resolve())  # runs record where their data was

    if args.dry_run:
        if dataset_name is None and table.task != "cifar10":
            dataset_name = str(out / "data" / ("<stand-in corpus generated on the first real run>"))
        specs = plan_runs(table, configs, budget, seeds, out, variants, dataset_name, user_sets)
        for s in specs:
            print(shlex.join(run_command(s, launcher, script, report_to)))
        return 0

    try:
        out.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(out / ".reproduce.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ReproduceError(f"--output {out}: cannot write there ({e.strerror or e})") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"{out} is in use by another `vq-hf reproduce` or its training processes; waiting for them to exit")
        fcntl.flock(lock_fd, fcntl.LOCK_EX)

    if dataset_name is None:
        dataset_name = prepare_data(table, budget, out, say)
    specs = plan_runs(table, configs, budget, seeds, out, variants, dataset_name, user_sets)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // args.jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    settings = {"command": args.command_line,
                "budget": args.budget, "budget_file": os.path.relpath(budget["path"], script.parent.parent),
                "seeds": seeds, "launcher": args.launcher, "threads": threads, "jobs": args.jobs}

    commands, reused = {}, 0
    for s in specs:
        recipe = expected_recipe(s)
        if read_complete_results(s.run_dir) is not None:
            check_same_settings(s, recipe)
            reused += 1
            continue
        commands[s.name] = run_command(s, launcher, script, report_to)
    say(f"{table.name}, budget {args.budget}: {len(specs)} runs ({reused} already finished, "
        f"{len(commands)} to train); OMP_NUM_THREADS={threads}, {args.jobs} at a time")
    codes = execute(specs, commands, args.jobs, env, out / "logs", lock_fd, say)
    failed = {k: v for k, v in codes.items() if v != 0}
    write_outputs(table, specs, settings, out, args.weights, failed)
    say(f"wrote {out / 'report.md'}, {out / 'table.csv'}")
    if failed:
        print(f"vq-hf reproduce: {len(failed)} of {len(specs)} runs failed: {', '.join(sorted(failed))}; "
              f"the report lists them; re-run the command to retry", file=sys.stderr)
        return 1
    return 0
