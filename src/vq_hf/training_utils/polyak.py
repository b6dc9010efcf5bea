"""Polyak averaging (an exponential moving average of the parameters), as the reference trainer does.

``avg ← d·avg + (1 − d)·θ`` after every optimizer step, over the floating-point parameters the optimizer
trains (``requires_grad``), kept in fp32. Buffers are never averaged: batch-norm running statistics, EMA codebook statistics, usage counters,
the reservoir and the re-estimation schedule are copied from the live model whenever the averaged model is
materialised (:meth:`PolyakAverage.averaged_model`). Averaging them would smooth EMA statistics a second
time and truncate integer counters (hf-conventions §7.4).

Re-initialised codewords: when data-dependent re-estimation overwrites a trainable codebook with k-means
centroids, the average keeps blending the old and the new codewords for about 1/(1 − d) steps (500 for
d = 0.998). That is the reference behaviour and the reason for the high early Polyak bits/dim of the
paper's Fig. 4; once re-estimation stops, the average converges like any other. An EMA codebook is not
trained by the optimizer (``requires_grad=False``; it is already an average), so it is not averaged again: the
averaged model always uses the live EMA codebook.

``debias=True`` starts the average from zero and divides by ``1 − d^t`` (as Adam's moments), which makes
short runs (the quickstart) evaluate a proper average of the visited weights instead of one dominated by
the initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class PolyakAverage:
    """Shadow fp32 copy of a model's floating parameters; ``state_dict`` makes it checkpointable."""

    def __init__(self, model: nn.Module, decay: float = 0.998, debias: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"polyak decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.debias = bool(debias)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {}
        for name, p in model.named_parameters():
            if p.is_floating_point() and p.requires_grad:
                t = p.detach().float().clone()
                self.shadow[name] = torch.zeros_like(t) if debias else t
        self._scratch: nn.Module | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the live parameters in; call after each optimizer step on the unwrapped model."""
        self.num_updates += 1
        params = dict(model.named_parameters())
        names = list(self.shadow)
        shadow = [self.shadow[n] for n in names]
        live = [params[n].detach().float() for n in names]
        if names:  # one fused kernel over all tensors: avg = d·avg + (1 − d)·θ
            torch._foreach_lerp_(shadow, live, 1.0 - self.decay)

    def averaged_parameters(self) -> dict[str, torch.Tensor]:
        if self.debias and self.num_updates > 0:
            scale = 1.0 / (1.0 - self.decay**self.num_updates)
            return {n: t * scale for n, t in self.shadow.items()}
        return self.shadow

    @torch.no_grad()
    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A model with the averaged parameters and the live model's buffers (a reused scratch copy).

        Before any update the live parameters are used (nothing has been averaged yet).
        """
        if self._scratch is None:
            self._scratch = copy.deepcopy(model)
        scratch = self._scratch
        scratch.load_state_dict(model.state_dict())  # buffers (and parameters, overwritten below)
        if self.num_updates > 0:
            avg = self.averaged_parameters()
            for name, p in scratch.named_parameters():
                if name in avg:
                    p.copy_(avg[name].to(p.dtype))
        scratch.train(model.training)
        return scratch

    def to(self, device) -> "PolyakAverage":
        self.shadow = {n: t.to(device) for n, t in self.shadow.items()}
        return self

    # accelerate.register_for_checkpointing protocol
    def state_dict(self) -> dict:
        return {"decay": self.decay, "debias": self.debias, "num_updates": self.num_updates,
                "shadow": {n: t.clone() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"Polyak state does not match the model: differing parameters {sorted(missing)[:5]}")
        self.decay = float(state["decay"])
        self.debias = bool(state["debias"])
        self.num_updates = int(state["num_updates"])
        device = next(iter(self.shadow.values())).device if self.shadow else "cpu"
        self.shadow = {n: t.to(device).float().clone() for n, t in state["shadow"].items()}
