"""Algorithm 1's schedule: warm-up pass-through → re-estimation window → plain VQ.

All decisions are pure functions of an integer *position* — the optimizer step (``unit="steps"``) or the
epoch set by ``start_epoch`` (``unit="epochs"``) — held on the host, so the per-step tensor path has no
value-dependent control flow.

With ``M_init = warmup``, ``r = every`` and ``M_reestim = length``:

- positions ``< M_init``: no quantization (the input passes through), the reservoir fills;
- re-estimation (k-means++ from the reservoir, then a reservoir reset) at ``M_init`` — the data-dependent
  initialisation, always — and at ``M_init + j·r`` for ``j ≥ 1`` while ``j·r < M_reestim``;
- the reservoir is only filled up to the last re-estimation; afterwards plain VQ.

Epoch mode reproduces the reference runs (DistSup ``bottleneck_enforce_from_epoch`` / ``reestimate_max_epochs``):
the reservoir is also reset at the start of every warm-up epoch, so the first k-means sees the last
warm-up epoch only, and re-estimation happens at the first training step of each scheduled epoch.
E.g. the reference CIFAR run (1-based epochs 1–2 warm-up, k-means at the start of epochs 3…101) is
``warmup=2, every=1, length=99`` with 0-based epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReestimationSchedule"]


@dataclass(frozen=True)
class ReestimationSchedule:
    """Schedule decisions for one quantizer.

    Args:
        warmup: M_init (positions without quantization).
        every: r_reestim (≥ 1).
        length: M_reestim (re-estimation window after warm-up).
        unit: ``"steps"`` or ``"epochs"``.
        reestimating: False disables re-estimation and sampling (vanilla / EMA); the warm-up still applies.
    """

    warmup: int = 0
    every: int = 100
    length: int = 0
    unit: str = "steps"
    reestimating: bool = False

    def __post_init__(self):
        if self.unit not in ("steps", "epochs"):
            raise ValueError(f"reestimation_unit must be 'steps' or 'epochs', got {self.unit!r}")
        # named as the quantizer's arguments: this is where those three are checked
        check_int("warmup_steps", self.warmup, 0)
        check_int("reestimate_every", self.every, 1)
        check_int("reestimate_steps", self.length, 0)

    @property
    def last_reestimation(self) -> int:
        """The last position at which re-estimation happens (−1 when disabled)."""
        if not self.reestimating:
            return -1
        if self.length == 0:
            return self.warmup
        return self.warmup + ((self.length - 1) // self.every) * self.every

    def quantizing(self, position: int) -> bool:
        return position >= self.warmup

    def reestimates_at(self, position: int) -> bool:
        if not self.reestimating or position < self.warmup or position > self.last_reestimation:
            return False
        return (position - self.warmup) % self.every == 0

    def sampling(self, position: int) -> bool:
        """Whether the reservoir is fed at ``position``."""
        return self.reestimating and position <= self.last_reestimation

    def resets_reservoir_at(self, position: int) -> bool:
        """Epoch mode: the reservoir restarts at every warm-up epoch (reference behaviour)."""
        return self.reestimating and self.unit == "epochs" and position < self.warmup

    def reestimation_positions(self, horizon: int) -> list[int]:
        """All re-estimation positions below ``horizon`` (for logging and tests)."""
        return [p for p in range(horizon) if self.reestimates_at(p)]


def check_int(name: str, value, minimum: int) -> None:
    """``value`` is an int (not a bool) ≥ ``minimum``, else a ValueError naming ``name``, the value and the bound."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
