"""``vq-hf make-handwriting-corpus``: a ScribbleLens-format stand-in corpus of rendered handwriting lines.

ScribbleLens (OpenSLR 84) is 17th–18th-century Dutch handwriting. This generator renders Dutch words
(Debian ``wdutch``: /usr/share/dict/nederlands) in handwriting fonts from Debian — Joscelyn (a
16th–17th-century secretary hand, the closest to ScribbleLens), Dancing Script, Kristi and DKG Handwriting —
as several "scribes", each with its own font, size, slant, stroke width, letter/word spacing, glyph jitter,
baseline drift, elastic distortion, ink and paper. Every glyph's pen position is known, so every image
column gets its character (``SPACE`` between words, ``*`` in the margins): the per-column alignments come
from the rendering, not from a recogniser.

The zip mirrors the real corpus (see :mod:`vq_hf.data.scribblelens`):

    scribblelens.corpus.v1/corpora/nl.gray.lines.{train,test}.dat      rows '<jpg> <txt>'
    scribblelens.corpus.v1/nl/<scribe>/<page>/line<N>.{jpg,txt}
    scribblelens.corpus.v1/corpora/scribblelens.paths.1.4b.zip          .ali files, one row per column
    scribblelens.corpus.v1/vq_hf_stand_in.json                          marks the zip as a stand-in (arguments)

Output is a pure function of the arguments and the installed fonts / word list: each line draws from its
own ``numpy`` generator seeded with (seed, line number), zip entries carry a fixed timestamp, so the same
seed gives the same bytes (also with ``--workers`` > 1).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vq_hf.data.scribblelens import BLANK, CORPUS_ROOT, DEFAULT_ALIGNMENTS, SPACE, STANDIN_MARKER, dat_name, format_ali

__all__ = [
    "DEFAULT_FONTS",
    "CorpusStats",
    "ScribeStyle",
    "generate_corpus",
    "make_handwriting_corpus",
    "render_line",
    "write_preview",
    "cli",
]

WORDLIST = "/usr/share/dict/nederlands"
WORDLIST_PACKAGE = "wdutch"
FONT_ROOT = "/usr/share/fonts"
# (name, Debian package, path under /usr/share/fonts). Joscelyn first: scribe 0 is the closest to ScribbleLens.
DEFAULT_FONTS = (
    ("joscelyn", "fonts-joscelyn", "opentype/joscelyn/Joscelyn-Regular.otf"),
    ("dancingscript", "fonts-dancingscript", "opentype/dancingscript/DancingScript-Regular.otf"),
    ("kristi", "fonts-kristi", "truetype/kristi/Kristi.ttf"),
    ("dkg", "fonts-dkg-handwriting", "truetype/fifthhorseman/dkg.ttf"),
    ("dancingscriptbold", "fonts-dancingscript", "opentype/dancingscript/DancingScript-Bold.otf"),
    ("dkgitalic", "fonts-dkg-handwriting", "truetype/fifthhorseman/dkgIt.ttf"),
)
_WORD = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿ][a-zß-öø-ÿ'-]*$", re.MULTILINE)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Reference strings for a font's vertical extent (ascenders, descenders) — sizes are chosen from these.
_EXTENT_TEXT = "Hdlbkfhtgjpqyß"


# ---------------------------------------------------------------------------------------------- resources
def find_fonts(paths=None) -> list[tuple[str, str]]:
    """The (name, file) list of fonts to use; explicit ``paths`` or the Debian defaults.

    Raises FileNotFoundError naming the Debian package(s) to install when a default font is missing.
    """
    if paths:
        fonts = []
        for path in paths:
            if not Path(path).is_file():
                raise FileNotFoundError(f"make-handwriting-corpus: font file {str(path)!r} not found")
            fonts.append((Path(path).stem.lower(), str(path)))
        return fonts
    fonts, missing = [], []
    for name, package, relative in DEFAULT_FONTS:
        path = Path(FONT_ROOT) / relative
        if not path.is_file():
            found = sorted(Path(FONT_ROOT).rglob(Path(relative).name)) if Path(FONT_ROOT).is_dir() else []
            if not found:
                missing.append((package, relative))
                continue
            path = found[0]
        fonts.append((name, str(path)))
    if missing:
        packages = sorted({package for package, _ in missing})
        files = ", ".join(Path(relative).name for _, relative in missing)
        raise FileNotFoundError(
            f"make-handwriting-corpus: handwriting font(s) {files} not found under {FONT_ROOT}; install the Debian "
            f"package(s): apt-get install {' '.join(packages)} (or pass --font FILE)"
        )
    return fonts


def load_words(path: str = WORDLIST, max_length: int = 14) -> list[str]:
    """Single words (letters, optional apostrophe/hyphen, lowercase after the first letter) from a word list."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"make-handwriting-corpus: word list {path!r} not found; the default {WORDLIST} comes from the Debian "
            f"package {WORDLIST_PACKAGE} (apt-get install {WORDLIST_PACKAGE}), or pass --wordlist FILE"
        )
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    words = [w for w in _WORD.findall(text) if len(w) <= max_length]
    if not words:
        raise ValueError(f"make-handwriting-corpus: word list {path!r} has no usable words")
    return words


def _font_charset(path: str) -> set[str]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return {chr(code) for code in font.getBestCmap()}


# ---------------------------------------------------------------------------------------------- styles
@dataclass(frozen=True)
class ScribeStyle:
    """Everything that makes one scribe's hand (sizes in pixels at the native line height)."""

    name: str
    font: str
    font_size: int
    baseline: float
    stroke_width: int
    slant: float  # horizontal shear per pixel above the x-height centre (positive leans right)
    tracking: float  # extra letter spacing, fraction of the font size
    word_space: float  # multiple of the font's space advance
    jitter_y: float  # per-glyph vertical offset σ (px)
    jitter_angle: float  # per-glyph rotation σ (degrees)
    jitter_scale: float  # per-glyph scale σ (fraction)
    jitter_advance: float  # per-glyph advance σ (fraction of the advance)
    drift: float  # baseline drift amplitude (px)
    elastic: float  # elastic displacement amplitude (px)
    elastic_scale: float  # elastic displacement correlation length (px)
    ink: float  # ink gray level (0 = black)
    paper: float  # paper gray level
    paper_texture: float  # low-frequency paper variation amplitude (gray levels)
    noise: float  # per-pixel noise σ (gray levels)
    speckles: float  # expected dark specks per 1,000 columns


def make_style(index: int, font: tuple[str, str], height: int, seed: int) -> ScribeStyle:
    """Scribe ``index``'s style: drawn from its own generator, so adding scribes never changes earlier ones."""
    from PIL import ImageFont

    rng = np.random.default_rng([seed, 0, index])
    name, path = font
    probe = ImageFont.truetype(path, 100)
    left, top, right, bottom = probe.getbbox(_EXTENT_TEXT, anchor="ls")
    extent = max(bottom - top, 1)
    fill = rng.uniform(0.80, 0.92)  # share of the line height the ascender-to-descender span takes
    size = max(6, int(round(100 * fill * height / extent)))
    top_px, bottom_px = top * size / 100, bottom * size / 100
    baseline = (height - (bottom_px - top_px)) / 2 - top_px
    scale = height / 64.0
    return ScribeStyle(
        name=f"synth.{name}.{index}",
        font=path,
        font_size=size,
        baseline=float(baseline),
        stroke_width=int(rng.choice([0, 0, 1, 1, 2]) * scale + 0.5) if scale >= 0.75 else int(rng.choice([0, 0, 1])),
        slant=float(rng.uniform(-0.10, 0.40)),
        tracking=float(rng.uniform(-0.03, 0.06)),
        word_space=float(rng.uniform(0.9, 1.6)),
        jitter_y=float(rng.uniform(0.3, 1.6) * scale),
        jitter_angle=float(rng.uniform(0.5, 4.0)),
        jitter_scale=float(rng.uniform(0.01, 0.05)),
        jitter_advance=float(rng.uniform(0.01, 0.06)),
        drift=float(rng.uniform(0.0, 2.5) * scale),
        elastic=float(rng.uniform(0.3, 1.6) * scale),
        elastic_scale=float(rng.uniform(10, 28) * scale),
        ink=float(rng.uniform(15, 80)),
        paper=float(rng.uniform(195, 240)),
        paper_texture=float(rng.uniform(2, 10)),
        noise=float(rng.uniform(2, 7)),
        speckles=float(rng.uniform(0, 6)),
    )


# ---------------------------------------------------------------------------------------------- rendering
def _smooth_1d(rng, n: int, spacing: float, amplitude: float) -> np.ndarray:
    """Smooth random curve: N(0, 1) knots every ``spacing`` samples, linearly interpolated, × amplitude."""
    knots = max(2, int(math.ceil(n / max(spacing, 1.0))) + 1)
    values = rng.normal(0, 1, knots)
    return (np.interp(np.linspace(0, knots - 1, n), np.arange(knots), values) * amplitude).astype(np.float32)


def _smooth_2d(rng, height: int, width: int, spacing: float, amplitude: float) -> np.ndarray:
    """Smooth random field: a coarse N(0, 1) grid, bilinearly interpolated (np.interp; no BLAS threads)."""
    ky = max(2, int(math.ceil(height / max(spacing, 1.0))) + 1)
    kx = max(2, int(math.ceil(width / max(spacing, 1.0))) + 1)
    grid = rng.normal(0, 1, (ky, kx))
    xs, knots_x = np.linspace(0, kx - 1, width), np.arange(kx)
    rows = np.stack([np.interp(xs, knots_x, grid[j]) for j in range(ky)])  # (ky, width)
    pos = np.linspace(0, ky - 1, height)
    low = np.minimum(np.floor(pos).astype(np.int64), ky - 2)
    frac = (pos - low)[:, None]
    return ((rows[low] * (1 - frac) + rows[low + 1] * frac) * amplitude).astype(np.float32)


def _bilinear(image: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Sample ``image`` at float coordinates; outside the image is 0 (no ink)."""
    padded = np.pad(image, 1)
    height, width = image.shape
    xx = np.clip(xx + 1, 0, width + 1 - 1e-4)
    yy = np.clip(yy + 1, 0, height + 1 - 1e-4)
    x0 = np.floor(xx).astype(np.int64)
    y0 = np.floor(yy).astype(np.int64)
    x1 = np.minimum(x0 + 1, width + 1)
    y1 = np.minimum(y0 + 1, height + 1)
    wx = (xx - x0).astype(np.float32)
    wy = (yy - y0).astype(np.float32)
    top = padded[y0, x0] * (1 - wx) + padded[y0, x1] * wx
    bottom = padded[y1, x0] * (1 - wx) + padded[y1, x1] * wx
    return top * (1 - wy) + bottom * wy


class _GlyphCache:
    """Rasterised glyphs of one scribe: coverage in [0, 1] around the pen position on the baseline."""

    def __init__(self, style: ScribeStyle):
        from PIL import ImageFont

        self.style = style
        self.font = ImageFont.truetype(style.font, style.font_size)
        self.pad = int(style.font_size * 0.6) + 2 * style.stroke_width + 4
        self.glyphs = {}
        self.advances = {}

    def advance(self, char: str) -> float:
        if char not in self.advances:
            self.advances[char] = float(self.font.getlength(char))
        return self.advances[char]

    def glyph(self, char: str):
        if char not in self.glyphs:
            from PIL import Image, ImageDraw

            left, top, right, bottom = self.font.getbbox(char, anchor="ls", stroke_width=self.style.stroke_width)
            width = int(right - min(left, 0)) + 2 * self.pad
            height = int(bottom - top) + 2 * self.pad
            origin = (self.pad - min(left, 0), self.pad - top)
            canvas = Image.new("L", (max(width, 1), max(height, 1)), 0)
            ImageDraw.Draw(canvas).text(
                origin, char, font=self.font, fill=255, anchor="ls",
                stroke_width=self.style.stroke_width, stroke_fill=255,
            )
            self.glyphs[char] = (canvas, origin)
        return self.glyphs[char]


def _sample_text(rng, words: list[str], min_chars: int, max_chars: int) -> str:
    target = int(rng.integers(min_chars, max_chars + 1))
    chosen = []
    length = -1
    while length < target:
        word = words[int(rng.integers(len(words)))]
        chosen.append(word)
        length += len(word) + 1
    if rng.random() < 0.35:
        chosen[0] = chosen[0][:1].upper() + chosen[0][1:]
    return " ".join(chosen)


def render_line(text: str, style: ScribeStyle, rng, height: int, glyphs: _GlyphCache | None = None):
    """Render one line. Returns (uint8 image (height, W), per-column symbols list of length W)."""
    from PIL import Image

    glyphs = glyphs or _GlyphCache(style)
    margin_shear = abs(style.slant) * height / 2
    left_margin = float(rng.uniform(3, 14)) * height / 64 + margin_shear
    pen = left_margin
    spans = []  # (start, stop, symbol)
    placements = []
    size = style.font_size
    for char in text:
        if char == " ":
            advance = glyphs.advance(" ") * style.word_space * float(rng.uniform(0.85, 1.15))
            spans.append((pen, pen + advance, SPACE))
            pen += advance
            continue
        advance = glyphs.advance(char) + style.tracking * size
        advance *= 1 + style.jitter_advance * float(rng.standard_normal())
        advance = max(advance, 1.0)
        placements.append(
            (
                char,
                pen,
                style.jitter_y * float(rng.standard_normal()),
                style.jitter_angle * float(rng.standard_normal()),
                1 + style.jitter_scale * float(rng.standard_normal()),
            )
        )
        spans.append((pen, pen + advance, char))
        pen += advance
    width = int(math.ceil(pen + float(rng.uniform(3, 14)) * height / 64 + margin_shear))

    coverage = np.zeros((height, width), dtype=np.float32)
    baseline = style.baseline
    for char, x, dy, angle, scale in placements:
        canvas, (ox, oy) = glyphs.glyph(char)
        if abs(angle) > 0.05 or abs(scale - 1) > 1e-3:
            theta = math.radians(angle)
            cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
            # Inverse map about the pen point: input = A · (output − origin) + origin.
            data = (cos, sin, ox - cos * ox - sin * oy, -sin, cos, oy + sin * ox - cos * oy)
            canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
        glyph = np.asarray(canvas, dtype=np.float32) * (1 / 255)
        x0 = int(round(x - ox))
        y0 = int(round(baseline + dy - oy))
        gy0, gx0 = max(0, -y0), max(0, -x0)
        gy1 = min(glyph.shape[0], height - y0)
        gx1 = min(glyph.shape[1], width - x0)
        if gy1 <= gy0 or gx1 <= gx0:
            continue
        region = coverage[y0 + gy0 : y0 + gy1, x0 + gx0 : x0 + gx1]
        np.maximum(region, glyph[gy0:gy1, gx0:gx1], out=region)

    # Distortion as one sampling map: slant about the x-height centre, baseline drift, elastic field.
    centre = baseline - 0.25 * size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx = _smooth_1d(rng, width, style.elastic_scale * 2, style.elastic)
    dy = _smooth_2d(rng, height, width, style.elastic_scale, style.elastic) + _smooth_1d(
        rng, width, 6 * height, style.drift
    )[None, :]
    x_in = xs + dx[None, :] - style.slant * (centre - ys)
    y_in = ys + dy
    ink = np.clip(_bilinear(coverage, y_in, x_in), 0, 1)

    # Labels follow the horizontal map at the centre line, where the slant term vanishes.
    labels_in = np.full(width, BLANK, dtype=object)
    for start, stop, symbol in spans:
        labels_in[max(0, int(math.ceil(start - 0.5))) : max(0, int(math.ceil(stop - 0.5)))] = symbol
    source = np.clip(np.rint(np.arange(width) + dx), 0, width - 1).astype(np.int64)
    symbols = labels_in[source].tolist()

    pressure = style.ink + _smooth_1d(rng, width, 3 * height, 12.0)[None, :]
    paper = style.paper + _smooth_2d(rng, height, width, 2 * height, style.paper_texture)
    image = paper - (paper - pressure) * ink + rng.normal(0, style.noise, (height, width)).astype(np.float32)
    for _ in range(int(rng.poisson(style.speckles * width / 1000))):
        cy, cx = int(rng.integers(height)), int(rng.integers(width))
        radius = int(rng.integers(1, 3))
        image[max(0, cy - radius) : cy + radius, max(0, cx - radius) : cx + radius] -= float(rng.uniform(40, 120))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), symbols


# ---------------------------------------------------------------------------------------------- corpus
@dataclass
class CorpusStats:
    lines: int
    train: int
    test: int
    scribes: list[str]
    corpus_bytes: int
    seconds: float

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else float("inf")

    @property
    def bytes_per_line(self) -> float:
        return self.corpus_bytes / self.lines


@dataclass(frozen=True)
class _LineJob:
    index: int
    scribe: int
    path: str  # relative to the corpus root, without extension
    split: str


class _Renderer:
    """Holds the scribes (fonts, styles, word lists) and renders lines by number."""

    def __init__(self, fonts, words, scribes, height, seed, min_chars, max_chars, jpeg_quality):
        self.height, self.seed = height, seed
        self.min_chars, self.max_chars, self.jpeg_quality = min_chars, max_chars, jpeg_quality
        self.styles, self.words, self.caches = [], [], []
        charsets = {}
        used_chars = set("".join(words))
        for k in range(scribes):
            font = fonts[k % len(fonts)]
            style = make_style(k, font, height, seed)
            if font[1] not in charsets:
                missing = used_chars - _font_charset(font[1])
                # Only words with a glyph for every character; filtering is skipped when the font covers all.
                charsets[font[1]] = (
                    [w for w in words if not missing.intersection(w)] if missing else words
                )
            usable = charsets[font[1]]
            if not usable:
                raise ValueError(f"make-handwriting-corpus: font {font[1]} covers none of the words")
            self.styles.append(style)
            self.words.append(usable)
            self.caches.append(_GlyphCache(style))

    def render(self, job: _LineJob) -> tuple[bytes, str, str]:
        from PIL import Image

        rng = np.random.default_rng([self.seed, 1, job.index])
        text = _sample_text(rng, self.words[job.scribe], self.min_chars, self.max_chars)
        image, symbols = render_line(text, self.styles[job.scribe], rng, self.height, self.caches[job.scribe])
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=self.jpeg_quality)
        ali = format_ali(f"{CORPUS_ROOT}/{job.path}.jpg", symbols, None, text)
        return buffer.getvalue(), text, ali


_WORKER: _Renderer | None = None


def _worker_init(kwargs):
    global _WORKER
    _WORKER = _Renderer(**kwargs)


def _worker_render(job):
    return _WORKER.render(job)


def _zip_write(archive: zipfile.ZipFile, name: str, data: bytes, compress: bool):
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data, compresslevel=6 if compress else None)


def plan_lines(lines: int, scribes: list[str], test_fraction: float, lines_per_page: int) -> list[_LineJob]:
    """Assign line numbers to scribes (round robin), pages and splits (every k-th line is test, at least one)."""
    every = max(2, int(round(1 / test_fraction))) if test_fraction > 0 else 0
    counters = [0] * len(scribes)
    jobs = []
    for i in range(lines):
        k = i % len(scribes)
        n = counters[k]
        counters[k] += 1
        page, line = n // lines_per_page + 1, n % lines_per_page + 1
        split = "test" if every and i % every == every - 1 else "train"
        # The last line is test when the stride skipped every line (few lines): both splits are never empty.
        if i == lines - 1 and not any(job.split == "test" for job in jobs):
            split = "test"
        jobs.append(_LineJob(i, k, f"nl/{scribes[k]}/{page}/line{line}", split))
    return jobs


def generate_corpus(
    out: str | os.PathLike,
    lines: int = 200,
    *,
    seed: int = 0,
    scribes: int = 6,
    height: int = 64,
    min_chars: int = 25,
    max_chars: int = 55,
    test_fraction: float = 0.1,
    lines_per_page: int = 25,
    jpeg_quality: int = 85,
    colormode: str = "gray",
    fonts=None,
    wordlist: str = WORDLIST,
    alignments_out: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool = False,
) -> CorpusStats:
    """Write a ScribbleLens-format corpus zip of ``lines`` rendered lines; see the module docstring."""
    if lines < 2:
        raise ValueError(f"make-handwriting-corpus: --lines {lines}: need at least 2 (a train and a test line)")
    if scribes < 1:
        raise ValueError(f"make-handwriting-corpus: --scribes {scribes} must be >= 1")
    if height < 16:
        raise ValueError(f"make-handwriting-corpus: --height {height} must be >= 16 pixels")
    if not 1 <= min_chars <= max_chars:
        raise ValueError(f"make-handwriting-corpus: need 1 <= --min-chars ({min_chars}) <= --max-chars ({max_chars})")
    if not 0 < test_fraction <= 0.5:
        raise ValueError(f"make-handwriting-corpus: --test-fraction {test_fraction} must be in (0, 0.5]")
    if lines_per_page < 1:
        raise ValueError(f"make-handwriting-corpus: --lines-per-page {lines_per_page} must be >= 1")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"make-handwriting-corpus: --jpeg-quality {jpeg_quality} must be in 1..100")
    if colormode not in {"gray", "bw", "color"}:
        raise ValueError(f"make-handwriting-corpus: --colormode {colormode!r} must be gray, bw or color")
    if workers < 1:
        raise ValueError(f"make-handwriting-corpus: --workers {workers} must be >= 1")
    out = Path(out)
    if out.suffix != ".zip":
        raise ValueError(f"make-handwriting-corpus: output {str(out)!r} must end in .zip")

    start = time.perf_counter()
    font_list = find_fonts(fonts)
    words = load_words(wordlist)
    renderer_args = dict(
        fonts=font_list, words=words, scribes=scribes, height=height, seed=seed,
        min_chars=min_chars, max_chars=max_chars, jpeg_quality=jpeg_quality,
    )
    scribe_names = [make_style(k, font_list[k % len(font_list)], height, seed).name for k in range(scribes)]
    jobs = plan_lines(lines, scribe_names, test_fraction, lines_per_page)

    if workers == 1:
        renderer = _Renderer(**renderer_args)
        results = map(renderer.render, jobs)
        pool = None
    else:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(renderer_args,))
        results = pool.map(_worker_render, jobs, chunksize=8)

    out.parent.mkdir(parents=True, exist_ok=True)
    # Per-process temporary name: concurrent ranks may build the same corpus (identical bytes) at once.
    tmp = out.with_name(f"{out.name}.{os.getpid()}.partial")
    dat_rows = {"train": [], "test": []}
    ali_buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(tmp, "w") as archive, zipfile.ZipFile(ali_buffer, "w") as ali_zip:
            for n, (job, (jpeg, text, ali)) in enumerate(zip(jobs, results), start=1):
                _zip_write(archive, f"{CORPUS_ROOT}/{job.path}.jpg", jpeg, compress=False)
                _zip_write(archive, f"{CORPUS_ROOT}/{job.path}.txt", (text + "\n").encode("utf-8"), compress=True)
                _zip_write(ali_zip, f"{CORPUS_ROOT}/{job.path}.ali", ali.encode("utf-8"), compress=True)
                dat_rows[job.split].append(f"{job.path}.jpg {job.path}.txt")
                if progress and (n % 100 == 0 or n == len(jobs)):
                    print(f"rendered {n}/{len(jobs)} lines", file=sys.stderr)
            for split, rows in dat_rows.items():
                _zip_write(archive, dat_name(split, colormode), ("\n".join(rows) + "\n").encode("utf-8"), compress=True)
            ali_zip.close()
            _zip_write(archive, f"{CORPUS_ROOT}/corpora/{DEFAULT_ALIGNMENTS}", ali_buffer.getvalue(), compress=False)
            marker = {"generator": "vq-hf make-handwriting-corpus", "stand_in_for": "ScribbleLens", "lines": lines,
                      "train": len(dat_rows["train"]), "test": len(dat_rows["test"]), "seed": seed,
                      "scribes": scribe_names, "fonts": [name for name, _ in font_list], "height": height}
            _zip_write(archive, STANDIN_MARKER, (json.dumps(marker, indent=1) + "\n").encode("utf-8"), compress=True)
        os.replace(tmp, out)
    finally:
        if pool is not None:
            pool.shutdown()
        if tmp.exists():
            tmp.unlink()
    if alignments_out is not None:
        Path(alignments_out).parent.mkdir(parents=True, exist_ok=True)
        Path(alignments_out).write_bytes(ali_buffer.getvalue())
    return CorpusStats(
        lines=lines,
        train=len(dat_rows["train"]),
        test=len(dat_rows["test"]),
        scribes=scribe_names,
        corpus_bytes=out.stat().st_size,
        seconds=time.perf_counter() - start,
    )


def make_handwriting_corpus(out: str | os.PathLike, num_lines: int = 2000, seed: int = 0, **kwargs) -> Path:
    """Return the path of a stand-in corpus zip, generating it only if it is not there yet.

    ``out`` is the zip path, or a folder in which ``synth_handwriting.<num_lines>lines.seed<seed>.zip`` is
    kept (a ``.json`` beside it records every argument; a zip made with other arguments is regenerated).
    ``kwargs`` go to :func:`generate_corpus`.
    """
    out = Path(out)
    if out.suffix != ".zip":
        out = out / f"synth_handwriting.{num_lines}lines.seed{seed}.zip"
    params = {"lines": num_lines, "seed": seed, **kwargs}
    # JSON-comparable: tuples become lists, paths strings.
    params = json.loads(json.dumps(params, default=str))
    record = out.with_suffix(".json")
    if out.is_file() and record.is_file():
        try:
            if json.loads(record.read_text()) == params:
                return out
        except json.JSONDecodeError:
            pass
    generate_corpus(out, num_lines, seed=seed, **kwargs)
    tmp = record.with_name(f"{record.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(params, sort_keys=True) + "\n")
    os.replace(tmp, record)
    return out


# ---------------------------------------------------------------------------------------------- preview
def write_preview(
    corpus: str | os.PathLike, png: str | os.PathLike, lines: int = 8, split: str = "train", colormode: str = "gray"
) -> None:
    """A PNG of the first ``lines`` lines of a corpus zip: the line, its per-column alignment as coloured
    segments labelled with their characters, and the 32-pixel-high version the loaders produce."""
    from PIL import Image, ImageDraw, ImageFont

    from vq_hf.data.scribblelens import parse_ali, parse_dat
    from vq_hf.models.vqvae_line.image_processing_vqvae_line import VQVAELineImageProcessor

    processor = VQVAELineImageProcessor()
    label_font = ImageFont.load_default()
    palette = [
        (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)
    ]
    blocks = []
    with zipfile.ZipFile(corpus) as archive:
        dat = dat_name(split, colormode)
        rows = parse_dat(archive.read(dat).decode("utf-8"), f"{corpus}!{dat}")[:lines]
        ali_zip = zipfile.ZipFile(io.BytesIO(archive.read(f"{CORPUS_ROOT}/corpora/{DEFAULT_ALIGNMENTS}")))
        for row in rows:
            image = Image.open(io.BytesIO(archive.read(f"{CORPUS_ROOT}/{row.image}"))).convert("RGB")
            ali = parse_ali(
                ali_zip.read(f"{CORPUS_ROOT}/{row.image[:-4]}.ali").decode("utf-8"), row.image[:-4] + ".ali"
            )
            strip = Image.new("RGB", (image.width, 18), (255, 255, 255))
            draw = ImageDraw.Draw(strip)
            start, colour = 0, 0
            symbols = list(ali.symbols) + [None]
            for x in range(1, len(symbols)):
                if symbols[x] != symbols[start]:
                    if symbols[start] != BLANK:
                        draw.rectangle([start, 0, x - 1, 17], fill=palette[colour % len(palette)])
                        draw.text((start + 1, 3), symbols[start], fill=(0, 0, 0), font=label_font)
                        colour += 1
                    start = x
            small = Image.fromarray(processor.resize_line(image)).convert("RGB")
            caption = f"{row.image}  ({image.width}x{image.height} -> {small.width}x{small.height}): {ali.target}"
            block = Image.new("RGB", (max(image.width, 600), image.height + 18 + small.height + 30), (255, 255, 255))
            ImageDraw.Draw(block).text((2, 2), caption, fill=(0, 0, 0), font=label_font)
            block.paste(image, (0, 14))
            block.paste(strip, (0, 14 + image.height))
            block.paste(small, (0, 14 + image.height + 18 + 4))
            blocks.append(block)
        ali_zip.close()
    width = max(b.width for b in blocks)
    sheet = Image.new("RGB", (width, sum(b.height for b in blocks)), (255, 255, 255))
    y = 0
    for block in blocks:
        sheet.paste(block, (0, y))
        y += block.height
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    # 64 colours: the paper noise makes a full-colour PNG several times larger for no visible gain.
    sheet.quantize(colors=64, dither=Image.Dither.NONE).save(png, optimize=True)


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vq-hf make-handwriting-corpus",
        description=(
            "Render Dutch text lines in handwriting fonts as several scribes and write a ScribbleLens-format "
            "corpus zip (line lists, line JPEGs, transcripts, and per-column .ali alignments in a nested "
            f"corpora/{DEFAULT_ALIGNMENTS}). Load it with vq_hf.data.load_scribblelens(OUT, "
            f"alignments='{DEFAULT_ALIGNMENTS}'). Same arguments and seed give the same bytes."
        ),
    )
    parser.add_argument("out", metavar="OUT.zip", help="corpus zip to write (replaced if it exists)")
    options = [
        ("--lines", int, 200, "number of lines to render (>= 2)"),
        ("--seed", int, 0, "random seed of styles, texts and noise"),
        ("--scribes", int, 6, "number of scribes; scribe k uses font k mod #fonts"),
        ("--height", int, 64, "native line height in pixels (the loaders resize lines to 32)"),
        ("--min-chars", int, 25, "shortest line text in characters"),
        ("--max-chars", int, 55, "longest target line text in characters (the last word may overrun)"),
        ("--test-fraction", float, 0.1, "share of lines in the test split: every round(1/f)-th line, at least one"),
        ("--lines-per-page", int, 25, "lines per page folder of a scribe"),
        ("--jpeg-quality", int, 85, "JPEG quality of the line images, 1..100"),
        ("--preview-lines", int, 8, "lines in the --preview PNG"),
        ("--workers", int, 1, "rendering processes; the output is identical for any value"),
    ]
    for flag, kind, default, text in options:
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    parser.add_argument(
        "--colormode", default="gray", choices=["gray", "bw", "color"],
        help="name in the line lists nl.<colormode>.lines.<split>.dat; images are grayscale (default gray)",
    )
    parser.add_argument(
        "--font", action="append", metavar="FILE",
        help="a .ttf/.otf font to use instead of the Debian handwriting fonts (repeatable)",
    )
    parser.add_argument(
        "--wordlist", default=WORDLIST,
        help=f"word list, one word per line (default {WORDLIST}, Debian package {WORDLIST_PACKAGE})",
    )
    parser.add_argument(
        "--alignments-out", metavar="ALI.zip",
        help=f"also write the alignments zip here (it is always inside OUT as corpora/{DEFAULT_ALIGNMENTS})",
    )
    parser.add_argument(
        "--preview", metavar="PNG", help="also write a PNG of the first train lines with their alignments"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    return parser


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        stats = generate_corpus(
            args.out, args.lines, seed=args.seed, scribes=args.scribes, height=args.height,
            min_chars=args.min_chars, max_chars=args.max_chars, test_fraction=args.test_fraction,
            lines_per_page=args.lines_per_page, jpeg_quality=args.jpeg_quality, colormode=args.colormode,
            fonts=args.font, wordlist=args.wordlist, alignments_out=args.alignments_out, workers=args.workers,
            progress=not args.quiet,
        )
        if args.preview:
            write_preview(args.out, args.preview, lines=args.preview_lines, colormode=args.colormode)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"wrote {args.out}: {stats.lines} lines ({stats.train} train, {stats.test} test), "
            f"{len(stats.scribes)} scribes, {stats.corpus_bytes} bytes ({round(stats.bytes_per_line)} per line), "
            f"{stats.lines_per_second:.1f} lines/s",
            file=sys.stderr,
        )
    return 0
