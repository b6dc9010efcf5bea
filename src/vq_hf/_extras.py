"""Optional dependencies: import one where it is needed, or fail with one line naming the extra to install.

``pip install vq-hf`` brings only what the quantization layer and the models need (torch, transformers,
safetensors, huggingface_hub, numpy). Data loading, training, the speech pipeline and the stand-in corpus
generators import their packages inside the functions that use them, through :func:`require`, so that
``import vq_hf`` stays light and a missing package says which ``pip install "vq-hf[...]"`` brings it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require", "install_hint"]


class MissingExtraError(ImportError):
    """An optional package is not installed; the message is one line ending in the command that installs it.

    An ``ImportError``, so ``except ImportError`` keeps working; ``vq-hf`` prints the message alone."""


def install_hint(extra: str) -> str:
    return f'pip install "vq-hf[{extra}]"'


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingExtraError` naming ``extra`` when the package
    is missing.

    Args:
        module: the import name (``"datasets"``, ``"PIL.Image"``, ``"torch.utils.tensorboard"``).
        extra: the vq-hf extra that installs it (``"train"``, ``"speech"``, ``"standins"``, ...).
        purpose: what needs it, for the message (e.g. ``"reading Kaldi features"``).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:  # a broken install (other ImportErrors) is not fixed by an extra
        package = (err.name or module).split(".")[0]
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingExtraError(f"the package {package!r}{what} is not installed: {install_hint(extra)}") from err
