"""One entry point from a model config's nested ``quantizer`` dict to a quantizer module.

A config stores the dict as given (the quantizer's keyword arguments, plus an optional ``family``); the model
derives the input dimension and calls :func:`build_quantizer`. :func:`check_quantizer_options` runs the same
checks at config construction, so a bad value is reported before any model is built.

Families (``family`` key): ``"vector"`` (default) :class:`VectorQuantizer`; ``"residual"``
:class:`ResidualVectorQuantizer`; ``"fsq"`` :class:`FiniteScalarQuantizer` (``levels`` required). Each class
has ``validate_options(options, dim=None)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from .fsq import FiniteScalarQuantizer
from .quantizer import VectorQuantizer
from .residual import ResidualVectorQuantizer

_CLASSES = {"vector": VectorQuantizer, "residual": ResidualVectorQuantizer, "fsq": FiniteScalarQuantizer}
QUANTIZER_FAMILIES = tuple(_CLASSES)

__all__ = ["QUANTIZER_FAMILIES", "build_quantizer", "check_quantizer_options", "code_layout"]


def _family(options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    rest = dict(options)
    family = rest.pop("family", "vector")
    if family not in QUANTIZER_FAMILIES:
        raise ValueError(f"quantizer family={family!r} is not supported; expected one of {QUANTIZER_FAMILIES}")
    return family, rest


def check_quantizer_options(options: Mapping[str, Any], dim: int | None = None) -> dict[str, Any]:
    """Validate ``options`` as :func:`build_quantizer` would (``dim`` may be unknown yet); returns the complete
    options with every default filled in and ``family`` set."""
    if not isinstance(options, Mapping):
        raise ValueError(f"the quantizer options must be a mapping of keyword arguments, got {options!r}")
    family, rest = _family(options)
    return {"family": family, **_CLASSES[family].validate_options(rest, dim=dim)}


def code_layout(options: Mapping[str, Any]) -> tuple[int, int]:
    """``(codes per position, codebook size)`` of complete options (:func:`check_quantizer_options`): the last
    axis of ``codes`` and the range of each code."""
    family = options.get("family", "vector")
    if family == "residual":
        return options["num_quantizers"], options["codebook_size"]
    if family == "fsq":
        return 1, math.prod(options["levels"])
    return options["num_codebooks"], options["codebook_size"]


def build_quantizer(dim: int, **options: Any) -> nn.Module:
    """The quantizer of ``options`` (``family`` defaults to ``"vector"``: :class:`VectorQuantizer`) over ``dim``
    input channels."""
    family, rest = _family(options)
    _CLASSES[family].validate_options(rest, dim=dim)  # unknown names as a ValueError naming them, not a TypeError
    return _CLASSES[family](dim=dim, **rest)
