"""Re-estimation costs: k-means++ + Lloyd (ours vs scikit-learn's k-means++ on the same data: time and
inertia) and the reservoir insert (ours, vectorised, vs the reference's per-row Python loop).

Data for k-means: a Gaussian mixture (2·k centres in d dimensions, unit noise), a stand-in for a reservoir
of encoder outputs after batch norm. Both k-means run the same number of Lloyd iterations (``max_iters``,
tol 1e-4, one restart); sklearn gets ``algorithm="lloyd"`` and a fixed ``random_state``. Our k-means runs
with the default seeding (several centres per round) and with ``centers_per_round=1`` (scikit-learn's
one-centre-per-round greedy k-means++); the seeding is also timed alone, and the seeds' potential compared
with scikit-learn's ``kmeans_plusplus``.

    python benchmarks/bench_reestimation.py --device cpu [--quick]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, measure, measure_interleaved, sync  # noqa: E402

# (points, d, k, Lloyd iterations)
KMEANS_SIZES = {
    "cpu": [(20480, 64, 2048, 20)],
    "cuda": [(20480, 64, 2048, 20), (65536, 64, 4096, 20)],
}
QUICK_KMEANS = (4096, 64, 512, 10)
RESERVOIR = dict(size=20480, d=64, batch=65536)
# Distance-block budget that fits a CPU core's L2 cache (compare with search.py's default).
CPU_CHUNK_MB = 2
# run_all.py's issue targets name the default row.
DEFAULT_FULL = "ours k-means++ + Lloyd (torch)"
EXACT_FULL = "ours k-means++ + Lloyd, centers_per_round=1 (exact greedy k-means++)"


def mixture(n, d, k, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(2 * k, d, generator=gen)
    pick = torch.randint(0, 2 * k, (n,), generator=gen)
    return (centres[pick] + torch.randn(n, d, generator=gen)).to(device)


def _inertia(x, centroids):
    from vq_hf.quantization.search import chunked_nearest_codes

    _, dist = chunked_nearest_codes(x[None].float(), centroids[None].float())
    return float(dist.double().sum())


def run_kmeans(device: str, repeats: int, sizes=None, sklearn: bool = True) -> list[Row]:
    """Ours (the default batched seeding, and the exact one-centre-per-round seeding) vs scikit-learn: full
    k-means and seeding alone, ours timed interleaved. Seeding rows report the potential of the seeds
    (their inertia), compared with scikit-learn's ``kmeans_plusplus``."""
    from vq_hf.quantization.kmeans import default_centers_per_round, seeding_rounds

    rows = []
    for n, d, k, iters in sizes or KMEANS_SIZES[device]:
        cfg = dict(N=n, d=d, K=k, lloyd_iters=iters)
        print(f"k-means {cfg}", flush=True)
        x = mixture(n, d, k, device=device)
        per_round = default_centers_per_round(k, n, 2 + int(math.log(k)))
        rounds = len(seeding_rounds(k, per_round))
        result = {}
        # (impl, result key, centres per round, callable factory)
        entries = [
            (DEFAULT_FULL, "ours", per_round, _kmeans_call(x, k, iters, device, result, "ours")),
            (EXACT_FULL, "exact", 1, _kmeans_call(x, k, iters, device, result, "exact", centers_per_round=1)),
        ]
        if device == "cpu":
            entries.append((f"ours k-means++ + Lloyd, memory_mb={CPU_CHUNK_MB}", "ours_small", per_round,
                            _kmeans_call(x, k, iters, device, result, "ours_small", memory_mb=CPU_CHUNK_MB)))
        entries += [
            (f"ours k-means++ seeding only (default: ≤ {per_round} centres per round, {rounds} rounds)", "seeds",
             per_round, _seeding_call(x, k, device, result, "seeds", None)),
            (f"ours k-means++ seeding only, centers_per_round=1 ({k - 1:,} rounds)", "seeds_exact", 1,
             _seeding_call(x, k, device, result, "seeds_exact", 1)),
        ]
        ours = measure_interleaved("kmeans", [(impl, cfg, make) for impl, _, _, make in entries], device, 0,
                                   repeats, memory=False)
        for row, (_, key, b, _) in zip(ours, entries):
            row.extra["centers_per_round"] = b
            if key not in result:
                continue
            if key.startswith("seeds"):
                row.extra["inertia_recomputed"] = _inertia(x.cpu(), result[key].cpu())  # the seeds' potential
            else:
                r = result[key]
                row.extra.update(inertia=r.inertia, iterations=r.iterations, converged=r.converged,
                                 inertia_recomputed=_inertia(x.cpu(), r.centroids.cpu()))
        rows += ours
        if sklearn:
            rows += _sklearn_rows(x, k, iters, cfg, ours)
    return rows


def _kmeans_call(x, k, iters, device, result, key, **kwargs):
    """Factory of a timed call of our k-means (same seed every call); the result lands in ``result[key]``."""
    def make():
        from vq_hf.quantization.kmeans import kmeans

        gen = torch.Generator(device=device)

        def call():
            gen.manual_seed(0)
            result[key] = kmeans(x, k, n_init=1, max_iters=iters, tol=1e-4, generator=gen, **kwargs)

        return call

    return make


def _seeding_call(x, k, device, result, key, centers_per_round):
    """Factory of a timed call of our k-means++ seeding alone; the centres land in ``result[key]``."""
    def make():
        from vq_hf.quantization.kmeans import kmeans_plusplus

        gen = torch.Generator(device=device)

        def call():
            gen.manual_seed(0)
            result[key] = kmeans_plusplus(x, k, generator=gen, centers_per_round=centers_per_round)
            sync(device)

        return call

    return make


def _sklearn_rows(x, k, iters, cfg, ours) -> list[Row]:
    """scikit-learn's KMeans and kmeans_plusplus (CPU, torch's thread count, timed once: slow). Sets
    ``inertia_vs_sklearn`` on our rows: full k-means against KMeans, seeding against kmeans_plusplus."""
    x_np = x.cpu().numpy()
    result = {}

    def fit_kmeans():
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=iters, tol=1e-4, algorithm="lloyd",
                      random_state=0).fit(x_np)

    def fit_seeds():
        from sklearn.cluster import kmeans_plusplus

        return kmeans_plusplus(x_np, k, random_state=0)[0]

    def make(key, fit):
        def call():
            from threadpoolctl import threadpool_limits

            # Same thread count as torch, so that the comparison is per core.
            with threadpool_limits(limits=torch.get_num_threads()):
                result[key] = fit()

        return lambda: call

    full = measure("kmeans", "scikit-learn KMeans k-means++ + Lloyd (CPU)", cfg, make("full", fit_kmeans), "cpu", 0,
                   1, memory=False)
    seeds = measure("kmeans", "scikit-learn kmeans_plusplus seeding only (CPU)", cfg, make("seeds", fit_seeds), "cpu",
                    0, 1, memory=False)
    # Recompute every inertia the same way (fp64 sum of fp32 distances) before comparing.
    if "full" in result:
        full.extra.update(inertia=float(result["full"].inertia_), iterations=int(result["full"].n_iter_),
                          inertia_recomputed=_inertia(x.cpu(), torch.from_numpy(result["full"].cluster_centers_)))
    if "seeds" in result:
        seeds.extra["inertia_recomputed"] = _inertia(x.cpu(), torch.from_numpy(result["seeds"]))
    for row in ours:
        ref = seeds if "seeding only" in row.impl else full
        if "inertia_recomputed" in row.extra and "inertia_recomputed" in ref.extra:
            row.extra["inertia_vs_sklearn"] = row.extra["inertia_recomputed"] / ref.extra["inertia_recomputed"]
    return [full, seeds]


def reference_reservoir_add(buffer, seen, samples):
    """DistSup's ReservoirSampler.add: one Python iteration and one single-row write per vector."""
    size = buffer.shape[0]
    for row in samples:
        if seen < size:
            buffer[seen] = row
        else:
            slot = random.randint(0, seen)
            if slot < size:
                buffer[slot] = row
        seen += 1
    return seen


def run_reservoir(device: str, repeats: int, loop: bool = True) -> list[Row]:
    size, d, batch = RESERVOIR["size"], RESERVOIR["d"], RESERVOIR["batch"]
    cfg = dict(reservoir=size, d=d, batch=batch)
    print(f"reservoir insert {cfg}", flush=True)
    rows = []
    samples = torch.randn(1, batch, d, device=device)

    def make_ours():
        from vq_hf.quantization.reservoir import Reservoir

        res = Reservoir(1, size, d).to(device)
        gen = torch.Generator(device=device).manual_seed(0)
        res.insert(samples[:, :size], generator=gen)  # full: the timed inserts are in the replacement regime
        return lambda: res.insert(samples, generator=gen)

    row = measure("reservoir", "ours vectorised insert", cfg, make_ours, device, 2, repeats)
    if row.error is None:
        row.extra["host_syncs"] = _count_syncs(make_ours(), device)
    rows.append(row)
    if loop:
        def make_loop():
            buffer = torch.zeros(size, d, device=device)
            random.seed(0)
            state = {"seen": size}

            def call():
                state["seen"] = reference_reservoir_add(buffer, state["seen"], samples[0])
                sync(device)

            return call

        rows.append(measure("reservoir", "reference per-row Python loop (DistSup)", cfg, make_loop, device, 0,
                            max(1, repeats // 5), memory=False))
    return rows


def _count_syncs(fn, device: str) -> str:
    """Host synchronisations of one call: on CUDA, whether it runs under ``torch.cuda.set_sync_debug_mode
    ("error")``; on CPU, the operators that would sync on a GPU, counted by ``benchmarks/profiling.py``."""
    if device != "cuda":
        from profiling import HostSyncCounter

        with HostSyncCounter() as counter:
            fn()
        return f"{counter.count} (counted as on a GPU)"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return "0"
    except RuntimeError as err:
        return f">0 ({str(err).splitlines()[0][:80]})"
    finally:
        torch.cuda.set_sync_debug_mode("default")


def run(device: str, repeats: int, sklearn: bool = True, loop: bool = True, kmeans_sizes=None) -> list[Row]:
    t0 = time.perf_counter()
    rows = run_kmeans(device, max(1, min(repeats, 3)), kmeans_sizes, sklearn) + run_reservoir(device, repeats, loop)
    print(f"re-estimation benchmarks: {time.perf_counter() - t0:.1f} s", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: one repeat, k-means on {QUICK_KMEANS[:3]} (N, d, K) only")
    args = parser.parse_args(argv)
    if args.quick:
        run(args.device, 1, kmeans_sizes=[QUICK_KMEANS])
    else:
        run(args.device, args.repeats)


if __name__ == "__main__":
    main()
