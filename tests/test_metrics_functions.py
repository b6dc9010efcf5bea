"""vq_hf.metrics plain functions: bits/dim and rates, codebook perplexity, PER, greedy CTC."""

import math

import numpy as np
import pytest
import torch

from vq_hf.metrics import (
    PhoneErrorRate,
    bits_per_dim,
    code_counts,
    codebook_perplexity,
    ctc_greedy_decode,
    nelbo_bits_per_dim,
    nelbo_report,
    phone_error_rate,
    uniform_rate_bits,
    unigram_rate_bits,
)

# ------------------------------------------------------------------------------------------ bits / rates


def test_bits_per_dim_pools_totals():
    # two images, 3072 dims each, NLL exactly 2 and 4 bits/dim → pooled 3, not a mean of anything else
    nll = np.array([2.0, 4.0]) * 3072 * math.log(2)
    assert bits_per_dim(nll, [3072, 3072]) == pytest.approx(3.0)
    # unequal sizes: pooled by dims, unlike the mean of per-example rates (2 + 4) / 2
    nll = np.array([2.0 * 100, 4.0 * 300]) * math.log(2)
    assert bits_per_dim(nll, [100, 300]) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(1.0, 0)


def test_uniform_rate_matches_paper_constants():
    # CIFAR-10, 8 codebooks x 128 codes on an 8x8 grid: 1.1667 bits/dim; 5 x 1024: 1.0417
    assert uniform_rate_bits(64, 128, num_codebooks=8) / 3072 == pytest.approx(7 * 8 * 64 / 3072)
    assert uniform_rate_bits(64, 1024, num_codebooks=5) / 3072 == pytest.approx(1.0416667, abs=1e-6)
    # ScribbleLens: one latent per 4 x 32 pixels, K = 4096 -> 12 / 128 = 0.09375 (Table II uniform - rec.)
    assert uniform_rate_bits(1, 4096) / 128 == pytest.approx(0.09375)
    # Table II row "vanilla VQ": 0.213 + 0.09375 = 0.307 (rounded)
    assert nelbo_bits_per_dim(0.213 * 128, uniform_rate_bits(1, 4096), 128) == pytest.approx(0.307, abs=5e-4)


def test_unigram_rate_equals_entropy_and_table_ii_formula():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 50, size=(4000,))
    pplx = codebook_perplexity(codes, 64)
    rate = unigram_rate_bits(codes, 64)
    assert rate == pytest.approx(len(codes) * float(pplx.entropy[0]))
    # Table II: Unigram NELBO = BPD + log2(perplexity) / 128 for one latent per 128 dims
    nll = 0.2 * 128 * len(codes) * math.log(2)
    report = nelbo_report(nll, 128 * len(codes), codes, 64)
    assert report["reconstruction_bits_per_dim"] == pytest.approx(0.2)
    assert report["unigram_nelbo_bits_per_dim"] == pytest.approx(0.2 + math.log2(float(pplx.perplexity[0])) / 128)
    assert report["uniform_nelbo_bits_per_dim"] == pytest.approx(0.2 + 6 / 128)
    assert report["unigram_rate_bits_per_dim"] <= report["uniform_rate_bits_per_dim"]


def test_unigram_rate_with_prior_counts_and_smoothing():
    train = np.array([[0, 1], [0, 1], [1, 1], [0, 2]])  # (positions, 2 codebooks), K = 4
    counts = code_counts(train, 4)
    assert counts.tolist() == [[3, 1, 0, 0], [0, 3, 1, 0]]
    test = np.array([[0, 1], [1, 2]])
    expected = -(math.log2(3 / 4) + math.log2(3 / 4) + math.log2(1 / 4) + math.log2(1 / 4))
    assert unigram_rate_bits(test, 4, counts) == pytest.approx(expected)
    unseen = np.array([[3, 1]])  # code 3 of codebook 0 never seen in the prior
    with pytest.raises(ValueError, match="zero probability"):
        unigram_rate_bits(unseen, 4, counts)
    smoothed = unigram_rate_bits(unseen, 4, counts, smoothing=1.0)
    assert smoothed == pytest.approx(-(math.log2(1 / 8) + math.log2(4 / 8)))


def test_mask_excludes_padding_and_range_is_checked():
    codes = torch.tensor([[[1], [2], [0]], [[1], [3], [3]]])  # (B=2, T=3, G=1)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert code_counts(codes, 4, mask=mask).tolist() == [[0, 2, 1, 0]]
    with pytest.raises(ValueError, match="mask"):
        code_counts(codes, 4, mask=mask[:, :2])
    with pytest.raises(ValueError, match="outside"):
        code_counts(codes, 3)
    with pytest.raises(TypeError, match="integer"):
        code_counts(np.array([0.5, 1.0]), 3)


# ------------------------------------------------------------------------------------------ perplexity


def test_codebook_perplexity_bounds_and_counts_path():
    k = 16
    uniform = np.tile(np.arange(k), 10)
    r = codebook_perplexity(uniform, k)
    assert float(r.perplexity[0]) == pytest.approx(k)
    assert int(r.used_codes[0]) == k
    assert float(codebook_perplexity(np.zeros(50, dtype=int), k).perplexity[0]) == pytest.approx(1.0)
    # base only changes the entropy's unit, never the perplexity
    rng = np.random.default_rng(1)
    codes = rng.integers(0, k, size=(200, 3))
    r2, re = codebook_perplexity(codes, k, base=2), codebook_perplexity(codes, k, base=math.e)
    np.testing.assert_allclose(r2.perplexity, re.perplexity)
    np.testing.assert_allclose(r2.entropy * math.log(2), re.entropy)
    # streaming: summed per-batch counts give the same dataset-level numbers
    counts = sum(code_counts(codes[i : i + 50], k) for i in range(0, 200, 50))
    np.testing.assert_allclose(codebook_perplexity(counts=counts).perplexity, r2.perplexity)
    d = r2.to_dict()
    assert len(d["perplexity"]) == 3 and d["perplexity_sum"] == pytest.approx(float(r2.perplexity.sum()))
    with pytest.raises(ValueError, match="exactly one"):
        codebook_perplexity(codes, k, counts=counts)


def test_dataset_perplexity_exceeds_mean_batch_perplexity():
    # each batch uses 4 codes, the split uses 16: per-batch averaging would report 4
    codes = np.arange(16).reshape(4, 4)
    batch_pplx = [float(codebook_perplexity(b, 16).perplexity[0]) for b in codes]
    assert np.mean(batch_pplx) == pytest.approx(4.0)
    assert float(codebook_perplexity(codes.reshape(-1), 16).perplexity[0]) == pytest.approx(16.0)


# ------------------------------------------------------------------------------------------ PER / CTC


def test_phone_error_rate_is_pooled_not_mean_of_batches():
    preds = [[1, 2, 3], [5]]
    refs = [[1, 2, 4, 6], [7]]  # errors 2 of 4, 1 of 1
    assert phone_error_rate(preds, refs) == pytest.approx(3 / 5)
    assert phone_error_rate(preds, refs) != pytest.approx(np.mean([2 / 4, 1 / 1]))
    # strings are whitespace-separated phones
    assert phone_error_rate(["sil hh ah"], ["sil hh aa l"]) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="2 references"):
        phone_error_rate([[1]], [[1], [2]])
    with pytest.raises(ValueError, match="no labels"):
        phone_error_rate([[1]], [[]])


def test_streaming_per_equals_pooled_and_strips_label_padding():
    rng = np.random.default_rng(2)
    refs = [rng.integers(1, 10, size=rng.integers(1, 9)).tolist() for _ in range(12)]
    preds = [rng.integers(1, 10, size=rng.integers(0, 9)).tolist() for _ in range(12)]
    acc = PhoneErrorRate()
    for i in range(0, 12, 5):  # uneven batches
        batch = refs[i : i + 5]
        padded = torch.full((len(batch), 8), -100, dtype=torch.long)
        for j, r in enumerate(batch):
            padded[j, : len(r)] = torch.tensor(r)
        acc.add_batch(preds[i : i + 5], padded)
    assert acc.num_sequences == 12
    assert acc.compute() == pytest.approx(phone_error_rate(preds, refs))
    other = PhoneErrorRate()
    other.load_state_dict(acc.state_dict())
    assert other.merge(acc).compute() == pytest.approx(acc.compute())
    assert acc.all_reduce() is acc  # no process group: unchanged
    with pytest.raises(ValueError, match="no reference"):
        PhoneErrorRate().compute()


def test_ctc_greedy_decode_collapses_then_drops_blanks():
    c = 5
    frames = [[1, 1, 0, 1, 2, 2, 0, 0, 3], [0, 4, 4, 4, 0, 0, 0, 0, 0]]
    logits = torch.full((2, 9, c), -5.0)
    for b, row in enumerate(frames):
        for t, k in enumerate(row):
            logits[b, t, k] = 5.0
    assert ctc_greedy_decode(logits.log_softmax(-1)) == [[1, 1, 2, 3], [4]]
    # frames beyond the length are ignored
    assert ctc_greedy_decode(logits, torch.tensor([4, 1])) == [[1, 1], []]
    assert ctc_greedy_decode(logits.numpy(), [9, 9], blank_id=0) == [[1, 1, 2, 3], [4]]
    # frame ids already argmax-ed decode the same; another blank id drops that label instead
    assert ctc_greedy_decode(torch.tensor(frames)) == ctc_greedy_decode(np.array(frames)) == [[1, 1, 2, 3], [4]]
    assert ctc_greedy_decode(torch.tensor(frames), blank_id=4) == [[1, 0, 1, 2, 0, 3], [0, 0]]
    with pytest.raises(ValueError, match="lengths"):
        ctc_greedy_decode(logits, [10, 1])
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        ctc_greedy_decode(logits[0])
