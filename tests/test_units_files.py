"""`vq-hf units --inputs`: units of a user's own files (audio / line images / 32×32 PNGs), bad inputs, atomic output."""

import json

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from vq_hf import units as units_mod
from vq_hf.data.files import BadInputError, find_input_files, read_audio
from vq_hf.units import extract_units

RATE = 16000


# ------------------------------------------------------------------------------------------ tiny models


def _speech_model(folder):
    from vq_hf.models import VQVAEConfig, VQVAEFeatureExtractor, VQVAEForCTC

    torch.manual_seed(0)
    cfg = VQVAEConfig(
        architecture="speech", conv_channels=[4, 4], rnn_num_layers=1, rnn_hidden_size=8, codebook_size=8,
        latent_dim=4, vocab_size=6,
    )
    model = VQVAEForCTC(cfg).eval()
    model.save_pretrained(str(folder))
    rng = np.random.default_rng(0)
    fe = VQVAEFeatureExtractor().fit_cmvn([0.1 * rng.standard_normal(RATE) for _ in range(2)])
    fe.save_pretrained(str(folder))
    return model, fe


def _handwriting_model(folder):
    from vq_hf.models import VQVAEConfig, VQVAEModel

    torch.manual_seed(0)
    cfg = VQVAEConfig(
        architecture="handwriting", conv_channels=[4] * 7, rnn_hidden_size=8, rnn_projection_size=8, codebook_size=16,
        latent_dim=8, mixer_hidden_size=8, pixelcnn_hidden_size=8, pixelcnn_num_layers=2,
    )
    model = VQVAEModel(cfg).eval()
    model.save_pretrained(str(folder))
    return model


def _cifar_model(folder):
    from vq_hf.models import VQVAEConfig, VQVAEModel

    torch.manual_seed(0)
    cfg = VQVAEConfig(
        architecture="cifar10", hidden_size=16, num_residual_layers=1, num_codebooks=2, codebook_size=16, latent_dim=12
    )
    model = VQVAEModel(cfg).eval()
    model.save_pretrained(str(folder))
    return model


def _tone(seconds, rate, freq=220.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(int(freq)).standard_normal(t.shape)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def _run(argv, capsys):
    rc = units_mod.cli(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ------------------------------------------------------------------------------------------ speech


@pytest.fixture()
def wav_folder(tmp_path):
    folder = tmp_path / "wavs"
    (folder / "sub").mkdir(parents=True)
    specs = {  # name: (rate, subtype, channels)
        "a_8k_int16_mono.wav": (8000, "PCM_16", 1),
        "b_16k_float_stereo.wav": (16000, "FLOAT", 2),
        "sub/c_44k_int16_stereo.wav": (44100, "PCM_16", 2),
        "sub/d_16k_float_mono.flac": (16000, "PCM_24", 1),
    }
    for i, (name, (rate, subtype, ch)) in enumerate(specs.items()):
        sf.write(folder / name, _tone(0.4 + 0.1 * i, rate, 200 + 50 * i, ch), rate, subtype=subtype)
    return folder


def test_speech_folder_gives_one_row_per_file_equal_to_encode(tmp_path, wav_folder, capsys):
    model, fe = _speech_model(tmp_path / "model")
    out = tmp_path / "units"
    rc, stdout, _ = _run(["--model", str(tmp_path / "model"), "--inputs", str(wav_folder), "--output", str(out),
                          "--no_progress", "--device", "cpu", "--batch_size", "3"], capsys)
    assert rc == 0
    units = datasets.load_from_disk(str(out))
    assert units["id"] == ["a_8k_int16_mono.wav", "b_16k_float_stereo.wav", "sub/c_44k_int16_stereo.wav",
                           "sub/d_16k_float_mono.flac"]
    assert json.loads((out / "units_report.json").read_text()) == {"num_units_rows": 4, "skipped": []}
    assert json.loads(stdout.strip().splitlines()[-1])["num_examples"] == 4
    # the row of the 44.1 kHz stereo file = encode of its soxr-resampled mono mixdown
    wave, rate = read_audio(wav_folder / "sub/c_44k_int16_stereo.wav", RATE)
    assert rate == 44100 and abs(wave.shape[0] - 0.6 * RATE) <= 1
    feats = fe(wave, sampling_rate=RATE, return_tensors="pt")
    enc = model.encode(input_features=feats["input_features"], attention_mask=feats["attention_mask"])
    assert units[2]["codes"] == enc.codes[0, : int(enc.lengths[0]), 0].tolist()
    assert units[2]["length"] == int(enc.lengths[0]) > 5


def test_speech_corrupt_file_exits_2_naming_it_and_writes_nothing(tmp_path, wav_folder, capsys):
    _speech_model(tmp_path / "model")
    (wav_folder / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    out = tmp_path / "units"
    rc, _, err = _run(["--model", str(tmp_path / "model"), "--inputs", str(wav_folder), "--output", str(out),
                       "--no_progress", "--device", "cpu"], capsys)
    assert rc == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"vq-hf units: {wav_folder / 'broken.wav'}: cannot read audio")
    assert not out.exists() and not any(p.name.startswith(".units") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "name, make, reason",
    [
        ("empty.wav", lambda p: sf.write(p, np.zeros((0,), np.float32), RATE, subtype="FLOAT"), "empty audio"),
        ("short.wav", lambda p: sf.write(p, np.zeros(200, np.float32), RATE, subtype="FLOAT"), "shorter than one"),
        ("nan.wav", lambda p: sf.write(p, np.full(RATE // 2, np.nan, np.float32), RATE, subtype="FLOAT"), "NaN or Inf"),
    ],
)
def test_speech_bad_inputs_are_skipped_and_reported(tmp_path, wav_folder, capsys, name, make, reason):
    _speech_model(tmp_path / "model")
    make(wav_folder / name)
    out = tmp_path / "units"
    base = ["--model", str(tmp_path / "model"), "--inputs", str(wav_folder), "--output", str(out), "--no_progress",
            "--device", "cpu"]
    rc, _, err = _run(base, capsys)
    assert rc == 2 and f"{wav_folder / name}: " in err and reason in err and not out.exists()
    rc, _, _ = _run(base + ["--skip_bad_inputs"], capsys)
    assert rc == 0
    report = json.loads((out / "units_report.json").read_text())
    assert report["num_units_rows"] == 4
    assert [s["path"] for s in report["skipped"]] == [str(wav_folder / name)] and reason in report["skipped"][0]["reason"]
    assert len(datasets.load_from_disk(str(out))) == 4


def test_non_empty_output_is_refused_without_overwrite(tmp_path, wav_folder, capsys):
    _speech_model(tmp_path / "model")
    out = tmp_path / "units"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    base = ["--model", str(tmp_path / "model"), "--inputs", str(wav_folder / "b_16k_float_stereo.wav"),
            "--output", str(out), "--no_progress", "--device", "cpu"]
    rc, _, err = _run(base, capsys)
    assert rc == 2 and "not empty" in err and (out / "keep.txt").read_text() == "mine"
    rc, _, _ = _run(base + ["--overwrite"], capsys)
    assert rc == 0 and not (out / "keep.txt").exists()
    assert datasets.load_from_disk(str(out))["id"] == ["b_16k_float_stereo.wav"]


def test_extract_units_python_inputs_arrays_and_dataset_column(tmp_path, wav_folder):
    model, fe = _speech_model(tmp_path / "model")
    loaded = type(model).from_pretrained(str(tmp_path / "model"))  # processor found through name_or_path
    wave8k = _tone(0.5, 8000)
    by_tuple = extract_units(loaded, [(wave8k, 8000)], progress=False)
    by_dict = extract_units(loaded, {"array": wave8k, "sampling_rate": 8000}, progress=False)
    by_file = extract_units(loaded, str(wav_folder / "a_8k_int16_mono.wav"), progress=False)
    assert by_tuple["codes"] == by_dict["codes"] and len(by_tuple["codes"][0]) > 3
    assert by_file["id"] == ["a_8k_int16_mono.wav"]
    with pytest.raises(ValueError, match="bare array"):
        extract_units(loaded, np.zeros(RATE, np.float32), progress=False)
    assert extract_units(loaded, np.asarray(wave8k), sampling_rate=8000, progress=False)["codes"] == by_tuple["codes"]
    # a datasets column of paths, and one of {"array", "sampling_rate"} dicts
    paths = sorted(str(p) for p in wav_folder.rglob("*.wav"))
    ds = datasets.Dataset.from_dict({"id": [f"u{i}" for i in range(len(paths))], "file": paths})
    from_col = extract_units(loaded, ds, column="file", progress=False)
    assert from_col["id"] == ["u0", "u1", "u2"]
    from_files = extract_units(loaded, paths, progress=False)
    assert from_col["codes"] == from_files["codes"]


def test_datasets_generator_error_is_one_line(tmp_path, capsys):
    """An empty wav inside the Kaldi corpus loader (a datasets generator) → the underlying cause, one line."""
    _speech_model(tmp_path / "model")
    root = tmp_path / "corpus"
    for split in ("train", "test"):
        d = root / split
        d.mkdir(parents=True)
        sf.write(d / "x.wav", np.zeros((0,), np.int16), RATE, subtype="PCM_16")
        (d / "wav.scp").write_text(f"x {d / 'x.wav'}\n")
        (d / "phones.ctm").write_text("x 1 0.00 0.10 SIL\n")
    rc, _, err = _run(["--model", str(tmp_path / "model"), "--dataset_name", str(root), "--split", "test",
                       "--output", str(tmp_path / "units"), "--no_progress"], capsys)
    assert rc == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("vq-hf units:")]
    assert len(lines) == 1 and "Traceback" not in err and "DatasetGenerationError" not in lines[0]


# ------------------------------------------------------------------------------------------ images


def _line_image(width, height, seed, mode="L"):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width), dtype=np.uint8)).convert(mode)


def test_line_images_any_size_and_bad_file(tmp_path, capsys):
    model = _handwriting_model(tmp_path / "model")
    folder = tmp_path / "lines"
    folder.mkdir()
    sizes = {"l1.png": (120, 40, "L"), "l2.jpg": (64, 32, "RGB"), "l3.tif": (300, 64, "RGBA")}
    for i, (name, (w, h, mode)) in enumerate(sizes.items()):
        _line_image(w, h, i, mode).save(folder / name)
    out = tmp_path / "units"
    base = ["--model", str(tmp_path / "model"), "--inputs", str(folder), "--no_progress", "--device", "cpu"]
    assert _run(base + ["--output", str(out)], capsys)[0] == 0
    units = datasets.load_from_disk(str(out))
    assert units["id"] == ["l1.png", "l2.jpg", "l3.tif"]
    from vq_hf.models import VQVAELineImageProcessor

    proc = VQVAELineImageProcessor()
    for row, (w, h, _) in zip(units, sizes.values()):
        assert row["length"] == -(-proc.scaled_width(w, h) // 4)  # one latent per 4 columns of the 32-high line
    batch = proc(Image.open(folder / "l1.png"), return_tensors="pt")
    enc = model.encode(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"])
    assert units[0]["codes"] == enc.codes[0, : int(enc.lengths[0]), 0].tolist()

    (folder / "l4.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    rc, _, err = _run(base + ["--output", str(tmp_path / "u2")], capsys)
    assert rc == 2 and f"{folder / 'l4.png'}: cannot read image" in err and not (tmp_path / "u2").exists()
    rc, _, _ = _run(base + ["--output", str(tmp_path / "u2"), "--skip_bad_inputs"], capsys)
    report = json.loads((tmp_path / "u2" / "units_report.json").read_text())
    assert rc == 0 and report["num_units_rows"] == 3 and report["skipped"][0]["path"] == str(folder / "l4.png")


def test_cifar_pngs_wrong_size_is_an_error_unless_resize(tmp_path, capsys):
    model = _cifar_model(tmp_path / "model")
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(3)]
    for i, arr in enumerate(arrays):
        Image.fromarray(arr).save(folder / f"img{i}.png")
    base = ["--model", str(tmp_path / "model"), "--no_progress", "--device", "cpu"]
    assert _run(base + ["--inputs", str(folder / "*.png"), "--output", str(tmp_path / "u")], capsys)[0] == 0
    units = datasets.load_from_disk(str(tmp_path / "u"))
    assert units["id"] == ["img0.png", "img1.png", "img2.png"] and units["shape"] == [[8, 8]] * 3
    from vq_hf.models import VQVAEImageProcessor

    expected = model.encode(**VQVAEImageProcessor()(arrays, return_labels=False)).codes
    assert torch.equal(torch.tensor(units["codes"]).reshape(3, 8, 8, 2), expected)

    Image.fromarray(rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)).save(folder / "big.png")
    rc, _, err = _run(base + ["--inputs", str(folder), "--output", str(tmp_path / "u2")], capsys)
    assert rc == 2 and f"{folder / 'big.png'}: image is 40x48; this model takes 32x32" in err
    assert _run(base + ["--inputs", str(folder), "--output", str(tmp_path / "u2"), "--resize"], capsys)[0] == 0
    assert len(datasets.load_from_disk(str(tmp_path / "u2"))) == 4
    (folder / "bad.png").write_bytes(b"")
    rc, _, _ = _run(base + ["--inputs", str(folder), "--output", str(tmp_path / "u3"), "--skip_bad_inputs"], capsys)
    report = json.loads((tmp_path / "u3" / "units_report.json").read_text())
    assert rc == 0 and report["num_units_rows"] == 3
    assert sorted(s["path"] for s in report["skipped"]) == [str(folder / "bad.png"), str(folder / "big.png")]
    # PIL images in Python
    pil = extract_units(model, [Image.fromarray(a) for a in arrays], progress=False)
    assert pil["codes"] == units["codes"] and pil["id"] == ["0", "1", "2"]


# ------------------------------------------------------------------------------------------ files, hub


def test_find_input_files_ids_and_errors(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.wav", "a/b/y.WAV", "a/b/z.txt"):
        (tmp_path / name).write_bytes(b"")
    found = find_input_files([tmp_path / "a"], (".wav",))
    assert [ident for _, ident in found] == ["b/y.WAV", "x.wav"]
    assert [i for _, i in find_input_files([str(tmp_path / "a" / "**" / "*")], (".wav",))] == ["b/y.WAV", "x.wav"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_input_files([tmp_path / "missing"], (".wav",))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="same id"):
        find_input_files([tmp_path / "a" / "x.wav", tmp_path / "c" / "x.wav"], (".wav",))
    with pytest.raises(BadInputError, match="cannot read audio"):
        read_audio(tmp_path / "a" / "x.wav", RATE)


class _FakeHubApi:
    def __init__(self):
        self.calls, self.files = [], {}

    def create_repo(self, repo_id, repo_type=None, exist_ok=False, private=False):
        self.calls.append(("create_repo", repo_id, repo_type))

    def upload_folder(self, folder_path, repo_id, repo_type=None, commit_message=None):
        from pathlib import Path

        self.calls.append(("upload_folder", repo_id, repo_type))
        self.files = {p.relative_to(folder_path).as_posix(): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}


def test_push_to_hub_uploads_parquet_report_and_card(tmp_path, wav_folder, capsys):
    _speech_model(tmp_path / "model")
    api = _FakeHubApi()
    rc = units_mod.cli(["--model", str(tmp_path / "model"), "--inputs", str(wav_folder), "--output",
                        str(tmp_path / "u"), "--no_progress", "--push_to_hub", "me/units"], hub_api=api)
    assert rc == 0
    assert api.calls == [("create_repo", "me/units", "dataset"), ("upload_folder", "me/units", "dataset")]
    assert set(api.files) == {"README.md", "units_report.json", "data/units-00000-of-00001.parquet"}
    (tmp_path / "p.parquet").write_bytes(api.files["data/units-00000-of-00001.parquet"])
    pushed = datasets.Dataset.from_parquet(str(tmp_path / "p.parquet"))
    assert pushed["codes"] == datasets.load_from_disk(str(tmp_path / "u"))["codes"]


def test_discrete_units_pipeline_matches_extract_units(tmp_path, wav_folder):
    import vq_hf.pipelines  # noqa: F401 — registers the task
    from transformers import pipeline

    from vq_hf.models import VQVAEForCTC

    _speech_model(tmp_path / "model")
    model = VQVAEForCTC.from_pretrained(str(tmp_path / "model"))
    units = pipeline("discrete-units", model=str(tmp_path / "model"), device="cpu")
    path = wav_folder / "sub" / "c_44k_int16_stereo.wav"
    ref = extract_units(model, str(path), dedup=True, progress=False)
    out = units(str(path), dedup=True)
    assert out["codes"] == ref["codes"][0] and out["durations"] == ref["durations"][0]
    wave = _tone(0.5, 8000)
    assert units(wave, sampling_rate=8000)["codes"] == extract_units(model, [(wave, 8000)], progress=False)["codes"][0]

    cifar = _cifar_model(tmp_path / "cifar")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    out = pipeline("discrete-units", model=str(tmp_path / "cifar"), device="cpu")(image)
    assert out["shape"] == [8, 8] and out["codes"] == extract_units(cifar, [image], progress=False)["codes"][0]
