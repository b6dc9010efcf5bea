"""Reservoir (Algorithm R), k-means++, Algorithm 1's schedule, save/load mid-schedule."""

import io
import pathlib
import sys

import pytest
import torch
from safetensors.torch import load, save

from vq_hf import VectorQuantizer
from vq_hf.quantization import (
    Reservoir,
    ReestimationSchedule,
    kmeans,
    kmeans_plusplus,
    set_update_boundary,
    start_epoch,
)
from vq_hf.quantization.kmeans import _lloyd, default_centers_per_round, seeding_rounds




# ----------------------------------------------------------------------------- reservoir

def test_reservoir_inclusion_is_uniform_chi_square_and_honours_mask():
    from scipy.stats import chi2

    trials, S = 3000, 8  # each "codebook" is an independent trial
    res = Reservoir(trials, S, 1)
    gen = torch.Generator().manual_seed(0)
    batches = [5, 7, 1, 9, 8, 3]  # real items per batch; collisions inside a batch are frequent
    item = 0
    for b in batches:
        # Interleave padding (value −1) that must never be sampled nor counted.
        vals = []
        for i in range(b):
            vals += [float(item), -1.0] if i % 2 == 0 else [float(item)]
            item += 1
        v = torch.tensor(vals)
        x = v.view(1, -1, 1).expand(trials, -1, 1).contiguous()
        res.insert(x, v >= 0, generator=gen)
    T = item
    assert torch.equal(res.seen, torch.full((trials,), T))
    kept = res.samples[:, :S, 0]
    assert (kept >= 0).all(), "a padded item entered the reservoir"
    # No item twice in one reservoir.
    assert all(len(set(row.tolist())) == S for row in kept[:200])
    counts = torch.bincount(kept.long().reshape(-1), minlength=T).double()
    expected = trials * S / T
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert chi2.sf(stat, T - 1) > 1e-3, (stat, counts.tolist())


def test_reservoir_fills_in_order_then_counts_and_reset():
    res = Reservoir(2, 4, 2)
    x = torch.arange(6, dtype=torch.float32).view(1, 3, 2).expand(2, 3, 2)
    res.insert(x)
    assert torch.equal(res.filled(), torch.tensor([3, 3]))
    assert torch.equal(res.contents(0), x[0])
    res.reset()
    assert torch.equal(res.filled(), torch.tensor([0, 0]))


# ----------------------------------------------------------------------------- k-means

def test_kmeans_recovers_well_separated_clusters():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(16, 4, generator=g) * 20
    x = (centres.unsqueeze(1) + 0.1 * torch.randn(16, 50, 4, generator=g)).reshape(-1, 4)
    res = kmeans(x, 16, generator=torch.Generator().manual_seed(2))
    d = torch.cdist(res.centroids, centres)
    assert torch.equal(torch.sort(d.argmin(1)).values, torch.arange(16))  # one centroid per cluster
    assert d.min(1).values.max() < 0.1
    assert res.converged


def test_kmeans_reseeds_empty_clusters():
    x = torch.cat([torch.zeros(10, 2), torch.ones(10, 2) * 5, torch.tensor([[20.0, 20.0]])])
    start = torch.tensor([[0.0, 0.0], [5.0, 5.0], [1000.0, 1000.0]])  # third centre starts empty
    centres, inertia, _, _, reseeded = _lloyd(x, start, max_iters=20, tol_abs=0.0, memory_mb=1)
    assert reseeded >= 1
    assert torch.allclose(torch.sort(centres[:, 0]).values, torch.tensor([0.0, 5.0, 20.0]))
    assert inertia == pytest.approx(0.0, abs=1e-4)
    # Duplicate points (zero D² weights) and k == N work too.
    dup = torch.tensor([[1.0, 1.0]] * 5 + [[2.0, 2.0]] * 5)
    assert kmeans(dup, 2, generator=torch.Generator().manual_seed(0)).inertia == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="need at least k=3 points, got 2"):
        kmeans(torch.randn(2, 2), 3)


def test_kmeans_inertia_within_two_percent_of_sklearn():
    from sklearn.cluster import KMeans

    g = torch.Generator().manual_seed(3)
    blobs = (torch.randn(40, 8, generator=g) * 3).repeat_interleave(30, 0) + torch.randn(1200, 8, generator=g)
    for data, k in ((blobs, 32), (torch.rand(1200, 8, generator=g), 32)):
        ours = [kmeans(data, k, generator=torch.Generator().manual_seed(s)).inertia for s in range(3)]
        ref = [KMeans(k, init="k-means++", n_init=1, random_state=s).fit(data.numpy()).inertia_ for s in range(3)]
        assert sum(ours) / 3 <= 1.02 * sum(ref) / 3, (ours, ref)


def test_kmeans_is_reproducible_with_a_seeded_generator():
    x = torch.randn(300, 3)
    a = kmeans(x, 10, n_init=2, generator=torch.Generator().manual_seed(5))
    b = kmeans(x, 10, n_init=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.centroids, b.centroids)


# ----------------------------------------------------------------------------- k-means++ seeding in rounds

def _greedy_kmeans_plusplus_reference(x, k, generator):
    """kmeans_plusplus as it was before batched rounds (one centre per round), copied verbatim."""
    import math

    N, D = x.shape
    n_local_trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(-1)

    def sq_dist_to(c):
        c_sq = (c * c).sum(-1, keepdim=True)
        return (c_sq + x_sq.unsqueeze(0) - 2.0 * (c @ x.t())).clamp_min_(0.0)

    centers = torch.empty(k, D, dtype=x.dtype, device=x.device)
    first = torch.randint(N, (1,), device=x.device, generator=generator)
    centers[0:1] = x.index_select(0, first)
    closest = sq_dist_to(centers[0:1]).squeeze(0)
    for c in range(1, k):
        weights = closest + (closest.sum() <= 0).to(closest.dtype)
        cand = torch.multinomial(weights, n_local_trials, replacement=True, generator=generator)
        d_cand = sq_dist_to(x.index_select(0, cand))
        potential = torch.minimum(d_cand, closest.unsqueeze(0)).sum(-1)
        best = torch.argmin(potential).view(1)
        closest = torch.minimum(closest, d_cand.index_select(0, best).squeeze(0))
        centers[c : c + 1] = x.index_select(0, cand.index_select(0, best))
    return centers


def _separated_blobs(n_blobs, per_blob, dim, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n_blobs, dim, generator=g) * 10).repeat_interleave(per_blob, 0) + 0.1 * torch.randn(
        n_blobs * per_blob, dim, generator=g)


def test_one_centre_per_round_is_the_greedy_seeding_exactly():
    x = torch.randn(700, 5, generator=torch.Generator().manual_seed(0))
    x[:30] = x[0]  # repeated points: zero D² weights
    for k, per_round in ((1, 1), (40, 1), (129, None)):  # k ≤ 129: the default is one per round
        for seed in (0, 1):
            ours = kmeans_plusplus(x, k, generator=torch.Generator().manual_seed(seed), centers_per_round=per_round)
            ref = _greedy_kmeans_plusplus_reference(x, k, torch.Generator().manual_seed(seed))
            assert torch.equal(ours, ref), (k, per_round, seed)


@pytest.mark.parametrize("per_round", [None, 7, 16])
def test_batched_seeding_takes_distinct_rows_of_x_reproducibly(per_round):
    x = torch.randn(600, 4, generator=torch.Generator().manual_seed(1))
    centres = kmeans_plusplus(x, 300, generator=torch.Generator().manual_seed(2), centers_per_round=per_round)
    rows = torch.cdist(centres, x).argmin(1)
    assert torch.equal(centres, x[rows]) and len(set(rows.tolist())) == 300
    again = kmeans_plusplus(x, 300, generator=torch.Generator().manual_seed(2), centers_per_round=per_round)
    other = kmeans_plusplus(x, 300, generator=torch.Generator().manual_seed(3), centers_per_round=per_round)
    assert torch.equal(centres, again) and not torch.equal(centres, other)
    # k == N: every row exactly once, although the last rounds have fewer points left than draws.
    everything = kmeans_plusplus(x[:50], 50, generator=torch.Generator().manual_seed(2), centers_per_round=16)
    assert sorted(torch.cdist(everything, x[:50]).argmin(1).tolist()) == list(range(50))


def test_batched_seeding_does_not_sync():
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    import profiling  # benchmarks/profiling.py, a development tool outside the package
    x = torch.randn(400, 4)
    x[:20] = x[0]
    with profiling.HostSyncCounter() as syncs:
        kmeans_plusplus(x, 200, generator=torch.Generator().manual_seed(0), centers_per_round=8)
    syncs.assert_count(0)


def test_batched_seeding_inertia_within_two_percent_of_sklearn():
    """16 centres per round on two cases that break naive batching (tests fail without either safeguard):
    one centre per well-separated blob (two centres in one blob leave another one empty: ≫ 2 % worse
    without dropping near-duplicate draws or without the taper) and a Gaussian mixture (3 % worse
    without the dropping)."""
    from sklearn.cluster import KMeans

    g = torch.Generator().manual_seed(3)
    blobs = _separated_blobs(256, 8, 16, seed=3)
    mixture = (3 * torch.randn(512, 16, generator=g))[torch.randint(0, 512, (4096,), generator=g)]
    mixture += torch.randn(4096, 16, generator=g)
    for data in (blobs, mixture):
        ours = [kmeans(data, 256, generator=torch.Generator().manual_seed(s), centers_per_round=16).inertia
                for s in range(3)]
        ref = [KMeans(256, init="k-means++", n_init=1, random_state=s).fit(data.numpy()).inertia_ for s in range(3)]
        assert sum(ours) / 3 <= 1.02 * sum(ref) / 3, (ours, ref)


def test_default_centres_per_round_bounds_the_rounds():
    import math

    for k, expected in ((1, 1), (2, 1), (129, 1), (130, 2), (512, 4), (2048, 16), (4096, 32), (8192, 64)):
        trials = 2 + int(math.log(k))
        per_round = default_centers_per_round(k, 10 * k, trials)
        sizes = seeding_rounds(k, per_round)
        assert per_round == expected, k
        assert sum(sizes) == k - 1 and max(sizes, default=1) <= per_round
        assert len(sizes) <= (k - 1 if per_round == 1 else 150), (k, len(sizes))
        remaining = [k - 1 - sum(sizes[:i]) for i in range(len(sizes))]
        assert all(b <= -(-r // 4) for b, r in zip(sizes, remaining))  # the taper: ≤ ¼ of what is left
    # The round's (B · trials, N) distance block stays within the search budget (256 MiB by default).
    per_round = default_centers_per_round(65536, 655360, 13)
    assert per_round * 13 * 655360 * 4 <= 256 << 20 and per_round >= 1


def test_centers_per_round_is_validated():
    x = torch.randn(20, 2)
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="kmeans_plusplus: centers_per_round must be None or an int >= 1"):
            kmeans_plusplus(x, 4, centers_per_round=bad)
        with pytest.raises(ValueError, match="kmeans: centers_per_round must be None or an int >= 1"):
            kmeans(x, 4, centers_per_round=bad)


# ----------------------------------------------------------------------------- schedule

def test_schedule_positions():
    s = ReestimationSchedule(warmup=5, every=3, length=7, reestimating=True)
    assert s.reestimation_positions(40) == [5, 8, 11]
    assert [p for p in range(15) if s.sampling(p)] == list(range(12))
    assert ReestimationSchedule(warmup=4, every=3, length=0, reestimating=True).reestimation_positions(20) == [4]
    assert ReestimationSchedule(warmup=4, reestimating=False).reestimation_positions(20) == []


def _stream(n, batch=24, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=g) * 2 + 1 for _ in range(n)]


def test_no_quantization_before_warmup_and_reestimation_exactly_on_schedule():
    vq = VectorQuantizer(4, 8, quantizer_type="reestimating", warmup_steps=5, reestimate_every=3,
                         reestimate_steps=7, reservoir_size=64)
    events = []
    for step, x in enumerate(_stream(20)):
        before = vq.codebook.detach().clone()
        out = vq(x)
        if step < 5:
            assert not out.quantizing and torch.equal(out.quantized, x) and float(out.loss) == 0.0
        else:
            assert out.quantizing and torch.equal(out.quantized, vq.decode(out.codes).detach())
        changed = not torch.equal(before, vq.codebook.detach())
        assert changed == out.reestimated  # nothing else touches the codebook without an optimizer
        if out.reestimated:
            events.append(step)
    assert events == [5, 8, 11]
    assert int(vq.num_reestimations) == 3 and int(vq.num_skipped_reestimations) == 0
    assert int(vq.reservoir.seen[0]) == 0  # sampling stopped after the last re-estimation


def test_too_few_samples_skips_with_warning_and_counts():
    vq = VectorQuantizer(4, 32, quantizer_type="reestimating", warmup_steps=1, reestimate_every=1,
                         reestimate_steps=3, reservoir_size=64)
    vq(torch.randn(10, 4))
    with pytest.warns(RuntimeWarning, match="skipping re-estimation.*20 samples.*codebook_size=32"):
        out = vq(torch.randn(10, 4))
    assert not out.reestimated and int(vq.num_skipped_reestimations) == 1
    assert vq(torch.randn(20, 4)).reestimated  # the reservoir kept filling; next scheduled step works


def test_epoch_mode_matches_reference_schedule():
    # Reference: epochs 0-1 pass through (reservoir reset at each), k-means at the first step of epochs 2 and 3.
    vq = VectorQuantizer(4, 4, quantizer_type="reestimating", warmup_steps=2, reestimate_every=1,
                         reestimate_steps=2, reservoir_size=1000, reestimation_unit="epochs")
    events = []
    for epoch in range(6):
        start_epoch(vq, epoch)
        for i, x in enumerate(_stream(3, batch=10, seed=epoch)):
            out = vq(x)
            assert out.quantizing == (epoch >= 2)
            if out.reestimated:
                events.append((epoch, i))
            if epoch == 1 and i == 2:
                assert int(vq.reservoir.seen[0]) == 30  # epoch-0 samples were discarded
    assert events == [(2, 0), (3, 0)]


def _train(vq, opt, xs, start, stop, accumulate=1):
    outs = []
    for step in range(start, stop):
        for m in range(accumulate):
            set_update_boundary(vq, m == accumulate - 1)
            out = vq(xs[step][m::accumulate])
            outs.append((out.quantized.detach().clone(), out.codes.clone(), out.loss.detach().clone()))
            (out.loss + out.quantized.pow(2).mean()).backward()
        opt.step()
        opt.zero_grad()
    return outs


@pytest.mark.parametrize("quantizer_type", ["reestimating", "ema"])
def test_save_load_mid_schedule_continues_identically(quantizer_type):
    def make():
        torch.manual_seed(0)
        vq = VectorQuantizer(8, 8, num_codebooks=2, quantizer_type=quantizer_type, batch_norm=True,
                             warmup_steps=3, reestimate_every=2, reestimate_steps=5, reservoir_size=40, seed=7)
        return vq, torch.optim.Adam(vq.parameters(), lr=1e-2)

    xs = [x.repeat(1, 2) for x in _stream(12, batch=16)]
    ref, ref_opt = make()
    ref_outs = _train(ref, ref_opt, xs, 0, 12, accumulate=2)

    first, first_opt = make()
    _train(first, first_opt, xs, 0, 4, accumulate=2)  # step 4: after the first k-means, reservoir refilling
    blob = save({k: v.contiguous() for k, v in first.state_dict().items()})  # safetensors round trip
    opt_buf = io.BytesIO()
    torch.save(first_opt.state_dict(), opt_buf)

    resumed = VectorQuantizer(8, 8, num_codebooks=2, quantizer_type=quantizer_type, batch_norm=True,
                              warmup_steps=3, reestimate_every=2, reestimate_steps=5, reservoir_size=40, seed=7)
    resumed(torch.randn(16, 8))  # make the fresh module's host mirrors stale on purpose
    resumed.load_state_dict(load(blob))
    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    opt_buf.seek(0)
    resumed_opt.load_state_dict(torch.load(opt_buf))
    assert resumed.current_step == 4
    outs = _train(resumed, resumed_opt, xs, 4, 12, accumulate=2)
    for (q, c, l), (rq, rc, rl) in zip(outs, ref_outs[8:]):
        assert torch.equal(c, rc) and torch.equal(q, rq) and torch.equal(l, rl)
    for (k, v), (_, rv) in zip(resumed.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(v, rv), k


# ----------------------------------------------------------------------------- the paper's claim in miniature

def _drifting_mixture(steps, batch, dim, n_modes, seed):
    g = torch.Generator().manual_seed(seed)
    modes = torch.randn(n_modes, dim, generator=g) * 3.0
    offset = torch.full((dim,), 8.0)  # un-centred: far from the origin where codewords start
    drift = torch.randn(dim, generator=g) * 0.02
    for t in range(steps):
        idx = torch.randint(n_modes, (batch,), generator=g)
        yield modes[idx] + offset + t * drift + 0.3 * torch.randn(batch, dim, generator=g)


def _run(vq, steps=100):
    opt = torch.optim.Adam(vq.parameters(), lr=1e-2)
    ppl = []
    for x in _drifting_mixture(steps, 128, 8, 64, seed=0):
        out = vq(x)
        if out.quantizing:
            out.loss.backward()
            opt.step()
            opt.zero_grad()
        ppl.append(float(out.perplexity[0]))
    return sum(ppl[-20:]) / 20


def test_collapse_vanilla_without_bn_vs_bn_reestimating():
    """Vanilla VQ collapses; BN + re-estimation does not. Re-estimation without BN also clears these bars on this
    slowly drifting mixture, so this test says nothing about BN: test_quantization_bn_rescue.py has the no-BN control."""
    torch.manual_seed(0)
    vanilla = _run(VectorQuantizer(8, 64, quantizer_type="vanilla"))
    robust = _run(VectorQuantizer(8, 64, quantizer_type="reestimating", batch_norm=True, warmup_steps=10,
                                  reestimate_every=15, reestimate_steps=45, reservoir_size=1024))
    print(f"collapse test: batch perplexity vanilla={vanilla:.2f} bn+reestimating={robust:.2f} (K=64)")
    assert vanilla < 8, vanilla  # collapsed onto a handful of codes
    assert robust >= 3 * vanilla, (vanilla, robust)
    assert robust > 32, robust  # most of the 64 codes in use
