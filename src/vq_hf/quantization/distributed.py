"""torch.distributed helpers for the quantizer; every one is a no-op without an initialised process group.

The quantizer's DDP contract (see docs/quantization.md):
- EMA statistics accumulated on each rank are summed with ``all_reduce`` before the update, so every rank
  applies the identical update.
- Re-estimation gathers every rank's reservoir, clusters on rank 0 and broadcasts the codebook.
- The trainer must wrap the model with ``broadcast_buffers=False``: otherwise DDP copies rank 0's buffers
  (its reservoir, its pending statistics) over every other rank at each forward.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "get_rank", "get_world_size", "all_reduce_sum_", "all_gather", "broadcast_"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks; returns ``tensor``."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of a fixed-shape tensor, in rank order (``[tensor]`` without DDP)."""
    if not is_distributed():
        return [tensor]
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor.contiguous())
    return out


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In-place broadcast from ``src``; returns ``tensor``."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor
