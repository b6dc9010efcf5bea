"""kill -9 in the middle of an epoch, resume: the finished folder equals an uninterrupted run's, byte for byte.

A real ``accelerate launch --cpu`` run with gradient accumulation 2 (24 images, batch 4: 3 optimizer steps per
epoch), a checkpoint every 4 optimizer steps (``training.save_every``) and k-means re-estimations at
optimizer steps 2 and 4 (0-based positions) is killed with SIGKILL as soon as ``checkpoints/step_4`` is
complete — 2 micro-batches into its second epoch, after the first k-means. It is resumed with
``--resume_from_checkpoint latest`` to step 7 (across the next epoch boundary, through the second k-means).
Its ``model.safetensors`` and ``polyak/model.safetensors`` must equal the bytes of an uninterrupted 7-step
run's, and ``results.json`` must equal it except ``training.wall_time_s`` (a clock) and
``training.last_checkpoint`` (a path inside the run's own --output_dir).

Mutant this catches (planted and seen failing): the mid-epoch batch skip off by one in training/run_vq.py
(``accelerator.skip_first_batches(train_dl, batches_done)`` → ``batches_done - 1``): the resumed run sees
a batch of the interrupted epoch twice. The epoch-boundary resume of test_training_run.py cannot see it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import torch

from test_training_launch import REPO, _accelerate_cmd
from test_training_run import TINY_CIFAR, run, train_rows

RECIPE = ["--report_to", "none", "--no_progress_bar", *TINY_CIFAR, "training.gradient_accumulation_steps=2",
          "quantizer.reestimate_steps=4", "training.save_every=4", "training.eval_every=null",
          "training.keep_last=100"]
TARGET = 7
MICRO_BATCHES_PER_EPOCH = 24 // 4


def _results(folder) -> dict:
    res = json.loads((folder / "results.json").read_text())
    for key in ("wall_time_s", "last_checkpoint"):
        assert key in res["training"], key
        del res["training"][key]
    return res


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    # The launcher picks its own OMP thread count; CPU float reductions depend on it, so the launched part of
    # the run uses this process's, like the in-process runs it is compared with.
    cmd = [*_accelerate_cmd(), "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--num_cpu_threads_per_process", str(torch.get_num_threads()),
           str(REPO / "training" / "run_vq.py"), "--output_dir", str(killed), "--max_steps", "100000", *RECIPE]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (killed / "checkpoints" / "step_4" / "meta.json").is_file():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint step_4 within 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its training process
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    from vq_hf.training_utils.checkpoints import list_checkpoints, read_meta

    last_step, last = list_checkpoints(killed)[-1]
    meta = read_meta(last)
    assert last_step < TARGET
    assert 0 < meta["batches_in_epoch"] < MICRO_BATCHES_PER_EPOCH, meta  # the kill was mid-epoch
    assert run(["--output_dir", killed, "--max_steps", TARGET, "--resume_from_checkpoint", "latest", *RECIPE]) == 0

    full = tmp_path / "full"
    assert run(["--output_dir", full, "--max_steps", TARGET, *RECIPE]) == 0

    for name in ("model.safetensors", "polyak/model.safetensors"):
        assert (killed / name).read_bytes() == (full / name).read_bytes(), name
    assert _results(killed) == _results(full)
    assert train_rows(killed) == train_rows(full)
    assert sorted(train_rows(full)) == list(range(1, TARGET + 1))
