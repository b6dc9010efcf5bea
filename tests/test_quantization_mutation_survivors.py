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
