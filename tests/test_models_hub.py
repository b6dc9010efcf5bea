"""Hub behaviour: save → from_pretrained exactness (mid-warm-up / mid-re-estimation continuation), bf16 loads,
Auto classes, processors through the Auto classes, corrupt files and bad configs."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCTC
from transformers.models.auto.image_processing_auto import AutoImageProcessor

from vq_hf import (
    VQVAEConfig,
    VQVAEFeatureExtractor,
    VQVAEForCTC,
    VQVAEImageProcessor,
    VQVAELineImageProcessor,
    VQVAEModel,
)
from vq_hf.models import VQVAEImageConfig, VQVAEImageModel, VQVAESpeechForCTC, VQVAESpeechModel



CIFAR = dict(architecture="cifar10", hidden_size=8, num_residual_layers=1, num_codebooks=2, codebook_size=8,
             latent_dim=8)
LINES = dict(architecture="handwriting", image_size=8, conv_channels=[4, 8], conv_kernel_sizes=[[3, 3], [5, 3]],
             conv_strides=[[1, 2], [2, 2]], rnn_num_layers=2, rnn_hidden_size=8, rnn_projection_size=8,
             codebook_size=16, latent_dim=8, mixer_hidden_size=8, pixelcnn_hidden_size=8, pixelcnn_num_layers=2)
SPEECH = dict(architecture="speech", input_feature_size=12, num_channels=3, conv_channels=[4, 4], rnn_num_layers=1,
              rnn_hidden_size=8, codebook_size=16, latent_dim=8, vocab_size=5)


def inputs(arch, seed=0):
    g = torch.Generator().manual_seed(seed)
    if arch == "cifar10":
        return {"pixel_values": torch.randint(0, 256, (4, 3, 32, 32), generator=g).float() / 255 - 0.5}
    if arch == "handwriting":
        mask = torch.ones(2, 16, dtype=torch.bool)
        mask[1, 12:] = False
        return {"pixel_values": torch.rand(2, 1, 8, 16, generator=g), "pixel_mask": mask}
    am = torch.ones(2, 30, dtype=torch.long)
    am[1, 20:] = 0
    return {"input_features": torch.randn(2, 30, 12, generator=g), "attention_mask": am,
            "labels": torch.tensor([[1, 2], [3, -100]])}


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize(
    "kw, cls",
    [
        (dict(CIFAR, quantizer_type="reestimating", batch_norm=True, warmup_steps=3, reestimate_every=1,
              reestimate_steps=3, reservoir_size=64), VQVAEModel),
        (dict(CIFAR, quantizer_type="ema", batch_norm=True), VQVAEModel),
        (dict(LINES, codebook_size=4, quantizer_type="reestimating", batch_norm=True, warmup_steps=3,
              reestimate_every=1, reestimate_steps=2, reservoir_size=32), VQVAEModel),
        (dict(SPEECH, quantizer_type="ema", batch_norm=True), VQVAEForCTC),
    ],
    ids=["cifar-reestimating", "cifar-ema", "lines-reestimating", "speech-ema"],
)
def test_save_load_continue_is_exact(tmp_path, kw, cls):
    """Saved mid-warm-up / before re-estimation, the reloaded model continues training identically."""
    torch.manual_seed(0)
    config = VQVAEConfig(**kw)
    model = cls(config)
    batch = inputs(config.architecture)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)  # stateless optimizer: only the model carries state
    for _ in range(2):
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    if kw.get("quantizer_type") == "reestimating":
        assert not model.quantizer.quantizing  # mid-warm-up
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded, info = cls.from_pretrained(tmp_path, output_loading_info=True)
    assert all(not v for v in info.values()), info
    assert not loaded.training
    assert_same_state(model, loaded)
    model.eval()
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.codes, b.codes)
    model.train()
    loaded.train()
    opt_b = torch.optim.SGD(loaded.parameters(), lr=0.05)
    for _ in range(3):  # crosses the end of warm-up and a re-estimation for the reestimating variants
        outs = []
        for m, o in ((model, opt), (loaded, opt_b)):
            o.zero_grad()
            out = m(**batch)
            out.loss.backward()
            o.step()
            outs.append(out.loss.detach())
        assert torch.equal(outs[0], outs[1])
    assert_same_state(model, loaded)
    if kw.get("quantizer_type") == "reestimating":
        # saved at step 2 of a 3-step warm-up: the continuation crossed warm-up end and re-estimated identically
        assert int(model.quantizer.num_reestimations) >= 2


def test_bf16_load_keeps_the_quantizer_in_fp32(tmp_path):
    VQVAEModel(VQVAEConfig(**CIFAR, quantizer_type="ema", batch_norm=True)).save_pretrained(tmp_path)
    model = VQVAEModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert model.encoder.conv1.weight.dtype == torch.bfloat16
    for name, t in list(model.quantizer.named_parameters()) + list(model.quantizer.named_buffers()):
        if name.endswith(("step", "epoch", "seed", "position", "reestimations", "tracked")):
            assert t.dtype == torch.int64, name  # counters and seeds are never cast
        else:
            assert t.dtype == torch.float32, name
    with torch.no_grad():
        out = model(pixel_values=inputs("cifar10")["pixel_values"].bfloat16())
    assert torch.isfinite(out.loss)


def test_auto_classes(tmp_path):
    torch.manual_seed(0)
    VQVAEModel(VQVAEConfig(**CIFAR)).save_pretrained(tmp_path / "cifar")
    assert type(AutoConfig.from_pretrained(tmp_path / "cifar")) is VQVAEImageConfig
    assert type(AutoModel.from_pretrained(tmp_path / "cifar")) is VQVAEImageModel
    ctc = VQVAEForCTC(VQVAEConfig(**SPEECH))
    assert type(ctc) is VQVAESpeechForCTC and isinstance(ctc, VQVAEForCTC)
    ctc.save_pretrained(tmp_path / "speech")
    auto_ctc = AutoModelForCTC.from_pretrained(tmp_path / "speech")
    assert type(auto_ctc) is VQVAESpeechForCTC
    assert_same_state(ctc, auto_ctc)
    # the base model loads out of the CTC checkpoint (prefix "vqvae.")
    for base in (AutoModel.from_pretrained(tmp_path / "speech"), VQVAEModel.from_pretrained(tmp_path / "speech")):
        assert type(base) is VQVAESpeechModel and isinstance(base, VQVAEModel)
    assert torch.equal(base.quantizer.codebook, ctc.vqvae.quantizer.codebook)


def test_processors_round_trip_through_auto_classes(tmp_path):
    u8 = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    ip = VQVAEImageProcessor()
    ip.save_pretrained(tmp_path / "ip")
    ip2 = AutoImageProcessor.from_pretrained(tmp_path / "ip")
    assert type(ip2) is VQVAEImageProcessor
    a, b = ip(list(u8)), ip2(list(u8))
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
    assert np.array_equal(np.stack(ip2.postprocess(b["pixel_values"], as_pil=False)), u8)

    lp = VQVAELineImageProcessor()
    lp.save_pretrained(tmp_path / "lines")
    assert type(AutoImageProcessor.from_pretrained(tmp_path / "lines")) is VQVAELineImageProcessor

    fe = VQVAEFeatureExtractor()
    fe.save_pretrained(tmp_path / "fe")
    fe2 = AutoFeatureExtractor.from_pretrained(tmp_path / "fe")
    assert type(fe2) is VQVAEFeatureExtractor and fe2.to_dict() == fe.to_dict()


def test_image_processor_rejects_bad_images():
    ip = VQVAEImageProcessor()
    with pytest.raises(ValueError, match=r"image 1 has shape \(32, 30, 3\)"):
        ip([np.zeros((32, 32, 3), np.uint8), np.zeros((32, 30, 3), np.uint8)])
    with pytest.raises(ValueError, match="dtype float32; expected uint8"):
        ip(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(32, 32, 3\) or \(3, 32, 32\)"):
        ip(np.zeros((32, 32, 4), np.uint8))
    from PIL import Image

    with pytest.raises(ValueError, match="PIL mode 'L'; expected 'RGB'"):
        ip(Image.new("L", (32, 32)))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors_is_a_clear_error(tmp_path, damage):
    VQVAEModel(VQVAEConfig(**CIFAR)).save_pretrained(tmp_path)
    f = tmp_path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07" * 64)
    with pytest.raises(OSError, match=r"model\.safetensors is corrupt or truncated"):
        VQVAEModel.from_pretrained(tmp_path)


def test_bad_config_json_is_a_clear_error(tmp_path):
    VQVAEModel(VQVAEConfig(**CIFAR)).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path, bad, ignore=shutil.ignore_patterns("bad"))
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "vq_hf_vqvae", "architecture": "mnist"}))
    with pytest.raises(ValueError, match="architecture='mnist' is unknown"):
        AutoModel.from_pretrained(bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "quantizer": {**cfg["quantizer"], "ema_decay": 1.0}}))
    with pytest.raises(ValueError, match="VQVAEImageConfig: quantizer: ema_decay must be < 1.0"):
        VQVAEModel.from_pretrained(bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "quantizer": {**cfg["quantizer"], "codebook_size": 16}}))
    with pytest.raises(ValueError, match=r"does not match its config.*quantizer\.codebook: checkpoint \[2, 8, 4\]"):
        VQVAEModel.from_pretrained(bad)


@pytest.mark.parametrize("family", ["cifar10", "handwriting", "speech"])
def test_remote_code_export_loads_without_importing_vq_hf(tmp_path, family):
    """`save_pretrained(..., export_remote_code=True)` writes the family's configuration and modeling files and an
    `auto_map` (register_for_auto_class, no import rewriting); a fresh interpreter that does not import vq_hf
    itself loads the folder with trust_remote_code as the copied classes and reproduces the outputs."""
    import os
    import subprocess
    import sys
    import textwrap

    kw, cls, auto, files = {
        "cifar10": (CIFAR, VQVAEModel, "AutoModel", ("configuration_vqvae_image.py", "modeling_vqvae_image.py")),
        "handwriting": (LINES, VQVAEModel, "AutoModel", ("configuration_vqvae_line.py", "modeling_vqvae_line.py")),
        "speech": (SPEECH, VQVAEForCTC, "AutoModelForCTC",
                   ("configuration_vqvae_speech.py", "modeling_vqvae_speech.py")),
    }[family]
    torch.manual_seed(0)
    model = cls(VQVAEConfig(**kw, quantizer_type="ema")).eval()
    model.save_pretrained(tmp_path / "m", export_remote_code=True)
    assert all((tmp_path / "m" / f).is_file() for f in files)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["auto_map"][auto] == f"{files[1][:-3]}.{type(model).__name__}"
    assert cfg["auto_map"]["AutoConfig"] == f"{files[0][:-3]}.{type(model.config).__name__}"
    # the export belongs to that save only
    model.save_pretrained(tmp_path / "plain")
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    batch = {k: v for k, v in inputs(family).items() if k != "labels"}
    torch.save(batch, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(**batch).logits, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import {auto}
        m = {auto}.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True)
        assert type(m).__module__.startswith("transformers_modules"), type(m).__module__
        with torch.no_grad():
            out = m(**torch.load({str(tmp_path / "x.pt")!r})).logits
        assert torch.equal(out, torch.load({str(tmp_path / "ref.pt")!r}))
        print("REMOTE_OK")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert "REMOTE_OK" in res.stdout, res.stderr[-3000:]


@pytest.mark.parametrize("arch", ["cifar10", "handwriting", "speech"])
def test_bf16_autocast_training_step(arch):
    """Under bf16 autocast the losses (NLL, CTC, VQ terms) are computed in fp32 and the EMA state stays fp32."""
    kw, cls = {"cifar10": (CIFAR, VQVAEModel), "handwriting": (LINES, VQVAEModel), "speech": (SPEECH, VQVAEForCTC)}[arch]
    torch.manual_seed(0)
    model = cls(VQVAEConfig(**kw, batch_norm=True, quantizer_type="ema"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs(arch))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert out.vq_loss.dtype == torch.float32
    out.loss.backward()
    assert model.quantizer.ema_sum.dtype == torch.float32 and torch.isfinite(model.quantizer.ema_sum).all()
