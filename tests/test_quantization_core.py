"""VectorQuantizer core: gradients, masks, decode, groups, precision, bad input, param groups."""

import pytest
import torch

from vq_hf import VectorQuantizer, codebook_param_groups
from vq_hf.quantization import MaskedBatchNorm, nearest_codes, set_update_boundary


def _vq(**kw):
    kw.setdefault("dim", 6)
    kw.setdefault("codebook_size", 5)
    return VectorQuantizer(**kw)


def test_straight_through_and_loss_gradients_are_analytic():
    torch.manual_seed(0)
    beta = 0.25
    vq = _vq(dim=4, codebook_size=6, commitment_cost=beta)
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(1, 6, 4))
    x = torch.randn(3, 7, 4, dtype=torch.float64).float().requires_grad_(True)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[2, 4:] = False
    w = torch.randn(3, 7, 4)
    out = vq(x, mask=mask)
    (out.quantized * w).sum().add(out.loss).backward()

    codes = out.codes[..., 0]
    q = vq.codebook.detach()[0][codes]
    m = mask.unsqueeze(-1).float()
    n_el = mask.sum() * 4
    torch.testing.assert_close(out.quantized, q, rtol=0, atol=0)
    torch.testing.assert_close(out.codebook_loss, (((x.detach() - q) ** 2) * m).sum() / n_el)
    torch.testing.assert_close(out.commitment_loss, (((x.detach() - q) ** 2) * m).sum() / n_el)
    # Encoder: straight-through upstream gradient + β·2(x − q)/numel on real positions.
    torch.testing.assert_close(x.grad, w + beta * 2 * (x.detach() - q) * m / n_el)
    # Codebook: index_add of 2(q − x)/numel over the positions assigned to each code; no decoder gradient.
    expected = torch.zeros(6, 4).index_add_(0, codes[mask], (2 * (q - x.detach()) / n_el)[mask])
    torch.testing.assert_close(vq.codebook.grad[0], expected)


def _reference_gradient_rule(z, codebook, codes, weights, beta):
    """Eq. 2 written with plain autograd ops: the oracle for the fused autograd node."""
    G, N, D = z.shape
    q = torch.stack([codebook[g].index_select(0, codes[g]) for g in range(G)])
    denom = (weights.sum() * G * D).clamp_min(1.0)
    codebook_loss = (((z.detach() - q) ** 2).sum(-1) * weights).sum() / denom
    commitment_loss = (((z - q.detach()) ** 2).sum(-1) * weights).sum() / denom
    out = q.detach() + (z - z.detach())
    return out, codebook_loss + beta * commitment_loss, codebook_loss, commitment_loss


@pytest.mark.parametrize("used", [(0,), (1,), (2,), (3,), (0, 1), (0, 2, 3), (0, 1, 2, 3)])
def test_gradient_rule_node_matches_plain_autograd_for_every_output(used):
    """Each output (quantized, loss, codebook term, commitment term) and their sums give the gradients that
    plain autograd gives, to z and to the codebook, with padding and 3 codebooks."""
    from vq_hf.quantization.updates import gradient_rule_step

    gen = torch.Generator().manual_seed(sum(used))
    G, N, D, K, beta = 3, 11, 5, 7, 0.3
    z0 = torch.randn(G, N, D, generator=gen, dtype=torch.float64)
    cb0 = torch.randn(G, K, D, generator=gen, dtype=torch.float64)
    codes = torch.randint(0, K, (G, N), generator=gen)
    weights = (torch.rand(N, generator=gen) > 0.3).double()
    probe = torch.randn(G, N, D, generator=gen, dtype=torch.float64)
    grads = []
    for fn in (gradient_rule_step, _reference_gradient_rule):
        z, cb = z0.clone().requires_grad_(True), cb0.clone().requires_grad_(True)
        outs = fn(z, cb, codes, weights, beta)
        terms = [(outs[0] * probe).sum(), 1.7 * outs[1], -0.6 * outs[2], 2.1 * outs[3]]
        sum(terms[i] for i in used).backward()
        grads.append((outs, z.grad, cb.grad))
    (o_new, gz_new, gc_new), (o_ref, gz_ref, gc_ref) = grads
    for a, b in zip(o_new, o_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for new, ref in ((gz_new, gz_ref), (gc_new, gc_ref)):
        if ref is None or not ref.abs().sum():
            assert new is None or not new.abs().sum()
        else:
            torch.testing.assert_close(new, ref, rtol=1e-12, atol=1e-12)


def test_gradient_rule_node_with_a_codebook_without_grad_and_all_padding():
    from vq_hf.quantization.updates import gradient_rule_step

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    cb = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    codes = torch.randint(0, 4, (2, 6), generator=gen)
    weights = torch.tensor([1.0, 0, 1, 1, 0, 1], dtype=torch.float64)
    # (No gradcheck: stop-gradients and the straight-through estimator are deliberately not the
    # derivatives of the forward values; the oracle test above pins the intended gradients.)
    # EMA rule: a codebook without gradient gets none, z still gets straight-through + commitment.
    out = gradient_rule_step(z, cb.detach(), codes, weights, 0.25)
    out[1].backward()
    assert z.grad is not None and cb.grad is None
    # All positions padding: zero losses, no NaN.
    out = gradient_rule_step(z, cb, codes, torch.zeros(6, dtype=torch.float64), 0.25)
    assert out[1].item() == 0.0 and out[2].item() == 0.0


def test_nearest_code_is_squared_euclidean_argmin_and_chunking_is_exact():
    torch.manual_seed(1)
    x = torch.randn(3, 500, 8) * 3 + 5
    cb = torch.randn(3, 37, 8) * 3 + 5
    ref = torch.cdist(x.double(), cb.double()).argmin(-1)
    codes, dist = nearest_codes(x, cb)
    codes_small, dist_small = nearest_codes(x, cb, memory_mb=0.01)  # many chunks
    assert torch.equal(codes, ref) and torch.equal(codes_small, codes)
    torch.testing.assert_close(dist, ((x - cb.gather(1, codes.unsqueeze(-1).expand(-1, -1, 8))) ** 2).sum(-1), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(dist_small, dist)


def test_distances_stay_fp32_under_bf16_autocast():
    # Large common offset: bf16 search would pick wrong codes (notes §3.3); ours must match fp64.
    torch.manual_seed(2)
    vq = _vq(dim=4, codebook_size=64)
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(1, 64, 4) * 0.2 + 10.0)
    x = vq.codebook.detach()[0][torch.randint(64, (300,))] + 0.02 * torch.randn(300, 4)
    vq.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(x)
    ref = torch.cdist(x.double(), vq.codebook.detach()[0].double()).argmin(-1)
    assert torch.equal(out.codes[:, 0], ref)
    assert out.loss.dtype == torch.float32
    # The same search done in bf16 gets many codes wrong: the fp32 policy is what saves it.
    cb = vq.codebook.detach()[0].bfloat16()
    bf16 = (cb.float().pow(2).sum(-1) - 2 * (x.bfloat16() @ cb.t()).float()).argmin(-1)
    assert (bf16 != ref).float().mean() > 0.2


def test_decode_equals_eval_output_exactly_and_channel_first_layout():
    torch.manual_seed(3)
    vq = _vq(dim=8, codebook_size=16, num_codebooks=2, batch_norm=True, channel_first=True)
    x = torch.randn(2, 8, 3, 5)
    vq.train()
    train_out = vq(x)
    assert train_out.codes.shape == (2, 3, 5, 2) and train_out.quantized.shape == x.shape
    vq.eval()
    out = vq(x)
    assert torch.equal(vq.decode(out.codes), out.quantized)
    # Training output is also exactly the codewords (straight-through changes only the gradient).
    assert torch.equal(train_out.quantized.detach(), vq.decode(train_out.codes))
    # Channel-first equals channel-last on the moved axes.
    vq_last = _vq(dim=8, codebook_size=16, num_codebooks=2, batch_norm=True)
    vq_last.load_state_dict(vq.state_dict())
    vq_last.eval()
    out_last = vq_last(x.movedim(1, -1))
    assert torch.equal(out_last.codes, out.codes)
    assert torch.equal(out_last.quantized, out.quantized.movedim(1, -1))


@pytest.mark.parametrize("quantizer_type", ["vanilla", "ema"])
def test_groups_behave_as_independent_single_codebooks(quantizer_type):
    torch.manual_seed(4)
    G, D, K = 3, 4, 8
    multi = VectorQuantizer(G * D, K, num_codebooks=G, quantizer_type=quantizer_type, ema_decay=0.9)
    singles = [VectorQuantizer(D, K, quantizer_type=quantizer_type, ema_decay=0.9) for _ in range(G)]
    with torch.no_grad():
        multi.codebook.copy_(torch.randn(G, K, D))
        for g, s in enumerate(singles):
            s.codebook.copy_(multi.codebook[g : g + 1])
            if quantizer_type == "ema":
                s.ema_sum.copy_(multi.ema_sum[g : g + 1] * 0 + multi.codebook[g : g + 1])
        if quantizer_type == "ema":
            multi.ema_sum.copy_(multi.codebook)
    for _ in range(3):
        x = torch.randn(5, 6, G * D)
        out = multi(x)
        outs = [s(x[..., g * D : (g + 1) * D]) for g, s in enumerate(singles)]
        assert torch.equal(out.codes, torch.cat([o.codes for o in outs], -1))
        torch.testing.assert_close(out.quantized, torch.cat([o.quantized for o in outs], -1))
        torch.testing.assert_close(out.loss, torch.stack([o.loss for o in outs]).mean())
        torch.testing.assert_close(out.perplexity, torch.cat([o.perplexity for o in outs]))
    for g, s in enumerate(singles):
        torch.testing.assert_close(multi.codebook[g], s.codebook[0])


def test_mask_excludes_padding_everywhere():
    torch.manual_seed(5)
    vq = _vq(dim=4, codebook_size=8, batch_norm=True, quantizer_type="ema")
    ref = _vq(dim=4, codebook_size=8, batch_norm=True, quantizer_type="ema")
    ref.load_state_dict(vq.state_dict())
    x = torch.randn(2, 10, 4)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, :6] = True
    mask[1, :3] = True
    padded = x.clone()
    padded[~mask] = 1e4  # garbage in the padding must not matter
    out = vq(padded, mask=mask)
    out_ref = ref(x[mask].unsqueeze(0))
    torch.testing.assert_close(out.loss, out_ref.loss)
    torch.testing.assert_close(out.perplexity, out_ref.perplexity)
    torch.testing.assert_close(vq.codebook, ref.codebook)
    torch.testing.assert_close(vq.batch_norm.running_mean, ref.batch_norm.running_mean)
    torch.testing.assert_close(vq.batch_norm.running_var, ref.batch_norm.running_var)


def test_all_masked_batch_is_a_documented_skip():
    vq = _vq(dim=4, codebook_size=8, quantizer_type="ema", batch_norm=True)
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    out = vq(torch.randn(3, 4, 4), mask=torch.zeros(3, 4, dtype=torch.bool))
    assert float(out.loss.detach()) == 0.0 and torch.isfinite(out.quantized).all()
    after = vq.state_dict()
    for k in ("codebook", "ema_count", "ema_sum", "batch_norm.running_mean", "batch_norm.running_var"):
        assert torch.equal(before[k], after[k]), k
    assert vq.current_step == 1  # still an optimizer step


def test_masked_batch_norm_matches_batchnorm1d_on_real_positions():
    torch.manual_seed(6)
    x = torch.randn(4, 9, 5) * 3 + 2
    mask = torch.rand(4, 9) > 0.3
    bn = MaskedBatchNorm(5)
    ref = torch.nn.BatchNorm1d(5)
    y = bn(x, mask)
    y_ref = ref(x[mask])
    torch.testing.assert_close(y[mask], y_ref)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval(), ref.eval()
    torch.testing.assert_close(bn(x), ref(x.reshape(-1, 5)).reshape(x.shape))


def _reference_masked_bn(x, mask, weight, bias, running_mean, running_var, eps=1e-5):
    """Masked batch norm written with plain autograd ops: the oracle for the fused autograd node."""
    real = mask.reshape(-1, 1)
    xf = x.reshape(-1, x.shape[-1])
    n = real.sum().to(x.dtype)
    mean = torch.where(real, xf, 0.0).sum(0) / n.clamp_min(1.0)
    var = (torch.where(real, xf - mean, 0.0) ** 2).sum(0) / n.clamp_min(1.0)
    mean = torch.where(n > 0, mean, running_mean)
    var = torch.where(n > 0, var, running_var)
    return (((xf - mean) / torch.sqrt(var + eps)) * weight + bias).reshape(x.shape)


@pytest.mark.parametrize("case", ["masked", "no_mask", "all_padding", "one_real_row"])
def test_masked_batch_norm_gradients_match_plain_autograd(case):
    """The closed-form backward equals autograd through the masked statistics, padding outputs included
    (they depend on the batch statistics too), and the forward equals the plain formula."""
    gen = torch.Generator().manual_seed(7)
    x0 = torch.randn(6, 5, 4, generator=gen, dtype=torch.float64) * 3 + 1
    mask = torch.rand(6, 5, generator=gen) > 0.4
    if case == "no_mask":
        mask[:] = True
    elif case == "all_padding":
        mask[:] = False
    elif case == "one_real_row":
        mask[:] = False
        mask[2, 3] = True
    x0 = torch.where(mask[..., None], x0, 1e3 * x0)  # junk in padding must not reach the statistics
    probe = torch.randn(6, 5, 4, generator=gen, dtype=torch.float64)
    weight = torch.rand(4, generator=gen, dtype=torch.float64) + 0.5
    bias = torch.randn(4, generator=gen, dtype=torch.float64)
    results = []
    for use_ref in (False, True):
        bn = MaskedBatchNorm(4).double()
        with torch.no_grad():
            bn.weight.copy_(weight)
            bn.bias.copy_(bias)
            bn.running_var.fill_(2.0)
        x = x0.clone().requires_grad_(True)
        if use_ref:
            y = _reference_masked_bn(x, mask, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        else:
            y = bn(x, None if case == "no_mask" else mask).double()
        (y * probe).sum().backward()
        results.append((y.detach(), x.grad, bn.weight.grad, bn.bias.grad))
    for new, ref in zip(*results):
        torch.testing.assert_close(new, ref, rtol=1e-5, atol=1e-5)  # the module computes in fp32


def test_batch_norm_shared_vs_per_codebook_statistics():
    torch.manual_seed(7)
    x = torch.randn(64, 8)
    x[:, 4:] = x[:, 4:] * 10 + 50  # second group on a very different scale
    shared = _vq(dim=8, codebook_size=4, num_codebooks=2, batch_norm=True)
    separate = _vq(dim=8, codebook_size=4, num_codebooks=2, batch_norm=True, batch_norm_shared=False)
    assert shared.batch_norm.num_features == 4 and separate.batch_norm.num_features == 8
    lat_sep = separate(x).latents
    torch.testing.assert_close(lat_sep.mean(0), torch.zeros(8), atol=1e-4, rtol=0)
    lat_sh = shared(x).latents.view(64, 2, 4)
    # Shared statistics normalise over both groups together, not each group.
    torch.testing.assert_close(lat_sh.mean((0, 1)), torch.zeros(4), atol=1e-4, rtol=0)
    assert lat_sh[:, 0].mean() < -0.5 < 0.5 < lat_sh[:, 1].mean()


def test_codebook_param_groups_apply_the_multiplier():
    model = torch.nn.ModuleDict(
        {"enc": torch.nn.Linear(4, 4), "vq": _vq(dim=4, codebook_size=3, codebook_lr_multiplier=10.0, batch_norm=True),
         "ema": _vq(dim=4, codebook_size=3, quantizer_type="ema")}
    )
    groups = codebook_param_groups(model, lr=5e-4, weight_decay=0.01)
    by_name = {g["name"]: g for g in groups}
    assert by_name["codebook_x10"]["params"] == [model["vq"].codebook]
    assert by_name["codebook_x10"]["lr"] == pytest.approx(5e-3) and by_name["codebook_x10"]["weight_decay"] == 0.0
    trainable = [p for p in model.parameters() if p.requires_grad]
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len(trainable) and {id(p) for p in grouped} == {id(p) for p in trainable}
    assert by_name["default"]["lr"] == 5e-4
    opt = torch.optim.Adam(groups)  # any optimizer accepts them
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-3)
    with pytest.raises(ValueError, match="lr"):
        codebook_param_groups(model, lr=0)


def test_training_forward_advances_step_and_boundary_flag_controls_it():
    vq = _vq()
    x = torch.randn(4, 6)
    vq(x)
    vq(x)
    assert vq.current_step == 2
    assert set_update_boundary(torch.nn.Sequential(vq), False) == 1
    vq(x)
    vq(x)
    assert vq.current_step == 2
    set_update_boundary(vq, True)
    vq(x)
    assert vq.current_step == 3
    vq.eval()
    vq(x)
    assert vq.current_step == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dim=10, codebook_size=4, num_codebooks=3), "dim=10 is not divisible by num_codebooks=3"),
        (dict(dim=4, codebook_size=0), "codebook_size must be >= 1, got 0"),
        (dict(dim=4, codebook_size=4, ema_decay=1.0), "ema_decay must be < 1"),
        (dict(dim=4, codebook_size=4, ema_decay=0.0), "ema_decay must be > 0"),
        (dict(dim=4, codebook_size=4, warmup_steps=-1), "warmup_steps must be >= 0, got -1"),
        (dict(dim=4, codebook_size=4, reestimate_steps=-5), "reestimate_steps must be >= 0, got -5"),
        (dict(dim=4, codebook_size=4, reestimate_every=0), "reestimate_every must be >= 1, got 0"),
        (dict(dim=4, codebook_size=4, quantizer_type="gumbel"), "quantizer_type must be one of"),
        (dict(dim=4, codebook_size=4, reestimation_unit="hours"), "reestimation_unit"),
        (dict(dim=4, codebook_size=4, ema_epsilon=-1.0), "ema_epsilon must be >= 0"),
        (dict(dim=4, codebook_size=4, commitment_cost=float("nan")), "commitment_cost must be a finite number"),
        (dict(dim=4, codebook_size=4, codebook_lr_multiplier=0.0), "codebook_lr_multiplier must be > 0"),
        (dict(dim=4, codebook_size=4, reservoir_size=0), "reservoir_size must be >= 1"),
    ],
)
def test_invalid_options_are_rejected_with_name_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VectorQuantizer(**kwargs)


def test_bad_inputs_are_rejected_clearly():
    vq = _vq(dim=6, codebook_size=4)
    with pytest.raises(ValueError, match=r"x.shape\[-1\] = 5 but dim = 6"):
        vq(torch.randn(3, 5))
    with pytest.raises(ValueError, match="at least one batch axis"):
        vq(torch.randn(6))
    with pytest.raises(ValueError, match="empty batch"):
        vq(torch.randn(0, 6))
    with pytest.raises(ValueError, match="mask shape"):
        vq(torch.randn(2, 3, 6), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="floating-point"):
        vq(torch.ones(2, 6, dtype=torch.long))
    cf = _vq(dim=6, codebook_size=4, channel_first=True)
    with pytest.raises(ValueError, match=r"x.shape\[1\] = 3 but dim = 6"):
        cf(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="codes must lie in"):
        vq.decode(torch.tensor([[4]]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_never_reaches_state(bad):
    vq = _vq(dim=4, codebook_size=4, quantizer_type="reestimating", warmup_steps=2, reservoir_size=16, batch_norm=True)
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    x = torch.randn(5, 4)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf in 1 of 5 positions"):
        vq(x)
    for k, v in vq.state_dict().items():
        assert torch.equal(before[k], v), k
    # Opt-in skip mode: the bad vector is treated as padding.
    lenient = _vq(dim=4, codebook_size=4, quantizer_type="reestimating", warmup_steps=2, reservoir_size=16,
                  batch_norm=True, check_finite=False)
    lenient(x)
    assert int(lenient.reservoir.seen[0]) == 4
    assert torch.isfinite(lenient.reservoir.samples).all() and torch.isfinite(lenient.batch_norm.running_mean).all()


@pytest.mark.slow
@pytest.mark.parametrize("quantizer_type", ["vanilla", "ema"])
def test_torch_compile_matches_eager_and_breaks_only_at_host_side_hooks(quantizer_type):
    torch.manual_seed(8)
    kw = dict(num_codebooks=2, quantizer_type=quantizer_type, batch_norm=True, check_finite=False)
    vq, ref = VectorQuantizer(16, 32, **kw), VectorQuantizer(16, 32, **kw)
    ref.load_state_dict(vq.state_dict())
    explain = torch._dynamo.explain(VectorQuantizer(16, 32, **kw))(torch.randn(8, 16))
    assert all("disable" in b.reason for b in explain.break_reasons), [b.reason for b in explain.break_reasons]
    compiled = torch.compile(vq)
    for _ in range(3):
        x = torch.randn(64, 16, requires_grad=True)
        out, out_ref = compiled(x), ref(x)
        (out.loss + out.quantized.sum()).backward()
        assert torch.equal(out.codes, out_ref.codes)
        torch.testing.assert_close(out.quantized, out_ref.quantized)
    torch.testing.assert_close(vq.codebook, ref.codebook)


def test_usage_accumulator_gives_dataset_level_perplexity():
    from vq_hf.quantization import CodebookUsageAccumulator

    acc = CodebookUsageAccumulator(num_codebooks=2, codebook_size=4)
    acc.update(torch.tensor([[0, 1], [1, 1], [2, 1]]))
    acc.update(torch.tensor([[3, 1], [0, 2]]), mask=torch.tensor([True, False]))  # second row is padding
    res = acc.compute()
    assert res["used_codes"].tolist() == [4, 1] and int(res["num_tokens"]) == 4
    torch.testing.assert_close(res["perplexity"], torch.tensor([4.0, 1.0]))  # 2^H over all tokens, not per batch
    with pytest.raises(ValueError, match="codes must lie in"):
        acc.update(torch.tensor([[4, 0]]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        acc.update(torch.tensor([[1, 0, 0]]))


def test_start_epoch_validates_and_reaches_nested_quantizers():
    from vq_hf.quantization import start_epoch

    model = torch.nn.Sequential(torch.nn.Linear(6, 6), _vq(reestimation_unit="epochs"))
    assert start_epoch(model, 3) == 1 and model[1].position == 3
    with pytest.raises(ValueError, match="epoch must be a non-negative int, got -1"):
        start_epoch(model, -1)


def test_reset_codebook_optimizer_state_drops_only_codebook_moments():
    from vq_hf.quantization import reset_codebook_optimizer_state

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), _vq(dim=4, codebook_size=3))
    opt = torch.optim.Adam(codebook_param_groups(model, lr=1e-3))
    out = model[1](model[0](torch.randn(8, 4)))
    (out.loss + out.quantized.sum()).backward()
    opt.step()
    assert model[1].codebook in opt.state and model[0].weight in opt.state
    assert reset_codebook_optimizer_state(opt, model) == 1
    assert model[1].codebook not in opt.state and model[0].weight in opt.state
    opt.step()  # Adam re-creates the state lazily
    assert model[1].codebook in opt.state


@pytest.mark.parametrize("quantizer_type", ["vanilla", "ema", "reestimating"])
def test_builds_on_the_meta_device(quantizer_type):
    # transformers' from_pretrained builds models on the meta device; the seeded init is skipped there
    with torch.device("meta"):
        vq = VectorQuantizer(8, 16, num_codebooks=2, quantizer_type=quantizer_type, batch_norm=True)
    assert vq.codebook.is_meta and vq.step.is_meta
