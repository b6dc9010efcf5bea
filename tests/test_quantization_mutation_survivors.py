"""Tests written for mutants that survived tools/mutation_test.sh (docs/testing.md lists the run).

Each test names the mutant it kills.
"""

import pytest
import torch

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
