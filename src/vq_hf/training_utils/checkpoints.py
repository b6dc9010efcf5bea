"""Checkpoint folders: ``<output_dir>/checkpoints/step_N``, written atomically, pruned to the last k.

A checkpoint is complete when its folder has its final name and holds ``meta.json``: it is first written
under ``.tmp-step_N`` and renamed, so a run killed at any moment leaves either a complete checkpoint or a
temporary folder that :func:`resolve_checkpoint` ignores and :func:`clean_partial` removes.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import tempfile

META = "meta.json"
_STEP_RE = re.compile(r"^step_(\d+)$")
_TMP_PREFIX = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint path is missing, incomplete, or belongs to another run."""


def checkpoints_dir(output_dir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, pathlib.Path]]:
    """Complete checkpoints, oldest first, as (step, folder)."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / META).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def temp_path(output_dir: str | os.PathLike, step: int) -> pathlib.Path:
    return checkpoints_dir(output_dir) / f"{_TMP_PREFIX}step_{step}"


def final_path(output_dir: str | os.PathLike, step: int) -> pathlib.Path:
    return checkpoints_dir(output_dir) / f"step_{step}"


def write_meta(folder: pathlib.Path, meta: dict) -> None:
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True))


def read_meta(folder: str | os.PathLike) -> dict:
    path = pathlib.Path(folder) / META
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a complete checkpoint ({META} is missing)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


def commit(tmp: pathlib.Path, final: pathlib.Path) -> None:
    """Publish a fully written checkpoint under its final name (atomic on one filesystem)."""
    if final.exists():
        # A re-run of the same step after resuming from an earlier checkpoint: replace the stale copy.
        shutil.rmtree(final)
    os.replace(tmp, final)


def prune(output_dir: str | os.PathLike, keep_last: int, protect: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints; returns the removed folders."""
    removed = []
    ckpts = list_checkpoints(output_dir)
    for _, p in ckpts[: max(0, len(ckpts) - keep_last)]:
        if protect is not None and p.resolve() == protect.resolve():
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def clean_partial(output_dir: str | os.PathLike) -> list[pathlib.Path]:
    """Remove temporary folders left by a run killed while saving."""
    root = checkpoints_dir(output_dir)
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(_TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def resolve_checkpoint(spec: str, output_dir: str | os.PathLike) -> pathlib.Path:
    """``latest`` → the newest complete checkpoint of ``output_dir``; a path → that checkpoint, checked."""
    if spec == "latest":
        ckpts = list_checkpoints(output_dir)
        if not ckpts:
            raise CheckpointError(
                f"--resume_from_checkpoint latest: no complete checkpoint under {checkpoints_dir(output_dir)}"
            )
        return ckpts[-1][1]
    path = pathlib.Path(spec)
    if not path.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint {spec}: no such folder")
    read_meta(path)
    return path


def check_writable(folder: str | os.PathLike) -> None:
    """Fail early, naming the folder, when the run could not write its outputs."""
    folder = pathlib.Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PermissionError(f"output_dir {folder}: cannot write there ({e.strerror or e})") from None


def disk_usage(folder: str | os.PathLike) -> int:
    """Bytes of the regular files under ``folder`` (0 when it does not exist)."""
    root = pathlib.Path(folder)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) if root.is_dir() else 0
