"""`vq-hf make-speech-corpus`: a WSJ stand-in — Festival speaks CMU ARCTIC prompts into Kaldi data directories.

For every utterance Festival (``festival -b`` on a generated Scheme script) synthesises one prompt with a
chosen voice and speaking rate, saves the waveform and prints the end time of every item of its
``Segment`` relation. Python then

1. resamples the waveform to 16 kHz *through a warp factor* w (the signal is read as if recorded at
   w × its rate): pitch and formants scale by w and durations by 1/w, which gives distinct pseudo-speakers
   from one voice (the HTS voice ignores Festival's F0 targets). The rate asked of Festival is divided by w,
   so the final speaking rate is the one drawn;
2. adds seeded white noise (−60 dBFS by default) so that silences are not digital zeros (real recordings
   never are, and log energies of exact zeros would dominate the CMVN statistics);
3. turns Festival's segment times (scaled by the warp) into a frame-level alignment with Kaldi's framing
   (25 ms / 10 ms, snip-edges; a frame belongs to the segment containing its centre) and writes it as a CTM
   in the form of ``ali-to-phones --ctm-output`` (``utt 1 start dur PHONE``, times on the 10 ms grid, covering
   exactly the utterance's feature frames). Festival's ``pau`` becomes ``SIL``; other phones are upper-cased.

Speakers are voice × warp, named ``<voice short name>w<warp × 100>`` (e.g. ``kalw092``) in ``utt2spk``; the
default voices are every Debian English Festival voice installed (us-slt-hts, kal, ked). ``--held_out_voices``
keeps voices out of train (they speak dev/test prompts only), for unit quality on unseen speakers; speaking rate
(speed) and noise level (``--noise-db-range``) vary per utterance, seeded.

Each split (``train``/``dev``/``test``, split by prompt: no prompt is spoken in two splits) is a Kaldi data
directory: ``wav.scp`` (absolute paths), ``text``, ``utt2spk``, ``spk2utt``, ``phones.ctm``; the waveforms
(16-bit PCM, 16 kHz) are in ``OUT_DIR/wav``. ``OUT_DIR/corpus.json`` records the options, the per-utterance
voice / rate / warp / F0, the sizes and the generation speed. Everything is a function of ``--seed``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf

DEBIAN_PACKAGES = "festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k"
SAMPLING_RATE = 16000
FRAME_LENGTH = 400  # 25 ms at 16 kHz, Kaldi's default window
FRAME_SHIFT = 160  # 10 ms


@dataclasses.dataclass(frozen=True)
class VoiceSpec:
    short: str  # speaker-name prefix
    engine: str  # "hts": rate via hts_engine "-r"; otherwise Festival's Duration_Stretch
    package: str  # the Debian package that provides it
    f0_mean: float | None = None  # Int_Targets_LR target mean; per-utterance pitch is varied around it


KNOWN_VOICES: dict[str, VoiceSpec] = {
    "cmu_us_slt_arctic_hts": VoiceSpec("slt", "hts", "festvox-us-slt-hts"),
    "kal_diphone": VoiceSpec("kal", "diphone", "festvox-kallpc16k", f0_mean=105.0),
    "ked_diphone": VoiceSpec("ked", "diphone", "festvox-kdlpc16k", f0_mean=115.0),
}
# Debian's English Festival voices (bookworm): us-slt-hts, kallpc16k, kdlpc16k (and their 8 kHz twins, which add
# no new speaker). espeak-ng / MBROLA voices are not used: they give no segment times for the phone CTMs.


def voice_spec(voice: str) -> VoiceSpec:
    """The known voice's spec, or a generic one (HTS voices, named ``*_hts``, take their rate from hts_engine)."""
    if voice in KNOWN_VOICES:
        return KNOWN_VOICES[voice]
    return VoiceSpec(voice, "hts" if voice.endswith("_hts") else "generic", "the package providing it")


class FestivalError(RuntimeError):
    """Festival is missing, a voice is missing, or synthesis failed."""


@dataclasses.dataclass
class UtterancePlan:
    utt_id: str
    speaker: str
    voice: str
    prompt_id: str
    text: str
    split: str
    rate: float  # final speaking rate (> 1 faster)
    warp: float  # resampling warp factor (pitch × warp)
    f0_mean: float | None  # Festival F0 target mean, voices with Int_Targets_LR only
    index: int = 0  # position in the plan; seeds this utterance's noise
    noise_db: float | None = None  # this utterance's white-noise level (None: the corpus-wide --noise-db)


# ---------------------------------------------------------------------------------------------- prompts
_PROMPT_RE = re.compile(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')


def read_prompts(path: str | Path | None = None) -> list[tuple[str, str]]:
    """Parse Festival's ``( id "text" )`` prompt list (the packaged CMU ARCTIC prompts by default)."""
    if path is None:
        source = resources.files("vq_hf.standins").joinpath("cmuarctic.data")
        lines, name = source.read_text(encoding="utf-8").splitlines(), "vq_hf/standins/cmuarctic.data"
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {path} does not exist")
        lines, name = path.read_text(encoding="utf-8").splitlines(), str(path)
    prompts, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = _PROMPT_RE.match(line.strip())
        if match is None:
            raise ValueError(f'{name} line {number}: expected ( id "text" ), got {line.strip()[:80]!r}')
        prompt_id, text = match.group(1), match.group(2).strip()
        if not text:
            raise ValueError(f"{name} line {number}: prompt {prompt_id} has empty text")
        if prompt_id in seen:
            raise ValueError(f"{name} line {number}: duplicate prompt id {prompt_id}")
        seen.add(prompt_id)
        prompts.append((prompt_id, text))
    if not prompts:
        raise ValueError(f"{name} contains no prompts")
    return prompts


def kaldi_text(text: str) -> str:
    """Kaldi-style transcript: upper-case words, punctuation other than word-internal ' and - removed."""
    words = re.findall(r"[A-Za-z0-9]+(?:['\-][A-Za-z0-9]+)*", text)
    return " ".join(w.upper() for w in words)


# ---------------------------------------------------------------------------------------------- festival
def find_festival(binary: str = "festival") -> str:
    path = shutil.which(binary)
    if path is None:
        raise FestivalError(
            f"Festival ({binary!r}) was not found on PATH. Install the Debian packages: "
            f"apt-get install {DEBIAN_PACKAGES}"
        )
    return path


def available_voices(festival: str) -> list[str]:
    proc = subprocess.run(
        [festival, "-b", "(begin (print (voice.list)))"], capture_output=True, text=True, timeout=120
    )
    match = re.search(r"\(([^()]*)\)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise FestivalError(f"could not list Festival voices (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return match.group(1).split()


def _scheme_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_script(voice: str, spec: VoiceSpec, plans: list[UtterancePlan], wav_dir: Path) -> str:
    lines = [
        f"(voice_{voice})",
        "(set! vqhf_hts_params hts_engine_params)" if spec.engine == "hts" else "",
        "(define (vqhf_segments id u)"
        '  (mapcar (lambda (s) (format t "@@SEG %s %s %f\\n" id (item.name s) (item.feat s "end")))'
        "          (utt.relation.items u 'Segment)))",
    ]
    for plan in plans:
        festival_speed = plan.rate / plan.warp  # resampling by the warp speeds the audio up by `warp`
        if spec.engine == "hts":
            lines.append(f'(set! hts_engine_params (append vqhf_hts_params (list (list "-r" {festival_speed:.6f}))))')
        else:
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / festival_speed:.6f})")
        if plan.f0_mean is not None:
            lines.append(
                f"(set! int_lr_params (list (list 'target_f0_mean {plan.f0_mean:.3f}) (list 'target_f0_std 14)"
                " (list 'model_f0_mean 170) (list 'model_f0_std 34)))"
            )
        wav_path = _scheme_string(str(wav_dir / f"{plan.utt_id}.wav"))
        utt = _scheme_string(plan.utt_id)
        lines.append(f"(set! vqhf_u (Utterance Text {_scheme_string(plan.text)}))")
        lines.append("(utt.synth vqhf_u)")
        lines.append(f"(utt.save.wave vqhf_u {wav_path} 'riff)")
        lines.append(f"(vqhf_segments {utt} vqhf_u)")
        lines.append(f'(format t "@@DONE %s\\n" {utt})')
    return "\n".join(lines) + "\n"


def _run_festival(
    festival: str, voice: str, plans: list[UtterancePlan], work_dir: Path, batch_index: int
) -> dict[str, list[tuple[str, float]]]:
    """Synthesise ``plans`` in one Festival process; returns utt → [(segment name, end time)]."""
    spec = voice_spec(voice)
    script = work_dir / f"batch{batch_index:04d}.scm"
    script.write_text(_festival_script(voice, spec, plans, work_dir), encoding="utf-8")
    proc = subprocess.run([festival, "-b", str(script)], capture_output=True, text=True, timeout=3600)
    segments: dict[str, list[tuple[str, float]]] = {}
    done = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "@@SEG":
            segments.setdefault(parts[1], []).append((parts[2], float(parts[3])))
        elif len(parts) == 2 and parts[0] == "@@DONE":
            done.add(parts[1])
    missing = [p.utt_id for p in plans if p.utt_id not in done]
    if proc.returncode != 0 or missing:
        raise FestivalError(
            f"Festival failed on voice {voice} (exit {proc.returncode}); {len(missing)} of {len(plans)} utterances "
            f"unfinished (first: {missing[:3]}); stderr: {proc.stderr.strip()[-800:]}"
        )
    return segments


# ---------------------------------------------------------------------------------------------- audio/alignment
def _warp_resample(wave: np.ndarray, rate: int, warp: float) -> tuple[np.ndarray, float]:
    """Read ``wave`` as if sampled at rate × warp and resample it to 16 kHz; returns (audio, time scale)."""
    from scipy.signal import resample_poly

    effective = max(100, int(round(rate * warp / 100.0)) * 100)  # keep the ratio a small fraction
    ratio = Fraction(SAMPLING_RATE, effective)
    out = resample_poly(wave, ratio.numerator, ratio.denominator) if ratio != 1 else wave
    return out, rate / effective


def frame_alignment(segments: list[tuple[str, float]], num_frames: int) -> list[tuple[str, int, int]]:
    """Festival segment end times (s) → frame runs [(phone, start_frame, end_frame)) covering all frames.

    A frame belongs to the segment that contains its centre (Kaldi framing: 25 ms windows every 10 ms);
    frames past the last segment end extend the last segment.
    """
    ends = np.array([end for _, end in segments])
    centres = (np.arange(num_frames) * FRAME_SHIFT + FRAME_LENGTH / 2) / SAMPLING_RATE
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(segments) - 1)
    runs: list[tuple[str, int, int]] = []
    for frame, seg in enumerate(index):
        name = segments[seg][0]
        if runs and runs[-1][0] == name and runs[-1][3] == seg:
            runs[-1] = (name, runs[-1][1], frame + 1, seg)
        else:
            runs.append((name, frame, frame + 1, seg))
    return [(name, start, end) for name, start, end, _ in runs]


def _phone_symbol(festival_name: str) -> str:
    return "SIL" if festival_name in {"pau", "h#", "#"} else festival_name.upper()


# ---------------------------------------------------------------------------------------------- planning
def plan_corpus(
    prompts: list[tuple[str, str]],
    utterances: int,
    voices: list[str],
    seed: int,
    dev_fraction: float,
    test_fraction: float,
    rate_range: tuple[float, float],
    warps: list[float],
    pitch_jitter: float,
    held_out_voices: list[str] = (),
    noise_db_range: tuple[float, float] | None = None,
) -> list[UtterancePlan]:
    """Decide every utterance's prompt, split, voice, speaker, rate, pitch and noise level from the seed alone.

    Voices in ``held_out_voices`` speak only dev/test prompts (their speakers never occur in train), so unit
    quality can be measured on unseen speakers. With ``noise_db_range`` each utterance draws its noise level
    uniformly from it.
    """
    unknown = sorted(set(held_out_voices) - set(voices))
    if unknown:
        raise ValueError(f"--held_out_voices {unknown} are not among the voices {voices}")
    if held_out_voices and not set(voices) - set(held_out_voices):
        raise ValueError(f"every voice {voices} is held out: train would have no speaker")
    if utterances < 1:
        raise ValueError(f"--utterances must be >= 1, got {utterances}")
    for name, frac in (("dev", dev_fraction), ("test", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"--{name}-fraction must be in [0, 1), got {frac}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(prompts))
    num_prompts = min(utterances, len(prompts))
    chosen = [prompts[i] for i in order[:num_prompts]]
    counts = {}
    for name, frac in (("test", test_fraction), ("dev", dev_fraction)):
        counts[name] = max(1, int(round(num_prompts * frac))) if frac > 0 else 0
    counts["train"] = num_prompts - counts["test"] - counts["dev"]
    if counts["train"] < 1:
        raise ValueError(
            f"{utterances} utterances give {num_prompts} prompts: too few for non-empty train/dev/test splits "
            f"(dev {counts['dev']}, test {counts['test']}); ask for more utterances or smaller fractions"
        )
    split_of = {}
    for i, (prompt_id, _) in enumerate(chosen):
        split_of[prompt_id] = "train" if i < counts["train"] else ("dev" if i < counts["train"] + counts["dev"] else "test")

    speakers = [(voice, warp) for voice in voices for warp in warps]
    train_speakers = [(v, w) for v, w in speakers if v not in set(held_out_voices)]
    plans = []
    for k in range(utterances):
        prompt_id, text = chosen[k % num_prompts]
        repetition = k // num_prompts
        pool = train_speakers if split_of[prompt_id] == "train" else speakers
        voice, base_warp = pool[(k + repetition) % len(pool)]
        spec = voice_spec(voice)
        speaker = f"{spec.short}w{int(round(base_warp * 100)):03d}"
        rate = float(rng.uniform(*rate_range))
        warp = base_warp * float(rng.uniform(1.0 - pitch_jitter, 1.0 + pitch_jitter))
        f0 = spec.f0_mean * float(rng.uniform(0.85, 1.15)) if spec.f0_mean is not None else None
        noise = float(rng.uniform(*noise_db_range)) if noise_db_range is not None else None
        utt_id = f"{speaker}-{prompt_id}" + (f"-r{repetition}" if repetition else "")
        plans.append(UtterancePlan(utt_id, speaker, voice, prompt_id, text, split_of[prompt_id], rate, warp, f0, k, noise))
    return plans


# ---------------------------------------------------------------------------------------------- main entry
def make_speech_corpus(
    out_dir: str | Path,
    utterances: int,
    *,
    seed: int = 0,
    voices: list[str] | None = None,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    rate_range: tuple[float, float] = (0.85, 1.2),
    warps: tuple[float, ...] = (0.92, 1.0, 1.08),
    pitch_jitter: float = 0.03,
    noise_db: float = -60.0,
    noise_db_range: tuple[float, float] | None = None,
    held_out_voices: list[str] | None = None,
    prompts_path: str | Path | None = None,
    festival: str = "festival",
    jobs: int = 1,
    batch_size: int = 50,
    overwrite: bool = False,
) -> dict:
    """Write the stand-in corpus to ``out_dir``; returns the summary also written to ``corpus.json``."""
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass --overwrite to replace its corpus")
    if rate_range[0] <= 0 or rate_range[0] > rate_range[1]:
        raise ValueError(f"--rate-range must be 0 < low <= high, got {rate_range}")
    if not warps or min(warps) <= 0.5 or max(warps) >= 2.0:
        raise ValueError(f"--warps must be factors in (0.5, 2), got {list(warps)}")
    if not 0.0 <= pitch_jitter < 0.3:
        raise ValueError(f"--pitch-jitter must be in [0, 0.3), got {pitch_jitter}")
    if jobs < 1 or batch_size < 1:
        raise ValueError(f"--jobs and --batch-size must be >= 1, got {jobs} and {batch_size}")

    festival_bin = find_festival(festival)
    installed = available_voices(festival_bin)
    if voices is None:
        voices = [v for v in KNOWN_VOICES if v in installed]
        if not voices:
            raise FestivalError(
                f"none of the voices {list(KNOWN_VOICES)} is installed (Festival lists {installed}); "
                f"install the Debian packages: apt-get install {DEBIAN_PACKAGES}"
            )
    for voice in voices:
        if voice not in installed:
            raise FestivalError(
                f"Festival voice {voice!r} is not installed (installed: {installed}); install {voice_spec(voice).package}"
            )

    prompts = read_prompts(prompts_path)
    plans = plan_corpus(
        prompts, utterances, voices, seed, dev_fraction, test_fraction, rate_range, list(warps), pitch_jitter,
        held_out_voices=list(held_out_voices or ()), noise_db_range=noise_db_range,
    )

    if out_dir.exists() and overwrite:
        for name in ("train", "dev", "test", "wav", "corpus.json"):
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)

    batches = []
    for voice in voices:
        mine = [p for p in plans if p.voice == voice]
        batches += [(voice, mine[i : i + batch_size]) for i in range(0, len(mine), batch_size)]

    records = {}
    audio_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="festival_", dir=out_dir) as tmp:
        work = Path(tmp)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_run_festival, festival_bin, v, b, work, i) for i, (v, b) in enumerate(batches)]
            for (voice, batch), future in zip(batches, futures):
                segments = future.result()
                for plan in batch:
                    records[plan.utt_id] = _finish_utterance(plan, segments.get(plan.utt_id, []), work, wav_dir, seed, noise_db)
                    audio_seconds += records[plan.utt_id]["num_samples"] / SAMPLING_RATE

    splits = {}
    for split in ("train", "dev", "test"):
        members = sorted((p for p in plans if p.split == split), key=lambda p: p.utt_id)
        if members:
            _write_kaldi_dir(out_dir / split, members, records, wav_dir)
            splits[split] = {
                "utterances": len(members),
                "prompts": len({p.prompt_id for p in members}),
                "speakers": len({p.speaker for p in members}),
                "hours": round(sum(records[p.utt_id]["num_samples"] for p in members) / SAMPLING_RATE / 3600, 5),
            }
    wall = time.perf_counter() - started
    summary = {
        "generator": "vq_hf.standins.speech",
        "seed": seed,
        "voices": voices,
        "options": {
            "utterances": utterances,
            "dev_fraction": dev_fraction,
            "test_fraction": test_fraction,
            "rate_range": list(rate_range),
            "warps": list(warps),
            "pitch_jitter": pitch_jitter,
            "noise_db": noise_db,
            "noise_db_range": list(noise_db_range) if noise_db_range is not None else None,
            "held_out_voices": list(held_out_voices or ()),
            "prompts": str(prompts_path) if prompts_path else "vq_hf/standins/cmuarctic.data",
        },
        "splits": splits,
        "audio_seconds": round(audio_seconds, 3),
        "wall_seconds": round(wall, 3),
        "audio_seconds_per_wall_second": round(audio_seconds / wall, 3) if wall > 0 else None,
        "utterances": {
            p.utt_id: {
                "split": p.split,
                "speaker": p.speaker,
                "voice": p.voice,
                "prompt": p.prompt_id,
                "rate": round(p.rate, 4),
                "warp": round(p.warp, 4),
                "f0_mean": None if p.f0_mean is None else round(p.f0_mean, 2),
                "noise_db": round(noise_db if p.noise_db is None else p.noise_db, 2),
                "num_samples": records[p.utt_id]["num_samples"],
            }
            for p in sorted(plans, key=lambda p: p.utt_id)
        },
    }
    # Timings vary run to run; everything else in corpus.json is a function of the seed.
    (out_dir / "corpus.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _finish_utterance(
    plan: UtterancePlan, segments: list[tuple[str, float]], work: Path, wav_dir: Path, seed: int, noise_db: float
) -> dict:
    if not segments:
        raise FestivalError(f"Festival produced no segments for {plan.utt_id} ({plan.text!r})")
    raw, rate = sf.read(work / f"{plan.utt_id}.wav", dtype="float64")
    if raw.ndim != 1:
        raw = raw.mean(axis=1)
    audio, time_scale = _warp_resample(raw, rate, plan.warp)
    noise_rng = np.random.default_rng([seed, plan.index])
    level = noise_db if plan.noise_db is None else plan.noise_db
    audio = audio + (10.0 ** (level / 20.0)) * noise_rng.standard_normal(audio.shape[0])
    audio = np.clip(audio, -1.0, 32767.0 / 32768.0)
    pcm = np.round(audio * 32768.0).astype(np.int16)
    sf.write(wav_dir / f"{plan.utt_id}.wav", pcm, SAMPLING_RATE, subtype="PCM_16")
    num_frames = 1 + (len(pcm) - FRAME_LENGTH) // FRAME_SHIFT if len(pcm) >= FRAME_LENGTH else 0
    if num_frames == 0:
        raise FestivalError(f"{plan.utt_id}: synthesised audio is shorter than one frame ({len(pcm)} samples)")
    scaled = [(_phone_symbol(name), end * time_scale) for name, end in segments]
    return {"num_samples": int(len(pcm)), "alignment": frame_alignment(scaled, num_frames)}


def _write_kaldi_dir(split_dir: Path, members: list[UtterancePlan], records: dict, wav_dir: Path) -> None:
    split_dir.mkdir(parents=True, exist_ok=True)
    with open(split_dir / "wav.scp", "w", encoding="utf-8") as f:
        for p in members:
            f.write(f"{p.utt_id} {wav_dir / (p.utt_id + '.wav')}\n")
    with open(split_dir / "text", "w", encoding="utf-8") as f:
        for p in members:
            f.write(f"{p.utt_id} {kaldi_text(p.text)}\n")
    with open(split_dir / "utt2spk", "w", encoding="utf-8") as f:
        for p in members:
            f.write(f"{p.utt_id} {p.speaker}\n")
    spk2utt: dict[str, list[str]] = {}
    for p in members:
        spk2utt.setdefault(p.speaker, []).append(p.utt_id)
    with open(split_dir / "spk2utt", "w", encoding="utf-8") as f:
        for speaker in sorted(spk2utt):
            f.write(f"{speaker} {' '.join(spk2utt[speaker])}\n")
    with open(split_dir / "phones.ctm", "w", encoding="utf-8") as f:
        for p in members:
            for phone, start, end in records[p.utt_id]["alignment"]:
                f.write(f"{p.utt_id} 1 {start * 0.01:.2f} {(end - start) * 0.01:.2f} {phone}\n")


# ---------------------------------------------------------------------------------------------- CLI
def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vq-hf make-speech-corpus",
        description=(
            "Write Kaldi data directories (train/dev/test, split by prompt) of CMU ARCTIC prompts spoken by "
            "Festival at varied rate and pitch, with phone alignments (phones.ctm) from Festival's own "
            f"segment times. Needs the Debian packages: {DEBIAN_PACKAGES}."
        ),
    )
    parser.add_argument("out_dir", help="output folder (train/, dev/, test/, wav/, corpus.json)")
    parser.add_argument("--utterances", type=int, default=100, help="total number of utterances (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed for prompt choice, splits, speakers, rate, pitch, noise")
    parser.add_argument(
        "--voices",
        type=lambda s: [v for v in s.split(",") if v],
        default=None,
        help=f"comma-separated Festival voices (default: the installed ones of {','.join(KNOWN_VOICES)})",
    )
    parser.add_argument("--dev-fraction", type=float, default=0.1, help="share of prompts in dev (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of prompts in test (default 0.1)")
    parser.add_argument(
        "--rate-range", type=float, nargs=2, default=(0.85, 1.2), metavar=("LOW", "HIGH"),
        help="speaking-rate multiplier drawn uniformly per utterance (>1 faster; default 0.85 1.2)",
    )
    parser.add_argument(
        "--warps", type=_float_list, default=[0.92, 1.0, 1.08],
        help="per-speaker resampling warp factors (pitch and formants × warp); each voice × warp is a speaker "
        "(default 0.92,1.0,1.08)",
    )
    parser.add_argument("--pitch-jitter", type=float, default=0.03, help="per-utterance relative warp jitter (default 0.03)")
    parser.add_argument("--noise-db", type=float, default=-60.0, help="white noise level in dBFS added to every waveform (default -60)")
    parser.add_argument(
        "--noise-db-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
        help="draw each utterance's noise level uniformly in [LOW, HIGH] dBFS instead of --noise-db (e.g. -50 -30)",
    )
    parser.add_argument(
        "--held_out_voices", "--held-out-voices", type=lambda s: [v for v in s.split(",") if v], default=None,
        help="comma-separated voices kept out of train (they speak only dev/test prompts: unseen speakers)",
    )
    parser.add_argument("--prompts", default=None, help="a Festival ( id \"text\" ) prompt file (default: packaged CMU ARCTIC)")
    parser.add_argument("--festival", default="festival", help="the Festival binary (default: festival on PATH)")
    parser.add_argument("--jobs", type=int, default=1, help="Festival processes run in parallel (default 1)")
    parser.add_argument("--batch-size", type=int, default=50, help="utterances per Festival process (default 50)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus in OUT_DIR")
    return parser


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = make_speech_corpus(
            args.out_dir,
            args.utterances,
            seed=args.seed,
            voices=args.voices,
            dev_fraction=args.dev_fraction,
            test_fraction=args.test_fraction,
            rate_range=tuple(args.rate_range),
            warps=tuple(args.warps),
            pitch_jitter=args.pitch_jitter,
            noise_db=args.noise_db,
            noise_db_range=tuple(args.noise_db_range) if args.noise_db_range else None,
            held_out_voices=args.held_out_voices,
            prompts_path=args.prompts,
            festival=args.festival,
            jobs=args.jobs,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
        )
    except (FestivalError, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"vq-hf make-speech-corpus: error: {err}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{k}: {v['utterances']} utts / {v['hours'] * 60:.2f} min" for k, v in summary["splits"].items())
    print(
        f"wrote {args.out_dir}: {sizes}; {summary['audio_seconds']:.1f} s of audio in {summary['wall_seconds']:.1f} s "
        f"({summary['audio_seconds_per_wall_second']:.1f} audio s per wall s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli())
