"""Residual vector quantization with level-by-level data-dependent re-estimation.

Level 0 quantizes the (batch-normalised) input ``z``; level ``l`` quantizes the residual
``r_l = z − Σ_{m<l} q_m`` left by the levels before it; the output is ``Σ_l q_l`` with one gradient
estimator (straight-through or rotation) from ``z`` to the sum, and each level's eq. 2 / EMA terms on its
own residual (as in EnCodec/SoundStream: the residual passed down is ``r_l − sg(q_l)``).

Re-estimation (``quantizer_type="reestimating"``) is the paper's Algorithm 1 with one reservoir of the
*input* ``z``: at a scheduled position, level 0 is re-clustered with k-means on the reservoir, the
reservoir's residuals are recomputed with level 0's new codebook, level 1 is re-clustered on them, and so
on. Level ``l`` is thus fitted to the residuals the new levels ``0…l−1`` actually leave — a reservoir of
residuals collected during training would hold residuals of the old codebooks, which the re-estimation of
the earlier levels has just made stale. Deeper levels are where residual quantizers collapse first (their
inputs shrink and move as the earlier levels learn); re-estimating them from data is what keeps them used.

Quantizer dropout (SoundStream, DAC): in training, each example (first axis of the positions) independently
keeps, with probability ``quantizer_dropout``, only its first ``n ~ U{1…L}`` levels; the dropped levels see
that example as padding (no statistics, loss, reservoir or usage) and contribute nothing to its output. A
model trained so decodes at any bitrate: ``forward(x, num_quantizers=n)`` / ``decode(codes[..., :n])``.
Draws come from a counter-based stream of ``(seed, step, micro-step, rank)``, so resumed runs repeat them.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ._state import HostCounters, clear_mirrors
from .distributed import all_gather, broadcast_, get_rank, is_distributed
from .kmeans import kmeans
from .normalization import MaskedBatchNorm
from .quantizer import (
    QUANTIZER_TYPES,
    VectorQuantizer,
    VectorQuantizerOutput,
    _check_float,
    _check_int,
    complete_options,
)
from .reservoir import Reservoir
from .rotation import apply_gradient_estimator
from .schedule import ReestimationSchedule
from .backend import nearest_codes
from .search import DEFAULT_SEARCH_MEMORY_MB

__all__ = ["ResidualVectorQuantizer"]


class ResidualVectorQuantizer(HostCounters, nn.Module):
    """``num_quantizers`` codebooks of ``codebook_size`` codewords over the full ``dim``, applied to successive
    residuals (module docstring). Each level is a :class:`VectorQuantizer` (``self.levels``), so every option
    of its update rule, revival and metrics applies per level.

    Args:
        dim, codebook_size, quantizer_type, commitment_cost, codebook_lr_multiplier, ema_decay, ema_epsilon,
        warmup_steps, reestimate_every, reestimate_steps, reservoir_size, reestimation_unit, channel_first,
        kmeans_restarts, kmeans_max_iters, kmeans_tol, search_memory_mb, dead_code_window,
        running_usage_decay, check_finite, search_backend, gradient_estimator, dead_code_threshold,
        revive_every, revive_from: as for :class:`VectorQuantizer`. ``quantizer_type="reestimating"`` gives
        levels with the gradient rule and the cascaded re-estimation above; revival runs per level, from each
        level's own reservoir of its residuals.
        num_quantizers: L, the number of levels.
        batch_norm: masked batch norm on the input, before level 0 (one statistic per channel of ``dim``).
        quantizer_dropout: probability that an example trains with a random prefix of the levels, in [0, 1].
        seed: level ``l`` is seeded with ``seed + l``; the reservoir, k-means and dropout streams with ``seed``.

    ``distance="cosine"`` is refused: residuals of unit vectors are not unit vectors, so no level after the
    first would quantize on the sphere.

    Output (:class:`VectorQuantizerOutput`): ``codes`` ``(..., L)`` (−1 where quantizer dropout removed a
    level for that example); ``perplexity``, ``running_perplexity``, ``used_codes``, ``dead_code_fraction``,
    ``norm_ratio`` per level ``(L,)``; ``loss``, ``codebook_loss``, ``commitment_loss`` summed over levels;
    ``num_revived_codes`` summed over levels.
    """

    _vq_hf_stateful = True  # found by set_update_boundary / start_epoch

    @classmethod
    def validate_options(cls, options, dim: int | None = None) -> dict:
        """Check keyword options as ``ResidualVectorQuantizer(dim, **options)`` would; returns them complete."""
        full = complete_options(cls, options)
        _check_rvq_options(full)
        level = {k: v for k, v in full.items() if k in VectorQuantizer.option_names()}
        VectorQuantizer.validate_options(level, dim=dim)
        return full

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_quantizers: int,
        quantizer_type: str = "vanilla",
        batch_norm: bool = False,
        quantizer_dropout: float = 0.0,
        commitment_cost: float = 0.25,
        codebook_lr_multiplier: float = 1.0,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        warmup_steps: int = 0,
        reestimate_every: int = 100,
        reestimate_steps: int = 0,
        reservoir_size: int = 20480,
        reestimation_unit: str = "steps",
        channel_first: bool = False,
        kmeans_restarts: int = 1,
        kmeans_max_iters: int = 100,
        kmeans_tol: float = 1e-4,
        seed: int = 0,
        search_memory_mb: float = DEFAULT_SEARCH_MEMORY_MB,
        dead_code_window: int = 100,
        running_usage_decay: float = 0.99,
        check_finite: bool = True,
        search_backend: str = "auto",
        distance: str = "euclidean",
        gradient_estimator: str = "ste",
        dead_code_threshold: float = 0.0,
        revive_every: int = 100,
        revive_from: int | None = None,
    ):
        super().__init__()
        _check_rvq_options(locals())
        self.dim = dim
        self.codebook_size = codebook_size
        self.num_quantizers = num_quantizers
        self.quantizer_type = quantizer_type
        self.quantizer_dropout = float(quantizer_dropout)
        self.channel_first = channel_first
        self.check_finite = check_finite
        self.gradient_estimator = gradient_estimator
        self.kmeans_restarts = kmeans_restarts
        self.kmeans_max_iters = kmeans_max_iters
        self.kmeans_tol = float(kmeans_tol)
        self.search_memory_mb = float(search_memory_mb)
        self.search_backend = search_backend
        self.seed = seed
        self.schedule = ReestimationSchedule(
            warmup=warmup_steps, every=reestimate_every, length=reestimate_steps, unit=reestimation_unit,
            reestimating=quantizer_type == "reestimating",
        )
        window_end = self.schedule.last_reestimation if self.schedule.reestimating else warmup_steps
        level_type = "ema" if quantizer_type == "ema" else "vanilla"
        self.levels = nn.ModuleList(
            VectorQuantizer(
                dim, codebook_size, 1, quantizer_type=level_type, batch_norm=False, commitment_cost=commitment_cost,
                codebook_lr_multiplier=codebook_lr_multiplier, ema_decay=ema_decay, ema_epsilon=ema_epsilon,
                warmup_steps=warmup_steps, reservoir_size=reservoir_size, reestimation_unit=reestimation_unit,
                seed=seed + level, search_memory_mb=search_memory_mb, dead_code_window=dead_code_window,
                running_usage_decay=running_usage_decay, check_finite=False, search_backend=search_backend,
                gradient_estimator="ste", dead_code_threshold=dead_code_threshold, revive_every=revive_every,
                revive_from=window_end if revive_from is None else revive_from,
            )
            for level in range(num_quantizers)
        )
        self.batch_norm = MaskedBatchNorm(dim) if batch_norm else None
        self.reservoir = Reservoir(1, reservoir_size, dim) if self.schedule.reestimating else None
        self.register_buffer("last_action_position", torch.full((), -1, dtype=torch.long))
        self.register_buffer("rng_seed", torch.full((), seed, dtype=torch.long))
        self.register_buffer("num_reestimations", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_skipped_reestimations", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_inertia", torch.zeros(num_quantizers))
        self.update_boundary = True
        self._mirrors = {}
        self._generators: dict[str, torch.Generator] = {}
        self.register_load_state_dict_post_hook(clear_mirrors)

    # The step, micro-step and epoch are those of level 0: every level is called at every training forward,
    # so their counters move in lockstep, and keeping one copy avoids a second source of truth.

    @property
    def num_codebooks(self) -> int:
        """Codes per position (= ``num_quantizers``): the last axis of ``codes``."""
        return self.num_quantizers

    @property
    def current_step(self) -> int:
        return self.levels[0].current_step

    @property
    def position(self) -> int:
        return self.levels[0].position

    @property
    def quantizing(self) -> bool:
        return self.schedule.quantizing(self.position)

    def set_epoch(self, epoch: int) -> None:
        for level in self.levels:
            level.set_epoch(epoch)

    def __setattr__(self, name, value):
        if name == "update_boundary" and "levels" in self._modules:
            for level in self.levels:
                level.update_boundary = value
        super().__setattr__(name, value)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for level in self.levels:
            level.reset_parameters()
        if self.batch_norm is not None:
            self.batch_norm.reset_parameters()
        if self.reservoir is not None:
            self.reservoir.samples.zero_()
            self.reservoir.reset()
        for name in ("num_reestimations", "num_skipped_reestimations"):
            getattr(self, name).zero_()
        self.last_action_position.fill_(-1)
        self.rng_seed.fill_(self.seed)
        self.last_inertia.zero_()
        self._mirrors.clear()

    def extra_repr(self) -> str:
        return (
            f"num_quantizers={self.num_quantizers}, quantizer_type={self.quantizer_type!r}, "
            f"quantizer_dropout={self.quantizer_dropout}, gradient_estimator={self.gradient_estimator!r}, "
            f"schedule={self.schedule}"
        )

    # ------------------------------------------------------------------ decoding

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the codewords of the first ``n = codes.shape[-1] ≤ L`` levels (a code of −1 contributes
        nothing): ``(..., n)`` → ``(..., dim)`` (channel_first: ``(B, *spatial, n)`` → ``(B, dim, *spatial)``).
        Equals the eval-mode ``quantized`` with ``num_quantizers=n`` exactly."""
        if codes.dim() < 1 or not 1 <= codes.shape[-1] <= self.num_quantizers:
            raise ValueError(f"codes must have shape (..., n) with 1 <= n <= {self.num_quantizers}; got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
        if codes.numel() and (int(codes.min()) < -1 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}) or be -1 (level not used); got range "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        flat = codes.reshape(-1, codes.shape[-1]).long()
        out = torch.zeros(flat.shape[0], self.dim, device=codes.device)
        for level, c in zip(self.levels, flat.unbind(-1)):
            q = level.effective_codebook().detach()[0].index_select(0, c.clamp_min(0))
            out = out + torch.where((c >= 0).unsqueeze(1), q, torch.zeros((), device=q.device))
        out = out.view(*codes.shape[:-1], self.dim)
        return out.movedim(-1, 1) if self.channel_first else out

    # ------------------------------------------------------------------ forward

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, num_quantizers: int | None = None
    ) -> VectorQuantizerOutput:
        """Quantize with all levels (training: minus the dropped ones), or with the first ``num_quantizers``.

        Args:
            x: ``(..., dim)``, or ``(B, dim, *spatial)`` with ``channel_first``.
            mask: positions, True where real (as for :class:`VectorQuantizer`).
            num_quantizers: eval mode only: use the first n levels (variable bitrate); outputs then have n
                levels. In training every level runs (quantizer dropout is the training-time counterpart).
        """
        VectorQuantizer._validate(self, x, mask)
        L = self.num_quantizers
        if num_quantizers is not None:
            _check_int("num_quantizers", num_quantizers, 1)
            if num_quantizers > L:
                raise ValueError(f"num_quantizers={num_quantizers} exceeds the {L} levels")
            if self.training and num_quantizers != L:
                raise ValueError("num_quantizers < L is for eval mode; training uses quantizer_dropout instead")
        active = L if num_quantizers is None else num_quantizers
        with torch.autocast(device_type=x.device.type, enabled=False):
            z, valid, lead = VectorQuantizer._rows(self, x, mask)
            N = z.shape[0]
            if self.batch_norm is not None:
                z = self.batch_norm(z, valid)

            position = self.position  # before the levels advance their step
            reestimated = self._before_quantization(position, z.detach(), valid)
            depth = self._dropout_depth(lead, z.device) if self.training and self.quantizer_dropout > 0 else None

            residual = z  # with gradient: each level's commitment term trains the encoder
            total = torch.zeros_like(z)
            outs, codes = [], []
            for level_index, level in enumerate(self.levels[:active]):
                keep = valid if depth is None else valid & (depth > level_index)
                o = level(residual, mask=keep)
                c = o.codes[:, 0]
                if o.quantizing:
                    q = o.quantized.detach()  # the codewords used (an EMA level has rewritten its codebook since)
                else:
                    q = level.effective_codebook().detach()[0].index_select(0, c)
                if depth is not None:
                    q = torch.where(keep.unsqueeze(1), q, torch.zeros((), device=q.device))
                    c = torch.where(keep | ~valid, c, torch.full_like(c, -1))
                # The next level's residual r − sg(q), with this level's codewords (also during warm-up, when the
                # level's output is its input).
                residual = residual - q
                total = total + q
                outs.append(o)
                codes.append(c)
            quantizing = self.schedule.quantizing(position)
            out = apply_gradient_estimator(self.gradient_estimator, z, total) if quantizing else z
            loss = torch.stack([o.loss for o in outs]).sum()
            codebook_loss = torch.stack([o.codebook_loss for o in outs]).sum()
            commitment_loss = torch.stack([o.commitment_loss for o in outs]).sum()

        quantized = out.reshape(*lead, self.dim).to(x.dtype)
        latents = z.detach().reshape(*lead, self.dim)
        if self.channel_first:
            quantized = quantized.movedim(-1, 1)
            latents = latents.movedim(-1, 1)

        def per_level(name):
            return torch.cat([getattr(o, name) for o in outs])

        return VectorQuantizerOutput(
            quantized=quantized,
            codes=torch.stack(codes, -1).reshape(*lead, active),
            loss=loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            perplexity=per_level("perplexity"),
            running_perplexity=per_level("running_perplexity"),
            used_codes=per_level("used_codes"),
            dead_code_fraction=per_level("dead_code_fraction"),
            norm_ratio=per_level("norm_ratio"),
            latents=latents,
            quantizing=quantizing,
            reestimated=reestimated,
            num_reestimations=self._read("num_reestimations"),
            num_skipped_reestimations=self._read("num_skipped_reestimations"),
            num_revived_codes=sum(o.num_revived_codes for o in outs),
        )

    @torch.compiler.disable
    def _dropout_depth(self, lead: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """``(N,)`` levels kept at each position: per example (first position axis), ``L`` or, with probability
        ``quantizer_dropout``, a uniform draw from 1…L."""
        level0 = self.levels[0]
        gen = self._generator("dropout", device, level0._read("step"), level0._read("micro_step"), get_rank())
        B = lead[0]
        L = self.num_quantizers
        drop = torch.rand(B, device=device, generator=gen) < self.quantizer_dropout
        n = torch.randint(1, L + 1, (B,), device=device, generator=gen)
        depth = torch.where(drop, n, torch.full_like(n, L))
        return depth.view(B, *([1] * (len(lead) - 1))).expand(lead).reshape(-1)

    @torch.compiler.disable
    @torch.no_grad()
    def _before_quantization(self, position: int, z: torch.Tensor, valid: torch.Tensor) -> bool:
        """Reservoir insert and cascaded re-estimation at the first forward of a scheduled position."""
        if not self.training or self.reservoir is None:
            return False
        level0 = self.levels[0]
        reestimated = False
        new_position = position != self._read("last_action_position")
        if new_position and self.schedule.resets_reservoir_at(position):
            self.reservoir.reset()
        if self.schedule.sampling(position):
            gen = self._generator("reservoir", z.device, level0._read("step"), level0._read("micro_step"), get_rank())
            self.reservoir.insert(z.unsqueeze(0), valid, generator=gen)
        if new_position:
            if self.schedule.reestimates_at(position):
                reestimated = self.reestimate()
            self._write("last_action_position", position)
        return reestimated

    @torch.no_grad()
    def reestimate(self) -> bool:
        """Re-cluster every level from the input reservoir, level by level, each on the residuals left by the
        levels before it *with their new codebooks*; then reset the reservoir. Under DDP the reservoirs are
        gathered, rank 0 clusters, every level's codebook is broadcast. Returns whether the codebooks changed
        (False, with a warning, when the reservoirs hold fewer samples than ``codebook_size``)."""
        if self.reservoir is None:
            raise RuntimeError(f"reestimate() needs quantizer_type='reestimating', not {self.quantizer_type!r}")
        K = self.codebook_size
        samples = all_gather(self.reservoir.samples)
        filled = all_gather(self.reservoir.filled())
        counts = [int(f[0]) for f in filled]
        total = sum(counts)
        ok = torch.zeros((), dtype=torch.long, device=self.last_inertia.device)
        if get_rank() == 0 and total >= K:
            ok.fill_(1)
            data = torch.cat([s[0, :c] for s, c in zip(samples, counts)], 0)
            count = self._read("num_reestimations")
            for level_index, level in enumerate(self.levels):
                gen = self._generator("kmeans", data.device, count, level_index)
                res = kmeans(
                    data, K, n_init=self.kmeans_restarts, max_iters=self.kmeans_max_iters, tol=self.kmeans_tol,
                    generator=gen, memory_mb=self.search_memory_mb, search_backend=self.search_backend,
                )
                level.codebook[0].copy_(res.centroids.to(level.codebook.dtype))
                self.last_inertia[level_index] = res.inertia
                codebook = level.effective_codebook().detach()
                assigned, _ = nearest_codes(
                    data.unsqueeze(0), codebook, memory_mb=self.search_memory_mb, backend=self.search_backend
                )
                data = data - codebook[0].index_select(0, assigned[0])
        if is_distributed():
            broadcast_(ok)
            for level in self.levels:
                broadcast_(level.codebook.data)
            broadcast_(self.last_inertia)
        if int(ok) == 0:
            self._write("num_skipped_reestimations", self._read("num_skipped_reestimations") + 1)
            warnings.warn(
                f"ResidualVectorQuantizer: skipping re-estimation at position {self.position}: the reservoir holds "
                f"{total} samples (all ranks) but codebook_size={K} needs at least that many",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        self.reservoir.reset()
        self._write("num_reestimations", self._read("num_reestimations") + 1)
        return True


def _check_rvq_options(o) -> None:
    """The checks of the options that are the residual quantizer's own (the levels check the rest)."""
    _check_int("num_quantizers", o["num_quantizers"], 1)
    _check_float("quantizer_dropout", o["quantizer_dropout"], lo=0.0, hi=1.0)
    _check_int("seed", o["seed"], 0)
    if o["quantizer_type"] not in QUANTIZER_TYPES:
        raise ValueError(f"quantizer_type must be one of {QUANTIZER_TYPES}, got {o['quantizer_type']!r}")
    if o["distance"] != "euclidean":
        raise ValueError(
            f"ResidualVectorQuantizer supports distance='euclidean' only, got {o['distance']!r}: residuals of "
            "unit vectors are not unit vectors"
        )
