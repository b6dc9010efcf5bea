"""The benchmark harness (benchmarks/): measurement helpers, failure reporting and the result tables.

These check the harness, not speed: tiny sizes, a few milliseconds each.
"""

import json
import pathlib
import sys

import pytest
import torch

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import bench_reestimation  # noqa: E402
import bench_vq_layer  # noqa: E402
import run_all  # noqa: E402


def test_cpu_peak_memory_counts_what_one_call_allocates():
    def fn():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = torch.ones(2048, 1024)  # 8 MiB, both alive: peak 12 MiB
        del a
        return b.sum()

    assert 11.5 < _common.peak_memory_mb(fn, "cpu") < 13.0


def test_failures_become_rows_not_silence(capsys):
    def broken():
        raise RuntimeError("no such library")

    rows = _common.measure_interleaved(
        "vq_fwd_bwd", [("ok", {"N": 1}, lambda: (lambda: torch.ones(3).sum())), ("bad", {"N": 1}, broken)],
        "cpu", warmup=1, repeats=3, memory=False)
    ok, bad = rows
    assert ok.error is None and ok.repeats == 3 and ok.median_ms >= 0
    assert bad.median_ms is None and "no such library" in bad.error
    md = run_all.render("cpu", _common.machine_info("cpu"), rows)
    assert "Rows that failed: 1" in md and "no such library" in md


def test_tiny_vq_layer_run_renders_tables_and_targets(tmp_path):
    torch.manual_seed(0)
    rows = bench_vq_layer.run("cpu", warmup=0, repeats=1, sizes=[(64, 8, 16, 1)], cifar=False)
    impls = {r.impl for r in rows}
    assert {"ours vanilla", "ours ema", "plain torch fp32 (GEMM+argmin+gather)",
            "ours chunked GEMM + argmin (search.py)"} <= impls
    ours = [r for r in rows if r.impl.startswith("ours")]
    assert all(r.error is None and r.median_ms is not None for r in ours), [r.error for r in ours]
    info = _common.machine_info("cpu")
    md = run_all.render("cpu", info, rows)
    assert "## VQ layer forward + backward — N=64, d=8, K=16, codebooks=1" in md
    assert "## Targets (issue #6)" in md
    # The CPU target needs the N=8,192 row, absent in this tiny run: reported as not measured.
    assert "not measured" in md
    json_path, md_path = _common.write_results(str(tmp_path), "cpu", info, rows, md)
    data = json.loads(pathlib.Path(json_path).read_text())
    assert data["machine"]["torch"] == torch.__version__ and len(data["rows"]) == len(rows)


def test_target_check_uses_ratio_to_vector_quantize_pytorch():
    cfg = dict(N=8192, d=64, K=4096, codebooks=1)
    rows = [_common.Row("vq_fwd_bwd", run_all.VQP_DEFAULT, cfg, median_ms=600.0),
            _common.Row("vq_fwd_bwd", "ours vanilla", cfg, median_ms=50.0),
            _common.Row("vq_fwd_bwd", "ours ema", cfg, median_ms=200.0)]
    md = run_all.render("cpu", {"device": "cpu"}, rows)
    assert "| CPU N=8,192 d=64 K=4,096: ≥ 6× faster than vector-quantize-pytorch (vanilla) | 12.00×" in md
    lines = [line for line in md.splitlines() if "(EMA) |" in line]
    assert lines and lines[0].endswith("| NO |")


def test_tiny_kmeans_run_compares_seeding_with_sklearns_seeding():
    rows = bench_reestimation.run_kmeans("cpu", 1, sizes=[(600, 4, 200, 3)])  # k=200: 2 centres per round
    assert all(r.error is None and r.median_ms is not None for r in rows), [r.error for r in rows]
    ours = [r for r in rows if r.impl.startswith("ours")]
    assert [r.extra["centers_per_round"] for r in ours] == [2, 1, 2, 2, 1]
    assert all(0.8 < r.extra["inertia_vs_sklearn"] < 1.25 for r in ours), [r.extra for r in ours]
    md = run_all.render("cpu", _common.machine_info("cpu"), rows)
    # Seeding rows are timed against scikit-learn's seeding alone, full k-means against its KMeans.
    for name in ("scikit-learn KMeans k-means++ + Lloyd (CPU)", "scikit-learn kmeans_plusplus seeding only (CPU)"):
        line = next(row for row in md.splitlines() if row.startswith(f"| {name} |"))
        assert line.endswith("| 1.00× |"), line


def test_reference_reservoir_loop_is_algorithm_r():
    buffer = torch.zeros(4, 2)
    rows = torch.arange(20, dtype=torch.float32).view(10, 2)
    seen = bench_reestimation.reference_reservoir_add(buffer, 0, rows[:3])
    assert seen == 3 and torch.equal(buffer[:3], rows[:3])
    seen = bench_reestimation.reference_reservoir_add(buffer, seen, rows[3:])
    assert seen == 10
    # Every kept row is one of the inputs, each at most once.
    kept = {tuple(r.tolist()) for r in buffer}
    assert len(kept) == 4 and kept <= {tuple(r.tolist()) for r in rows}


def test_run_all_rejects_unknown_benchmark():
    with pytest.raises(SystemExit):
        run_all.main(["--device", "cpu", "--only", "vq,nope"])


def test_tiny_collapse_run_writes_table_json_and_figure(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("collapse_run", BENCH / "collapse" / "run.py")
    collapse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collapse)
    sample = pathlib.Path(__file__).resolve().parents[1] / "src" / "vq_hf" / "data" / "cifar10_sample"
    out = tmp_path / "collapse"
    collapse.main(["--seeds", "1", "--steps", "4", "--methods", "vanilla,ours+revival,fsq", "--data", str(sample),
                   "--train_images", "64", "--test_images", "32", "--warmup", "1", "--reestimate_every", "2",
                   "--log_every", "2", "--output", str(out)])
    table = (tmp_path / "collapse.md").read_text()
    assert all(f"| {m} |" in table for m in ("vanilla", "ours+revival", "fsq"))
    runs = json.loads((tmp_path / "collapse.json").read_text())["runs"]
    assert len(runs) == 3 and all(0 <= r["dead_fraction"] <= 1 and r["test_mse"] > 0 for r in runs)
    with pytest.raises(SystemExit, match="unknown method"):
        collapse.main(["--methods", "vanilla,lfq", "--data", str(sample), "--output", str(out)])
