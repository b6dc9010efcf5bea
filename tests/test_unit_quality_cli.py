"""`vq-hf unit-quality` on tiny aligned corpora: every key, units mapped onto reference frames, k-means floor."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from vq_hf import unit_evaluation

RATE = 16000
KEYS = ("purity", "cluster_purity", "pnmi", "nmi", "boundary_f1", "mapped_error_rate", "mean_segment_length",
        "used_units", "abx_within_speaker", "abx_across_speaker")


def _kaldi_dir(root, name, speakers, seed):
    d = root / name
    (d / "wav").mkdir(parents=True)
    wav, ctm, spk = [], [], []
    rng = np.random.default_rng(seed)
    for s_i, speaker in enumerate(speakers):
        for u in range(2):
            utt = f"{speaker}-u{u}"
            # three "phones": two tones and a noise burst, 0.2 s each, pitch shifted per speaker
            parts = []
            for p, freq in enumerate((300.0, 900.0, None)):
                t = np.arange(int(0.2 * RATE)) / RATE
                part = 0.3 * rng.standard_normal(t.shape) if freq is None else 0.3 * np.sin(2 * np.pi * freq * (1 + 0.1 * s_i) * t)
                parts.append(part)
            audio = np.concatenate(parts) + 0.01 * rng.standard_normal(3 * len(t))
            sf.write(d / "wav" / f"{utt}.wav", np.round(audio * 32767).astype(np.int16), RATE, subtype="PCM_16")
            wav.append(f"{utt} {d / 'wav' / (utt + '.wav')}")
            spk.append(f"{utt} {speaker}")
            frames = 1 + (len(audio) - 400) // 160
            bounds = [0, 20, 40, frames]
            ctm += [f"{utt} 1 {a * 0.01:.2f} {(b - a) * 0.01:.2f} {ph}" for ph, a, b in zip(["AA", "IY", "S"], bounds[:-1], bounds[1:])]
    (d / "wav.scp").write_text("\n".join(wav) + "\n")
    (d / "utt2spk").write_text("\n".join(spk) + "\n")
    (d / "phones.ctm").write_text("\n".join(ctm) + "\n")


@pytest.fixture()
def speech_setup(tmp_path):
    from vq_hf.models import VQVAEConfig, VQVAEForCTC

    root = tmp_path / "corpus"
    _kaldi_dir(root, "train", ["spkA", "spkB"], 0)
    _kaldi_dir(root, "test", ["spkC", "spkD"], 1)
    torch.manual_seed(0)
    cfg = VQVAEConfig(architecture="speech", conv_channels=[4, 4], rnn_num_layers=1, rnn_hidden_size=8,
                      codebook_size=8, latent_dim=4, vocab_size=6)
    model = VQVAEForCTC(cfg).eval()
    model.save_pretrained(str(tmp_path / "model"))
    return tmp_path, root, model


def test_speech_unit_quality_cli_prints_every_key_with_floor(speech_setup, capsys):
    tmp_path, root, model = speech_setup
    out = tmp_path / "uq.json"
    rc = unit_evaluation.cli(["--model", str(tmp_path / "model"), "--dataset_name", str(root), "--split", "test",
                              "--kmeans_floor", "--output", str(out), "--device", "cpu"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    for key in KEYS + ("bitrate_bits_per_second",):
        assert key in printed and printed[key] is not None, key
        assert key in printed["kmeans_floor"], key
    assert printed["frames_per_unit"] == model.config.time_reduction == 3
    assert printed["boundary_tolerance"] == "±2 frames (±20 ms)"
    assert printed["kmeans_floor"]["k"] == 8
    # four utterances of 3 × 0.2 s minus the last partial frame
    assert printed["num_frames"] == 4 * (1 + (int(0.6 * RATE) - 400) // 160)
    assert 0 <= printed["pnmi"] <= 1 and 0 <= printed["abx_across_speaker"] <= 1


def test_model_units_on_frames_follow_the_encoder_stride(speech_setup):
    from vq_hf.data import load_wsj

    tmp_path, root, model = speech_setup
    test = load_wsj({"train": root / "train", "test": root / "test"})["test"]
    frames = unit_evaluation.model_units_on_frames(model, test, "speech")
    from vq_hf.units import extract_units

    codes = extract_units(model, test, progress=False)["codes"]
    for ex, f, c in zip(test, frames, codes):
        assert len(f) == int(ex["num_frames"])
        # frame j carries the unit of latent j // 3
        assert f.tolist() == [c[min(j // 3, len(c) - 1)] for j in range(len(f))]


def test_unit_quality_refuses_a_cifar_model(tmp_path, capsys):
    from vq_hf.models import VQVAEConfig, VQVAEModel

    VQVAEModel(VQVAEConfig(architecture="cifar10", hidden_size=8, num_residual_layers=1, codebook_size=4,
                           num_codebooks=1, latent_dim=4)).save_pretrained(str(tmp_path / "m"))
    rc = unit_evaluation.cli(["--model", str(tmp_path / "m"), "--dataset_name", str(tmp_path)])
    assert rc == 2 and "speech or handwriting" in capsys.readouterr().err


def test_handwriting_unit_quality_on_the_stand_in_corpus(tmp_path, capsys):
    from vq_hf.models import VQVAEConfig, VQVAEModel
    from vq_hf.standins.handwriting import make_handwriting_corpus

    corpus = make_handwriting_corpus(tmp_path, num_lines=12, seed=0)
    torch.manual_seed(0)
    cfg = VQVAEConfig(architecture="handwriting", conv_channels=[4] * 7, rnn_hidden_size=8, rnn_projection_size=8,
                      codebook_size=16, latent_dim=8, mixer_hidden_size=8, pixelcnn_hidden_size=8, pixelcnn_num_layers=2)
    VQVAEModel(cfg).save_pretrained(str(tmp_path / "model"))
    rc = unit_evaluation.cli(["--model", str(tmp_path / "model"), "--dataset_name", str(corpus), "--split", "test",
                              "--kmeans_floor", "--device", "cpu"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["frames_per_unit"] == 4 and printed["boundary_tolerance"] == "±4 columns (±1 latent)"
    for key in ("purity", "pnmi", "boundary_f1", "mapped_error_rate", "bitrate_bits_per_column", "used_units"):
        assert printed[key] is not None and key in printed["kmeans_floor"]
