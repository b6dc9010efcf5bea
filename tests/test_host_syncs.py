"""Host↔device synchronisations, checked on CPU with benchmarks/profiling.py's HostSyncCounter.

The quantizer promises that a normal training step (after the first forward, not a re-estimation step)
issues no host sync with ``check_finite=False`` and exactly one — the NaN/Inf check — with the default
``check_finite=True``; the reservoir insert and the k-means++ seeding issue none. On a GPU every sync
stalls Python until the CUDA queue drains. The counter records the ATen operators that would synchronise
on CUDA (see its module docstring); the positive controls at the top prove it is not vacuous.
"""

import json
import pathlib
import sys
import warnings

import numpy as np
import pytest
import torch

from vq_hf.quantization import Reservoir, VectorQuantizer, kmeans, kmeans_plusplus, set_update_boundary

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))  # the profiling tool is a development tool, not part of the installed package
from profiling import HostSyncCounter, count_kernel_ops  # noqa: E402


# ----------------------------------------------------------------------------- the counter itself

_t = torch.arange(10, dtype=torch.float32) / 10
_mask = _t > 0.45

# (description, code, the operator the counter must name)
POSITIVE = [
    (".item()", lambda: _t.sum().item(), "aten::_local_scalar_dense"),
    ("bool(t)", lambda: bool(_mask.any()), "aten::_local_scalar_dense"),
    ("if t:", lambda: 1 if _mask.all() else 0, "aten::_local_scalar_dense"),
    ("int(t)", lambda: int(_mask.sum()), "aten::_local_scalar_dense"),
    ("float(t)", lambda: float(_t.max()), "aten::_local_scalar_dense"),
    ("bool-mask indexing", lambda: _t[_mask], "aten::index.Tensor"),
    ("bool-mask write of a tensor", lambda: _t.clone().__setitem__(_mask, _t.sum()), "aten::index_put_"),
    ("nonzero", lambda: _t.nonzero(), "aten::nonzero"),
    ("one-argument where", lambda: torch.where(_mask), "aten::nonzero"),
    ("unique", lambda: torch.unique(_t), "aten::_unique2"),
    ("masked_select", lambda: _t.masked_select(_mask), "aten::masked_select"),
    ("repeat_interleave", lambda: torch.repeat_interleave(_t, _mask.long()), "aten::repeat_interleave.Tensor"),
    ("equal", lambda: torch.equal(_t, _t), "aten::equal"),
    ("tolist", lambda: _t.tolist(), "Tensor.tolist()"),
    ("np.asarray", lambda: np.asarray(_t), "Tensor.numpy()"),
]

# Look-alikes that do not synchronise on CUDA: the counter must stay silent (no false alarms).
NEGATIVE = [
    ("nonzero_static", lambda: torch.nonzero_static(_t, size=4)),
    ("integer-index gather", lambda: _t[torch.arange(3)]),
    ("bool-mask fill with a Python scalar (masked_fill_)", lambda: _t.clone().__setitem__(_mask, 0.0)),
    ("masked_fill / where", lambda: (_t.masked_fill(_mask, 0.0), torch.where(_mask, _t, 0.0))),
    ("repeat_interleave with output_size", lambda: torch.repeat_interleave(_t, _mask.long(), output_size=5)),
    ("multinomial with replacement", lambda: torch.multinomial(_t + 0.1, 3, replacement=True)),
    ("reading a host constant", lambda: torch.tensor(3).item()),
    ("reductions and arithmetic", lambda: (_t * 2).sum() / _mask.sum().clamp_min(1)),
]


@pytest.mark.parametrize("what, fn, op", POSITIVE, ids=[p[0] for p in POSITIVE])
def test_counter_catches_syncing_ops(what, fn, op):
    with HostSyncCounter() as syncs:
        fn()
    assert syncs.count >= 1, f"{what} was not detected"
    assert op in [s.op for s in syncs.syncs], syncs.report()
    # The location is the line of this file that made the call (no vq_hf frame in between).
    assert f"{pathlib.Path(__file__).name}:" in syncs.syncs[0].location, syncs.report()


@pytest.mark.parametrize("what, fn", NEGATIVE, ids=[n[0] for n in NEGATIVE])
def test_counter_ignores_sync_free_lookalikes(what, fn):
    with HostSyncCounter() as syncs:
        fn()
    assert syncs.count == 0, syncs.report()


def test_sync_location_is_the_vq_hf_line():
    res = Reservoir(1, 4, 2)
    res.insert(torch.randn(1, 3, 2))
    with HostSyncCounter() as syncs:
        res.contents(0)  # documented to read the fill count on the host
    syncs.assert_count(1)
    sync = syncs.syncs[0]
    assert sync.op == "aten::_local_scalar_dense"
    assert sync.location.startswith("vq_hf/quantization/reservoir.py:") and sync.location.endswith("in contents")
    assert "reservoir.py" in str(sync) and sync.backward_node is None


def test_backward_syncs_are_seen_with_their_autograd_node():
    class ReadsInBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * float(g.abs().max())  # a sync in the backward pass

    x = torch.randn(4, requires_grad=True)
    with HostSyncCounter() as syncs:
        ReadsInBackward.apply(x).sum().backward()
    syncs.assert_count(1)
    assert syncs.syncs[0].backward_node is not None and "ReadsInBackward" in syncs.syncs[0].backward_node


def test_counters_nest_and_restore_tensor_methods():
    before = {name: torch.Tensor.__dict__.get(name) for name in ("tolist", "numpy", "cpu")}
    with HostSyncCounter() as outer:
        _t.sum().item()
        with HostSyncCounter() as inner:
            _t.tolist()
    assert outer.count == 2 and inner.count == 1
    assert {name: torch.Tensor.__dict__.get(name) for name in before} == before
    assert _t.tolist() == pytest.approx([i / 10 for i in range(10)])


def test_cpu_is_device_false_counts_only_real_device_tensors():
    with HostSyncCounter(cpu_is_device=False) as syncs:
        _t.sum().item()
        _t[_mask]
        _t.tolist()
    assert syncs.count == 0, syncs.report()


def test_count_kernel_ops_skips_views_and_allocations():
    x = torch.randn(2, 5)
    counted = count_kernel_ops(lambda: x.view(5, 2).t().unsqueeze(0).expand(3, 2, 5) * 2)
    assert counted.by_op == {"aten::mul.Tensor": 1} and counted.kernel_ops == 1
    assert counted.all_ops["aten::view"] == 1  # seen, not counted
    assert count_kernel_ops(lambda: torch.empty(3, 4)).kernel_ops == 0
    counted = count_kernel_ops(lambda: (x * 2).sum().item())
    assert counted.kernel_ops == 2 and [s.op for s in counted.host_syncs] == ["aten::_local_scalar_dense"]
    assert counted.result == pytest.approx(float(x.sum() * 2))


# ----------------------------------------------------------------------------- the quantizer

def _train_step(vq, x, mask=None):
    out = vq(x, mask)
    (out.quantized.square().sum() + out.loss).backward()
    return out


# name → (constructor options, steps run before the counted one, expected (quantizing, reestimated, the
# reservoir is fed), use a mask)
REESTIMATING = dict(quantizer_type="reestimating", warmup_steps=2, reestimate_every=3, reestimate_steps=6,
                    reservoir_size=64)  # k-means at positions 2 and 5; the reservoir is fed up to position 5
CASES = {
    "vanilla": (dict(quantizer_type="vanilla"), 2, (True, False, False), False),
    "vanilla+bn": (dict(quantizer_type="vanilla", batch_norm=True), 2, (True, False, False), False),
    "ema": (dict(quantizer_type="ema"), 2, (True, False, False), False),
    "ema+bn": (dict(quantizer_type="ema", batch_norm=True), 2, (True, False, False), False),
    "vanilla+mask": (dict(quantizer_type="vanilla", batch_norm=True), 2, (True, False, False), True),
    "ema+mask": (dict(quantizer_type="ema", batch_norm=True), 2, (True, False, False), True),
    "vanilla G=2": (dict(quantizer_type="vanilla", num_codebooks=2, batch_norm=True), 2, (True, False, False), True),
    "ema G=2 per-codebook bn": (
        dict(quantizer_type="ema", num_codebooks=2, batch_norm=True, batch_norm_shared=False), 2,
        (True, False, False), True),
    "reestimating warm-up (reservoir filling)": (dict(REESTIMATING, batch_norm=True), 1, (False, False, True), True),
    "reestimating after k-means, sampling": (dict(REESTIMATING, batch_norm=True), 3, (True, False, True), True),
    "reestimating G=2 after k-means": (dict(REESTIMATING, num_codebooks=2), 4, (True, False, True), False),
    "reestimating after the window": (dict(REESTIMATING, batch_norm=True), 7, (True, False, False), True),
    "reestimating epochs mode, inside an epoch": (
        dict(REESTIMATING, reestimation_unit="epochs", batch_norm=True), 1, (False, False, True), True),
}


def _prepared(options, steps_before, check_finite, use_mask, seed=0):
    """A quantizer (dim 8, K 16) after ``steps_before`` training steps, and the counted step's inputs."""
    gen = torch.Generator().manual_seed(seed)
    vq = VectorQuantizer(8, 16, check_finite=check_finite, **options).train()
    epochs = options.get("reestimation_unit") == "epochs"
    if epochs:
        vq.set_epoch(0)

    def batch():
        x = torch.randn(4, 12, 8, generator=gen).requires_grad_(True)
        mask = torch.rand(4, 12, generator=gen) > 0.25 if use_mask else None
        return x, mask

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # skipped re-estimations are not what is tested
        for _ in range(steps_before):
            _train_step(vq, *batch())
    return vq, batch()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("check_finite", [False, True], ids=["check_finite=False", "check_finite=True"])
def test_normal_training_step_syncs_only_for_the_finite_check(case, check_finite):
    options, steps_before, regime, use_mask = CASES[case]
    vq, (x, mask) = _prepared(options, steps_before, check_finite, use_mask)
    seen = vq.reservoir.seen.clone() if vq.reservoir is not None else None
    with HostSyncCounter() as syncs:
        out = _train_step(vq, x, mask)
    fed = seen is not None and not torch.equal(seen, vq.reservoir.seen)
    assert (out.quantizing, out.reestimated, fed) == regime, "the test did not reach the intended regime"
    if not check_finite:
        syncs.assert_count(0)
    else:
        syncs.assert_count(1)
        sync = syncs.syncs[0]
        assert sync.op == "aten::_local_scalar_dense" and "in _raise_if_non_finite" in sync.location, sync


def test_gradient_accumulation_micro_batches_do_not_sync():
    for quantizer_type in ("ema", "reestimating"):
        options = dict(REESTIMATING, quantizer_type=quantizer_type, batch_norm=True)
        vq, (x, mask) = _prepared(options, 3, False, True)
        for last in (False, False, True):
            set_update_boundary(vq, last)
            with HostSyncCounter() as syncs:
                _train_step(vq, x.detach().requires_grad_(True), mask)
            syncs.assert_count(0)


@pytest.mark.parametrize("check_finite", [False, True])
@pytest.mark.parametrize("quantizer_type", ["vanilla", "ema", "reestimating"])
def test_eval_forward_does_not_sync(quantizer_type, check_finite):
    vq, (x, mask) = _prepared(dict(REESTIMATING, quantizer_type=quantizer_type, batch_norm=True), 3, check_finite, True)
    vq.eval()
    with HostSyncCounter() as syncs, torch.no_grad():
        vq(x, mask)
    syncs.assert_count(1 if check_finite else 0)


def test_the_first_forward_and_reestimation_sync_by_design():
    """Control: the counter does see the quantizer's deliberate syncs (host mirrors of the step counters
    on the first forward, k-means at a re-estimation step), so the zero counts above are not vacuous."""
    vq, (x, mask) = _prepared(dict(REESTIMATING), 0, False, False)
    with HostSyncCounter() as first:
        _train_step(vq, x, mask)
    assert any("in _read" in s.location for s in first.syncs), first.report()
    vq, (x, mask) = _prepared(dict(REESTIMATING), 2, False, False)
    with HostSyncCounter() as reestimation:
        out = _train_step(vq, x, mask)
    assert out.reestimated and reestimation.count >= 1
    assert any("vq_hf/quantization/kmeans.py" in s.location for s in reestimation.syncs), reestimation.report()


# ----------------------------------------------------------------------------- reservoir and k-means

@pytest.mark.parametrize("valid", ["none", "positions", "per-codebook"])
@pytest.mark.parametrize("use_generator", [True, False])
def test_reservoir_insert_does_not_sync(valid, use_generator):
    G, S, D = 2, 16, 3
    res = Reservoir(G, S, D)
    gen = torch.Generator().manual_seed(0) if use_generator else None
    for n in (10, 40, 7):  # filling, overflowing with collisions, replacing
        x = torch.randn(G, n, D)
        mask = {"none": None, "positions": torch.rand(n) > 0.3, "per-codebook": torch.rand(G, n) > 0.3}[valid]
        with HostSyncCounter() as syncs:
            res.insert(x, mask, generator=gen)
        syncs.assert_count(0)


@pytest.mark.parametrize("k", [1, 2, 17, 64])
@pytest.mark.parametrize("use_generator", [True, False])
def test_kmeans_plusplus_does_not_sync(k, use_generator):
    x = torch.randn(200, 4)
    x[:20] = x[0]  # duplicates: zero D² weights on some points
    gen = torch.Generator().manual_seed(1) if use_generator else None
    with HostSyncCounter() as syncs:
        centres = kmeans_plusplus(x, k, generator=gen)
    syncs.assert_count(0)
    assert centres.shape == (k, 4)


@pytest.mark.parametrize("k", [8, 64])
def test_kmeans_syncs_once_per_lloyd_iteration_not_per_centre(k):
    max_iters, n_init = 4, 2
    x = torch.randn(512, 4, generator=torch.Generator().manual_seed(2))
    with HostSyncCounter() as syncs:
        kmeans(x, k, n_init=n_init, max_iters=max_iters, tol=0.0, generator=torch.Generator().manual_seed(3))
    # One convergence check per iteration and restart, plus a few per call / restart (input check,
    # variance, inertia, reseed count): bounded independently of k (64 centres would exceed it).
    bound = n_init * (max_iters + 3) + 3
    assert 1 <= syncs.count <= bound, syncs.report()


# ----------------------------------------------------------------------------- benchmarks/count_ops.py

def test_count_ops_script_reports_ops_and_syncs(tmp_path, capsys):
    sys.path.insert(0, str(BENCH))
    try:
        import count_ops
    finally:
        sys.path.remove(str(BENCH))
    from vq_hf.quantization import search

    cap = search.CPU_SEARCH_BLOCK_MB
    path = tmp_path / "counts.json"
    count_ops.main(["--quick", "--json", str(path)])
    assert search.CPU_SEARCH_BLOCK_MB == cap  # the CUDA-like budget is restored
    printed = capsys.readouterr().out
    assert "CUDA-like configuration" in printed and "| k-means++ seeding, per centre |" in printed
    rows = {row["path"]: row for row in json.loads(path.read_text())["rows"]}
    quantizer = {n: r for n, r in rows.items() if n.startswith("quantizer forward+backward") and "fused" not in n}
    assert len(quantizer) == 4
    for r in quantizer.values():
        assert r["kernel_ops"] > 0 and r["host_syncs"] == 1 and r["host_syncs_check_finite_false"] == 0, r
    fused = {n: r for n, r in rows.items() if "fused search" in n}
    assert len(fused) == 4, printed  # counted under Triton's interpreter (Triton is a test dependency)
    for name, r in fused.items():
        torch_row = quantizer[name.split(", fused search")[0]]
        # One kernel replaces the GEMM + argmin (+ the EMA index_adds): fewer launches, the same one sync.
        assert r["ops"]["triton kernel"] == 1 and r["kernel_ops"] < torch_row["kernel_ops"], (r, torch_row)
        assert r["host_syncs"] == 1, r
    assert rows["k-means++ seeding, per centre"]["kernel_ops"] > 0
    assert rows["k-means++ seeding, per centre"]["host_syncs_total_65_centres"] == 0
    reservoir = next(r for name, r in rows.items() if name.startswith("reservoir insert"))
    assert reservoir["kernel_ops"] > 0 and reservoir["host_syncs"] == 0
