"""Folders saved by vq-hf 0.1.0 (tests/fixtures/v010, written by tests/fixtures/make_v010_fixtures.py at main
5cd39ad) load through VQVAEModel / VQVAEForCTC / the Auto classes as the family models and reproduce the codes and
outputs 0.1.0 computed, bit for bit, including a training step that uses the saved quantizer state."""

import json
import pathlib

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCTC
from transformers.models.auto.image_processing_auto import AutoImageProcessor

from vq_hf import VQVAEConfig, VQVAEForCTC, VQVAEModel
from vq_hf.models import (
    VQVAEFeatureExtractor,
    VQVAEImageConfig,
    VQVAEImageModel,
    VQVAEImageProcessor,
    VQVAELineConfig,
    VQVAELineImageProcessor,
    VQVAELineModel,
    VQVAESpeechConfig,
    VQVAESpeechForCTC,
    VQVAESpeechModel,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "v010"
FAMILIES = {
    "cifar10": (VQVAEImageConfig, VQVAEImageModel, VQVAEImageProcessor),
    "handwriting": (VQVAELineConfig, VQVAELineModel, VQVAELineImageProcessor),
    "speech": (VQVAESpeechConfig, VQVAESpeechForCTC, VQVAEFeatureExtractor),
}
LOADERS = {
    "cifar10": (VQVAEModel, AutoModel, VQVAEImageModel),
    "handwriting": (VQVAEModel, AutoModel, VQVAELineModel),
    "speech": (VQVAEForCTC, AutoModelForCTC, VQVAESpeechForCTC),
}


def expected(name):
    return load_file(str(FIXTURES / name / "expected.safetensors"))


def group(exp, prefix):
    return {k[len(prefix) + 1:]: v for k, v in exp.items() if k.startswith(prefix + ".")}


def assert_outputs(out, want: dict, what: str):
    for key, value in want.items():
        got = getattr(out, key)
        assert got is not None, f"{what}.{key} missing"
        assert got.dtype == value.dtype and torch.equal(got, value), f"{what}.{key} differs"


def test_fixtures_are_what_0_1_0_saved():
    for name in FAMILIES:
        cfg = json.loads((FIXTURES / name / "config.json").read_text())
        assert cfg["model_type"] == "vq_hf_vqvae" and cfg["architecture"] == name
    assert sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file()) < 2 * 1024 * 1024


@pytest.mark.parametrize("name", list(FAMILIES))
def test_flat_config_converts_to_the_family(name):
    config_cls, _, _ = FAMILIES[name]
    flat = json.loads((FIXTURES / name / "config.json").read_text())
    for config in (VQVAEConfig.from_pretrained(FIXTURES / name), AutoConfig.from_pretrained(FIXTURES / name),
                   config_cls.from_pretrained(FIXTURES / name)):
        assert type(config) is config_cls and config.architecture == name
        for key in ("quantizer_type", "codebook_size", "num_codebooks", "seed", "ema_decay", "reservoir_size"):
            assert config.quantizer[key] == flat[key], key
        assert "architecture" not in config.to_dict() and "quantizer_type" not in config.to_dict()
    # the CIFAR model's BN is the quantizer's own; the sequence models' sits before the projection
    if name == "cifar10":
        assert config.quantizer["batch_norm"] is True
    else:
        assert config.batch_norm is True and "batch_norm" not in config.quantizer


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("loader", [0, 1, 2], ids=["user-name", "auto", "family"])
def test_v010_folder_gives_identical_codes_and_outputs(name, loader):
    cls = LOADERS[name][loader]
    model = cls.from_pretrained(FIXTURES / name)
    assert type(model) is LOADERS[name][2] and not model.training
    exp = expected(name)
    batch = group(exp, "input")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert_outputs(model(**batch), group(exp, "eval"), "eval")
        enc = model.encode(**inputs)
        assert_outputs(enc, group(exp, "encode"), "encode")
        if name == "handwriting":
            dec = model.decode_codes(enc, labels=model.gray_levels(batch["pixel_values"]))
        else:
            dec = model.decode_codes(enc)
        assert_outputs(dec, group(exp, "decode"), "decode")
        if name == "cifar10":  # 0.1.0 did not store these twice: they equal the eval forward's
            assert torch.equal(dec.logits, exp["eval.logits"])
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    out = model(**batch)
    out.loss.backward()
    opt.step()
    assert torch.equal(out.loss.detach(), exp["train.loss"]) and torch.equal(out.codes, exp["train.codes"])
    assert torch.equal(model.encode(**inputs).codes, exp["after_step.codes"])


def test_v010_speech_folder_loads_as_the_base_model():
    base = VQVAEModel.from_pretrained(FIXTURES / "speech")
    assert type(base) is VQVAESpeechModel
    exp = expected("speech")
    inputs = {k: v for k, v in group(exp, "input").items() if k != "labels"}
    assert torch.equal(base.encode(**inputs).codes, exp["encode.codes"])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_v010_processor_loads_through_the_auto_class(name):
    _, _, processor_cls = FAMILIES[name]
    auto = AutoFeatureExtractor if name == "speech" else AutoImageProcessor
    processor = auto.from_pretrained(FIXTURES / name)
    assert type(processor) is processor_cls


@pytest.mark.parametrize("name", list(FAMILIES))
def test_resaved_v010_folder_is_the_family_format_and_identical(tmp_path, name):
    model = LOADERS[name][0].from_pretrained(FIXTURES / name)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == FAMILIES[name][0].model_type and isinstance(cfg["quantizer"], dict)
    old, new = load_file(str(FIXTURES / name / "model.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)


def test_flat_keyword_config_still_constructs():
    config = VQVAEConfig(architecture="speech", input_feature_size=12, conv_channels=[4, 4], rnn_num_layers=1,
                         rnn_hidden_size=8, codebook_size=16, latent_dim=8, vocab_size=5, quantizer_type="ema",
                         batch_norm=True)
    assert type(config) is VQVAESpeechConfig and config.batch_norm
    assert config.quantizer == {"codebook_size": 16, "num_codebooks": 1, "ema_decay": 0.999, "quantizer_type": "ema"}
    with pytest.raises(ValueError, match="ema_decay must be > 0.0"):
        VQVAEConfig(architecture="cifar10", ema_decay=0.0)
    with pytest.raises(ValueError, match="architecture='mnist' is unknown"):
        VQVAEConfig(architecture="mnist")
