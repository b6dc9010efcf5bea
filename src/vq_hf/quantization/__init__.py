"""The paper's core: a vector-quantized bottleneck with robust training (Łańcucki et al., 2020).

Public names: :class:`VectorQuantizer`, :class:`VectorQuantizerOutput`, :class:`ResidualVectorQuantizer`,
:class:`FiniteScalarQuantizer`, :func:`rotation_trick`, :func:`build_quantizer`, :func:`codebook_param_groups`,
:func:`set_update_boundary`, :func:`start_epoch`, :class:`CodebookUsageAccumulator`,
:class:`MaskedBatchNorm`, plus the building blocks (:func:`nearest_codes`, :func:`select_search`, :func:`kmeans`,
:class:`Reservoir`, :class:`ReestimationSchedule`).
"""

from .backend import nearest_codes, select_search
from .factory import QUANTIZER_FAMILIES, build_quantizer, check_quantizer_options
from .fsq import FiniteScalarQuantizer
from .kmeans import KMeansResult, kmeans, kmeans_plusplus
from .metrics import CodebookUsageAccumulator, code_histogram, perplexity_from_counts
from .normalization import MaskedBatchNorm
from .optim import codebook_param_groups, reset_codebook_optimizer_state
from .quantizer import VectorQuantizer, VectorQuantizerOutput, set_update_boundary, start_epoch
from .reservoir import Reservoir
from .residual import ResidualVectorQuantizer
from .rotation import rotation_trick
from .schedule import ReestimationSchedule

__all__ = [
    "VectorQuantizer",
    "build_quantizer",
    "check_quantizer_options",
    "QUANTIZER_FAMILIES",
    "VectorQuantizerOutput",
    "ResidualVectorQuantizer",
    "FiniteScalarQuantizer",
    "rotation_trick",
    "codebook_param_groups",
    "reset_codebook_optimizer_state",
    "set_update_boundary",
    "start_epoch",
    "CodebookUsageAccumulator",
    "MaskedBatchNorm",
    "nearest_codes",
    "select_search",
    "kmeans",
    "kmeans_plusplus",
    "KMeansResult",
    "Reservoir",
    "ReestimationSchedule",
    "code_histogram",
    "perplexity_from_counts",
]
