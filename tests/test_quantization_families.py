"""Quantizer families beyond the paper: residual VQ, dead-code revival, cosine codebooks, the rotation trick
and finite scalar quantization — behaviour, reference gradients, DDP and exact resume."""

import io
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load, save

from vq_hf.quantization import (
    FiniteScalarQuantizer,
    ResidualVectorQuantizer,
    VectorQuantizer,
    rotation_trick,
    set_update_boundary,
    start_epoch,
)

# ----------------------------------------------------------------------------- residual VQ


@pytest.mark.parametrize("quantizer_type", ["vanilla", "ema"])
def test_residual_vq_equals_sequential_single_quantizers_on_residuals(quantizer_type):
    L, seed = 3, 5
    rvq = ResidualVectorQuantizer(8, 16, L, quantizer_type=quantizer_type, seed=seed, commitment_cost=0.3)
    singles = [VectorQuantizer(8, 16, quantizer_type=quantizer_type, seed=seed + l, commitment_cost=0.3) for l in range(L)]
    params = [p for p in rvq.parameters() if p.requires_grad]
    ref_params = [p for s in singles for p in s.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2) if params else None
    ref_opt = torch.optim.Adam(ref_params, lr=1e-2) if ref_params else None
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(8, generator=g)
    for _ in range(4):
        x = torch.randn(2, 20, 8, generator=g) * 2 + 1
        xa = x.clone().requires_grad_(True)
        out = rvq(xa)
        (out.loss + (out.quantized * weight).sum()).backward()

        xb = x.clone().requires_grad_(True)
        residual, total, loss, codes = xb, 0, 0, []
        for s in singles:
            o = s(residual)
            residual = residual - o.quantized.detach()
            total = total + o.quantized.detach()
            loss = loss + o.loss
            codes.append(o.codes[..., 0])
        ref_out = xb + (total - xb).detach()
        (loss + (ref_out * weight).sum()).backward()

        assert torch.equal(out.codes, torch.stack(codes, -1))
        torch.testing.assert_close(out.quantized, ref_out, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.loss, loss)
        torch.testing.assert_close(xa.grad, xb.grad)
        for level, s in zip(rvq.levels, singles):
            if quantizer_type == "vanilla":
                torch.testing.assert_close(level.codebook.grad, s.codebook.grad)
        for o in (opt, ref_opt):
            if o is not None:
                o.step()
                o.zero_grad()
        for level, s in zip(rvq.levels, singles):
            torch.testing.assert_close(level.codebook, s.codebook)
    rvq.eval()
    out = rvq(x)
    assert torch.equal(rvq.decode(out.codes), out.quantized)
    two = rvq(x, num_quantizers=2)
    assert two.codes.shape[-1] == 2 and torch.equal(two.codes, out.codes[..., :2])
    assert torch.equal(rvq.decode(two.codes), two.quantized)


def _drifting_mixture(steps, batch, dim, n_modes, seed):
    g = torch.Generator().manual_seed(seed)
    modes = torch.randn(n_modes, dim, generator=g) * 3.0
    offset = torch.full((dim,), 8.0)  # un-centred: far from the origin where codewords start
    drift = torch.randn(dim, generator=g) * 0.02
    for t in range(steps):
        idx = torch.randint(n_modes, (batch,), generator=g)
        yield modes[idx] + offset + t * drift + 0.5 * torch.randn(batch, dim, generator=g)


def _train_rvq(rvq, steps=100):
    opt = torch.optim.Adam(rvq.parameters(), lr=1e-2)
    last = []
    for t, x in enumerate(_drifting_mixture(steps, 128, 8, 64, seed=0)):
        out = rvq(x)
        if out.quantizing:
            out.loss.backward()
            opt.step()
            opt.zero_grad()
        if t >= steps - 20:
            last.append(out.perplexity)
    return torch.stack(last).mean(0)


def test_reestimated_rvq_keeps_every_level_in_use_on_a_drifting_stream():
    torch.manual_seed(0)
    vanilla = _train_rvq(ResidualVectorQuantizer(8, 32, 3, quantizer_type="vanilla"))
    robust = _train_rvq(ResidualVectorQuantizer(8, 32, 3, quantizer_type="reestimating", batch_norm=True,
                                                warmup_steps=10, reestimate_every=15, reestimate_steps=45,
                                                reservoir_size=1024))
    print(f"per-level batch perplexity (K=32): vanilla {vanilla.tolist()}, bn+reestimating {robust.tolist()}")
    assert (robust >= 3 * vanilla).all(), (vanilla, robust)


def test_cascaded_reestimation_fits_each_level_to_the_new_residuals():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(4, 8, 2, quantizer_type="reestimating", warmup_steps=1, reestimate_steps=0,
                                  reservoir_size=512, seed=1)
    x = torch.randn(256, 4) * 3
    rvq(x)  # warm-up
    out = rvq(x)  # position 1: the reservoir holds x twice; level 0 then level 1 re-clustered
    assert out.reestimated
    # Level 1's codewords are the k-means centres of the residuals left by level 0's NEW codebook: each is the
    # mean of the residuals assigned to it (Lloyd's fixed point, up to the tolerance).
    c0 = rvq.levels[0].codebook[0].detach()
    r1 = x - c0[torch.cdist(x, c0).argmin(1)]
    c1 = rvq.levels[1].codebook[0].detach()
    assign = torch.cdist(r1, c1).argmin(1)
    for k in assign.unique():
        torch.testing.assert_close(c1[k], r1[assign == k].mean(0), atol=2e-2, rtol=0)


def test_quantizer_dropout_is_seeded_per_example_and_masks_dropped_levels():
    def run():
        rvq = ResidualVectorQuantizer(4, 8, 4, quantizer_dropout=0.7, seed=3)
        g = torch.Generator().manual_seed(0)
        return [rvq(torch.randn(16, 5, 4, generator=g)).codes for _ in range(3)]

    a, b = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    codes = torch.cat(a)
    dropped = codes == -1
    assert dropped.any() and not dropped[..., 0].any()  # level 0 is never dropped
    # A prefix per example: once a level is dropped, every deeper one is, at every position of the example.
    assert (dropped[..., 1:] >= dropped[..., :-1]).all()
    assert (dropped == dropped[:, :1]).all()


# ----------------------------------------------------------------------------- dead-code revival


def _shifted_stream(step, batch, rank, dim=4):
    """32 clusters until step 20; afterwards the 16 clusters of one half are replaced by 16 far-away new ones."""
    modes = torch.randn(32, dim, generator=torch.Generator().manual_seed(0)) * 4
    new = torch.randn(16, dim, generator=torch.Generator().manual_seed(1)) * 4 + 30
    g = torch.Generator().manual_seed(1000 * rank + step)
    current = modes if step < 20 else torch.cat([modes[:16], new])
    return current[torch.randint(32, (batch,), generator=g)] + 0.05 * torch.randn(batch, dim, generator=g)


def _revival_run(threshold, steps=60, rank=0):
    vq = VectorQuantizer(4, 32, quantizer_type="reestimating", warmup_steps=5, reestimate_every=5,
                         reestimate_steps=10, reservoir_size=512, dead_code_threshold=threshold, revive_every=5,
                         running_usage_decay=0.8,
                         seed=2)
    used = []
    for t in range(steps):
        used.append(int(vq(_shifted_stream(t, 256, rank)).used_codes[0]))
    return vq, used


def test_revival_brings_a_half_dead_codebook_back_and_without_it_codes_stay_dead():
    _, without = _revival_run(0.0)
    vq, used = _revival_run(1.0)
    print(f"used codes (K=32) after the shift: without revival {without[20:]}, with {used[20:]}")
    assert max(without[30:]) <= 24  # the shift killed a large part of the codebook for good
    assert min(used[35:]) >= 0.9 * 32  # back above 90 % within 15 steps of the shift (3 revival rounds)
    assert int(vq.num_revived_codes) >= 8


def _revival_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        vq, used = _revival_run(1.0, rank=rank)
        rvq = ResidualVectorQuantizer(4, 8, 2, quantizer_type="reestimating", warmup_steps=2, reestimate_every=2,
                                      reestimate_steps=4, reservoir_size=64, seed=4)
        g = torch.Generator().manual_seed(rank)
        for _ in range(6):
            rvq(torch.randn(24, 4, generator=g) * (1 + rank))
        torch.save({"codebook": vq.codebook.detach(), "used": used, "revived": int(vq.num_revived_codes),
                    "rvq": [l.codebook.detach() for l in rvq.levels], "n_re": int(rvq.num_reestimations)},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_revival_and_residual_reestimation_are_identical_on_two_gloo_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_revival_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(r0["codebook"], r1["codebook"]) and r0["revived"] == r1["revived"] >= 8
    for used in (r0["used"], r1["used"]):  # each rank sees its own data, both recover
        assert min(used[35:]) >= 0.9 * 32, used
    assert r0["n_re"] == r1["n_re"] == 2  # positions 2 and 4
    assert all(torch.equal(a, b) for a, b in zip(r0["rvq"], r1["rvq"]))


def test_revived_ema_code_is_not_undone_by_the_next_ema_update():
    vq = VectorQuantizer(2, 4, quantizer_type="ema", dead_code_threshold=0.5, revive_every=1, reservoir_size=64,
                         ema_decay=0.9, seed=0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]]]))
        vq.ema_sum.copy_(vq.codebook)
    near = torch.tensor([[0.1, 0.1], [1.1, 0.0], [0.0, 1.1], [10.0, 10.0]]).repeat(8, 1)
    vq(near)  # code 3 never chosen: its EMA count starts at 0
    out = vq(near)  # step 1: revival replaces code 3 with a reservoir vector, the far (10, 10) one by D² weighting
    assert out.num_revived_codes == 1
    assert torch.allclose(vq.codebook[0, 3], torch.tensor([10.0, 10.0]), atol=0.2)
    out = vq(near)  # the EMA update after the revival keeps the new codeword, which now takes the far points
    assert torch.allclose(vq.codebook[0, 3], torch.tensor([10.0, 10.0]), atol=0.2)
    assert (out.codes[3::4, 0] == 3).all()


# ----------------------------------------------------------------------------- cosine distance


@pytest.mark.parametrize("quantizer_type", ["vanilla", "ema", "reestimating"])
def test_cosine_distance_searches_and_updates_on_the_unit_sphere(quantizer_type):
    vq = VectorQuantizer(6, 16, num_codebooks=2, quantizer_type=quantizer_type, distance="cosine", warmup_steps=1,
                         reestimate_steps=0, reservoir_size=128, seed=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(64, 6, generator=g) * 5 + 2
        out = vq(x)
    vq.eval()
    out = vq(x)
    cb = vq.codebook.detach()
    for grp in range(2):
        xs = x[:, 3 * grp : 3 * grp + 3]
        cos = torch.nn.functional.normalize(xs, dim=-1) @ torch.nn.functional.normalize(cb[grp], dim=-1).t()
        assert torch.equal(out.codes[:, grp], cos.argmax(1))
    norms = out.quantized.view(64, 2, 3).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert torch.equal(vq.decode(out.codes), out.quantized)
    torch.testing.assert_close(out.latents.view(64, 2, 3).norm(dim=-1), torch.ones(64, 2))


# ----------------------------------------------------------------------------- rotation trick


def _reference_rotation(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The rotation taking unit vector u to unit vector v in their plane (Rodrigues form), float64."""
    w = v - (u @ v) * u
    w = w / w.norm()
    cos, sin = u @ v, w @ v
    eye = torch.eye(len(u), dtype=torch.float64)
    return eye + sin * (torch.outer(w, u) - torch.outer(u, w)) + (cos - 1) * (torch.outer(u, u) + torch.outer(w, w))


def test_rotation_trick_gradient_matches_an_explicit_rotation_matrix():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64)
    q = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    upstream = torch.randn(7, 5, generator=g, dtype=torch.float64)
    zr = z.clone().requires_grad_(True)
    out = rotation_trick(zr, q)
    assert torch.equal(out, q)  # the forward value is the codeword itself
    out.backward(upstream)
    for i in range(7):
        u, v = z[i] / z[i].norm(), q[i] / q[i].norm()
        R = _reference_rotation(u, v)
        torch.testing.assert_close(R @ u, v)
        torch.testing.assert_close(R.t() @ R, torch.eye(5, dtype=torch.float64))
        lam = q[i].norm() / z[i].norm()
        torch.testing.assert_close(lam * R @ z[i], q[i], rtol=1e-6, atol=1e-6)  # q = λ R z
        torch.testing.assert_close(zr.grad[i], lam * R.t() @ upstream[i])


def test_rotation_estimator_in_the_quantizer_matches_the_reference():
    vq = VectorQuantizer(4, 8, quantizer_type="vanilla", gradient_estimator="rotation", seed=0)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(10, 4, generator=g) + 1).requires_grad_(True)
    upstream = torch.randn(10, 4, generator=g)
    out = vq(x)
    assert torch.equal(out.quantized, vq.decode(out.codes))
    (out.quantized * upstream).sum().backward()
    q = vq.decode(out.codes).double()
    for i in range(10):
        z = x[i].detach().double()
        R = _reference_rotation(z / z.norm(), q[i] / q[i].norm())
        expected = (q[i].norm() / z.norm()) * R.t() @ upstream[i].double()
        torch.testing.assert_close(x.grad[i].double(), expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- FSQ


def test_fsq_values_codes_and_gradient_match_a_float64_reference():
    levels = [8, 5, 4]
    fsq = FiniteScalarQuantizer(levels)
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(500, 3, generator=g) * 2).requires_grad_(True)
    upstream = torch.randn(500, 3, generator=g)
    out = fsq(z)
    (out.quantized * upstream).sum().backward()

    zd = z.detach().double()
    L = torch.tensor(levels, dtype=torch.float64)
    half_l = (L - 1) * (1 - 1e-3) / 2
    offset = torch.where(L % 2 == 0, 0.5, 0.0)
    shift = torch.atanh(offset / half_l)
    bounded = torch.tanh(zd + shift) * half_l - offset
    half_width = torch.floor(L / 2)
    expected = torch.round(bounded) / half_width
    torch.testing.assert_close(out.quantized.double(), expected)
    # Straight-through rounding: d ẑ / d z = f'(z) / ⌊L/2⌋ with f' = h·(1 − tanh²(z + s)).
    deriv = half_l * (1 - torch.tanh(zd + shift) ** 2) / half_width
    torch.testing.assert_close(z.grad.double(), deriv * upstream.double(), rtol=1e-5, atol=1e-6)
    # Mixed-radix codes: bijective with the grid, and every one of the 160 grid points reachable.
    digits = torch.round(bounded) + half_width
    codes = digits[:, 0] + 8 * digits[:, 1] + 40 * digits[:, 2]
    assert torch.equal(out.codes[:, 0], codes.long())
    assert torch.equal(fsq.decode(out.codes), out.quantized)
    grid = fsq.codes_to_grid(torch.arange(160))
    assert torch.unique(grid, dim=0).shape[0] == 160
    # Preimages of the grid points: f⁻¹ of each rounding target moved just inside the open range of f.
    target = grid.double() * half_width
    target = torch.minimum(torch.maximum(target, -half_l - offset + 0.01), half_l - offset - 0.01)
    preimage = torch.atanh((target + offset) / half_l) - shift
    assert torch.equal(fsq(preimage.float()).codes[:, 0], torch.arange(160))


def test_fsq_usage_metrics_and_projection():
    fsq = FiniteScalarQuantizer([4, 4, 4, 4], dim=16, channel_first=True, dead_code_window=2)
    assert fsq.codebook_size == 256
    out = fsq(torch.randn(2, 16, 8, 8))
    assert out.codes.shape == (2, 8, 8, 1) and out.quantized.shape == (2, 16, 8, 8)
    assert 1 < float(out.perplexity[0]) <= int(out.used_codes[0]) <= 128
    assert float(out.loss) == 0.0
    with pytest.raises(ValueError, match="levels"):
        FiniteScalarQuantizer([4, 1])


# ----------------------------------------------------------------------------- exact resume


def _make(kind):
    if kind == "residual":
        return ResidualVectorQuantizer(4, 8, 3, quantizer_type="reestimating", batch_norm=True, quantizer_dropout=0.5,
                                       warmup_steps=2, reestimate_every=2, reestimate_steps=4, reservoir_size=48,
                                       dead_code_threshold=2.0, revive_every=2, seed=7)
    if kind == "residual_ema":
        return ResidualVectorQuantizer(4, 8, 2, quantizer_type="ema", gradient_estimator="rotation", seed=7)
    if kind == "revival_cosine_rotation":
        return VectorQuantizer(4, 8, num_codebooks=2, quantizer_type="ema", distance="cosine",
                               gradient_estimator="rotation", dead_code_threshold=3.0, revive_every=2,
                               reservoir_size=40, seed=7)
    if kind == "fsq":
        return FiniteScalarQuantizer([3, 4], dim=4)
    raise AssertionError(kind)


def _run_steps(module, opt, xs, start, stop, accumulate=2):
    outs = []
    for t in range(start, stop):
        for micro in range(accumulate):
            set_update_boundary(module, micro == accumulate - 1)
            out = module(xs[t][micro].clone().requires_grad_(True))
            outs.append((out.quantized.detach().clone(), out.codes.clone(), out.loss.detach().clone()))
            (out.loss + out.quantized.pow(2).mean()).backward()
        opt.step()
        opt.zero_grad()
    return outs


@pytest.mark.parametrize("kind", ["residual", "residual_ema", "revival_cosine_rotation", "fsq"])
def test_save_load_continue_is_bit_exact(kind):
    g = torch.Generator().manual_seed(3)
    xs = [[torch.randn(6, 4, 4, generator=g) * (1 + t % 3) + t * 0.2 for _ in range(2)] for t in range(10)]

    def make():
        torch.manual_seed(0)
        m = _make(kind)
        return m, torch.optim.Adam(m.parameters(), lr=1e-2)

    ref, ref_opt = make()
    ref_outs = _run_steps(ref, ref_opt, xs, 0, 10)
    first, first_opt = make()
    _run_steps(first, first_opt, xs, 0, 5)
    blob = save({k: v.contiguous() for k, v in first.state_dict().items()})
    buf = io.BytesIO()
    torch.save(first_opt.state_dict(), buf)
    buf.seek(0)

    resumed, resumed_opt = make()
    resumed(torch.randn(6, 4, 4))  # make the fresh module's host mirrors stale on purpose
    resumed.load_state_dict(load(blob))
    resumed_opt.load_state_dict(torch.load(buf))
    assert resumed.current_step == 5
    outs = _run_steps(resumed, resumed_opt, xs, 5, 10)
    for (q, c, l), (rq, rc, rl) in zip(outs, ref_outs[10:]):
        assert torch.equal(c, rc) and torch.equal(q, rq) and torch.equal(l, rl)
    for (k, v), (_, rv) in zip(resumed.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(v, rv), k


def test_boundary_and_epoch_helpers_reach_every_family():
    model = torch.nn.ModuleDict({"rvq": ResidualVectorQuantizer(4, 8, 2, reestimation_unit="epochs"),
                                 "fsq": FiniteScalarQuantizer([3, 3])})
    found = set_update_boundary(model, False)
    assert found == 4  # the RVQ, its two levels, the FSQ
    assert not any(m.update_boundary for m in (model["rvq"], *model["rvq"].levels, model["fsq"]))
    start_epoch(model, 3)
    assert model["rvq"].position == 3 and int(model["fsq"].epoch) == 3
    with pytest.raises(ValueError, match="cosine"):
        ResidualVectorQuantizer(4, 8, 2, distance="cosine")


def test_build_quantizer_makes_every_family_and_names_bad_keys():
    from vq_hf.quantization import build_quantizer, check_quantizer_options

    assert type(build_quantizer(8, codebook_size=16)) is VectorQuantizer
    rvq = build_quantizer(8, family="residual", codebook_size=16, num_quantizers=3, quantizer_type="reestimating")
    assert isinstance(rvq, ResidualVectorQuantizer) and len(rvq.levels) == 3 and rvq.dim == 8
    fsq = build_quantizer(8, family="fsq", levels=[5, 5])
    assert isinstance(fsq, FiniteScalarQuantizer) and fsq.project_in is not None
    full = check_quantizer_options({"family": "residual", "codebook_size": 16, "num_quantizers": 2}, dim=8)
    assert full["family"] == "residual" and full["quantizer_dropout"] == 0.0
    with pytest.raises(ValueError, match="family='lfq' is not supported"):
        build_quantizer(8, family="lfq")
    with pytest.raises(ValueError, match=r"unknown FiniteScalarQuantizer option\(s\) \['codebook_size'\]"):
        build_quantizer(8, family="fsq", levels=[5, 5], codebook_size=16)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):  # the levels' checks apply to a residual config
        check_quantizer_options({"family": "residual", "codebook_size": 16, "num_quantizers": 2, "warmup_steps": -1})
    with pytest.raises(ValueError, match="quantizer_dropout"):
        check_quantizer_options({"family": "residual", "codebook_size": 16, "num_quantizers": 2,
                                 "quantizer_dropout": 1.5})


def test_codebook_lr_multiplier_reaches_every_residual_level():
    from vq_hf.quantization import codebook_param_groups

    rvq = ResidualVectorQuantizer(4, 8, 3, batch_norm=True, codebook_lr_multiplier=10.0)
    groups = {g["name"]: g for g in codebook_param_groups(rvq, lr=1e-3)}
    assert [id(p) for p in groups["codebook_x10"]["params"]] == [id(l.codebook) for l in rvq.levels]
    assert groups["codebook_x10"]["lr"] == pytest.approx(1e-2)
    assert len(groups["default"]["params"]) == 2  # the input batch norm's affine parameters


@pytest.mark.parametrize("quantizer", [
    {"family": "residual", "codebook_size": 16, "num_quantizers": 3, "quantizer_type": "reestimating",
     "batch_norm": True, "warmup_steps": 1, "reservoir_size": 256, "quantizer_dropout": 0.5},
    {"family": "fsq", "levels": [4, 4, 4]},
])
def test_families_in_the_image_model_config_train_save_and_reload(quantizer, tmp_path):
    from vq_hf.models.vqvae_image import VQVAEImageConfig, VQVAEImageModel

    config = VQVAEImageConfig(quantizer=quantizer)
    model = VQVAEImageModel(config)
    x = torch.rand(2, 3, 32, 32)
    for _ in range(3):
        out = model(pixel_values=x)
    L = config.num_codebooks
    assert out.codes.shape[-1] == L == (3 if quantizer["family"] == "residual" else 1)
    model.save_pretrained(tmp_path)
    loaded = VQVAEImageModel.from_pretrained(tmp_path)
    for (k, v), w in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, w), k
    model.eval()
    loaded.eval()
    codes = model.encode(pixel_values=x).codes
    assert torch.equal(loaded.encode(pixel_values=x).codes, codes)
    assert int(codes.max()) < config.codebook_size
    assert model.decode_codes(codes).reconstruction.shape == x.shape
