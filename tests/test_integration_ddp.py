"""DDP re-estimation clusters the union of every rank's reservoir, not rank 0's alone.

``test_quantization_ddp.py`` checks that the ranks end with the same codebook, which a rank-0-only k-means
also gives (it is broadcast). Here the two ranks see disjoint data — rank 0 four clusters, rank 1 four other
ones — and K = 8: only the gathered reservoirs contain all eight clusters. The re-estimated codebook must
equal a single-process k-means on the union of both ranks' reservoirs (same seed, so bit for bit), and put
a codeword on each of the eight clusters.

Mutant this catches (planted and seen failing): in ``VectorQuantizer.reestimate``
``samples = all_gather(self.reservoir.samples)`` / ``filled = all_gather(self.reservoir.filled())`` replaced
by ``samples = [self.reservoir.samples]`` / ``filled = [self.reservoir.filled()]`` — rank 0 clusters only its
own reservoir and broadcasts the result; ``test_two_rank_gloo_codebooks_stay_identical`` still passes.
"""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from test_quantization_ddp import _free_port
from vq_hf import VectorQuantizer

G, D, K, S = 2, 4, 8, 32  # codebooks, channels per codebook, codewords, reservoir rows per rank
WARMUP = 3  # k-means at the 4th training forward, on what the reservoirs hold then
KW = dict(num_codebooks=G, quantizer_type="reestimating", warmup_steps=WARMUP, reestimate_every=100,
          reservoir_size=S, kmeans_max_iters=50, seed=11)


def _centres() -> torch.Tensor:
    """(2 ranks, 4 clusters, G, D): far apart, and rank 1's clusters are not rank 0's."""
    g = torch.Generator().manual_seed(5)
    return 10.0 * torch.randn(2, 4, G, D, generator=g)


def _batch(rank: int, step: int, n: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * rank + step)
    idx = torch.randint(4, (n,), generator=g)
    return (_centres()[rank, idx] + 0.05 * torch.randn(n, G, D, generator=g)).reshape(n, G * D)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        vq = VectorQuantizer(G * D, K, **KW).train()
        flags = [vq(_batch(rank, step)).reestimated for step in range(WARMUP + 1)]
        # reestimate() resets the reservoir by its counter only: the rows it clustered are still there.
        torch.save({"flags": flags, "codebook": vq.codebook.detach().clone(),
                    "reservoir": vq.reservoir.samples[:, :S].clone()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_reestimation_clusters_the_union_of_both_ranks_reservoirs(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert r0["flags"] == r1["flags"] == [False] * WARMUP + [True]
    assert torch.equal(r0["codebook"], r1["codebook"])
    # 64 vectors offered per rank, 32 kept: each reservoir holds only its own rank's clusters.
    for rank, r in enumerate((r0, r1)):
        own = _centres()[rank].transpose(0, 1)  # (G, 4, D)
        assert torch.cdist(r["reservoir"], own).min(-1).values.max() < 1.0

    # Single process, one reservoir of both ranks' rows in rank order: the same k-means (same seed, same data).
    ref = VectorQuantizer(G * D, K, **{**KW, "reservoir_size": 2 * S})
    with torch.no_grad():
        ref.reservoir.samples[:, : 2 * S] = torch.cat([r0["reservoir"], r1["reservoir"]], dim=1)
        ref.reservoir.seen.fill_(2 * S)
    assert ref.reestimate()
    assert torch.equal(r0["codebook"], ref.codebook.detach())

    # And it is the right codebook: one codeword on each of the 8 clusters of every group.
    centres = _centres().permute(2, 0, 1, 3).reshape(G, 8, D)
    nearest = torch.cdist(centres, r0["codebook"]).min(-1)
    assert nearest.values.max() < 1.0, nearest.values
    assert all(len(set(nearest.indices[g].tolist())) == 8 for g in range(G))
