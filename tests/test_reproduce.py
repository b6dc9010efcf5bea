"""`vq-hf reproduce`: aggregation over seeds (synthetic results), the smoke tables end to end, kill -9 and resume."""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from vq_hf import reproduce as rp

REPO = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- aggregation
def test_summarize_median_min_max():
    assert rp.summarize([3.0, 1.0, 2.0]) == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0}
    assert rp.summarize([4.0, 1.0]) == {"n": 2, "median": 2.5, "min": 1.0, "max": 4.0}
    assert rp.summarize([])["median"] is None


def _speech_metrics(per, pplx):
    return {"phone_error_rate": per, "perplexity": pplx, "perplexity_sum": pplx}


def test_aggregate_table1_scales_per_and_carries_paper_figures():
    table = rp.TABLES["table1"]
    per_run = {("speech", "vanilla"): [_speech_metrics(0.30, 10.0), _speech_metrics(0.20, 12.0),
                                       _speech_metrics(0.40, 11.0)],
               ("speech", "bn_reest_cblr"): [_speech_metrics(0.10, 300.0), _speech_metrics(0.12, 310.0),
                                             _speech_metrics(0.11, 305.0)],
               ("speech", "no_bottleneck"): [{"phone_error_rate": 0.15}, {"phone_error_rate": 0.17}]}
    rows = {r["variant"]: r for r in rp.aggregate(table, per_run)}
    assert list(rows) == ["vanilla", "bn_reest_cblr", "no_bottleneck"]  # the paper's row order
    v = rows["vanilla"]
    assert v["seeds"] == 3 and v["model"] == "vanilla VQ"
    assert (v["per_median"], v["per_min"], v["per_max"]) == pytest.approx((30.0, 20.0, 40.0))  # in %
    assert v["per_paper"] == 16.9 and v["perplexity_paper"] == 16
    assert rows["bn_reest_cblr"]["per_paper"] == 9.8 and rows["bn_reest_cblr"]["perplexity_paper"] == 574
    nb = rows["no_bottleneck"]
    assert nb["per_paper"] == 11.6 and nb["perplexity_median"] is None and nb["per_median"] == pytest.approx(16.0)

    verdicts = rp.ordering_verdicts(table, list(rows.values()))
    per_verdict = next(x for x in verdicts if x.startswith("Dev PER") and "reest + codebook LR" in x)
    assert "holds beyond the seed spread" in per_verdict
    assert any(x.startswith("Pplx") and "holds" in x for x in verdicts)

    text = rp.markdown_table(table, list(rows.values()))
    assert "| vanilla VQ | 3 | 30.0 [20.0–40.0] | 16.9 | 11.0 [10.0–12.0] | 16.0 |" in text
    assert "| no bottleneck | 2 | 16.0 [15.0–17.0] | 11.6 | N/A | N/A |" in text


def test_ordering_overlap_and_reversal_are_reported():
    table = rp.TABLES["table2"]
    m = lambda bpd, pplx: {"reconstruction_bits_per_dim": bpd, "perplexity": pplx,  # noqa: E731
                           "uniform_nelbo_bits_per_dim": bpd + 0.1, "unigram_nelbo_bits_per_dim": bpd + 0.05}
    per_run = {("handwriting", "vanilla"): [m(0.350, 10), m(0.352, 12), m(0.349, 11)],
               ("handwriting", "bn_reest"): [m(0.360, 100), m(0.362, 110), m(0.361, 120)],
               ("handwriting", "bn_reest_cblr"): [m(0.340, 100), m(0.351, 110), m(0.345, 120)]}
    rows = rp.aggregate(table, per_run)
    verdicts = rp.ordering_verdicts(table, rows)
    assert any("Rec. BPD, + BN + data-dep reest vs" in x and "REVERSED" in x for x in verdicts)
    assert any("Rec. BPD, + BN + data-dep reest + codebook LR" in x and "not separated" in x
               and "median better" in x for x in verdicts)
    rows1 = rp.aggregate(table, {k: v[:1] for k, v in per_run.items()})
    assert all("one seed" in x for x in rp.ordering_verdicts(table, rows1))


def test_table3_csv_has_one_row_per_bottleneck_and_variant():
    table = rp.TABLES["table3"]
    m = lambda x: {"uniform_nelbo_bits_per_dim": x, "perplexity": [1.0, 2.0], "perplexity_sum": 3.0}  # noqa: E731
    per_run = {("cifar10", "vanilla"): [m(5.0), m(5.2)], ("cifar10_5x1024", "vanilla"): [m(6.0), m(6.4)]}
    rows = list(csv.DictReader(io.StringIO(rp.csv_text(table, rp.aggregate(table, per_run)))))
    assert [(r["group"], r["variant"]) for r in rows] == [("cifar10", "vanilla"), ("cifar10_5x1024", "vanilla")]
    assert float(rows[0]["bpd_median"]) == pytest.approx(5.1) and rows[0]["bpd_paper"] == "4.679"
    assert float(rows[1]["bpd_max"]) == pytest.approx(6.4) and rows[1]["bpd_paper"] == "4.811"
    assert float(rows[0]["perplexity_median"]) == 3.0 and rows[0]["perplexity_paper"] == ""


def test_quantizer_overrides_reach_only_recipes_that_set_the_key():
    configs = REPO / "training" / "configs"
    sections = {"quantizer": {"reservoir_size": 64, "codebook_size": 32}, "schedule": {"max_steps": 3}}
    reest = rp.override_tokens(sections, configs / "speech" / "bn_reest.yaml", "x")
    vanilla = rp.override_tokens(sections, configs / "speech" / "vanilla.yaml", "x")
    baseline = rp.override_tokens(sections, configs / "speech" / "no_bottleneck.yaml", "x")
    assert reest == ["quantizer.reservoir_size=64", "quantizer.codebook_size=32", "schedule.max_steps=3"]
    assert vanilla == ["quantizer.codebook_size=32", "schedule.max_steps=3"]
    assert baseline == ["schedule.max_steps=3"]


def test_history_rows_repeated_after_a_resume_keep_the_last_copy(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    rows = [{"kind": "eval", "step": 5, "weights": "raw", "x": 1}, {"kind": "train", "step": 5, "x": 2},
            {"kind": "eval", "step": 5, "weights": "raw", "x": 3}]
    (logs / "history.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"kind\": \"tr")
    got = rp.read_history(tmp_path)
    assert sorted((r["kind"], r["x"]) for r in got) == [("eval", 3), ("train", 2)]


def test_bad_input_is_one_line_without_traceback(tmp_path):
    cmd = [sys.executable, "-m", "vq_hf.cli", "reproduce", "table3", "--budget", "nope", "--output", str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "nope.yaml does not exist" in p.stderr
    p = subprocess.run(cmd[:5] + ["--budget", "smoke", "--variants", "vanila", "--output", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2 and "['vanila'] not in table3" in p.stderr


# ---------------------------------------------------------------------------------------------- end to end
# A smoke table is a few minutes on an idle 2-core machine; a loaded shared one took 17 min for table3.
E2E_TIMEOUT = 3600


def _cmd(table, out, *extra, seeds=2):
    return [sys.executable, "-m", "vq_hf.cli", "reproduce", table, "--budget", "smoke", "--seeds", str(seeds),
            "--output", str(out), "--jobs", "2", *extra]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1")


def _check_table(out: pathlib.Path, table: rp.Table) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    expected = [(g.folder, v) for g in table.groups for v in g.variants]
    assert [(r["group"], r["variant"]) for r in rows] == expected
    main = table.groups[0].columns[0].key
    for r in rows:
        assert r["seeds"] == "2"
        lo, med, hi = float(r[f"{main}_min"]), float(r[f"{main}_median"]), float(r[f"{main}_max"])
        assert lo <= med <= hi
    report = (out / "report.md").read_text()
    for g in table.groups:
        for v in g.variants:
            assert f"| {rp.LABELS[v]} | 2" in report
    assert "budget **smoke**" in report and "Incomplete" not in report
    assert (out / "figures" / f"curves_{table.groups[0].folder}.png").is_file()
    assert (out / "figures" / f"code_usage_{table.groups[0].folder}.png").is_file()
    return rows


PAIR = "cifar10/vanilla,cifar10/bn_reest_cblr"  # the default suite's table: two rows, two seeds (4 runs)


@pytest.fixture(scope="module")
def table3_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("t3") / "D"
    p = subprocess.run(_cmd("table3", out, "--variants", PAIR), capture_output=True, text=True, cwd=REPO,
                       env=_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out


@pytest.mark.timeout(E2E_TIMEOUT)
def test_table3_smoke_report_and_table(table3_smoke):
    out = table3_smoke
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert [(r["group"], r["variant"]) for r in rows] == [("cifar10", "vanilla"), ("cifar10", "bn_reest_cblr")]
    for r in rows:
        assert r["seeds"] == "2"
        assert float(r["bpd_min"]) <= float(r["bpd_median"]) <= float(r["bpd_max"])
    report = (out / "report.md").read_text()
    assert "8 × 128 BPD: median [min–max]" in report
    assert "JPEG" in report  # the embedded sample is JPEG: not comparable with lossless CIFAR-10
    assert (out / "figures" / "curves_cifar10.png").is_file()
    assert (out / "figures" / "code_usage_cifar10.png").is_file()
    res = json.loads((out / "runs" / "cifar10" / "bn_reest_cblr" / "seed1" / "results.json").read_text())
    assert res["training"]["seed"] == 1 and len(res["code_counts"]["polyak"]) == 8


@pytest.mark.timeout(E2E_TIMEOUT)
def test_rerun_reuses_finished_runs(table3_smoke):
    before = (table3_smoke / "table.csv").read_text()
    t0 = time.monotonic()
    p = subprocess.run(_cmd("table3", table3_smoke, "--variants", PAIR), capture_output=True, text=True,
                       cwd=REPO, env=_env())
    assert p.returncode == 0, p.stderr[-2000:]
    assert "4 runs (4 already finished, 0 to train)" in p.stdout
    assert (table3_smoke / "table.csv").read_text() == before
    assert time.monotonic() - t0 < 120


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_table3_smoke(tmp_path):
    """Every row of Table III (both bottlenecks), two seeds: the issue's smoke command as written."""
    out = tmp_path / "D"
    p = subprocess.run(_cmd("table3", out), capture_output=True, text=True, cwd=REPO, env=_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = _check_table(out, rp.TABLES["table3"])
    assert len(rows) == 12
    assert "5 × 1024 BPD" in (out / "report.md").read_text()


@pytest.mark.timeout(E2E_TIMEOUT)
def test_kill_9_then_rerun_gives_the_same_table(table3_smoke, tmp_path):
    """SIGKILL the command while a run is mid-way (checkpoint written, results not), re-run: the same numbers as
    the uninterrupted table (seed 0 of two rows, compared with its per-run values)."""
    out = tmp_path / "D"
    cmd = _cmd("table3", out, "--variants", "cifar10/vanilla,cifar10/bn_reest_cblr", seeds=1)
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Wait for the mid-run checkpoint (step 5 of 10) of a run that has not finished, then kill -9.
    deadline = time.monotonic() + E2E_TIMEOUT / 2
    killed_mid_run = False
    while time.monotonic() < deadline and proc.poll() is None and not killed_mid_run:
        for run in out.glob("runs/cifar10/*/seed0"):
            if (run / "checkpoints" / "step_5" / "meta.json").is_file() and not (run / "results.json").exists():
                os.kill(proc.pid, signal.SIGKILL)
                killed_mid_run = True
                break
        time.sleep(0.05)
    proc.wait()
    assert killed_mid_run, "the command finished before a mid-run checkpoint was seen"
    assert not (out / "table.csv").exists()

    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "resuming from its latest checkpoint" in p.stdout
    full = {(r["group"], r["variant"], r["seed"]): r
            for r in csv.DictReader(io.StringIO((table3_smoke / "runs.csv").read_text()))}
    again = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    assert [(r["variant"], r["seed"]) for r in again] == [("vanilla", "0"), ("bn_reest_cblr", "0")]
    for r in again:
        ref = full[(r["group"], r["variant"], r["seed"])]
        assert (r["bpd"], r["perplexity"], r["steps"]) == (ref["bpd"], ref["perplexity"], ref["steps"])
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert [r["seeds"] for r in rows] == ["1", "1"] and rows[0]["bpd_median"] == rows[0]["bpd_min"]


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_table2_smoke(tmp_path):
    out = tmp_path / "D"
    p = subprocess.run(_cmd("table2", out), capture_output=True, text=True, cwd=REPO, env=_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    _check_table(out, rp.TABLES["table2"])
    res = json.loads((out / "runs" / "vanilla" / "seed0" / "results.json").read_text())
    assert res["data_variant"].startswith("stand-in handwriting")
    assert "stand-in" in (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_table1_smoke(tmp_path):
    out = tmp_path / "D"
    p = subprocess.run(_cmd("table1", out), capture_output=True, text=True, cwd=REPO, env=_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = _check_table(out, rp.TABLES["table1"])
    assert rows[-1]["variant"] == "no_bottleneck" and rows[-1]["perplexity_median"] == ""
    assert "stand-in speech" in (out / "report.md").read_text()

