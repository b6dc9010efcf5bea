"""Codebook learning-rate multiplier via optimizer param groups (works with any torch optimizer,
accelerate and the transformers ``Trainer``).

The reference trains codebooks with 10× the base LR in a separate Adam group (notes §1.5). Param groups
are plain dicts, so LR schedulers scale every group from its own base LR and gradient clipping still sees
all parameters. With the ``Trainer``, pass ``optimizers=(torch.optim.AdamW(codebook_param_groups(model,
lr)), None)`` or override ``create_optimizer``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .quantizer import VectorQuantizer

__all__ = ["codebook_param_groups", "reset_codebook_optimizer_state"]


def _codebook_params(model: nn.Module) -> list[tuple[str, nn.Parameter, float]]:
    out = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, VectorQuantizer) and id(module.codebook) not in seen:
            seen.add(id(module.codebook))
            out.append((f"{name}.codebook" if name else "codebook", module.codebook, module.codebook_lr_multiplier))
    return out


def codebook_param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer param groups: codebooks at ``lr × codebook_lr_multiplier``, everything else at ``lr``.

    Args:
        model: any module containing :class:`VectorQuantizer` s.
        lr: the base learning rate (> 0).
        weight_decay: applied to the non-codebook group; codebooks get no weight decay (it would pull
            codewords towards 0 regardless of the data).

    Returns:
        A list of dicts (``params``, ``lr``, ``weight_decay``, ``name``): one group per distinct multiplier
        of trainable codebooks, then the rest. Frozen parameters and EMA codebooks (no gradient) are left out;
        every trainable parameter appears exactly once.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    by_mult: dict[float, list[nn.Parameter]] = {}
    codebook_ids: set[int] = set()
    for _, param, mult in _codebook_params(model):
        codebook_ids.add(id(param))
        if param.requires_grad:
            by_mult.setdefault(mult, []).append(param)
    rest = []
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in codebook_ids or id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        rest.append(p)
    groups = [
        {"params": params, "lr": lr * mult, "weight_decay": 0.0, "name": f"codebook_x{mult:g}"}
        for mult, params in by_mult.items()
    ]
    if rest:
        groups.append({"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "default"})
    if not groups:
        raise ValueError("codebook_param_groups: the model has no trainable parameters")
    return groups


def reset_codebook_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module | Iterable[nn.Module]) -> int:
    """Drop the optimizer state (e.g. Adam moments) of every codebook in ``model``.

    Optional after a re-estimation (``VectorQuantizerOutput.reestimated``): by default moments are kept,
    as in the reference. Returns how many parameters had state removed.
    """
    modules = [model] if isinstance(model, nn.Module) else list(model)
    removed = 0
    for m in modules:
        for _, param, _ in _codebook_params(m):
            if param in optimizer.state:
                del optimizer.state[param]
                removed += 1
    return removed
