"""One entry point from a configuration dict to a quantizer module: ``build_quantizer(dim, **quantizer_dict)``.

``family`` (optional, default ``"vector"``) picks the class; every other key is a keyword argument of it:

- ``"vector"``: :class:`VectorQuantizer` (the paper's quantizer: vanilla / EMA / re-estimating, cosine,
  rotation trick, dead-code revival);
- ``"residual"``: :class:`ResidualVectorQuantizer` (levels of VectorQuantizers on successive residuals);
- ``"fsq"``: :class:`FiniteScalarQuantizer` (codebook-free; ``levels`` required).
"""

from __future__ import annotations

import inspect

from torch import nn

from .fsq import FiniteScalarQuantizer
from .quantizer import VectorQuantizer
from .residual import ResidualVectorQuantizer

__all__ = ["QUANTIZER_FAMILIES", "build_quantizer"]

QUANTIZER_FAMILIES = {"vector": VectorQuantizer, "residual": ResidualVectorQuantizer, "fsq": FiniteScalarQuantizer}


def build_quantizer(dim: int, **quantizer_dict) -> nn.Module:
    """The quantizer for ``dim`` input channels described by ``quantizer_dict`` (module docstring).

    Raises:
        ValueError: unknown family, or a key that the family's class does not take (named, with the
            accepted keys).
    """
    options = dict(quantizer_dict)
    family = options.pop("family", "vector")
    cls = QUANTIZER_FAMILIES.get(family)
    if cls is None:
        raise ValueError(f"quantizer family {family!r} is unknown; expected one of {sorted(QUANTIZER_FAMILIES)}")
    accepted = [name for name in inspect.signature(cls).parameters if name != "dim"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"quantizer option(s) {unknown} are not options of family {family!r} ({cls.__name__}); "
            f"accepted: {accepted}"
        )
    return cls(dim=dim, **options)
