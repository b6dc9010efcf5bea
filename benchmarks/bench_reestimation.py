"""Re-estimation costs: k-means++ + Lloyd (ours vs scikit-learn's k-means++ on the same data: time and
inertia) and the reservoir insert (ours, vectorised, vs the reference's per-row Python loop).

Data for k-means: a Gaussian mixture (2·k centres in d dimensions, unit noise), a stand-in for a reservoir
of encoder outputs after batch norm. Both k-means run the same number of Lloyd iterations (``max_iters``,
tol 1e-4, one restart); sklearn gets ``algorithm="lloyd"`` and a fixed ``random_state``.

    python benchmarks/bench_reestimation.py --device cpu
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, measure, sync  # noqa: E402

# (points, d, k, Lloyd iterations)
KMEANS_SIZES = {
    "cpu": [(20480, 64, 2048, 20)],
    "cuda": [(20480, 64, 2048, 20), (65536, 64, 4096, 20)],
}
RESERVOIR = dict(size=20480, d=64, batch=65536)
# Distance-block budget that fits a CPU core's L2 cache (compare with search.py's default).
CPU_CHUNK_MB = 2


def mixture(n, d, k, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(2 * k, d, generator=gen)
    pick = torch.randint(0, 2 * k, (n,), generator=gen)
    return (centres[pick] + torch.randn(n, d, generator=gen)).to(device)


def _inertia(x, centroids):
    from vq_hf.quantization.search import nearest_codes

    _, dist = nearest_codes(x[None].float(), centroids[None].float(), use_fused=False)
    return float(dist.double().sum())


def run_kmeans(device: str, repeats: int, sizes=None, sklearn: bool = True) -> list[Row]:
    rows = []
    for n, d, k, iters in sizes or KMEANS_SIZES[device]:
        cfg = dict(N=n, d=d, K=k, lloyd_iters=iters)
        print(f"k-means {cfg}", flush=True)
        x = mixture(n, d, k, device=device)
        result = {}

        def make_ours():
            from vq_hf.quantization.kmeans import kmeans

            gen = torch.Generator(device=device)

            def call():
                gen.manual_seed(0)
                result["ours"] = kmeans(x, k, n_init=1, max_iters=iters, tol=1e-4, generator=gen)

            return call

        def make_ours_small_chunks():
            from vq_hf.quantization.kmeans import kmeans

            gen = torch.Generator(device=device)

            def call():
                gen.manual_seed(0)
                result["ours_small"] = kmeans(x, k, n_init=1, max_iters=iters, tol=1e-4, generator=gen,
                                              memory_mb=CPU_CHUNK_MB)

            return call

        def make_seed_only():
            from vq_hf.quantization.kmeans import kmeans_plusplus

            gen = torch.Generator(device=device)

            def call():
                gen.manual_seed(0)
                kmeans_plusplus(x, k, generator=gen)
                sync(device)

            return call

        ours = measure("kmeans", "ours k-means++ + Lloyd (torch)", cfg, make_ours, device, 0, repeats, memory=False)
        if "ours" in result:
            r = result["ours"]
            ours.extra.update(inertia=r.inertia, iterations=r.iterations, converged=r.converged)
        rows.append(ours)
        if device == "cpu":
            small = measure("kmeans", f"ours k-means++ + Lloyd, memory_mb={CPU_CHUNK_MB}", cfg,
                            make_ours_small_chunks, device, 0, repeats, memory=False)
            if "ours_small" in result:
                r = result["ours_small"]
                small.extra.update(inertia=r.inertia, iterations=r.iterations, converged=r.converged)
            rows.append(small)
        rows.append(measure("kmeans", "ours k-means++ seeding only", cfg, make_seed_only, device, 0, repeats,
                            memory=False))
        if sklearn:
            x_np = x.cpu().numpy()

            def make_sklearn():
                from sklearn.cluster import KMeans

                from threadpoolctl import threadpool_limits

                def call():
                    # Same thread count as torch, so that the comparison is per core.
                    with threadpool_limits(limits=torch.get_num_threads()):
                        result["sklearn"] = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=iters,
                                                   tol=1e-4, algorithm="lloyd", random_state=0).fit(x_np)

                return call

            # scikit-learn always runs on the CPU, with torch's CPU thread count; timed once, it is slow.
            sk = measure("kmeans", "scikit-learn KMeans k-means++ + Lloyd (CPU)", cfg, make_sklearn, "cpu", 0, 1,
                         memory=False)
            if "sklearn" in result:
                sk.extra.update(inertia=float(result["sklearn"].inertia_), iterations=int(result["sklearn"].n_iter_))
                if "ours" in result:
                    # Recompute both inertias the same way (fp64 sum of fp32 distances) before comparing.
                    ours_i = _inertia(x.cpu(), result["ours"].centroids.cpu())
                    sk_i = _inertia(x.cpu(), torch.from_numpy(result["sklearn"].cluster_centers_))
                    ours.extra.update(inertia_recomputed=ours_i, inertia_vs_sklearn=ours_i / sk_i)
                    sk.extra.update(inertia_recomputed=sk_i)
            rows.append(sk)
    return rows


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
    if device == "cuda" and row.error is None:
        row.extra["host_syncs"] = _count_syncs(make_ours())
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


def _count_syncs(fn) -> str:
    """'0' when fn runs under torch.cuda.set_sync_debug_mode('error') without a host synchronisation."""
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
    args = parser.parse_args(argv)
    run(args.device, args.repeats)


if __name__ == "__main__":
    main()
