"""The order in which a worker sees its training images: one seeded permutation per
epoch, split over the ranks, that can start part-way through.

Seeding by ``seed + epoch`` (not by a generator that advances as batches are drawn) makes
an epoch's order independent of what ran before it, so a run resumed from a mid-epoch
checkpoint skips exactly the batches it already trained on, and a restart that cycles the
same loader does not change the epoch's order. Skipping happens on indices, so skipped
images are never loaded.

It is a ``DistributedSampler``, so Ray Train's ``prepare_data_loader`` keeps it (it only
adds a sampler when none is distributed) and every rank gets a disjoint share.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler


class EpochOrder(DistributedSampler):
    def __init__(self, dataset: Sized, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )
        self.start = 0

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """Use epoch ``epoch``'s order, beginning at its ``start``-th index (this rank's)."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)
