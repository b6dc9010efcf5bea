"""WSJ (or any Kaldi data directory) → ``datasets.DatasetDict`` of 243-dim CMVN'd fbanks with phone alignments.

```python
from vq_hf.data import load_wsj, SpeechCollator
ds = load_wsj({"train": "data/train_si284", "dev": "data/test_dev93"},
              alignments={"train": "exp/tri3b_ali/phones.ctm", "dev": "exp/tri3b_ali_dev93/phones.ctm"})
train_loader = DataLoader(ds["train"], batch_size=32, shuffle=True, collate_fn=SpeechCollator(chunk_frames=64))
dev_loader = DataLoader(ds["dev"], batch_size=32, collate_fn=SpeechCollator(chunk_frames=None))
```

Inputs per split (a Kaldi data directory):
- ``wav.scp`` (plain paths, read with kaldiio), optional ``segments``; or ``feats.scp`` (kaldiio) with 243 columns (fbank + energy + Δ + ΔΔ, used as they are) or 81
  (deltas are added). ``features="auto"`` uses ``wav.scp`` when present, else ``feats.scp`` (Kaldi recipes
  leave MFCC ``feats.scp`` files beside ``wav.scp``).
- optional ``text`` and ``utt2spk`` (speaker = utterance id when absent, Kaldi's convention);
- phone alignments: a CTM (``ali-to-phones --ctm-output``: ``utt chan start dur phone``, seconds; integer phone
  ids are decoded with ``phone_table=<lang>/phones.txt``) or the
  reference's ``text_ali`` (``utt ph start end ; ph start end ; …``, frames, end exclusive). Without an
  explicit path, ``<dir>/text_ali`` then ``<dir>/phones.ctm`` are used.

Kaldi's piped entries (``sph2pipe -f wav X.wv1 |``: any ``wav.scp`` / ``feats.scp`` value containing ``|``) are
shell commands that kaldiio runs. A downloaded data folder could run anything that way, so they are refused
(an error naming the file and line) unless ``allow_commands=True`` (CLI: ``--allow_scp_commands``, recipe:
``data.allow_scp_commands``) says the corpus is trusted; then the first command is printed before any runs.

Phones lose Kaldi's word-position suffix (``_B/_I/_E/_S``) and stress digits. The vocabulary, built from the
training split, is ``<eps>`` = 0 (the CTC blank, never a target), ``<unk>`` = 1, then the sorted training
phones; it is the ``ClassLabel`` of the ``labels`` column and is saved as ``phones.txt``. Features are
``VQVAEFeatureExtractor`` fbanks with global CMVN statistics fitted on the training split. Evaluating a trained
model needs no training split: ``fit_cmvn=False`` with the model's fitted extractor and ``phones`` loads just
the requested ``splits``.

Columns: ``id``, ``speaker``, ``text``, ``input_features`` (Array2D (T, 243) float32, CMVN applied),
``num_frames``, ``labels`` (phone ids of the whole utterance, consecutive repeats merged — as in the
reference's PER targets), and the alignment as ``phone_ids`` / ``phone_starts`` / ``phone_ends`` (frames) for
chunk cropping. Training takes random 64-frame chunks in :class:`~vq_hf.data.speech_collators.SpeechCollator`.

Policies (nothing is dropped silently; every skip is counted, logged and written to ``load_report.json``):
- an utterance without an alignment is skipped (``missing_alignment="skip"``, or ``"error"``);
- an alignment whose end differs from the number of feature frames by more than ``max_length_mismatch``
  frames is an error (``length_mismatch="error"``, or ``"skip"``); within the tolerance, segments past the
  last frame are clipped (segments that start past it are dropped and counted);
- a phone of dev/test that the training split lacks maps to ``<unk>`` and is counted
  (``unknown_phones="unk"``, or ``"error"``);
- malformed lines, missing files, unreadable audio, a wrong sampling rate, an empty split: errors that name
  the file and line / utterance.

The result is cached under ``cache_dir`` (default ``$HF_DATASETS_CACHE/vq_hf_wsj``) keyed by the inputs' paths,
sizes and modification times, the extractor settings and the options; the cached folder also holds the
fitted ``preprocessor_config.json``, ``phones.txt`` and ``load_report.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from .._extras import require
from ..models.vqvae_speech.feature_extraction_vqvae_speech import VQVAEFeatureExtractor

logger = logging.getLogger(__name__)

BLANK, UNK = "<eps>", "<unk>"
_CACHE_VERSION = "wsj-v1"
_POSITION_RE = re.compile(r"_[BIES]$")
_STRESS_RE = re.compile(r"\d+$")


class KaldiDataError(ValueError):
    """A Kaldi data directory or alignment file is missing, malformed or inconsistent."""


def normalize_phone(symbol: str) -> str:
    """``AH0_B`` → ``AH``: drop Kaldi's word-position suffix, then the stress digits."""
    stripped = _STRESS_RE.sub("", _POSITION_RE.sub("", symbol))
    return stripped or symbol


# ------------------------------------------------------------------------------------------ Kaldi tables
def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield number, line


def read_table(path: Path, min_fields: int = 2, max_fields: int | None = None) -> dict[str, str]:
    """A Kaldi ``<key> <value…>`` table (wav.scp, feats.scp, text, utt2spk) → {key: rest of the line}."""
    table: dict[str, str] = {}
    for number, line in _lines(path):
        fields = line.split(maxsplit=1)
        count = len(line.split())
        if count < min_fields or (max_fields is not None and count > max_fields):
            expected = f"{min_fields}" if max_fields == min_fields else f"at least {min_fields}"
            raise KaldiDataError(f"{path} line {number}: expected {expected} fields, got {count}: {line[:100]!r}")
        if fields[0] in table:
            raise KaldiDataError(f"{path} line {number}: duplicate key {fields[0]!r}")
        table[fields[0]] = fields[1] if len(fields) > 1 else ""
    return table


def read_segments(path: Path) -> dict[str, tuple[str, float, float]]:
    """Kaldi ``segments``: ``<utt> <recording> <start> <end>`` (seconds; end −1 = to the end)."""
    segments = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 4:
            raise KaldiDataError(f"{path} line {number}: expected '<utt> <recording> <start> <end>', got {line[:100]!r}")
        try:
            start, end = float(fields[2]), float(fields[3])
        except ValueError:
            raise KaldiDataError(f"{path} line {number}: start/end are not numbers: {line[:100]!r}") from None
        if start < 0 or (end != -1 and end <= start):
            raise KaldiDataError(f"{path} line {number}: bad segment times start={start} end={end}")
        if fields[0] in segments:
            raise KaldiDataError(f"{path} line {number}: duplicate segment id {fields[0]!r}")
        segments[fields[0]] = (fields[1], start, end)
    return segments


# ------------------------------------------------------------------------------------------ alignments
Segment = tuple[str, int, int]  # (normalised phone, start frame, end frame exclusive)


def read_phone_table(path: str | Path) -> dict[str, str]:
    """Kaldi ``lang/phones.txt`` (``symbol id`` per line) → {id: symbol}, to decode integer alignments."""
    path = Path(path)
    if not path.is_file():
        raise KaldiDataError(f"phone table {path} does not exist")
    table = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise KaldiDataError(f"{path} line {number}: expected '<phone> <integer id>', got {line[:100]!r}")
        if fields[1] in table:
            raise KaldiDataError(f"{path} line {number}: duplicate id {fields[1]}")
        table[fields[1]] = fields[0]
    return table


def _phone(token: str, symbols: dict[str, str] | None, path: Path, number: int) -> str:
    if symbols is not None:
        if token not in symbols:
            raise KaldiDataError(f"{path} line {number}: phone id {token!r} is not in the phone table")
        token = symbols[token]
    elif token.isdigit():
        raise KaldiDataError(
            f"{path} line {number}: phone {token!r} is an integer id (raw ali-to-phones output); pass "
            "phone_table='<lang>/phones.txt' or convert the file with utils/int2sym.pl"
        )
    return normalize_phone(token)


def _check_runs(path: Path, utt: str, runs: list[Segment]) -> list[Segment]:
    runs = sorted(runs, key=lambda r: r[1])
    for (_, _, prev_end), (phone, start, end) in zip(runs, runs[1:]):
        if start < prev_end:
            raise KaldiDataError(f"{path}: utterance {utt}: segment {phone} at frame {start} overlaps the previous one (ends {prev_end})")
    return runs


def read_ctm(path: Path, frame_shift: float = 0.01, symbols: dict[str, str] | None = None) -> dict[str, list[Segment]]:
    """``ali-to-phones --ctm-output`` CTM (``utt chan start dur phone [conf]``, seconds) → frame segments."""
    alignments: dict[str, list[Segment]] = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) not in (5, 6):
            raise KaldiDataError(f"{path} line {number}: expected 'utt channel start duration phone', got {line[:100]!r}")
        try:
            start, duration = float(fields[2]), float(fields[3])
        except ValueError:
            raise KaldiDataError(f"{path} line {number}: start/duration are not numbers: {line[:100]!r}") from None
        if start < 0 or duration < 0 or not math.isfinite(start + duration):
            raise KaldiDataError(f"{path} line {number}: negative or non-finite time: {line[:100]!r}")
        first = int(round(start / frame_shift))
        last = int(round((start + duration) / frame_shift))
        phone = _phone(fields[4], symbols, path, number)
        if last > first and phone != BLANK:
            alignments.setdefault(fields[0], []).append((phone, first, last))
    return {utt: _check_runs(path, utt, runs) for utt, runs in alignments.items()}


def read_text_ali(path: Path, symbols: dict[str, str] | None = None) -> dict[str, list[Segment]]:
    """The reference's ``text_ali``: ``utt ph start end ; ph start end ; …`` (frames, end exclusive)."""
    alignments: dict[str, list[Segment]] = {}
    for number, line in _lines(path):
        utt, _, rest = line.partition(" ")
        runs = []
        for group in rest.split(";"):
            fields = group.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise KaldiDataError(f"{path} line {number}: expected 'phone start end' groups separated by ';', got {group.strip()!r}")
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise KaldiDataError(f"{path} line {number}: frame numbers are not integers in {group.strip()!r}") from None
            if start < 0 or end < start:
                raise KaldiDataError(f"{path} line {number}: bad frame range {start}..{end} in {group.strip()!r}")
            phone = _phone(fields[0], symbols, path, number)
            if end > start and phone != BLANK:
                runs.append((phone, start, end))
        if utt in alignments:
            raise KaldiDataError(f"{path} line {number}: duplicate utterance {utt!r}")
        if not runs:
            raise KaldiDataError(f"{path} line {number}: utterance {utt!r} has no phone segments")
        alignments[utt] = _check_runs(path, utt, runs)
    return alignments


def read_alignments(
    path: str | Path, fmt: str = "auto", frame_shift: float = 0.01, phone_table: str | Path | None = None
) -> dict[str, list[Segment]]:
    """Read a CTM or a text_ali file; ``fmt="auto"`` looks for ';' on the first line (text_ali).

    ``phone_table`` (Kaldi ``lang/phones.txt``) decodes integer phone ids; without it integer ids are an error.
    """
    symbols = read_phone_table(phone_table) if phone_table is not None else None
    path = Path(path)
    if not path.is_file():
        raise KaldiDataError(f"alignment file {path} does not exist")
    if fmt == "auto":
        first = next((line for _, line in _lines(path)), "")
        fmt = "text_ali" if ";" in first else "ctm"
    if fmt == "ctm":
        return read_ctm(path, frame_shift, symbols)
    if fmt == "text_ali":
        return read_text_ali(path, symbols)
    raise ValueError(f"alignment_format must be 'auto', 'ctm' or 'text_ali', got {fmt!r}")


# ------------------------------------------------------------------------------------------ directory
@dataclasses.dataclass
class KaldiDir:
    """The parsed tables of one Kaldi data directory."""

    path: Path
    source: str  # "wav" or "feats"
    rxfiles: dict[str, str]  # utt → rxfile (wav.scp entry of its recording, or feats.scp entry)
    segments: dict[str, tuple[str, float, float]] | None
    text: dict[str, str]
    utt2spk: dict[str, str]
    commands: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, entry) run by a shell

    @property
    def utterances(self) -> list[str]:
        return sorted(self.segments) if self.segments is not None else sorted(self.rxfiles)


def is_command(rxfile: str) -> bool:
    """Whether kaldiio would hand ``rxfile`` to a shell: ``cmd |`` and ``| cmd`` run commands, also with an
    ``:offset`` after the pipe; no real file name holds a ``|``, so any is taken as one."""
    return "|" in rxfile


def scp_commands(path: Path, allow_commands: bool = False) -> list[tuple[int, str]]:
    """(line number, entry) of the ``scp`` lines that are shell commands; refused unless ``allow_commands``."""
    found = []
    for number, line in _lines(path):
        fields = line.split(maxsplit=1)
        if len(fields) == 2 and is_command(fields[1]):
            found.append((number, fields[1]))
    if found and not allow_commands:
        number, entry = found[0]
        raise KaldiDataError(
            f"{path} line {number}: {entry[:120]!r} is a shell command ({len(found)} such line(s)); refusing to "
            "run commands from a data file. For a trusted corpus (e.g. WSJ's sph2pipe pipes) pass "
            "allow_commands=True (command line: --allow_scp_commands; recipe: data.allow_scp_commands=true)"
        )
    return found


def read_kaldi_dir(path: str | Path, features: str = "auto", allow_commands: bool = False) -> KaldiDir:
    """Parse a Kaldi data directory; piped ``scp`` entries raise :class:`KaldiDataError` unless ``allow_commands``."""
    path = Path(path)
    if not path.is_dir():
        raise KaldiDataError(f"Kaldi data directory {path} does not exist")
    if features not in ("auto", "wav", "feats"):
        raise ValueError(f"features must be 'auto', 'wav' or 'feats', got {features!r}")
    feats_scp, wav_scp = path / "feats.scp", path / "wav.scp"
    # Kaldi recipes leave MFCC feats.scp files in data directories, so "auto" prefers the audio.
    use_feats = features == "feats" or (features == "auto" and not wav_scp.is_file() and feats_scp.is_file())
    if use_feats:
        if not feats_scp.is_file():
            raise KaldiDataError(f"{feats_scp} does not exist (features='feats')")
        rxfiles, segments, source = read_table(feats_scp), None, "feats"
        commands = scp_commands(feats_scp, allow_commands)
    else:
        if not wav_scp.is_file():
            raise KaldiDataError(f"{path} has neither wav.scp nor feats.scp")
        rxfiles, source = read_table(wav_scp), "wav"
        commands = scp_commands(wav_scp, allow_commands)
        segments = read_segments(path / "segments") if (path / "segments").is_file() else None
        if segments is not None:
            missing = sorted({reco for reco, _, _ in segments.values()} - set(rxfiles))
            if missing:
                raise KaldiDataError(f"{path / 'segments'} refers to {len(missing)} recordings absent from wav.scp, e.g. {missing[:3]}")
    text = read_table(path / "text", min_fields=1) if (path / "text").is_file() else {}
    utt2spk = read_table(path / "utt2spk", 2, 2) if (path / "utt2spk").is_file() else {}
    return KaldiDir(path, source, rxfiles, segments, text, utt2spk, commands)


class _AudioReader:
    """Reads utterance waveforms through kaldiio, keeping the last recording for consecutive segments."""

    def __init__(self, kaldi_dir: KaldiDir, sampling_rate: int):
        self.dir, self.sampling_rate = kaldi_dir, sampling_rate
        self._cached: tuple[str, np.ndarray] | None = None

    def _recording(self, reco: str) -> np.ndarray:
        if self._cached is not None and self._cached[0] == reco:
            return self._cached[1]
        kaldiio = require("kaldiio", "speech", "reading Kaldi archives")

        rxfile = self.dir.rxfiles[reco]
        try:
            loaded = kaldiio.load_mat(rxfile)
        except Exception as err:  # kaldiio raises many types (OSError, ValueError, subprocess errors)
            raise KaldiDataError(f"{self.dir.path / 'wav.scp'}: cannot read {reco} from {rxfile!r}: {err}") from err
        if not (isinstance(loaded, tuple) and len(loaded) == 2):
            raise KaldiDataError(f"{self.dir.path / 'wav.scp'}: {reco} ({rxfile!r}) is not a wav file")
        rate, audio = loaded
        if int(rate) != self.sampling_rate:
            raise KaldiDataError(
                f"{self.dir.path / 'wav.scp'}: {reco} is sampled at {rate} Hz but the feature extractor expects "
                f"{self.sampling_rate} Hz; resample the corpus (e.g. sox … -r {self.sampling_rate}) or configure the extractor"
            )
        audio = np.asarray(audio)
        if audio.ndim == 2:
            if audio.shape[1] != 1:
                raise KaldiDataError(f"{self.dir.path / 'wav.scp'}: {reco} has {audio.shape[1]} channels; expected mono")
            audio = audio[:, 0]
        self._cached = (reco, audio)
        return audio

    def __call__(self, utt: str) -> np.ndarray:
        if self.dir.segments is None:
            return self._recording(utt)
        reco, start, end = self.dir.segments[utt]
        audio = self._recording(reco)
        first = int(start * self.sampling_rate)  # Kaldi's extract-segments truncates
        last = audio.shape[0] if end == -1 else min(audio.shape[0], int(end * self.sampling_rate))
        if last <= first:
            raise KaldiDataError(f"{self.dir.path / 'segments'}: {utt} starts at {start}s, past the end of {reco}")
        return audio[first:last]


def _load_features(kaldi_dir: KaldiDir, utt: str, extractor: VQVAEFeatureExtractor, reader: _AudioReader) -> np.ndarray:
    if kaldi_dir.source == "feats":
        kaldiio = require("kaldiio", "speech", "reading Kaldi archives")

        rxfile = kaldi_dir.rxfiles[utt]
        try:
            matrix = kaldiio.load_mat(rxfile)
        except Exception as err:
            raise KaldiDataError(f"{kaldi_dir.path / 'feats.scp'}: cannot read {utt} from {rxfile!r}: {err}") from err
        return extractor.features_from_matrix(matrix, source=f"{kaldi_dir.path / 'feats.scp'}: {utt}")
    try:
        return extractor.extract(reader(utt))
    except ValueError as err:
        if isinstance(err, KaldiDataError):
            raise
        raise KaldiDataError(f"{kaldi_dir.path}: utterance {utt}: {err}") from err


# ------------------------------------------------------------------------------------------ records
def _collapse(ids: list[int]) -> list[int]:
    out: list[int] = []
    for i in ids:
        if i != 0 and (not out or out[-1] != i):
            out.append(i)
    return out


def _split_records(
    split: str,
    kaldi_dir: KaldiDir,
    alignment: dict[str, list[Segment]],
    extractor: VQVAEFeatureExtractor,
    options: dict,
    report: dict,
) -> Iterator[dict]:
    """Yield one un-normalised record per usable utterance (phones still as symbols)."""
    reader = _AudioReader(kaldi_dir, extractor.sampling_rate)
    tolerance = options["max_length_mismatch"]
    for utt in kaldi_dir.utterances:
        segments = alignment.get(utt)
        if segments is None:
            if options["missing_alignment"] == "error":
                raise KaldiDataError(f"split {split!r}: utterance {utt} of {kaldi_dir.path} has no alignment")
            report["skipped_missing_alignment"].append(utt)
            continue
        feats = _load_features(kaldi_dir, utt, extractor, reader)
        num_frames = feats.shape[0]
        ali_end = segments[-1][2]
        if abs(ali_end - num_frames) > tolerance:
            message = (
                f"split {split!r}: utterance {utt}: the alignment covers {ali_end} frames but the audio gives "
                f"{num_frames} feature frames (tolerance {tolerance}); are the alignment and the data directory "
                "from the same corpus and frame shift?"
            )
            if options["length_mismatch"] == "error":
                raise KaldiDataError(message)
            report["skipped_length_mismatch"].append(utt)
            logger.warning(message + " — skipped")
            continue
        clipped = []
        for phone, start, end in segments:
            if start >= num_frames:
                report["dropped_segments_past_end"] += 1
                continue
            clipped.append((phone, start, min(end, num_frames)))
        yield {
            "id": utt,
            "speaker": kaldi_dir.utt2spk.get(utt, utt),
            "text": kaldi_dir.text.get(utt, ""),
            "input_features": feats,
            "num_frames": num_frames,
            "segments": clipped,
        }


def _features_spec(phones: list[str]):
    ds = require("datasets", "train", "loading WSJ")
    Array2D, ClassLabel, Features, List, Value = ds.Array2D, ds.ClassLabel, ds.Features, ds.List, ds.Value

    label = ClassLabel(names=phones)
    return Features(
        {
            "id": Value("string"),
            "speaker": Value("string"),
            "text": Value("string"),
            "input_features": Array2D(shape=(None, 243), dtype="float32"),
            "num_frames": Value("int32"),
            "labels": List(label),
            "phone_ids": List(label),
            "phone_starts": List(Value("int32")),
            "phone_ends": List(Value("int32")),
        }
    )


def _generate(shards: list[dict]) -> Iterator[dict]:
    """Dataset.from_generator body: compute, normalise and encode the records of one split."""
    for shard in shards:
        extractor = VQVAEFeatureExtractor.from_dict(dict(shard["extractor"]))
        index = {p: i for i, p in enumerate(shard["phones"])}
        report = shard["report"]
        kaldi_dir = read_kaldi_dir(shard["dir"], shard["options"]["features"], shard["allow_commands"])
        for record in _split_records(shard["split"], kaldi_dir, shard["alignment"], extractor, shard["options"], report):
            ids = [index.get(phone, 1) for phone, _, _ in record["segments"]]  # 1 = <unk>, counted in _build
            yield {
                "id": record["id"],
                "speaker": record["speaker"],
                "text": record["text"],
                "input_features": extractor.apply_cmvn(record["input_features"]),
                "num_frames": record["num_frames"],
                "labels": _collapse(ids),
                "phone_ids": ids,
                "phone_starts": [s for _, s, _ in record["segments"]],
                "phone_ends": [e for _, _, e in record["segments"]],
            }


# ------------------------------------------------------------------------------------------ public API
@dataclasses.dataclass
class WSJLoadInfo:
    """What ``load_wsj(..., return_info=True)`` returns beside the datasets."""

    feature_extractor: VQVAEFeatureExtractor  # with the training-split CMVN statistics
    phones: list[str]  # id → symbol; 0 = <eps> (blank), 1 = <unk>
    report: dict  # per split: counts of utterances, frames, skips, unknown phones
    path: Path  # the cached folder (datasets, preprocessor_config.json, phones.txt, load_report.json)


def _as_split_map(value) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    return {"train": value} if value is not None else {}


def _is_kaldi_dir(path: Path) -> bool:
    return (path / "wav.scp").is_file() or (path / "feats.scp").is_file()


def _resolve_dirs(data_dirs) -> dict[str, Path]:
    """{split: dir}; a single path is one Kaldi directory (→ "train") or a root of split sub-directories."""
    if isinstance(data_dirs, Mapping):
        return {split: Path(d) for split, d in data_dirs.items()}
    path = Path(data_dirs)
    if path.is_dir() and not _is_kaldi_dir(path):
        subdirs = {p.name: p for p in sorted(path.iterdir()) if p.is_dir() and _is_kaldi_dir(p)}
        if subdirs:
            return subdirs
    return {"train": path}


def _stat_key(path: Path) -> list:
    try:
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    except FileNotFoundError:
        return [str(path), None, None]


def save_phones(phones: list[str], path: str | Path) -> None:
    """Write a Kaldi-style symbol table (``phone id`` per line)."""
    Path(path).write_text("".join(f"{p} {i}\n" for i, p in enumerate(phones)), encoding="utf-8")


def read_phones(path: str | Path) -> list[str]:
    """Read a ``phones.txt`` written by :func:`save_phones` (ids must be 0…N−1 in order)."""
    phones = []
    for number, line in _lines(Path(path)):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) != len(phones):
            raise KaldiDataError(f"{path} line {number}: expected '<phone> {len(phones)}', got {line!r}")
        phones.append(fields[0])
    return phones


def load_wsj(
    data_dirs: str | os.PathLike | Mapping[str, str | os.PathLike],
    alignments: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    *,
    feature_extractor: VQVAEFeatureExtractor | None = None,
    train_split: str | None = None,
    splits: list[str] | tuple[str, ...] | None = None,
    fit_cmvn: bool = True,
    allow_commands: bool = False,
    features: str = "auto",
    alignment_format: str = "auto",
    phone_table: str | os.PathLike | None = None,
    phones: list[str] | None = None,
    unknown_phones: str = "unk",
    missing_alignment: str = "skip",
    length_mismatch: str = "error",
    max_length_mismatch: int = 2,
    cache_dir: str | os.PathLike | None = None,
    overwrite_cache: bool = False,
    output_dir: str | os.PathLike | None = None,
    return_info: bool = False,
):
    """Load Kaldi data directories as a ``DatasetDict`` (torch format) of fbank features and phone labels.

    Args:
        data_dirs: ``{split: directory}``; or one path: a Kaldi directory (becomes the ``train`` split) or a
            root whose sub-directories are Kaldi directories (each one a split, e.g. the output of
            ``vq-hf make-speech-corpus``).
        alignments: one CTM/text_ali path (for a single directory) or ``{split: path}``; splits without one
            use ``<dir>/text_ali`` or ``<dir>/phones.ctm``.
        feature_extractor: settings for the fbanks (its CMVN statistics are refitted on ``train_split`` unless
            ``fit_cmvn=False``); default ``VQVAEFeatureExtractor()``.
        train_split: the split whose phones make the vocabulary and whose frames give the CMVN statistics;
            default ``"train"``, else the only split whose name starts with ``train`` (e.g. ``train_si284``).
            Not needed (and not loaded unless listed in ``splits``) with ``fit_cmvn=False`` and ``phones``.
        splits: load only these of the splits found (e.g. ``["test"]``; plus ``train_split`` when CMVN is
            fitted); default all.
        fit_cmvn: ``False`` keeps ``feature_extractor``'s fitted CMVN statistics (a trained model's
            ``preprocessor_config.json``), so evaluation needs no training split; requires ``phones``.
        allow_commands: run piped ``wav.scp`` / ``feats.scp`` entries (``sph2pipe … |``) as shell commands;
            without it they are refused. Only for corpora you trust: the entries run as you.
        features: ``"auto"`` (wav.scp if present, else feats.scp), ``"wav"`` or ``"feats"``.
        alignment_format: ``"auto"``, ``"ctm"`` or ``"text_ali"``.
        phone_table: Kaldi ``lang/phones.txt`` for alignments with integer phone ids (raw ``ali-to-phones``).
        phones: a fixed vocabulary (e.g. from a trained model's ``phones.txt``) instead of the training phones;
            must start with ``<eps>``, ``<unk>``.
        unknown_phones / missing_alignment / length_mismatch / max_length_mismatch: see the module docstring.
        cache_dir: cache root; ``overwrite_cache`` rebuilds.
        output_dir: also save ``preprocessor_config.json`` (fitted extractor) and ``phones.txt`` there.
        return_info: return ``(DatasetDict, WSJLoadInfo)``.

    Returns:
        ``datasets.DatasetDict`` with ``set_format("torch")``; with ``return_info`` also a :class:`WSJLoadInfo`.
    """
    datasets = require("datasets", "train", "loading WSJ")

    dirs = _resolve_dirs(data_dirs)
    if not dirs:
        raise ValueError("data_dirs is empty")
    extractor = feature_extractor or VQVAEFeatureExtractor()
    if not fit_cmvn:
        if not extractor.has_cmvn:
            raise ValueError("fit_cmvn=False needs a feature_extractor with fitted CMVN statistics "
                             "(e.g. VQVAEFeatureExtractor.from_pretrained(model_folder))")
        if phones is None:
            raise ValueError("fit_cmvn=False needs the phone vocabulary: pass phones= (e.g. the model's phones.txt)")
    if splits is not None:
        splits = [splits] if isinstance(splits, str) else list(splits)
        missing = [s for s in splits if s not in dirs]
        if missing:
            raise KaldiDataError(f"split(s) {missing} not found; Kaldi folders: {sorted(dirs)}")
    if not fit_cmvn:
        train_split = train_split if train_split in dirs and (splits is None or train_split in splits) else None
    else:
        if train_split is None:
            candidates = ["train"] if "train" in dirs else [s for s in sorted(dirs) if s.startswith("train")]
            if len(candidates) != 1:
                raise ValueError(f"cannot tell which of the splits {sorted(dirs)} is the training split; pass train_split=")
            train_split = candidates[0]
        if train_split not in dirs:
            raise ValueError(f"train_split={train_split!r} is not among the splits {sorted(dirs)}")
    all_splits = set(dirs)
    if splits is not None:  # the training split stays when it is needed for the CMVN statistics
        dirs = {s: d for s, d in dirs.items() if s in splits or (fit_cmvn and s == train_split)}
    if alignments is not None and not isinstance(alignments, Mapping) and len(dirs) > 1:
        raise ValueError("with several splits, pass alignments as {split: path}")
    ali_paths = {split: Path(p) for split, p in _as_split_map(alignments).items()
                 if splits is None or split in dirs or split not in all_splits}
    unknown_splits = sorted(set(ali_paths) - set(dirs))
    if unknown_splits:
        raise ValueError(f"alignments given for splits {unknown_splits} that are not in data_dirs {sorted(dirs)}")
    for name, value, allowed in (
        ("unknown_phones", unknown_phones, ("unk", "error")),
        ("missing_alignment", missing_alignment, ("skip", "error")),
        ("length_mismatch", length_mismatch, ("error", "skip")),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if max_length_mismatch < 0:
        raise ValueError(f"max_length_mismatch must be >= 0, got {max_length_mismatch}")

    for split, directory in dirs.items():
        if split not in ali_paths:
            for candidate in ("text_ali", "phones.ctm"):
                if (directory / candidate).is_file():
                    ali_paths[split] = directory / candidate
                    break
            else:
                raise KaldiDataError(
                    f"split {split!r}: no alignment given and neither {directory / 'text_ali'} nor "
                    f"{directory / 'phones.ctm'} exists"
                )

    if extractor.feature_size != 243:
        raise ValueError(f"load_wsj stores 243-dim features; the extractor has feature_size={extractor.feature_size}")
    base_config = extractor.to_dict()
    for key in ("cmvn_mean", "cmvn_std", "cmvn_frames"):
        base_config.pop(key, None)
    base_config.pop("feature_extractor_type", None)
    options = {
        "features": features,
        "unknown_phones": unknown_phones,
        "missing_alignment": missing_alignment,
        "length_mismatch": length_mismatch,
        "max_length_mismatch": int(max_length_mismatch),
    }
    frame_shift = extractor.frame_shift_ms / 1000.0

    key_material = {
        "version": _CACHE_VERSION,
        "extractor": base_config,
        "options": options,
        "train_split": train_split,
        # given statistics are an input of the features like any other setting
        "cmvn": None if fit_cmvn else [extractor.cmvn_mean, extractor.cmvn_std, extractor.cmvn_frames],
        "alignment_format": alignment_format,
        "phone_table": _stat_key(Path(phone_table)) if phone_table is not None else None,
        "phones": phones,
        "splits": {
            split: [
                _stat_key(directory / name)
                for name in ("wav.scp", "segments", "feats.scp", "text", "utt2spk")
            ]
            + [_stat_key(ali_paths[split])]
            for split, directory in sorted(dirs.items())
        },
    }
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True, default=str).encode()).hexdigest()[:20]
    root = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE) / "vq_hf_wsj"
    folder = root / key
    done_marker = folder / "COMPLETE"

    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    # Several processes (e.g. DDP ranks) may ask for the same corpus: one builds, the others wait and load.
    with FileLock(str(folder) + ".lock"):
        if overwrite_cache and folder.exists():
            shutil.rmtree(folder)
        if not done_marker.is_file():
            _build(
                folder, dirs, ali_paths, (alignment_format, phone_table), frame_shift, extractor, base_config, options,
                train_split, phones, fit_cmvn, allow_commands,
            )
            done_marker.write_text(json.dumps(key_material, indent=1, default=str) + "\n")

    dataset = datasets.load_from_disk(str(folder / "data"))
    dataset.set_format("torch")
    fitted = VQVAEFeatureExtractor.from_pretrained(folder)
    vocabulary = read_phones(folder / "phones.txt")
    report = json.loads((folder / "load_report.json").read_text())
    _log_report(report)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        fitted.save_pretrained(output_dir)
        save_phones(vocabulary, Path(output_dir) / "phones.txt")
    if return_info:
        return dataset, WSJLoadInfo(fitted, vocabulary, report, folder)
    return dataset


def _build(folder, dirs, ali_paths, ali_spec, frame_shift, extractor, base_config, options, train_split, phones,
           fit_cmvn=True, allow_commands=False):
    import sys

    datasets = require("datasets", "train", "loading WSJ")

    kaldi_dirs = {split: read_kaldi_dir(d, options["features"], allow_commands) for split, d in dirs.items()}
    commands = [(kd, n, c) for kd in kaldi_dirs.values() for n, c in kd.commands]
    if commands:  # allowed (read_kaldi_dir refuses otherwise): say what will run before it does
        kd, number, command = commands[0]
        print(f"load_wsj: running {len(commands)} shell command(s) from {kd.path / (kd.source + '.scp')} "
              f"(allow_commands=True); first, line {number}: {command}", file=sys.stderr, flush=True)
    ali = {split: read_alignments(p, ali_spec[0], frame_shift, ali_spec[1]) for split, p in ali_paths.items()}

    # Vocabulary from the training alignments (only utterances of the training directory count).
    if phones is None:
        train_utts = set(kaldi_dirs[train_split].utterances)
        train_phones = sorted({ph for utt, segs in ali[train_split].items() if utt in train_utts for ph, _, _ in segs})
        if not train_phones:
            raise KaldiDataError(f"split {train_split!r}: no alignment in {ali_paths[train_split]} matches an utterance of {dirs[train_split]}")
        phones = [BLANK, UNK] + train_phones
    elif list(phones[:2]) != [BLANK, UNK] or len(set(phones)) != len(phones):
        raise ValueError(f"phones must start with {BLANK!r}, {UNK!r} and have no duplicates; got {list(phones[:5])}…")
    phones = list(phones)
    known = set(phones)

    report: dict[str, dict] = {}
    for split, kaldi_dir in kaldi_dirs.items():
        utts = set(kaldi_dir.utterances)
        unknown = Counter(ph for utt, segs in ali[split].items() if utt in utts for ph, _, _ in segs if ph not in known)
        if unknown and (options["unknown_phones"] == "error" or split == train_split):
            raise KaldiDataError(
                f"split {split!r}: phones absent from the vocabulary: {dict(unknown.most_common(10))} "
                f"(alignment {ali_paths[split]})"
            )
        report[split] = {
            "directory": str(dirs[split]),
            "alignment": str(ali_paths[split]),
            "source": kaldi_dir.source,
            "utterances_listed": len(utts),
            "skipped_missing_alignment": [],
            "skipped_length_mismatch": [],
            "dropped_segments_past_end": 0,
            "unknown_phones_mapped_to_unk": dict(unknown),
            "alignments_without_utterance": len(set(ali[split]) - utts),
            "text_without_utterance": len(set(kaldi_dir.text) - utts),
            # Kaldi's convention when utt2spk lacks an utterance (or is absent): the utterance is its own speaker.
            "speaker_defaulted_to_utterance": len(utts - set(kaldi_dir.utt2spk)),
        }

    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build_", dir=folder))
    try:
        if fit_cmvn:  # Pass 1: CMVN statistics over the un-normalised training features.
            fitting = VQVAEFeatureExtractor.from_dict(dict(base_config))
            train_report = {k: (list(v) if isinstance(v, list) else v) for k, v in report[train_split].items()}
            records = _split_records(train_split, kaldi_dirs[train_split], ali[train_split], fitting, options,
                                     train_report)
            fitting.fit_cmvn(r["input_features"] for r in records)
        else:
            given = extractor.to_dict()
            given.pop("feature_extractor_type", None)
            fitting = VQVAEFeatureExtractor.from_dict(given)
        fitted_config = fitting.to_dict()
        fitted_config.pop("feature_extractor_type", None)

        # Pass 2: normalised, encoded records per split, written by datasets.
        features_spec = _features_spec(phones)
        splits = {}
        for split in dirs:
            shard = {
                "split": split,
                "dir": str(dirs[split]),
                "extractor": fitted_config,
                "phones": phones,
                "options": options,
                "alignment": ali[split],
                "report": report[split],
                "allow_commands": allow_commands,
            }
            # The generator runs in this process (num_proc unset), so `report` is filled in place.
            split_ds, empty_error = None, None
            try:
                split_ds = datasets.Dataset.from_generator(
                    _generate, gen_kwargs={"shards": [shard]}, features=features_spec, cache_dir=str(tmp / "gen"),
                    keep_in_memory=False,
                )
            except ValueError as err:  # datasets refuses to build a split from zero examples
                if report[split]["utterances_listed"] - len(report[split]["skipped_missing_alignment"]) - len(
                    report[split]["skipped_length_mismatch"]
                ) > 0:
                    raise
                empty_error = err
            if split_ds is None or len(split_ds) == 0:
                raise KaldiDataError(
                    f"split {split!r} has no usable utterances ({report[split]['utterances_listed']} listed in "
                    f"{dirs[split]}; skipped: {len(report[split]['skipped_missing_alignment'])} without alignment, "
                    f"{len(report[split]['skipped_length_mismatch'])} with a length mismatch)"
                ) from empty_error
            report[split]["utterances"] = len(split_ds)
            report[split]["frames"] = int(sum(split_ds["num_frames"]))
            splits[split] = split_ds
        datasets.DatasetDict(splits).save_to_disk(str(folder / "data"))
        fitting.save_pretrained(folder)
        save_phones(phones, folder / "phones.txt")
        (folder / "load_report.json").write_text(json.dumps(report, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(folder / "data", ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def _log_report(report: dict) -> None:
    for split, entry in report.items():
        parts = []
        if entry["skipped_missing_alignment"]:
            ids = entry["skipped_missing_alignment"]
            parts.append(f"{len(ids)} utterances skipped without alignment (e.g. {ids[:3]})")
        if entry["skipped_length_mismatch"]:
            ids = entry["skipped_length_mismatch"]
            parts.append(f"{len(ids)} utterances skipped for alignment/audio length mismatch (e.g. {ids[:3]})")
        if entry["unknown_phones_mapped_to_unk"]:
            parts.append(f"phones mapped to <unk>: {entry['unknown_phones_mapped_to_unk']}")
        if entry["dropped_segments_past_end"]:
            parts.append(f"{entry['dropped_segments_past_end']} alignment segments starting past the last frame dropped")
        if parts:
            logger.warning("load_wsj split %r: %s", split, "; ".join(parts))


__all__ = [
    "load_wsj",
    "WSJLoadInfo",
    "KaldiDataError",
    "normalize_phone",
    "read_alignments",
    "read_ctm",
    "read_text_ali",
    "read_kaldi_dir",
    "scp_commands",
    "save_phones",
    "read_phones",
]
