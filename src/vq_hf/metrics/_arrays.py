"""Input normalisation shared by the metric functions: tensors, arrays and nested lists → numpy."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch here
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def as_int_codes(codes: Any, name: str = "codes") -> np.ndarray:
    """Integer code array, shape ``(..., num_codebooks)`` or ``(N,)``; refuses floats and ragged input."""
    try:
        arr = to_numpy(codes)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name}: could not be converted to a rectangular array ({err})") from None
    if arr.dtype == object:
        raise ValueError(f"{name}: ragged or mixed-type input (dtype=object); concatenate the sequences first")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer code indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def codes_2d(codes: Any, mask: Any = None, name: str = "codes") -> np.ndarray:
    """Flatten codes to ``(num_positions, num_codebooks)``.

    The last axis is the codebook axis (the quantizer's ``out.codes`` layout, ``(..., num_codebooks)``);
    a 1-D array is a single codebook. ``mask`` (the leading shape ``codes.shape[:-1]``, True = real
    position) drops padded positions.
    """
    arr = as_int_codes(codes, name)
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected at least one dimension, got a scalar")
    if arr.ndim == 1:
        arr = arr[:, None]
    if mask is not None:
        m = to_numpy(mask).astype(bool)
        if m.shape != arr.shape[:-1]:
            raise ValueError(
                f"mask: shape {tuple(m.shape)} does not match the positions of {name} {tuple(arr.shape[:-1])} "
                f"({name} has shape (..., num_codebooks) = {tuple(arr.shape)})"
            )
        return arr[m]
    return arr.reshape(-1, arr.shape[-1])


def check_range(codes2d: np.ndarray, codebook_size: int, name: str = "codes") -> None:
    if codebook_size is None or int(codebook_size) < 1:
        raise ValueError(f"codebook_size must be a positive integer, got {codebook_size!r}")
    if codes2d.size == 0:
        return
    lo, hi = int(codes2d.min()), int(codes2d.max())
    if lo < 0 or hi >= codebook_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name}: code index {bad} is outside [0, codebook_size={codebook_size})")


def stack_example_codes(codes: Any) -> np.ndarray:
    """Concatenate per-example code lists (the rows an ``evaluate`` module receives) into ``(N, num_codebooks)``.

    Each example is a flat list (one codebook) or a list of positions × codebooks; empty examples are allowed.
    """
    rows = [np.asarray(c, dtype=np.int64) for c in codes]
    rows = [r[:, None] if r.ndim == 1 else r for r in rows]
    widths = sorted({r.shape[1] for r in rows if r.size})
    if len(widths) > 1:
        raise ValueError(f"codes: examples have different numbers of codebooks: {widths}")
    width = widths[0] if widths else 1
    rows = [r.reshape(-1, width) for r in rows]
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, width), dtype=np.int64)
