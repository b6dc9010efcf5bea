"""Correctness of the fused nearest-code kernel (vq_hf.quantization.fused_search).

Without a GPU the kernel runs through Triton's interpreter, which must be switched on before Triton is
first imported; so all interpreter cases run in ONE subprocess (TRITON_INTERPRET=1) and the assertions
happen here against an fp64 reference. With CUDA the same cases also run on the GPU at every precision.
"""

import os
import pathlib
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from vq_hf.quantization import fused_search  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
NEAR_TIE = 1e-6  # the bar: disagreement with fp64 only where the relative gap is below this


def _gathered(codebook, codes):
    return torch.gather(codebook, 1, codes[..., None].expand(-1, -1, codebook.shape[-1]))


def _cases():
    gen = torch.Generator().manual_seed(1234)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    cases = {}
    # Tails: N, K not multiples of any tile; G grid.
    cases["tails"] = dict(x=randn(2, 300, 64), codebook=randn(2, 200, 64))
    # Tiny forced tiles: D loop with a D tail (40 = 16 + 16 + 8), N and K tails, G = 3.
    cases["small_tiles"] = dict(x=randn(3, 53, 40), codebook=randn(3, 37, 40),
                                block_sizes=dict(BLOCK_N=16, BLOCK_K=16, BLOCK_D=16))
    cases["d256"] = dict(x=randn(2, 70, 256), codebook=randn(2, 90, 256))
    cases["k1_d3"] = dict(x=randn(1, 9, 3), codebook=randn(1, 1, 3))
    # Exact duplicates: codes 5 and 9 equal, inputs exactly on them -> the lower index, distance 0.
    cb = randn(1, 20, 8)
    cb[0, 9] = cb[0, 5]
    x = torch.cat([cb[:, 5:6].repeat(1, 4, 1), randn(1, 6, 8)], dim=1)
    cases["ties"] = dict(x=x, codebook=cb)
    # Large common offset, tight codebook, inputs close to codes: the expansion cancels badly uncentred.
    centres = 100.0 + 0.2 * randn(1, 256, 64)
    pick = torch.randint(0, 256, (1, 512), generator=gen)
    cases["offset"] = dict(x=_gathered(centres, pick) + 0.05 * randn(1, 512, 64), codebook=centres)
    # Non-contiguous input (a transposed view), with the gather and EMA statistics epilogue.
    base = randn(2, 48, 150)
    cases["strided_stats"] = dict(x=base.transpose(1, 2), codebook=randn(2, 33, 48), stats=True)
    cases["empty"] = dict(x=randn(2, 0, 16), codebook=randn(2, 5, 16))
    # Weighted EMA statistics (padding = weight 0, left out); padding rows hold huge values that would
    # dominate the sums if they leaked in.
    weights = (torch.rand(150, generator=gen) > 0.4).float()
    x = randn(2, 150, 24) + 1e6 * (1 - weights)[None, :, None]
    cases["weighted"] = dict(x=x, codebook=randn(2, 19, 24), weights=weights)
    # Two codewords 0.01 apart, 2000 from the codebook mean (centring cannot help): the fp32 expansion's
    # rounding (~0.5) swamps their distance gap (~1e-4), so only the fp64 re-check orders them right.
    cb = torch.cat([torch.tensor([[1000.0] + [0.0] * 7, [1000.0, 0.01] + [0.0] * 6]),
                    -1000.0 + randn(30, 8)])[None]
    x = cb[:, :1] + 0.004 * randn(1, 200, 8)
    cases["recheck"] = dict(x=x, codebook=cb)
    return cases


_CHILD = r"""
import sys, torch
from vq_hf.quantization import fused_search

# Count kernel launches and torch-fallback searches, so that the parent can tell the kernel really served a
# call (a silent fallback would make every triton-vs-torch comparison below compare torch with itself).
class _Counting:
    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def counted(*args, **kwargs):
            self.launches += 1
            return launch(*args, **kwargs)

        return counted

fused_search._JIT_KERNEL = kernel = _Counting(fused_search._JIT_KERNEL)
fallbacks = []
_fallback = fused_search._torch_fallback
fused_search._torch_fallback = lambda *a, **k: fallbacks.append(1) or _fallback(*a, **k)

def calls():
    return dict(launches=kernel.launches, fallbacks=len(fallbacks))

cases = torch.load(sys.argv[1])
out = {}
for name, c in cases.items():
    g, k, d = c["codebook"].shape
    kw = {}
    if c.get("stats"):
        kw = dict(return_quantized=True, counts=torch.zeros(g, k), sums=torch.zeros(g, k, d))
    r = fused_search.fused_quantize(c["x"], c["codebook"], block_sizes=c.get("block_sizes"), **kw)
    out[name] = dict(codes=r.codes, distances=r.distances, quantized=r.quantized, counts=r.counts, sums=r.sums)
codes, dist = fused_search.fused_nearest_codes(cases["tails"]["x"], cases["tails"]["codebook"])
out["contract"] = dict(codes=codes, distances=dist)
w = cases["weighted"]
g, k, d = w["codebook"].shape
counts, sums = torch.zeros(g, k), torch.zeros(g, k, d)
codes, _ = fused_search.fused_nearest_codes(w["x"], w["codebook"], counts=counts, sums=sums, weights=w["weights"])
out["weighted"] = dict(codes=codes, counts=counts, sums=sums)

# The quantizer on both search backends: same inputs, same steps, everything compared in the parent.
from vq_hf.quantization import VectorQuantizer
for qt in ("vanilla", "ema"):
    for backend in ("torch", "triton"):
        before = calls()
        torch.manual_seed(0)
        vq = VectorQuantizer(16, 24, num_codebooks=2, quantizer_type=qt, batch_norm=True, seed=3,
                             search_backend=backend).train()
        record = []
        for step in range(3):
            x = (torch.randn(5, 13, 16) * 2).requires_grad_(True)
            mask = torch.rand(5, 13) > 0.3
            o = vq(x, mask=mask)
            ((o.quantized * torch.randn(5, 13, 16)).sum() + o.loss).backward()
            record.append(dict(codes=o.codes, quantized=o.quantized.detach(), loss=o.loss.detach(), grad=x.grad))
        after = calls()
        out[f"quantizer_{qt}_{backend}"] = dict(steps=record, state={k: v.clone() for k, v in vq.state_dict().items()},
                                               calls={k: after[k] - before[k] for k in after})

# k-means: Lloyd steps through the kernel (assignment + cluster statistics in its epilogue) vs the torch path.
from vq_hf.quantization import kmeans
gen = torch.Generator().manual_seed(9)
points = torch.cat([3.0 * torch.randn(1, 16, generator=gen) + torch.randn(40, 16, generator=gen) for _ in range(30)])
for backend in ("torch", "triton"):
    before = calls()
    r = kmeans(points, 24, max_iters=30, generator=torch.Generator().manual_seed(5), search_backend=backend)
    after = calls()
    out[f"kmeans_{backend}"] = dict(centroids=r.centroids, inertia=r.inertia, iterations=r.iterations,
                                    calls={k: after[k] - before[k] for k in after})
out["calls"] = calls()
torch.save(out, sys.argv[2])
"""


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    """(cases, outputs of the kernel under Triton's interpreter), one subprocess for all cases."""
    tmp = tmp_path_factory.mktemp("fused")
    cases = _cases()
    torch.save(cases, tmp / "in.pt")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp / "in.pt"), str(tmp / "out.pt")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"interpreter run failed:\n{proc.stderr[-4000:]}"
    return cases, torch.load(tmp / "out.pt")


def _assert_matches_fp64(x, codebook, codes, distances):
    d64 = torch.cdist(x.double(), codebook.double(), compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # (G, N, K), exact
    ref_d, ref = d64.min(dim=-1)
    assert codes.dtype == torch.int64 and codes.shape == ref.shape
    assert distances.dtype == torch.float32 and distances.shape == ref.shape
    wrong = codes != ref
    if wrong.any():
        chosen = d64.gather(-1, codes[..., None]).squeeze(-1)
        gap = (chosen - ref_d) / ref_d.clamp_min(1e-300)
        assert (gap[wrong] < NEAR_TIE).all(), f"{int(wrong.sum())} codes differ beyond near-ties: {gap[wrong].max()}"
    chosen = d64.gather(-1, codes[..., None]).squeeze(-1)
    # The returned distance is the fp64 re-check rounded to fp32.
    torch.testing.assert_close(distances.double(), chosen, rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("name", ["tails", "small_tiles", "d256", "k1_d3", "offset", "strided_stats"])
def test_interpreted_kernel_matches_fp64_argmin(interpreted, name):
    cases, out = interpreted
    c, o = cases[name], out[name]
    _assert_matches_fp64(c["x"], c["codebook"], o["codes"], o["distances"])


def test_interpreted_fp64_recheck_orders_candidates_the_expansion_cannot(interpreted):
    cases, out = interpreted
    x, cb = cases["recheck"]["x"], cases["recheck"]["codebook"]
    centred = cb - cb.mean(1, keepdim=True)
    xc = x - cb.mean(1, keepdim=True)
    expansion = ((centred * centred).sum(-1)[:, None, :] - 2.0 * xc @ centred.transpose(1, 2)).argmin(-1)
    ref = torch.cdist(x.double(), cb.double(), compute_mode="donot_use_mm_for_euclid_dist").argmin(-1)
    assert (expansion != ref).any()  # the case has teeth: fp32 arithmetic alone gets some rows wrong
    assert torch.equal(out["recheck"]["codes"], ref)
    _assert_matches_fp64(x, cb, out["recheck"]["codes"], out["recheck"]["distances"])


def test_interpreted_exact_ties_take_lowest_index(interpreted):
    cases, out = interpreted
    codes, dist = out["ties"]["codes"], out["ties"]["distances"]
    assert codes[0, :4].tolist() == [5, 5, 5, 5]
    assert dist[0, :4].tolist() == [0.0, 0.0, 0.0, 0.0]
    _assert_matches_fp64(cases["ties"]["x"], cases["ties"]["codebook"], codes, dist)


def test_interpreted_gather_and_ema_statistics(interpreted):
    cases, out = interpreted
    x, cb = cases["strided_stats"]["x"], cases["strided_stats"]["codebook"]
    o = out["strided_stats"]
    codes = o["codes"]
    assert torch.equal(o["quantized"], _gathered(cb, codes))
    g, k, d = cb.shape
    counts = torch.zeros(g, k).scatter_add_(1, codes, torch.ones(codes.shape))
    sums = torch.zeros(g, k, d).index_put_(
        (torch.arange(g)[:, None].expand_as(codes), codes), x, accumulate=True)
    assert torch.equal(o["counts"], counts)
    torch.testing.assert_close(o["sums"], sums, rtol=1e-5, atol=1e-5)


def test_interpreted_contract_and_empty(interpreted):
    cases, out = interpreted
    assert out["calls"]["fallbacks"] == 0  # every fused call of the child ran the kernel
    assert torch.equal(out["contract"]["codes"], out["tails"]["codes"])
    assert torch.equal(out["contract"]["distances"], out["tails"]["distances"])
    assert out["empty"]["codes"].shape == (2, 0) and out["empty"]["distances"].shape == (2, 0)


def test_interpreted_statistics_leave_out_zero_weight_rows(interpreted):
    cases, out = interpreted
    c, o = cases["weighted"], out["weighted"]
    x, cb, w = c["x"], c["codebook"], c["weights"]
    _assert_matches_fp64(x, cb, o["codes"], fused_search._torch_fallback(x, cb)[1])
    g, k, d = cb.shape
    keep = w.bool()
    counts = torch.zeros(g, k).scatter_add_(1, o["codes"], w.expand(g, -1).contiguous())
    sums = torch.zeros(g, k, d)
    for gi in range(g):
        sums[gi].index_add_(0, o["codes"][gi][keep], x[gi][keep])
    assert torch.equal(o["counts"], counts)
    torch.testing.assert_close(o["sums"], sums, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("quantizer_type", ["vanilla", "ema"])
def test_quantizer_on_the_triton_backend_matches_the_torch_backend(interpreted, quantizer_type):
    """Codes, outputs, losses, input gradients and the whole state (codebook, EMA statistics accumulated in
    the kernel's epilogue, BN and usage buffers) agree over three masked training steps with 2 codebooks."""
    _, out = interpreted
    ref, fused = out[f"quantizer_{quantizer_type}_torch"], out[f"quantizer_{quantizer_type}_triton"]
    # The kernel served each of the three training forwards (no silent fallback); the torch backend never.
    assert fused["calls"] == {"launches": 3, "fallbacks": 0}
    assert ref["calls"] == {"launches": 0, "fallbacks": 0}
    for r, f in zip(ref["steps"], fused["steps"]):
        assert torch.equal(r["codes"], f["codes"])
        assert torch.equal(r["quantized"], f["quantized"])
        torch.testing.assert_close(r["loss"], f["loss"], rtol=1e-6, atol=0)
        torch.testing.assert_close(r["grad"], f["grad"], rtol=1e-6, atol=1e-7)
    assert ref["state"].keys() == fused["state"].keys()
    for name in ref["state"]:
        torch.testing.assert_close(ref["state"][name], fused["state"][name], rtol=1e-5, atol=1e-6, msg=name)


def test_kmeans_lloyd_steps_through_the_kernel_match_the_torch_path(interpreted):
    _, out = interpreted
    ref, fused = out["kmeans_torch"], out["kmeans_triton"]
    # One launch per Lloyd iteration at least (assignment + statistics), none on the torch path, no fallback.
    assert fused["calls"]["launches"] >= fused["iterations"] and fused["calls"]["fallbacks"] == 0
    assert ref["calls"] == {"launches": 0, "fallbacks": 0}
    assert fused["iterations"] == ref["iterations"]
    torch.testing.assert_close(fused["centroids"], ref["centroids"], rtol=1e-5, atol=1e-5)
    assert abs(fused["inertia"] / ref["inertia"] - 1) < 1e-6


def test_backend_selection_errors_name_the_cause():
    from vq_hf.quantization import VectorQuantizer
    from vq_hf.quantization import select_search

    x = torch.randn(1, 4, 8)
    assert select_search(x, "torch").accumulates_statistics is False
    assert select_search(x, "auto").accumulates_statistics is False  # CPU tensors: the torch path
    with pytest.raises(ValueError, match="search backend must be one of"):
        select_search(x, "cuda")
    with pytest.raises(ValueError, match="does not accumulate statistics"):
        select_search(x, "torch")(x, torch.randn(1, 3, 8), counts=torch.zeros(1, 3), sums=torch.zeros(1, 3, 8))
    with pytest.raises(ValueError, match="search_backend"):
        VectorQuantizer(8, 4, search_backend="fast")
    from vq_hf.quantization import kmeans

    with pytest.raises(ValueError, match="search backend must be one of"):
        kmeans(torch.randn(10, 2), 3, search_backend="gpu")
    if not fused_search.interpreting():
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            VectorQuantizer(8, 4, search_backend="triton")(torch.randn(3, 8))


def test_availability_and_input_errors():
    x, cb = torch.randn(2, 10, 8), torch.randn(2, 4, 8)
    assert fused_search.is_available(x) is False  # CPU: search.py's GEMM path serves it
    with pytest.raises(ValueError, match="precision"):
        fused_search.fused_nearest_codes(x, cb, precision="fp16")
    with pytest.raises(ValueError, match=r"\(G, N, D\)"):
        fused_search.fused_nearest_codes(x[0], cb)
    with pytest.raises(ValueError, match="disagree"):
        fused_search.fused_nearest_codes(x, torch.randn(2, 4, 7))
    with pytest.raises(TypeError, match="float32"):
        fused_search.fused_nearest_codes(x.double(), cb.double())
    with pytest.raises(ValueError, match="K = 0"):
        fused_search.fused_nearest_codes(x, torch.randn(2, 0, 8))
    with pytest.raises(ValueError, match="counts and sums"):
        fused_search.fused_quantize(x, cb, counts=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="weights only weigh the statistics"):
        fused_search.fused_quantize(x, cb, weights=torch.ones(10))
    with pytest.raises(ValueError, match=r"weights must be a float32 \(10,\)"):
        fused_search.fused_quantize(x, cb, counts=torch.zeros(2, 4), sums=torch.zeros(2, 4, 8), weights=torch.ones(9))
    if not fused_search.interpreting():
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            fused_search.fused_nearest_codes(x, cb)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", fused_search.PRECISIONS)
def test_cuda_kernel_matches_fp64_argmin(precision):
    cases = _cases()
    for name, c in cases.items():
        if name == "empty":
            continue
        x, cb = c["x"].cuda(), c["codebook"].cuda()
        g, k, d = cb.shape
        counts, sums = torch.zeros(g, k, device="cuda"), torch.zeros(g, k, d, device="cuda")
        r = fused_search.fused_quantize(x, cb, precision=precision, return_quantized=True, counts=counts, sums=sums)
        if precision != "tf32":
            _assert_matches_fp64(c["x"], c["codebook"], r.codes.cpu(), r.distances.cpu())
        else:  # approximate mode: every code is one of the TF32 search's two best, re-checked exactly
            d64 = torch.cdist(c["x"].double(), c["codebook"].double(), compute_mode="donot_use_mm_for_euclid_dist")
            chosen = d64.pow(2).gather(-1, r.codes.cpu()[..., None]).squeeze(-1)
            assert chosen.sum() <= d64.pow(2).min(-1).values.sum() * (1 + 1e-3) + 1e-6
        assert torch.equal(r.quantized, _gathered(cb, r.codes))
        assert torch.equal(r.counts, torch.zeros(g, k, device="cuda").scatter_add_(
            1, r.codes, torch.ones(r.codes.shape, device="cuda")))
    # A realistic size: standardised latents against K = 4096.
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(1, 65536, 64, device="cuda", generator=gen)
    cb = torch.randn(1, 4096, 64, device="cuda", generator=gen)
    codes, dist = fused_search.fused_nearest_codes(x, cb, precision=precision)
    d64 = torch.cdist(x.double(), cb.double(), compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    ref_d, ref = d64.min(-1)
    chosen = d64.gather(-1, codes[..., None]).squeeze(-1)
    wrong_rate = (codes != ref).double().mean().item()
    if precision == "tf32":
        # Approximate mode: the best code may miss the top two; its distortion stays within TF32 error.
        assert wrong_rate < 1e-2, wrong_rate
        assert (chosen.sum() / ref_d.sum() - 1).abs().item() < 1e-4
    else:
        assert ((chosen - ref_d) / ref_d)[codes != ref].lt(NEAR_TIE).all(), wrong_rate
