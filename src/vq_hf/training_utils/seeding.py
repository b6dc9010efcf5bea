"""One seed scheme for a training run: ``numpy.random.SeedSequence(training.seed)`` and its children.

Every random stream of a run is a child of the run seed, named by a fixed spawn key, so streams never
overlap and a value depends only on what it is for (not on how many draws came before it):

- ``DATA_ORDER`` + (epoch,): the permutation of the train split in that epoch;
- ``CROPS`` + (epoch, *example indices): the random crops of one batch (handwriting columns, speech frames);
- ``MODEL_INIT``: torch's global RNG while the model is built (identical on every rank);
- ``QUANTIZER``: the quantizer's own generator (reservoir sampling, k-means++), unless the recipe sets
  ``quantizer.seed``;
- ``RANK`` + (rank,): the global RNGs (torch, numpy, random) of each process after the model is built.

The stand-in corpus generators keep taking ``training.seed`` itself: it names their cached corpora.
"""

from __future__ import annotations

import numpy as np

DATA_ORDER, CROPS, MODEL_INIT, QUANTIZER, RANK = range(5)


def derive_seed(seed: int, *key: int) -> int:
    """A 32-bit seed for the stream ``key`` of run ``seed`` (32 bits: what ``numpy.random.seed`` accepts)."""
    return int(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)).generate_state(1)[0])
