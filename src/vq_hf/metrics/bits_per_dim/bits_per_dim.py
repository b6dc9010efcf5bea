"""Bits/dim, latent rates and NELBO as a local `evaluate` module (wraps vq_hf.metrics.bits)."""

import datasets
import evaluate
import numpy as np

from vq_hf.metrics import PAPER_CITATION
from vq_hf.metrics import bits_per_dim
from vq_hf.metrics import nelbo_report
from vq_hf.metrics._arrays import stack_example_codes

_DESCRIPTION = """
Pooled reconstruction bits per dimension, sum(NLL nats) / (sum(num_dims) * ln 2), and, when codes are given,
the paper's negative ELBOs (Tables II/III): uniform-prior rate num_latents * num_codebooks * log2(K) and
unigram-prior rate -sum log2 p(code) with p the code frequencies of the scored split (or of `counts`), both
added to the reconstruction bits and divided by the total number of dimensions. Same numbers as
`vq_hf.metrics.bits_per_dim` / `vq_hf.metrics.nelbo_report`. On CIFAR-10, the paper's Table III
"Reconstruction BPD" is `uniform_nelbo_bits_per_dim`.
"""

_KWARGS_DESCRIPTION = """
Args:
    nll_nats: per-example total negative log-likelihood of the data given the codes, in nats.
    num_dims: per-example number of scored dimensions (3072 per CIFAR-10 image; 32 x real columns per line).
    codes: per-example codes, positions x codebooks (list of lists) or a flat list for one codebook;
        pass empty lists to get the reconstruction number only.
    codebook_size: int, K (required when codes are given).
    counts: optional (num_codebooks, K) code counts defining the unigram prior (default: the scored codes).
    smoothing: additive pseudo-count for the unigram prior (default 0).
Returns:
    bits_per_dim (reconstruction), and with codes also reconstruction_bits_per_dim,
    uniform_rate_bits_per_dim, unigram_rate_bits_per_dim, uniform_nelbo_bits_per_dim,
    unigram_nelbo_bits_per_dim, codebook_entropy_bits, num_dims, num_latents, num_codebooks.
"""




@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BitsPerDim(evaluate.Metric):
    def _info(self):
        seq = datasets.Sequence
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=PAPER_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "nll_nats": datasets.Value("float64"),
                        "num_dims": datasets.Value("int64"),
                        "codes": seq(seq(datasets.Value("int64"))),
                    }
                ),
                datasets.Features(
                    {
                        "nll_nats": datasets.Value("float64"),
                        "num_dims": datasets.Value("int64"),
                        "codes": seq(datasets.Value("int64")),
                    }
                ),
            ],
        )

    def _compute(self, nll_nats, num_dims, codes, codebook_size=None, counts=None, smoothing=0.0):
        nll = np.asarray(nll_nats, dtype=np.float64)
        dims = np.asarray(num_dims, dtype=np.int64)
        result = {"bits_per_dim": bits_per_dim(nll, dims)}
        stacked = stack_example_codes(codes)
        if stacked.size == 0:
            return result
        if codebook_size is None:
            raise ValueError("bits_per_dim: codes were given; pass codebook_size=K to compute()")
        result.update(nelbo_report(nll, dims, stacked, codebook_size, counts=counts, smoothing=smoothing))
        return result
