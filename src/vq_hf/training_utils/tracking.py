"""What a run records while it trains: a JSON-lines history (the source of the plots, results and tests) and,
through accelerate's trackers (``Accelerator(log_with="tensorboard")``), TensorBoard scalars and code-usage
histograms. Both are written by the main process only.

History rows: ``{"kind": "train" | "eval", "step": int, "epoch": int, ...metrics}``; eval rows carry
``"weights": "raw" | "polyak"``. On resume, rows after the checkpoint's step are dropped first, so the
history of a resumed run equals that of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np


def _clean(v):
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "tolist"):
        return _clean(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class History:
    def __init__(self, path: str | pathlib.Path, enabled: bool = True):
        self.path = pathlib.Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> int:
        """Keep rows with ``step <= step``; returns how many rows were dropped."""
        if not self.enabled or not self.path.is_file():
            return 0
        rows = self.read()
        kept = [r for r in rows if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        return len(rows) - len(kept)

    def append(self, row: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")

    def read(self) -> list[dict]:
        """All rows. A torn last line (the process was killed while appending) is dropped; any other
        unreadable line is an error naming the file and line."""
        if not self.path.is_file():
            return []
        lines = [(i + 1, line) for i, line in enumerate(self.path.read_text().splitlines()) if line.strip()]
        rows = []
        for k, (lineno, line) in enumerate(lines):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if k == len(lines) - 1:
                    print(f"{self.path}:{lineno}: dropped a torn last history row (interrupted write)")
                    break
                raise ValueError(f"{self.path}:{lineno}: unreadable history row ({e})") from None
        return rows


def log_metrics(accelerator, prefix: str, metrics: dict, step: int) -> None:
    """Scalars to accelerate's trackers (``accelerator.log``), one series per codebook for list values."""
    values = {}
    for k, v in metrics.items():
        if isinstance(v, (list, tuple, np.ndarray)):
            for i, x in enumerate(np.asarray(v, dtype=float).ravel()):
                values[f"{prefix}/{k}/codebook_{i}"] = float(x)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            values[f"{prefix}/{k}"] = float(v)
    accelerator.log(values, step=step)


def log_code_usage(accelerator, tag: str, counts, step: int) -> None:
    """Per-codebook code-usage histogram (one bar per code) on the TensorBoard tracker, when there is one.

    accelerate's ``log`` takes scalars only; a histogram goes to the tracker's own SummaryWriter.
    """
    if counts is None or not accelerator.is_main_process:
        return
    try:
        writer = accelerator.get_tracker("tensorboard", unwrap=True)
    except ValueError:  # no such tracker
        return
    if not hasattr(writer, "add_histogram_raw"):  # accelerate's no-op stand-in (tracking disabled)
        return
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim == 1:
        counts = counts[None]
    for i, c in enumerate(counts):
        k = c.shape[0]
        total = c.sum()
        if total <= 0:
            continue
        idx = np.arange(k, dtype=np.float64)
        writer.add_histogram_raw(
            f"{tag}/codebook_{i}", min=0.0, max=float(k - 1), num=float(total), sum=float((idx * c).sum()),
            sum_squares=float((idx**2 * c).sum()), bucket_limits=(idx + 0.5).tolist(), bucket_counts=c.tolist(),
            global_step=step,
        )
