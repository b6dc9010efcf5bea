"""Finite scalar quantization (Mentzer et al., 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

No codebook: each of ``d = len(levels)`` channels is bounded to ``L_i`` values and rounded,
``ẑ_i = round(f_i(z_i)) / ⌊L_i/2⌋`` with ``f_i(z) = tanh(z + s_i)·h_i − o_i``, ``h_i = (L_i − 1)(1 − ε)/2``,
``o_i = ½`` for even ``L_i`` (0 for odd) and ``s_i = atanh(o_i / h_i)`` so that ``f_i(0) = 0``. (The paper's
code writes ``tan`` for the shift; ``atanh`` is the value that centres the bound — lucidrains' FSQ makes the
same correction; both give the same grid.) Rounding uses the straight-through estimator, so
``∂ẑ_i/∂z_i = f_i'(z_i) / ⌊L_i/2⌋``. The implicit codebook is the grid of ``Π L_i`` points; the code of a
position is its mixed-radix index ``Σ_i (ẑ_i⌊L_i/2⌋ + ⌊L_i/2⌋)·Π_{j<i} L_j``.

The bound and rounding run in fp32 under autocast (vector-quantize-pytorch #114 reports ~50 % code usage in
bf16 against ~100 % in fp32). With ``dim != len(levels)``, linear layers project into and out of the d
channels (``quantized`` is then in the ``dim``-space).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._state import HostCounters, clear_mirrors
from .metrics import code_histogram, perplexity_from_counts, update_usage_
from .quantizer import VectorQuantizer, VectorQuantizerOutput, _check_float, _check_int, complete_options
from .rotation import straight_through

__all__ = ["FiniteScalarQuantizer"]

_BOUND_EPS = 1e-3


class FiniteScalarQuantizer(HostCounters, nn.Module):
    """Codebook-free scalar quantizer with the :class:`VectorQuantizer` output and usage metrics.

    Args:
        levels: values per channel, each ≥ 2 (e.g. ``[8, 5, 5, 5]``: 1,000 implicit codes ≈ 10 bits).
        dim: input channels; defaults to ``len(levels)``. Otherwise linear projections in and out.
        channel_first: input ``(B, C, *spatial)``.
        dead_code_window, running_usage_decay, check_finite: as for :class:`VectorQuantizer`.

    Output: ``codes`` ``(..., 1)`` int64 in ``[0, Π levels)``; ``perplexity``, ``running_perplexity``,
    ``used_codes``, ``dead_code_fraction`` of shape ``(1,)`` over the implicit codebook; ``loss`` and its terms
    0 (FSQ needs no auxiliary loss); ``latents``: the bounded, unrounded values scaled like ``ẑ``.
    """

    _vq_hf_stateful = True  # found by set_update_boundary / start_epoch

    @classmethod
    def validate_options(cls, options, dim: int | None = None) -> dict:
        """Check keyword options as ``FiniteScalarQuantizer(dim=dim, **options)`` would; returns them complete."""
        full = complete_options(cls, options)
        _check_fsq_options({"dim": dim, **full})
        return full

    def __init__(
        self,
        levels: list[int] | tuple[int, ...],
        dim: int | None = None,
        channel_first: bool = False,
        dead_code_window: int = 100,
        running_usage_decay: float = 0.99,
        check_finite: bool = True,
    ):
        super().__init__()
        _check_fsq_options(locals())
        d = len(levels)
        dim = d if dim is None else dim
        self.levels = tuple(int(v) for v in levels)
        self.dim = dim
        self.code_dim = d
        self.codebook_size = math.prod(self.levels)
        self.num_codebooks = 1
        self.channel_first = channel_first
        self.dead_code_window = dead_code_window
        self.running_usage_decay = float(running_usage_decay)
        self.check_finite = check_finite
        self.project_in = nn.Linear(dim, d) if dim != d else None
        self.project_out = nn.Linear(d, dim) if dim != d else None
        # Constants derived from `levels` per device on first use — not buffers, which a model built on the meta
        # device (from_pretrained) would leave empty, since nothing in a checkpoint refills them.
        self._constants: dict[str, dict[str, torch.Tensor]] = {}
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("micro_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.register_buffer("usage_ema", torch.zeros(1, self.codebook_size))
        self.register_buffer("last_used_step", torch.zeros(1, self.codebook_size, dtype=torch.long))
        self.update_boundary = True
        self._mirrors = {}
        self._generators: dict[str, torch.Generator] = {}
        self.register_load_state_dict_post_hook(clear_mirrors)

    def extra_repr(self) -> str:
        return f"levels={list(self.levels)}, dim={self.dim}, codebook_size={self.codebook_size}"

    @property
    def current_step(self) -> int:
        return self._read("step")

    @property
    def quantizing(self) -> bool:
        return True

    def set_epoch(self, epoch: int) -> None:
        VectorQuantizer.set_epoch(self, epoch)

    def _const(self, device: torch.device) -> dict[str, torch.Tensor]:
        c = self._constants.get(str(device))
        if c is None:
            lv = torch.tensor(self.levels, dtype=torch.float64)
            half_l = (lv - 1) * (1 - _BOUND_EPS) / 2
            offset = torch.where(lv % 2 == 0, 0.5, 0.0)
            c = {
                "half_l": half_l.float(),
                "offset": offset.float(),
                "shift": torch.atanh(offset / half_l).float(),
                "half_width": (lv // 2).float(),
                "levels": torch.tensor(self.levels, dtype=torch.long),
                "basis": torch.cumprod(torch.tensor((1,) + self.levels[:-1], dtype=torch.long), 0),
            }
            c = {k: v.to(device) for k, v in c.items()}
            self._constants[str(device)] = c
        return c

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """``f(z)``: each channel squashed into ``(−⌊L/2⌋ − ½, ⌊L/2⌋ + ½)`` (the rounding range), fp32."""
        c = self._const(z.device)
        return torch.tanh(z.float() + c["shift"]) * c["half_l"] - c["offset"]

    def codes_to_grid(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes ``(...)`` → grid points ``ẑ`` ``(..., d)`` in [−1, 1]."""
        c = self._const(codes.device)
        digits = (codes.long().unsqueeze(-1) // c["basis"]) % c["levels"]
        return (digits.float() - c["half_width"]) / c["half_width"]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``(..., 1)`` codes → ``(..., dim)`` (channel_first: ``(B, *spatial, 1)`` → ``(B, dim, *spatial)``)."""
        if codes.dim() < 1 or codes.shape[-1] != 1:
            raise ValueError(f"codes must have shape (..., 1); got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}); got range [{int(codes.min())}, {int(codes.max())}]"
            )
        out = self.codes_to_grid(codes[..., 0])
        if self.project_out is not None:
            out = self.project_out(out)
        return out.movedim(-1, 1) if self.channel_first else out

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> VectorQuantizerOutput:
        """Quantize ``x`` ``(..., dim)`` (or ``(B, dim, *spatial)``); ``mask`` as for :class:`VectorQuantizer`
        (padding is left out of the usage metrics)."""
        VectorQuantizer._validate(self, x, mask)
        with torch.autocast(device_type=x.device.type, enabled=False):
            z, valid, lead = VectorQuantizer._rows(self, x, mask)
            N = z.shape[0]
            if self.project_in is not None:
                z = self.project_in(z)
            const = self._const(z.device)
            half_width = const["half_width"]
            bounded = self.bound(z)
            rounded = straight_through(bounded, torch.round(bounded))  # exactly the integers, gradient copied
            grid = rounded / half_width
            digits = (torch.round(bounded.detach()) + half_width).long()
            codes = (digits * const["basis"]).sum(-1)  # (N,)
            out = self.project_out(grid) if self.project_out is not None else grid
            with torch.no_grad():
                weights = valid.float()
                hist = code_histogram(codes.unsqueeze(0), self.codebook_size, weights)
                step = self._after_quantization(hist)
                dead = (step - self.last_used_step) >= self.dead_code_window
                perplexity, running = perplexity_from_counts(torch.stack((hist, self.usage_ema)))
        zero = torch.zeros((), dtype=torch.float32, device=x.device)
        quantized = out.reshape(*lead, self.dim).to(x.dtype)
        latents = (bounded.detach() / half_width).reshape(*lead, self.code_dim)
        if self.channel_first:
            quantized = quantized.movedim(-1, 1)
            latents = latents.movedim(-1, 1)
        return VectorQuantizerOutput(
            quantized=quantized,
            codes=codes.reshape(*lead, 1),
            loss=zero,
            codebook_loss=zero,
            commitment_loss=zero,
            perplexity=perplexity,
            running_perplexity=running,
            used_codes=(hist > 0).sum(-1),
            dead_code_fraction=dead.float().mean(-1),
            latents=latents,
            quantizing=True,
            reestimated=False,
            num_reestimations=0,
            num_skipped_reestimations=0,
            num_revived_codes=0,
        )

    @torch.compiler.disable
    @torch.no_grad()
    def _after_quantization(self, hist: torch.Tensor) -> int:
        step = self._read("step")
        if not self.training:
            return step
        update_usage_(self.usage_ema, self.last_used_step, hist, step, self.running_usage_decay)
        if self.update_boundary:
            self._write("step", step + 1)
            self._write("micro_step", 0)
        else:
            self._write("micro_step", self._read("micro_step") + 1)
        return step


def _check_fsq_options(o) -> None:
    levels = o["levels"]
    if not isinstance(levels, (list, tuple)) or not levels:
        raise ValueError(f"levels must be a non-empty list of ints >= 2, got {levels!r}")
    for value in levels:
        _check_int("each of levels", value, 2)
    if o["dim"] is not None:
        _check_int("dim", o["dim"], 1)
    _check_int("dead_code_window", o["dead_code_window"], 1)
    _check_float("running_usage_decay", o["running_usage_decay"], lo=0.0, hi=1.0, hi_open=True)
