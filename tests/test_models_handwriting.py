"""Handwriting VQ-VAE: variable widths with masks, PixelCNN causality, bits/dim, encode → decode_codes (tiny)."""

import math

import pytest
import torch

from vq_hf import VQVAEConfig, VQVAEModel




def tiny(**kw):
    base = dict(
        architecture="handwriting", image_size=8, conv_channels=[4, 8], conv_kernel_sizes=[[3, 3], [5, 3]],
        conv_strides=[[1, 2], [2, 2]], rnn_num_layers=2, rnn_hidden_size=8, rnn_projection_size=8,
        codebook_size=16, latent_dim=8, mixer_hidden_size=8, pixelcnn_hidden_size=8, pixelcnn_num_layers=2,
    )
    base.update(kw)
    return VQVAEConfig(**base)


def lines(widths=(16, 10), width=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(widths), 1, 8, width, generator=g)
    mask = torch.zeros(len(widths), width, dtype=torch.bool)
    for i, w in enumerate(widths):
        mask[i, :w] = True
    return x, mask


def test_forward_backward_with_padding_mask():
    torch.manual_seed(0)
    model = VQVAEModel(tiny(batch_norm=True))
    x, mask = lines()
    out = model(pixel_values=x, pixel_mask=mask)
    assert out.logits.shape == (2, 1, 8, 16, 4)
    assert out.codes.shape == (2, 4, 1)
    assert out.code_lengths.tolist() == [4, 3]  # one latent per 4 columns, ceil(10 / 4) = 3
    assert out.codes_mask.tolist() == [[True] * 4, [True, True, True, False]]
    assert out.dims_per_example.tolist() == [16 * 8, 10 * 8]
    assert out.nll[1, ..., 10:].abs().sum() == 0  # padding contributes nothing
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(model.encoder.conv.convs[0].weight.grad).all()
    assert model.quantizer.codebook.grad is not None


def test_padding_content_and_amount_do_not_change_real_outputs():
    torch.manual_seed(0)
    model = VQVAEModel(tiny(batch_norm=True))
    x, mask = lines()
    x2 = x.clone()
    x2[1, ..., 10:] = 0.77  # garbage in the padding
    # training mode: padding is excluded from BN statistics and the quantizer; state updates must agree too
    m_a, m_b = VQVAEModel(tiny(batch_norm=True)), VQVAEModel(tiny(batch_norm=True))
    m_b.load_state_dict(m_a.state_dict())
    a = m_a(pixel_values=x, pixel_mask=mask)
    b = m_b(pixel_values=x2, pixel_mask=mask)
    assert torch.allclose(a.loss, b.loss, atol=1e-6)
    assert torch.allclose(m_a.projection.norm.running_mean, m_b.projection.norm.running_mean, atol=1e-6)
    # eval mode: the short line alone gives the same codes and logits as inside the padded batch
    model.eval()
    with torch.no_grad():
        both = model(pixel_values=x2, pixel_mask=mask)
        alone = model(pixel_values=x[1:, ..., :12], pixel_mask=mask[1:, :12])
    assert torch.equal(alone.codes[0, :3], both.codes[1, :3])
    assert torch.allclose(alone.logits[0, ..., :10, :], both.logits[1, ..., :10, :], atol=1e-5)


def test_pixelcnn_decoder_is_causal():
    """Changing a pixel changes no logit of itself or of any pixel before it (earlier column, or same column above)."""
    torch.manual_seed(0)
    model = VQVAEModel(tiny(pixelcnn_num_layers=3)).eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.normal_(0, 0.5)  # make every dependency visible
    levels = torch.randint(0, 4, (1, 1, 8, 6))
    cond = torch.randn(1, 8, 6)
    with torch.no_grad():
        base = model.decoder(levels, cond)
        for w in range(6):
            for h in range(8):
                changed = levels.clone()
                changed[0, 0, h, w] = (changed[0, 0, h, w] + 1) % 4
                diff = (model.decoder(changed, cond) - base).abs().amax(-1)[0, 0]  # (H, W)
                assert (diff[:, :w] == 0).all(), (h, w)
                assert (diff[: h + 1, w] == 0).all(), (h, w)
                if h + 1 < 8:
                    assert diff[h + 1, w] > 0  # and it is used for the next pixel


@pytest.mark.parametrize("levels", [4, 8])
def test_uniform_decoder_gives_log2_levels_bits_per_dim(levels):
    model = VQVAEModel(tiny(num_gray_levels=levels)).eval()
    with torch.no_grad():
        model.decoder.logits.weight.zero_()
        model.decoder.logits.bias.zero_()
        x, mask = lines()
        out = model(pixel_values=x, pixel_mask=mask)
    assert out.bits_per_dim.item() == pytest.approx(math.log2(levels), abs=1e-5)
    # Table II uniform rate: log2 K / (pixels per latent) = log2 16 / (4 columns × 8 rows)
    assert out.uniform_rate_bits_per_dim.item() == pytest.approx(4 / 32)


def test_decode_codes_teacher_forced_equals_eval_forward_and_generation_is_consistent():
    torch.manual_seed(0)
    model = VQVAEModel(tiny(batch_norm=True))
    x, mask = lines()
    model(pixel_values=x, pixel_mask=mask)
    model.eval()
    with torch.no_grad():
        ref = model(pixel_values=x, pixel_mask=mask)
    units = model.encode(pixel_values=x, pixel_mask=mask)
    assert torch.equal(units.codes, ref.codes) and units.lengths.tolist() == [4, 3]
    levels = (x * 4).floor().clamp(0, 3).long()
    forced = model.decode_codes(units, labels=levels)
    assert torch.equal(forced.logits, ref.logits)
    gen = model.decode_codes(units.codes[:1, :2])  # 2 latents → 8 columns, generated pixel by pixel
    assert gen.reconstruction.shape == (1, 1, 8, 8)
    assert torch.equal(gen.logits.argmax(-1), gen.reconstruction)  # greedy: each pixel is its own argmax


def test_bad_inputs_are_rejected_clearly():
    model = VQVAEModel(tiny())
    x, mask = lines()
    with pytest.raises(ValueError, match=r"pixel_values.*\(batch, 1, 8, width\)"):
        model(pixel_values=torch.rand(2, 1, 16, 16))
    bad = mask.clone()
    bad[0, 3] = False
    with pytest.raises(ValueError, match="right-padding mask"):
        model(pixel_values=x, pixel_mask=bad)
    with pytest.raises(ValueError, match=r"pixel_mask.*\(2, 16\)"):
        model(pixel_values=x, pixel_mask=mask[:, :8])
    with pytest.raises(ValueError, match="empty sequence"):
        model(pixel_values=x, pixel_mask=torch.zeros_like(mask))
    with pytest.raises(ValueError, match=r"labels.*\[0, 4\)"):
        model(pixel_values=x, pixel_mask=mask, labels=torch.full((2, 1, 8, 16), 4))
