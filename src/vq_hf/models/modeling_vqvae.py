"""What the VQ-VAE families share as transformers models: outputs, the pretrained-model base, and the two names
users know, `VQVAEModel` and `VQVAEForCTC`.

The families live in their own folders (transformers' layout), each a config/model pair with its own model type:
`vqvae_image` (:class:`VQVAEImageModel`, CIFAR-10), `vqvae_line` (:class:`VQVAELineModel`, handwriting lines with
the PixelCNN decoder) and `vqvae_speech` (:class:`VQVAESpeechModel` / :class:`VQVAESpeechForCTC`). Their models
subclass `VQVAEModel` / `VQVAEForCTC`; constructing or loading one of these two with any family's config or
folder (0.1.0 flat configs included) gives the family's class, looked up in the Auto registries that
`vq_hf.models` fills.

Outputs carry the raw quantities the metrics need (NLL in nats per dimension, per-example sums and counts,
codes with their masks); bits/dim and NELBO are derived in :mod:`vq_hf.metrics`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING, MODEL_MAPPING
from transformers.utils import ModelOutput

from ..quantization import VectorQuantizer, build_quantizer
from ..quantization.normalization import MaskedBatchNorm
from .configuration_vqvae import VQVAEConfig
from .encoders import lengths_to_mask
from .pixelcnn import ColumnGatedPixelCNN

# ----------------------------------------------------------------------------------------------- outputs


@dataclass
class VQVAEOutput(ModelOutput):
    r"""Output of :class:`VQVAEModel`.

    Args:
        loss (`torch.FloatTensor` of shape `()`): `reconstruction_loss + vq_loss` (images and lines; `None` for
            the speech base model).
        logits (`torch.FloatTensor`): CIFAR `(B, 3, 32, 32, 256)`; handwriting `(B, 1, H, W, num_gray_levels)`.
        reconstruction_loss (`torch.FloatTensor` of shape `()`): NLL in nats per (real) input dimension.
        vq_loss (`torch.FloatTensor` of shape `()`): codebook + β·commitment terms of the quantizer (0 without a
            bottleneck or during warm-up).
        codes (`torch.LongTensor`): CIFAR `(B, 8, 8, num_codebooks)`; sequences `(B, T', num_codebooks)`.
        quantized (`torch.FloatTensor`): quantizer output (straight-through in training), CIFAR
            `(B, latent_dim, 8, 8)`, sequences `(B, T', latent_dim)`.
        latents (`torch.FloatTensor`): encoder output before the quantizer, same shape as `quantized`.
        perplexity (`torch.FloatTensor` of shape `(num_codebooks,)`): batch code perplexity.
        codebook_loss, commitment_loss (`torch.FloatTensor` of shape `()`): the two VQ terms.
        running_perplexity, used_codes, dead_code_fraction, norm_ratio (`(num_codebooks,)`): quantizer metrics.
        nll (`torch.FloatTensor`): per-dimension NLL in nats, shape of the targets `(B, C, H, W)`, 0 on padding.
        nll_per_example (`torch.FloatTensor` of shape `(B,)`): summed nats over each example's real dimensions.
        dims_per_example (`torch.LongTensor` of shape `(B,)`): number of real dimensions of each example.
        bits_per_dim (`torch.FloatTensor` of shape `()`): `reconstruction_loss / ln 2` (detached).
        uniform_rate_bits_per_dim (`torch.FloatTensor` of shape `()`): log2 K per latent amortised over the
            dimensions it covers (uniform-prior NELBO = bits_per_dim + this; Table II).
        codes_mask (`torch.BoolTensor` of shape `(B, T')`), code_lengths (`torch.LongTensor` `(B,)`): sequences only.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    vq_loss: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    quantized: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    running_perplexity: torch.FloatTensor | None = None
    used_codes: torch.FloatTensor | None = None
    dead_code_fraction: torch.FloatTensor | None = None
    norm_ratio: torch.FloatTensor | None = None
    nll: torch.FloatTensor | None = None
    nll_per_example: torch.FloatTensor | None = None
    dims_per_example: torch.LongTensor | None = None
    bits_per_dim: torch.FloatTensor | None = None
    uniform_rate_bits_per_dim: torch.FloatTensor | None = None
    codes_mask: torch.BoolTensor | None = None
    code_lengths: torch.LongTensor | None = None


@dataclass
class VQVAECTCOutput(ModelOutput):
    r"""Output of :class:`VQVAEForCTC`.

    Args:
        loss (`()`): `ctc_loss + vq_loss` when `labels` are given.
        logits (`(B, T', vocab_size)`): unnormalised phone scores (softmax over the last axis).
        ctc_loss (`()`), vq_loss (`()`), codebook_loss (`()`), commitment_loss (`()`).
        codes (`(B, T', num_codebooks)`), quantized / latents (`(B, T', latent_dim)`).
        perplexity, running_perplexity, used_codes, dead_code_fraction, norm_ratio (`(num_codebooks,)`).
        output_lengths (`(B,)`): valid frames of `logits` (input lengths after the /3 front-end).
        codes_mask (`(B, T')`): True on valid frames.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    ctc_loss: torch.FloatTensor | None = None
    vq_loss: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    quantized: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    running_perplexity: torch.FloatTensor | None = None
    used_codes: torch.FloatTensor | None = None
    dead_code_fraction: torch.FloatTensor | None = None
    norm_ratio: torch.FloatTensor | None = None
    output_lengths: torch.LongTensor | None = None
    codes_mask: torch.BoolTensor | None = None


@dataclass
class VQVAEEncoderOutput(ModelOutput):
    r"""Discrete units from :meth:`VQVAEModel.encode`.

    Args:
        codes (`torch.LongTensor`): CIFAR `(B, 8, 8, num_codebooks)`; sequences `(B, T', num_codebooks)`
            (padding positions hold whatever the quantizer assigned; use `mask`).
        lengths (`torch.LongTensor` of shape `(B,)`): valid latents per sequence (`None` for CIFAR).
        mask (`torch.BoolTensor` of shape `(B, T')`): True on valid latents (`None` for CIFAR).
    """

    codes: torch.LongTensor | None = None
    lengths: torch.LongTensor | None = None
    mask: torch.BoolTensor | None = None


@dataclass
class VQVAEDecoderOutput(ModelOutput):
    r"""Output of :meth:`VQVAEModel.decode_codes`.

    Args:
        reconstruction (`torch.LongTensor`): CIFAR pixel values `(B, 3, 32, 32)` (argmax of `logits`);
            handwriting gray levels `(B, 1, H, W)` (generated, or argmax under teacher forcing).
        logits (`torch.FloatTensor`): decoder logits for `reconstruction` (or for the given `labels`); CTC
            logits `(B, T', vocab_size)` for :class:`VQVAEForCTC`.
        quantized (`torch.FloatTensor`): the codewords fed to the decoder.
    """

    reconstruction: torch.LongTensor | None = None
    logits: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------- helpers


def check_float_input(name: str, x: torch.Tensor | None, ndim: int, shape_doc: str) -> torch.Tensor:
    if x is None:
        raise ValueError(f"`{name}` is required: a float tensor of shape {shape_doc}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"`{name}` must be a float tensor, got dtype {x.dtype}")
    return x


def prefix_lengths(mask: torch.Tensor | None, batch: int, length: int, name: str, device) -> torch.Tensor:
    """Validate a `(B, T)` padding mask (True/1 = real, real positions first) and return its lengths."""
    if mask is None:
        return torch.full((batch,), length, dtype=torch.long, device=device)
    if mask.shape != (batch, length):
        raise ValueError(f"`{name}` must have shape ({batch}, {length}), got {tuple(mask.shape)}")
    m = mask.bool()
    lengths = m.sum(1)
    if bool((lengths < 1).any()):
        raise ValueError(f"`{name}` marks an empty sequence (row(s) {torch.nonzero(lengths < 1).flatten().tolist()})")
    if not torch.equal(m, lengths_to_mask(lengths, length)):
        raise ValueError(f"`{name}` must be a right-padding mask (all real positions before the padding)")
    return lengths.long()


# ----------------------------------------------------------------------------------------------- base class


class VQVAEPreTrainedModel(PreTrainedModel):
    config_class = VQVAEConfig  # explicit (hf-conventions rule 1)
    base_model_prefix = "vqvae"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False  # a recomputed forward would repeat the quantizer's state updates
    # The quantizer's float state (codebook, EMA statistics, reservoir, BN) stays fp32 when the rest is loaded in
    # bf16/fp16. Listed per tensor (set in `__init__` from the built quantizer), not as the module name "quantizer":
    # transformers casts *every* tensor matching the pattern to fp32, integer step counters and seeds included.
    _keep_in_fp32_modules_strict = None

    # the Auto class this model is registered with (used by `save_pretrained(..., export_remote_code=True)`)
    auto_class_name = "AutoModel"

    def save_pretrained(self, save_directory, *args, export_remote_code: bool = False, **kwargs):
        """`PreTrainedModel.save_pretrained` (config.json + model.safetensors). With `export_remote_code=True` the
        folder also gets the family's configuration and modeling files and an `auto_map`
        (`register_for_auto_class`), so that `AutoModel.from_pretrained(folder, trust_remote_code=True)` loads it
        without `import vq_hf` (the files import the installed vq_hf package for the shared layers and the
        quantizer)."""
        if not export_remote_code:
            return super().save_pretrained(save_directory, *args, **kwargs)
        registered = (type(self), type(self.config))
        before = [c.__dict__.get("_auto_class", _UNSET) for c in registered]
        auto_map = self.config.__dict__.get("auto_map", _UNSET)
        type(self.config).register_for_auto_class()
        type(self).register_for_auto_class(self.auto_class_name)
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:  # an export is a property of this save, not of every later one
            for c, value in zip(registered, before):
                if value is _UNSET:
                    del c._auto_class
                else:
                    c._auto_class = value
            if auto_map is _UNSET:
                self.config.__dict__.pop("auto_map", None)  # written into the config by the export
            else:
                self.config.auto_map = auto_map

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        mapping = cls.__dict__.get("_family_mapping")
        if mapping is not None:  # VQVAEModel / VQVAEForCTC: load the family's class
            config = kwargs.pop("config", None)
            if not isinstance(config, PretrainedConfig):
                hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
                config = VQVAEConfig.from_pretrained(config or pretrained_model_name_or_path, **hub)
            family = _family_class(cls, config)
            return family.from_pretrained(pretrained_model_name_or_path, *args, config=config, **kwargs)
        shapes = _check_local_safetensors(pretrained_model_name_or_path, kwargs.get("subfolder", ""))
        if shapes and not kwargs.get("ignore_mismatched_sizes", False):
            _check_shapes_against_config(cls, pretrained_model_name_or_path, kwargs, shapes)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        # transformers' loader re-creates parameters with requires_grad=True; an EMA codebook is updated by its
        # statistics only (its forward never routes a gradient to it): restore requires_grad=False so that
        # codebook_param_groups and other requires_grad-based code treat it as frozen
        for module in model.modules():
            if isinstance(module, VectorQuantizer):
                module.codebook.requires_grad_(module.quantizer_type != "ema")
        _own_aligned_storage(model)
        return loaded

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default layer init, expressed with `transformers.initialization` so that loaded tensors are
        left alone (raw in-place ops would overwrite checkpoint values). The quantizer initialises its codebook and
        state in its constructor (seeded) and all of it is persistent, so only its BatchNorm matches a branch here,
        with the same values as its own reset."""
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * math.prod(module.weight.shape[2:])
                if isinstance(module, nn.ConvTranspose2d):
                    fan_in = module.weight.shape[0] * math.prod(module.weight.shape[2:])
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.LSTM):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for param in module.parameters():
                init.uniform_(param, -bound, bound)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, MaskedBatchNorm)):
            if module.weight is not None:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, ColumnGatedPixelCNN):
            init.zeros_(module.row_bias)


def _check_local_safetensors(path, subfolder: str = "") -> dict[str, tuple[int, ...]] | None:
    """A truncated or corrupt local `model.safetensors` gets an error naming the file, before transformers
    reports it as a generic deserialisation failure. Returns the tensor shapes of a local file (None otherwise)."""
    try:
        folder = os.path.join(os.fspath(path), subfolder or "")
    except TypeError:
        return None
    file = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(file):
        return None
    from safetensors import safe_open

    try:
        # safe_open validates the header and that the data section covers every declared tensor
        with safe_open(file, framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise OSError(f"{file} is corrupt or truncated and cannot be loaded: {err}") from err


def _check_shapes_against_config(cls, path, kwargs: dict, shapes: dict[str, tuple[int, ...]]) -> None:
    """Weights whose shapes contradict config.json (edited sizes, wrong folder) → one error listing them all."""
    config = kwargs.get("config")
    if not isinstance(config, PretrainedConfig):
        config = cls.config_class.from_pretrained(path, subfolder=kwargs.get("subfolder", ""))
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
    prefix = cls.base_model_prefix + "."
    bad = []
    for key, shape in shapes.items():
        # a head checkpoint loaded into the base model, or the reverse, differs by the "vqvae." prefix
        for cand in (key, key[len(prefix):] if key.startswith(prefix) else prefix + key):
            if cand in expected:
                if expected[cand] != shape:
                    bad.append(f"{key}: checkpoint {list(shape)} vs config {list(expected[cand])}")
                break
    if bad:
        raise ValueError(
            f"{os.path.join(os.fspath(path), 'model.safetensors')} does not match its config "
            f"({type(config).__name__}): " + "; ".join(bad)
        )


def _own_aligned_storage(model: nn.Module) -> None:
    """Give every CPU tensor loaded from a checkpoint its own allocation. Loaded tensors can be views at arbitrary
    byte offsets of one file buffer; CPU kernels then take unaligned code paths whose rounding differs (~1e-8) from
    the original model's, and "save → load → continue" would no longer be bit-exact."""
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None and p.device.type == "cpu" and p.data_ptr() % 64:
                p.data = p.data.clone()
        for name, b in module._buffers.items():
            if b is not None and b.device.type == "cpu" and b.data_ptr() % 64:
                module._buffers[name] = b.clone()


def _fp32_patterns(module: nn.Module, prefix: str) -> set[str]:
    """Anchored regexes for the floating-point parameters and buffers of `module` (keys searched, unanchored at
    the start, in state-dict names such as `vqvae.quantizer.codebook`)."""
    names = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_floating_point()]
    return {re.escape(f"{prefix}.{n}") + "$" for n in names}




_UNSET = object()
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def _family_class(dispatcher: type, config) -> type:
    """The family class registered for `config` in the dispatcher's Auto mapping, checked to subclass it."""
    if not isinstance(config, PretrainedConfig):
        raise TypeError(f"{dispatcher.__name__} needs a config, got {type(config).__name__}")
    try:
        family = dispatcher._family_mapping[type(config)]
    except KeyError:
        family = None
    if family is None or not issubclass(family, dispatcher):
        raise ValueError(f"{dispatcher.__name__} has no model for {type(config).__name__} "
                         f"(model_type={config.model_type!r}, architecture={getattr(config, 'architecture', None)!r})"
                         + dispatcher._family_hint)
    return family


class _FamilyDispatch:
    """`Dispatcher(config)` builds the family model registered for the config's class (see the module docstring)."""

    def __new__(cls, config=None, *args, **kwargs):
        if "_family_mapping" in cls.__dict__:
            cls = _family_class(cls, config)
        return super().__new__(cls)


# ----------------------------------------------------------------------------------------------- base model


class VQVAEModel(_FamilyDispatch, VQVAEPreTrainedModel):
    """Encoder → vector-quantized bottleneck → decoder.

    `VQVAEModel(config)` and `VQVAEModel.from_pretrained(folder)` give the family's model (`VQVAEImageModel`,
    `VQVAELineModel`, `VQVAESpeechModel`), all subclasses of this class, which holds what they share: the
    quantizer built from `config.quantizer`, code lookup, eval-mode unit extraction.
    """

    _family_mapping = MODEL_MAPPING
    _family_hint = ""
    codes_layout = "(batch, length, num_codebooks)"  # `encode` output; the image model overrides

    def _build_quantizer(self, **layout) -> None:
        """`self.quantizer` from `config.quantizer` over `config.latent_dim` (None without a bottleneck); its float
        tensors stay fp32 in half-precision loads. Meta-safe: on the meta device, as in `from_pretrained`, the
        quantizer skips its seeded initialisation and every tensor comes from the checkpoint."""
        config = self.config
        self.quantizer = (
            build_quantizer(config.latent_dim, **config.quantizer, **layout) if config.use_bottleneck else None
        )

    def _finish_init(self) -> None:
        self.post_init()
        if self.quantizer is not None:
            self._keep_in_fp32_modules_strict = set(self._keep_in_fp32_modules_strict or ()) | _fp32_patterns(
                self.quantizer, "quantizer"
            )

    def _quantize(self, latents: torch.Tensor, mask: torch.Tensor | None):
        if self.quantizer is None:
            return latents, None
        vq = self.quantizer(latents, mask=mask) if mask is not None else self.quantizer(latents)
        return vq.quantized, vq

    def _codewords(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes → decoder input in the layout `_quantize` produces."""
        if self.quantizer is None:
            raise ValueError("this model has no bottleneck (use_bottleneck=False): there are no codes to decode")
        g = self.quantizer.num_codebooks
        if not isinstance(codes, torch.Tensor) or codes.dtype not in (torch.int64, torch.int32, torch.int16):
            raise ValueError(f"`codes` must be an integer tensor, got {getattr(codes, 'dtype', type(codes))}")
        want = self.codes_layout.count(",") + 1
        if codes.dim() != want or codes.shape[-1] != g:
            raise ValueError(f"`codes` must have shape {self.codes_layout} with num_codebooks={g}, "
                             f"got {tuple(codes.shape)}")
        return self.quantizer.decode(codes.long())  # checks the range [0, K); channel_first images: (B, D, h, w)

    @contextlib.contextmanager
    def _eval_mode(self):
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def _units(self, **inputs) -> VQVAEEncoderOutput:
        """Discrete codes of the inputs, computed in eval mode (no quantizer state is updated; the model's
        train/eval mode is restored afterwards). Sequences also get `lengths` and `mask` of the valid latents."""
        if self.quantizer is None:
            raise ValueError("this model has no bottleneck (use_bottleneck=False): it produces no discrete codes")
        with self._eval_mode():
            latents, mask, lengths = self._encode(**inputs)
            _, vq = self._quantize(latents, mask)
        return VQVAEEncoderOutput(codes=vq.codes, lengths=lengths, mask=mask)

    @staticmethod
    def _sequence_mask(q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            return torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)
        if tuple(mask.shape) != tuple(q.shape[:2]):
            raise ValueError(f"`mask` must have shape {tuple(q.shape[:2])}, got {tuple(mask.shape)}")
        return mask.bool()

    @staticmethod
    def _check_labels(labels: torch.Tensor, shape, levels: int) -> torch.Tensor:
        if tuple(labels.shape) != tuple(shape):
            raise ValueError(
                f"`labels` must have the shape of `pixel_values` {tuple(shape)}, got {tuple(labels.shape)}"
            )
        if labels.is_floating_point():
            raise ValueError(f"`labels` must be integer levels in [0, {levels}), got dtype {labels.dtype}")
        if bool(((labels < 0) | (labels >= levels)).any()):
            raise ValueError(
                f"`labels` must lie in [0, {levels}); got values in [{int(labels.min())}, {int(labels.max())}]"
            )
        return labels.long()

    @staticmethod
    def _nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-dimension NLL in nats, fp32: logits `(..., L)`, targets `(...)` → `(...)`."""
        flat = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        return flat.view(targets.shape)

    @staticmethod
    def _vq_fields(vq) -> dict:
        if vq is None:
            return {}
        return {name: getattr(vq, name, None) for name in VQ_METRIC_FIELDS}

    def _vq_outputs(self, latents, quantized, vq, mask, lengths) -> dict:
        """The output fields every family returns: VQ loss (0 without a bottleneck), codes, latents, metrics."""
        return dict(
            vq_loss=vq.loss if vq is not None else latents.new_zeros((), dtype=torch.float32),
            codes=vq.codes if vq is not None else None,
            quantized=quantized,
            latents=latents,
            codes_mask=mask,
            code_lengths=lengths,
            **self._vq_fields(vq),
        )


VQ_METRIC_FIELDS = (
    "perplexity",
    "codebook_loss",
    "commitment_loss",
    "running_perplexity",
    "used_codes",
    "dead_code_fraction",
    "norm_ratio",
)


class VQVAEForCTC(_FamilyDispatch, VQVAEPreTrainedModel):
    """A VQ-VAE encoder with a CTC head; `VQVAEForCTC(config)` / `VQVAEForCTC.from_pretrained(folder)` give the
    family's class (`VQVAESpeechForCTC`)."""

    _family_mapping = MODEL_FOR_CTC_MAPPING
    _family_hint = ": VQVAEForCTC needs a speech config (VQVAESpeechConfig); use VQVAEModel for the other families"
    main_input_name = "input_features"
    auto_class_name = "AutoModelForCTC"


__all__ = [
    "VQVAECTCOutput",
    "VQVAEDecoderOutput",
    "VQVAEEncoderOutput",
    "VQVAEForCTC",
    "VQVAEModel",
    "VQVAEOutput",
    "VQVAEPreTrainedModel",
]
