"""`vq-hf units` on a speech model: Kaldi root → load_wsj → whole utterances → codes equal model.encode."""

import json

import datasets
import numpy as np
import soundfile as sf
import torch

from vq_hf import units as units_mod

RATE = 16000


def _kaldi_dir(root, name, utts, seed):
    d = root / name
    (d / "wav").mkdir(parents=True)
    wav_lines, ctm = [], []
    rng = np.random.default_rng(seed)
    for i, utt in enumerate(utts):
        seconds = 0.5 + 0.3 * i
        t = np.arange(int(seconds * RATE)) / RATE
        audio = 0.2 * np.sin(2 * np.pi * (180 + 60 * i + 20 * seed) * t) + 0.02 * rng.standard_normal(t.shape)
        sf.write(d / "wav" / f"{utt}.wav", np.round(audio * 32767).astype(np.int16), RATE, subtype="PCM_16")
        wav_lines.append(f"{utt} {d / 'wav' / (utt + '.wav')}")
        frames = 1 + (len(t) - 400) // 160
        bounds = np.linspace(0, frames, 4).round().astype(int)
        ctm += [f"{utt} 1 {s * 0.01:.2f} {(e - s) * 0.01:.2f} {p}" for p, s, e in zip(["SIL", "AH", "T"], bounds[:-1], bounds[1:])]
    (d / "wav.scp").write_text("".join(line + "\n" for line in wav_lines))
    (d / "phones.ctm").write_text("".join(line + "\n" for line in ctm))


def test_speech_cli_units_equal_encode_of_whole_utterances(tmp_path, capsys):
    from vq_hf.data import SpeechCollator, load_wsj
    from vq_hf.models import VQVAEConfig, VQVAEForCTC

    root = tmp_path / "corpus"
    _kaldi_dir(root, "train", ["tr1", "tr2", "tr3"], seed=0)
    _kaldi_dir(root, "test", ["te1", "te2", "te3"], seed=1)
    torch.manual_seed(0)
    cfg = VQVAEConfig(
        architecture="speech", conv_channels=[4, 4], rnn_num_layers=1, rnn_hidden_size=8, codebook_size=8,
        latent_dim=4, vocab_size=6,
    )
    model = VQVAEForCTC(cfg).eval()
    model.save_pretrained(str(tmp_path / "model"))

    out = tmp_path / "units"
    rc = units_mod.cli(["--model", str(tmp_path / "model"), "--dataset_name", str(root), "--split", "test",
                        "--output", str(out), "--batch_size", "2", "--dedup", "--no_progress", "--device", "cpu"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["num_examples"] == 3
    units = datasets.load_from_disk(str(out))
    assert units["id"] == ["te1", "te2", "te3"]

    test = load_wsj({"train": root / "train", "test": root / "test"}, train_split="train")["test"]
    batch = SpeechCollator(chunk_frames=None)([test[i] for i in range(3)])
    enc = model.encode(input_features=batch["input_features"], attention_mask=batch["attention_mask"])
    for i in range(3):
        n = int(enc.lengths[i])
        assert n == sum(units[i]["durations"]) > 5  # whole utterance, not a 64-frame training chunk
        expanded = np.repeat(units[i]["codes"], units[i]["durations"]).tolist()
        assert expanded == enc.codes[i, :n, 0].tolist()
