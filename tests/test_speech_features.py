"""VQVAEFeatureExtractor: Kaldi fbank match, deltas, CMVN, rates, save/load."""

import json

import numpy as np
import pytest

from vq_hf.models.vqvae_speech.feature_extraction_vqvae_speech import VQVAEFeatureExtractor

knf = pytest.importorskip("kaldi_native_fbank")


def _broadband_signal(seed: int, num_samples: int = 24000) -> np.ndarray:
    """A 300 Hz tone over AR(1) noise whose spectrum is flat after Kaldi's 0.97 pre-emphasis.

    The flat spectrum keeps every mel bin well above float32 rounding of the reference's FFT, so the
    comparison measures the algorithm, not the reference's single precision.
    """
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(num_samples)
    noise = np.empty(num_samples)
    acc = 0.0
    for i, value in enumerate(white):
        acc = value + 0.97 * acc
        noise[i] = acc
    t = np.arange(num_samples) / 16000.0
    x = 0.01 * noise + 0.2 * np.sin(2 * np.pi * 300.0 * t)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _kaldi_reference(wave: np.ndarray) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    opts.use_energy = True
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, (wave.astype(np.float32) * 32768.0).tolist())
    fbank.input_finished()
    static = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    return knf.compute_deltas(knf.DeltaOptions(order=2, window=2), static.astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_kaldi_native_fbank_to_1e4(seed):
    wave = _broadband_signal(seed)
    fe = VQVAEFeatureExtractor()
    ours = fe.extract(wave)
    ref = _kaldi_reference(wave)
    assert ours.shape == ref.shape == (fe.num_frames(len(wave)), 243)
    np.testing.assert_allclose(ours[:, :81], ref[:, :81], rtol=0, atol=1e-4)  # energy + 80 log-mel
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)  # with Δ and ΔΔ


def test_feature_layout_energy_first_then_deltas():
    fe = VQVAEFeatureExtractor()
    wave = _broadband_signal(3, 8000)
    feats = fe.extract(wave)
    static = fe.compute_fbank(wave)
    np.testing.assert_array_equal(feats[:, :81], static)
    # Column 0 is Kaldi's raw log energy: log Σ (x − mean)² of the 400-sample frame in 16-bit units.
    frame = wave[:400].astype(np.float64) * 32768
    frame -= frame.mean()
    assert feats[0, 0] == pytest.approx(np.log((frame**2).sum()), abs=1e-4)
    # Δ of a constant sequence is 0; Δ of a linear ramp is its slope (edge frames replicated aside).
    ramp = np.tile(np.arange(10, dtype=np.float32)[:, None], (1, 81))
    d = fe.add_deltas(ramp)
    np.testing.assert_allclose(d[4:6, 81:162], 1.0, atol=1e-6)
    np.testing.assert_allclose(d[4:6, 162:], 0.0, atol=1e-6)


def test_int16_and_float_waveforms_give_identical_features():
    fe = VQVAEFeatureExtractor()
    wave = _broadband_signal(4, 6000)
    as_int = np.round(wave * 32768).astype(np.int16)
    np.testing.assert_allclose(fe.extract(as_int), fe.extract(as_int.astype(np.float32) / 32768), atol=1e-5)


def test_cmvn_fit_apply_and_call_batch_padding():
    fe = VQVAEFeatureExtractor()
    waves = [_broadband_signal(5, 8000), _broadband_signal(6, 5000)]
    with pytest.raises(ValueError, match="CMVN statistics are not fitted"):
        fe(waves, sampling_rate=16000)
    fe.fit_cmvn(waves)
    assert fe.cmvn_frames == sum(fe.num_frames(len(w)) for w in waves)
    out = fe(waves, sampling_rate=16000, return_tensors="pt")
    feats, mask = out["input_features"], out["attention_mask"]
    assert feats.shape == (2, fe.num_frames(8000), 243) and str(feats.dtype) == "torch.float32"
    assert mask.sum(1).tolist() == [fe.num_frames(8000), fe.num_frames(5000)]
    real = np.concatenate([feats[0].numpy(), feats[1, : fe.num_frames(5000)].numpy()])
    np.testing.assert_allclose(real.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(real.std(0), 1.0, atol=1e-3)
    # Statistics from precomputed feature matrices equal statistics from the waveforms.
    fe2 = VQVAEFeatureExtractor().fit_cmvn([fe.extract(w) for w in waves])
    np.testing.assert_allclose(fe2.cmvn_mean, fe.cmvn_mean, rtol=1e-9)


def test_rejects_wrong_sampling_rate_and_bad_input():
    fe = VQVAEFeatureExtractor(do_normalize=False)
    wave = _broadband_signal(7, 4000)
    with pytest.raises(ValueError, match="8000 Hz does not match"):
        fe(wave, sampling_rate=8000)
    with pytest.raises(ValueError, match="shorter than one"):
        fe.extract(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="mono waveform"):
        fe.extract(np.zeros((2, 4000), dtype=np.float32))
    with pytest.raises(ValueError, match="feature_size=80 disagrees"):
        VQVAEFeatureExtractor(feature_size=80)
    with pytest.raises(ValueError, match="has 3 values"):
        VQVAEFeatureExtractor(cmvn_mean=[0.0] * 3, cmvn_std=[1.0] * 3)
    single = fe(wave, sampling_rate=16000, return_tensors="np")
    assert single["input_features"].shape == (1, fe.num_frames(4000), 243)


def test_save_pretrained_round_trip(tmp_path):
    fe = VQVAEFeatureExtractor().fit_cmvn([_broadband_signal(8, 6000)])
    fe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert isinstance(config["cmvn_mean"], list) and len(config["cmvn_mean"]) == 243
    assert "mel_filters" not in config and "window" not in config
    loaded = VQVAEFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.cmvn_mean == fe.cmvn_mean and loaded.cmvn_std == fe.cmvn_std
    wave = _broadband_signal(9, 5000)
    np.testing.assert_array_equal(
        loaded(wave, sampling_rate=16000)["input_features"], fe(wave, sampling_rate=16000)["input_features"]
    )
