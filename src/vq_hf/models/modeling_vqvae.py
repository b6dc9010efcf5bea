"""VQ-VAE models of Łańcucki et al. (2020) as transformers classes.

- :class:`VQVAEModel`: encoder → (BN) → `VectorQuantizer` → decoder.
  * ``cifar10``: `pixel_values` `(B, 3, 32, 32)` → logits `(B, 3, 32, 32, 256)`; loss = NLL (nats/dim) + VQ terms.
  * ``handwriting``: `pixel_values` `(B, 1, 32, W)`, `pixel_mask` `(B, W)` → PixelCNN logits `(B, 1, 32, W, L)`
    over `L` gray levels; loss = NLL over real pixels (nats/dim) + VQ terms.
  * ``speech``: `input_features` `(B, T, 243)`, `attention_mask` `(B, T)` → codes and quantized latents (the
    base model of :class:`VQVAEForCTC`; no loss).
- :class:`VQVAEForCTC`: speech, quantized latents → 1×1 conv → CTC over phones (blank 0) + VQ terms.

Outputs carry the raw quantities the metrics need (NLL in nats per dimension, per-example sums and counts,
codes with their masks); bits/dim and NELBO are derived in :mod:`vq_hf.metrics`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..quantization import VectorQuantizer
from ..quantization.normalization import MaskedBatchNorm
from .configuration_vqvae import VQVAEConfig
from .decoders import CIFAR_LEVELS, ConvDecoder, CTCHead, LatentMixer
from .encoders import ConvEncoder, DeepSpeech2Encoder, LatentProjection, lengths_to_mask
from .pixelcnn import ColumnGatedPixelCNN

LN2 = math.log(2.0)


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


def ctc_greedy_decode(logits: torch.Tensor, lengths: torch.Tensor | None = None, blank_id: int = 0) -> list[list[int]]:
    """Best-path CTC decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        logits: `(B, T, V)` scores (or `(B, T)` frame ids already argmax-ed).
        lengths: `(B,)` valid frames; all `T` when `None`.
    Returns:
        one list of label ids per sequence.
    """
    ids = logits.argmax(-1) if logits.dim() == 3 else logits
    if ids.dim() != 2:
        raise ValueError(f"ctc_greedy_decode: expected logits (B, T, V) or ids (B, T), got {tuple(logits.shape)}")
    ids = ids.detach().cpu()
    lens = [ids.shape[1]] * ids.shape[0] if lengths is None else lengths.detach().cpu().tolist()
    out = []
    for row, n in zip(ids.tolist(), lens):
        seq, prev = [], None
        for tok in row[: int(n)]:
            if tok != prev and tok != blank_id:
                seq.append(tok)
            prev = tok
        out.append(seq)
    return out


def _float_input(name: str, x: torch.Tensor | None, ndim: int, shape_doc: str) -> torch.Tensor:
    if x is None:
        raise ValueError(f"`{name}` is required: a float tensor of shape {shape_doc}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"`{name}` must be a float tensor, got dtype {x.dtype}")
    return x


def _prefix_lengths(mask: torch.Tensor | None, batch: int, length: int, name: str, device) -> torch.Tensor:
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

    def save_pretrained(self, save_directory, *args, export_remote_code: bool = False, **kwargs):
        """`PreTrainedModel.save_pretrained` (config.json + model.safetensors). With `export_remote_code=True` the
        folder also gets a flattened copy of the code and an `auto_map`, so that it loads with
        `AutoModel.from_pretrained(folder, trust_remote_code=True)` where vq_hf is not installed (see
        :func:`export_remote_code_files`)."""
        out = super().save_pretrained(save_directory, *args, **kwargs)
        if export_remote_code and kwargs.get("is_main_process", True):
            export_remote_code_files(save_directory)
        return out

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
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
    if not isinstance(config, VQVAEConfig):
        config = VQVAEConfig.from_pretrained(path, subfolder=kwargs.get("subfolder", ""))
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
            f"(architecture={config.architecture!r}): " + "; ".join(bad)
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


def _build_quantizer(config: VQVAEConfig, **kwargs) -> VectorQuantizer:
    """`VectorQuantizer` from the config (meta-safe: on the meta device, as in `from_pretrained`, it skips its
    seeded initialisation and every tensor comes from the checkpoint)."""
    return VectorQuantizer(config.latent_dim, **{**config.quantizer_kwargs(), **kwargs})


# Files of the flattened remote-code export: transformers' dynamic modules may only import siblings of the same
# folder (`from .x import`), so the package's two levels are flattened into one and the imports rewritten.
_REMOTE_MODEL_FILES = ("configuration_vqvae.py", "modeling_vqvae.py", "encoders.py", "decoders.py", "pixelcnn.py")
_REMOTE_AUTO_MAP = {
    "AutoConfig": "configuration_vqvae.VQVAEConfig",
    "AutoModel": "modeling_vqvae.VQVAEModel",
    "AutoModelForCTC": "modeling_vqvae.VQVAEForCTC",
}


def export_remote_code_files(folder) -> list[str]:
    """Copy the model code, flattened, into a saved model folder and add `auto_map` to its config.json.

    `vq_hf/quantization/*.py` and the model files become siblings (`quantization/__init__.py` as
    `vq_quantization.py`); `from ..quantization[.x] import` becomes `from .vq_quantization|.x import`. The
    optional Triton search (`fused_search`, imported lazily by a bare `from . import`) is not picked up by
    transformers' loader, so remote-code models use the eager nearest-code search. Returns the written file names.
    """
    import json
    import pathlib

    folder = pathlib.Path(folder)
    models_dir = pathlib.Path(__file__).parent
    quant_dir = models_dir.parent / "quantization"
    sources = {f.name: f for f in sorted(quant_dir.glob("*.py")) if f.name != "__init__.py"}
    sources["vq_quantization.py"] = quant_dir / "__init__.py"
    for name in _REMOTE_MODEL_FILES:
        if name in sources:
            raise RuntimeError(f"export_remote_code_files: {name} exists in both models/ and quantization/")
        sources[name] = models_dir / name
    written = []
    for name, src in sources.items():
        text = src.read_text(encoding="utf-8")
        text = re.sub(r"^(\s*)from \.\.quantization\.(\w+) import", r"\1from .\2 import", text, flags=re.M)
        text = re.sub(r"^(\s*)from \.\.quantization import", r"\1from .vq_quantization import", text, flags=re.M)
        leftover = re.search(r"^\s*from \.\.", text, flags=re.M)
        if leftover:
            raise RuntimeError(f"export_remote_code_files: {src} has an import the flat layout cannot express: "
                               f"{text[leftover.start():text.index(chr(10), leftover.start())].strip()!r}")
        (folder / name).write_text(text, encoding="utf-8")
        written.append(name)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["auto_map"] = dict(_REMOTE_AUTO_MAP)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return written


# ----------------------------------------------------------------------------------------------- base model


class VQVAEModel(VQVAEPreTrainedModel):
    """Encoder → vector-quantized bottleneck → decoder; see the module docstring for the three architectures."""

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        self.architecture = config.architecture
        if config.architecture == "cifar10":
            self.encoder = ConvEncoder(config)
            # CIFAR: the quantizer's own BN, statistics shared across the channel groups (reference robustvq)
            self.quantizer = (
                _build_quantizer(config, batch_norm=config.batch_norm, channel_first=True)
                if config.use_bottleneck
                else None
            )
            self.decoder = ConvDecoder(config)
        else:
            if config.architecture == "handwriting":
                in_height = config.image_size
                self.main_input_name = "pixel_values"
            else:
                in_height = config.input_feature_size // config.num_channels
                self.main_input_name = "input_features"
            self.encoder = DeepSpeech2Encoder(config, in_height)
            # sequences: BN1d on encoder features *before* the projection (reference master), none in the quantizer
            self.projection = LatentProjection(self.encoder.output_size, config)
            self.quantizer = _build_quantizer(config, batch_norm=False) if config.use_bottleneck else None
            if config.architecture == "handwriting":
                self.mixer = LatentMixer(config)
                self.decoder = ColumnGatedPixelCNN(config, cond_channels=config.mixer_hidden_size)
        self.post_init()
        if self.quantizer is not None:
            self._keep_in_fp32_modules_strict = set(self._keep_in_fp32_modules_strict or ()) | _fp32_patterns(
                self.quantizer, "quantizer"
            )

    # ------------------------------------------------------------------ pieces
    def _encode(self, pixel_values=None, pixel_mask=None, input_features=None, attention_mask=None):
        """Inputs → (latents, mask, lengths); latents `(B, D, h, w)` (CIFAR) or `(B, T', D)` (sequences)."""
        cfg = self.config
        if self.architecture == "cifar10":
            if input_features is not None:
                raise ValueError("architecture 'cifar10' takes `pixel_values`, not `input_features`")
            s, c = cfg.image_size, cfg.num_channels
            x = _float_input("pixel_values", pixel_values, 4, f"(batch, {c}, {s}, {s})")
            if tuple(x.shape[1:]) != (c, s, s):
                raise ValueError(f"`pixel_values` must have shape (batch, {c}, {s}, {s}), got {tuple(x.shape)}")
            return self.encoder(x), None, None
        if self.architecture == "handwriting":
            if input_features is not None:
                raise ValueError(
                    "architecture 'handwriting' takes `pixel_values` and `pixel_mask`, not `input_features`"
                )
            h, c = cfg.image_size, cfg.num_channels
            x = _float_input("pixel_values", pixel_values, 4, f"(batch, {c}, {h}, width)")
            if x.shape[1] != c or x.shape[2] != h:
                raise ValueError(f"`pixel_values` must have shape (batch, {c}, {h}, width), got {tuple(x.shape)}")
            lengths = _prefix_lengths(pixel_mask, x.shape[0], x.shape[3], "pixel_mask", x.device)
            feats, lat_lengths = self.encoder(x.transpose(2, 3), lengths)  # (B, C, W, H): time first
        else:
            if pixel_values is not None:
                raise ValueError(
                    "architecture 'speech' takes `input_features` and `attention_mask`, not `pixel_values`"
                )
            f = cfg.input_feature_size
            x = _float_input("input_features", input_features, 3, f"(batch, frames, {f})")
            if x.shape[2] != f:
                raise ValueError(f"`input_features` must have shape (batch, frames, {f}), got {tuple(x.shape)}")
            lengths = _prefix_lengths(attention_mask, x.shape[0], x.shape[1], "attention_mask", x.device)
            b, t, _ = x.shape
            # (static, Δ, ΔΔ) streams as channels over (time, frequency), as the reference's (T, 81, 3) layout
            x = x.view(b, t, cfg.num_channels, f // cfg.num_channels).permute(0, 2, 1, 3)
            feats, lat_lengths = self.encoder(x, lengths)
        mask = lengths_to_mask(lat_lengths, feats.shape[1])
        return self.projection(feats, mask), mask, lat_lengths

    def _quantize(self, latents: torch.Tensor, mask: torch.Tensor | None):
        if self.quantizer is None:
            return latents, None
        vq = self.quantizer(latents, mask=mask) if mask is not None else self.quantizer(latents)
        return vq.quantized, vq

    def _codewords(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes → decoder input in the layout `_quantize` produces."""
        if self.quantizer is None:
            raise ValueError("this model has no bottleneck (use_bottleneck=False): there are no codes to decode")
        g = self.config.num_codebooks
        if not isinstance(codes, torch.Tensor) or codes.dtype not in (torch.int64, torch.int32, torch.int16):
            raise ValueError(f"`codes` must be an integer tensor, got {getattr(codes, 'dtype', type(codes))}")
        want = 4 if self.architecture == "cifar10" else 3
        if codes.dim() != want or codes.shape[-1] != g:
            doc = "(batch, h, w, num_codebooks)" if want == 4 else "(batch, length, num_codebooks)"
            raise ValueError(f"`codes` must have shape {doc} with num_codebooks={g}, got {tuple(codes.shape)}")
        return self.quantizer.decode(codes.long())  # checks the range [0, K); channel_first for CIFAR: (B, D, h, w)

    def _conditioning(self, quantized: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
        cond = self.mixer(quantized.transpose(1, 2), mask)
        r = self.config.time_reduction
        if cond.shape[-1] * r < width:
            raise ValueError(f"{cond.shape[-1]} latents × {r} columns cannot condition a line of width {width}")
        return cond.repeat_interleave(r, dim=-1)[..., :width]

    def _gray_levels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        levels = self.config.num_gray_levels
        return (pixel_values.float() * levels).floor().clamp(0, levels - 1).long()

    def _cifar_labels(self, pixel_values: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            # round, never truncate (the reference's ((x + 0.5) · 255).long() moves values 1..63 one level down)
            return torch.round((pixel_values.detach().float() + 0.5) * 255.0).clamp(0, CIFAR_LEVELS - 1).long()
        return self._check_labels(labels, pixel_values.shape, CIFAR_LEVELS)

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

    def _vq_fields(self, vq) -> dict:
        if vq is None:
            return {}
        return {
            name: getattr(vq, name, None)
            for name in (
                "perplexity",
                "codebook_loss",
                "commitment_loss",
                "running_perplexity",
                "used_codes",
                "dead_code_fraction",
                "norm_ratio",
            )
        }

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VQVAEOutput | tuple:
        r"""
        Args:
            pixel_values: CIFAR `(B, 3, 32, 32)` = uint8 / 255 − 0.5; handwriting `(B, 1, 32, W)` gray in [0, 1].
            labels: CIFAR uint8 values `(B, 3, 32, 32)` int64 (derived by rounding when absent); handwriting gray
                levels `(B, 1, 32, W)` in [0, num_gray_levels) (derived as ⌊L·x⌋ when absent). Rejected by the
                speech base model (use :class:`VQVAEForCTC`).
            pixel_mask: handwriting `(B, W)` bool, True on real columns (all real when absent).
            input_features: speech `(B, T, 243)`; attention_mask: speech `(B, T)`.
        """
        if kwargs:
            raise TypeError(f"VQVAEModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        cfg = self.config
        latents, mask, lat_lengths = self._encode(pixel_values, pixel_mask, input_features, attention_mask)
        quantized, vq = self._quantize(latents, mask)
        vq_loss = vq.loss if vq is not None else latents.new_zeros((), dtype=torch.float32)
        fields = dict(
            vq_loss=vq_loss,
            codes=vq.codes if vq is not None else None,
            quantized=quantized,
            latents=latents,
            codes_mask=mask,
            code_lengths=lat_lengths,
            **self._vq_fields(vq),
        )

        if self.architecture == "speech":
            if labels is not None:
                raise ValueError("the speech base model has no head for `labels`; use VQVAEForCTC for phone targets")
            out = VQVAEOutput(**fields)
            return out if return_dict else out.to_tuple()

        if self.architecture == "cifar10":
            targets = self._cifar_labels(pixel_values, labels)
            logits = self.decoder(quantized)
            nll = self._nll(logits, targets)
            dims = torch.full((nll.shape[0],), nll[0].numel(), dtype=torch.long, device=nll.device)
            recon = nll.mean()
        else:
            targets = (
                self._gray_levels(pixel_values)
                if labels is None
                else self._check_labels(labels, pixel_values.shape, cfg.num_gray_levels)
            )
            width = pixel_values.shape[3]
            logits = self.decoder(targets, self._conditioning(quantized, mask, width))
            col_mask = lengths_to_mask(
                pixel_mask.bool().sum(1) if pixel_mask is not None else torch.full_like(lat_lengths, width), width
            )
            pix_mask = col_mask[:, None, None, :].expand_as(targets).float()
            nll = self._nll(logits, targets) * pix_mask
            dims = pix_mask.flatten(1).sum(1).long()
            recon = nll.sum() / pix_mask.sum()
        loss = recon + vq_loss
        out = VQVAEOutput(
            loss=loss,
            logits=logits,
            reconstruction_loss=recon,
            nll=nll,
            nll_per_example=nll.flatten(1).sum(1),
            dims_per_example=dims,
            bits_per_dim=recon.detach() / LN2,
            uniform_rate_bits_per_dim=torch.tensor(cfg.uniform_rate_bits_per_dim(), device=loss.device),
            **fields,
        )
        return out if return_dict else out.to_tuple()

    # ------------------------------------------------------------------ units
    @torch.no_grad()
    def encode(
        self,
        pixel_values: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> VQVAEEncoderOutput:
        """Discrete codes of the inputs, computed in eval mode (no quantizer state is updated; the model's
        train/eval mode is restored afterwards). Sequences also get `lengths` and `mask` of the valid latents."""
        if self.quantizer is None:
            raise ValueError("this model has no bottleneck (use_bottleneck=False): it produces no discrete codes")
        was_training = self.training
        self.eval()
        try:
            latents, mask, lengths = self._encode(pixel_values, pixel_mask, input_features, attention_mask)
            _, vq = self._quantize(latents, mask)
        finally:
            self.train(was_training)
        return VQVAEEncoderOutput(codes=vq.codes, lengths=lengths, mask=mask)

    @torch.no_grad()
    def decode_codes(
        self,
        codes: torch.Tensor | VQVAEEncoderOutput,
        mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        do_sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> VQVAEDecoderOutput:
        """Decoder output from codes alone (eval mode, restored afterwards).

        Args:
            codes: `(B, 8, 8, G)` (CIFAR) or `(B, T', G)` (sequences), or the :class:`VQVAEEncoderOutput` of
                :meth:`encode` (its `mask` is then used).
            mask: sequences, `(B, T')` True on valid latents (all valid when absent).
            labels: handwriting only — gray levels `(B, 1, H, T'·4)` to score under teacher forcing instead of
                generating (the logits then equal those of the eval-mode forward pass).
            do_sample, generator: handwriting generation: sample instead of argmax.

        CIFAR: `reconstruction` = argmax pixel values and their `logits`, identical to the eval-mode forward pass.
        Handwriting: autoregressive generation column by column (H·W PixelCNN passes), or teacher forcing with
        `labels`. Speech base model: the codewords (`quantized`) only.
        """
        if isinstance(codes, VQVAEEncoderOutput):
            mask = codes.mask if mask is None else mask
            codes = codes.codes
        was_training = self.training
        self.eval()
        try:
            q = self._codewords(codes)
            if self.architecture == "cifar10":
                logits = self.decoder(q)
                return VQVAEDecoderOutput(reconstruction=logits.argmax(-1), logits=logits, quantized=q)
            if mask is None:
                mask = torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)
            elif tuple(mask.shape) != tuple(q.shape[:2]):
                raise ValueError(f"`mask` must have shape {tuple(q.shape[:2])}, got {tuple(mask.shape)}")
            if self.architecture == "speech":
                return VQVAEDecoderOutput(quantized=q)
            width = q.shape[1] * self.config.time_reduction
            if labels is not None:
                width = labels.shape[-1]
            cond = self._conditioning(q, mask.bool(), width)
            if labels is not None:
                shape = (q.shape[0], self.config.num_channels, self.config.image_size, width)
                levels = self._check_labels(labels, shape, self.config.num_gray_levels)
                logits = self.decoder(levels, cond)
                return VQVAEDecoderOutput(reconstruction=logits.argmax(-1), logits=logits, quantized=q)
            levels, logits = self.decoder.generate(cond, do_sample=do_sample, generator=generator)
            return VQVAEDecoderOutput(reconstruction=levels, logits=logits, quantized=q)
        finally:
            self.train(was_training)


# ----------------------------------------------------------------------------------------------- CTC


class VQVAEForCTC(VQVAEPreTrainedModel):
    """Speech: `VQVAEModel` (conv front-end, BiLSTM, BN + linear, VQ) → 1×1 conv → CTC (blank `ctc_blank_id`)."""

    main_input_name = "input_features"

    def __init__(self, config: VQVAEConfig):
        if config.architecture != "speech":
            raise ValueError(
                f"VQVAEForCTC needs architecture='speech', got architecture={config.architecture!r} "
                "(use VQVAEModel for images and handwriting)"
            )
        super().__init__(config)
        self.vqvae = VQVAEModel(config)
        self.ctc_head = CTCHead(config)
        self.post_init()

    @property
    def quantizer(self):
        return self.vqvae.quantizer

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VQVAECTCOutput | tuple:
        r"""
        Args:
            input_features: `(B, T, 243)` fbank + energy with Δ, ΔΔ (CMVN applied).
            attention_mask: `(B, T)` 1 on real frames (all real when absent).
            labels: `(B, L)` int64 phone ids, padded with −100; the blank id never appears as a target.
        """
        if kwargs:
            raise TypeError(f"VQVAEForCTC.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        base = self.vqvae(input_features=input_features, attention_mask=attention_mask, return_dict=True)
        logits = self.ctc_head(base.quantized)
        lengths = base.code_lengths
        ctc_loss = loss = None
        if labels is not None:
            ctc_loss = self._ctc_loss(logits, lengths, labels)
            loss = ctc_loss + base.vq_loss
        out = VQVAECTCOutput(
            loss=loss,
            logits=logits,
            ctc_loss=ctc_loss,
            vq_loss=base.vq_loss,
            codes=base.codes,
            quantized=base.quantized,
            latents=base.latents,
            perplexity=base.perplexity,
            codebook_loss=base.codebook_loss,
            commitment_loss=base.commitment_loss,
            running_perplexity=base.running_perplexity,
            used_codes=base.used_codes,
            dead_code_fraction=base.dead_code_fraction,
            norm_ratio=base.norm_ratio,
            output_lengths=lengths,
            codes_mask=base.codes_mask,
        )
        return out if return_dict else out.to_tuple()

    def _ctc_loss(self, logits: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if labels.dim() != 2 or labels.shape[0] != logits.shape[0] or labels.is_floating_point():
            raise ValueError(
                f"`labels` must be an int tensor (batch, max_label_length), got {tuple(labels.shape)} {labels.dtype}"
            )
        real = labels != -100
        if bool((real & ((labels < 0) | (labels >= cfg.vocab_size))).any()):
            raise ValueError(f"`labels` must be phone ids in [0, {cfg.vocab_size}) or -100 (padding)")
        if bool((real & (labels == cfg.ctc_blank_id)).any()):
            raise ValueError(f"`labels` contain the CTC blank id {cfg.ctc_blank_id}; it can never be a target")
        target_lengths = real.sum(1)
        targets = labels.masked_select(real)
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V), fp32 under autocast
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return F.ctc_loss(
                log_probs,
                targets,
                lengths,
                target_lengths,
                blank=cfg.ctc_blank_id,
                reduction=cfg.ctc_loss_reduction,
                zero_infinity=cfg.ctc_zero_infinity,
            )

    @torch.no_grad()
    def encode(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> VQVAEEncoderOutput:
        """Discrete codes of the speech encoder (see :meth:`VQVAEModel.encode`)."""
        return self.vqvae.encode(input_features=input_features, attention_mask=attention_mask)

    @torch.no_grad()
    def decode_codes(
        self, codes: torch.Tensor | VQVAEEncoderOutput, mask: torch.Tensor | None = None
    ) -> VQVAEDecoderOutput:
        """CTC logits from codes alone: `logits` `(B, T', vocab_size)`, equal to the eval-mode forward pass."""
        out = self.vqvae.decode_codes(codes, mask=mask)
        return VQVAEDecoderOutput(logits=self.ctc_head(out.quantized), quantized=out.quantized)

    def greedy_decode(self, logits: torch.Tensor, output_lengths: torch.Tensor | None = None) -> list[list[int]]:
        """Best-path CTC decoding of `logits` `(B, T', V)` → phone-id lists."""
        return ctc_greedy_decode(logits, output_lengths, blank_id=self.config.ctc_blank_id)


__all__ = [
    "VQVAECTCOutput",
    "VQVAEDecoderOutput",
    "VQVAEEncoderOutput",
    "VQVAEForCTC",
    "VQVAEModel",
    "VQVAEOutput",
    "VQVAEPreTrainedModel",
    "ctc_greedy_decode",
    "export_remote_code_files",
]
