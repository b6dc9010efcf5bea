"""One entry point from a model config's nested ``quantizer`` dict to a quantizer module.

A config stores the dict as given (the quantizer's keyword arguments, plus an optional ``family``); the model
derives the input dimension and calls :func:`build_quantizer`. :func:`check_quantizer_options` runs the same
checks at config construction, so a bad value is reported before any model is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .quantizer import VectorQuantizer

QUANTIZER_FAMILIES = ("vector",)

__all__ = ["QUANTIZER_FAMILIES", "build_quantizer", "check_quantizer_options"]


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
    return {"family": family, **VectorQuantizer.validate_options(rest, dim=dim)}


def build_quantizer(dim: int, **options: Any) -> nn.Module:
    """The quantizer of ``options`` (``family`` defaults to ``"vector"``: :class:`VectorQuantizer`) over ``dim``
    input channels."""
    _, rest = _family(options)
    return VectorQuantizer(dim, **rest)
