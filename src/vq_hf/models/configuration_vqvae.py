"""Configuration of the VQ-VAE model family (Łańcucki et al., 2020, Section IV; reference recipes in DistSup).

One flat config serves the three architectures of the paper:

- ``"cifar10"``: convolutional encoder 32×32 → 8×8, several codebooks over channel groups, mirrored decoder
  with an independent 256-way softmax per sub-pixel.
- ``"handwriting"``: DeepSpeech2-style conv stack + BiLSTM over lines 32 px high (one latent every 4 columns),
  one codebook, conditional column-gated PixelCNN over quantized gray levels.
- ``"speech"``: conv front-end (time /3) + 4-layer BiLSTM over 243-dim fbanks, BN + linear to 64, VQ, 1×1 conv
  to phones, CTC.

Every option of :class:`vq_hf.quantization.VectorQuantizer` is a field here with the same name; the layer sizes
default to the paper's recipe for the chosen ``architecture`` and can all be overridden (tests use tiny sizes).
"""

from __future__ import annotations

import copy
import math

from transformers import PretrainedConfig

from ..quantization.search import SEARCH_BACKENDS

ARCHITECTURES = ("cifar10", "handwriting", "speech")
QUANTIZER_TYPES = ("vanilla", "ema", "reestimating")
REESTIMATION_UNITS = ("steps", "epochs")
CONV_ACTIVATIONS = ("relu", "leaky_relu", "hardtanh")

# Per-architecture defaults (reference-implementation.md §4). `None` in the signature means "take it from here".
_ARCH_DEFAULTS: dict[str, dict] = {
    "cifar10": {
        "num_channels": 3,
        "image_size": 32,
        "hidden_size": 256,
        "num_residual_layers": 2,
        "num_codebooks": 8,
        "codebook_size": 128,
        "latent_dim": None,  # 32 per codebook, set in __init__
        "ema_decay": 0.999,
    },
    "handwriting": {
        "num_channels": 1,
        "image_size": 32,  # line height
        "conv_channels": [64, 128, 256, 256, 512, 512, 512],
        "conv_kernel_sizes": [[3, 3], [5, 5], [3, 3], [3, 3], [3, 3], [3, 3], [3, 2]],
        "conv_strides": [[1, 2], [2, 2], [1, 1], [1, 2], [1, 1], [1, 2], [1, 1]],
        "conv_activation": "leaky_relu",
        "rnn_num_layers": 2,
        "rnn_hidden_size": 32,
        "rnn_projection_size": 32,
        "rnn_bias": True,
        "rnn_batch_norm": [False, True],
        "rnn_residual": [False, True],
        "rnn_subsample": [1, 2],
        "num_codebooks": 1,
        "codebook_size": 4096,
        "latent_dim": 128,
        "mixer_hidden_size": 64,
        "pixelcnn_hidden_size": 64,
        "pixelcnn_num_layers": 7,
        "pixelcnn_kernel_size": 3,
        "pixelcnn_input_kernel_size": 7,
        "pixelcnn_out_layers": 2,
        "num_gray_levels": 4,
        "ema_decay": 0.999,
    },
    "speech": {
        "input_feature_size": 243,
        "num_channels": 3,  # static, Δ, ΔΔ
        "conv_channels": [32, 32],
        "conv_kernel_sizes": [[7, 7], [7, 7]],
        "conv_strides": [[1, 2], [3, 1]],
        "conv_activation": "hardtanh",
        "rnn_num_layers": 4,
        "rnn_hidden_size": 320,
        "rnn_projection_size": 0,  # 0: forward and backward outputs are summed (DeepSpeech2)
        "rnn_bias": False,
        "rnn_batch_norm": [False, False, False, False],
        "rnn_residual": [False, False, False, False],
        "rnn_subsample": [1, 1, 1, 1],
        "num_codebooks": 1,
        "codebook_size": 2048,
        "latent_dim": 64,
        "vocab_size": 44,  # <eps> (blank, 0), <unk>, 42 phones of the WSJ recipe
        "ema_decay": 0.999,
    },
}


class VQVAEConfig(PretrainedConfig):
    r"""Configuration for :class:`VQVAEModel` / :class:`VQVAEForCTC`.

    Args:
        architecture (`str`, defaults to `"cifar10"`): `"cifar10"`, `"handwriting"` or `"speech"`; selects the
            default of every field left at `None`.
        use_bottleneck (`bool`, defaults to `True`): `False` removes the quantizer (the paper's "no bottleneck"
            baseline); `encode`/`decode_codes` then raise.
        latent_dim (`int`): dimension of the quantized vectors (all codebooks together). CIFAR default:
            32 per codebook (8×128 → 256).
        codebook_size, num_codebooks, quantizer_type, batch_norm, commitment_cost, codebook_lr_multiplier,
        ema_decay, ema_epsilon, warmup_steps, reestimate_every, reestimate_steps, reservoir_size,
        reestimation_unit, kmeans_restarts, kmeans_max_iters, kmeans_tol, seed, search_memory_mb,
        batch_norm_shared, dead_code_window, running_usage_decay, check_finite, search_backend:
            the options of `VectorQuantizer`, same names and meanings. `batch_norm` is applied by the quantizer
            itself for CIFAR (shared across groups); for the sequence models it is a masked BatchNorm1d on the
            encoder features *before* the linear projection into the quantizer (reference master).
        num_channels (`int`): image channels (3 CIFAR, 1 handwriting) or feature streams (3 for speech:
            static, Δ, ΔΔ).
        image_size (`int`): CIFAR side length / handwriting line height.
        hidden_size, num_residual_layers: CIFAR encoder/decoder width and residual blocks.
        conv_channels, conv_kernel_sizes, conv_strides, conv_activation: DeepSpeech2 conv stack; kernel sizes and
            strides are `[time, height]` pairs.
        rnn_num_layers, rnn_hidden_size, rnn_projection_size, rnn_bias, rnn_batch_norm, rnn_residual,
        rnn_subsample: the BiLSTM stack (per-layer lists for the last three).
        mixer_hidden_size: handwriting latent mixer width (conditioning of the PixelCNN).
        pixelcnn_*: handwriting column-gated PixelCNN sizes; `num_gray_levels` quantized gray levels (4).
        input_feature_size (`int`): speech feature dimension (243 = 3 × (80 mel + energy)).
        vocab_size (`int`): CTC classes including the blank (index `ctc_blank_id`, 0).
        ctc_loss_reduction (`str`), ctc_zero_infinity (`bool`): passed to `torch.nn.functional.ctc_loss`.
    """

    model_type = "vq_hf_vqvae"

    def __init__(
        self,
        architecture: str = "cifar10",
        use_bottleneck: bool = True,
        latent_dim: int | None = None,
        # --- VectorQuantizer options (same names) ---
        codebook_size: int | None = None,
        num_codebooks: int | None = None,
        quantizer_type: str = "vanilla",
        batch_norm: bool = False,
        commitment_cost: float = 0.25,
        codebook_lr_multiplier: float = 1.0,
        ema_decay: float | None = None,
        ema_epsilon: float = 1e-5,
        warmup_steps: int = 0,
        reestimate_every: int = 100,
        reestimate_steps: int = 0,
        reservoir_size: int = 20480,
        reestimation_unit: str = "steps",
        kmeans_restarts: int = 1,
        kmeans_max_iters: int = 100,
        kmeans_tol: float = 1e-4,
        seed: int = 0,
        search_memory_mb: float | None = None,
        batch_norm_shared: bool = True,
        dead_code_window: int = 100,
        running_usage_decay: float = 0.99,
        check_finite: bool = True,
        search_backend: str = "auto",
        # --- inputs ---
        num_channels: int | None = None,
        image_size: int | None = None,
        input_feature_size: int | None = None,
        # --- CIFAR conv encoder/decoder ---
        hidden_size: int | None = None,
        num_residual_layers: int | None = None,
        # --- DeepSpeech2 encoder ---
        conv_channels: list[int] | None = None,
        conv_kernel_sizes: list[list[int]] | None = None,
        conv_strides: list[list[int]] | None = None,
        conv_activation: str | None = None,
        rnn_num_layers: int | None = None,
        rnn_hidden_size: int | None = None,
        rnn_projection_size: int | None = None,
        rnn_bias: bool | None = None,
        rnn_batch_norm: list[bool] | None = None,
        rnn_residual: list[bool] | None = None,
        rnn_subsample: list[int] | None = None,
        # --- handwriting decoder ---
        mixer_hidden_size: int | None = None,
        pixelcnn_hidden_size: int | None = None,
        pixelcnn_num_layers: int | None = None,
        pixelcnn_kernel_size: int | None = None,
        pixelcnn_input_kernel_size: int | None = None,
        pixelcnn_out_layers: int | None = None,
        num_gray_levels: int | None = None,
        # --- speech head ---
        vocab_size: int | None = None,
        ctc_blank_id: int = 0,
        ctc_loss_reduction: str = "mean",
        ctc_zero_infinity: bool = True,
        **kwargs,
    ):
        if architecture not in ARCHITECTURES:
            raise ValueError(f"VQVAEConfig: architecture={architecture!r} is unknown; expected one of {ARCHITECTURES}")
        self.architecture = architecture
        self.use_bottleneck = bool(use_bottleneck)
        self.quantizer_type = quantizer_type
        self.batch_norm = bool(batch_norm)
        self.commitment_cost = commitment_cost
        self.codebook_lr_multiplier = codebook_lr_multiplier
        self.ema_epsilon = ema_epsilon
        self.warmup_steps = warmup_steps
        self.reestimate_every = reestimate_every
        self.reestimate_steps = reestimate_steps
        self.reservoir_size = reservoir_size
        self.reestimation_unit = reestimation_unit
        self.kmeans_restarts = kmeans_restarts
        self.kmeans_max_iters = kmeans_max_iters
        self.kmeans_tol = kmeans_tol
        self.seed = seed
        self.search_memory_mb = search_memory_mb
        self.batch_norm_shared = bool(batch_norm_shared)
        self.dead_code_window = dead_code_window
        self.running_usage_decay = running_usage_decay
        self.check_finite = bool(check_finite)
        if search_backend not in SEARCH_BACKENDS:
            raise ValueError(f"VQVAEConfig: search_backend={search_backend!r}; expected one of {SEARCH_BACKENDS}")
        self.search_backend = search_backend
        self.ctc_blank_id = ctc_blank_id
        self.ctc_loss_reduction = ctc_loss_reduction
        self.ctc_zero_infinity = bool(ctc_zero_infinity)

        given = {
            "latent_dim": latent_dim,
            "codebook_size": codebook_size,
            "num_codebooks": num_codebooks,
            "ema_decay": ema_decay,
            "num_channels": num_channels,
            "image_size": image_size,
            "input_feature_size": input_feature_size,
            "hidden_size": hidden_size,
            "num_residual_layers": num_residual_layers,
            "conv_channels": conv_channels,
            "conv_kernel_sizes": conv_kernel_sizes,
            "conv_strides": conv_strides,
            "conv_activation": conv_activation,
            "rnn_num_layers": rnn_num_layers,
            "rnn_hidden_size": rnn_hidden_size,
            "rnn_projection_size": rnn_projection_size,
            "rnn_bias": rnn_bias,
            "rnn_batch_norm": rnn_batch_norm,
            "rnn_residual": rnn_residual,
            "rnn_subsample": rnn_subsample,
            "mixer_hidden_size": mixer_hidden_size,
            "pixelcnn_hidden_size": pixelcnn_hidden_size,
            "pixelcnn_num_layers": pixelcnn_num_layers,
            "pixelcnn_kernel_size": pixelcnn_kernel_size,
            "pixelcnn_input_kernel_size": pixelcnn_input_kernel_size,
            "pixelcnn_out_layers": pixelcnn_out_layers,
            "num_gray_levels": num_gray_levels,
            "vocab_size": vocab_size,
        }
        defaults = _ARCH_DEFAULTS[architecture]
        for name, value in given.items():
            if value is None:
                value = copy.deepcopy(defaults.get(name))
            setattr(self, name, value)
        if self.num_codebooks is None:
            self.num_codebooks = 1
        if self.ema_decay is None:
            self.ema_decay = 0.99
        if self.latent_dim is None and architecture == "cifar10":
            self.latent_dim = 32 * self.num_codebooks
        # a per-layer list given shorter/longer than rnn_num_layers is an error, but a default list follows a
        # user-changed layer count (tiny test configs change only rnn_num_layers)
        if self.rnn_num_layers is not None:
            for name, fill in (("rnn_batch_norm", False), ("rnn_residual", False), ("rnn_subsample", 1)):
                if given[name] is None and len(getattr(self, name)) != self.rnn_num_layers:
                    value = list(getattr(self, name))[: self.rnn_num_layers]
                    setattr(self, name, value + [fill] * (self.rnn_num_layers - len(value)))
        super().__init__(**kwargs)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check cross-field consistency; raise `ValueError` naming the offending field and value."""

        def err(msg: str):
            raise ValueError(f"VQVAEConfig(architecture={self.architecture!r}): {msg}")

        def positive_int(name: str):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                err(f"{name}={v!r} must be a positive integer")

        if self.quantizer_type not in QUANTIZER_TYPES:
            err(f"quantizer_type={self.quantizer_type!r} is unknown; expected one of {QUANTIZER_TYPES}")
        if self.reestimation_unit not in REESTIMATION_UNITS:
            err(f"reestimation_unit={self.reestimation_unit!r} is unknown; expected one of {REESTIMATION_UNITS}")
        for name in ("latent_dim", "codebook_size", "num_codebooks", "num_channels"):
            positive_int(name)
        if self.latent_dim % self.num_codebooks:
            err(f"latent_dim={self.latent_dim} is not divisible by num_codebooks={self.num_codebooks}")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            err(f"ema_decay={self.ema_decay!r} must be in [0, 1)")
        if float(self.commitment_cost) < 0:
            err(f"commitment_cost={self.commitment_cost!r} must be >= 0")
        if float(self.codebook_lr_multiplier) <= 0:
            err(f"codebook_lr_multiplier={self.codebook_lr_multiplier!r} must be > 0")
        for name in ("warmup_steps", "reestimate_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                err(f"{name}={v!r} must be a non-negative integer")

        if self.architecture == "cifar10":
            positive_int("image_size")
            positive_int("hidden_size")
            if self.num_residual_layers is None or self.num_residual_layers < 0:
                err(f"num_residual_layers={self.num_residual_layers!r} must be a non-negative integer")
            if self.image_size % 4:
                err(f"image_size={self.image_size} must be divisible by 4 (two stride-2 convolutions)")
            if self.batch_norm and not self.use_bottleneck:
                err("batch_norm=True needs use_bottleneck=True: the CIFAR model's BN is the quantizer's own")
            return

        # sequence models: the DeepSpeech2 stack
        n = len(self.conv_channels or [])
        if n == 0:
            err("conv_channels must list at least one convolution")
        for name in ("conv_kernel_sizes", "conv_strides"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or len(v) != n:
                err(f"{name}={v!r} must list {n} [time, height] pairs (one per entry of conv_channels)")
            for pair in v:
                if not isinstance(pair, (list, tuple)) or len(pair) != 2 or any(int(p) <= 0 for p in pair):
                    err(f"{name}={v!r}: every entry must be a pair of positive integers [time, height]")
        if self.conv_activation not in CONV_ACTIVATIONS:
            err(f"conv_activation={self.conv_activation!r} is unknown; expected one of {CONV_ACTIVATIONS}")
        positive_int("rnn_num_layers")
        positive_int("rnn_hidden_size")
        if self.rnn_projection_size is None or self.rnn_projection_size < 0:
            err(f"rnn_projection_size={self.rnn_projection_size!r} must be >= 0 (0 sums the two directions)")
        for name in ("rnn_batch_norm", "rnn_residual", "rnn_subsample"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or len(v) != self.rnn_num_layers:
                err(f"{name}={v!r} must have rnn_num_layers={self.rnn_num_layers} entries")
        if any(int(s) < 1 for s in self.rnn_subsample):
            err(f"rnn_subsample={self.rnn_subsample!r} entries must be >= 1")
        if self.rnn_residual and self.rnn_residual[0]:
            err("rnn_residual[0]=True is not supported: the first layer's input size differs from its output size")
        if self.architecture == "handwriting":
            positive_int("image_size")
            positive_int("mixer_hidden_size")
            positive_int("pixelcnn_hidden_size")
            positive_int("pixelcnn_num_layers")
            positive_int("pixelcnn_out_layers")
            if self.num_gray_levels is None or self.num_gray_levels < 2:
                err(f"num_gray_levels={self.num_gray_levels!r} must be >= 2")
            for name in ("pixelcnn_kernel_size", "pixelcnn_input_kernel_size"):
                v = getattr(self, name)
                if not isinstance(v, int) or v < 1 or v % 2 == 0:
                    err(f"{name}={v!r} must be a positive odd integer")
            h = self.image_size
            for (kt, kh), (st, sh) in zip(self.conv_kernel_sizes, self.conv_strides):
                h = (h + 2 * ((kh - 1) // 2) - kh) // sh + 1
            if h < 1:
                err(f"the conv stack reduces image_size={self.image_size} to height {h}; use fewer height strides")
            if self.time_reduction < 1:
                err("the encoder must not upsample in time")
        if self.architecture == "speech":
            positive_int("input_feature_size")
            positive_int("vocab_size")
            if self.input_feature_size % self.num_channels:
                err(
                    f"input_feature_size={self.input_feature_size} is not divisible by num_channels="
                    f"{self.num_channels} (the static/Δ/ΔΔ streams)"
                )
            if not 0 <= self.ctc_blank_id < self.vocab_size:
                err(f"ctc_blank_id={self.ctc_blank_id} must index into vocab_size={self.vocab_size}")
            if self.ctc_loss_reduction not in ("mean", "sum", "none"):
                err(f"ctc_loss_reduction={self.ctc_loss_reduction!r} must be 'mean', 'sum' or 'none'")

    # ------------------------------------------------------------------ derived sizes
    @property
    def rnn_output_size(self) -> int:
        """Feature size of the BiLSTM stack output (projection size, or the hidden size when directions sum)."""
        return self.rnn_projection_size or self.rnn_hidden_size

    @property
    def time_reduction(self) -> int:
        """Input frames / columns per latent of the sequence encoders (1 for CIFAR)."""
        if self.architecture == "cifar10":
            return 1
        r = 1
        for _, (st, _) in zip(self.conv_kernel_sizes, self.conv_strides):
            r *= int(st)
        for s in self.rnn_subsample:
            r *= int(s)
        return r

    @property
    def codebook_dim(self) -> int:
        return self.latent_dim // self.num_codebooks

    @property
    def latent_grid(self) -> int:
        """CIFAR: side of the latent grid (image_size / 4)."""
        return self.image_size // 4

    def uniform_rate_bits_per_dim(self) -> float:
        """Rate of a uniform prior over codes, amortised over the input dimensions each latent covers (bits/dim).

        CIFAR: num_codebooks · (S/4)² · log2 K / (3 · S²) (1.167 for 8×128); handwriting: log2 K / (4 · 32) for a
        latent every 4 columns of a 32-px line (Table II, 0.094 for K = 4096); speech: not defined (0).
        """
        if not self.use_bottleneck:
            return 0.0
        k_bits = self.num_codebooks * math.log2(self.codebook_size)
        if self.architecture == "cifar10":
            return k_bits * self.latent_grid**2 / (self.num_channels * self.image_size**2)
        if self.architecture == "handwriting":
            return k_bits / (self.time_reduction * self.image_size * self.num_channels)
        return 0.0

    def quantizer_kwargs(self) -> dict:
        """Keyword arguments for `VectorQuantizer` (the fields that share its names)."""
        kw = {
            "codebook_size": self.codebook_size,
            "num_codebooks": self.num_codebooks,
            "quantizer_type": self.quantizer_type,
            "commitment_cost": self.commitment_cost,
            "codebook_lr_multiplier": self.codebook_lr_multiplier,
            "ema_decay": self.ema_decay,
            "ema_epsilon": self.ema_epsilon,
            "warmup_steps": self.warmup_steps,
            "reestimate_every": self.reestimate_every,
            "reestimate_steps": self.reestimate_steps,
            "reservoir_size": self.reservoir_size,
            "reestimation_unit": self.reestimation_unit,
            "kmeans_restarts": self.kmeans_restarts,
            "kmeans_max_iters": self.kmeans_max_iters,
            "kmeans_tol": self.kmeans_tol,
            "seed": self.seed,
            "dead_code_window": self.dead_code_window,
            "running_usage_decay": self.running_usage_decay,
            "check_finite": self.check_finite,
            "search_backend": self.search_backend,
        }
        if self.architecture == "cifar10":
            kw["batch_norm_shared"] = self.batch_norm_shared
        if self.search_memory_mb is not None:
            kw["search_memory_mb"] = self.search_memory_mb
        return kw


__all__ = ["VQVAEConfig"]
