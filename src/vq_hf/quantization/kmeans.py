"""k-means++ seeding + Lloyd iterations on the device (CPU or GPU), seeded and restartable.

Seeding is greedy k-means++ (as scikit-learn): each new centre is chosen among ``L = 2 + ⌊ln k⌋``
candidates drawn with probability ∝ D(x)², keeping the candidate that lowers the potential most. An
incrementally maintained min-distance vector makes a centre cost one (candidates × N) distance block, with
no host synchronisation. ``centers_per_round=1`` is exactly that (``torch.multinomial`` with replacement and
a device generator): k sequential rounds of 21 operators, which on a GPU, at 3–5 µs per kernel launch, is
43,000 launches (0.13–0.2 s) for k = 2,048 before any arithmetic.

By default a round chooses up to B centres (:func:`seeding_rounds`): it draws ``B · L`` distinct candidates
∝ D² (an exponential race), computes their distance rows with one GEMM, splits them into B groups of L, and
each group keeps its candidate that lowers the potential most (judged against the D² before the round); the
D² vector then takes the B chosen rows at once. Blind to each other, the groups would waste centres, so:

- a draw is dropped when an earlier draw lies within ``DUPLICATE_RATIO`` (½) of its own D² (squared
  distances): drawn ∝ D², a heavy region gets several draws in several groups, and each group would pick it;
- a round takes at most ``1 / TAPER`` (¼) of the centres still to choose: the last few uncovered regions
  would otherwise be fought over by a full round's groups.

Default B = ⌈(k − 1) / MAX_SEEDING_ROUNDS⌉ = ⌈(k − 1) / 128⌉ (:func:`default_centers_per_round`; 1 for
k ≤ 129): 136 rounds of ~25 operators for k = 2,048 (B = 16; 1.7 operators per centre instead of 21,
``benchmarks/count_ops.py``), 139 for k = 4,096 (B = 32). Measured on a 2-core CPU, one torch thread,
Gaussian-mixture data as in ``benchmarks/bench_reestimation.py``, D = 64, 20 Lloyd iterations; inertia as a
ratio to scikit-learn 1.9's ``kmeans_plusplus`` (seeds) and ``KMeans`` (after Lloyd) on the same data, means
over seeds 0–2 (0–1 at 65,536); seeding times are medians of interleaved runs:

=============================  ==============  ==============  ===================  =====================
N → k                          seeding, B = 1  seeding, auto   seeds / sklearn      after Lloyd / sklearn
                                                               (B = 1, auto)        (B = 1, auto)
=============================  ==============  ==============  ===================  =====================
mixture 20,480 → 2,048 (B=16)  0.99 s          0.69 s          0.9998, 0.9999       1.0020, 1.0012
mixture 65,536 → 4,096 (B=32)  11.2 s          5.9 s           0.9996, 1.0004       1.0001, 0.9994
mixture 5,120 → 512 (B=4)      66 ms           43 ms           —                    —
uniform 20,480 → 2,048         —               —               1.0002, 1.0005       1.0000, 1.0003
=============================  ==============  ==============  ===================  =====================

The worst case for batching, 2,048 well-separated blobs of ~10 points with k = 2,048 (a blob left without a
centre costs +48 % inertia): blobs left empty over 20 seedings, scikit-learn 1, B = 1 3, default 5; without
the dropping 2,306 (and the mixture's seeds 1.5 % worse), without the taper 83. Ratios ½ → ¼ or 1 and
B = 32 change these by noise only.

Lloyd steps use the chunked search and ``index_add_`` (on CUDA, the fused Triton kernel, which assigns and
accumulates the cluster counts and sums in one pass); empty clusters are re-seeded with the points
farthest from their centres. Convergence is tested once per Lloyd iteration (one host synchronisation) with
scikit-learn's rule: the squared centre shift summed over centres ≤ ``tol`` · mean per-feature variance.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from .backend import NearestCodeSearch, select_search
from .search import DEFAULT_SEARCH_MEMORY_MB

__all__ = ["KMeansResult", "default_centers_per_round", "kmeans", "kmeans_plusplus", "seeding_rounds"]

# The batched seeding's settings, chosen by the measurements in the module docstring.
MAX_SEEDING_ROUNDS = 128  # default B = ⌈(k − 1) / 128⌉ centres per round
TAPER = 4  # a round takes at most a quarter of the centres still to choose
DUPLICATE_RATIO = 0.5  # a draw closer (squared) to an earlier draw than half its own D² is dropped


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


def _check_centers_per_round(fn: str, centers_per_round: int | None) -> None:
    ok = centers_per_round is None or (
        isinstance(centers_per_round, numbers.Integral)
        and not isinstance(centers_per_round, bool)
        and centers_per_round >= 1
    )
    if not ok:
        raise ValueError(f"{fn}: centers_per_round must be None or an int >= 1, got {centers_per_round!r}")


def default_centers_per_round(k: int, n: int, n_local_trials: int) -> int:
    """Centres per seeding round when ``centers_per_round=None``: ``⌈(k − 1) / MAX_SEEDING_ROUNDS⌉``.

    That is 1 (the exact greedy seeding) for k ≤ 129. Lowered where a round's ``(B · n_local_trials, n)``
    fp32 distance block would outgrow ``DEFAULT_SEARCH_MEMORY_MB``.
    """
    per_round = -(-(k - 1) // MAX_SEEDING_ROUNDS)
    fits = int(DEFAULT_SEARCH_MEMORY_MB * 2**20) // (4 * n_local_trials * n)
    return max(1, min(per_round, fits))


def seeding_rounds(k: int, centers_per_round: int) -> list[int]:
    """Centres chosen by each round after the first (uniform) centre; they sum to ``k − 1``.

    At most ``centers_per_round``, and at most ``1 / TAPER`` of the centres still to choose: when few
    centres remain, the regions left uncovered are few too, and a full round's groups would compete for them
    (module docstring: 83 instead of 5 blobs left empty in 20 seedings of 2,048 blobs).
    """
    sizes, chosen = [], 1
    while chosen < k:
        sizes.append(min(centers_per_round, -(-(k - chosen) // TAPER)))
        chosen += sizes[-1]
    return sizes


def kmeans_plusplus(
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    n_local_trials: int | None = None,
    centers_per_round: int | None = None,
) -> torch.Tensor:
    """Greedy k-means++ seeding, up to ``centers_per_round`` centres at a time.

    Args:
        x: ``(N, D)`` float32 points, N ≥ k.
        k: number of centres.
        generator: a generator on ``x.device``.
        n_local_trials: candidates per centre; default ``2 + ⌊ln k⌋`` (scikit-learn's).
        centers_per_round: B, the most centres one round chooses (rounds: :func:`seeding_rounds`). 1 is
            scikit-learn's greedy k-means++ exactly; ``None`` picks :func:`default_centers_per_round`.

    Returns:
        ``(k, D)`` centres, distinct rows of ``x`` (for x without repeated rows).
    """
    _check_centers_per_round("kmeans_plusplus", centers_per_round)
    N, D = x.shape
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(k))
    if centers_per_round is None:
        centers_per_round = default_centers_per_round(k, N, n_local_trials)
    centers_per_round = int(centers_per_round)
    x_sq = (x * x).sum(-1)
    centers = torch.empty(k, D, dtype=x.dtype, device=x.device)
    first = torch.randint(N, (1,), device=x.device, generator=generator)
    centers[0:1] = x.index_select(0, first)
    closest = _sq_dist_to(x, x_sq, centers[0:1]).squeeze(0)  # (N,)
    if centers_per_round == 1:
        _greedy_centers(x, x_sq, centers, closest, n_local_trials, generator)
    else:
        _batched_centers(x, x_sq, centers, closest, centers_per_round, n_local_trials, generator)
    return centers


def _greedy_centers(
    x: torch.Tensor,
    x_sq: torch.Tensor,
    centers: torch.Tensor,
    closest: torch.Tensor,
    n_local_trials: int,
    generator: torch.Generator | None,
) -> None:
    """Fills ``centers[1:]`` (k, D) one centre per round; ``closest`` (N,) is the D² to ``centers[0]``."""
    for c in range(1, centers.shape[0]):
        # All points coincide with chosen centres → sample uniformly instead of from zero weights.
        weights = closest + (closest.sum() <= 0).to(closest.dtype)
        cand = torch.multinomial(weights, n_local_trials, replacement=True, generator=generator)
        d_cand = _sq_dist_to(x, x_sq, x.index_select(0, cand))  # (L, N)
        potential = torch.minimum(d_cand, closest.unsqueeze(0)).sum(-1)
        best = torch.argmin(potential).view(1)
        closest = torch.minimum(closest, d_cand.index_select(0, best).squeeze(0))
        centers[c : c + 1] = x.index_select(0, cand.index_select(0, best))


def _batched_centers(
    x: torch.Tensor,
    x_sq: torch.Tensor,
    centers: torch.Tensor,
    closest: torch.Tensor,
    centers_per_round: int,
    n_local_trials: int,
    generator: torch.Generator | None,
) -> None:
    """Fills ``centers[1:]`` (k, D) round by round (:func:`seeding_rounds`); ``closest`` (N,) as above."""
    N = x.shape[0]
    sizes = seeding_rounds(centers.shape[0], centers_per_round)
    groups = torch.arange(max(sizes, default=0), device=x.device)
    # Two (B · trials, N) blocks shared by the rounds: on the CPU, multi-MB blocks allocated afresh each round
    # are page-faulted in anew each time (glibc returns them to the OS when freed): 1.7 s instead of 0.65 s
    # at N=20,480, K=2,048, B=16.
    work = x.new_empty(2, groups.shape[0] * n_local_trials, N)
    c = 1
    for b in sizes:
        # b · trials draws among the N − c points not chosen yet (chosen ones weigh D² = 0).
        trials = min(n_local_trials, (N - c) // b)
        chosen, closest = _batched_round(x, x_sq, closest, groups[:b], trials, generator, work[:, : b * trials])
        centers[c : c + b] = x.index_select(0, chosen)
        c += b


def _batched_round(
    x: torch.Tensor,
    x_sq: torch.Tensor,
    closest: torch.Tensor,
    groups: torch.Tensor,
    trials: int,
    generator: torch.Generator | None,
    work: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One round: B = ``len(groups)`` new centres, each the best of its group's ``trials`` candidates.

    Args:
        closest: ``(N,)`` D² of every point to its nearest chosen centre.
        groups: ``arange(B)`` on the device.
        work: ``(2, trials · B, N)`` scratch blocks.

    Returns:
        ``(B,)`` indices of the new centres in ``x`` (distinct) and the updated ``(N,)`` D².
    """
    B, N = groups.shape[0], x.shape[0]
    # Rank r of the draw goes to group r mod B, so each group holds one of the B heaviest draws.
    cand = _draw_distinct(closest, B * trials, generator)  # (M,) with M = trials · B
    d = _sq_dist_rows(x, x_sq, cand, out=work[0])  # (M, N)
    # Drawn ∝ D², a heavy region gets several draws, in several groups, and each of those groups would pick
    # it: several centres where sequential k-means++ puts one. So a draw is dropped when an earlier
    # (heavier-keyed) draw lies near it: at a squared distance below DUPLICATE_RATIO times its own D².
    near = d.index_select(1, cand) < closest.index_select(0, cand).mul_(DUPLICATE_RATIO)  # (M, M): [i, j]
    dropped = near.triu_(1).any(0)  # (M,)
    # A group whose draws are all dropped keeps its first (argmin of all-inf is 0).
    potential = torch.minimum(d, closest, out=work[1]).sum(-1).masked_fill_(dropped, math.inf).view(trials, B)
    best = potential.argmin(0)  # (B,)
    closest = torch.minimum(closest, d.view(trials, B, N)[best, groups].amin(0)).clamp_min_(0.0)
    return cand.view(trials, B)[best, groups], closest


def _draw_distinct(weights: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` distinct indices drawn ∝ ``weights`` (N,) without replacement, in drawing order.

    Exponential race: the largest keys ``log(U) / w`` are a weighted sample without replacement (zero
    weights come last, key −∞). ``torch.multinomial(replacement=False)`` runs the same race in recent
    PyTorch, but older releases validated its input with host syncs; drawing with replacement, as the
    greedy path does, would let two groups draw the same point.
    """
    u = torch.rand(weights.shape, dtype=weights.dtype, device=weights.device, generator=generator)
    return torch.topk(u.log_().div_(weights), count).indices


def _sq_dist_rows(x: torch.Tensor, x_sq: torch.Tensor, idx: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` (M, N) := squared distances from ``x[idx]`` to every point, unclamped (``‖x‖² − 2 c·x`` in one
    GEMM, then ``+ ‖c‖²``)."""
    c = x.index_select(0, idx)
    return torch.addmm(x_sq, c, x.t(), alpha=-2.0, out=out).add_(x_sq.index_select(0, idx).unsqueeze(1))


def _lloyd(
    x: torch.Tensor,
    centers: torch.Tensor,
    max_iters: int,
    tol_abs: float,
    memory_mb: float,
    search: NearestCodeSearch | None = None,
) -> tuple[torch.Tensor, float, int, bool, int]:
    search = select_search(x) if search is None else search
    N, D = x.shape
    k = centers.shape[0]
    m = min(k, N)
    ones = torch.ones(N, dtype=x.dtype, device=x.device)
    fused = search.accumulates_statistics
    converged = False
    iterations = 0
    reseeded = torch.zeros((), dtype=torch.long, device=x.device)
    for _ in range(max_iters):
        iterations += 1
        counts = torch.zeros(1, k, dtype=x.dtype, device=x.device)
        sums = torch.zeros(1, k, D, dtype=x.dtype, device=x.device)
        if fused:
            # One kernel: assignment + per-cluster counts and sums in its epilogue (no index_add passes).
            codes, dist = search(x.unsqueeze(0), centers.unsqueeze(0), counts=counts, sums=sums)
        else:
            codes, dist = search(x.unsqueeze(0), centers.unsqueeze(0), memory_mb=memory_mb)
            sums[0].index_add_(0, codes[0], x)
            counts[0].index_add_(0, codes[0], ones)
        codes, dist, counts, sums = codes[0], dist[0], counts[0], sums[0]
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
    _, dist = search(x.unsqueeze(0), centers.unsqueeze(0), memory_mb=memory_mb)
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
    centers_per_round: int | None = None,
    search_backend: str = "auto",
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
        centers_per_round: centres per k-means++ seeding round (see :func:`kmeans_plusplus`); ``None`` picks
            :func:`default_centers_per_round`, 1 is scikit-learn's one-centre-at-a-time seeding.
        search_backend: the Lloyd steps' assignment (:data:`vq_hf.quantization.search.SEARCH_BACKENDS`, chosen
            by :func:`vq_hf.quantization.backend.select_search`):
            with the fused Triton kernel ("auto" on CUDA) one kernel per iteration assigns the points and
            accumulates the cluster counts and sums; otherwise the chunked search and two ``index_add_``.
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
    _check_centers_per_round("kmeans", centers_per_round)
    search = select_search(x, search_backend)  # an unknown or unusable backend fails before any work
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float().contiguous()
        if not bool(torch.isfinite(x).all()):
            raise ValueError("kmeans: x contains NaN or Inf")
        tol_abs = tol * float(x.var(dim=0, unbiased=False).mean()) if x.shape[0] > 1 else 0.0
        best: KMeansResult | None = None
        reseeded_total = 0
        for _ in range(n_init):
            seeds = kmeans_plusplus(x, k, generator=generator, centers_per_round=centers_per_round)
            centers, inertia, iters, converged, reseeded = _lloyd(x, seeds, max_iters, tol_abs, memory_mb, search)
            reseeded_total += reseeded
            if best is None or inertia < best.inertia:
                best = KMeansResult(centers, inertia, iters, converged, 0)
        best.empty_reseeded = reseeded_total
        return best
