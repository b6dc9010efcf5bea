"""Pooled phone error rate as a local `evaluate` module (wraps vq_hf.metrics.phone_error_rate)."""

import datasets
import evaluate

from vq_hf.metrics import PAPER_CITATION
from vq_hf.metrics import phone_error_rate

_DESCRIPTION = """
Phone error rate pooled over the whole split: the sum of Levenshtein distances between hypothesis and
reference phone sequences divided by the total reference length (a fraction; x100 for percent). Unlike a
mean of per-batch rates, the value does not depend on batching. Same number as
`vq_hf.metrics.phone_error_rate`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of hypothesis label-id sequences (e.g. `vq_hf.metrics.ctc_greedy_decode` output).
    references: list of reference label-id sequences (no padding).
Returns:
    phone_error_rate: float, sum of edit distances / total reference length.
    errors: int, total edit distance.
    reference_length: int, total number of reference labels.
Examples:
    >>> per = evaluate.load(vq_hf.metrics.evaluate_module_path("phone_error_rate"))
    >>> per.compute(predictions=[[1, 2, 3]], references=[[1, 2, 4, 5]])["phone_error_rate"]
    0.5
"""



@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PhoneErrorRateMetric(evaluate.Metric):
    """The `evaluate` face of :func:`vq_hf.metrics.phone_error_rate` (the streaming accumulator is `PhoneErrorRate`)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=PAPER_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references):
        from vq_hf.metrics import edit_distance_counts

        errors, ref_len = edit_distance_counts(predictions, references)
        return {
            "phone_error_rate": phone_error_rate(predictions, references),
            "errors": errors,
            "reference_length": ref_len,
        }
