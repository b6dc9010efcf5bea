"""PhoneErrorRate.all_reduce over two real gloo ranks equals the pooled PER of the whole split."""

import os

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from vq_hf.metrics import PhoneErrorRate, phone_error_rate

PREDS = [[1, 2, 3], [4], [5, 6], [], [7, 7, 7]]
REFS = [[1, 2, 4, 5], [4], [5], [1, 2], [7]]


def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        acc = PhoneErrorRate()
        acc.add_batch(PREDS[rank::world], REFS[rank::world])  # each rank sees its own shard
        acc.all_reduce()
        with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
            f.write(repr((acc.errors, acc.reference_length, acc.num_sequences, acc.compute())))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_all_reduce_across_two_gloo_ranks(tmp_path):
    # fork: the children inherit the imported modules (spawn would re-import torch twice, ~10x slower)
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    expected = phone_error_rate(PREDS, REFS)
    for rank in range(2):
        errors, ref_len, n, per = eval((tmp_path / f"rank{rank}.txt").read_text())
        assert (ref_len, n) == (sum(map(len, REFS)), len(REFS))
        assert per == pytest.approx(expected)
