"""ScribbleLens loader: real-format zips from the generator, hand-written edge cases, collator."""

import io
import itertools
import logging
import zipfile

import numpy as np
import pytest
import torch

from vq_hf.data import LineImageCollator, load_scribblelens
from vq_hf.standins import handwriting as synth
from vq_hf.data.scribblelens import (
    CORPUS_ROOT,
    ScribbleLensFormatError,
    format_ali,
    parse_ali,
    parse_dat,
    resample_alignment,
)
from vq_hf.models.vqvae_line.image_processing_vqvae_line import VQVAELineImageProcessor


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sl")
    path = folder / "corpus.zip"
    synth.generate_corpus(path, 8, seed=2, scribes=3, height=40, min_chars=8, max_chars=16, test_fraction=0.25)
    return path


@pytest.fixture(scope="module")
def loaded(generated, tmp_path_factory):
    return load_scribblelens(
        generated, alignments="scribblelens.paths.1.4b.zip", return_report=True,
        cache_dir=tmp_path_factory.mktemp("sl_cache"),
    )


def _jpeg(width, height, ink_columns=()):
    from PIL import Image

    array = np.full((height, width), 230, dtype=np.uint8)
    for column in ink_columns:
        array[height // 4 : 3 * height // 4, column] = 20
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _write_corpus(path, dats: dict, files: dict, alis: dict | None = None, ali_path=None):
    """dats: {split: text}; files/alis: {path relative to the corpus root: bytes or str}."""
    with zipfile.ZipFile(path, "w") as archive:
        for split, text in dats.items():
            archive.writestr(f"{CORPUS_ROOT}/corpora/nl.gray.lines.{split}.dat", text)
        for name, data in files.items():
            archive.writestr(f"{CORPUS_ROOT}/{name}", data)
    if alis is not None:
        with zipfile.ZipFile(ali_path, "w") as archive:
            for name, data in alis.items():
                archive.writestr(f"{CORPUS_ROOT}/{name}", data)


# ---------------------------------------------------------------------------------------------- formats
ALI = """scribblelens.corpus.v1/nl/tasman/3/line7.jpg 5 width: 5 targetStr: a *b
0 1 * -0.1
1 2 a -0.2
2 3 SPACE -0.3
3 4 b 0.000000
4 5 * -1e-3
"""


def test_parse_ali_reads_the_reference_format():
    ali = parse_ali(ALI, "x.ali")
    assert ali.image == "scribblelens.corpus.v1/nl/tasman/3/line7.jpg"
    assert ali.symbols == ("*", "a", "_", "b", "*")
    assert ali.scores == (-0.1, -0.2, -0.3, 0.0, -0.001)
    assert ali.target == "a b"  # blanks '*' removed from targetStr, as the reference reader does
    again = parse_ali(format_ali(ali.image, ali.symbols, ali.scores, ali.target), "y.ali")
    assert again.symbols == ali.symbols and again.target == ali.target


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"x.ali:1: empty alignment file"),
        ("img\n", r"x.ali:1: header 'img' lacks"),
        ("img five\n", r"x.ali:1: path length 'five' is not an integer"),
        ("img 3 targetStr: ab\n0 1 a 0\n1 2 b 0\n", r"x.ali:4: file ends after 2 of the 3 columns"),
        ("img 2\n0 1 a 0\n1 2 b\n", r"x.ali:3: expected 't t\+1 symbol score'"),
        ("img 2\n0 1 a 0\n2 3 b 0\n", r"x.ali:3: column numbers 2 3, expected 1 2"),
        ("img 2\n0 1 a 0\n1 2 b zero\n", r"x.ali:3: non-numeric"),
        ("img 1\n0 1 a 0\n1 2 b 0\n", r"x.ali:3: 1 non-empty line\(s\) after the 1 declared columns"),
    ],
)
def test_parse_ali_errors_name_file_and_line(text, message):
    with pytest.raises(ScribbleLensFormatError, match=message):
        parse_ali(text, "x.ali")


def test_parse_dat_rows_and_errors():
    rows = parse_dat("nl/tasman/3/line7.jpg nl/tasman/3/line7.txt\n\nnl/kieft/line.a12.jpg\n", "l.dat")
    assert [(r.image, r.text, r.lineno) for r in rows] == [
        ("nl/tasman/3/line7.jpg", "nl/tasman/3/line7.txt", 1),
        ("nl/kieft/line.a12.jpg", None, 3),
    ]
    with pytest.raises(ScribbleLensFormatError, match=r"l.dat:2: expected '<jpg path> \[<txt path>\]', got 3 fields"):
        parse_dat("nl/a/line1.jpg\nnl/a/line2.jpg x.txt y.txt\n", "l.dat")
    with pytest.raises(ScribbleLensFormatError, match=r"l.dat:1: image path 'nl/a/picture.png'"):
        parse_dat("nl/a/picture.png\n", "l.dat")
    with pytest.raises(ScribbleLensFormatError, match=r"l.dat:1: transcript path 'nl/a/line1.jpeg'"):
        parse_dat("nl/a/line1.jpg nl/a/line1.jpeg\n", "l.dat")


def test_resample_alignment_nearest_centre():
    ids = np.array([0] * 40 + [1] * 40)
    assert resample_alignment(ids, 20).tolist() == [0] * 10 + [1] * 10
    assert resample_alignment(np.array([3, 4]), 4).tolist() == [3, 3, 4, 4]
    assert resample_alignment(ids, 80).tolist() == ids.tolist()


# ---------------------------------------------------------------------------------------------- generated corpus
def test_loads_generated_corpus_with_alignments(loaded, generated):
    dsd, report = loaded
    assert {k: len(v) for k, v in dsd.items()} == {"train": 6, "test": 2}
    assert report.total_skipped == 0 and report.kept == {"train": 6, "test": 2}
    names = dsd["train"].features["alignment"].feature.names
    assert names[:2] == ["*", "_"]
    processor = VQVAELineImageProcessor()
    with zipfile.ZipFile(generated) as archive:
        for row in dsd["train"]:
            columns = row["columns"]
            assert columns.dtype == torch.uint8 and columns.shape == (row["width"], 32)
            assert row["original_height"] == 40
            assert row["width"] == int(0.5 + row["original_width"] * 32 / 40)
            assert len(row["alignment"]) == row["width"]
            # Stored pixels are exactly the processor's resize of the JPEG in the zip.
            from PIL import Image

            image = Image.open(io.BytesIO(archive.read(f"{CORPUS_ROOT}/{row['id']}.jpg")))
            np.testing.assert_array_equal(processor.resize_line(image), columns.numpy().T)
            # The resampled alignment still reads as the transcript (narrow letters survive 40 → 32 px).
            symbols = [names[i] for i in row["alignment"] if names[i] != "*"]
            read = "".join(k for k, _ in itertools.groupby(symbols)).replace("_", " ")
            assert read == "".join(k for k, _ in itertools.groupby(row["text"]))
            assert row["alignment_text"] == row["text"]


def test_external_alignment_zip_and_no_alignments(generated, tmp_path):
    with zipfile.ZipFile(generated) as archive:
        (tmp_path / "paths.zip").write_bytes(archive.read(f"{CORPUS_ROOT}/corpora/scribblelens.paths.1.4b.zip"))
    with_file = load_scribblelens(generated, alignments=tmp_path / "paths.zip", splits="test", cache_dir=tmp_path)
    assert list(with_file) == ["test"] and "alignment" in with_file["test"].column_names
    plain = load_scribblelens(generated, cache_dir=tmp_path)
    assert "alignment" not in plain["train"].column_names and len(plain["train"]) == 6
    with pytest.raises(FileNotFoundError, match="alignments 'nope.zip' is neither a file nor an entry"):
        load_scribblelens(generated, alignments="nope.zip", cache_dir=tmp_path)


def test_line_collator_pads_masks_and_crops(loaded):
    dsd, _ = loaded
    examples = [dsd["train"][i] for i in range(4)]
    widths = [e["width"] for e in examples]
    batch = LineImageCollator(return_lengths=True, return_alignment=True, return_text=True)(examples)
    width = batch["pixel_values"].shape[-1]
    assert batch["pixel_values"].shape == (4, 1, 32, width) and width % 4 == 0 and width - max(widths) < 4
    assert batch["pixel_values"].dtype == torch.float32 and batch["pixel_mask"].dtype == torch.bool
    assert batch["pixel_mask"].sum(1).tolist() == widths == batch["lengths"].tolist()
    padding = ~batch["pixel_mask"][:, None, None, :].expand_as(batch["pixel_values"])
    assert torch.all(batch["pixel_values"][padding] == 0)
    assert torch.equal(batch["pixel_values"][0, 0, :, : widths[0]], examples[0]["columns"].T.float() / 255)
    assert torch.all((batch["alignment"] == -100) == ~batch["pixel_mask"])
    assert batch["text"] == [e["text"] for e in examples]
    assert set(LineImageCollator()(examples)) == {"pixel_values", "pixel_mask"}

    crop = LineImageCollator(crop_width=64, seed=3, return_alignment=True)
    first, second = crop(examples), LineImageCollator(crop_width=64, seed=3, return_alignment=True)(examples)
    assert torch.equal(first["pixel_values"], second["pixel_values"])
    assert first["pixel_values"].shape[-1] == 64 and bool(first["pixel_mask"].all())
    # The crop is a window of the line, and its alignment is the same window.
    line = examples[0]["columns"].T.float() / 255
    windows = [line[:, s : s + 64] for s in range(line.shape[1] - 63)]
    offsets = [s for s, w in enumerate(windows) if torch.equal(w, first["pixel_values"][0, 0])]
    assert offsets
    assert first["alignment"][0].tolist() == examples[0]["alignment"][offsets[0] : offsets[0] + 64]
    with pytest.raises(ValueError, match="crop_width=0"):
        LineImageCollator(crop_width=0)


# ---------------------------------------------------------------------------------------------- edge cases
def _edge_corpus(tmp_path):
    good = _jpeg(80, 64, ink_columns=range(20, 60))
    files = {
        "nl/tasman/1/line1.jpg": good,
        "nl/tasman/1/line1.txt": "ab\n",
        "nl/tasman/1/line2.jpg": b"\xff\xd8 this is not a jpeg",
        "nl/tasman/1/line2.txt": "cd\n",
        "nl/tasman/1/line4.jpg": good,
        "nl/tasman/1/line4.txt": "ab\n",
        "nl/tasman/1/line5.jpg": good,
        "nl/tasman/1/line6.jpg": good,
        "nl/tasman/1/line7.jpg": good,
        "nl/tasman/1/line7.txt": "ab",
        "nl/tasman/2/line1.jpg": good,
    }
    native = format_ali("line1.jpg", ["*"] * 20 + ["a"] * 20 + ["b"] * 20 + ["*"] * 20, target="ab")
    at_32px = format_ali("line7.jpg", ["*"] * 10 + ["a"] * 10 + ["b"] * 10 + ["*"] * 10, target="ab")
    alis = {
        "nl/tasman/1/line1.ali": native,
        "nl/tasman/1/line2.ali": native,
        "nl/tasman/1/line4.ali": format_ali("line4.jpg", ["a"] * 33),  # neither 80 nor 40 columns
        "nl/tasman/1/line5.ali": "line5.jpg 80\n0 1 a 0\n",  # truncated
        "nl/tasman/1/line7.ali": at_32px,
        "nl/tasman/2/line1.ali": native,
    }
    train = "\n".join(
        [
            "nl/tasman/1/line1.jpg nl/tasman/1/line1.txt",
            "nl/tasman/1/line2.jpg nl/tasman/1/line2.txt",  # unreadable image
            "nl/tasman/1/line3.jpg",  # image missing
            "nl/tasman/1/line4.jpg nl/tasman/1/line4.txt",  # alignment length mismatch
            "nl/tasman/1/line5.jpg",  # malformed alignment
            "nl/tasman/1/line6.jpg",  # alignment missing
            "nl/tasman/1/line7.jpg nl/tasman/1/line7.txt",  # alignment already at 32 px
            "nl/tasman/1/line1.jpg nl/tasman/1/line1.txt",  # listed twice
        ]
    )
    corpus, ali = tmp_path / "edge.zip", tmp_path / "edge.paths.zip"
    _write_corpus(corpus, {"train": train + "\n", "test": "nl/tasman/2/line1.jpg\n"}, files, alis, ali)
    return corpus, ali


def test_unusable_lines_are_counted_reported_and_skipped(tmp_path, caplog):
    corpus, ali = _edge_corpus(tmp_path)
    with caplog.at_level(logging.WARNING, logger="vq_hf.data.scribblelens"):
        dsd, report = load_scribblelens(corpus, alignments=ali, return_report=True, cache_dir=tmp_path / "c")
    assert report.kept == {"train": 2, "test": 1}
    assert dict(report.skipped["train"]) == {
        "unreadable image": 1,
        "image missing": 1,
        "alignment length mismatch": 1,
        "malformed alignment": 1,
        "alignment missing": 1,
        "duplicate line": 1,
    }
    assert not report.skipped["test"]
    assert "train: kept 2, skipped 6" in caplog.text and "line4.ali: 33 columns" in caplog.text
    assert any("line5.ali:3: file ends after 1 of the 80 columns" in d for d in report.examples["train"])
    rows = {r["id"]: r for r in dsd["train"]}
    assert set(rows) == {"nl/tasman/1/line1", "nl/tasman/1/line7"}
    names = dsd["train"].features["alignment"].feature.names
    assert names == ["*", "a", "b"]  # no space in these alignments; blank first
    # 80x64 → 40x32: the native 80-column path is resampled; the 40-column one is taken as is.
    expected = [0] * 10 + [1] * 10 + [2] * 10 + [0] * 10
    assert rows["nl/tasman/1/line1"]["alignment"] == expected == rows["nl/tasman/1/line7"]["alignment"]
    assert rows["nl/tasman/1/line1"]["text"] == "ab" and rows["nl/tasman/1/line7"]["text"] == "ab"
    assert dsd["test"][0]["text"] is None


def test_on_error_raise_stops_at_the_first_unusable_line(tmp_path):
    corpus, ali = _edge_corpus(tmp_path)
    with pytest.raises(ValueError, match=r"split 'train': unreadable image: nl/tasman/1/line2.jpg"):
        load_scribblelens(corpus, alignments=ali, on_error="raise", cache_dir=tmp_path / "c")


def test_structural_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus zip"):
        load_scribblelens(tmp_path / "missing.zip")
    (tmp_path / "notzip.zip").write_text("hello")
    with pytest.raises(ValueError, match="is not a zip file"):
        load_scribblelens(tmp_path / "notzip.zip")
    good = _jpeg(40, 32)
    _write_corpus(tmp_path / "a.zip", {"train": "nl/s/line1.jpg\n"}, {"nl/s/line1.jpg": good})
    with pytest.raises(FileNotFoundError, match=r"split 'test': .*nl.gray.lines.test.dat not in"):
        load_scribblelens(tmp_path / "a.zip", cache_dir=tmp_path / "c")
    _write_corpus(tmp_path / "b.zip", {"train": "nl/s/line1.jpg\nnl/s/line2.jpg a b\n"}, {"nl/s/line1.jpg": good})
    where = r"b.zip!scribblelens.corpus.v1/corpora/nl.gray.lines.train.dat:2: "
    with pytest.raises(ScribbleLensFormatError, match=where):
        load_scribblelens(tmp_path / "b.zip", splits=["train"], cache_dir=tmp_path / "c")
    _write_corpus(tmp_path / "e.zip", {"train": "\n\n"}, {})
    with pytest.raises(ValueError, match="lists no lines"):
        load_scribblelens(tmp_path / "e.zip", splits=["train"], cache_dir=tmp_path / "c")
    _write_corpus(tmp_path / "d.zip", {"train": "nl/s/line1.jpg\n"}, {"nl/s/line1.jpg": b"garbage"})
    with pytest.raises(ValueError, match=r"split 'train' has no usable lines \(1 skipped: \{'unreadable image': 1\}"):
        load_scribblelens(tmp_path / "d.zip", splits=["train"], cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="on_error='ignore'"):
        load_scribblelens(tmp_path / "a.zip", on_error="ignore")
