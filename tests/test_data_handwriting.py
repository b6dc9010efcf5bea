"""The stand-in handwriting corpus generator: layout, determinism, alignments, CLI, missing resources."""

import io
import itertools
import zipfile

import numpy as np
import pytest

from vq_hf import cli as vq_cli
from vq_hf.standins import handwriting as synth
from vq_hf.data.scribblelens import CORPUS_ROOT, DEFAULT_ALIGNMENTS, LINE_PATH, parse_ali, parse_dat

SMALL = dict(lines=8, scribes=4, height=40, min_chars=8, max_chars=16, test_fraction=0.25)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hw")
    path = folder / "corpus.zip"
    stats = synth.generate_corpus(path, seed=5, alignments_out=folder / "ali.zip", **SMALL)
    return path, stats, folder / "ali.zip"


def _collapse(symbols):
    return [k for k, _ in itertools.groupby(s for s in symbols if s != "*")]


def test_layout_mirrors_scribblelens(corpus):
    path, stats, _ = corpus
    assert (stats.lines, stats.train, stats.test) == (8, 6, 2)
    assert len(stats.scribes) == 4 and stats.scribes[0].startswith("synth.joscelyn")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for split, count in (("train", 6), ("test", 2)):
            rows = parse_dat(archive.read(f"{CORPUS_ROOT}/corpora/nl.gray.lines.{split}.dat").decode(), split)
            assert len(rows) == count
            for row in rows:
                assert LINE_PATH.match(row.image) and row.text == row.image[:-4] + ".txt"
                assert f"{CORPUS_ROOT}/{row.image}" in names and f"{CORPUS_ROOT}/{row.text}" in names
        assert f"{CORPUS_ROOT}/corpora/{DEFAULT_ALIGNMENTS}" in names
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())


def test_alignments_match_images_and_transcripts(corpus):
    from PIL import Image

    path, _, ali_path = corpus
    with zipfile.ZipFile(path) as archive:
        nested = archive.read(f"{CORPUS_ROOT}/corpora/{DEFAULT_ALIGNMENTS}")
        assert nested == ali_path.read_bytes()  # --alignments-out writes the same zip
        alis = zipfile.ZipFile(io.BytesIO(nested))
        rows = parse_dat(archive.read(f"{CORPUS_ROOT}/corpora/nl.gray.lines.train.dat").decode(), "train")
        for row in rows:
            image = Image.open(io.BytesIO(archive.read(f"{CORPUS_ROOT}/{row.image}")))
            text = archive.read(f"{CORPUS_ROOT}/{row.text}").decode("utf-8")
            assert image.mode == "L" and image.height == 40 and text.endswith("\n") and text.count("\n") == 1
            ali = parse_ali(alis.read(f"{CORPUS_ROOT}/{row.image[:-4]}.ali").decode(), row.image)
            # One symbol per native column, margins blank, and reading the segments gives the transcript.
            assert len(ali.symbols) == image.width
            assert ali.symbols[0] == "*" and ali.symbols[-1] == "*"
            assert ali.target == text.strip() and ali.image == f"{CORPUS_ROOT}/{row.image}"
            expected = [k for k, _ in itertools.groupby(text.strip().replace(" ", "_"))]
            assert _collapse(ali.symbols) == expected
            # Ink lies inside the labelled span: the blank margins are (nearly) paper.
            pixels = np.asarray(image, dtype=np.float32)
            labelled = np.flatnonzero(np.array(ali.symbols) != "*")
            assert pixels[:, labelled].min() < pixels[:, : labelled[0]].mean() - 60


def test_same_seed_same_bytes_other_seed_differs(corpus, tmp_path):
    path, _, _ = corpus
    again = tmp_path / "again.zip"
    synth.generate_corpus(again, seed=5, workers=2, **SMALL)
    assert again.read_bytes() == path.read_bytes()
    other = tmp_path / "other.zip"
    synth.generate_corpus(other, seed=6, **SMALL)
    assert other.read_bytes() != path.read_bytes()


def test_make_handwriting_corpus_reuses_a_matching_zip(tmp_path):
    small = dict(num_lines=3, seed=1, height=32, min_chars=5, max_chars=10)
    first = synth.make_handwriting_corpus(tmp_path, scribes=2, **small)
    assert first.name == "synth_handwriting.3lines.seed1.zip" and first.is_file()
    stamp = first.stat().st_mtime_ns
    assert synth.make_handwriting_corpus(tmp_path, scribes=2, **small) == first
    assert first.stat().st_mtime_ns == stamp
    synth.make_handwriting_corpus(tmp_path, scribes=3, **small)
    assert first.stat().st_mtime_ns != stamp  # other arguments: regenerated


def test_cli_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        vq_cli.main(["make-handwriting-corpus", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in synth.build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{action.dest} has no help text"


def test_cli_writes_corpus_and_preview(tmp_path, capsys):
    out = tmp_path / "c.zip"
    code = vq_cli.main(
        ["make-handwriting-corpus", str(out), "--lines", "3", "--scribes", "2", "--height", "32",
         "--max-chars", "12", "--min-chars", "5", "--preview", str(tmp_path / "p.png"), "--preview-lines", "2"]
    )
    assert code == 0 and zipfile.is_zipfile(out)
    from PIL import Image

    assert Image.open(tmp_path / "p.png").size[1] > 2 * 32
    assert "lines/s" in capsys.readouterr().err


def test_bad_arguments_and_missing_resources(tmp_path, monkeypatch, capsys):
    assert vq_cli.main(["make-handwriting-corpus", str(tmp_path / "x.zip"), "--lines", "1"]) == 2
    assert "--lines 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must end in .zip"):
        synth.generate_corpus(tmp_path / "x.tar", lines=2)
    with pytest.raises(FileNotFoundError, match="apt-get install wdutch"):
        synth.load_words(str(tmp_path / "none"))
    monkeypatch.setattr(synth, "WORDLIST", str(tmp_path / "missing-dict"))
    with pytest.raises(FileNotFoundError, match="apt-get install wdutch"):
        synth.load_words(synth.WORDLIST)
    monkeypatch.setattr(synth, "FONT_ROOT", str(tmp_path / "no-fonts"))
    with pytest.raises(FileNotFoundError, match="fonts-joscelyn.*fonts-kristi"):
        synth.find_fonts()
    with pytest.raises(FileNotFoundError, match="font file"):
        synth.find_fonts([str(tmp_path / "nofont.ttf")])


def test_split_plan_never_leaves_a_split_empty():
    for lines in (2, 3, 9, 10, 11, 40):
        splits = [job.split for job in synth.plan_lines(lines, ["a", "b", "c"], 0.1, 25)]
        assert "train" in splits and "test" in splits
        assert splits.count("test") == max(1, lines // 10)
    jobs = synth.plan_lines(60, ["a", "b"], 0.25, 25)
    assert jobs[51].path == "nl/b/2/line1" and jobs[50].path == "nl/a/2/line1"  # 25 lines per page per scribe


def test_generated_zip_carries_the_stand_in_marker_the_loader_reads(corpus):
    from vq_hf.data.scribblelens import read_stand_in_marker

    path, stats, _ = corpus
    marker = read_stand_in_marker(path)
    assert marker["generator"] == "vq-hf make-handwriting-corpus" and marker["stand_in_for"] == "ScribbleLens"
    assert (marker["lines"], marker["train"], marker["test"], marker["seed"]) == (8, stats.train, stats.test, 5)
    assert marker["scribes"] == stats.scribes
