"""k-means++ seeding + Lloyd iterations on the device (CPU or GPU), seeded and restartable.

Seeding is greedy k-means++ (as scikit-learn): each new centre is chosen among ``2 + ⌊ln k⌋`` candidates
drawn with probability ∝ D(x)² (``torch.multinomial`` with a device generator), keeping the candidate that
lowers the potential most. An incrementally maintained min-distance vector makes each centre cost one
(candidates × N) distance block, with no host synchronisation per centre. Lloyd steps use the chunked
search and ``index_add_``; empty clusters are re-seeded with the points farthest from their centres.
Convergence is tested once per Lloyd iteration (one host synchronisation) with scikit-learn's rule:
the squared centre shift summed over centres ≤ ``tol`` · mean per-feature variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .search import DEFAULT_SEARCH_MEMORY_MB, nearest_codes

__all__ = ["KMeansResult", "kmeans", "kmeans_plusplus"]


@dataclass
class KMeansResult:
    """Outcome of :func:`kmeans`.

    Attributes:
        centroids: ``(k, D)`` float32.
        inertia: sum of squared distances of the points to their centres (best restart).
        iterations: Lloyd iterations run in the best restart.
        converged: whether the best restart met the tolerance before ``max_iters``.
        empty_reseeded: empty clusters re-seeded over all iterations of all restarts.
    """

    centroids: torch.Tensor
    inertia: float
    iterations: int
    converged: bool
    empty_reseeded: int


def _sq_dist_to(x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(M, N) squared distances from the rows of ``c`` (M, D) to every point of ``x`` (N, D)."""
    c_sq = (c * c).sum(-1, keepdim=True)
    return (c_sq + x_sq.unsqueeze(0) - 2.0 * (c @ x.t())).clamp_min_(0.0)


def kmeans_plusplus(
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    n_local_trials: int | None = None,
) -> torch.Tensor:
    """Greedy k-means++ seeding.

    Args:
        x: ``(N, D)`` float32 points, N ≥ k.
        k: number of centres.
        generator: a generator on ``x.device``.
        n_local_trials: candidates per centre; default ``2 + ⌊ln k⌋`` (scikit-learn's).

    Returns:
        ``(k, D)`` centres, all taken from ``x``.
    """
    N, D = x.shape
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(-1)
    centers = torch.empty(k, D, dtype=x.dtype, device=x.device)
    first = torch.randint(N, (1,), device=x.device, generator=generator)
    centers[0:1] = x.index_select(0, first)
    closest = _sq_dist_to(x, x_sq, centers[0:1]).squeeze(0)  # (N,)
    for c in range(1, k):
        # All points coincide with chosen centres → sample uniformly instead of from zero weights.
        weights = closest + (closest.sum() <= 0).to(closest.dtype)
        cand = torch.multinomial(weights, n_local_trials, replacement=True, generator=generator)
        d_cand = _sq_dist_to(x, x_sq, x.index_select(0, cand))  # (L, N)
        potential = torch.minimum(d_cand, closest.unsqueeze(0)).sum(-1)
        best = torch.argmin(potential).view(1)
        closest = torch.minimum(closest, d_cand.index_select(0, best).squeeze(0))
        centers[c : c + 1] = x.index_select(0, cand.index_select(0, best))
    return centers


def _lloyd(
    x: torch.Tensor,
    centers: torch.Tensor,
    max_iters: int,
    tol_abs: float,
    memory_mb: float,
) -> tuple[torch.Tensor, float, int, bool, int]:
    N, D = x.shape
    k = centers.shape[0]
    m = min(k, N)
    ones = torch.ones(N, dtype=x.dtype, device=x.device)
    converged = False
    iterations = 0
    reseeded = torch.zeros((), dtype=torch.long, device=x.device)
    for _ in range(max_iters):
        iterations += 1
        codes, dist = nearest_codes(x.unsqueeze(0), centers.unsqueeze(0), memory_mb=memory_mb)
        codes, dist = codes[0], dist[0]
        sums = torch.zeros(k, D, dtype=x.dtype, device=x.device).index_add_(0, codes, x)
        counts = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, codes, ones)
        new = sums / counts.clamp_min(1.0).unsqueeze(1)
        empty = counts == 0
        # Empty cluster number r (in index order) takes the r-th farthest point: distinct points, no sync.
        far = torch.topk(dist, m).indices
        rank = (torch.cumsum(empty.long(), 0) - 1).clamp(0, m - 1)
        new = torch.where(empty.unsqueeze(1), x.index_select(0, far.index_select(0, rank)), new)
        reseeded += empty.sum()
        shift = ((new - centers) ** 2).sum()
        centers = new
        if float(shift) <= tol_abs:
            converged = True
            break
    _, dist = nearest_codes(x.unsqueeze(0), centers.unsqueeze(0), memory_mb=memory_mb)
    inertia = float(dist.sum())
    return centers, inertia, iterations, converged, int(reseeded)


@torch.no_grad()
def kmeans(
    x: torch.Tensor,
    k: int,
    n_init: int = 1,
    max_iters: int = 100,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
    memory_mb: float = DEFAULT_SEARCH_MEMORY_MB,
) -> KMeansResult:
    """k-means++ + Lloyd, keeping the restart with the lowest inertia.

    Args:
        x: ``(N, D)`` points (computed in float32 on ``x.device``), N ≥ k.
        k: number of clusters.
        n_init: independent restarts.
        max_iters: Lloyd iterations per restart.
        tol: relative tolerance (scikit-learn's definition, see module docstring); 0 runs all iterations
            unless the centres stop moving exactly.
        generator: a generator on ``x.device``; pass a seeded one for reproducible results.
        memory_mb: distance-block budget for the chunked search.
    """
    if x.dim() != 2:
        raise ValueError(f"kmeans: x must be (N, D), got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"kmeans: k must be >= 1, got {k}")
    if x.shape[0] < k:
        raise ValueError(f"kmeans: need at least k={k} points, got {x.shape[0]}")
    if n_init < 1:
        raise ValueError(f"kmeans: n_init must be >= 1, got {n_init}")
    if max_iters < 1:
        raise ValueError(f"kmeans: max_iters must be >= 1, got {max_iters}")
    if tol < 0:
        raise ValueError(f"kmeans: tol must be >= 0, got {tol}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float().contiguous()
        if not bool(torch.isfinite(x).all()):
            raise ValueError("kmeans: x contains NaN or Inf")
        tol_abs = tol * float(x.var(dim=0, unbiased=False).mean()) if x.shape[0] > 1 else 0.0
        best: KMeansResult | None = None
        reseeded_total = 0
        for _ in range(n_init):
            seeds = kmeans_plusplus(x, k, generator=generator)
            centers, inertia, iters, converged, reseeded = _lloyd(x, seeds, max_iters, tol_abs, memory_mb)
            reseeded_total += reseeded
            if best is None or inertia < best.inertia:
                best = KMeansResult(centers, inertia, iters, converged, 0)
        best.empty_reseeded = reseeded_total
        return best
