"""`VQVAEConfig`: what the three family configs share, and the entry point users know.

The families (Łańcucki et al., 2020, Section IV) each have their own config, model type and Auto classes:

- :class:`~vq_hf.models.vqvae_image.VQVAEImageConfig` (``"vqvae_image"``, the CIFAR-10 model),
- :class:`~vq_hf.models.vqvae_line.VQVAELineConfig` (``"vqvae_line"``, handwriting lines, PixelCNN decoder),
- :class:`~vq_hf.models.vqvae_speech.VQVAESpeechConfig` (``"vqvae_speech"``, speech encoder + CTC).

They all subclass `VQVAEConfig`, which holds the shared fields: ``latent_dim`` (the quantizer's input dimension,
derived by the model), ``use_bottleneck`` and ``quantizer``, the :func:`vq_hf.quantization.build_quantizer`
keyword arguments as one dict, stored as given and checked at construction by the quantizer's own validator.

Calling ``VQVAEConfig(...)`` itself builds a family config: with ``model_type`` of a family, that family's config;
otherwise the flat 0.1.0 form (``architecture="cifar10" | "handwriting" | "speech"`` and the quantizer options as
top-level fields, model type ``"vq_hf_vqvae"``) is converted by :func:`config_from_flat`. The same path loads a
0.1.0 ``config.json`` (``VQVAEConfig.from_pretrained``, ``AutoConfig``), so every saved folder keeps loading.
"""

from __future__ import annotations

import copy
import importlib
import math
from typing import Any

from transformers import PretrainedConfig

from ..quantization import VectorQuantizer, check_quantizer_options
from ..quantization.factory import code_layout

LEGACY_MODEL_TYPE = "vq_hf_vqvae"
# the 0.1.0 `architecture` values (now each family's task name) → family config module and class
FAMILY_CONFIGS = {
    "cifar10": ("vqvae_image.configuration_vqvae_image", "VQVAEImageConfig"),
    "handwriting": ("vqvae_line.configuration_vqvae_line", "VQVAELineConfig"),
    "speech": ("vqvae_speech.configuration_vqvae_speech", "VQVAESpeechConfig"),
}
# quantizer options the model sets from its own layout, never taken from the config
MODEL_SET_QUANTIZER_OPTIONS = ("channel_first",)
CONV_ACTIVATIONS = ("relu", "leaky_relu", "hardtanh")


def family_config_class(architecture: str) -> type[VQVAEConfig]:
    if architecture not in FAMILY_CONFIGS:
        raise ValueError(
            f"VQVAEConfig: architecture={architecture!r} is unknown; expected one of {tuple(FAMILY_CONFIGS)}"
        )
    module, name = FAMILY_CONFIGS[architecture]
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


class _DispatchingConfigType(type):
    """`VQVAEConfig(...)` returns a family config (its subclasses construct normally)."""

    def __call__(cls, *args, **kwargs):
        if cls is not VQVAEConfig:
            return super().__call__(*args, **kwargs)
        if args:
            raise TypeError("VQVAEConfig takes keyword arguments only")
        model_type = kwargs.get("model_type")
        for architecture in FAMILY_CONFIGS:
            family = family_config_class(architecture)
            if model_type == family.model_type:
                return family(**{k: v for k, v in kwargs.items() if k != "model_type"})
        return config_from_flat(**kwargs)


class VQVAEConfig(PretrainedConfig, metaclass=_DispatchingConfigType):
    r"""Base of the family configs; calling it builds the family config (see the module docstring).

    Args:
        latent_dim (`int`): dimension of the quantized vectors (all codebooks together); the model derives the
            quantizer's input dimension from it.
        use_bottleneck (`bool`, defaults to `True`): `False` removes the quantizer (the paper's "no bottleneck"
            baseline); `encode`/`decode_codes` then raise.
        quantizer (`dict`): keyword arguments of :func:`vq_hf.quantization.build_quantizer` (those of
            :class:`vq_hf.quantization.VectorQuantizer`, without `dim` and `channel_first`, which the model
            sets; plus an optional `family`: `"residual"` takes those of `ResidualVectorQuantizer`, `"fsq"`
            those of `FiniteScalarQuantizer`). Stored unchanged; validated by the quantizer's own checks.
    """

    model_type = LEGACY_MODEL_TYPE
    # Plain class attributes, not annotated: transformers turns a config's annotated attributes into dataclass fields
    architecture = ""  # the task a family serves ("cifar10", "handwriting", "speech"); set per family
    default_quantizer = {}  # the quantizer dict when none is given

    def __init__(self, latent_dim: int | None = None, use_bottleneck: bool = True,
                 quantizer: dict[str, Any] | None = None, **kwargs):
        given = kwargs.pop("architecture", None)
        if given is not None and given != self.architecture:
            raise ValueError(f"{type(self).__name__} is the {self.architecture!r} family, got architecture={given!r}")
        misplaced = sorted(set(kwargs) & set(VectorQuantizer.option_names()))
        if misplaced:
            raise ValueError(f"{type(self).__name__}: {misplaced} are quantizer options; pass them in "
                             f"quantizer={{...}} (or use VQVAEConfig(architecture=..., ...) for the flat 0.1.0 form)")
        self.use_bottleneck = bool(use_bottleneck)
        self.quantizer = copy.deepcopy(dict(self.default_quantizer if quantizer is None else quantizer))
        self.latent_dim = latent_dim
        super().__init__(**kwargs)
        if self.use_bottleneck:  # without one the dict is kept but never used (recipes leave it empty)
            self._check_quantizer()
        else:
            self._positive_int("latent_dim")
        self.validate()

    def _err(self, msg: str):
        raise ValueError(f"{type(self).__name__}: {msg}")

    def _check_quantizer(self) -> None:
        for name in MODEL_SET_QUANTIZER_OPTIONS:
            if name in self.quantizer:
                self._err(f"quantizer.{name} is set by the model from its input layout; remove it")
        try:  # the options first: a bad num_codebooks is reported as such, not as a bad derived latent_dim
            check_quantizer_options(self.quantizer)
        except ValueError as e:
            self._err(f"quantizer: {e}")
        self._positive_int("latent_dim")
        try:
            check_quantizer_options(self.quantizer, dim=self.latent_dim)
        except ValueError as e:
            self._err(f"quantizer: {e}")

    def validate(self) -> None:
        """Family checks; raise `ValueError` naming the offending field and value."""

    def _positive_int(self, name: str) -> None:
        v = getattr(self, name)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            self._err(f"{name}={v!r} must be a positive integer")

    # ------------------------------------------------------------------ derived facts
    def quantizer_options(self) -> dict[str, Any]:
        """The complete quantizer options (defaults filled in, `family` set)."""
        return check_quantizer_options(self.quantizer, dim=self.latent_dim)

    @property
    def num_codebooks(self) -> int:
        """Codes per latent position (the last axis of `codes`): codebooks, residual levels, 1 for FSQ."""
        return code_layout(self.quantizer_options())[0]

    @property
    def codebook_size(self) -> int:
        return code_layout(self.quantizer_options())[1]

    @property
    def codebook_dim(self) -> int:
        return self.latent_dim // self.num_codebooks

    def uniform_rate_bits_per_dim(self) -> float:
        """Rate of a uniform prior over codes, amortised over the input dimensions each latent covers (bits/dim);
        0 where not defined (speech, no bottleneck)."""
        if not self.use_bottleneck or not self.input_dims_per_latent():
            return 0.0
        return self.num_codebooks * math.log2(self.codebook_size) / self.input_dims_per_latent()

    def input_dims_per_latent(self) -> int:
        """Input dimensions one latent position covers (0: no bits/dim rate)."""
        return 0

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        # config.json's model_type names a family (or 0.1.0's flat type) and from_dict picks that class, so
        # transformers' "model of type X to instantiate a model of type Y" warning would be noise here.
        if cls is not VQVAEConfig:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        config_dict, kwargs = cls.get_config_dict(pretrained_model_name_or_path, **kwargs)
        return cls.from_dict(config_dict, **kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        # a 0.1.0 config.json read through a family class, e.g. VQVAELineConfig.from_pretrained(old folder)
        if cls is not VQVAEConfig and config_dict.get("model_type", cls.model_type) != cls.model_type:
            config = VQVAEConfig.from_dict(config_dict, **kwargs)
            got = config[0] if isinstance(config, tuple) else config
            if not isinstance(got, cls):
                raise ValueError(f"{cls.__name__}: the config is a {type(got).__name__} "
                                 f"(model_type={got.model_type!r})")
            return config
        return super().from_dict(config_dict, **kwargs)


class VQVAESequenceConfig(VQVAEConfig):
    r"""Shared fields of the sequence families: the DeepSpeech2-style encoder (conv stack + BiLSTM stack) and the
    masked BatchNorm1d on its features before the linear projection into the quantizer.

    Args:
        batch_norm (`bool`): BN on the encoder features *before* the projection (the reference's placement for
            sequences; the CIFAR model uses the quantizer's own BN, `quantizer["batch_norm"]`).
        conv_channels, conv_kernel_sizes, conv_strides, conv_activation: the conv stack; kernel sizes and strides
            are `[time, height]` pairs.
        rnn_num_layers, rnn_hidden_size, rnn_projection_size, rnn_bias, rnn_batch_norm, rnn_residual,
        rnn_subsample: the BiLSTM stack (per-layer lists for the last three; a list left at its default follows
            `rnn_num_layers`).
    """

    def __init__(self, *, batch_norm, conv_channels, conv_kernel_sizes, conv_strides, conv_activation,
                 rnn_num_layers, rnn_hidden_size, rnn_projection_size, rnn_bias, rnn_batch_norm, rnn_residual,
                 rnn_subsample, defaults: dict[str, list], **kwargs):
        self.batch_norm = bool(batch_norm)
        self.conv_channels = conv_channels
        self.conv_kernel_sizes = conv_kernel_sizes
        self.conv_strides = conv_strides
        self.conv_activation = conv_activation
        self.rnn_num_layers = rnn_num_layers
        self.rnn_hidden_size = rnn_hidden_size
        self.rnn_projection_size = rnn_projection_size
        self.rnn_bias = rnn_bias
        given = {"rnn_batch_norm": rnn_batch_norm, "rnn_residual": rnn_residual, "rnn_subsample": rnn_subsample}
        fills = {"rnn_batch_norm": False, "rnn_residual": False, "rnn_subsample": 1}
        for name, value in given.items():
            if value is None and isinstance(rnn_num_layers, int):
                # a per-layer list given with the wrong length is an error, but a default list follows a
                # user-changed layer count (tiny test configs change only rnn_num_layers)
                value = list(defaults[name])[:rnn_num_layers]
                value += [fills[name]] * (rnn_num_layers - len(value))
            setattr(self, name, value)
        super().__init__(**kwargs)

    def validate(self) -> None:
        err = self._err
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
        self._positive_int("rnn_num_layers")
        self._positive_int("rnn_hidden_size")
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

    @property
    def rnn_output_size(self) -> int:
        """Feature size of the BiLSTM stack output (projection size, or the hidden size when directions sum)."""
        return self.rnn_projection_size or self.rnn_hidden_size

    @property
    def time_reduction(self) -> int:
        """Input frames / columns per latent."""
        r = 1
        for st, _ in self.conv_strides:
            r *= int(st)
        for s in self.rnn_subsample:
            r *= int(s)
        return r


# ----------------------------------------------------------------------------------------------- 0.1.0 configs

# 0.1.0 per-architecture quantizer defaults (the model fields' defaults are now the family configs' own)
_V010_QUANTIZER_DEFAULTS = {
    "cifar10": {"codebook_size": 128, "num_codebooks": 8, "ema_decay": 0.999},
    "handwriting": {"codebook_size": 4096, "num_codebooks": 1, "ema_decay": 0.999},
    "speech": {"codebook_size": 2048, "num_codebooks": 1, "ema_decay": 0.999},
}


def config_from_flat(architecture: str = "cifar10", **flat) -> VQVAEConfig:
    """A 0.1.0 flat config (keyword arguments or config.json) → the family config with a nested quantizer.

    The fields named like `VectorQuantizer` options move into `quantizer` (unset ones get the 0.1.0 defaults
    of the architecture: K, G, ema_decay 0.999); `batch_norm` is the quantizer's for CIFAR and the sequence
    families' own (BN before the projection); `search_memory_mb=None` and the fields 0.1.0 wrote as null
    (those of the other architectures, or "use the default") are left out; every other key is kept.
    """
    family = family_config_class(architecture)
    flat = {k: v for k, v in flat.items() if v is not None}
    if flat.pop("model_type", LEGACY_MODEL_TYPE) not in (LEGACY_MODEL_TYPE, family.model_type):
        raise ValueError(f"VQVAEConfig: a flat config must have model_type={LEGACY_MODEL_TYPE!r}")
    names = [n for n in VectorQuantizer.option_names() if n not in MODEL_SET_QUANTIZER_OPTIONS]
    quantizer = {**_V010_QUANTIZER_DEFAULTS[architecture], **{n: flat.pop(n) for n in names if n in flat}}
    if family.architecture != "cifar10":
        flat["batch_norm"] = quantizer.pop("batch_norm", False)
        quantizer.pop("batch_norm_shared", None)  # 0.1.0 passed it to the CIFAR quantizer only
    return family(quantizer=quantizer, **flat)


__all__ = ["VQVAEConfig", "VQVAESequenceConfig", "config_from_flat", "family_config_class"]
