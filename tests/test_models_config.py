"""VQVAEConfig: per-architecture defaults (reference recipes), validation errors, JSON round trip."""

import json
import math

import pytest

from vq_hf import VQVAEConfig


def test_architecture_defaults_follow_the_reference_recipes():
    c = VQVAEConfig(architecture="cifar10")
    assert (c.num_codebooks, c.codebook_size, c.latent_dim, c.hidden_size) == (8, 128, 256, 256)
    assert c.codebook_dim == 32 and c.latent_grid == 8
    # 5×1024 recipe: 32 channels per codebook unless given
    c5 = VQVAEConfig(architecture="cifar10", num_codebooks=5, codebook_size=1024)
    assert c5.latent_dim == 160
    h = VQVAEConfig(architecture="handwriting")
    assert (h.codebook_size, h.num_codebooks, h.latent_dim, h.time_reduction, h.num_gray_levels) == (4096, 1, 128, 4, 4)
    s = VQVAEConfig(architecture="speech")
    assert (s.codebook_size, s.latent_dim, s.input_feature_size, s.rnn_hidden_size, s.rnn_num_layers) == (
        2048, 64, 243, 320, 4
    )
    assert s.time_reduction == 3 and s.ctc_blank_id == 0


def test_uniform_rate_matches_the_paper():
    # CIFAR 8×128: 8·64·7/3072 bits/dim; 5×1024: 5·64·10/3072; handwriting: log2(4096)/32/4 (Table II)
    assert VQVAEConfig(architecture="cifar10").uniform_rate_bits_per_dim() == pytest.approx(8 * 64 * 7 / 3072)
    c5 = VQVAEConfig(architecture="cifar10", num_codebooks=5, codebook_size=1024)
    assert c5.uniform_rate_bits_per_dim() == pytest.approx(5 * 64 * 10 / 3072)
    h = VQVAEConfig(architecture="handwriting")
    assert h.uniform_rate_bits_per_dim() == pytest.approx(math.log2(4096) / 32 / 4)


def test_round_trip_through_json(tmp_path):
    c = VQVAEConfig(architecture="handwriting", quantizer_type="reestimating", warmup_steps=7, rnn_num_layers=1)
    c.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "vq_hf_vqvae" and data["architecture"] == "handwriting"
    c2 = VQVAEConfig.from_pretrained(tmp_path)
    assert c2.to_dict() == c.to_dict()
    assert c2.rnn_subsample == [1] and c2.warmup_steps == 7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"architecture": "mnist"}, "architecture='mnist' is unknown"),
        ({"architecture": "cifar10", "latent_dim": 100, "num_codebooks": 8}, "latent_dim=100 is not divisible"),
        ({"architecture": "cifar10", "quantizer_type": "gumbel"}, "quantizer_type='gumbel'"),
        ({"architecture": "cifar10", "image_size": 30}, "image_size=30 must be divisible by 4"),
        ({"architecture": "cifar10", "codebook_size": 0}, "codebook_size=0"),
        ({"architecture": "cifar10", "batch_norm": True, "use_bottleneck": False}, "batch_norm=True needs"),
        ({"architecture": "handwriting", "conv_strides": [[1, 2]]}, "conv_strides=.* must list 7"),
        ({"architecture": "handwriting", "image_size": 8}, "reduces image_size=8 to height 0"),
        ({"architecture": "handwriting", "rnn_subsample": [1, 2, 2]}, "rnn_subsample=.* must have rnn_num_layers=2"),
        ({"architecture": "handwriting", "num_gray_levels": 1}, "num_gray_levels=1"),
        ({"architecture": "speech", "input_feature_size": 100}, "input_feature_size=100 is not divisible"),
        ({"architecture": "speech", "ctc_blank_id": 50}, "ctc_blank_id=50"),
        ({"architecture": "speech", "conv_activation": "gelu"}, "conv_activation='gelu'"),
    ],
)
def test_bad_configs_are_rejected_with_the_field_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VQVAEConfig(**kwargs)
