"""Phone error rate (PER), pooled over a whole split.

    PER = Σ_i edit_distance(hyp_i, ref_i) / Σ_i len(ref_i)

with the Levenshtein distance over label sequences (substitutions + deletions + insertions, each cost 1;
computed with ``editdistance``). This is the corpus-level rate: one long utterance weighs more than a
short one, and batching never changes the number. (DistSup averaged per-batch rates, which depends on
the batch composition; we do not.) The value is a fraction; multiply by 100 for the percentages of the
paper's Table I. It can exceed 1 when hypotheses contain many insertions.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from .._extras import require
from ._arrays import to_numpy


def _as_sequences(seqs: Any, name: str) -> list[list]:
    """Label sequences from a list of lists / strings, or a padded ``(B, L)`` array/tensor.

    Padded arrays use negative values (``-100``, the CTC label padding) for padding: those are dropped.
    A string is split on whitespace (``"sil hh ah"`` → three phones).
    """
    if hasattr(seqs, "detach") or isinstance(seqs, np.ndarray):
        arr = to_numpy(seqs)
        if arr.ndim != 2:
            raise ValueError(f"{name}: a padded array must have shape (B, L), got {tuple(arr.shape)}")
        return [[int(v) for v in row if v >= 0] for row in arr]
    out = []
    for i, s in enumerate(seqs):
        if isinstance(s, str):
            out.append(s.split())
        elif hasattr(s, "detach") or isinstance(s, np.ndarray):
            out.append([int(v) for v in to_numpy(s).reshape(-1) if v >= 0])
        else:
            try:
                out.append(list(s))
            except TypeError:
                raise TypeError(f"{name}[{i}]: expected a sequence of labels, got {type(s).__name__}") from None
    return out


def edit_distance_counts(predictions: Any, references: Any) -> tuple[int, int]:
    """``(Σ edit distance, Σ reference length)`` over paired hypothesis/reference sequences."""
    preds = _as_sequences(predictions, "predictions")
    refs = _as_sequences(references, "references")
    if len(preds) != len(refs):
        raise ValueError(f"got {len(preds)} predictions but {len(refs)} references")
    editdistance = require("editdistance", "speech", "the phone error rate")
    errors = sum(int(editdistance.eval(p, r)) for p, r in zip(preds, refs))
    return errors, sum(len(r) for r in refs)


def phone_error_rate(predictions: Any, references: Any) -> float:
    """Pooled PER = Σ edit distance / Σ reference length (a fraction, not a percentage).

    Args:
        predictions: hypotheses, e.g. the output of :func:`~vq_hf.metrics.ctc_greedy_decode` — lists of
            label ids, whitespace-separated strings, or a padded ``(B, L)`` array with negative padding.
        references: reference sequences in the same forms (``labels`` padded with ``-100`` work as is).

    Raises:
        ValueError: on a length mismatch, or when the references hold no labels at all.
    """
    errors, ref_len = edit_distance_counts(predictions, references)
    if ref_len == 0:
        raise ValueError("phone_error_rate: the references contain no labels (total length 0)")
    return errors / ref_len


class PhoneErrorRate:
    """Streaming pooled PER: ``add_batch`` per batch, ``compute`` at the end.

    The state is two integers (errors, reference length), so under DDP each rank accumulates its own
    shard and :meth:`all_reduce` sums them (``torch.distributed``; a no-op without a process group) —
    the result equals :func:`phone_error_rate` on the concatenated split.

    Example::

        per = PhoneErrorRate()
        for batch in loader:
            out = model(**batch)
            per.add_batch(ctc_greedy_decode(out.logits, out.output_lengths), batch["labels"])
        per.all_reduce()
        print(per.compute())
    """

    def __init__(self) -> None:
        self.errors = 0
        self.reference_length = 0
        self.num_sequences = 0

    def reset(self) -> None:
        self.errors = self.reference_length = self.num_sequences = 0

    def add_batch(self, predictions: Any, references: Any) -> None:
        refs = _as_sequences(references, "references")
        errors, ref_len = edit_distance_counts(predictions, refs)
        self.errors += errors
        self.reference_length += ref_len
        self.num_sequences += len(refs)

    def update(self, predictions: Iterable[Sequence], references: Iterable[Sequence]) -> None:
        """Alias of :meth:`add_batch`."""
        self.add_batch(predictions, references)

    def merge(self, other: "PhoneErrorRate") -> "PhoneErrorRate":
        """Add another accumulator's counts into this one (e.g. gathered from another process)."""
        self.errors += other.errors
        self.reference_length += other.reference_length
        self.num_sequences += other.num_sequences
        return self

    def all_reduce(self, device: Any = None) -> "PhoneErrorRate":
        """Sum the counts over all ranks of the default process group (no-op when not distributed).

        ``device``: where the reduction tensor lives (``cuda`` for NCCL); defaults to the current CUDA
        device under NCCL and the CPU otherwise.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([self.errors, self.reference_length, self.num_sequences], dtype=torch.int64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        self.errors, self.reference_length, self.num_sequences = (int(v) for v in t.tolist())
        return self

    def compute(self) -> float:
        if self.reference_length == 0:
            raise ValueError("PhoneErrorRate.compute: no reference labels were added")
        return self.errors / self.reference_length

    def state_dict(self) -> dict[str, int]:
        return {"errors": self.errors, "reference_length": self.reference_length, "num_sequences": self.num_sequences}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.errors = int(state["errors"])
        self.reference_length = int(state["reference_length"])
        self.num_sequences = int(state["num_sequences"])
