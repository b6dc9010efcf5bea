"""Shared helpers for the benchmark scripts: machine description, timing, peak memory, tables.

Timing: on CUDA, CUDA events around each call (after warm-up, device synchronised); on CPU,
``time.perf_counter`` around each call. The statistic reported is the median over the repeats.

Peak memory of one call, beyond what was allocated before it (inputs, parameters):
on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on CPU the allocation and
free events of ``torch.profiler`` (profile_memory=True), replayed in time order — the CPU allocator keeps no
statistics of its own, and tracemalloc does not see torch's allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch


def machine_info(device: str) -> dict:
    """CPU model, cores, torch / CUDA / GPU versions: printed at the top of every result file."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "device": device,
        "cpu": cpu,
        "cpu_cores_visible": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_at_start": _load_average(),
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["tf32_matmul_default"] = torch.backends.cuda.matmul.allow_tf32
    from importlib import metadata

    for key, dist in (("triton", "triton"), ("vector_quantize_pytorch", "vector-quantize-pytorch"),
                      ("sklearn", "scikit-learn"), ("transformers", "transformers")):
        try:
            info[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[key] = "not installed"
    return info


def _load_average() -> Optional[list]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], device: str, warmup: int, repeats: int) -> dict:
    """Median / min / max milliseconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    if device == "cuda":
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "repeats": repeats}


def peak_memory_mb(fn: Callable[[], Any], device: str) -> float:
    """Peak MiB allocated during one ``fn()`` call on top of what was allocated before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20


@dataclass
class Row:
    """One measured (or failed) configuration of one benchmark."""

    bench: str
    impl: str
    config: dict
    median_ms: Optional[float] = None
    min_ms: Optional[float] = None
    repeats: Optional[int] = None
    peak_mb: Optional[float] = None
    extra: dict = field(default_factory=dict)
    error: Optional[str] = None

    def to_json(self) -> dict:
        return asdict(self)


def measure(bench: str, impl: str, config: dict, make: Callable[[], Callable[[], Any]], device: str,
            warmup: int, repeats: int, memory: bool = True) -> Row:
    """Build the callable with ``make()`` (setup is not timed), time it, and measure its peak memory.

    Any failure becomes a row with ``error`` set and the traceback printed: nothing is dropped silently.
    """
    row = Row(bench, impl, config)
    try:
        fn = make()
        stats = time_fn(fn, device, warmup, repeats)
        row.median_ms, row.min_ms, row.repeats = stats["median_ms"], stats["min_ms"], stats["repeats"]
        if memory:
            row.peak_mb = peak_memory_mb(fn, device)
    except Exception as err:  # noqa: BLE001 - reported in the table and on stderr
        traceback.print_exc()
        row.error = f"{type(err).__name__}: {err}".splitlines()[0][:200]
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()
    print(f"  {bench:<14} {impl:<44} {_fmt_ms(row.median_ms):>10} ms  "
          f"{'' if row.peak_mb is None else f'{row.peak_mb:8.1f} MiB'} {row.error or ''}", flush=True)
    return row


def measure_interleaved(bench: str, entries: list[tuple[str, dict, Callable[[], Callable[[], Any]]]],
                        device: str, warmup: int, repeats: int, memory: bool = True) -> list[Row]:
    """Like :func:`measure` for several implementations, timed round-robin: repeat r runs every
    implementation once. On a shared machine the load drifts during a run; interleaving exposes every
    implementation to the same drift, so the ratios between rows stay meaningful."""
    rows, fns = [], []
    for impl, config, make in entries:
        row = Row(bench, impl, config)
        try:
            fn = make()
            for _ in range(warmup):
                fn()
            sync(device)
            fns.append(fn)
        except Exception as err:  # noqa: BLE001 - reported in the table and on stderr
            traceback.print_exc()
            row.error = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            fns.append(None)
        rows.append(row)
    times: list[list[float]] = [[] for _ in entries]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if fn is None:
                continue
            try:
                times[i].append(time_fn(fn, device, 0, 1)["median_ms"])
            except Exception as err:  # noqa: BLE001
                traceback.print_exc()
                rows[i].error = f"{type(err).__name__}: {err}".splitlines()[0][:200]
                fns[i] = None
    for i, (row, fn) in enumerate(zip(rows, fns)):
        if fn is not None and times[i]:
            row.median_ms, row.min_ms, row.repeats = statistics.median(times[i]), min(times[i]), len(times[i])
            if memory:
                try:
                    row.peak_mb = peak_memory_mb(fn, device)
                except Exception as err:  # noqa: BLE001
                    row.extra["peak_memory_error"] = f"{type(err).__name__}: {err}"[:200]
        print(f"  {bench:<14} {row.impl:<60} {_fmt_ms(row.median_ms):>10} ms (min {_fmt_ms(row.min_ms)})  "
              f"{'' if row.peak_mb is None else f'{row.peak_mb:8.1f} MiB'} {row.error or ''}", flush=True)
    fns.clear()
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def _fmt_ms(v: Optional[float]) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """How many times faster a is than b (b / a)."""
    if a is None or b is None or a <= 0:
        return None
    return b / a


def write_results(out_dir: str, device: str, info: dict, rows: list[Row], tables_md: str) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, f"{device}.json")
    md_path = os.path.join(out_dir, f"{device}.md")
    with open(json_path, "w") as fh:
        json.dump({"machine": info, "rows": [r.to_json() for r in rows]}, fh, indent=1)
    with open(md_path, "w") as fh:
        fh.write(tables_md)
    return json_path, md_path


def machine_md(info: dict) -> str:
    keys = ["device", "gpu", "cuda", "cpu", "cpu_cores_visible", "torch_threads", "python", "torch", "triton",
            "vector_quantize_pytorch", "sklearn", "transformers", "load_average_at_start", "time_utc"]
    return "\n".join(f"- {k}: {info[k]}" for k in keys if k in info)


def parse_timing_args(argv, description: str, cuda_repeats: int) -> tuple[str, int, int]:
    """``--device --warmup --repeats`` of a benchmark script; CPU defaults are short (1 warm-up, 5 repeats)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    cpu = args.device == "cpu"
    warmup = args.warmup if args.warmup is not None else (1 if cpu else 10)
    repeats = args.repeats if args.repeats is not None else (5 if cpu else cuda_repeats)
    return args.device, warmup, repeats
