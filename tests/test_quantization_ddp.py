"""Two-process gloo DDP: EMA statistics are all-reduced, re-estimation clusters on rank 0 and broadcasts."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vq_hf import VectorQuantizer
from vq_hf.quantization import CodebookUsageAccumulator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(100 + rank)  # every rank sees different data
        ema = VectorQuantizer(8, 16, num_codebooks=2, quantizer_type="ema", ema_decay=0.9, seed=3)
        for _ in range(4):
            ema(torch.randn(32, 8, generator=g) + rank)
        reest = VectorQuantizer(8, 16, num_codebooks=2, quantizer_type="reestimating", warmup_steps=2,
                                reestimate_every=10, reestimate_steps=20, reservoir_size=64, seed=3)
        results = []
        for _ in range(3):
            results.append(reest(torch.randn(12, 8, generator=g) * (1 + rank)).reestimated)
        acc = CodebookUsageAccumulator(2, 16)
        acc.update(torch.full((5 + rank, 2), rank))
        usage = acc.compute()
        torch.save(
            {"ema": ema.codebook.detach(), "ema_count": ema.ema_count, "reest": reest.codebook.detach(),
             "reestimated": results, "used": usage["used_codes"], "tokens": usage["num_tokens"]},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_two_rank_gloo_codebooks_stay_identical(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    # EMA: identical all-reduced statistics on both ranks, and they moved away from the shared init.
    assert torch.equal(r0["ema"], r1["ema"]) and torch.equal(r0["ema_count"], r1["ema_count"])
    fresh = VectorQuantizer(8, 16, num_codebooks=2, quantizer_type="ema", seed=3)
    assert not torch.allclose(r0["ema"], fresh.codebook)
    # 32 vectors per rank per step, both ranks counted: Σ counts = decayed mix of 1s and 64s.
    expected = 16 * 0.9**4 + 64 * (1 - 0.9**4)
    torch.testing.assert_close(r0["ema_count"].sum(-1), torch.full((2,), expected), rtol=1e-5, atol=1e-4)
    # Re-estimation at step 2 on the gathered reservoirs (2 ranks × 36 samples ≥ K = 16), same result.
    assert r0["reestimated"] == [False, False, True] == r1["reestimated"]
    assert torch.equal(r0["reest"], r1["reest"])
    # Usage accumulator reduces across ranks.
    assert r0["used"].tolist() == [2, 2] and int(r0["tokens"]) == 11 == int(r1["tokens"])
