"""Kaldi-compatible speech features for the WSJ VQ-VAE: log filterbanks (80 mel + energy), Δ, ΔΔ, global CMVN.

The computation reproduces Kaldi's ``compute-fbank-feats --use-energy=true --num-mel-bins=80 | add-deltas``
(the features of the reference WSJ recipe) in numpy, frame by frame identical to Kaldi's arithmetic:
snip-edges framing, DC removal, raw log energy before pre-emphasis, pre-emphasis 0.97, Povey window, a
512-point power spectrum, Kaldi's mel banks (``1127 ln(1 + f/700)``, 20 Hz to Nyquist) and a floor of
float32 epsilon before the log. The test suite checks it against kaldi-native-fbank (Kaldi's own code) to
1e-4.

Global CMVN statistics (per-dimension mean and standard deviation over every training frame) live in the
extractor, are fitted with :meth:`VQVAEFeatureExtractor.fit_cmvn`, and are serialised as plain lists in
``preprocessor_config.json`` by ``save_pretrained``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Kaldi floors energies at float32 machine epsilon before taking logs.
_FLT_EPSILON = float(np.finfo(np.float32).eps)


def kaldi_mel_banks(
    num_bins: int, padded_window: int, sampling_rate: int, low_freq: float, high_freq: float
) -> np.ndarray:
    """Kaldi's triangular mel filters (``MelBanks``), as a matrix.

    Returns:
        float64 array of shape (padded_window // 2 + 1, num_bins); the Nyquist row is zero, as in Kaldi,
        whose filters only cover FFT bins 0 … padded_window/2 − 1.
    """
    nyquist = 0.5 * sampling_rate
    if high_freq <= 0.0:
        high_freq = nyquist + high_freq
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(
            f"mel band edges must satisfy 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz); "
            f"got low_freq={low_freq}, high_freq={high_freq}"
        )

    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    num_fft_bins = padded_window // 2
    mel_low, mel_high = mel(low_freq), mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    fft_mels = mel(np.arange(num_fft_bins) * (sampling_rate / padded_window))  # (F,)
    left = mel_low + np.arange(num_bins) * delta
    center = left + delta
    right = center + delta
    up = (fft_mels[:, None] - left) / (center - left)
    down = (right - fft_mels[:, None]) / (right - center)
    inside = (fft_mels[:, None] > left) & (fft_mels[:, None] < right)
    weights = np.where(inside, np.where(fft_mels[:, None] <= center, up, down), 0.0)
    return np.concatenate([weights, np.zeros((1, num_bins))], axis=0)


def povey_window(length: int) -> np.ndarray:
    """Kaldi's default analysis window: a Hann window raised to the power 0.85."""
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * math.pi * n / (length - 1))) ** 0.85


def delta_windows(order: int, window: int) -> list[np.ndarray]:
    """Kaldi's ``DeltaFeatures`` regression windows: w⁰ = [1], wⁱ = wⁱ⁻¹ * w¹ with w¹_j = j / Σ k²."""
    first = np.arange(-window, window + 1, dtype=np.float64) / float(2 * sum(k * k for k in range(1, window + 1)))
    windows = [np.ones(1)]
    for _ in range(order):
        windows.append(np.convolve(windows[-1], first))
    return windows


def add_deltas(features: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi ``add-deltas``: [x, Δx, Δ²x, …] per frame, edge frames replicated.

    Args:
        features: (T, D) static features.

    Returns:
        float32 array (T, D · (order + 1)), blocks ordered static, Δ, ΔΔ.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"add_deltas expects a (frames, dims) matrix, got shape {features.shape}")
    x = features.astype(np.float64)
    num_frames = x.shape[0]
    if num_frames == 0:
        return np.zeros((0, x.shape[1] * (order + 1)), dtype=np.float32)
    reach = order * window
    # Kaldi clamps out-of-range frame indices to the first/last frame.
    padded = np.concatenate([np.repeat(x[:1], reach, axis=0), x, np.repeat(x[-1:], reach, axis=0)])
    blocks = []
    for w in delta_windows(order, window):
        half = (len(w) - 1) // 2
        acc = np.zeros_like(x)
        for j, coeff in enumerate(w):
            if coeff != 0.0:
                start = reach - half + j
                acc += coeff * padded[start : start + num_frames]
        blocks.append(acc)
    return np.concatenate(blocks, axis=1).astype(np.float32)


class VQVAEFeatureExtractor(SequenceFeatureExtractor):
    r"""Kaldi-compatible log-mel filterbank + energy features with deltas and global CMVN.

    Per frame the output is ``[log-energy, 80 log-mel, Δ(81), ΔΔ(81)]`` = 243 values, Kaldi's
    ``compute-fbank-feats --use-energy=true --num-mel-bins=80 | add-deltas`` order, normalised with global
    mean/variance statistics fitted on the training set (:meth:`fit_cmvn`).

    Waveforms: float arrays are taken to be in [−1, 1] and scaled by 32768 (Kaldi works on 16-bit sample
    values, so energies and the epsilon floor match Kaldi); integer arrays (e.g. int16 from kaldiio or
    soundfile) are used as they are. The two give identical features.

    Args:
        feature_size (`int`, defaults to 243): output dimension; must equal (num_mel_bins + use_energy) × (delta_order + 1).
        sampling_rate (`int`, defaults to 16000): the only accepted input rate (no resampling is done).
        num_mel_bins (`int`, defaults to 80)
        use_energy (`bool`, defaults to `True`): prepend Kaldi's raw log energy (``--use-energy``).
        frame_length_ms / frame_shift_ms (`float`, defaults to 25 / 10)
        preemphasis (`float`, defaults to 0.97), low_freq / high_freq (`float`, defaults to 20 / 0 = Nyquist)
        dither (`float`, defaults to 0.0): Gaussian dither in 16-bit units (Kaldi's CLI default is 1.0);
            with dither > 0 the noise is drawn from ``numpy.random.default_rng(dither_seed)`` per call, so
            features stay reproducible.
        delta_order / delta_window (`int`, defaults to 2 / 2): Kaldi ``add-deltas`` options.
        do_normalize (`bool`, defaults to `True`): apply global CMVN in ``__call__``.
        normalize_vars (`bool`, defaults to `True`): also divide by the standard deviation.
        cmvn_mean / cmvn_std (`list[float]`, *optional*): fitted statistics (length ``feature_size``).
        cmvn_frames (`int`, defaults to 0): number of frames the statistics were fitted on.
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 243,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        num_mel_bins: int = 80,
        use_energy: bool = True,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        preemphasis: float = 0.97,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        dither: float = 0.0,
        dither_seed: int = 0,
        delta_order: int = 2,
        delta_window: int = 2,
        do_normalize: bool = True,
        normalize_vars: bool = True,
        cmvn_mean: list[float] | None = None,
        cmvn_std: list[float] | None = None,
        cmvn_frames: int = 0,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.num_mel_bins = int(num_mel_bins)
        self.use_energy = bool(use_energy)
        self.frame_length_ms = float(frame_length_ms)
        self.frame_shift_ms = float(frame_shift_ms)
        self.preemphasis = float(preemphasis)
        self.low_freq = float(low_freq)
        self.high_freq = float(high_freq)
        self.dither = float(dither)
        self.dither_seed = int(dither_seed)
        self.delta_order = int(delta_order)
        self.delta_window = int(delta_window)
        self.do_normalize = bool(do_normalize)
        self.normalize_vars = bool(normalize_vars)
        self.cmvn_frames = int(cmvn_frames)

        expected = self.static_dim * (self.delta_order + 1)
        if feature_size != expected:
            raise ValueError(
                f"feature_size={feature_size} disagrees with num_mel_bins={num_mel_bins}, use_energy={use_energy}, "
                f"delta_order={delta_order}: expected ({self.static_dim}) × ({self.delta_order} + 1) = {expected}"
            )
        self.cmvn_mean = self._check_stats("cmvn_mean", cmvn_mean)
        self.cmvn_std = self._check_stats("cmvn_std", cmvn_std)
        if (self.cmvn_mean is None) != (self.cmvn_std is None):
            raise ValueError("cmvn_mean and cmvn_std must be given together (both fitted by fit_cmvn)")
        if self.cmvn_std is not None and min(self.cmvn_std) <= 0.0:
            raise ValueError(f"cmvn_std must be positive; got minimum {min(self.cmvn_std)}")
        # Named `mel_filters` / `window` so that FeatureExtractionMixin.to_dict leaves them out of the JSON.
        self.mel_filters = kaldi_mel_banks(
            self.num_mel_bins, self.padded_window_length, self.sampling_rate, self.low_freq, self.high_freq
        )
        self.window = povey_window(self.window_length)

    # ------------------------------------------------------------------ geometry
    @property
    def static_dim(self) -> int:
        return self.num_mel_bins + int(self.use_energy)

    @property
    def window_length(self) -> int:
        return int(self.sampling_rate * 0.001 * self.frame_length_ms)

    @property
    def hop_length(self) -> int:
        return int(self.sampling_rate * 0.001 * self.frame_shift_ms)

    @property
    def padded_window_length(self) -> int:
        return 1 << (self.window_length - 1).bit_length()

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi produces for ``num_samples`` samples (``--snip-edges=true``)."""
        if num_samples < self.window_length:
            return 0
        return 1 + (num_samples - self.window_length) // self.hop_length

    def _check_stats(self, name: str, value) -> list[float] | None:
        if value is None:
            return None
        value = [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)]
        if len(value) != self.feature_size:
            raise ValueError(f"{name} has {len(value)} values; expected feature_size={self.feature_size}")
        if not all(math.isfinite(v) for v in value):
            raise ValueError(f"{name} contains non-finite values")
        return value

    # ------------------------------------------------------------------ features
    def _as_kaldi_waveform(self, waveform) -> np.ndarray:
        array = np.asarray(waveform)
        if array.ndim == 2 and 1 in array.shape:
            array = array.reshape(-1)
        if array.ndim != 1:
            raise ValueError(f"expected a mono waveform (1-D array), got shape {array.shape}")
        if np.issubdtype(array.dtype, np.integer):
            return array.astype(np.float64)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"waveform dtype {array.dtype} is neither float nor integer")
        return array.astype(np.float64) * 32768.0

    def compute_fbank(self, waveform) -> np.ndarray:
        """Kaldi fbank of one utterance (no deltas, no CMVN).

        Args:
            waveform: (num_samples,) float in [−1, 1] or integer 16-bit sample values.

        Returns:
            float32 array (num_frames, static_dim): [log-energy, log-mel × num_mel_bins] per frame.
        """
        signal = self._as_kaldi_waveform(waveform)
        num_frames = self.num_frames(signal.shape[0])
        if num_frames == 0:
            raise ValueError(
                f"waveform of {signal.shape[0]} samples is shorter than one {self.frame_length_ms} ms frame "
                f"({self.window_length} samples at {self.sampling_rate} Hz)"
            )
        starts = np.arange(num_frames) * self.hop_length
        frames = signal[starts[:, None] + np.arange(self.window_length)]  # (T, W)
        if self.dither != 0.0:
            rng = np.random.default_rng(self.dither_seed)
            frames = frames + self.dither * rng.standard_normal(frames.shape)
        frames = frames - frames.mean(axis=1, keepdims=True)
        log_energy = np.log(np.maximum((frames * frames).sum(axis=1), _FLT_EPSILON))
        if self.preemphasis != 0.0:
            # Kaldi: x[i] -= p·x[i−1] for i > 0 and x[0] -= p·x[0].
            shifted = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
            frames = frames - self.preemphasis * shifted
        frames = frames * self.window
        spectrum = np.fft.rfft(frames, n=self.padded_window_length, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        mel = np.log(np.maximum(power @ self.mel_filters, _FLT_EPSILON))
        static = np.concatenate([log_energy[:, None], mel], axis=1) if self.use_energy else mel
        return static.astype(np.float32)

    def add_deltas(self, static: np.ndarray) -> np.ndarray:
        """Kaldi ``add-deltas`` with this extractor's order/window: (T, static_dim) → (T, feature_size)."""
        static = np.asarray(static)
        if static.ndim != 2 or static.shape[1] != self.static_dim:
            raise ValueError(f"expected static features of shape (T, {self.static_dim}), got {static.shape}")
        return add_deltas(static, self.delta_order, self.delta_window)

    def extract(self, waveform) -> np.ndarray:
        """Un-normalised features of one utterance: (num_frames, feature_size) float32."""
        return self.add_deltas(self.compute_fbank(waveform))

    def features_from_matrix(self, matrix: np.ndarray, source: str = "matrix") -> np.ndarray:
        """Accept a precomputed Kaldi matrix (e.g. from feats.scp): full features as they are, statics + deltas.

        Args:
            matrix: (T, feature_size) features with deltas, or (T, static_dim) statics (deltas are added).
            source: a name for error messages (an utterance id or rxfile).
        """
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError(f"{source}: expected a (frames, dims) feature matrix, got shape {matrix.shape}")
        if matrix.shape[1] == self.feature_size:
            return matrix
        if matrix.shape[1] == self.static_dim:
            return self.add_deltas(matrix)
        raise ValueError(
            f"{source}: feature matrix has {matrix.shape[1]} columns; expected {self.feature_size} "
            f"(fbank + deltas) or {self.static_dim} (fbank + energy, deltas are then added)"
        )

    # ------------------------------------------------------------------ CMVN
    @property
    def has_cmvn(self) -> bool:
        return self.cmvn_mean is not None

    def fit_cmvn(self, items: Iterable) -> VQVAEFeatureExtractor:
        """Fit global CMVN statistics over every frame of ``items`` (replacing any previous statistics).

        Args:
            items: an iterable of 1-D waveforms (features are extracted first) or 2-D un-normalised
                feature matrices of shape (T, feature_size) (or (T, static_dim) statics).

        Returns:
            self. Statistics are accumulated in float64; std = √max(1e-10, E[x²] − E[x]²).
        """
        total = np.zeros(self.feature_size, dtype=np.float64)
        total_sq = np.zeros(self.feature_size, dtype=np.float64)
        count = 0
        for index, item in enumerate(items):
            array = np.asarray(item)
            if array.ndim == 1:
                feats = self.extract(array)
            elif array.ndim == 2:
                feats = self.features_from_matrix(array, source=f"fit_cmvn item {index}")
            else:
                raise ValueError(f"fit_cmvn item {index}: expected a waveform or a feature matrix, got shape {array.shape}")
            feats = feats.astype(np.float64)
            total += feats.sum(axis=0)
            total_sq += (feats * feats).sum(axis=0)
            count += feats.shape[0]
        if count == 0:
            raise ValueError("fit_cmvn received no frames: the iterable was empty")
        mean = total / count
        var = np.maximum(total_sq / count - mean * mean, 1e-10)
        self.cmvn_mean = mean.tolist()
        self.cmvn_std = np.sqrt(var).tolist()
        self.cmvn_frames = int(count)
        return self

    def apply_cmvn(self, features: np.ndarray) -> np.ndarray:
        """(T, feature_size) → CMVN-normalised float32 (mean always, variance if ``normalize_vars``)."""
        if not self.has_cmvn:
            raise ValueError(
                "CMVN statistics are not fitted: call fit_cmvn(training waveforms or features) first, "
                "or construct the extractor with do_normalize=False"
            )
        features = np.asarray(features, dtype=np.float64)
        out = features - np.asarray(self.cmvn_mean)
        if self.normalize_vars:
            out = out / np.asarray(self.cmvn_std)
        return out.astype(np.float32)

    # ------------------------------------------------------------------ HF entry point
    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        do_normalize: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one waveform or a batch of waveforms.

        Args:
            raw_speech: a 1-D array / list of floats, or a list of them (a batch).
            sampling_rate: the input rate; anything other than ``self.sampling_rate`` is rejected.

        Returns:
            BatchFeature with ``input_features`` (B, T, feature_size) float32 and ``attention_mask`` (B, T)
            (1 on real frames) after padding to the longest utterance.
        """
        if sampling_rate is None:
            logger.warning(
                f"No sampling_rate passed to {self.__class__.__name__}; assuming {self.sampling_rate} Hz. "
                "Pass sampling_rate= to catch rate mismatches."
            )
        elif int(sampling_rate) != self.sampling_rate:
            raise ValueError(
                f"sampling_rate={sampling_rate} Hz does not match the feature extractor's {self.sampling_rate} Hz; "
                "resample the audio first (features of mismatched rates are not comparable)"
            )
        do_normalize = self.do_normalize if do_normalize is None else do_normalize

        is_batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and (
            isinstance(raw_speech[0], (list, tuple)) or np.asarray(raw_speech[0]).ndim >= 1
        )
        if not is_batched and isinstance(raw_speech, np.ndarray) and raw_speech.ndim == 2:
            raise ValueError(
                f"got a 2-D array of shape {raw_speech.shape}; pass a list of 1-D waveforms for a batch"
            )
        waves = list(raw_speech) if is_batched else [raw_speech]
        features = []
        for wave in waves:
            feats = self.extract(np.asarray(wave))
            if do_normalize:
                feats = self.apply_cmvn(feats)
            features.append(feats)

        batch = BatchFeature({"input_features": features})
        padded = self.pad(
            batch,
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=self.return_attention_mask if return_attention_mask is None else return_attention_mask,
            return_tensors=return_tensors,
        )
        return padded

    def to_dict(self) -> dict:
        output = super().to_dict()
        # Plain floats/ints only: the JSON must round-trip exactly through from_pretrained.
        for key in ("cmvn_mean", "cmvn_std"):
            if output.get(key) is not None:
                output[key] = [float(v) for v in output[key]]
        return output


__all__ = ["VQVAEFeatureExtractor", "add_deltas", "kaldi_mel_banks", "povey_window", "delta_windows"]
