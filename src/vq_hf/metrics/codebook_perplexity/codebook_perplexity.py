"""Dataset-level codebook perplexity as a local `evaluate` module (wraps vq_hf.metrics.codebook_perplexity)."""

import datasets
import evaluate

from vq_hf.metrics import PAPER_CITATION
from vq_hf.metrics import codebook_perplexity
from vq_hf.metrics._arrays import stack_example_codes

_DESCRIPTION = """
Dataset-level codebook usage: the code histogram of all added examples is pooled, then per codebook
H = -sum_k p_k log_base p_k, perplexity = base**H (= exp(H in nats), the same number in any base, between 1
and codebook_size) and the number of used codes. Same numbers as `vq_hf.metrics.codebook_perplexity`.
"""

_KWARGS_DESCRIPTION = """
Args:
    codes: one entry per example: a list of positions x codebooks (list of lists, e.g. the `codes` column
        written by `vq-hf units`) or a flat list of codes for a single codebook. Every example must use
        the same form and the same number of codebooks.
    codebook_size: int, K (required).
    base: logarithm base of the reported entropy (default 2: bits).
Returns:
    perplexity, entropy, used_codes: floats/ints for one codebook, lists (one per codebook) otherwise.
    perplexity_sum: float, sum over codebooks.
    num_positions: int, positions counted.
Examples:
    >>> m = evaluate.load(vq_hf.metrics.evaluate_module_path("codebook_perplexity"))
    >>> m.compute(codes=[[0, 0], [1, 1]], codebook_size=4)["perplexity"]
    2.0
"""




@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CodebookPerplexityMetric(evaluate.Metric):
    """The `evaluate` face of :func:`vq_hf.metrics.codebook_perplexity` (whose result class is `CodebookPerplexity`)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=PAPER_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"codes": datasets.Sequence(datasets.Sequence(datasets.Value("int64")))}),
                datasets.Features({"codes": datasets.Sequence(datasets.Value("int64"))}),
            ],
        )

    def _compute(self, codes, codebook_size=None, base=2.0):
        if codebook_size is None:
            raise ValueError("codebook_perplexity: pass codebook_size=K to compute()")
        return codebook_perplexity(stack_example_codes(codes), codebook_size, base).to_dict()
