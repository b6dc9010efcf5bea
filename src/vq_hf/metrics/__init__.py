"""Evaluation metrics of the paper as plain functions (numpy / torch inputs, no model imports).

* :mod:`.bits` — reconstruction bits/dim, uniform and unigram latent rates, NELBO (Tables II, III).
* :mod:`.codebook` — dataset-level code counts, entropy, perplexity, used codes (Tables I, II).
* :mod:`.error_rate` — pooled phone error rate and its streaming, DDP-reducible accumulator (Table I).
* :mod:`.ctc` — greedy CTC decoding.
* :mod:`.unit_quality` — how well discrete units follow reference labels: purity, PNMI, NMI, boundary F1, mapped
  error rate, bitrate, ABX within / across speakers (``vq-hf unit-quality``).

The same numbers are available as local ``evaluate`` modules (``evaluate`` comes with ``vq-hf[train]``,
imported only inside those files)::

    import evaluate
    from vq_hf.metrics import evaluate_module_path
    per = evaluate.load(evaluate_module_path("phone_error_rate"))
"""

from __future__ import annotations

import os

from .bits import (
    CIFAR10_DIMS_PER_IMAGE,
    CIFAR10_LATENTS_PER_IMAGE,
    HANDWRITING_COLUMNS_PER_LATENT,
    HANDWRITING_DIMS_PER_LATENT,
    HANDWRITING_LEVELS,
    HANDWRITING_ROWS,
    bits_per_dim,
    nelbo_bits_per_dim,
    nelbo_report,
    uniform_rate_bits,
    unigram_rate_bits,
)
from .codebook import CodebookPerplexity, code_counts, codebook_perplexity, entropy_from_counts
from .ctc import ctc_greedy_decode
from .error_rate import PhoneErrorRate, edit_distance_counts, phone_error_rate
from .unit_quality import (
    abx_error,
    bitrate_bits_per_second,
    boundary_f1,
    cluster_purity,
    mapped_error_rate,
    mean_segment_length,
    nmi,
    pnmi,
    purity,
    unit_quality_metrics,
    units_to_frames,
    used_units,
)

EVALUATE_MODULES = ("bits_per_dim", "codebook_perplexity", "phone_error_rate")


def evaluate_module_path(name: str) -> str:
    """Filesystem path of a local ``evaluate`` module shipped in this package, for ``evaluate.load``.

    ``name`` is one of :data:`EVALUATE_MODULES`. The returned folder holds ``<name>/<name>.py``;
    ``evaluate.load(path)`` works offline.
    """
    if name not in EVALUATE_MODULES:
        raise ValueError(f"unknown evaluate module {name!r}; available: {', '.join(EVALUATE_MODULES)}")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    if not os.path.isfile(os.path.join(path, f"{name}.py")):
        raise FileNotFoundError(f"evaluate module file {os.path.join(path, name + '.py')} is missing from the install")
    return path


# The paper these metrics report (cited by the local `evaluate` modules).
PAPER_CITATION = """
@inproceedings{lancucki2020robust,
  title={Robust Training of Vector Quantized Bottleneck Models},
  author={{\\L}a{\\'n}cucki, Adrian and Chorowski, Jan and Sanchez, Guillaume and Marxer, Ricard and Chen, Nanxin and Dolfing, Hans J. G. R. and Khurana, Sameer and Alum{\\"a}e, Tanel and Laurent, Antoine},
  booktitle={International Joint Conference on Neural Networks (IJCNN)},
  year={2020}
}
"""

__all__ = [
    "PAPER_CITATION",
    "CIFAR10_DIMS_PER_IMAGE",
    "CIFAR10_LATENTS_PER_IMAGE",
    "HANDWRITING_COLUMNS_PER_LATENT",
    "HANDWRITING_DIMS_PER_LATENT",
    "HANDWRITING_LEVELS",
    "HANDWRITING_ROWS",
    "EVALUATE_MODULES",
    "CodebookPerplexity",
    "PhoneErrorRate",
    "bits_per_dim",
    "code_counts",
    "codebook_perplexity",
    "ctc_greedy_decode",
    "edit_distance_counts",
    "entropy_from_counts",
    "evaluate_module_path",
    "nelbo_bits_per_dim",
    "nelbo_report",
    "phone_error_rate",
    "uniform_rate_bits",
    "unigram_rate_bits",
    "abx_error",
    "bitrate_bits_per_second",
    "boundary_f1",
    "cluster_purity",
    "mapped_error_rate",
    "mean_segment_length",
    "nmi",
    "pnmi",
    "purity",
    "unit_quality_metrics",
    "units_to_frames",
    "used_units",
]
