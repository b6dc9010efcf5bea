"""Dead-code revival after the re-estimation window.

Re-estimation (Algorithm 1) stops after ``warmup + reestimate_steps``; codes that die afterwards — e.g.
because the input distribution moves — stay dead. Revival keeps the reservoir filling after the window
and, every ``revive_every`` positions, re-seeds the codes whose usage has fallen below
``dead_code_threshold``:

- usage: an EMA (decay ``running_usage_decay``) of each code's count per optimizer step on one rank
  (buffer ``count_ema``); under DDP the decision uses the mean over ranks, so the threshold means
  "expected count per step of one rank's batch" whatever the number of ranks;
- replacements: drawn without replacement from the reservoir (all ranks' reservoirs gathered), with
  probability ∝ the squared distance to the nearest live code (k-means++'s D² weighting: the samples the
  live codes serve worst), from a seeded stream — rank 0 draws, the new codewords are broadcast;
- a revived code gets ``count_ema = dead_code_threshold`` (a grace period: unused for long, it falls below
  the threshold and is revived again), EMA quantizers also get matching EMA statistics, so the next EMA
  update does not undo the revival;
- the reservoir is reset after each revival: it holds the inputs since the last one, i.e. the current
  distribution, not the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .search import chunked_nearest_codes

__all__ = ["RevivalSchedule", "choose_replacements"]


@dataclass(frozen=True)
class RevivalSchedule:
    """When revival runs.

    Args:
        threshold: ``dead_code_threshold``; 0 disables revival.
        every: ``revive_every`` (≥ 1).
        start: the position after which revival may happen (the end of the re-estimation window, or of the
            warm-up for quantizers without re-estimation). Revival runs at ``start + j·every``, ``j ≥ 1``.
    """

    threshold: float = 0.0
    every: int = 100
    start: int = 0

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def revives_at(self, position: int) -> bool:
        return self.enabled and position > self.start and (position - self.start) % self.every == 0

    def sampling(self, position: int) -> bool:
        """Whether the reservoir is fed for revival at ``position``."""
        return self.enabled and position >= self.start


@torch.no_grad()
def choose_replacements(
    samples: torch.Tensor, codebook: torch.Tensor, dead: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick replacement codewords for the dead codes of one codebook.

    Args:
        samples: ``(n, D)`` fp32 reservoir contents.
        codebook: ``(K, D)`` current codewords.
        dead: ``(K,)`` bool.
        generator: seeded generator on ``samples.device``.

    Returns:
        ``(indices, vectors)``: the dead code indices that get a replacement (the lowest ``min(#dead, n)``
        of them, in index order) and their new codewords ``(m, D)``.
    """
    dead_idx = dead.nonzero().flatten()
    m = min(int(dead_idx.numel()), int(samples.shape[0]))
    if m == 0:
        return dead_idx[:0], samples[:0]
    live = codebook[~dead].float()
    if live.shape[0] > 0:
        _, d2 = chunked_nearest_codes(samples.unsqueeze(0), live.unsqueeze(0))  # rare host-side call: the reference path
        weights = d2[0].double().clamp_min(1e-30)
    else:
        weights = torch.ones(samples.shape[0], dtype=torch.float64, device=samples.device)
    pick = torch.multinomial(weights, m, replacement=False, generator=generator)
    return dead_idx[:m], samples[pick]
