"""A real `accelerate launch --cpu` run, killed with SIGKILL mid-training, resumes from its last complete checkpoint."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from test_training_run import TINY_CIFAR, run, train_rows

REPO = pathlib.Path(__file__).resolve().parents[1]


def _accelerate_cmd() -> list[str]:
    exe = shutil.which("accelerate")
    if exe:
        return [exe, "launch"]
    return [sys.executable, "-m", "accelerate.commands.launch"]


def test_accelerate_launch_killed_run_resumes_from_last_complete_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [*_accelerate_cmd(), "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", str(REPO / "training" / "run_vq.py"), "--output_dir", str(out),
           "--max_steps", "100000", "--report_to", "none", "--no_progress_bar", *TINY_CIFAR,
           "training.save_every=2", "training.eval_every=null", "training.keep_last=2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        # Any complete checkpoint at step >= 4: a fast machine may already have pruned step_4 (keep_last=2).
        while not any(int(m.parent.name.split("_")[1]) >= 4 for m in (out / "checkpoints").glob("step_*/meta.json")):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its training process, mid-training
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    from vq_hf.training_utils.checkpoints import list_checkpoints

    last = list_checkpoints(out)[-1][0]
    assert last >= 4
    target = last + 2
    assert run(["--output_dir", out, "--max_steps", target, "--resume_from_checkpoint", "latest",
                "--report_to", "none", "--no_progress_bar", *TINY_CIFAR, "training.save_every=2",
                "training.eval_every=null", "training.keep_last=2"]) == 0
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())
    assert sorted(train_rows(out)) == list(range(1, target + 1))  # rows after the checkpoint were dropped
    res = json.loads((out / "results.json").read_text())
    assert res["training"]["steps"] == target
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()


@pytest.mark.slow
def test_two_process_gloo_ddp_run_matches_the_contract(tmp_path):
    """2-rank DDP on CPU (gloo, hf-conventions §7.3): the folder is written once, metrics cover the whole split."""
    import socket

    with socket.socket() as sock:  # a free port: other test sessions may run DDP at the same time
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(REPO / "training" / "run_vq.py"), "--output_dir", str(out), "--max_steps", "3", "--report_to",
           "none", "--no_progress_bar", *TINY_CIFAR, "data.max_eval_samples=7"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["training"]["num_processes"] == 2
    # 7 examples over 2 ranks: accelerate pads the last batch; gather_for_metrics drops the duplicates
    assert res["evaluation_counts"]["num_examples"] == 7
    assert res["evaluation_counts"]["num_dims"] == 7 * 3072
