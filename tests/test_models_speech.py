"""Speech VQ-VAE + CTC: forward/backward, output lengths (/3 front-end), greedy decoding, no-bottleneck baseline."""

import pytest
import torch

from vq_hf import VQVAEConfig, VQVAEForCTC, VQVAEModel
from vq_hf.metrics.ctc import ctc_greedy_decode




def tiny(**kw):
    base = dict(architecture="speech", input_feature_size=12, num_channels=3, conv_channels=[4, 4],
                rnn_num_layers=2, rnn_hidden_size=8, codebook_size=16, latent_dim=8, vocab_size=5)
    base.update(kw)
    return VQVAEConfig(**base)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 64, 12, generator=g)
    am = torch.ones(2, 64, dtype=torch.long)
    am[1, 40:] = 0
    labels = torch.tensor([[1, 2, 3, 2], [4, 1, -100, -100]])
    return feats, am, labels


@pytest.mark.parametrize("quantizer_type", ["vanilla", "ema"])
def test_ctc_forward_backward_and_output_lengths(quantizer_type):
    torch.manual_seed(0)
    model = VQVAEForCTC(tiny(quantizer_type=quantizer_type, batch_norm=True))
    feats, am, labels = batch()
    out = model(input_features=feats, attention_mask=am, labels=labels)
    # a 64-frame chunk gives 22 latent steps after the k=7, stride-3 front-end (reference: 66 / 3)
    assert out.logits.shape == (2, 22, 5)
    assert out.output_lengths.tolist() == [22, 14]
    assert out.codes.shape == (2, 22, 1)
    assert torch.isfinite(out.loss) and torch.isfinite(out.ctc_loss)
    assert out.loss.item() == pytest.approx((out.ctc_loss + out.vq_loss).item(), rel=1e-6)
    out.loss.backward()
    assert torch.isfinite(model.vqvae.encoder.rnns[0].lstm.weight_ih_l0.grad).all()
    assert model.ctc_head.proj.weight.grad is not None


def test_padding_does_not_change_the_ctc_loss_of_real_frames():
    torch.manual_seed(0)
    model = VQVAEForCTC(tiny(batch_norm=True)).eval()
    feats, am, labels = batch()
    with torch.no_grad():
        both = model(input_features=feats, attention_mask=am, labels=labels)
        alone = model(input_features=feats[1:, :40], labels=labels[1:, :2])
    assert torch.allclose(alone.logits[0], both.logits[1, :14], atol=1e-5)
    codes = model.encode(feats, am)
    assert codes.lengths.tolist() == [22, 14]
    assert torch.equal(model.decode_codes(codes).logits, both.logits)


def test_greedy_ctc_decoding_on_a_hand_built_example():
    # frames: a a _ a b b _ _ c (padding beyond length 9) → [a, a, b, c]; blank = 0
    a, b, c = 1, 2, 3
    ids = torch.tensor([[a, a, 0, a, b, b, 0, 0, c, c, a], [0, 0, b, b, b, 0, c, 0, 0, 0, 0]])
    logits = torch.nn.functional.one_hot(ids, 5).float() * 5
    assert ctc_greedy_decode(logits, torch.tensor([9, 11])) == [[a, a, b, c], [b, c]]
    model = VQVAEForCTC(tiny())
    assert model.greedy_decode(logits, torch.tensor([9, 11])) == [[a, a, b, c], [b, c]]


def test_no_bottleneck_baseline_and_base_model():
    model = VQVAEForCTC(tiny(use_bottleneck=False))
    assert model.vqvae.quantizer is None
    feats, am, labels = batch()
    out = model(input_features=feats, attention_mask=am, labels=labels)
    assert out.codes is None and out.vq_loss.item() == 0.0 and torch.isfinite(out.loss)
    base = VQVAEModel(tiny())
    b = base(input_features=feats, attention_mask=am)
    assert b.loss is None and b.codes.shape == (2, 22, 1) and b.code_lengths.tolist() == [22, 14]


def test_bad_inputs_are_rejected_clearly():
    with pytest.raises(ValueError, match="VQVAEForCTC needs a speech config"):
        VQVAEForCTC(VQVAEConfig(architecture="cifar10"))
    model = VQVAEForCTC(tiny())
    feats, am, labels = batch()
    with pytest.raises(ValueError, match="blank id 0"):
        model(input_features=feats, attention_mask=am, labels=torch.tensor([[1, 0, 2], [1, 2, 3]]))
    with pytest.raises(ValueError, match=r"phone ids in \[0, 5\)"):
        model(input_features=feats, attention_mask=am, labels=torch.tensor([[1, 7], [1, 2]]))
    with pytest.raises(ValueError, match=r"input_features.*\(batch, frames, 12\)"):
        model(input_features=torch.randn(2, 64, 10))
    with pytest.raises(ValueError, match="right-padding mask"):
        model(input_features=feats, attention_mask=am.flip(1))
    with pytest.raises(TypeError, match=r"forward got unexpected arguments \[.pixel_values.\]"):
        model.vqvae(pixel_values=torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="use VQVAEForCTC"):
        model.vqvae(input_features=feats, labels=labels)
