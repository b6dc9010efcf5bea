"""ScribbleLens (or the stand-in corpus) read straight from its zip into a ``datasets.DatasetDict``.

Corpus layout (OpenSLR 84, ``scribblelens.corpus.v1.2.zip``; the stand-in generator writes the same):

- line lists ``scribblelens.corpus.v1/corpora/nl.{colormode}.lines.{split}.dat``, one row per line:
  ``<jpg path> [<txt path>]``, paths relative to ``scribblelens.corpus.v1/``;
- line images ``scribblelens.corpus.v1/nl/<scribe>/[<page>[.<side>]/]line<N>.jpg``;
- transcripts: one-line UTF-8 ``.txt`` files;
- alignments (optional, a separate zip such as ``scribblelens.paths.1.4b.zip``, which the corpus zip also
  carries under ``corpora/``): per line a ``.ali`` file at the image's path with ``.jpg`` → ``.ali``. Header
  ``<image> <pathLength> … targetStr: <text>``, then ``pathLength`` rows ``t t+1 <symbol> <score>``, one per
  image column; ``SPACE`` is read as ``_`` and ``*`` is the blank.

Loading runs in two cached stages: ``Dataset.from_generator`` copies each listed line's raw bytes out of the
zip(s) (keyed by the zips' size and modification time), then ``Dataset.map`` decodes, converts to grayscale,
resizes to ``target_height`` with :class:`~vq_hf.models.vqvae_line.image_processing_vqvae_line.VQVAELineImageProcessor` and
resamples the alignment to the resized width. Every line that cannot be used is counted by reason, logged,
returned in the report and removed — or, with ``on_error="raise"``, stops the load with the same message.
"""

from __future__ import annotations

import io
import logging
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._extras import require

logger = logging.getLogger(__name__)

CORPUS_ROOT = "scribblelens.corpus.v1"
DEFAULT_ALIGNMENTS = "scribblelens.paths.1.4b.zip"
# Written by `vq-hf make-handwriting-corpus` into its zips (the real corpus has no such file): results.json and
# the model card then say "stand-in" instead of "ScribbleLens".
STANDIN_MARKER = f"{CORPUS_ROOT}/vq_hf_stand_in.json"
BLANK = "*"
SPACE = "_"
LINE_PATH = re.compile(
    r"^(?P<item_dir>(?:.*?/)?(?P<scribe>[^/]+)/(?:(?P<page>\d+)(?:\.(?P<page_side>\d+))?/)?)"
    r"line(?:\.\D+)?(?P<line_index>\d+)\.jpg$"
)

__all__ = [
    "CORPUS_ROOT",
    "DEFAULT_ALIGNMENTS",
    "STANDIN_MARKER",
    "read_stand_in_marker",
    "AlignmentFile",
    "LoadReport",
    "load_scribblelens",
    "parse_ali",
    "format_ali",
    "parse_dat",
    "resample_alignment",
    "dat_name",
]


class ScribbleLensFormatError(ValueError):
    """A corpus file does not follow the ScribbleLens format; the message names the file and line."""


# ---------------------------------------------------------------------------------------------- formats
@dataclass(frozen=True)
class AlignmentFile:
    """One parsed ``.ali`` path: the image named in the header and one symbol/score per image column."""

    image: str
    symbols: tuple[str, ...]
    scores: tuple[float, ...]
    target: str | None


def read_stand_in_marker(corpus: str | os.PathLike) -> dict | None:
    """The generator's record in a stand-in corpus zip (``lines``, ``seed``, ...); None for ScribbleLens itself."""
    import json

    try:
        with zipfile.ZipFile(corpus) as archive:
            if STANDIN_MARKER not in archive.namelist():
                return None
            raw = archive.read(STANDIN_MARKER)
    except (OSError, zipfile.BadZipFile):
        return None  # load_scribblelens reports a missing or broken zip with its own message
    try:
        marker = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ScribbleLensFormatError(f"{corpus}!{STANDIN_MARKER}: not valid JSON ({err})") from None
    if not isinstance(marker, dict):
        raise ScribbleLensFormatError(f"{corpus}!{STANDIN_MARKER}: expected a JSON object")
    return marker


def parse_ali(text: str, source: str = "<ali>") -> AlignmentFile:
    """Parse an ``.ali`` file; raises :class:`ScribbleLensFormatError` naming ``source`` and the line."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ScribbleLensFormatError(f"{source}:1: empty alignment file (expected a header line)")
    header = lines[0].strip()
    words = header.split()
    if len(words) < 2:
        raise ScribbleLensFormatError(f"{source}:1: header {header!r} lacks '<image> <pathLength>'")
    try:
        length = int(words[1])
    except ValueError:
        raise ScribbleLensFormatError(f"{source}:1: path length {words[1]!r} is not an integer") from None
    if length < 1:
        raise ScribbleLensFormatError(f"{source}:1: path length {length} must be positive")
    target = None
    marker = header.find("targetStr:")
    if marker >= 0:
        target = header[marker + len("targetStr:") :].strip().replace(BLANK, "")
    body = lines[1 : 1 + length]
    if len(body) < length:
        raise ScribbleLensFormatError(
            f"{source}:{len(lines) + 1}: file ends after {len(body)} of the {length} columns the header declares"
        )
    extra = [i for i, line in enumerate(lines[1 + length :], start=2 + length) if line.strip()]
    if extra:
        raise ScribbleLensFormatError(
            f"{source}:{extra[0]}: {len(extra)} non-empty line(s) after the {length} declared columns"
        )
    symbols, scores = [], []
    for t, line in enumerate(body):
        lineno = t + 2
        fields = line.split()
        if len(fields) != 4:
            raise ScribbleLensFormatError(f"{source}:{lineno}: expected 't t+1 symbol score', got {line!r}")
        try:
            start, stop, score = int(fields[0]), int(fields[1]), float(fields[3])
        except ValueError:
            raise ScribbleLensFormatError(f"{source}:{lineno}: non-numeric column/score in {line!r}") from None
        if start != t or stop != t + 1:
            raise ScribbleLensFormatError(f"{source}:{lineno}: column numbers {start} {stop}, expected {t} {t + 1}")
        symbol = fields[2]
        symbols.append(SPACE if symbol == "SPACE" else symbol)
        scores.append(score)
    return AlignmentFile(words[0], tuple(symbols), tuple(scores), target)


def format_ali(image: str, symbols, scores=None, target: str | None = None, extra: str = "") -> str:
    """Write an ``.ali`` file: header, then one ``t t+1 symbol score`` row per column (``_`` → ``SPACE``)."""
    symbols = list(symbols)
    scores = [0.0] * len(symbols) if scores is None else list(scores)
    if len(scores) != len(symbols):
        raise ValueError(f"format_ali: {len(symbols)} symbols but {len(scores)} scores")
    header = f"{image} {len(symbols)}"
    if extra:
        header += f" {extra}"
    if target is not None:
        header += f" targetStr: {target}"
    rows = [header]
    for t, (symbol, score) in enumerate(zip(symbols, scores)):
        if not symbol or any(c.isspace() for c in symbol):
            raise ValueError(f"format_ali: column {t} symbol {symbol!r} is empty or contains whitespace")
        rows.append(f"{t} {t + 1} {'SPACE' if symbol == SPACE else symbol} {score:.6f}")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class DatRow:
    image: str
    text: str | None
    lineno: int


def parse_dat(text: str, source: str = "<dat>") -> list[DatRow]:
    """Parse a ``.dat`` line list; blank lines are ignored, anything else malformed raises naming file:line."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 2:
            raise ScribbleLensFormatError(
                f"{source}:{lineno}: expected '<jpg path> [<txt path>]', got {len(tokens)} fields: {line!r}"
            )
        image = tokens[0]
        if not LINE_PATH.match(image):
            raise ScribbleLensFormatError(
                f"{source}:{lineno}: image path {image!r} does not look like <scribe>/[<page>/]line<N>.jpg"
            )
        text_path = tokens[1] if len(tokens) == 2 else None
        if text_path is not None and not text_path.endswith(".txt"):
            raise ScribbleLensFormatError(f"{source}:{lineno}: transcript path {text_path!r} is not a .txt file")
        rows.append(DatRow(image, text_path, lineno))
    return rows


def dat_name(split: str, colormode: str = "gray") -> str:
    """Path of a split's line list inside the corpus zip."""
    if split == "unsupervised":
        return f"{CORPUS_ROOT}/corpora/all.nl.{colormode}.lines.{split}.dat"
    return f"{CORPUS_ROOT}/corpora/nl.{colormode}.lines.{split}.dat"


def resample_alignment(ids: np.ndarray, width: int) -> np.ndarray:
    """Nearest-centre resampling of a per-column label sequence to ``width`` columns."""
    ids = np.asarray(ids)
    if len(ids) == width:
        return ids.copy()
    source = np.floor((np.arange(width) + 0.5) * (len(ids) / width)).astype(np.int64)
    return ids[np.clip(source, 0, len(ids) - 1)]


# ---------------------------------------------------------------------------------------------- report
@dataclass
class LoadReport:
    """What was kept and what was skipped, per split: ``skipped[split][reason] = count``."""

    kept: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, Counter] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total_skipped(self) -> int:
        return sum(sum(c.values()) for c in self.skipped.values())

    def summary(self) -> str:
        parts = []
        for split in self.kept:
            skipped = self.skipped.get(split, Counter())
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "none"
            parts.append(f"{split}: kept {self.kept[split]}, skipped {sum(skipped.values())} ({reasons})")
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- stage 1
def _file_key(path: str) -> tuple:
    stat = os.stat(path)
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def _open_alignments(corpus: zipfile.ZipFile, corpus_path: str, alignments) -> tuple[zipfile.ZipFile, str]:
    """Open the alignment zip: a file on disk, or an entry of that name nested in the corpus zip."""
    path = Path(alignments)
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ValueError(f"load_scribblelens: alignments {str(path)!r} is not a zip file")
        return zipfile.ZipFile(path), str(path)
    name = str(alignments)
    matches = [n for n in corpus.namelist() if n == name or n.endswith("/" + path.name)]
    if not matches:
        raise FileNotFoundError(
            f"load_scribblelens: alignments {name!r} is neither a file nor an entry of {corpus_path!r}"
        )
    return zipfile.ZipFile(io.BytesIO(corpus.read(matches[0]))), f"{corpus_path}!{matches[0]}"


def _index_alignments(ali_zip: zipfile.ZipFile) -> dict[str, str]:
    """Map 'path relative to the corpus root' → entry name, for every .ali entry."""
    index = {}
    for name in ali_zip.namelist():
        if not name.endswith(".ali"):
            continue
        index[name] = name
        if f"{CORPUS_ROOT}/" in name:
            index.setdefault(name.split(f"{CORPUS_ROOT}/", 1)[1], name)
        elif "/" in name:
            index.setdefault(name.split("/", 1)[1], name)
    return index


def _raw_rows(corpus_path, corpus_key, alignments, alignments_key, split, dat, rows):
    """Generator of stage 1: copy each listed line's bytes out of the zip(s), noting what is missing."""
    del corpus_key, alignments_key  # part of the cache fingerprint only
    with zipfile.ZipFile(corpus_path) as corpus:
        names = set(corpus.namelist())
        ali_zip, ali_source, ali_index = None, None, {}
        if alignments is not None:
            ali_zip, ali_source = _open_alignments(corpus, corpus_path, alignments)
            ali_index = _index_alignments(ali_zip)
        seen = set()
        try:
            for image_rel, text_rel, lineno in rows:
                match = LINE_PATH.match(image_rel)
                row = {
                    "id": image_rel[: -len(".jpg")],
                    "scribe": match["scribe"],
                    "page": match["page"] or "",
                    "line_index": int(match["line_index"]),
                    "image_bytes": None,
                    "text": None,
                    "ali_text": None,
                    "ali_source": None,
                    "problem": "",
                    "detail": "",
                }
                where = f"{dat}:{lineno}"
                image_name = f"{CORPUS_ROOT}/{image_rel}"
                if image_rel in seen:
                    row["problem"], row["detail"] = "duplicate line", f"{where}: {image_rel} listed twice"
                    yield row
                    continue
                seen.add(image_rel)
                if image_name not in names:
                    row["problem"], row["detail"] = "image missing", f"{where}: {image_name} not in {corpus_path}"
                    yield row
                    continue
                row["image_bytes"] = corpus.read(image_name)
                if text_rel is not None:
                    text_name = f"{CORPUS_ROOT}/{text_rel}"
                    if text_name not in names:
                        row["problem"], row["detail"] = "transcript missing", f"{where}: {text_name} not in zip"
                        yield row
                        continue
                    try:
                        text = corpus.read(text_name).decode("utf-8").strip()
                    except UnicodeDecodeError as err:
                        row["problem"], row["detail"] = "transcript unreadable", f"{text_name}: not UTF-8 ({err})"
                        yield row
                        continue
                    if "\n" in text:
                        row["problem"] = "transcript unreadable"
                        row["detail"] = f"{text_name}: {text.count(chr(10)) + 1} lines, expected one"
                        yield row
                        continue
                    row["text"] = text
                if ali_zip is not None:
                    ali_rel = image_rel[: -len(".jpg")] + ".ali"
                    entry = ali_index.get(ali_rel)
                    if entry is None:
                        row["problem"], row["detail"] = "alignment missing", f"{ali_rel} not in {ali_source}"
                        yield row
                        continue
                    row["ali_source"] = f"{ali_source}!{entry}"
                    try:
                        row["ali_text"] = ali_zip.read(entry).decode("utf-8")
                    except UnicodeDecodeError as err:
                        row["problem"], row["detail"] = "malformed alignment", f"{row['ali_source']}: not UTF-8 ({err})"
                yield row
        finally:
            if ali_zip is not None:
                ali_zip.close()


# ---------------------------------------------------------------------------------------------- stage 2
def _process_row(row, processor_config, symbol_ids):
    from PIL import Image

    from ..models.vqvae_line.image_processing_vqvae_line import VQVAELineImageProcessor

    processor = VQVAELineImageProcessor(**processor_config)
    out = {
        "columns": np.zeros((0, processor.target_height), dtype=np.uint8),
        "width": 0,
        "original_width": 0,
        "original_height": 0,
        "alignment": None,
        "alignment_text": None,
        "problem": row["problem"],
        "detail": row["detail"],
    }
    if row["problem"]:
        return out
    try:
        with Image.open(io.BytesIO(row["image_bytes"])) as image:
            image.load()
            original_width, original_height = image.size
            line = processor.resize_line(image)
    except Exception as err:  # noqa: BLE001 - any decoder failure is this line's problem, reported by name
        out["problem"], out["detail"] = "unreadable image", f"{row['id']}.jpg: {type(err).__name__}: {err}"
        return out
    out["columns"] = np.ascontiguousarray(line.T)
    out["width"] = line.shape[1]
    out["original_width"], out["original_height"] = original_width, original_height
    if row["ali_text"] is not None:
        try:
            ali = parse_ali(row["ali_text"], row["ali_source"])
        except ScribbleLensFormatError as err:
            out["problem"], out["detail"] = "malformed alignment", str(err)
            return out
        if len(ali.symbols) == original_width:
            ids = resample_alignment(np.array([symbol_ids[s] for s in ali.symbols]), line.shape[1])
        elif len(ali.symbols) == line.shape[1]:
            ids = np.array([symbol_ids[s] for s in ali.symbols])
        else:
            out["problem"] = "alignment length mismatch"
            out["detail"] = (
                f"{row['ali_source']}: {len(ali.symbols)} columns, image {row['id']}.jpg is {original_width} "
                f"columns wide ({line.shape[1]} after resizing to height {processor.target_height})"
            )
            return out
        out["alignment"] = ids.astype(np.int64)
        out["alignment_text"] = ali.target
    return out


def _symbols_of(ali_texts) -> set[str]:
    symbols = set()
    for text in ali_texts:
        if text is None:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) == 4:
                symbols.add(SPACE if fields[2] == "SPACE" else fields[2])
    return symbols


def _order_alphabet(symbols) -> list[str]:
    rest = sorted(set(symbols) - {BLANK, SPACE})
    return [s for s in (BLANK, SPACE) if s in symbols or s == BLANK] + rest


def load_scribblelens(
    corpus: str | os.PathLike = "scribblelens.corpus.v1.2.zip",
    alignments: str | os.PathLike | None = None,
    *,
    splits=("train", "test"),
    colormode: str = "gray",
    target_height: int = 32,
    alphabet: list[str] | None = None,
    on_error: str = "skip",
    return_report: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
):
    """Load ScribbleLens lines from the corpus zip (no extraction) as a ``datasets.DatasetDict``.

    Args:
        corpus: the corpus zip (``scribblelens.corpus.v1.2.zip`` or one written by
            ``vq-hf make-handwriting-corpus``).
        alignments: optional alignment zip (``scribblelens.paths.1.4b.zip``) — a path, or the name of a zip
            nested in the corpus zip (the real corpus carries it under ``corpora/``).
        splits: split names; each reads ``nl.{colormode}.lines.{split}.dat`` (``unsupervised`` reads
            ``all.nl.{colormode}.lines.unsupervised.dat``).
        colormode: ``"gray"``, ``"color"`` or ``"bw"`` — which line lists to read; lines become grayscale.
        target_height: line height after resizing (widths scale by the same factor).
        alphabet: symbols of the alignment ``ClassLabel`` (blank ``*`` is id 0). Default: ``*``, ``_``, then
            every other symbol found in the loaded splits' alignments, sorted.
        on_error: ``"skip"`` (default) drops unusable lines, counting and logging them by reason;
            ``"raise"`` stops at the first one with the same message. Malformed line lists always raise.
        return_report: also return the :class:`LoadReport`.
        cache_dir: ``datasets`` cache folder (default ``HF_DATASETS_CACHE``).
        num_proc: processes for the decoding ``map``.

    Returns:
        ``DatasetDict`` (and the report when asked) with columns ``id`` (image path without ``.jpg``),
        ``scribe``, ``page``, ``line_index``, ``text`` (transcript or None), ``columns`` (uint8 (W, H): one row
        per image column, ink dark), ``width``, ``original_width``, ``original_height`` and, with alignments,
        ``alignment`` (per-column ``ClassLabel`` ids, length W) and ``alignment_text`` (the ``targetStr``).
        Formatted with ``set_format("torch", columns=["columns"], dtype=torch.uint8, output_all_columns=True)``
        (``columns`` a uint8 tensor, the rest plain Python); batch with :class:`vq_hf.data.LineImageCollator`.
    """
    datasets = require("datasets", "train", "loading ScribbleLens")
    import torch

    if on_error not in {"skip", "raise"}:
        raise ValueError(f"load_scribblelens: on_error={on_error!r} must be 'skip' or 'raise'")
    if colormode not in {"gray", "color", "bw"}:
        raise ValueError(f"load_scribblelens: colormode={colormode!r} must be 'gray', 'color' or 'bw'")
    if isinstance(splits, str):
        splits = (splits,)
    if not splits:
        raise ValueError("load_scribblelens: no splits requested")
    corpus_path = str(corpus)
    if not Path(corpus_path).is_file():
        raise FileNotFoundError(f"load_scribblelens: corpus zip {corpus_path!r} not found")
    if not zipfile.is_zipfile(corpus_path):
        raise ValueError(f"load_scribblelens: {corpus_path!r} is not a zip file")
    corpus_key = _file_key(corpus_path)
    alignments_key = None
    if alignments is not None:
        alignments = str(alignments)
        alignments_key = _file_key(alignments) if Path(alignments).is_file() else ("nested", alignments)

    listed = {}
    with zipfile.ZipFile(corpus_path) as archive:
        if alignments is not None:
            # Resolved here, not only inside the generator, so that a bad path is a plain, named error.
            ali_zip, _ = _open_alignments(archive, corpus_path, alignments)
            ali_zip.close()
        names = set(archive.namelist())
        for split in splits:
            dat = dat_name(split, colormode)
            if dat not in names:
                available = sorted(n for n in names if n.endswith(".dat"))
                raise FileNotFoundError(
                    f"load_scribblelens: split {split!r}: {dat} not in {corpus_path} (line lists there: {available})"
                )
            try:
                text = archive.read(dat).decode("utf-8")
            except UnicodeDecodeError as err:
                raise ScribbleLensFormatError(f"{corpus_path}!{dat}: not UTF-8 ({err})") from None
            rows = parse_dat(text, f"{corpus_path}!{dat}")
            if not rows:
                raise ValueError(f"load_scribblelens: split {split!r}: {corpus_path}!{dat} lists no lines")
            # A tuple, not a list: datasets treats list-valued gen_kwargs as shards and would call the generator
            # once per line (reopening the zip each time and losing the duplicate check).
            listed[split] = (f"{corpus_path}!{dat}", tuple((r.image, r.text, r.lineno) for r in rows))

    raw_features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "scribe": datasets.Value("string"),
            "page": datasets.Value("string"),
            "line_index": datasets.Value("int32"),
            "image_bytes": datasets.Value("binary"),
            "text": datasets.Value("string"),
            "ali_text": datasets.Value("string"),
            "ali_source": datasets.Value("string"),
            "problem": datasets.Value("string"),
            "detail": datasets.Value("string"),
        }
    )
    cache = None if cache_dir is None else str(cache_dir)
    raw = {}
    for split, (dat, rows) in listed.items():
        raw[split] = datasets.Dataset.from_generator(
            _raw_rows,
            features=raw_features,
            cache_dir=cache,
            gen_kwargs={
                "corpus_path": corpus_path,
                "corpus_key": corpus_key,
                "alignments": alignments,
                "alignments_key": alignments_key,
                "split": split,
                "dat": dat,
                "rows": rows,
            },
            split=datasets.Split(split) if split in ("train", "test", "validation") else datasets.NamedSplit(split),
        )

    # the symbols of each split's alignments, parsed once: the default alphabet and the unknown-symbol check
    symbols = {split: _symbols_of(ds["ali_text"]) for split, ds in raw.items()} if alignments is not None else {}
    if alignments is not None and alphabet is None:
        alphabet = _order_alphabet(set().union(*symbols.values()))
    if alphabet is not None:
        alphabet = list(alphabet)
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("load_scribblelens: alphabet has repeated symbols")
    symbol_ids = {} if alphabet is None else {s: i for i, s in enumerate(alphabet)}

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "scribe": datasets.Value("string"),
            "page": datasets.Value("string"),
            "line_index": datasets.Value("int32"),
            "text": datasets.Value("string"),
            "columns": datasets.Array2D(shape=(None, target_height), dtype="uint8"),
            "width": datasets.Value("int32"),
            "original_width": datasets.Value("int32"),
            "original_height": datasets.Value("int32"),
            "alignment": datasets.List(datasets.ClassLabel(names=alphabet or [BLANK])),
            "alignment_text": datasets.Value("string"),
            "problem": datasets.Value("string"),
            "detail": datasets.Value("string"),
        }
    )
    from ..models.vqvae_line.image_processing_vqvae_line import VQVAELineImageProcessor

    processor_config = VQVAELineImageProcessor(target_height=target_height)._config()
    report = LoadReport()
    out = datasets.DatasetDict()
    for split, ds in raw.items():
        if alignments is not None:
            unknown = symbols[split] - set(symbol_ids)
            if unknown:
                raise ValueError(
                    f"load_scribblelens: split {split!r} alignments use symbols {sorted(unknown)} "
                    "missing from the given alphabet"
                )
        processed = ds.map(
            _process_row,
            fn_kwargs={"processor_config": processor_config, "symbol_ids": symbol_ids},
            remove_columns=["image_bytes", "ali_text", "ali_source"],
            features=features,
            num_proc=num_proc,
            desc=f"ScribbleLens {split}: decode + resize to height {target_height}",
        )
        problems = processed["problem"]
        bad = [i for i, p in enumerate(problems) if p]
        skipped = Counter(problems[i] for i in bad)
        details = processed.select(bad)["detail"] if bad else []
        if bad and on_error == "raise":
            raise ValueError(f"load_scribblelens: split {split!r}: {problems[bad[0]]}: {details[0]}")
        report.skipped[split] = skipped
        report.examples[split] = list(details)
        kept = processed.filter(lambda p: not p, input_columns="problem", desc=f"ScribbleLens {split}: drop skipped")
        kept = kept.remove_columns(["problem", "detail"])
        if alignments is None:
            kept = kept.remove_columns(["alignment", "alignment_text"])
        report.kept[split] = len(kept)
        if len(kept) == 0:
            raise ValueError(
                f"load_scribblelens: split {split!r} has no usable lines ({sum(skipped.values())} skipped: "
                f"{dict(skipped)}; first: {details[0] if details else 'n/a'})"
            )
        # Only the pixels become tensors, kept uint8 (datasets' torch formatter would widen them to int64).
        kept.set_format("torch", columns=["columns"], dtype=torch.uint8, output_all_columns=True)
        out[split] = kept
    if report.total_skipped:
        logger.warning("load_scribblelens: %s", report.summary())
        for split, examples in report.examples.items():
            for detail in examples[:10]:
                logger.warning("load_scribblelens: %s: skipped %s", split, detail)
    return (out, report) if return_report else out
