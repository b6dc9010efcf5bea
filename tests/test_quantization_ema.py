"""EMA rule (eq. 4): Proposition 1, gradient accumulation, no codebook gradient, unused codes stay put."""

import pytest
import torch

from vq_hf import VectorQuantizer
from vq_hf.quantization import set_update_boundary


def test_proposition_1_ema_with_unit_counts_equals_sgd_with_lr_half_one_minus_gamma():
    """EMA with N_i = 1 (each code gets exactly one vector per step) ≡ SGD on eq. 2 with α = (1 − γ)/2."""
    torch.manual_seed(0)
    K, D, gamma = 6, 3, 0.9
    ema = VectorQuantizer(D, K, quantizer_type="ema", ema_decay=gamma, ema_epsilon=1e-5)
    sgd_vq = VectorQuantizer(D, K, quantizer_type="vanilla", commitment_cost=0.0)
    init = torch.arange(K, dtype=torch.float32).unsqueeze(1).repeat(1, D) * 10.0  # well separated codes
    with torch.no_grad():
        ema.codebook.copy_(init.unsqueeze(0))
        ema.ema_sum.copy_(init.unsqueeze(0))
        sgd_vq.codebook.copy_(init.unsqueeze(0))
    # The paper's α multiplies the per-vector gradient 2(w − e) of the summed squared error; our codebook
    # term is an element mean over K·D elements, so the equivalent SGD learning rate is α·K·D.
    alpha = (1 - gamma) / 2
    opt = torch.optim.SGD([sgd_vq.codebook], lr=alpha * K * D)
    for step in range(5):
        x = init + torch.randn(K, D)  # exactly one vector near each code → n_i = 1
        out_e = ema(x)
        out_s = sgd_vq(x)
        assert torch.equal(out_e.codes, out_s.codes)
        assert torch.equal(torch.sort(out_e.codes[:, 0]).values, torch.arange(K))
        opt.zero_grad()
        out_s.loss.backward()
        opt.step()
        torch.testing.assert_close(ema.ema_count, torch.ones(1, K))
        torch.testing.assert_close(ema.codebook, sgd_vq.codebook, rtol=1e-5, atol=1e-5)


def test_ema_codebook_gets_no_gradient_and_loss_still_reported():
    vq = VectorQuantizer(4, 8, quantizer_type="ema")
    assert not vq.codebook.requires_grad
    x = torch.randn(10, 4, requires_grad=True)
    out = vq(x)
    out.loss.backward()
    assert vq.codebook.grad is None and x.grad is not None
    assert float(out.codebook_loss) > 0


def test_ema_codebook_with_stray_requires_grad_still_gets_no_gradient():
    # transformers' loader may turn requires_grad back on; the EMA forward must not route a gradient to it
    vq = VectorQuantizer(4, 8, quantizer_type="ema")
    vq.codebook.requires_grad_(True)
    x = torch.randn(10, 4, requires_grad=True)
    out = vq(x)
    out.loss.backward()
    assert vq.codebook.grad is None and x.grad is not None


def test_gradient_accumulation_applies_one_update_per_optimizer_step():
    torch.manual_seed(1)
    x = torch.randn(2, 12, 4) * 2
    whole = VectorQuantizer(4, 8, quantizer_type="ema", ema_decay=0.8)
    accum = VectorQuantizer(4, 8, quantizer_type="ema", ema_decay=0.8)
    accum.load_state_dict(whole.state_dict())
    for _ in range(3):
        whole(x.reshape(24, 4))
        set_update_boundary(accum, False)
        accum(x[0])
        assert accum.current_step == whole.current_step - 1
        set_update_boundary(accum, True)
        accum(x[1])
        assert accum.current_step == whole.current_step
        torch.testing.assert_close(accum.codebook, whole.codebook)
        torch.testing.assert_close(accum.ema_count, whole.ema_count)


def test_unused_codes_keep_their_value_and_laplace_smoothing_is_not_written_back():
    torch.manual_seed(2)
    vq = VectorQuantizer(2, 4, quantizer_type="ema", ema_decay=0.9, ema_epsilon=1e-3)
    init = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [50.0, -50.0]])
    with torch.no_grad():
        vq.codebook.copy_(init.unsqueeze(0))
        vq.ema_sum.copy_(init.unsqueeze(0))
    for _ in range(20):
        vq(torch.randn(32, 2) * 0.1)  # all vectors go to code 0
    # Raw counts follow eq. 4 exactly: unused codes decay as γ^t (no smoothed value stored).
    torch.testing.assert_close(vq.ema_count[0, 1:], torch.full((3,), 0.9**20))
    # Unused codewords stay within the Laplace shrinkage of their initial value (the reference's
    # zero-initialised counts would have blown them up to w/ε).
    assert torch.allclose(vq.codebook[0, 1:], init[1:], rtol=0.05)
    assert vq.codebook[0, 0].norm() < 0.1


@pytest.mark.parametrize("decay", [0.5, 0.99])
def test_ema_statistics_are_fp32_under_bf16_input(decay):
    vq = VectorQuantizer(4, 8, quantizer_type="ema", ema_decay=decay)
    out = vq(torch.randn(16, 4).bfloat16())
    assert out.quantized.dtype == torch.bfloat16
    assert vq.ema_sum.dtype == torch.float32 and vq.ema_count.dtype == torch.float32
    assert vq.codebook.dtype == torch.float32
