"""The local evaluate modules load offline and give the same numbers as the plain functions."""

import numpy as np
import pytest

evaluate = pytest.importorskip("evaluate")

from vq_hf.metrics import (  # noqa: E402
    EVALUATE_MODULES,
    codebook_perplexity,
    evaluate_module_path,
    nelbo_report,
    phone_error_rate,
)


def test_module_paths_exist_and_unknown_name_is_refused():
    for name in EVALUATE_MODULES:
        assert evaluate_module_path(name).endswith(name)
    with pytest.raises(ValueError, match="available"):
        evaluate_module_path("accuracy")


def test_phone_error_rate_module_matches_function():
    rng = np.random.default_rng(0)
    refs = [rng.integers(1, 20, size=rng.integers(1, 12)).tolist() for _ in range(9)]
    preds = [rng.integers(1, 20, size=rng.integers(0, 12)).tolist() for _ in range(9)]
    m = evaluate.load(evaluate_module_path("phone_error_rate"))
    for i in range(0, 9, 4):
        m.add_batch(predictions=preds[i : i + 4], references=refs[i : i + 4])
    out = m.compute()
    assert out["phone_error_rate"] == pytest.approx(phone_error_rate(preds, refs))
    assert out["reference_length"] == sum(map(len, refs))


def test_codebook_perplexity_module_matches_function_nested_and_flat():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 32, size=(6, 20, 2))  # examples x positions x codebooks
    m = evaluate.load(evaluate_module_path("codebook_perplexity"))
    for i in range(0, 6, 3):
        m.add_batch(codes=codes[i : i + 3].tolist())
    out = m.compute(codebook_size=32)
    np.testing.assert_allclose(out["perplexity"], codebook_perplexity(codes, 32).perplexity)
    flat = [rng.integers(0, 8, size=n).tolist() for n in (3, 7, 5)]  # one codebook, ragged lengths
    m = evaluate.load(evaluate_module_path("codebook_perplexity"))
    out = m.compute(codes=flat, codebook_size=8)
    expected = codebook_perplexity(np.concatenate(flat), 8)
    assert out["perplexity"] == pytest.approx(float(expected.perplexity[0]))
    assert out["used_codes"] == int(expected.used_codes[0])


def test_bits_per_dim_module_matches_nelbo_report():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 128, size=(5, 64, 8))
    nll = rng.uniform(5000, 9000, size=5)
    m = evaluate.load(evaluate_module_path("bits_per_dim"))
    m.add_batch(nll_nats=nll[:2].tolist(), num_dims=[3072] * 2, codes=codes[:2].tolist())
    m.add_batch(nll_nats=nll[2:].tolist(), num_dims=[3072] * 3, codes=codes[2:].tolist())
    out = m.compute(codebook_size=128)
    ref = nelbo_report(nll, 5 * 3072, codes, 128)
    for key, value in ref.items():
        assert out[key] == pytest.approx(value), key
    assert out["bits_per_dim"] == pytest.approx(ref["reconstruction_bits_per_dim"])
