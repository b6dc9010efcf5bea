"""Greedy (best-path) CTC decoding.

A leaf module (numpy/torch only, no model imports), so ``vq_hf.models`` may import it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import to_numpy


def ctc_greedy_decode(log_probs: Any, lengths: Any = None, blank_id: int = 0) -> list[list[int]]:
    """Best-path decoding: argmax per frame, collapse repeated labels, then drop blanks.

    Repeats are merged *before* blanks are removed, so ``a a ∅ a`` decodes to ``a a`` (a blank separates
    two genuine repetitions) and ``a a a`` to ``a``.

    Args:
        log_probs: ``(B, T, C)`` scores per frame (log-probabilities or logits; only the argmax is used),
            or ``(B, T)`` frame label ids already argmax-ed; a torch tensor or numpy array.
        lengths: ``(B,)`` number of valid frames per row (frames at or beyond it are ignored); ``None``
            means all ``T`` frames are valid.
        blank_id: index of the CTC blank (0 in vq_hf's CTC head; the config's ``ctc_blank_id``).

    Returns:
        One list of label ids per row.
    """
    if hasattr(log_probs, "detach"):
        ndim, integer = log_probs.dim(), not (log_probs.is_floating_point() or log_probs.is_complex())
    else:
        log_probs = np.asarray(log_probs)
        ndim, integer = log_probs.ndim, np.issubdtype(log_probs.dtype, np.integer)
    if not (ndim == 3 or (ndim == 2 and integer)):
        raise ValueError(
            f"log_probs: expected shape (B, T, C) scores or (B, T) integer ids, got {tuple(log_probs.shape)}"
        )
    if ndim == 2:
        best = to_numpy(log_probs).astype(np.int64)
    elif hasattr(log_probs, "detach"):  # argmax on the tensor's own device, then move only (B, T) ints
        best = to_numpy(log_probs.argmax(dim=-1))
    else:
        best = to_numpy(log_probs).argmax(axis=-1)
    b, t = best.shape
    if ndim == 3 and not 0 <= blank_id < log_probs.shape[-1]:
        raise ValueError(f"blank_id={blank_id} is not a valid class index for C={log_probs.shape[-1]}")
    if lengths is None:
        lens = np.full((b,), t, dtype=np.int64)
    else:
        lens = to_numpy(lengths).astype(np.int64).reshape(-1)
        if lens.shape[0] != b:
            raise ValueError(f"lengths: {lens.shape[0]} entries for a batch of {b}")
        if (lens < 0).any() or (lens > t).any():
            raise ValueError(f"lengths: values must lie in [0, T={t}], got {lens.tolist()}")
    valid = np.arange(t)[None, :] < lens[:, None]
    changed = np.ones_like(best, dtype=bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = valid & changed & (best != blank_id)
    return [best[i][keep[i]].tolist() for i in range(b)]
