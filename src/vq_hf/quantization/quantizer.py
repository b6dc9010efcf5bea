"""VectorQuantizer: groups → (BN) → search → update rule → straight-through → metrics.

See ``docs/quantization.md`` for the decisions (BN sharing, gradient accumulation, optimizer state at
re-initialisation, EMA initialisation, reservoir collisions, precision, DDP).
"""

from __future__ import annotations

import inspect
import math
import operator
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .backend import select_search
from .distributed import all_gather, all_reduce_sum_, broadcast_, get_rank, get_world_size, is_distributed
from .kmeans import kmeans
from .metrics import code_histogram, perplexity_from_counts, update_usage_
from .normalization import MaskedBatchNorm
from .reservoir import Reservoir
from .revival import RevivalSchedule, choose_replacements
from .rotation import GRADIENT_ESTIMATORS, rotation_trick
from .schedule import ReestimationSchedule, check_int as _check_int
from ._state import STREAM_TAGS, HostCounters, _Mirror, clear_mirrors, mix_seed
from .search import DEFAULT_SEARCH_MEMORY_MB, SEARCH_BACKENDS, flat_code_index
from .updates import ema_accumulate_, ema_apply_, gradient_rule_step

__all__ = ["VectorQuantizer", "VectorQuantizerOutput", "set_update_boundary", "start_epoch"]

QUANTIZER_TYPES = ("vanilla", "ema", "reestimating")
DISTANCES = ("euclidean", "cosine")
@dataclass
class VectorQuantizerOutput(ModelOutput):
    """Output of :class:`VectorQuantizer`.

    Args:
        quantized: same shape and dtype as the input; the selected codewords (post-BN space), with the
            straight-through gradient to the input in training. During warm-up: the (normalised) input.
        codes: ``(..., num_codebooks)`` int64 (channel_first: ``(B, *spatial, num_codebooks)``). During
            warm-up these are the would-be codes (used for metrics only).
        loss: 0-dim fp32, ``codebook_loss + commitment_cost * commitment_loss`` (0 during warm-up).
        codebook_loss: 0-dim fp32, element-mean ‖sg(z) − e‖² over real positions.
        commitment_loss: 0-dim fp32, element-mean ‖z − sg(e)‖² over real positions.
        perplexity: ``(num_codebooks,)`` batch perplexity exp(H) of the code histogram.
        running_perplexity: ``(num_codebooks,)`` perplexity of the running (EMA) usage histogram.
        used_codes: ``(num_codebooks,)`` int64, distinct codes in the batch.
        dead_code_fraction: ``(num_codebooks,)`` fraction of codes unused for ``dead_code_window`` steps.
        norm_ratio: ``(num_codebooks,)`` mean encoder-output norm / mean codeword norm (paper Fig. 1).
        latents: the normalised encoder output that was quantized, input layout, fp32, no gradient.
        quantizing: False during the warm-up pass-through.
        reestimated: True when this forward re-initialised the codebook with k-means.
        num_reestimations: re-estimations done so far (reestimating quantizers; 0 otherwise).
        num_skipped_reestimations: scheduled re-estimations skipped for lack of reservoir samples.
        num_revived_codes: dead codes re-seeded so far by revival (0 when revival is off).
    """

    quantized: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    running_perplexity: torch.Tensor | None = None
    used_codes: torch.Tensor | None = None
    dead_code_fraction: torch.Tensor | None = None
    norm_ratio: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    quantizing: bool | None = None
    reestimated: bool | None = None
    num_reestimations: int | None = None
    num_skipped_reestimations: int | None = None
    num_revived_codes: int | None = None


class VectorQuantizer(HostCounters, nn.Module):
    """Vector-quantized bottleneck with the paper's robust-training options (Łańcucki et al., 2020).

    The input's channels are split into ``num_codebooks`` contiguous groups of ``dim // num_codebooks``
    channels, each quantized with its own codebook of ``codebook_size`` codewords.

    Args:
        dim: input channels (last axis, or axis 1 with ``channel_first=True``).
        codebook_size: K, codewords per codebook.
        num_codebooks: G, independent codebooks over contiguous channel groups.
        quantizer_type: ``"vanilla"`` (gradient rule, eq. 2), ``"ema"`` (eq. 4, no codebook gradient) or
            ``"reestimating"`` (gradient rule + Algorithm 1: warm-up, reservoir, k-means++ re-estimation).
        batch_norm: masked batch norm right before quantization.
        batch_norm_shared: one set of statistics and affine parameters for the D channels of every group
            (the reference's CIFAR behaviour, default) instead of one per channel of ``dim``.
        commitment_cost: β of eq. 2.
        codebook_lr_multiplier: codebook LR = base LR × this, via :func:`codebook_param_groups`.
        ema_decay: γ of eq. 4, in (0, 1).
        ema_epsilon: Laplace smoothing ε ≥ 0.
        warmup_steps: M_init (in ``reestimation_unit``); no quantization before it.
        reestimate_every: r_reestim ≥ 1.
        reestimate_steps: M_reestim; re-estimation stops after ``warmup_steps + reestimate_steps``.
        reservoir_size: samples per codebook kept for k-means.
        reestimation_unit: ``"steps"`` (optimizer steps) or ``"epochs"`` (set with :func:`start_epoch`).
        channel_first: input ``(B, C, *spatial)`` instead of ``(..., C)``.
        kmeans_restarts, kmeans_max_iters, kmeans_tol: k-means options.
        seed: seeds the codebook initialisation, reservoir draws and k-means (counter-based streams).
        search_memory_mb: distance-block budget of the chunked search.
        dead_code_window: a code is dead when unused for this many steps.
        running_usage_decay: decay of the running usage histogram behind ``running_perplexity``.
        check_finite: raise on NaN/Inf input (one host synchronisation per forward). When False, non-finite
            vectors are treated as padding instead (excluded from BN statistics, reservoir, EMA, losses).
        search_backend: ``"auto"`` (the fused Triton kernel on CUDA when Triton imports, with the EMA
            statistics accumulated in its epilogue; the chunked torch search otherwise), ``"torch"`` or
            ``"triton"`` (see :mod:`vq_hf.quantization.search`).
        distance: ``"euclidean"`` or ``"cosine"``: l2-normalised (post-BN) inputs and codewords, so search,
            EMA statistics, reservoir and k-means all live on the unit sphere; the ``codebook`` parameter
            keeps its raw values and is normalised wherever it is used (``quantized`` and ``decode`` give
            unit-norm codewords).
        gradient_estimator: ``"ste"`` (straight-through) or ``"rotation"`` (the rotation trick,
            :mod:`vq_hf.quantization.rotation`); the forward value is the codeword either way.
        dead_code_threshold: > 0 turns on dead-code revival (:mod:`vq_hf.quantization.revival`): a code whose
            EMA count per step falls below this is re-seeded from the reservoir, which keeps filling after the
            re-estimation window. 0 (default) disables it.
        revive_every: positions between revivals.
        revive_from: the position after which revival starts; default the end of the re-estimation window
            (reestimating) or of the warm-up (vanilla, EMA).

    Step counting and gradient accumulation: every training forward belongs to the current optimizer
    step. By default (``set_update_boundary(model, True)``) each training forward is one step: it applies
    the EMA update and advances ``step``. With gradient accumulation, call
    ``set_update_boundary(model, is_last_micro_batch)`` before each forward: forwards with False only
    accumulate EMA sums and reservoir inserts; the one with True applies the accumulated EMA update and
    advances the step, so EMA and the schedule count optimizer steps, not micro-batches. Schedule actions
    (re-estimation) happen at the first forward of a step. Eval-mode forwards change no state.

    Buffers (persistent, fixed shape): ``step``, ``micro_step``, ``epoch``, ``last_action_position``,
    ``rng_seed``, ``num_reestimations``, ``num_skipped_reestimations``, ``last_inertia``, the EMA
    statistics and accumulators, the reservoir, ``usage_ema``, ``last_used_step``, with revival ``count_ema``,
    ``pending_usage`` and ``num_revived_codes``, and the BN statistics —
    so save → load → continue reproduces an uninterrupted run exactly.
    """

    _vq_hf_stateful = True  # found by set_update_boundary / start_epoch

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_codebooks: int = 1,
        quantizer_type: str = "vanilla",
        batch_norm: bool = False,
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
        batch_norm_shared: bool = True,
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
        _validate_options({name: value for name, value in locals().items() if name not in ("self", "__class__")})
        self.dim = dim
        self.codebook_size = codebook_size
        self.num_codebooks = num_codebooks
        self.code_dim = dim // num_codebooks
        self.quantizer_type = quantizer_type
        self.commitment_cost = float(commitment_cost)
        self.codebook_lr_multiplier = float(codebook_lr_multiplier)
        self.ema_decay = float(ema_decay)
        self.ema_epsilon = float(ema_epsilon)
        self.channel_first = channel_first
        self.kmeans_restarts = kmeans_restarts
        self.kmeans_max_iters = kmeans_max_iters
        self.kmeans_tol = float(kmeans_tol)
        self.search_memory_mb = float(search_memory_mb)
        self.dead_code_window = dead_code_window
        self.running_usage_decay = float(running_usage_decay)
        self.check_finite = check_finite
        self.search_backend = search_backend
        self.seed = seed
        self.distance = distance
        self.gradient_estimator = gradient_estimator
        self.schedule = ReestimationSchedule(
            warmup=warmup_steps,
            every=reestimate_every,
            length=reestimate_steps,
            unit=reestimation_unit,
            reestimating=quantizer_type == "reestimating",
        )
        window_end = self.schedule.last_reestimation if quantizer_type == "reestimating" else warmup_steps
        self.revival = RevivalSchedule(
            threshold=float(dead_code_threshold),
            every=revive_every,
            start=window_end if revive_from is None else revive_from,
        )
        G, K, D = num_codebooks, codebook_size, self.code_dim

        self.codebook = nn.Parameter(torch.empty(G, K, D), requires_grad=quantizer_type != "ema")
        if batch_norm:
            self.batch_norm = MaskedBatchNorm(D if batch_norm_shared else dim)
        else:
            self.batch_norm = None
        self.batch_norm_shared = bool(batch_norm and batch_norm_shared)
        if quantizer_type == "ema":
            self.register_buffer("ema_count", torch.ones(G, K))
            self.register_buffer("ema_sum", torch.zeros(G, K, D))
            self.register_buffer("pending_count", torch.zeros(G, K))
            self.register_buffer("pending_sum", torch.zeros(G, K, D))
        if quantizer_type == "reestimating" or self.revival.enabled:
            self.reservoir = Reservoir(G, reservoir_size, D)
        else:
            self.reservoir = None
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("micro_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_action_position", torch.full((), -1, dtype=torch.long))
        self.register_buffer("rng_seed", torch.full((), seed, dtype=torch.long))
        self.register_buffer("num_reestimations", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_skipped_reestimations", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_inertia", torch.zeros(G))
        self.register_buffer("usage_ema", torch.zeros(G, K))
        self.register_buffer("last_used_step", torch.zeros(G, K, dtype=torch.long))
        if self.revival.enabled:
            self.register_buffer("count_ema", torch.zeros(G, K))
            self.register_buffer("pending_usage", torch.zeros(G, K))
            self.register_buffer("num_revived_codes", torch.zeros((), dtype=torch.long))

        # Gradient-accumulation flag: runtime control, not state.
        self.update_boundary = True
        self._mirrors: dict[str, _Mirror] = {}
        self._generators: dict[str, torch.Generator] = {}
        self.register_load_state_dict_post_hook(clear_mirrors)
        self.reset_parameters()

    @classmethod
    def _option_parameters(cls) -> list[inspect.Parameter]:
        return [p for name, p in inspect.signature(cls.__init__).parameters.items() if name not in ("self", "dim")]

    @classmethod
    def option_names(cls) -> list[str]:
        """The keyword options (every constructor argument but ``dim``)."""
        return [p.name for p in cls._option_parameters()]

    @classmethod
    def validate_options(cls, options: Mapping[str, Any], dim: int | None = None) -> dict[str, Any]:
        """Check keyword options as ``VectorQuantizer(dim, **options)`` would, before a model derives ``dim``.

        Unknown or missing names and out-of-range values raise ``ValueError`` with the same messages as the
        constructor. Returns the complete options (defaults filled in, without ``dim``)."""
        full = complete_options(cls, options)
        _validate_options({"dim": dim, **full})
        return full

    # ------------------------------------------------------------------ state

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """(Re)initialise every parameter and buffer: codebook ~ U(−1/K, 1/K) (the reference's CIFAR init,
        small against post-BN inputs of norm ≈ √D, which favours usage — paper Fig. 1), seeded."""
        if self.codebook.is_meta:  # built on the meta device (e.g. from_pretrained): values come from the checkpoint
            return
        gen = torch.Generator().manual_seed(mix_seed(self.seed, STREAM_TAGS["init"]))
        K = self.codebook_size
        init = torch.rand(self.codebook.shape, generator=gen) * (2.0 / K) - 1.0 / K
        self.codebook.copy_(init.to(self.codebook.device, self.codebook.dtype))
        if self.quantizer_type == "ema":
            self.ema_count.fill_(1.0)
            self.ema_sum.copy_(self.codebook.float())
            self.pending_count.zero_()
            self.pending_sum.zero_()
        if self.reservoir is not None:
            self.reservoir.samples.zero_()
            self.reservoir.reset()
        if self.batch_norm is not None:
            self.batch_norm.reset_parameters()
        for name in ("step", "micro_step", "epoch", "num_reestimations", "num_skipped_reestimations"):
            getattr(self, name).zero_()
        self.last_action_position.fill_(-1)
        self.rng_seed.fill_(self.seed)
        self.last_inertia.zero_()
        self.usage_ema.zero_()
        self.last_used_step.zero_()
        if self.revival.enabled:
            self.count_ema.zero_()
            self.pending_usage.zero_()
            self.num_revived_codes.zero_()
        self._mirrors.clear()

    @property
    def current_step(self) -> int:
        """Optimizer steps taken (host value)."""
        return self._read("step")

    @property
    def position(self) -> int:
        """The schedule position: the step, or the epoch in epoch mode."""
        return self._read("epoch") if self.schedule.unit == "epochs" else self._read("step")

    @property
    def quantizing(self) -> bool:
        return self.schedule.quantizing(self.position)

    def set_epoch(self, epoch: int) -> None:
        """Epoch-boundary mode: declare the current (0-based) epoch; actions run at its first training forward."""
        if isinstance(epoch, bool):
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        try:
            value = operator.index(epoch)
        except TypeError:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}") from None
        if value < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._write("epoch", value)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, num_codebooks={self.num_codebooks}, "
            f"quantizer_type={self.quantizer_type!r}, commitment_cost={self.commitment_cost}, "
            f"schedule={self.schedule}, distance={self.distance!r}, gradient_estimator={self.gradient_estimator!r}, "
            f"revival={self.revival}"
        )

    def effective_codebook(self) -> torch.Tensor:
        """The codewords as used by search and lookup, ``(G, K, D)`` fp32 (l2-normalised with cosine distance),
        with gradient to ``codebook``."""
        codebook = self.codebook.float()
        return F.normalize(codebook, dim=-1) if self.distance == "cosine" else codebook

    # ------------------------------------------------------------------ decoding

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codewords for ``codes``: ``(..., num_codebooks)`` int → ``(..., dim)`` fp32 (post-BN space;
        with ``channel_first``, ``(B, *spatial, G)`` → ``(B, dim, *spatial)``). Equals the eval-mode
        ``quantized`` (after warm-up) exactly."""
        if codes.dim() < 1 or codes.shape[-1] != self.num_codebooks:
            raise ValueError(f"codes must have shape (..., {self.num_codebooks}); got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
        lead = codes.shape[:-1]
        flat = codes.reshape(-1, self.num_codebooks).long().t()  # (G, N)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}); got range [{int(flat.min())}, {int(flat.max())}]"
            )
        cb = self.effective_codebook().detach().reshape(self.num_codebooks * self.codebook_size, self.code_dim)
        q = cb.index_select(0, flat_code_index(flat, self.codebook_size)).view(*flat.shape, self.code_dim)
        out = q.transpose(0, 1).reshape(*lead, self.dim)
        if self.channel_first:
            out = out.movedim(-1, 1)
        return out

    # ------------------------------------------------------------------ forward

    def _validate(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        if self.channel_first:
            if x.dim() < 2:
                raise ValueError(
                    f"channel_first input must be (B, C, *spatial) with C = dim = {self.dim}; got shape {tuple(x.shape)}"
                )
            if x.shape[1] != self.dim:
                raise ValueError(f"x.shape[1] = {x.shape[1]} but dim = {self.dim} (channel_first=True)")
            lead = (x.shape[0],) + tuple(x.shape[2:])
        else:
            if x.dim() < 2:
                raise ValueError(f"x must be (..., dim) with at least one batch axis; got shape {tuple(x.shape)}")
            if x.shape[-1] != self.dim:
                raise ValueError(f"x.shape[-1] = {x.shape[-1]} but dim = {self.dim}")
            lead = tuple(x.shape[:-1])
        if math.prod(lead) == 0:
            raise ValueError(f"empty batch: x has shape {tuple(x.shape)} (no positions to quantize)")
        if mask is not None:
            if not isinstance(mask, torch.Tensor):
                raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
            if tuple(mask.shape) != lead:
                raise ValueError(f"mask shape {tuple(mask.shape)} must equal the position shape {lead} of x")
            if mask.dtype.is_floating_point:
                raise ValueError(f"mask must be bool or integer (True = real position), got dtype {mask.dtype}")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> VectorQuantizerOutput:
        """Quantize.

        Args:
            x: ``(..., dim)``, or ``(B, dim, *spatial)`` with ``channel_first``.
            mask: positions ``(...)`` / ``(B, *spatial)``, bool or 0/1 integers, True where the position is
                real; padding is excluded from BN statistics, losses, metrics, EMA and the reservoir. A
                fully masked batch is allowed (a documented skip: loss 0, no statistics change, the step
                still advances).

        Returns:
            :class:`VectorQuantizerOutput`.
        """
        self._validate(x, mask)
        G, D = self.num_codebooks, self.code_dim
        with torch.autocast(device_type=x.device.type, enabled=False):
            z, valid, lead = self._rows(x, mask)
            N = z.shape[0]
            if self.batch_norm is not None:
                if self.batch_norm_shared:
                    z = self.batch_norm(z.view(N, G, D), valid.unsqueeze(1).expand(N, G)).reshape(N, self.dim)
                else:
                    z = self.batch_norm(z, valid)
            if self.distance == "cosine":
                z = F.normalize(z.view(N, G, D), dim=-1).view(N, self.dim)
            zg = z.view(N, G, D).transpose(0, 1).contiguous()  # (G, N, D)
            weights = valid.to(torch.float32)

            # Host-side schedule (warm-up switch, reservoir, re-estimation): outside any compiled graph.
            quantizing, reestimated = self._before_quantization(zg.detach(), valid)
            out, codes, loss, codebook_loss, commitment_loss, accumulated = self._quantize(zg, weights, quantizing)
            with torch.no_grad():
                hist = code_histogram(codes, self.codebook_size, weights)
                step = self._after_quantization(zg.detach(), codes, weights, hist, quantizing, accumulated)
                metrics = self._metrics(zg.detach(), hist, weights, step)

        quantized = out.transpose(0, 1).reshape(*lead, self.dim).to(x.dtype)
        latents = zg.detach().transpose(0, 1).reshape(*lead, self.dim)
        if self.channel_first:
            quantized = quantized.movedim(-1, 1)
            latents = latents.movedim(-1, 1)
        n_re, n_skip = self._reestimation_counts()
        return VectorQuantizerOutput(
            quantized=quantized,
            codes=codes.t().reshape(*lead, G),
            loss=loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            latents=latents,
            quantizing=quantizing,
            reestimated=reestimated,
            num_reestimations=n_re,
            num_skipped_reestimations=n_skip,
            num_revived_codes=self._read("num_revived_codes") if self.revival.enabled else 0,
            **metrics,
        )

    def _rows(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
        """``x`` as fp32 rows ``(N, dim)`` (call with autocast off), the rows that count ``(N,)`` bool and the
        leading shape. Non-finite rows raise (``check_finite``) or are zeroed and left out of ``valid``. Shared
        with the other quantizer families, which call it unbound."""
        xl = x.movedim(1, -1) if self.channel_first else x
        lead = xl.shape[:-1]
        N = math.prod(lead)
        z = xl.reshape(N, self.dim).float()
        if mask is None:
            valid = torch.ones(N, dtype=torch.bool, device=x.device)
        else:
            valid = mask.reshape(N).to(device=x.device) != 0
        if self.check_finite:
            VectorQuantizer._raise_if_non_finite(self, z)
        else:
            finite = torch.isfinite(z).all(-1)
            valid = valid & finite
            z = torch.where(finite.unsqueeze(1), z, torch.zeros((), device=z.device))
        return z, valid, lead

    @torch.compiler.disable
    def _raise_if_non_finite(self, z: torch.Tensor) -> None:
        bad = ~torch.isfinite(z).all(-1)
        if bool(bad.any()):
            raise ValueError(
                f"x contains NaN or Inf in {int(bad.sum())} of {z.shape[0]} positions; refusing to let them reach "
                "the codebook, its statistics or the reservoir"
            )

    @torch.compiler.disable
    def _codebook_snapshot(self) -> torch.Tensor:
        return self.codebook.detach().float().clone()

    @torch.compiler.disable
    def _reestimation_counts(self) -> tuple[int, int]:
        return self._read("num_reestimations"), self._read("num_skipped_reestimations")

    @torch.compiler.disable
    @torch.no_grad()
    def _before_quantization(self, zg: torch.Tensor, valid: torch.Tensor) -> tuple[bool, bool]:
        """Schedule actions of a training forward (warm-up reservoir resets, reservoir insert, k-means at the
        first forward of a scheduled position). Returns ``(quantizing, reestimated)``."""
        position = self.position
        reestimated = False
        if self.training:
            new_position = position != self._read("last_action_position")
            if new_position and self.schedule.resets_reservoir_at(position):
                self.reservoir.reset()
            if self.schedule.sampling(position) or self.revival.sampling(position):
                gen = self._generator("reservoir", zg.device, self._read("step"), self._read("micro_step"), get_rank())
                self.reservoir.insert(zg, valid, generator=gen)
            if new_position:
                if self.schedule.reestimates_at(position):
                    reestimated = self.reestimate()
                if self.revival.revives_at(position):
                    self.revive()
                self._write("last_action_position", position)
        return self.schedule.quantizing(position), reestimated

    def _quantize(self, zg: torch.Tensor, weights: torch.Tensor, quantizing: bool):
        """The per-step tensor path (no host synchronisation, no value-dependent branches): search, gather,
        losses, straight-through. ``zg`` (G, N, D) fp32, ``weights`` (N,). The last value returned says
        whether the EMA statistics of this micro-batch were already accumulated (by the fused kernel)."""
        ema = self.quantizer_type == "ema"
        if ema:
            # EMA: the codebook is rewritten in place after this forward; a compiled backward may save (or
            # recompute from) its input, so the graph gets a snapshot made outside it (G·K·D floats). Decided by
            # the type, not by requires_grad: a stray requires_grad=True (e.g. set by a loader) gives no gradient.
            codebook = self._codebook_snapshot()
            if self.distance == "cosine":
                codebook = F.normalize(codebook, dim=-1)
        else:
            codebook = self.effective_codebook()
        accumulate = ema and quantizing and self.training
        search = select_search(zg, self.search_backend)
        accumulate = accumulate and search.accumulates_statistics
        stats = dict(counts=self.pending_count, sums=self.pending_sum, weights=weights) if accumulate else {}
        codes, _ = search(zg.detach(), codebook.detach(), memory_mb=self.search_memory_mb, **stats)
        if quantizing:
            out, loss, codebook_loss, commitment_loss = gradient_rule_step(
                zg, codebook, codes, weights, self.commitment_cost
            )
            if self.gradient_estimator == "rotation":
                out = rotation_trick(zg, out)
        else:
            zero = torch.zeros((), dtype=torch.float32, device=zg.device)
            codebook_loss = commitment_loss = loss = zero
            out = zg
        return out, codes, loss, codebook_loss, commitment_loss, accumulate

    @torch.compiler.disable
    @torch.no_grad()
    def _after_quantization(self, zg, codes, weights, hist, quantizing: bool, accumulated: bool) -> int:
        """Training-forward state updates: EMA accumulation (unless the fused search ``accumulated`` it
        already) and application, usage statistics, step counters. Returns the step the metrics refer to."""
        step = self._read("step")
        if not self.training:
            return step
        if quantizing and self.quantizer_type == "ema" and not accumulated:
            ema_accumulate_(self.pending_count, self.pending_sum, zg, codes, weights)
        update_usage_(self.usage_ema, self.last_used_step, hist, step, self.running_usage_decay)
        if self.revival.enabled:
            self.pending_usage.add_(hist)
        if self.update_boundary:
            if self.revival.enabled:
                # Count per optimizer step; the first step with data sets the EMA (as for usage_ema).
                seen = self.count_ema.sum(-1, keepdim=True) > 0
                d = torch.where(seen, self.running_usage_decay, 0.0)
                self.count_ema.mul_(d).add_((1 - d) * self.pending_usage)
                self.pending_usage.zero_()
            if quantizing and self.quantizer_type == "ema":
                all_reduce_sum_(self.pending_count)
                all_reduce_sum_(self.pending_sum)
                ema_apply_(
                    self.codebook, self.ema_count, self.ema_sum, self.pending_count, self.pending_sum,
                    self.ema_decay, self.ema_epsilon,
                )
            self._write("step", step + 1)
            self._write("micro_step", 0)
        else:
            self._write("micro_step", self._read("micro_step") + 1)
        return step

    def _metrics(self, zg: torch.Tensor, hist: torch.Tensor, weights: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        n = weights.sum().clamp_min(1.0)
        enc_norm = (zg.norm(dim=-1) * weights).sum(-1) / n  # (G,)
        code_norm = self.effective_codebook().detach().norm(dim=-1).mean(-1)  # (G,)
        dead = (step - self.last_used_step) >= self.dead_code_window
        # One stacked call instead of two: on a GPU every small reduction is a kernel launch.
        perplexity, running_perplexity = perplexity_from_counts(torch.stack((hist, self.usage_ema)))
        return {
            "perplexity": perplexity,
            "running_perplexity": running_perplexity,
            "used_codes": (hist > 0).sum(-1),
            "dead_code_fraction": dead.float().mean(-1),
            "norm_ratio": enc_norm / code_norm.clamp_min(1e-12),
        }

    # ------------------------------------------------------------------ re-estimation

    @torch.no_grad()
    def reestimate(self) -> bool:
        """Re-initialise every codebook with k-means++ on its reservoir, then reset the reservoir.

        Under DDP the reservoirs of all ranks are gathered, rank 0 clusters, the codebook is broadcast.
        With fewer samples than codewords the re-estimation is skipped with a warning and counted in
        ``num_skipped_reestimations`` (the reservoir keeps filling). Optimizer moments and Polyak averages
        of the codebook are not touched (see :func:`vq_hf.quantization.reset_codebook_optimizer_state`).

        Returns:
            whether the codebook was replaced.
        """
        if self.reservoir is None:
            raise RuntimeError(f"reestimate() needs quantizer_type='reestimating', not {self.quantizer_type!r}")
        G, K = self.num_codebooks, self.codebook_size
        samples = all_gather(self.reservoir.samples)
        filled = all_gather(self.reservoir.filled())
        ok = torch.zeros((), dtype=torch.long, device=self.codebook.device)
        counts = [int(f.min()) for f in filled]  # groups see the same positions; min is the safe count
        total = sum(counts)
        if get_rank() == 0 and total >= K:
            ok.fill_(1)
            count = self._read("num_reestimations")
            for g in range(G):
                data = torch.cat([s[g, :c] for s, c in zip(samples, counts)], 0)
                gen = self._generator("kmeans", data.device, count, g)
                res = kmeans(
                    data, K, n_init=self.kmeans_restarts, max_iters=self.kmeans_max_iters, tol=self.kmeans_tol,
                    generator=gen, memory_mb=self.search_memory_mb, search_backend=self.search_backend,
                )
                self.codebook[g].copy_(res.centroids.to(self.codebook.dtype))
                self.last_inertia[g] = res.inertia
        if is_distributed():
            broadcast_(ok)
            broadcast_(self.codebook.data)
            broadcast_(self.last_inertia)
        if int(ok) == 0:
            self._write("num_skipped_reestimations", self._read("num_skipped_reestimations") + 1)
            warnings.warn(
                f"VectorQuantizer: skipping re-estimation at position {self.position}: the reservoir holds "
                f"{total} samples (all ranks) but codebook_size={K} needs at least that many",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        self.reservoir.reset()
        self._write("num_reestimations", self._read("num_reestimations") + 1)
        return True

    @torch.no_grad()
    def revive(self) -> int:
        """Re-seed the codes whose EMA count per step is below ``dead_code_threshold`` from the reservoir
        (:mod:`vq_hf.quantization.revival`), then reset the reservoir. Rank 0 draws the replacements, every
        rank receives them. Returns the number of codes revived (at most the reservoir's sample count)."""
        if not self.revival.enabled:
            raise RuntimeError("revive() needs dead_code_threshold > 0")
        G, K = self.num_codebooks, self.codebook_size
        threshold = self.revival.threshold
        mean_count = all_reduce_sum_(self.count_ema.clone()) / get_world_size()
        dead = mean_count < threshold  # identical on every rank
        samples = all_gather(self.reservoir.samples)
        filled = all_gather(self.reservoir.filled())
        revived = torch.zeros(G, K, dtype=torch.bool, device=self.codebook.device)
        if get_rank() == 0 and bool(dead.any()):
            effective = self.effective_codebook().detach()
            step = self._read("step")
            for g in range(G):
                pool = torch.cat([s[g, : int(f[g])] for s, f in zip(samples, filled)], 0)
                gen = self._generator("revival", pool.device, step, g)
                idx, vectors = choose_replacements(pool, effective[g], dead[g], gen)
                self.codebook[g, idx] = vectors.to(self.codebook.dtype)
                revived[g, idx] = True
        if is_distributed():
            broadcast_(self.codebook.data)
            broadcast_(revived)
        n = int(revived.sum())
        if n:
            self.count_ema.masked_fill_(revived, threshold)
            self.last_used_step.masked_fill_(revived, self._read("step"))
            if self.quantizer_type == "ema":
                # Statistics that reproduce the new codeword, so the next EMA update starts from it.
                self.ema_count.masked_fill_(revived, threshold)
                total = self.ema_count.sum(-1, keepdim=True)
                smoothed = (self.ema_count + self.ema_epsilon) / (total + K * self.ema_epsilon) * total
                new_sum = self.codebook.float() * smoothed.unsqueeze(-1)
                self.ema_sum.copy_(torch.where(revived.unsqueeze(-1), new_sum, self.ema_sum))
        self.reservoir.reset()
        self._write("num_revived_codes", self._read("num_revived_codes") + n)
        return n

def complete_options(cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked for unknown and missing names against ``cls``'s constructor (every argument but
    ``dim``), with the defaults filled in; shared by the quantizer families' ``validate_options``."""
    params = [p for name, p in inspect.signature(cls.__init__).parameters.items() if name not in ("self", "dim")]
    names = [p.name for p in params]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; the options are {names}")
    missing = [p.name for p in params if p.default is p.empty and p.name not in options]
    if missing:
        raise ValueError(f"{cls.__name__} option(s) {missing} must be given")
    return {p.name: options.get(p.name, p.default) for p in params}


def _validate_options(o: dict) -> None:
    """Every check of :class:`VectorQuantizer`'s options, defined once (``o``: the complete keyword set; ``dim``
    is None when checked before a model derives it, see :meth:`VectorQuantizer.validate_options`)."""
    dim, num_codebooks = o["dim"], o["num_codebooks"]
    _check_int("codebook_size", o["codebook_size"], 1)
    _check_int("num_codebooks", num_codebooks, 1)
    if dim is not None:
        _check_int("dim", dim, 1)
        if dim % num_codebooks != 0:
            raise ValueError(
                f"dim={dim} is not divisible by num_codebooks={num_codebooks}: each codebook quantizes "
                "dim // num_codebooks contiguous channels"
            )
    if o["quantizer_type"] not in QUANTIZER_TYPES:
        raise ValueError(f"quantizer_type must be one of {QUANTIZER_TYPES}, got {o['quantizer_type']!r}")
    _check_float("commitment_cost", o["commitment_cost"], lo=0.0)
    _check_float("codebook_lr_multiplier", o["codebook_lr_multiplier"], lo=0.0, lo_open=True)
    _check_float("ema_decay", o["ema_decay"], lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    _check_float("ema_epsilon", o["ema_epsilon"], lo=0.0)
    _check_int("reservoir_size", o["reservoir_size"], 1)
    _check_int("kmeans_restarts", o["kmeans_restarts"], 1)
    _check_int("kmeans_max_iters", o["kmeans_max_iters"], 1)
    _check_float("kmeans_tol", o["kmeans_tol"], lo=0.0)
    _check_int("seed", o["seed"], 0)
    _check_float("search_memory_mb", o["search_memory_mb"], lo=0.0, lo_open=True)
    _check_int("dead_code_window", o["dead_code_window"], 1)
    _check_float("running_usage_decay", o["running_usage_decay"], lo=0.0, hi=1.0, hi_open=True)
    if o["search_backend"] not in SEARCH_BACKENDS:
        raise ValueError(f"search_backend must be one of {SEARCH_BACKENDS}, got {o['search_backend']!r}")
    if o["distance"] not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {o['distance']!r}")
    if o["gradient_estimator"] not in GRADIENT_ESTIMATORS:
        raise ValueError(f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}, got {o['gradient_estimator']!r}")
    _check_float("dead_code_threshold", o["dead_code_threshold"], lo=0.0)
    _check_int("revive_every", o["revive_every"], 1)
    if o["revive_from"] is not None:
        _check_int("revive_from", o["revive_from"], 0)
    # the schedule checks its own fields (warmup_steps, reestimate_every, reestimate_steps, reestimation_unit)
    ReestimationSchedule(warmup=o["warmup_steps"], every=o["reestimate_every"], length=o["reestimate_steps"],
                         unit=o["reestimation_unit"], reestimating=o["quantizer_type"] == "reestimating")


def _check_float(name, value, lo=None, hi=None, lo_open=False, hi_open=False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {value}")


def _quantizers(model: nn.Module):
    # Every stateful quantizer (VectorQuantizer, the residual and scalar families) marks itself.
    return [m for m in model.modules() if getattr(m, "_vq_hf_stateful", False)]


def set_update_boundary(model: nn.Module, is_last_micro_batch: bool) -> int:
    """Gradient accumulation: mark whether the next training forward(s) end an optimizer step.

    Sets the flag on every :class:`VectorQuantizer` in ``model``. Forwards with False accumulate EMA sums
    and reservoir inserts without applying the EMA update or advancing the step; the forward with True
    applies the accumulated update and advances. Returns the number of quantizers found.
    """
    if not isinstance(is_last_micro_batch, bool):
        raise ValueError(f"is_last_micro_batch must be a bool, got {is_last_micro_batch!r}")
    found = _quantizers(model)
    for m in found:
        m.update_boundary = is_last_micro_batch
    return len(found)


def start_epoch(model: nn.Module, epoch: int) -> int:
    """Epoch-boundary mode: tell every quantizer in ``model`` that (0-based) ``epoch`` starts; schedule
    actions run at its first training forward. Returns the number of quantizers found."""
    found = _quantizers(model)
    for m in found:
        m.set_epoch(epoch)
    return len(found)
