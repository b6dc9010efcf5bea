"""How well discrete units follow reference labels (phones, characters): purity, PNMI, boundaries, ABX, bitrate.

All functions take per-utterance sequences at ONE common frame rate: ``labels[i]`` (reference label per frame,
ints or strings) and ``units[i]`` (unit per frame, ints), of equal lengths. Units come at the encoder's rate
(one latent per ``s`` reference frames: 3 speech frames = 30 ms, 4 handwriting columns); :func:`units_to_frames`
upsamples them explicitly — latent ``t`` covers reference frames ``[t·s, (t+1)·s)`` — so every metric is counted
over reference frames (the convention of fairseq's HuBERT ``measure_teacher_quality.py``).

With p(y, z) the joint frequency of label y and unit z over all frames of a split:

* ``purity``          Σ_z max_y p(y, z)   (each unit mapped to its majority label; fairseq "ref pur")
* ``cluster_purity``  Σ_y max_z p(y, z)   (fairseq "hyp pur")
* ``pnmi``            I(y; z) / H(y)      (phone-normalised mutual information)
* ``nmi``             I(y; z) / ((H(y) + H(z)) / 2)   (scikit-learn's arithmetic normalisation)
* ``boundary_f1``     unit change points vs label change points, one-to-one within ±``tolerance`` frames
* ``mapped_error_rate``  units → majority label, repeats collapsed, edit distance to the collapsed reference,
  pooled Σ errors / Σ reference length
* ``bitrate_bits_per_second``  (N / D) · H(s): N symbols of the de-duplicated unit streams over D seconds,
  H their entropy in bits (ZeroSpeech 2021 ``bitrate.py``)
* ``mean_segment_length``  frames per run of equal units; ``used_units`` distinct units
* ``abx_within_speaker`` / ``abx_across_speaker``  :func:`abx_error`

ABX is computed here, not with ``fastabx``: fastabx needs Python ≥ 3.12 and vq_hf supports 3.11. The definition
follows libri-light's ``eval_ABX.py`` without phone context: items are the reference label segments; for labels
a ≠ b, A and X carry a, B carries b; A and B come from one speaker, X from the same speaker (within) or another
one (across); the error of a triplet is 1 when d(A, X) > d(B, X), ½ on a tie. d is DTW over the items' frames
with frame distance 0 for equal units and 1 otherwise (the angular distance of one-hot unit vectors, divided by
π/2), the path cost divided by the sum of the two lengths. Errors are averaged per (a, b, speaker[s]) cell, then
over cells.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ._arrays import to_numpy
from .error_rate import edit_distance_counts


# ---------------------------------------------------------------------------------------------- alignment


def units_to_frames(units: Any, frames_per_unit: int, num_frames: int) -> np.ndarray:
    """Upsample one utterance's units to the reference frame rate: unit t covers frames [t·s, (t+1)·s).

    The result has exactly ``num_frames`` entries: a tail of frames beyond the last latent (fewer than ``s``,
    from the encoder's rounding) takes the last unit, and latents past the reference end are dropped. A length
    mismatch of more than one latent is an error (units and reference do not belong together).
    """
    units = to_numpy(units).reshape(-1)
    s = int(frames_per_unit)
    if s < 1:
        raise ValueError(f"frames_per_unit={frames_per_unit!r} must be a positive int")
    covered = units.shape[0] * s
    if units.shape[0] == 0 or abs(covered - num_frames) >= 2 * s:
        raise ValueError(
            f"{units.shape[0]} units × {s} frames = {covered} frames do not match the reference's {num_frames} frames"
        )
    frames = np.repeat(units, s)[:num_frames]
    if frames.shape[0] < num_frames:
        frames = np.concatenate([frames, np.full(num_frames - frames.shape[0], frames[-1], dtype=frames.dtype)])
    return frames


def codebook_tuples_to_ids(codes: Any) -> np.ndarray:
    """Codes ``(T, G)`` of G codebooks → one int per position (distinct tuples numbered in order of value)."""
    codes = np.asarray(codes)
    if codes.ndim == 1:
        return codes.astype(np.int64)
    _, ids = np.unique(codes.reshape(codes.shape[0], -1), axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


# ---------------------------------------------------------------------------------------------- helpers


def _pairs(labels: Sequence, units: Sequence) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(labels) != len(units):
        raise ValueError(f"got {len(labels)} label sequences but {len(units)} unit sequences")
    ls, us = [], []
    for i, (y, z) in enumerate(zip(labels, units)):
        y = np.asarray(y).reshape(-1)
        z = to_numpy(z).reshape(-1)
        if y.shape[0] != z.shape[0]:
            raise ValueError(f"utterance {i}: {y.shape[0]} labels but {z.shape[0]} units (upsample with units_to_frames)")
        ls.append(y)
        us.append(z)
    if not ls or sum(len(y) for y in ls) == 0:
        raise ValueError("no frames to score")
    return ls, us


def joint_counts(labels: Sequence, units: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contingency table over all frames: ``(counts (Y, Z), label values (Y,), unit values (Z,))``."""
    ls, us = _pairs(labels, units)
    y_vals, y_idx = np.unique(np.concatenate(ls), return_inverse=True)
    z_vals, z_idx = np.unique(np.concatenate(us), return_inverse=True)
    flat = y_idx.reshape(-1).astype(np.int64) * len(z_vals) + z_idx.reshape(-1)
    counts = np.bincount(flat, minlength=len(y_vals) * len(z_vals)).reshape(len(y_vals), len(z_vals))
    return counts, y_vals, z_vals


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: one symbol gives 0.0, not -0.0


def _mutual_information_bits(counts: np.ndarray) -> tuple[float, float, float]:
    """(I(y; z), H(y), H(z)) in bits from a contingency table."""
    p = counts / counts.sum()
    py, pz = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log2(p[nz] / (py[:, None] * pz[None, :])[nz])).sum())
    return mi, _entropy_bits(py), _entropy_bits(pz)


def _runs(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, start indices) of the maximal runs of equal entries."""
    if seq.shape[0] == 0:
        return seq, np.zeros(0, dtype=np.int64)
    change = np.ones(seq.shape[0], dtype=bool)
    change[1:] = seq[1:] != seq[:-1]
    starts = np.flatnonzero(change)
    return seq[starts], starts


# ---------------------------------------------------------------------------------------------- metrics


def purity(labels: Sequence, units: Sequence) -> float:
    """Σ_z max_y p(y, z): the frame accuracy of mapping each unit to its majority label."""
    counts, _, _ = joint_counts(labels, units)
    return float(counts.max(axis=0).sum() / counts.sum())


def cluster_purity(labels: Sequence, units: Sequence) -> float:
    """Σ_y max_z p(y, z): the frame accuracy of mapping each label to its majority unit."""
    counts, _, _ = joint_counts(labels, units)
    return float(counts.max(axis=1).sum() / counts.sum())


def pnmi(labels: Sequence, units: Sequence) -> float:
    """I(y; z) / H(y): the share of the label entropy the units explain (0 when H(y) = 0)."""
    mi, hy, _ = _mutual_information_bits(joint_counts(labels, units)[0])
    return mi / hy if hy > 0 else 0.0


def nmi(labels: Sequence, units: Sequence) -> float:
    """I(y; z) / ((H(y) + H(z)) / 2) (1 when both are constant, as in scikit-learn)."""
    mi, hy, hz = _mutual_information_bits(joint_counts(labels, units)[0])
    return mi / ((hy + hz) / 2) if hy + hz > 0 else 1.0


def boundary_f1(labels: Sequence, units: Sequence, tolerance: int) -> dict[str, float]:
    """Precision, recall and F1 of unit change points against label change points.

    A boundary is the index of a frame whose value differs from the previous frame's. Each reference boundary
    matches at most one unit boundary within ±``tolerance`` frames (greedy left to right, which is a maximum
    matching for equal-width windows on a line). Returns ``{"precision", "recall", "f1", "tolerance_frames"}``
    (precision / recall are 0 when there is nothing to find, F1 0 when both are 0).
    """
    ls, us = _pairs(labels, units)
    hits = n_ref = n_hyp = 0
    for y, z in zip(ls, us):
        ref = _runs(y)[1][1:]
        hyp = _runs(z)[1][1:]
        n_ref += len(ref)
        n_hyp += len(hyp)
        i = j = 0
        while i < len(ref) and j < len(hyp):
            if abs(int(ref[i]) - int(hyp[j])) <= tolerance:
                hits += 1
                i += 1
                j += 1
            elif hyp[j] < ref[i]:
                j += 1
            else:
                i += 1
    precision = hits / n_hyp if n_hyp else 0.0
    recall = hits / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tolerance_frames": int(tolerance)}


def majority_mapping(labels: Sequence, units: Sequence) -> dict:
    """{unit: its most frequent label} over all frames (ties: the smallest label value)."""
    counts, y_vals, z_vals = joint_counts(labels, units)
    return {z.item() if hasattr(z, "item") else z: y_vals[int(counts[:, k].argmax())] for k, z in enumerate(z_vals)}


def mapped_error_rate(labels: Sequence, units: Sequence, mapping: dict | None = None) -> float:
    """Map units to labels (default: each unit's majority label), collapse repeats, and score the edit distance
    against the collapsed reference: Σ errors / Σ reference length over the split."""
    ls, us = _pairs(labels, units)
    mapping = majority_mapping(ls, us) if mapping is None else mapping
    hyps, refs = [], []
    for y, z in zip(ls, us):
        mapped = np.asarray([mapping[v.item() if hasattr(v, "item") else v] for v in z])
        hyps.append([v.item() if hasattr(v, "item") else v for v in _runs(mapped)[0]])
        refs.append([v.item() if hasattr(v, "item") else v for v in _runs(y)[0]])
    errors, total = edit_distance_counts(hyps, refs)
    return errors / total


def bitrate_bits_per_second(units: Sequence, total_seconds: float) -> float:
    """(N / D) · H: N symbols of the de-duplicated unit streams, D seconds in all, H their entropy in bits."""
    if total_seconds <= 0:
        raise ValueError(f"total_seconds={total_seconds!r} must be positive")
    streams = [_runs(to_numpy(z).reshape(-1))[0] for z in units]
    symbols = np.concatenate(streams) if streams else np.zeros(0, dtype=np.int64)
    if symbols.shape[0] == 0:
        raise ValueError("no units")
    _, counts = np.unique(symbols, return_counts=True)
    return symbols.shape[0] / total_seconds * _entropy_bits(counts / counts.sum())


def mean_segment_length(units: Sequence) -> float:
    """Frames per run of equal consecutive units, pooled over the split."""
    seqs = [to_numpy(z).reshape(-1) for z in units]
    runs = sum(len(_runs(z)[0]) for z in seqs)
    if runs == 0:
        raise ValueError("no units")
    return sum(len(z) for z in seqs) / runs


def used_units(units: Sequence) -> int:
    """Number of distinct units over the split."""
    return int(len(np.unique(np.concatenate([to_numpy(z).reshape(-1) for z in units]))))


# ---------------------------------------------------------------------------------------------- ABX


def _dtw_matrix(items: list[np.ndarray], chunk: int = 8192) -> np.ndarray:
    """Symmetric (M, M) DTW distances between discrete sequences (frame distance: 0 equal / 1 different),
    path cost / (n + m); the dynamic programme runs over the padded L × L grid, vectorised over pairs."""
    m = len(items)
    lengths = np.array([len(x) for x in items], dtype=np.int64)
    width = int(lengths.max())
    padded = np.full((m, width), -1, dtype=np.int64)
    for k, x in enumerate(items):
        padded[k, : len(x)] = x
    rows, cols = np.triu_indices(m, k=1)
    out = np.zeros((m, m), dtype=np.float64)
    for start in range(0, len(rows), chunk):
        a, b = rows[start : start + chunk], cols[start : start + chunk]
        dist = (padded[a][:, :, None] != padded[b][:, None, :]).astype(np.float32)  # (P, L, L)
        cost = np.full(dist.shape, np.inf, dtype=np.float32)
        cost[:, 0, 0] = dist[:, 0, 0]
        for i in range(width):
            for j in range(width):
                if i == 0 and j == 0:
                    continue
                best = np.full(len(a), np.inf, dtype=np.float32)
                if i > 0:
                    best = np.minimum(best, cost[:, i - 1, j])
                if j > 0:
                    best = np.minimum(best, cost[:, i, j - 1])
                if i > 0 and j > 0:
                    best = np.minimum(best, cost[:, i - 1, j - 1])
                cost[:, i, j] = dist[:, i, j] + best
        final = cost[np.arange(len(a)), lengths[a] - 1, lengths[b] - 1]
        out[a, b] = out[b, a] = final / (lengths[a] + lengths[b])
    return out


def abx_error(
    labels: Sequence,
    units: Sequence,
    speakers: Sequence[str],
    *,
    mode: str = "within",
    ignore_labels: Sequence = (),
    max_items_per_cell: int = 8,
    max_item_frames: int = 40,
    seed: int = 0,
) -> float:
    """ABX error rate of discrete units over reference label segments (see the module docstring).

    Args:
        labels / units: per-utterance frame sequences (same lengths).
        speakers: the speaker of each utterance.
        mode: ``"within"`` (A, B, X one speaker) or ``"across"`` (A, B one speaker, X another).
        ignore_labels: labels that are not items (silence, blanks, word spaces).
        max_items_per_cell: at most this many segments per (label, speaker), drawn with ``seed`` — keeps the
            number of DTWs at (labels × speakers × this)².
        max_item_frames: longer segments keep their first this many frames.

    Returns:
        The error in [0, 1] (0.5 = chance). ``nan`` when no cell has enough items (e.g. one speaker, across).
    """
    if mode not in ("within", "across"):
        raise ValueError(f"mode={mode!r} must be 'within' or 'across'")
    ls, us = _pairs(labels, units)
    if len(speakers) != len(ls):
        raise ValueError(f"got {len(speakers)} speakers for {len(ls)} utterances")
    ignore = set(ignore_labels)
    cells: dict[tuple, list[np.ndarray]] = {}
    for y, z, spk in zip(ls, us, speakers):
        values, starts = _runs(y)
        ends = np.append(starts[1:], len(y))
        for v, s, e in zip(values, starts, ends):
            v = v.item() if hasattr(v, "item") else v
            if v in ignore:
                continue
            cells.setdefault((v, str(spk)), []).append(z[s : min(e, s + max_item_frames)].astype(np.int64))
    rng = np.random.default_rng(seed)
    items, where = [], {}
    for key in sorted(cells, key=lambda k: (str(k[0]), k[1])):
        segs = cells[key]
        if len(segs) > max_items_per_cell:
            segs = [segs[i] for i in sorted(rng.choice(len(segs), max_items_per_cell, replace=False))]
        where[key] = list(range(len(items), len(items) + len(segs)))
        items += segs
    if len(items) < 3:
        return float("nan")
    dist = _dtw_matrix(items)
    label_set = sorted({k[0] for k in where}, key=str)
    speaker_set = sorted({k[1] for k in where})
    scores = []
    for spk in speaker_set:
        x_speakers = [spk] if mode == "within" else [s for s in speaker_set if s != spk]
        for a in label_set:
            idx_a = where.get((a, spk))
            if not idx_a:
                continue
            for b in label_set:
                idx_b = where.get((b, spk))
                if b == a or not idx_b:
                    continue
                for xs in x_speakers:
                    idx_x = where.get((a, xs))
                    if not idx_x:
                        continue
                    d_ax = dist[np.ix_(idx_a, idx_x)]  # (nA, nX)
                    d_bx = dist[np.ix_(idx_b, idx_x)]  # (nB, nX)
                    err = (d_ax[:, None, :] > d_bx[None, :, :]) + 0.5 * (d_ax[:, None, :] == d_bx[None, :, :])
                    if mode == "within":  # X must differ from A
                        valid = np.ones(err.shape, dtype=bool)
                        for i, ia in enumerate(idx_a):
                            valid[i, :, idx_x.index(ia)] = False
                        if not valid.any():
                            continue
                        scores.append(float(err[valid].mean()))
                    else:
                        scores.append(float(err.mean()))
    return float(np.mean(scores)) if scores else float("nan")


# ---------------------------------------------------------------------------------------------- all at once


def unit_quality_metrics(
    labels: Sequence,
    units: Sequence,
    *,
    frame_seconds: float,
    boundary_tolerance: int,
    speakers: Sequence[str] | None = None,
    ignore_labels: Sequence = (),
    abx_max_items_per_cell: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of this module for frame-aligned ``labels`` / ``units`` (a flat dict for results.json).

    ``frame_seconds`` is the duration of one reference frame (0.01 for 10 ms speech frames; handwriting has no
    time axis: pass 1.0 and read the bitrate as bits per column). ABX is added when ``speakers`` is given.
    """
    ls, us = _pairs(labels, units)
    total_frames = sum(len(y) for y in ls)
    bf = boundary_f1(ls, us, boundary_tolerance)
    out: dict[str, Any] = {
        "purity": purity(ls, us),
        "cluster_purity": cluster_purity(ls, us),
        "pnmi": pnmi(ls, us),
        "nmi": nmi(ls, us),
        "boundary_precision": bf["precision"],
        "boundary_recall": bf["recall"],
        "boundary_f1": bf["f1"],
        "boundary_tolerance_frames": bf["tolerance_frames"],
        "mapped_error_rate": mapped_error_rate(ls, us),
        "bitrate_bits_per_second": bitrate_bits_per_second(us, total_frames * frame_seconds),
        "mean_segment_length": mean_segment_length(us),
        "used_units": used_units(us),
        "num_frames": int(total_frames),
        "num_utterances": len(ls),
    }
    if speakers is not None:
        for mode in ("within", "across"):
            value = abx_error(ls, us, speakers, mode=mode, ignore_labels=ignore_labels,
                              max_items_per_cell=abx_max_items_per_cell, seed=seed)
            out[f"abx_{mode}_speaker"] = value if math.isfinite(value) else None
    return out


__all__ = [
    "abx_error",
    "bitrate_bits_per_second",
    "boundary_f1",
    "cluster_purity",
    "codebook_tuples_to_ids",
    "joint_counts",
    "majority_mapping",
    "mapped_error_rate",
    "mean_segment_length",
    "nmi",
    "pnmi",
    "purity",
    "unit_quality_metrics",
    "units_to_frames",
    "used_units",
]
