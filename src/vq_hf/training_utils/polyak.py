"""Polyak averaging (an exponential moving average of the parameters) with ``torch.optim.swa_utils``.

``avg ← d·avg + (1 − d)·θ`` after every optimizer step (:class:`~torch.optim.swa_utils.AveragedModel` with
``get_ema_multi_avg_fn(d)``: one fused ``lerp`` over all parameters), in the parameters' dtype (fp32: mixed
precision autocasts, it does not store low-precision weights).

Buffers are never averaged (``use_buffers=False``): batch-norm running statistics, EMA codebook statistics,
usage counters, the reservoir and the re-estimation schedule are copied from the live model whenever the
average is used (:func:`averaged_model`). Averaging them would smooth EMA statistics a second time and
truncate integer counters (hf-conventions §7.4). For the same reason a parameter the optimizer does not
train (an EMA codebook, ``requires_grad=False``: already an average) is taken from the live model.

Re-initialised codewords: when data-dependent re-estimation overwrites a trainable codebook with k-means
centroids, the average keeps blending the old and the new codewords for about 1/(1 − d) steps (500 for
d = 0.998). That is the reference behaviour and the reason for the high early Polyak bits/dim of the
paper's Fig. 4; once re-estimation stops, the average converges like any other.

Where the average starts (``training.polyak_debias``): ``false`` starts it from the initial weights, as the
reference trainer does; ``true`` starts it from the weights after the first optimizer step (AveragedModel's
own first update copies), so that short runs (the quickstart) evaluate an average of visited weights
instead of one dominated by the initialisation; after t updates the first one keeps a weight of d^(t−1).

A checkpoint holds the averaged trainable parameters and the update count only (:class:`AverageState`):
the averaged module's buffers are stale copies that :func:`averaged_model` overwrites anyway.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def polyak_average(model: nn.Module, decay: float, start_from_init: bool = True) -> AveragedModel:
    """An AveragedModel of ``model`` whose next updates compute the Polyak average with ``decay``."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"polyak decay must be in [0, 1), got {decay!r}")
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
    if start_from_init:
        averaged.update_parameters(model)  # the first update copies: the average starts at θ_0
    return averaged


def _trained(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad and p.is_floating_point()}


@torch.no_grad()
def averaged_model(averaged: AveragedModel, live: nn.Module) -> nn.Module:
    """The averaged module with the live model's buffers and untrained parameters (shared, not copied)."""
    trained = _trained(live)
    module = averaged.module
    state = {k: v for k, v in live.state_dict().items() if k not in trained}
    module.load_state_dict(state, strict=False)
    if averaged.n_averaged.item() == 0:  # nothing averaged yet: the live weights are the only visited ones
        module.load_state_dict(live.state_dict())
    module.train(live.training)
    return module


class AverageState:
    """What a checkpoint needs of the average (accelerate ``register_for_checkpointing`` protocol):
    the averaged trained parameters and ``n_averaged`` — not a second copy of the model's buffers."""

    def __init__(self, averaged: AveragedModel, live: nn.Module):
        self.averaged = averaged
        self.keys = {f"module.{n}" for n in _trained(live)} | {"n_averaged"}

    def state_dict(self) -> dict:
        return {k: v for k, v in self.averaged.state_dict().items() if k in self.keys}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != self.keys:
            differing = sorted(set(state) ^ self.keys)[:5]
            raise ValueError(f"Polyak state does not match the model: differing parameters {differing}")
        self.averaged.load_state_dict(state, strict=False)
