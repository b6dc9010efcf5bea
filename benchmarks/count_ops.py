"""Count the kernel-launching operators and host syncs of the hot paths, on CPU, as they would run on CUDA.

On a GPU, small problems are bound by how many kernels are dispatched (3–5 µs each in eager PyTorch), not
by arithmetic, and every host synchronisation stalls Python until the GPU queue drains. This counts, with
``benchmarks/profiling.py`` (a TorchDispatchMode: the ATen operators the code calls, forward and backward, after
decomposition; views, metadata changes and bare allocations excluded), for: the quantizer's forward +
backward (vanilla / EMA × batch norm), k-means++ seeding (per centre and for K = 2,048 centres, with the
default batched rounds and with one centre per round) and one reservoir insert.
Multiply the op count by the per-launch cost for a dispatch floor.

CUDA-like configuration: on CPU, ``vq_hf.quantization.search`` caps the distance block at
``CPU_SEARCH_BLOCK_MB`` (2 MiB), which splits the search into many chunks, each a few more operators;
on CUDA the budget is ``DEFAULT_SEARCH_MEMORY_MB`` (256 MiB) and the search here is one chunk. The cap is
raised to the CUDA budget while counting (and restored).

The CUDA default is the fused Triton search (``search_backend="auto"``), which with the EMA rule also
accumulates the statistics. Its rows are counted in a subprocess running the kernel through Triton's
interpreter (``TRITON_INTERPRET=1`` must precede the import of Triton): ATen operators as above, plus one
launch per kernel call (the interpreter's own numpy work is not counted).

    python benchmarks/count_ops.py [--verbose] [--json counts.json] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile

import torch

from profiling import count_kernel_ops
from vq_hf.quantization import search


@contextlib.contextmanager
def cuda_like_search_budget():
    """Raise the CPU distance-block cap to the CUDA budget (one search chunk, as on a GPU); yields a note."""
    cap = getattr(search, "CPU_SEARCH_BLOCK_MB", None)
    budget = getattr(search, "DEFAULT_SEARCH_MEMORY_MB", 256)
    if cap is None:
        yield ("vq_hf.quantization.search.CPU_SEARCH_BLOCK_MB not found: counted with whatever search block "
               "search.py uses on CPU")
        return
    search.CPU_SEARCH_BLOCK_MB = budget
    try:
        yield (f"CUDA-like configuration: vq_hf.quantization.search.CPU_SEARCH_BLOCK_MB raised from {cap:g} to "
               f"{budget:g} MiB (the CUDA budget) while counting, so the nearest-code search runs in one chunk as "
               "on a GPU.")
    finally:
        search.CPU_SEARCH_BLOCK_MB = cap


def _quantizer_step(quantizer_type: str, batch_norm: bool, check_finite: bool, n: int, backend: str = "torch"):
    """A warmed-up training step (forward + backward) of a 64-dim, K=512 quantizer on n vectors."""
    from vq_hf.quantization import VectorQuantizer

    vq = VectorQuantizer(64, 512, quantizer_type=quantizer_type, batch_norm=batch_norm,
                         check_finite=check_finite, search_backend=backend).train()
    x = torch.randn(n, 64, requires_grad=True)
    probe = torch.randn(n, 64)

    def step():
        x.grad = None
        vq.zero_grad(set_to_none=True)
        out = vq(x)
        ((out.quantized * probe).sum() + out.loss).backward()

    # The first forwards read the step counters once (host mirrors) and allocate lazily: not a normal step.
    step()
    step()
    return step


def _sync_list(syncs) -> list[dict]:
    return [{"op": s.op, "location": s.location, "reason": s.reason, "backward_node": s.backward_node} for s in syncs]


@contextlib.contextmanager
def counted_kernel_launches():
    """Count the fused search's kernel launches, each run with the dispatch mode switched off (the
    interpreter's tensor work is not what a GPU would launch). Yields a one-item list: the count."""
    from torch.utils._python_dispatch import _disable_current_modes

    from vq_hf.quantization import fused_search

    real = fused_search._JIT_KERNEL
    launches = [0]

    class _Counted:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launches[0] += 1
                with _disable_current_modes():
                    return real[grid](*args, **kwargs)

            return launch

    fused_search._JIT_KERNEL = _Counted()
    try:
        yield launches
    finally:
        fused_search._JIT_KERNEL = real


def count_fused_paths(quick: bool = False) -> list[dict]:
    """The quantizer rows with the fused search (must run under TRITON_INTERPRET=1)."""
    n_vq = 512 if quick else 8192
    rows = []
    for qt in ("vanilla", "ema"):
        for bn in (False, True):
            step = _quantizer_step(qt, bn, True, n_vq, backend="triton")
            with counted_kernel_launches() as launches:
                counted = count_kernel_ops(step)
            rows.append({
                "path": f"quantizer forward+backward ({qt}, batch_norm={bn}), fused search (the CUDA default)",
                "kernel_ops": counted.kernel_ops + launches[0],
                "host_syncs": len(counted.host_syncs),
                "ops": {**counted.by_op, "triton kernel": launches[0]},
                "syncs": _sync_list(counted.host_syncs),
            })
    return rows


def _fused_rows_in_subprocess(quick: bool) -> tuple[list[dict], str]:
    """Run :func:`count_fused_paths` where Triton's interpreter is on; ([], reason) when it cannot run."""
    if importlib.util.find_spec("triton") is None:
        return [], "fused-search rows not counted: Triton is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "fused.json")
        cmd = [sys.executable, __file__, "--fused-only", "--json", out] + (["--quick"] if quick else [])
        proc = subprocess.run(cmd, env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True)
        if proc.returncode != 0:
            return [], f"fused-search rows not counted: the interpreter run failed:\n{proc.stderr[-2000:]}"
        with open(out) as fh:
            return json.load(fh)["rows"], "fused-search rows: counted under Triton's interpreter, one op per launch"


SEEDING_K = 2048  # the k-means target: 20,480 × 64 → 2,048


def _seeding_rows(points: torch.Tensor, gen: torch.Generator) -> list[dict]:
    """k-means++ seeding of K = SEEDING_K centres: ops per centre and in all, by default (batched rounds)
    and with ``centers_per_round=1`` (one centre per round: its count is 65 centres' plus the per-centre
    difference of 65 and 33 centres times the remaining centres, every round being alike)."""
    from vq_hf.quantization.kmeans import default_centers_per_round, kmeans_plusplus, seeding_rounds

    per_round = default_centers_per_round(SEEDING_K, points.shape[0], 2 + int(math.log(SEEDING_K)))
    rounds = len(seeding_rounds(SEEDING_K, per_round))
    batched = count_kernel_ops(lambda: kmeans_plusplus(points, SEEDING_K, generator=gen))
    few = count_kernel_ops(lambda: kmeans_plusplus(points, 33, generator=gen, centers_per_round=1))
    many = count_kernel_ops(lambda: kmeans_plusplus(points, 65, generator=gen, centers_per_round=1))
    greedy_per_centre = (many.kernel_ops - few.kernel_ops) / 32
    greedy_total = many.kernel_ops + greedy_per_centre * (SEEDING_K - 65)
    default = f"default: ≤ {per_round} centres per round, {rounds} rounds for K={SEEDING_K:,}"
    greedy = f"centers_per_round=1: {SEEDING_K - 1:,} rounds"
    return [{
        "path": "k-means++ seeding, per centre",
        "kernel_ops": batched.kernel_ops / SEEDING_K,
        "host_syncs": len(batched.host_syncs) / SEEDING_K,
        "host_syncs_total_65_centres": len(many.host_syncs),
        "centers_per_round": per_round,
        "rounds": rounds,
        "ops": batched.by_op,
        "syncs": _sync_list(batched.host_syncs) + _sync_list(many.host_syncs),
    }, {
        "path": "k-means++ seeding, per centre, centers_per_round=1",
        "kernel_ops": greedy_per_centre,
        "host_syncs": (len(many.host_syncs) - len(few.host_syncs)) / 32,
        "ops": many.by_op,
        "syncs": [],
    }, {
        "path": f"k-means++ seeding, K={SEEDING_K:,} ({default})",
        "kernel_ops": batched.kernel_ops,
        "host_syncs": len(batched.host_syncs),
        "ops": batched.by_op,
        "syncs": [],
    }, {
        "path": f"k-means++ seeding, K={SEEDING_K:,} ({greedy})",
        "kernel_ops": greedy_total,
        "host_syncs": len(many.host_syncs),
        "ops": many.by_op,
        "syncs": [],
    }]


def count_paths(quick: bool = False) -> list[dict]:
    """One dict per path: name, kernel_ops, host_syncs, ops (by name), syncs (details)."""
    from vq_hf.quantization import Reservoir

    n_vq, n_points, res_size, res_batch = (512, 1024, 256, 1024) if quick else (8192, 20480, 20480, 65536)
    rows = []
    for qt in ("vanilla", "ema"):
        for bn in (False, True):
            counted = count_kernel_ops(_quantizer_step(qt, bn, True, n_vq))
            unchecked = count_kernel_ops(_quantizer_step(qt, bn, False, n_vq))
            rows.append({
                "path": f"quantizer forward+backward ({qt}, batch_norm={bn})",
                "kernel_ops": counted.kernel_ops,
                "host_syncs": len(counted.host_syncs),
                "host_syncs_check_finite_false": len(unchecked.host_syncs),
                "ops": counted.by_op,
                "syncs": _sync_list(counted.host_syncs) + _sync_list(unchecked.host_syncs),
            })

    gen = torch.Generator().manual_seed(0)
    rows += _seeding_rows(torch.randn(max(n_points, 2 * SEEDING_K), 64), gen)

    res = Reservoir(1, res_size, 64)
    batch = torch.randn(1, res_batch, 64)
    res.insert(batch[:, :res_size], generator=gen)  # full reservoir: the insert below replaces by draw
    counted = count_kernel_ops(lambda: res.insert(batch, generator=gen))
    rows.append({
        "path": f"reservoir insert ({res_batch:,} → {res_size:,} × 64)",
        "kernel_ops": counted.kernel_ops,
        "host_syncs": len(counted.host_syncs),
        "ops": counted.by_op,
        "syncs": _sync_list(counted.host_syncs),
    })
    return rows


def _syncs_cell(row: dict) -> str:
    if "host_syncs_check_finite_false" in row:
        return f"{row['host_syncs']:g} ({row['host_syncs_check_finite_false']:g} with check_finite=False)"
    return f"{row['host_syncs']:g}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list the operators and the host syncs of each path")
    parser.add_argument("--json", metavar="PATH", help="also write the counts (and the per-op breakdown) to PATH")
    parser.add_argument("--quick", action="store_true",
                        help="small inputs (same counts: they do not depend on sizes in the CUDA-like configuration)")
    parser.add_argument("--fused-only", action="store_true",
                        help="only the fused-search rows (internal: run under TRITON_INTERPRET=1)")
    args = parser.parse_args(argv)

    if args.fused_only:
        with cuda_like_search_budget() as note:
            rows = count_fused_paths(quick=args.quick)
    else:
        with cuda_like_search_budget() as note:
            rows = count_paths(quick=args.quick)
        fused_rows, fused_note = _fused_rows_in_subprocess(args.quick)
        n_quantizer = sum(row["path"].startswith("quantizer") for row in rows)
        rows[n_quantizer:n_quantizer] = fused_rows  # next to the torch-path quantizer rows
        note = f"{note} {fused_note}."

    print(note)
    print("Quantizer rows: default check_finite=True, whose one host sync per forward is the NaN/Inf check.\n")
    print("| path | kernel-launching ops | host syncs | dispatch floor at 3–5 µs per op |\n|---|---|---|---|")
    for row in rows:
        count = row["kernel_ops"]
        print(f"| {row['path']} | {count:g} | {_syncs_cell(row)} | {count * 3e-3:.2f}–{count * 5e-3:.2f} ms |")
        if args.verbose:
            print("   ", row["ops"])
            for s in row["syncs"]:
                print(f"    sync: {s['op']} at {s['location']} — {s['reason']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"note": note, "torch": torch.__version__, "rows": rows}, fh, indent=1)
        print(f"\nwrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
