"""Hub ids on the command line: tell a mistyped or unreachable id in well under a second.

``datasets.load_dataset("no-such-user/no-such-dataset")`` retries for ~25 s (measured on a machine without
network) before it fails, and a 404 comes back as a generic connection error. :func:`check_hub_repo` asks the
hub once, with a short timeout, before anything is downloaded; it raises :class:`HubRepoError` with one line
naming the id and the cause. In offline mode (``HF_HUB_OFFLINE=1``) it asks nothing: the libraries then read
their local caches and fail fast themselves when the id is not there.
"""

from __future__ import annotations

import re
from pathlib import Path

# namespace/name, as the hub spells repository ids (a bare name cannot be told from a local path)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PROBE_TIMEOUT_S = 10.0

__all__ = ["HUB_ID", "HubRepoError", "check_hub_repo", "is_hub_id", "local_model_folder"]


class HubRepoError(ConnectionError):
    """A hub id that does not exist, is not accessible or cannot be reached; the message names it."""


def is_hub_id(value) -> bool:
    return isinstance(value, str) and HUB_ID.match(value) is not None and not Path(value).exists()


def check_hub_repo(repo_id: str, repo_type: str = "dataset", timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`HubRepoError` unless ``repo_id`` is a ``repo_type`` repository the hub will serve.

    Offline mode skips the probe (cached copies stay usable). A 404 (typo, or a private repo without a token),
    a gated repo, an unreachable hub or a timeout each give one line naming the id.
    """
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if huggingface_hub.is_offline_mode():
        return
    what = f"hub {repo_type} {repo_id!r}"
    try:
        huggingface_hub.HfApi().repo_info(repo_id, repo_type=repo_type, timeout=timeout)
    except GatedRepoError:
        raise HubRepoError(f"{what} is gated: accept its terms on huggingface.co and log in (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise HubRepoError(f"{what} does not exist (the hub answered 404): check the spelling; a private repo "
                           "needs `hf auth login`") from None
    except Exception as err:  # noqa: BLE001 - httpx / OS / HTTP 5xx: the hub cannot be asked; say so at once
        raise HubRepoError(f"{what}: cannot reach the hub ({type(err).__name__}: {str(err)[:120]}); offline? set "
                           "HF_HUB_OFFLINE=1 to use a cached copy, or pass a local folder") from None


def local_model_folder(model: str) -> Path:
    """``--model``: a local folder as it is, or a hub model id checked and downloaded into the hub cache."""
    if not is_hub_id(model):
        return Path(model)
    import huggingface_hub

    check_hub_repo(model, "model")
    try:
        return Path(huggingface_hub.snapshot_download(model))
    except Exception as err:  # noqa: BLE001 - offline without a cached copy, or a failed download
        if huggingface_hub.is_offline_mode():
            raise HubRepoError(f"hub model {model!r} is not in the local hub cache and HF_HUB_OFFLINE=1 forbids "
                               "downloading it; pass a local model folder") from None
        raise HubRepoError(f"hub model {model!r}: {type(err).__name__}: {str(err)[:200]}") from None
