"""load_wsj on hand-written Kaldi directories: pipes, segments, text_ali, feats.scp, bad input; SpeechCollator."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from vq_hf.data import KaldiDataError, SpeechCollator, load_wsj
from vq_hf.data.speech_collators import chunk_labels
from vq_hf.data.wsj import normalize_phone, read_alignments
from vq_hf.models.vqvae_speech.feature_extraction_vqvae_speech import VQVAEFeatureExtractor

RATE = 16000


def _wave(seed: int, seconds: float, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.2 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.02 * rng.standard_normal(t.shape)
    return np.round(x * 32767).astype(np.int16)


def _frames(num_samples: int) -> int:
    return 1 + (num_samples - 400) // 160


def _ctm_lines(utt: str, phones: list[str], num_frames: int) -> list[str]:
    """Split num_frames evenly over phones, as ali-to-phones --ctm-output would print them."""
    bounds = np.linspace(0, num_frames, len(phones) + 1).round().astype(int)
    return [f"{utt} 1 {s * 0.01:.2f} {(e - s) * 0.01:.2f} {p}" for p, s, e in zip(phones, bounds[:-1], bounds[1:])]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def _simple_dir(root, name, utts, phones_per_utt, seconds=0.8, seed=0, rate=RATE):
    d = root / name
    (d / "wav").mkdir(parents=True)
    wav_lines, ctm = [], []
    for i, (utt, phones) in enumerate(zip(utts, phones_per_utt)):
        audio = _wave(seed + i, seconds, rate)
        sf.write(d / "wav" / f"{utt}.wav", audio, rate, subtype="PCM_16")
        wav_lines.append(f"{utt} {d / 'wav' / (utt + '.wav')}")
        ctm += _ctm_lines(utt, phones, _frames(len(audio)) if rate == RATE else int(seconds * 100))
    _write(d / "wav.scp", wav_lines)
    _write(d / "phones.ctm", ctm)
    return d


def test_phone_normalisation_and_alignment_formats(tmp_path):
    assert [normalize_phone(p) for p in ["AH0_B", "sil", "SIL_S", "ER1", "T_E", "NSN"]] == ["AH", "sil", "SIL", "ER", "T", "NSN"]
    ali = tmp_path / "text_ali"
    ali.write_text("u1 SIL 0 10 ; AH0_B 10 25 ; T_E 25 40 ;\nu2 K_S 0 7 ;\n")
    assert read_alignments(ali) == {"u1": [("SIL", 0, 10), ("AH", 10, 25), ("T", 25, 40)], "u2": [("K", 0, 7)]}
    ctm = tmp_path / "phones.ctm"
    ctm.write_text("u1 1 0.00 0.10 SIL\nu1 1 0.10 0.15 AH1_I\n")
    assert read_alignments(ctm) == {"u1": [("SIL", 0, 10), ("AH", 10, 25)]}
    # Raw ali-to-phones output has integer ids: decoded with lang/phones.txt, an error without it.
    ints = tmp_path / "ints.ctm"
    ints.write_text("u1 1 0.00 0.10 1\nu1 1 0.10 0.15 7\n")
    table = tmp_path / "phones.txt"
    table.write_text("<eps> 0\nSIL 1\nAH1_I 7\n")
    assert read_alignments(ints, phone_table=table) == {"u1": [("SIL", 0, 10), ("AH", 10, 25)]}
    with pytest.raises(KaldiDataError, match=r"ints.ctm line 1: phone '1' is an integer id .* phone_table"):
        read_alignments(ints)


@pytest.mark.parametrize(
    "content, message",
    [
        ("u1 SIL 0 10 ; AH 10 ;\n", "line 1: expected 'phone start end'"),
        ("u1 SIL 0 10 ;\nu2 SIL 0 x ;\n", "line 2: frame numbers are not integers"),
        ("u1 SIL 0 10 ; AH 5 12 ;\n", "overlaps"),
    ],
)
def test_malformed_text_ali_names_file_and_line(tmp_path, content, message):
    ali = tmp_path / "text_ali"
    ali.write_text(content)
    with pytest.raises(KaldiDataError, match=message) as err:
        read_alignments(ali)
    assert str(ali) in str(err.value)


def test_malformed_ctm_and_wav_scp_lines(tmp_path):
    ctm = tmp_path / "bad.ctm"
    ctm.write_text("u1 1 0.00 0.10 SIL\nu1 1 zero 0.10 AH\n")
    with pytest.raises(KaldiDataError, match=r"bad.ctm line 2: start/duration are not numbers"):
        read_alignments(ctm)
    d = _simple_dir(tmp_path, "train", ["a"], [["SIL", "AH"]])
    with open(d / "wav.scp", "a") as f:
        f.write("lonely_id\n")
    with pytest.raises(KaldiDataError, match=r"wav.scp line 2: expected at least 2 fields"):
        load_wsj(d, cache_dir=tmp_path / "cache")
    _write(d / "wav.scp", [f"a {d / 'wav' / 'a.wav'}", f"a {d / 'wav' / 'a.wav'}"])
    with pytest.raises(KaldiDataError, match=r"wav.scp line 2: duplicate key 'a'"):
        load_wsj(d, cache_dir=tmp_path / "cache")


def test_piped_wav_scp_with_segments_and_ctm(tmp_path):
    d = tmp_path / "train"
    d.mkdir()
    recording = np.concatenate([_wave(1, 0.9), _wave(2, 0.7)])
    sf.write(tmp_path / "rec.wav", recording, RATE, subtype="PCM_16")
    _write(d / "wav.scp", [f"rec1 cat {tmp_path / 'rec.wav'} |"])
    _write(d / "segments", ["utt_a rec1 0.00 0.90", "utt_b rec1 0.90 -1"])
    _write(d / "text", ["utt_a HELLO", "utt_b WORLD"])
    _write(d / "utt2spk", ["utt_a spk1", "utt_b spk1"])
    slices = {"utt_a": recording[:14400], "utt_b": recording[14400:]}
    ctm = _ctm_lines("utt_a", ["SIL", "HH_B", "AH0_I", "L_I", "OW1_E"], _frames(14400))
    ctm += _ctm_lines("utt_b", ["W_B", "ER1_I", "L_I", "D_E", "SIL"], _frames(recording.size - 14400))
    _write(tmp_path / "phones.ctm", ctm)
    _write(d / "feats.scp", ["utt_a /nonexistent/mfcc.ark:12"])  # Kaldi recipes leave MFCCs here: ignored

    ds, info = load_wsj(d, alignments=tmp_path / "phones.ctm", cache_dir=tmp_path / "cache", return_info=True,
                        allow_commands=True)  # `cat … |` is a shell command: a trusted corpus opts in
    train = ds["train"]
    assert info.phones == ["<eps>", "<unk>", "AH", "D", "ER", "HH", "L", "OW", "SIL", "W"]
    assert train.features["labels"].feature.names == info.phones
    assert train["id"][:] == ["utt_a", "utt_b"] and train[0]["speaker"] == "spk1" and train[1]["text"] == "WORLD"
    item = train[0]
    assert item["input_features"].dtype == torch.float32 and item["labels"].dtype == torch.int64
    assert item["labels"].tolist() == [info.phones.index(p) for p in ["SIL", "HH", "AH", "L", "OW"]]
    extractor = VQVAEFeatureExtractor()
    for i, utt in enumerate(["utt_a", "utt_b"]):
        expected = info.feature_extractor.apply_cmvn(extractor.extract(slices[utt]))
        np.testing.assert_allclose(train[i]["input_features"].numpy(), expected, atol=1e-5)
    all_frames = np.concatenate([train[i]["input_features"].numpy() for i in range(2)])
    np.testing.assert_allclose(all_frames.mean(0), 0.0, atol=1e-4)
    assert info.feature_extractor.cmvn_frames == all_frames.shape[0]
    # The cache is reused: same folder, no rebuild, identical content.
    again, info2 = load_wsj(d, alignments=tmp_path / "phones.ctm", cache_dir=tmp_path / "cache", return_info=True)
    assert info2.path == info.path and torch.equal(again["train"][1]["input_features"], train[1]["input_features"])
    out = tmp_path / "export"
    load_wsj(d, alignments=tmp_path / "phones.ctm", cache_dir=tmp_path / "cache", output_dir=out)
    assert (out / "phones.txt").read_text().splitlines()[:3] == ["<eps> 0", "<unk> 1", "AH 2"]
    assert json.loads((out / "preprocessor_config.json").read_text())["cmvn_frames"] == all_frames.shape[0]


@pytest.mark.parametrize("entry", ["touch {flag}; cat {wav} |", "| touch {flag}", "touch {flag}; cat {wav} |:0"])
def test_piped_scp_entries_are_refused_unless_allowed(tmp_path, capsys, entry):
    """A downloaded wav.scp could run anything: refused (file and line named, nothing run) without the opt-in."""
    d = _simple_dir(tmp_path, "train", ["a", "b"], [["SIL", "AH"], ["SIL", "T"]])
    flag = tmp_path / "ran"
    command = entry.format(flag=flag, wav=d / "wav" / "b.wav")
    _write(d / "wav.scp", [f"a {d / 'wav' / 'a.wav'}", f"b {command}"])
    with pytest.raises(KaldiDataError, match=r"wav.scp line 2: .* is a shell command .*allow_commands=True") as err:
        load_wsj(d, cache_dir=tmp_path / "cache")
    assert str(d / "wav.scp") in str(err.value)
    assert not flag.exists()
    # feats.scp too (kaldiio pipes there the same way)
    _write(d / "wav.scp", [])
    (d / "wav.scp").unlink()
    _write(d / "feats.scp", [f"a {command}"])
    with pytest.raises(KaldiDataError, match=r"feats.scp line 1: .* is a shell command"):
        load_wsj(d, cache_dir=tmp_path / "cache")
    assert not flag.exists()


def test_allowed_scp_command_runs_and_is_printed_first(tmp_path, capsys):
    d = _simple_dir(tmp_path, "train", ["a", "b"], [["SIL", "AH"], ["SIL", "T"]])
    flag = tmp_path / "ran"
    command = f"touch {flag}; cat {d / 'wav' / 'b.wav'} |"
    _write(d / "wav.scp", [f"a {d / 'wav' / 'a.wav'}", f"b {command}"])
    ds = load_wsj(d, cache_dir=tmp_path / "cache", allow_commands=True)
    assert flag.exists() and len(ds["train"]) == 2
    err = capsys.readouterr().err
    assert "running 1 shell command(s)" in err and f"line 2: {command}" in err


def test_feats_scp_with_text_ali_statics_and_full_features(tmp_path):
    kaldiio = pytest.importorskip("kaldiio")
    rng = np.random.default_rng(0)
    for name, dim in (("static", 81), ("full", 243)):
        d = tmp_path / name
        d.mkdir()
        mats = {"u1": rng.standard_normal((30, dim)).astype(np.float32), "u2": rng.standard_normal((20, dim)).astype(np.float32)}
        with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as writer:
            for utt, mat in mats.items():
                writer(utt, mat)
        (d / "text_ali").write_text("u1 SIL 0 10 ; AA1_B 10 30 ;\nu2 AA2_S 0 20 ;\n")
        ds, info = load_wsj(d, cache_dir=tmp_path / "cache", return_info=True)
        assert ds["train"][0]["input_features"].shape == (30, 243)
        expected = mats["u1"] if dim == 243 else VQVAEFeatureExtractor().add_deltas(mats["u1"])
        np.testing.assert_allclose(
            ds["train"][0]["input_features"].numpy(), info.feature_extractor.apply_cmvn(expected), atol=1e-5
        )
        assert ds["train"][1]["labels"].tolist() == [info.phones.index("AA")]
    bad = tmp_path / "bad"
    bad.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{bad / 'feats.ark'},{bad / 'feats.scp'}") as writer:
        writer("u1", np.zeros((10, 40), dtype=np.float32))
    (bad / "text_ali").write_text("u1 SIL 0 10 ;\n")
    with pytest.raises(ValueError, match="has 40 columns"):
        load_wsj(bad, cache_dir=tmp_path / "cache")


def test_length_mismatch_error_or_counted_skip(tmp_path):
    d = _simple_dir(tmp_path, "train", ["a", "b"], [["SIL", "AH"], ["SIL", "T"]])
    # Stretch b's alignment 30 frames past its audio.
    lines = (d / "phones.ctm").read_text().splitlines()
    lines[-1] = lines[-1].rsplit(" ", 2)[0] + " 1.00 T"
    _write(d / "phones.ctm", lines)
    with pytest.raises(KaldiDataError, match=r"utterance b: the alignment covers \d+ frames but the audio gives 78"):
        load_wsj(d, cache_dir=tmp_path / "cache")
    ds, info = load_wsj(d, cache_dir=tmp_path / "cache", length_mismatch="skip", return_info=True)
    assert ds["train"]["id"][:] == ["a"] and info.report["train"]["skipped_length_mismatch"] == ["b"]


def test_unknown_dev_phone_maps_to_unk_and_is_counted(tmp_path):
    train = _simple_dir(tmp_path, "train", ["t1", "t2"], [["SIL", "AH", "SIL"], ["SIL", "T"]])
    dev = _simple_dir(tmp_path, "dev", ["d1"], [["SIL", "ZH", "AH", "ZH"]], seed=5)
    ds, info = load_wsj({"train": train, "dev": dev}, cache_dir=tmp_path / "cache", return_info=True)
    assert ds["dev"][0]["labels"].tolist() == [info.phones.index("SIL"), 1, info.phones.index("AH"), 1]
    assert info.report["dev"]["unknown_phones_mapped_to_unk"] == {"ZH": 2}
    # dev frames are normalised with the *train* statistics.
    assert info.feature_extractor.cmvn_frames == sum(info.report["train"]["frames"] for _ in [0])
    with pytest.raises(KaldiDataError, match=r"split 'dev': phones absent from the vocabulary: \{'ZH': 2\}"):
        load_wsj({"train": train, "dev": dev}, cache_dir=tmp_path / "cache", unknown_phones="error")
    # A root of split folders; the training split is the one named train*, here WSJ-style.
    root = tmp_path / "root"
    _simple_dir(root, "train_si284", ["t1", "t2"], [["SIL", "AH", "SIL"], ["SIL", "T"]])
    _simple_dir(root, "test_dev93", ["d1"], [["SIL", "AH"]], seed=5)
    ds = load_wsj(root, cache_dir=tmp_path / "cache")
    assert sorted(ds) == ["test_dev93", "train_si284"] and len(ds["train_si284"]) == 2
    with pytest.raises(ValueError, match="cannot tell which of the splits"):
        load_wsj({"a": root / "train_si284", "b": root / "test_dev93"}, cache_dir=tmp_path / "cache")


def test_missing_alignment_skip_count_and_empty_split(tmp_path):
    d = _simple_dir(tmp_path, "train", ["a", "b"], [["SIL", "AH"], ["SIL", "T"]])
    lines = [line for line in (d / "phones.ctm").read_text().splitlines() if not line.startswith("b ")]
    _write(d / "phones.ctm", lines)
    ds, info = load_wsj(d, cache_dir=tmp_path / "cache", return_info=True)
    assert len(ds["train"]) == 1 and info.report["train"]["skipped_missing_alignment"] == ["b"]
    with pytest.raises(KaldiDataError, match="utterance b of .* has no alignment"):
        load_wsj(d, cache_dir=tmp_path / "cache2", missing_alignment="error")
    dev = _simple_dir(tmp_path, "dev", ["x"], [["SIL"]])
    (dev / "phones.ctm").write_text("other 1 0.00 0.50 SIL\n")
    with pytest.raises(KaldiDataError, match="split 'dev' has no usable utterances"):
        load_wsj({"train": d, "dev": dev}, cache_dir=tmp_path / "cache")


def test_missing_files_and_wrong_sampling_rate(tmp_path):
    with pytest.raises(KaldiDataError, match="does not exist"):
        load_wsj(tmp_path / "nowhere", alignments=tmp_path / "x.ctm", cache_dir=tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "text_ali").write_text("u SIL 0 5 ;\n")
    with pytest.raises(KaldiDataError, match="has neither wav.scp nor feats.scp"):
        load_wsj(empty, cache_dir=tmp_path / "cache")
    no_ali = _simple_dir(tmp_path, "noali", ["a"], [["SIL"]])
    (no_ali / "phones.ctm").unlink()
    with pytest.raises(KaldiDataError, match="no alignment given and neither"):
        load_wsj(no_ali, cache_dir=tmp_path / "cache")
    d = _simple_dir(tmp_path, "rate8k", ["a"], [["SIL", "AH"]], rate=8000)
    with pytest.raises(KaldiDataError, match="sampled at 8000 Hz but the feature extractor expects 16000 Hz"):
        load_wsj(d, cache_dir=tmp_path / "cache")
    gone = _simple_dir(tmp_path, "gone", ["a"], [["SIL", "AH"]])
    (gone / "wav" / "a.wav").unlink()
    with pytest.raises(KaldiDataError, match="cannot read a from"):
        load_wsj(gone, cache_dir=tmp_path / "cache")


def test_chunk_labels_and_collator_training_and_eval():
    ids, starts, ends = [8, 2, 2, 5, 0, 8], [0, 10, 20, 30, 40, 50], [10, 20, 30, 40, 50, 100]
    assert chunk_labels(ids, starts, ends, 5, 35) == [8, 2, 5]
    assert chunk_labels(ids, starts, ends, 5, 35, collapse_repeats=False) == [8, 2, 2, 5]
    assert chunk_labels(ids, starts, ends, 40, 50) == []  # only <eps>
    item_long = {
        "input_features": torch.arange(100 * 243, dtype=torch.float32).reshape(100, 243),
        "labels": torch.tensor([8, 2, 5, 8]),
        "phone_ids": torch.tensor(ids), "phone_starts": torch.tensor(starts), "phone_ends": torch.tensor(ends),
    }
    item_short = {**item_long, "input_features": torch.ones(40, 243), "labels": torch.tensor([8])}
    collate = SpeechCollator(chunk_frames=64, seed=3, return_lengths=True)
    batch = collate([item_long, item_short])
    assert batch["input_features"].shape == (2, 66, 243)  # 64 padded to a multiple of 3
    assert batch["attention_mask"].sum(1).tolist() == [64, 40] and batch["attention_mask"][0, 64:].sum() == 0
    offset = int(batch["input_features"][0, 0, 0]) // 243
    assert torch.equal(batch["input_features"][0, :64], item_long["input_features"][offset : offset + 64])
    assert batch["labels"][0, : batch["label_lengths"][0]].tolist() == chunk_labels(ids, starts, ends, offset, offset + 64)
    assert (batch["labels"][0, batch["label_lengths"][0] :] == -100).all()
    # Seeded: the same seed replays the same chunk sequence; a different seed differs somewhere.
    offsets = lambda c: [int(c([item_long])["input_features"][0, 0, 0]) // 243 for _ in range(8)]  # noqa: E731
    assert offsets(SpeechCollator(seed=3)) == offsets(SpeechCollator(seed=3))
    assert offsets(SpeechCollator(seed=3)) != offsets(SpeechCollator(seed=4))
    evaluation = SpeechCollator(chunk_frames=None)([item_long, item_short])
    assert evaluation["input_features"].shape == (2, 102, 243)
    assert evaluation["labels"].tolist() == [[8, 2, 5, 8], [8, -100, -100, -100]]
    with pytest.raises(KeyError, match="lacks"):
        SpeechCollator()([{"input_features": torch.ones(70, 243), "labels": torch.tensor([3])}])
