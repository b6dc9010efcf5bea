"""Batching for the speech (WSJ) datasets: random training chunks, whole evaluation utterances, padding."""

from __future__ import annotations

import copy

import numpy as np
import torch

from .collators import IGNORE_INDEX


def chunk_labels(
    phone_ids, phone_starts, phone_ends, start: int, end: int, collapse_repeats: bool = True
) -> list[int]:
    """Phone ids of the alignment segments that overlap frames [start, end), in order, blanks (0) dropped.

    ``collapse_repeats`` merges consecutive equal ids, as the reference does when it turns frame
    alignments into CTC targets.
    """
    out: list[int] = []
    for phone, s, e in zip(phone_ids, phone_starts, phone_ends):
        phone, s, e = int(phone), int(s), int(e)
        if s < end and e > start and phone != 0:
            if not (collapse_repeats and out and out[-1] == phone):
                out.append(phone)
    return out


class SpeechCollator:
    """Pads ``load_wsj`` items into model inputs, optionally cropping random training chunks.

    Args:
        chunk_frames: training chunk length (64 in the reference); ``None`` keeps whole utterances
            (evaluation). Utterances no longer than the chunk are used whole.
        seed: seed of the collator's own ``torch.Generator`` for chunk offsets. Inside a DataLoader worker the
            generator is re-seeded from (seed, the worker's per-epoch seed), so workers and epochs draw
            different, reproducible chunks. ``None`` uses torch's global RNG (seeded by ``set_seed`` and, in
            workers, by the DataLoader).
        pad_to_multiple_of: pad the time axis to a multiple of this (3: the speech front-end's time
            reduction); padded frames are 0 with ``attention_mask`` 0.
        collapse_repeats: merge consecutive equal phones in chunk labels.
        return_lengths: also return ``input_lengths`` (B,) and ``label_lengths`` (B,).

    Returns (``__call__``):
        ``input_features`` float32 (B, T, 243), ``attention_mask`` int64 (B, T) (1 = real frame),
        ``labels`` int64 (B, L) phone ids padded with −100 (L ≥ 1).
    """

    def __init__(
        self,
        chunk_frames: int | None = 64,
        seed: int | None = 0,
        pad_to_multiple_of: int = 3,
        collapse_repeats: bool = True,
        return_lengths: bool = False,
    ):
        if chunk_frames is not None and chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1 or None, got {chunk_frames}")
        if pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
        self.chunk_frames = chunk_frames
        self.seed = seed
        self.pad_to_multiple_of = pad_to_multiple_of
        self.collapse_repeats = collapse_repeats
        self.return_lengths = return_lengths
        self._generator: torch.Generator | None = None
        self._generator_key: int | None = None
        self._exact_seed = False

    def with_seed(self, seed: int) -> "SpeechCollator":
        """A copy whose chunk offsets come from ``seed`` alone, in any DataLoader worker.

        Trainers that need exact resume derive one seed per batch (e.g. from the run seed, the epoch and the
        batch's example indices) and collate with ``collator.with_seed(seed)``: the crops then do not depend
        on which worker, or which process after a restart, collates the batch.
        """
        twin = copy.copy(self)
        twin.seed = int(seed)
        twin._generator = None
        twin._generator_key = None
        twin._exact_seed = True
        return twin

    def _rng(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = None if self._exact_seed else torch.utils.data.get_worker_info()
        key = -1 if info is None else int(info.seed)
        if self._generator is None or self._generator_key != key:
            self._generator = torch.Generator()
            mixed = self.seed if info is None else hash((self.seed, key)) & 0x7FFF_FFFF_FFFF_FFFF
            self._generator.manual_seed(mixed)
            self._generator_key = key
        return self._generator

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("SpeechCollator received an empty batch")
        feats, labels = [], []
        for index, item in enumerate(items):
            x = item["input_features"]
            x = (x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))).to(torch.float32)
            if x.ndim != 2:
                raise ValueError(f"batch item {index}: input_features must be (T, D), got shape {tuple(x.shape)}")
            length = x.shape[0]
            if self.chunk_frames is not None:
                missing = [k for k in ("phone_ids", "phone_starts", "phone_ends") if k not in item]
                if missing:
                    raise KeyError(
                        f"batch item {index} lacks {missing}: training chunks need the alignment columns of load_wsj "
                        "(or use chunk_frames=None for whole utterances)"
                    )
                start = 0
                if length > self.chunk_frames:
                    start = int(torch.randint(0, length - self.chunk_frames + 1, (1,), generator=self._rng()))
                end = min(length, start + self.chunk_frames)
                x = x[start:end]
                ids = chunk_labels(item["phone_ids"], item["phone_starts"], item["phone_ends"], start, end, self.collapse_repeats)
            else:
                if "labels" not in item:
                    raise KeyError(f"batch item {index} has no 'labels'")
                ids = [int(v) for v in item["labels"]]
            feats.append(x)
            labels.append(ids)

        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        width = int(lengths.max())
        width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        dim = feats[0].shape[1]
        batch = torch.zeros(len(feats), width, dim, dtype=torch.float32)
        mask = torch.zeros(len(feats), width, dtype=torch.long)
        for i, f in enumerate(feats):
            if f.shape[1] != dim:
                raise ValueError(f"batch item {i}: feature dimension {f.shape[1]} differs from item 0's {dim}")
            batch[i, : f.shape[0]] = f
            mask[i, : f.shape[0]] = 1
        label_lengths = torch.tensor([len(ids) for ids in labels], dtype=torch.long)
        padded = torch.full((len(labels), max(1, int(label_lengths.max()))), IGNORE_INDEX, dtype=torch.long)
        for i, ids in enumerate(labels):
            if ids:
                padded[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        out = {"input_features": batch, "attention_mask": mask, "labels": padded}
        if self.return_lengths:
            out["input_lengths"] = lengths
            out["label_lengths"] = label_lengths
        return out


__all__ = ["SpeechCollator", "chunk_labels"]
