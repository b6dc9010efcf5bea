"""`vq-hf make-speech-corpus` (Festival stand-in) and load_wsj on the directories it writes."""

import shutil

import numpy as np
import pytest
import soundfile as sf

from vq_hf.data import SpeechCollator, load_wsj
from vq_hf.standins.speech import FestivalError, build_parser, cli, make_speech_corpus, read_prompts

needs_festival = pytest.mark.skipif(shutil.which("festival") is None, reason="Debian festival is not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("festival") is None:
        pytest.skip("Debian festival is not installed")
    out = tmp_path_factory.mktemp("speech") / "corpus"
    summary = make_speech_corpus(out, 10, seed=7)
    return out, summary


def _kaldi_table(path):
    return dict(line.split(maxsplit=1) for line in path.read_text().splitlines())


@needs_festival
def test_corpus_layout_splits_and_alignment(corpus):
    out, summary = corpus
    assert set(summary["splits"]) == {"train", "dev", "test"}
    assert [summary["splits"][s]["utterances"] for s in ("train", "dev", "test")] == [8, 1, 1]
    prompts_by_split = {}
    for split in ("train", "dev", "test"):
        d = out / split
        for name in ("wav.scp", "text", "utt2spk", "spk2utt", "phones.ctm"):
            assert (d / name).is_file(), f"{split}/{name} missing"
        wav = _kaldi_table(d / "wav.scp")
        assert list(wav) == sorted(wav)  # Kaldi wants sorted tables
        assert set(_kaldi_table(d / "utt2spk")) == set(wav) == set(_kaldi_table(d / "text"))
        prompts_by_split[split] = {summary["utterances"][u]["prompt"] for u in wav}
        ctm = [line.split() for line in (d / "phones.ctm").read_text().splitlines()]
        for utt, path in wav.items():
            audio, rate = sf.read(path, dtype="int16")
            assert rate == 16000 and audio.ndim == 1
            frames = 1 + (len(audio) - 400) // 160
            rows = [r for r in ctm if r[0] == utt]
            starts = [round(float(r[2]) * 100) for r in rows]
            ends = [round((float(r[2]) + float(r[3])) * 100) for r in rows]
            # Contiguous frame runs covering exactly the feature frames, silence at both ends.
            assert starts[0] == 0 and ends[-1] == frames and starts[1:] == ends[:-1]
            assert rows[0][4] == rows[-1][4] == "SIL" and all(r[4].isupper() for r in rows)
    assert not (prompts_by_split["train"] & prompts_by_split["dev"])
    assert not (prompts_by_split["train"] & prompts_by_split["test"])
    assert not (prompts_by_split["dev"] & prompts_by_split["test"])
    speakers = {v["speaker"] for v in summary["utterances"].values()}
    assert len(speakers) >= 4 and {v["voice"] for v in summary["utterances"].values()} >= {"kal_diphone"}
    assert summary["audio_seconds_per_wall_second"] > 0


@needs_festival
def test_generation_is_deterministic(corpus, tmp_path):
    out, _ = corpus
    again = make_speech_corpus(tmp_path / "again", 10, seed=7)
    for split in ("train", "dev", "test"):
        assert (tmp_path / "again" / split / "phones.ctm").read_text() == (out / split / "phones.ctm").read_text()
        assert (tmp_path / "again" / split / "text").read_text() == (out / split / "text").read_text()
    utt = sorted(again["utterances"])[0]
    a, _ = sf.read(tmp_path / "again" / "wav" / f"{utt}.wav", dtype="int16")
    b, _ = sf.read(out / "wav" / f"{utt}.wav", dtype="int16")
    np.testing.assert_array_equal(a, b)
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_speech_corpus(tmp_path / "again", 3, seed=1)


@needs_festival
def test_load_wsj_on_generated_corpus(corpus, tmp_path):
    out, summary = corpus
    ds, info = load_wsj(out, cache_dir=tmp_path / "cache", return_info=True)  # the root: one split per folder
    assert {s: len(ds[s]) for s in ds} == {s: summary["splits"][s]["utterances"] for s in ("train", "dev", "test")}
    assert info.phones[:2] == ["<eps>", "<unk>"] and "SIL" in info.phones and info.phones[2:] == sorted(info.phones[2:])
    assert all(not v["skipped_missing_alignment"] and not v["skipped_length_mismatch"] for v in info.report.values())
    train = np.concatenate([ds["train"][i]["input_features"].numpy() for i in range(len(ds["train"]))])
    assert train.shape[1] == 243
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-2)
    batch = SpeechCollator(chunk_frames=64, seed=0)([ds["train"][i] for i in range(4)])
    assert batch["input_features"].shape == (4, 66, 243) and batch["attention_mask"].sum(1).tolist() == [64] * 4
    labels = batch["labels"]
    assert ((labels >= 2) | (labels == -100)).all() and (labels[:, 0] >= 2).all()  # never blank/<unk> here
    dev = SpeechCollator(chunk_frames=None)([ds["dev"][0]])
    assert dev["attention_mask"].sum() == ds["dev"][0]["num_frames"]


def test_missing_festival_names_the_debian_packages(tmp_path):
    with pytest.raises(FestivalError, match="apt-get install festival festvox-us-slt-hts festvox-kallpc16k"):
        make_speech_corpus(tmp_path / "c", 3, festival="/nonexistent/festival-binary")
    assert cli([str(tmp_path / "c2"), "--utterances", "3", "--festival", "/nonexistent/festival-binary"]) == 1
    if shutil.which("festival") is not None:
        with pytest.raises(FestivalError, match="voice 'no_such_voice' is not installed"):
            make_speech_corpus(tmp_path / "c3", 3, voices=["no_such_voice"])


def test_cli_help_documents_every_flag_and_bad_arguments(tmp_path, capsys):
    help_text = build_parser().format_help()
    for flag in ("--utterances", "--seed", "--voices", "--dev-fraction", "--test-fraction", "--rate-range",
                 "--warps", "--pitch-jitter", "--noise-db", "--prompts", "--festival", "--jobs", "--batch-size",
                 "--overwrite"):
        assert flag in help_text
    bad = tmp_path / "prompts.data"
    bad.write_text('( a1 "One." )\nnot a prompt\n')
    with pytest.raises(ValueError, match=r"prompts.data line 2: expected"):
        read_prompts(bad)
    assert len(read_prompts()) == 1132
    if shutil.which("festival") is not None:
        assert cli([str(tmp_path / "c"), "--utterances", "2"]) == 1  # too few prompts for three splits
        assert "too few" in capsys.readouterr().err


def test_plan_holds_voices_out_of_train_and_draws_noise_levels():
    from vq_hf.standins.speech import plan_corpus

    prompts = [(f"p{i}", f"text {i}") for i in range(40)]
    plans = plan_corpus(prompts, 40, ["va", "vb", "vc"], 0, 0.2, 0.2, (0.9, 1.1), [0.95, 1.05], 0.0,
                        held_out_voices=["vc"], noise_db_range=(-50.0, -30.0))
    by_split = {s: {p.voice for p in plans if p.split == s} for s in ("train", "dev", "test")}
    assert by_split["train"] == {"va", "vb"} and "vc" in by_split["dev"] | by_split["test"]
    assert all(-50.0 <= p.noise_db <= -30.0 for p in plans) and len({p.noise_db for p in plans}) == 40
    again = plan_corpus(prompts, 40, ["va", "vb", "vc"], 0, 0.2, 0.2, (0.9, 1.1), [0.95, 1.05], 0.0,
                        held_out_voices=["vc"], noise_db_range=(-50.0, -30.0))
    assert again == plans  # a function of the seed
    with pytest.raises(ValueError, match="not among the voices"):
        plan_corpus(prompts, 40, ["va"], 0, 0.2, 0.2, (0.9, 1.1), [1.0], 0.0, held_out_voices=["vz"])
    with pytest.raises(ValueError, match="every voice"):
        plan_corpus(prompts, 40, ["va"], 0, 0.2, 0.2, (0.9, 1.1), [1.0], 0.0, held_out_voices=["va"])


@needs_festival
def test_held_out_voice_speaks_only_dev_and_test(tmp_path):
    from vq_hf.standins.speech import available_voices, find_festival

    installed = available_voices(find_festival())
    voices = [v for v in ("kal_diphone", "ked_diphone") if v in installed]
    if len(voices) < 2:
        pytest.skip("needs festvox-kallpc16k and festvox-kdlpc16k")
    summary = make_speech_corpus(tmp_path / "c", 12, seed=1, voices=voices, held_out_voices=["ked_diphone"],
                                 warps=(1.0,), dev_fraction=0.25, test_fraction=0.25, noise_db_range=(-45.0, -35.0))
    utt2spk = _kaldi_table(tmp_path / "c" / "train" / "utt2spk")
    assert utt2spk and all(spk.startswith("kal") for spk in utt2spk.values())
    test_spk = set(_kaldi_table(tmp_path / "c" / "test" / "utt2spk").values()) | set(
        _kaldi_table(tmp_path / "c" / "dev" / "utt2spk").values())
    assert any(spk.startswith("ked") for spk in test_spk)
    assert summary["options"]["held_out_voices"] == ["ked_diphone"]
    assert all(-45.0 <= u["noise_db"] <= -35.0 for u in summary["utterances"].values())


def test_prompt_text_reaches_festival_as_one_escaped_string(tmp_path):
    """Prompt files are data: a text that tries to close the string and call (system ...) stays a literal."""
    import re

    from vq_hf.standins.speech import UtterancePlan, _festival_script, voice_spec

    evil = 'Hi") (system "touch /tmp/x") ("\\'
    plan = UtterancePlan("u1", "spk", "kal_diphone", "p1", evil, "train", 1.0, 1.0, None)
    script = _festival_script("kal_diphone", voice_spec("kal_diphone"), [plan], tmp_path)
    line = next(x for x in script.splitlines() if x.startswith("(set! vqhf_u (Utterance Text "))
    literal = re.fullmatch(r'\(set! vqhf_u \(Utterance Text ("(?:[^"\\]|\\.)*")\)\)', line)
    assert literal is not None  # the whole text is inside one Scheme string: nothing after it is evaluated
    decoded = re.sub(r"\\(.)", r"\1", literal.group(1)[1:-1])
    assert decoded == evil and "(system" not in script.replace(literal.group(1), "")
