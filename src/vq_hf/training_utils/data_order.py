"""Deterministic data order, so that a resumed run sees exactly the batches an uninterrupted run would.

- :class:`EpochSampler`: the permutation of epoch e is a pure function of (seed, e); nothing to checkpoint
  beyond the epoch and the number of batches already consumed (``accelerator.skip_first_batches``).
- :class:`IndexedDataset` + :class:`SeededCollate`: collators with random crops get a generator seeded from
  (seed, epoch, the batch's example indices).
Both seeds are children of the run seed (:mod:`.seeding`). Accelerate's data loader prefetches one batch ahead, so a
  collator drawing from the global RNG would consume randomness for a batch that the checkpoint has not
  reached yet, and the resumed run would crop differently.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import Dataset, Sampler

from .seeding import CROPS, DATA_ORDER, derive_seed


class EpochSampler(Sampler[int]):
    """A seeded random permutation per epoch (identical on every rank; accelerate shards the batches)."""

    def __init__(self, num_examples: int, seed: int = 0):
        if num_examples < 1:
            raise ValueError(f"EpochSampler: the dataset is empty (num_examples={num_examples})")
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(derive_seed(self.seed, DATA_ORDER, self.epoch))
        return iter(torch.randperm(self.num_examples, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_examples


class IndexedDataset(Dataset):
    """Wraps a map-style dataset so that each example carries its index (key ``"__index__"``)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        row = dict(self.dataset[i])
        row["__index__"] = int(i)
        return row


class SeededCollate:
    """Calls ``collator`` with a per-batch seed when it has a ``seed`` field (dataclass collators).

    The seed mixes the run seed, the sampler's epoch and the batch's example indices, so the same batch
    is collated identically whether or not the run was interrupted.
    """

    def __init__(self, collator, seed: int, sampler: EpochSampler | None = None):
        self.collator = collator
        self.seed = int(seed)
        self.sampler = sampler
        self.is_dataclass = dataclasses.is_dataclass(collator) and any(
            f.name == "seed" for f in dataclasses.fields(collator))
        # other collators offer `with_seed(seed)` (SpeechCollator)
        self.seedable = self.is_dataclass or callable(getattr(collator, "with_seed", None))

    def __call__(self, examples):
        indices = [e.pop("__index__") for e in examples] if examples and "__index__" in examples[0] else []
        collator = self.collator
        if self.seedable:
            epoch = self.sampler.epoch if self.sampler is not None else 0
            seed = derive_seed(self.seed, CROPS, epoch, *indices)
            if self.is_dataclass:
                collator = dataclasses.replace(self.collator, seed=seed)
            else:
                collator = self.collator.with_seed(seed)
        return collator(examples)
