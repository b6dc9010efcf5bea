"""Family configs: defaults (reference recipes), the nested quantizer dict checked by the quantizer's own validator,
validation errors naming the field, JSON round trip."""

import json
import math

import pytest

from vq_hf import VQVAEConfig
from vq_hf.models import VQVAEImageConfig, VQVAELineConfig, VQVAESpeechConfig


def test_family_defaults_follow_the_reference_recipes():
    c = VQVAEImageConfig()
    assert (c.num_codebooks, c.codebook_size, c.latent_dim, c.hidden_size) == (8, 128, 256, 256)
    assert c.codebook_dim == 32 and c.latent_grid == 8 and c.architecture == "cifar10"
    # 5×1024 recipe: 32 channels per codebook unless given
    c5 = VQVAEImageConfig(quantizer={"num_codebooks": 5, "codebook_size": 1024})
    assert c5.latent_dim == 160
    h = VQVAELineConfig()
    assert (h.codebook_size, h.num_codebooks, h.latent_dim, h.time_reduction, h.num_gray_levels) == (4096, 1, 128, 4, 4)
    s = VQVAESpeechConfig()
    assert (s.codebook_size, s.latent_dim, s.input_feature_size, s.rnn_hidden_size, s.rnn_num_layers) == (
        2048, 64, 243, 320, 4
    )
    assert s.time_reduction == 3 and s.ctc_blank_id == 0
    # the names users know build the family configs
    assert type(VQVAEConfig()) is VQVAEImageConfig
    assert type(VQVAEConfig(model_type="vqvae_speech", latent_dim=32)) is VQVAESpeechConfig


def test_uniform_rate_matches_the_paper():
    # CIFAR 8×128: 8·64·7/3072 bits/dim; 5×1024: 5·64·10/3072; handwriting: log2(4096)/32/4 (Table II)
    assert VQVAEImageConfig().uniform_rate_bits_per_dim() == pytest.approx(8 * 64 * 7 / 3072)
    c5 = VQVAEImageConfig(quantizer={"num_codebooks": 5, "codebook_size": 1024})
    assert c5.uniform_rate_bits_per_dim() == pytest.approx(5 * 64 * 10 / 3072)
    assert VQVAELineConfig().uniform_rate_bits_per_dim() == pytest.approx(math.log2(4096) / 32 / 4)
    assert VQVAESpeechConfig().uniform_rate_bits_per_dim() == 0.0


def test_quantizer_dict_is_stored_unchanged_and_round_trips_through_json(tmp_path):
    q = {"codebook_size": 64, "quantizer_type": "reestimating", "warmup_steps": 7}
    c = VQVAELineConfig(quantizer=q, rnn_num_layers=1)
    assert c.quantizer == q and c.quantizer is not q
    c.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "vqvae_line" and data["quantizer"] == q and "architecture" not in data
    for loader in (VQVAEConfig, VQVAELineConfig):
        c2 = loader.from_pretrained(tmp_path)
        assert type(c2) is VQVAELineConfig and c2.to_dict() == c.to_dict()
        assert c2.rnn_subsample == [1] and c2.quantizer["warmup_steps"] == 7
    assert c.quantizer_options()["reservoir_size"] == 20480  # the quantizer's default, filled in on request


def test_ema_decay_zero_fails_at_construction_with_the_quantizers_message():
    with pytest.raises(ValueError, match=r"VQVAEImageConfig: quantizer: ema_decay must be > 0.0, got 0"):
        VQVAEImageConfig(quantizer={"codebook_size": 8, "ema_decay": 0})


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (VQVAEImageConfig, {"latent_dim": 100}, "dim=100 is not divisible by num_codebooks=8"),
        (VQVAEImageConfig, {"quantizer": {"codebook_size": 8, "quantizer_type": "gumbel"}}, "quantizer_type.*'gumbel'"),
        (VQVAEImageConfig, {"image_size": 30}, "image_size=30 must be divisible by 4"),
        (VQVAEImageConfig, {"quantizer": {"codebook_size": 0}}, "codebook_size must be >= 1, got 0"),
        (VQVAEImageConfig, {"quantizer": {"num_codebooks": 2}}, r"option\(s\) \['codebook_size'\] must be given"),
        (VQVAEImageConfig, {"quantizer": {"codebook_size": 8, "codebook_sise": 8}}, r"unknown .*\['codebook_sise'\]"),
        (VQVAEImageConfig, {"quantizer": {"codebook_size": 8, "family": "lfq"}}, "family='lfq' is not supported"),
        (VQVAEImageConfig, {"quantizer": {"codebook_size": 8, "family": "fsq"}},
         r"unknown FiniteScalarQuantizer option\(s\) \['codebook_size'\]"),
        (VQVAEImageConfig, {"quantizer": {"codebook_size": 8, "channel_first": True}}, "channel_first is set by"),
        (VQVAEImageConfig, {"quantizer": {"codebook_size": 8, "batch_norm": True}, "use_bottleneck": False},
         "batch_norm=True needs"),
        (VQVAELineConfig, {"conv_strides": [[1, 2]]}, "conv_strides=.* must list 7"),
        (VQVAELineConfig, {"image_size": 8}, "reduces image_size=8 to height 0"),
        (VQVAELineConfig, {"rnn_subsample": [1, 2, 2]}, "rnn_subsample=.* must have rnn_num_layers=2"),
        (VQVAELineConfig, {"num_gray_levels": 1}, "num_gray_levels=1"),
        (VQVAESpeechConfig, {"input_feature_size": 100}, "input_feature_size=100 is not divisible"),
        (VQVAESpeechConfig, {"ctc_blank_id": 50}, "ctc_blank_id=50"),
        (VQVAESpeechConfig, {"conv_activation": "gelu"}, "conv_activation='gelu'"),
        (VQVAESpeechConfig, {"architecture": "cifar10"}, "is the 'speech' family, got architecture='cifar10'"),
        (VQVAEImageConfig, {"num_codebooks": 2}, r"\['num_codebooks'\] are quantizer options; pass them in quantizer="),
    ],
)
def test_bad_configs_are_rejected_with_the_field_named(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_no_bottleneck_config_ignores_an_empty_quantizer():
    c = VQVAESpeechConfig(use_bottleneck=False, quantizer={})
    assert c.quantizer == {} and c.uniform_rate_bits_per_dim() == 0.0
