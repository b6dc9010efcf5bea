"""Tests written for mutants that survived tools/mutation_test.sh (docs/testing.md lists the run).

Each test names the mutant it kills.
"""

import dataclasses

import pytest
import torch

from vq_hf import VectorQuantizer
from vq_hf.quantization import ReestimationSchedule, kmeans, kmeans_plusplus
from vq_hf.quantization.kmeans import _lloyd, default_centers_per_round, seeding_rounds
from vq_hf.quantization.reservoir import Reservoir


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 5, 3), (1, 5, 4)])
def test_reservoir_insert_rejects_a_wrong_codebook_count_or_dim_alone(shape):
    """Mutant: ``if G != self.num_codebooks or D != self.dim`` → ``and`` in ``Reservoir.insert`` (a wrong G
    with the right D, or the reverse, would be written into the buffer's view unchecked)."""
    res = Reservoir(2, 8, 4)
    with pytest.raises(ValueError, match=r"Reservoir.insert: x must be \(G=2, N, D=4\); got"):
        res.insert(torch.randn(*shape))
    assert res.seen.tolist() == [0, 0]


def test_reservoir_of_one_row_and_batches_of_one_vector():
    """Mutants: ``if size < 1`` → ``<= 1`` in ``Reservoir.__init__`` (a valid reservoir_size=1 refused) and
    ``if N == 0: return`` → ``N == 1`` in ``insert`` (a batch of one vector silently dropped)."""
    for bad in ("num_codebooks", "size", "dim"):
        args = {"num_codebooks": 1, "size": 1, "dim": 1, bad: 0}
        with pytest.raises(ValueError, match=">= 1, got 0"):
            Reservoir(**args)
    res = Reservoir(1, 1, 3)  # the smallest valid reservoir
    first = torch.tensor([[[1.0, 2.0, 3.0]]])
    res.insert(first)  # one vector: fills the single row
    assert res.seen.tolist() == [1] and torch.equal(res.contents(0), first[0])
    finals = set()
    for seed in range(20):  # one vector at a time, as sequential Algorithm R: each counted, later ones may replace
        res = Reservoir(1, 1, 3)
        gen = torch.Generator().manual_seed(seed)
        for i in range(1, 11):
            res.insert(torch.full((1, 1, 3), float(i)), generator=gen)
        assert res.seen.tolist() == [10]
        finals.add(float(res.contents(0)[0, 0]))
    assert len(finals) >= 5, finals  # the kept vector is spread over the stream (uniform: 1/10 each)


# ----------------------------------------------------------------------------- schedule.py


def test_schedule_accepts_warmup_zero_and_rejects_negative_fields():
    """Mutant: ``if self.warmup < 0`` → ``<= 0`` in ``ReestimationSchedule.__post_init__`` (the common
    ``warmup_steps=0`` — quantize and initialise from the first step — refused; every other test used a
    warm-up > 0)."""
    s = ReestimationSchedule(warmup=0, every=1, length=0, reestimating=True)
    assert s.quantizing(0) and s.reestimation_positions(5) == [0] and s.last_reestimation == 0
    vq = VectorQuantizer(4, 4, quantizer_type="reestimating", warmup_steps=0, reestimate_every=1,
                         reestimate_steps=0, reservoir_size=64)
    out = vq(torch.randn(16, 4, generator=torch.Generator().manual_seed(0)))
    assert out.quantizing and out.reestimated  # k-means initialises the codebook on the very first step
    for field, bad, message in [
        ("warmup", -1, "warmup_steps must be >= 0, got -1"),
        ("every", 0, "reestimate_every must be >= 1, got 0"),
        ("length", -1, "reestimate_steps must be >= 0, got -1"),
    ]:
        with pytest.raises(ValueError, match=message):
            ReestimationSchedule(**{field: bad})


@pytest.mark.parametrize(
    "warmup, every, length, positions",
    [
        (2, 3, 6, [2, 5]),  # window a multiple of every: 2 + 6 is outside the window (j·r < M_reestim)
        (2, 3, 8, [2, 5, 8]),  # the last one 2 + 6, not 2 + 7
        (0, 4, 1, [0]),
    ],
)
def test_schedule_window_end_is_an_integer_on_the_every_grid(warmup, every, length, positions):
    """Mutants in ``last_reestimation``: ``(self.length - 1) // self.every`` → ``/`` (the window end becomes
    ``warmup + length - 1``, a float off the grid: sampling runs past the last re-estimation), and
    ``length - 1`` → ``length + 1`` / ``length - 0`` (one re-estimation too many when ``every`` divides
    ``length``). The existing test's ``length=7, every=3`` gives the same end under all three."""
    s = ReestimationSchedule(warmup=warmup, every=every, length=length, reestimating=True)
    assert s.reestimation_positions(40) == positions
    assert type(s.last_reestimation) is int and s.last_reestimation == positions[-1]
    assert [p for p in range(40) if s.sampling(p)] == list(range(positions[-1] + 1))
    assert ReestimationSchedule(warmup=3, reestimating=False).last_reestimation == -1  # documented: −1 when off


def test_schedule_step_mode_never_resets_the_reservoir_during_warmup():
    """Mutant: ``reestimating and unit == "epochs" and position < warmup`` → ``… == "epochs" or position <
    warmup`` in ``resets_reservoir_at`` (step mode would empty the reservoir at every warm-up step, so the
    first k-means would see one batch instead of the whole warm-up)."""
    for unit, reestimating, expected in [("steps", True, []), ("epochs", True, [0, 1, 2]),
                                         ("epochs", False, []), ("steps", False, [])]:
        s = ReestimationSchedule(warmup=3, every=2, length=4, unit=unit, reestimating=reestimating)
        assert [p for p in range(10) if s.resets_reservoir_at(p)] == expected, (unit, reestimating)
    vq = VectorQuantizer(4, 4, quantizer_type="reestimating", warmup_steps=3, reestimate_every=1,
                         reestimate_steps=1, reservoir_size=1000)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        vq(torch.randn(10, 4, generator=gen))
    assert int(vq.reservoir.seen[0]) == 30  # all three warm-up steps are kept for the first k-means


def test_schedule_defaults_are_the_quantizers_defaults():
    """Mutants: the dataclass defaults ``warmup: int = 0`` → ``1`` and ``length: int = 0`` → ``1``,
    ``every: int = 100`` → ``99``, ``reestimating: bool = False`` → ``True`` (the quantizer always passes every
    field, so nothing else reads them). A schedule built with defaults must be
    the one a default quantizer runs, for each quantizer type."""
    for quantizer_type in ("vanilla", "ema"):  # the default schedule re-estimates nothing
        assert VectorQuantizer(4, 4, quantizer_type=quantizer_type).schedule == ReestimationSchedule()
    assert VectorQuantizer(4, 4, quantizer_type="reestimating").schedule == ReestimationSchedule(reestimating=True)


def test_a_quantizers_schedule_cannot_be_changed_behind_its_validation():
    """Mutant: ``@dataclass(frozen=True)`` → ``frozen=False`` on ``ReestimationSchedule``. The quantizer
    validates its options once; a mutable schedule would let ``vq.schedule.every = 0`` through unchecked
    (a ZeroDivisionError in the middle of training)."""
    vq = VectorQuantizer(4, 4, quantizer_type="reestimating", warmup_steps=2, reestimate_every=3, reestimate_steps=6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        vq.schedule.every = 0
    assert vq.schedule.reestimation_positions(20) == [2, 5]


# ----------------------------------------------------------------------------- kmeans.py


def test_kmeans_reports_the_lloyd_iterations_it_ran():
    """Mutant: ``iterations += 1`` → ``+= 0`` in ``_lloyd`` (``KMeansResult.iterations`` always 0). With
    ``tol=0`` Lloyd stops only at ``max_iters`` or when the centres stop moving exactly, and it reports how many
    iterations it ran; an iteration that moved nothing is counted and sets ``converged``."""
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    one = kmeans(x, 5, max_iters=1, tol=0.0, generator=torch.Generator().manual_seed(1))
    assert one.iterations == 1 and not one.converged  # a seed point is not its cluster's mean: the centres moved
    many = kmeans(x, 5, max_iters=500, tol=0.0, generator=torch.Generator().manual_seed(1))
    assert many.converged and 2 <= many.iterations < 500  # the last iteration is the one that moved nothing


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_init=0), "kmeans: n_init must be >= 1, got 0"),
        (dict(max_iters=0), "kmeans: max_iters must be >= 1, got 0"),
        (dict(tol=-1e-3), "kmeans: tol must be >= 0, got -0.001"),
    ],
)
def test_kmeans_rejects_a_run_that_would_do_nothing(kwargs, message):
    """Mutant: ``if n_init < 1`` → ``< 0`` in ``kmeans`` (``n_init=0`` ran no restart and failed later with an
    AttributeError on ``None`` instead of naming the option)."""
    with pytest.raises(ValueError, match=message):
        kmeans(torch.randn(20, 2), 3, **kwargs)


def test_kmeans_builds_no_autograd_graph():
    """Mutant: ``@torch.no_grad()`` removed from ``kmeans``. Called on an activation that requires grad, it
    would return centroids tied to the input's graph through every Lloyd iteration (memory held until the
    codebook is overwritten, and a backward into the encoder through k-means)."""
    x = torch.randn(100, 3, requires_grad=True)
    result = kmeans(x * 2.0, 4, generator=torch.Generator().manual_seed(0))
    assert not result.centroids.requires_grad and result.centroids.grad_fn is None


def test_kmeans_tolerance_is_relative_to_the_data_variance_even_in_one_dimension():
    """Mutants: ``tol_abs = tol · mean variance if x.shape[0] > 1 else 0.0`` → ``if not x.shape[0] > 1``,
    → ``if x.shape[-1] > 1`` and → ``if x.shape[0] > 2`` (the tolerance silently dropped — for every input, for
    1-D points, or for two points — so Lloyd runs to exact convergence or ``max_iters``). A tolerance far
    above the data's variance stops after one iteration."""
    for dim in (1, 3):
        x = torch.randn(300, dim, generator=torch.Generator().manual_seed(dim))
        loose = kmeans(x, 6, max_iters=50, tol=1e6, generator=torch.Generator().manual_seed(0))
        assert loose.converged and loose.iterations == 1, dim
    two = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # the smallest input with a variance (``> 2`` would skip it)
    assert kmeans(two, 1, max_iters=50, tol=1e6).iterations == 1


def test_kmeans_error_names_the_point_count_and_counts_no_phantom_reseeds():
    """Mutants: ``got {x.shape[0]}`` → ``x.shape[1]`` in the too-few-points message (it named the dimension),
    and ``reseeded_total = 0`` → ``1`` (``empty_reseeded`` off by one)."""
    with pytest.raises(ValueError, match=r"kmeans: need at least k=5 points, got 3$"):
        kmeans(torch.randn(3, 2), 5)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = (centres.repeat_interleave(50, 0) + 0.1 * torch.randn(150, 2, generator=torch.Generator().manual_seed(0)))
    result = kmeans(x, 3, n_init=3, generator=torch.Generator().manual_seed(0))
    assert result.empty_reseeded == 0  # three separated blobs, three centres: no cluster ever empty


def test_kmeans_lloyd_reseeds_several_empty_clusters_with_distinct_farthest_points():
    """Mutants: ``rank = (cumsum(empty) - 1).clamp(0, m - 1)`` → ``clamp(1, m - 1)`` and → ``(cumsum(empty) - 2)``
    in ``_lloyd`` (two empty clusters took the same point)."""
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 0.0], [0.0, 7.0]])
    far_away = [[100.0, 100.0], [200.0, 200.0]]  # own no point: empty after the first assignment
    centers = torch.tensor([[0.0, 0.0], *far_away])
    out, _, _, _, reseeded = _lloyd(x, centers, 1, 0.0, 64.0)
    assert reseeded == 2
    # Empty cluster number r (index order) takes the r-th farthest point from its centre: (0, 7), then (5, 0).
    assert out[1].tolist() == [0.0, 7.0] and out[2].tolist() == [5.0, 0.0]


def test_greedy_seeding_is_scale_free_and_handles_coincident_points():
    """Mutants: ``weights = closest + (closest.sum() <= 0)`` → ``<= 1`` (data with a total D² below 1 — small
    features — seeded almost uniformly instead of ∝ D²) and → ``<= -1`` (all points coinciding: zero weights,
    and ``torch.multinomial`` raises). Scaling by a power of two scales every D² exactly, so the same seeded
    draws pick the same rows."""
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    big = kmeans_plusplus(x, 12, generator=torch.Generator().manual_seed(1), centers_per_round=1)
    small = kmeans_plusplus(x * 2.0**-12, 12, generator=torch.Generator().manual_seed(1), centers_per_round=1)
    assert torch.equal(small, big * 2.0**-12)
    same = torch.ones(10, 3)
    assert torch.equal(kmeans_plusplus(same, 3, centers_per_round=1), torch.ones(3, 3))


def test_default_centers_per_round_is_an_int_when_memory_bounds_it():
    """Mutant: ``fits = budget // (4 · trials · n)`` → ``/`` in ``default_centers_per_round`` (a float
    ``centers_per_round``, e.g. 10.4, where the memory bound is the smaller one)."""
    from vq_hf.quantization.search import DEFAULT_SEARCH_MEMORY_MB

    trials, budget = 11, int(DEFAULT_SEARCH_MEMORY_MB * 2**20)
    n = budget // (4 * trials * 10) - 7  # room for a little over 10 rows of the (B · trials, n) block
    per_round = default_centers_per_round(10_000, n, trials)  # ⌈9999 / 128⌉ = 79 without the memory bound
    assert per_round == 10 and type(per_round) is int


@pytest.mark.parametrize("per_round", [None, 1, 7])
def test_seeding_a_single_centre_takes_one_row(per_round):
    """Mutant: ``torch.arange(max(sizes, default=0))`` → ``default=-1`` in ``_batched_centers`` (k = 1 with
    ``centers_per_round > 1`` has no round after the first centre; ``arange(-1)`` raises)."""
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(0))
    centre = kmeans_plusplus(x, 1, generator=torch.Generator().manual_seed(1), centers_per_round=per_round)
    assert centre.shape == (1, 2) and bool((x == centre).all(1).any())



def test_kmeans_stops_at_the_same_iteration_whatever_the_data_scale():
    """Mutants: ``tol_abs = tol * variance`` → ``tol / variance`` in ``kmeans`` (identical on unit-variance
    test data), and ``TAPER = 4`` → ``5`` (the batched seeding's round may take at most a quarter of the
    centres still to choose). Scaling by a power of two scales every distance and the variance exactly, so
    a relative tolerance stops Lloyd at the same iteration with the same (scaled) centroids."""
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(3))
    for scale in (2.0**-8, 2.0**8):
        a = kmeans(x, 8, tol=1e-2, generator=torch.Generator().manual_seed(4))
        b = kmeans(x * scale, 8, tol=1e-2, generator=torch.Generator().manual_seed(4))
        assert (a.iterations, a.converged) == (b.iterations, b.converged) and a.iterations < 100, scale
        assert torch.equal(b.centroids, a.centroids * scale)
    assert seeding_rounds(41, 64)[:2] == [10, 8]  # ⌈40 / 4⌉, then ⌈30 / 4⌉
