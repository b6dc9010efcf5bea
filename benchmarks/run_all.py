"""Run every benchmark side by side in one process and write a markdown table + JSON.

    python benchmarks/run_all.py --device cpu  --out benchmarks/results/
    python benchmarks/run_all.py --device cuda --out benchmarks/results/

Writes ``<out>/<device>.md`` and ``<out>/<device>.json`` (machine description, every row, every error).
``--only vq,reestimation,cifar`` picks benchmarks; ``--quick`` cuts repeats (smoke run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, machine_info, machine_md, ratio, write_results  # noqa: E402

VQP_DEFAULT = "vector-quantize-pytorch 1.32 EMA (rotation trick, default)"
PLAIN = "plain torch fp32 (GEMM+argmin+gather)"

# The targets: (device, bench, config subset, impl, kind, bound, text). kind "ms" = at most bound
# milliseconds; "x_vs_vqp" = at least bound times faster than vector-quantize-pytorch's default layer.
TARGETS = [
    ("cuda", "vq_fwd_bwd", dict(N=65536, K=4096, codebooks=1), "ours vanilla", "ms", 0.4,
     "VQ fwd+bwd N=65,536 d=64 K=4,096 ≤ 0.4 ms (H100)"),
    ("cuda", "vq_fwd_bwd", dict(N=262144, K=4096, codebooks=1), "ours vanilla", "ms", 1.5,
     "VQ fwd+bwd N=262,144 d=64 K=4,096 ≤ 1.5 ms (H100)"),
    ("cuda", "vq_fwd_bwd", dict(N=65536, K=512, codebooks=1), "ours vanilla", "ms", 0.15,
     "VQ fwd+bwd N=65,536 d=64 K=512 ≤ 0.15 ms (H100)"),
    ("cpu", "vq_fwd_bwd", dict(N=8192, K=4096, codebooks=1), "ours vanilla", "x_vs_vqp", 6.0,
     "CPU N=8,192 d=64 K=4,096: ≥ 6× faster than vector-quantize-pytorch (vanilla)"),
    ("cpu", "vq_fwd_bwd", dict(N=8192, K=4096, codebooks=1), "ours ema", "x_vs_vqp", 6.0,
     "CPU N=8,192 d=64 K=4,096: ≥ 6× faster than vector-quantize-pytorch (EMA)"),
    ("cuda", "kmeans", dict(N=20480, K=2048), "ours k-means++ + Lloyd (torch)", "ms", 50.0,
     "k-means++ + Lloyd 20,480×64 → 2,048 ≤ 50 ms (H100)"),
    ("cuda", "kmeans", dict(N=65536, K=4096), "ours k-means++ + Lloyd (torch)", "ms", 150.0,
     "k-means++ + Lloyd 65,536×64 → 4,096 ≤ 150 ms (H100)"),
    ("cuda", "reservoir", dict(), "ours vectorised insert", "ms", 1.0,
     "reservoir insert 65,536 → 20,480×64 ≤ 1 ms, no host sync"),
    ("cuda", "cifar_step", dict(), "ours VQVAEModel cifar10 8×128", "steps_per_s", 180.0,
     "CIFAR 8×128 step, bf16, batch 128 ≥ 180 steps/s (H100)"),
]


def _find(rows, bench, impl, cfg):
    for r in rows:
        if r.bench == bench and r.impl == impl and all(r.config.get(k) == v for k, v in cfg.items()):
            return r
    return None


def _cfg_str(cfg: dict) -> str:
    return ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in cfg.items())


def _ms(v):
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 1 else (f"{v:.2f}" if v < 100 else f"{v:,.0f}")


def _x(v):
    return "—" if v is None else f"{v:.2f}×"


def _mb(v):
    return "—" if v is None else f"{v:,.1f}"


def render(device: str, info: dict, rows: list[Row]) -> str:
    out = [f"# Benchmark results — {device}", "", machine_md(info), ""]
    if device == "cpu":
        out += ["CPU numbers come from a shared machine with other processes running: compare the rows of one "
                "table (measured side by side in one process), not absolute times across runs.", ""]
    configs = []
    for r in rows:
        key = (r.bench, tuple(sorted(r.config.items())))
        if key not in configs:
            configs.append(key)
    titles = {"vq_fwd_bwd": "VQ layer forward + backward", "search": "Nearest-code search alone",
              "kmeans": "k-means++ + Lloyd", "reservoir": "Reservoir insert", "cifar_step": "CIFAR-10 training step"}
    for bench, cfg_items in configs:
        cfg = dict(cfg_items)
        group = [r for r in rows if r.bench == bench and tuple(sorted(r.config.items())) == cfg_items]
        out.append(f"## {titles.get(bench, bench)} — {_cfg_str(group[0].config)}")
        out.append("")
        if bench in ("vq_fwd_bwd", "search"):
            vqp = _find(rows, "vq_fwd_bwd", VQP_DEFAULT, cfg)
            plain = _find(rows, "vq_fwd_bwd", PLAIN, cfg)
            out += ["| implementation | median ms | min ms | peak MiB | × faster than vector-quantize-pytorch | "
                    "× faster than plain torch |", "|---|---|---|---|---|---|"]
            for r in group:
                out.append(f"| {r.impl} | {_ms(r.median_ms)} | {_ms(r.min_ms)} | {_mb(r.peak_mb)} | "
                           f"{_x(ratio(r.median_ms, vqp.median_ms if vqp else None))} | "
                           f"{_x(ratio(r.median_ms, plain.median_ms if plain else None))} |"
                           + (f" error: {r.error}" if r.error else ""))
        elif bench == "kmeans":
            # Seeding rows (inertia = the seeds' potential) compare with scikit-learn's seeding alone.
            sk = {seeding: next((r for r in group if r.impl.startswith("scikit-learn")
                                 and ("seeding only" in r.impl) == seeding), None) for seeding in (False, True)}
            out += ["| implementation | median ms | Lloyd iterations | inertia | inertia / scikit-learn's | "
                    "× faster than scikit-learn |", "|---|---|---|---|---|---|"]
            for r in group:
                inertia = r.extra.get("inertia_recomputed", r.extra.get("inertia"))
                rel = r.extra.get("inertia_vs_sklearn")
                ref = sk["seeding only" in r.impl]
                out.append(f"| {r.impl} | {_ms(r.median_ms)} | {r.extra.get('iterations', '—')} | "
                           f"{'—' if inertia is None else f'{inertia:,.0f}'} | "
                           f"{'—' if rel is None else f'{rel:.4f}'} | "
                           f"{_x(ratio(r.median_ms, ref.median_ms if ref else None))} |"
                           + (f" error: {r.error}" if r.error else ""))
        elif bench == "reservoir":
            loop = next((r for r in group if "loop" in r.impl), None)
            out += ["| implementation | median ms | peak MiB | × faster than the Python loop | host syncs |",
                    "|---|---|---|---|---|"]
            for r in group:
                out.append(f"| {r.impl} | {_ms(r.median_ms)} | {_mb(r.peak_mb)} | "
                           f"{_x(ratio(r.median_ms, loop.median_ms if loop else None))} | "
                           f"{r.extra.get('host_syncs', 'not measured (CPU)' if device == 'cpu' else '—')} |"
                           + (f" error: {r.error}" if r.error else ""))
        elif bench == "cifar_step":
            base = next((r for r in group if "vector-quantize-pytorch" in r.impl), None)
            out += ["| implementation | median ms / step | steps/s | quantizer share of the step | peak MiB | "
                    "× vs vector-quantize-pytorch model |", "|---|---|---|---|---|---|"]
            for r in group:
                sps = None if r.median_ms is None else 1e3 / r.median_ms
                share = r.extra.get("quantizer_share")
                out.append(f"| {r.impl} | {_ms(r.median_ms)} | {'—' if sps is None else f'{sps:.1f}'} | "
                           f"{'—' if share is None else f'{100 * share:.1f} %'} | {_mb(r.peak_mb)} | "
                           f"{_x(ratio(r.median_ms, base.median_ms if base else None))} |"
                           + (f" error: {r.error}" if r.error else ""))
        out.append("")
    out += ["## Targets (issue #6)", "", "| target | measured | met? |", "|---|---|---|"]
    for dev, bench, cfg, impl, kind, bound, text in TARGETS:
        if dev != device:
            continue
        r = _find(rows, bench, impl, cfg)
        if r is None or r.median_ms is None:
            out.append(f"| {text} | not measured{'' if r is None else f' ({r.error})'} | — |")
            continue
        if kind == "ms":
            val, ok = f"{_ms(r.median_ms)} ms", r.median_ms <= bound
        elif kind == "steps_per_s":
            sps = 1e3 / r.median_ms
            val, ok = f"{sps:.1f} steps/s", sps >= bound
        else:
            vqp = _find(rows, "vq_fwd_bwd", VQP_DEFAULT, cfg)
            x = ratio(r.median_ms, vqp.median_ms if vqp else None)
            val, ok = f"{_x(x)} ({_ms(r.median_ms)} ms vs {_ms(vqp.median_ms if vqp else None)} ms)", (x or 0) >= bound
        out.append(f"| {text} | {val} | {'yes' if ok else 'NO'} |")
    errors = [r for r in rows if r.error]
    out += ["", f"Rows that failed: {len(errors)}" + ("" if not errors else ":")]
    out += [f"- {r.bench} / {r.impl} / {_cfg_str(r.config)}: {r.error}" for r in errors]
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="vq-hf benchmarks: speed and memory side by side")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--only", default="vq,reestimation,cifar",
                        help="comma-separated subset of: vq, reestimation, cifar")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run, not numbers to quote")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = set(args.only.split(",")) - {"vq", "reestimation", "cifar"}
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {sorted(unknown)}")
    cpu = args.device == "cpu"
    warmup = 1 if cpu else 10
    repeats = (2 if cpu else 10) if args.quick else (5 if cpu else 50)

    info = machine_info(args.device)
    print(machine_md(info), flush=True)
    t0 = time.perf_counter()
    rows: list[Row] = []
    if "vq" in args.only:
        import bench_vq_layer

        rows += bench_vq_layer.run(args.device, warmup, repeats)
    if "reestimation" in args.only:
        import bench_reestimation

        rows += bench_reestimation.run(args.device, repeats)
    if "cifar" in args.only:
        import bench_cifar_step

        rows += bench_cifar_step.run(args.device, warmup, repeats if cpu else 100)
    info["total_seconds"] = round(time.perf_counter() - t0, 1)
    json_path, md_path = write_results(args.out, args.device, info, rows, render(args.device, info, rows))
    print(f"wrote {md_path} and {json_path} ({info['total_seconds']} s)")


if __name__ == "__main__":
    main()
