"""CIFAR-10 VQ-VAE: forward/backward, targets, bits/dim, encode → decode_codes, input errors (tiny sizes)."""

import math

import pytest
import torch

from vq_hf import VQVAEConfig, VQVAEModel




def tiny(**kw):
    base = dict(architecture="cifar10", hidden_size=16, num_residual_layers=1, num_codebooks=2, codebook_size=8,
                latent_dim=8)
    base.update(kw)
    return VQVAEConfig(**base)


def images(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    u8 = torch.randint(0, 256, (b, 3, 32, 32), generator=g)
    return u8.float() / 255 - 0.5, u8


@pytest.mark.parametrize("quantizer_type, bn", [("vanilla", False), ("ema", True), ("reestimating", True)])
def test_forward_backward_shapes_and_finite_loss(quantizer_type, bn):
    torch.manual_seed(0)
    model = VQVAEModel(tiny(quantizer_type=quantizer_type, batch_norm=bn, reservoir_size=64))
    x, u8 = images()
    out = model(pixel_values=x, labels=u8)
    assert out.logits.shape == (3, 3, 32, 32, 256)
    assert out.codes.shape == (3, 8, 8, 2) and out.codes.dtype == torch.int64
    assert out.quantized.shape == out.latents.shape == (3, 8, 8, 8)
    assert out.perplexity.shape == (2,)
    assert torch.isfinite(out.loss)
    assert out.loss.item() == pytest.approx((out.reconstruction_loss + out.vq_loss).item(), rel=1e-6)
    assert out.dims_per_example.tolist() == [3072] * 3
    assert torch.allclose(out.nll_per_example.sum() / out.dims_per_example.sum(), out.reconstruction_loss)
    out.loss.backward()
    assert model.encoder.conv1.weight.grad is not None and torch.isfinite(model.encoder.conv1.weight.grad).all()
    if quantizer_type != "ema":
        assert model.quantizer.codebook.grad is not None


def test_labels_derived_by_rounding_not_truncation():
    torch.manual_seed(0)
    model = VQVAEModel(tiny()).eval()
    # values 1..63 are the ones the reference's truncation moved one level down
    u8 = torch.arange(256).repeat(12)[: 3 * 32 * 32].view(1, 3, 32, 32)
    x = u8.float() / 255 - 0.5
    with torch.no_grad():
        a = model(pixel_values=x)
        b = model(pixel_values=x, labels=u8)
    assert torch.equal(a.nll, b.nll)


def test_uniform_decoder_gives_8_bits_per_dim():
    model = VQVAEModel(tiny()).eval()
    with torch.no_grad():
        model.decoder.out.weight.zero_()
        model.decoder.out.bias.zero_()
        out = model(pixel_values=images()[0])
    assert out.bits_per_dim.item() == pytest.approx(8.0, abs=1e-5)
    assert out.reconstruction_loss.item() == pytest.approx(math.log(256), abs=1e-5)
    assert out.uniform_rate_bits_per_dim.item() == pytest.approx(2 * 64 * 3 / 3072)


def test_decode_codes_of_encode_equals_eval_reconstruction():
    torch.manual_seed(0)
    model = VQVAEModel(tiny(batch_norm=True))
    x, _ = images()
    model(pixel_values=x)  # one training step moves the BN statistics away from their init
    model.eval()
    with torch.no_grad():
        ref = model(pixel_values=x)
    units = model.encode(pixel_values=x)
    assert torch.equal(units.codes, ref.codes) and units.lengths is None and units.mask is None
    dec = model.decode_codes(units)
    assert torch.equal(dec.logits, ref.logits)
    assert torch.equal(dec.reconstruction, ref.logits.argmax(-1))
    # encode never changes quantizer state, even from train mode
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode(pixel_values=x)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_no_bottleneck_baseline():
    model = VQVAEModel(tiny(use_bottleneck=False))
    out = model(pixel_values=images()[0])
    assert out.codes is None and out.vq_loss.item() == 0.0 and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="no bottleneck"):
        model.encode(pixel_values=images()[0])


def test_bad_inputs_are_rejected_clearly():
    model = VQVAEModel(tiny())
    x, u8 = images()
    with pytest.raises(ValueError, match=r"pixel_values.*\(batch, 3, 32, 32\)"):
        model(pixel_values=x[:, :, :16])
    with pytest.raises(ValueError, match="float tensor"):
        model(pixel_values=u8)
    with pytest.raises(ValueError, match="pixel_values` is required"):
        model()
    with pytest.raises(ValueError, match=r"labels.*\[0, 256\)"):
        model(pixel_values=x, labels=u8 + 1)
    with pytest.raises(TypeError, match=r"forward got unexpected arguments \[.input_features.\]"):
        model(input_features=torch.zeros(1, 5, 243))
    with pytest.raises(ValueError, match=r"codes.*\[0, 8\)"):
        model.decode_codes(torch.full((1, 8, 8, 2), 8))
    with pytest.raises(ValueError, match="num_codebooks=2"):
        model.decode_codes(torch.zeros(1, 8, 8, 3, dtype=torch.long))


def test_image_processor_agrees_with_the_data_collator():
    """The processor and `vq_hf.data`'s collator implement the same input contract (docs/architecture.md)."""
    from vq_hf import VQVAEImageProcessor
    from vq_hf.data.collators import Cifar10Collator

    u8 = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    proc = VQVAEImageProcessor()(list(u8))
    coll = Cifar10Collator()([{"pixels": img} for img in u8])
    assert torch.equal(proc["pixel_values"], coll["pixel_values"])
    assert torch.equal(proc["labels"], coll["labels"])
