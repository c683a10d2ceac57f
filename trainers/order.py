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

import torch
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


def worker_shares(global_batch: int, world_size: int) -> list[int]:
    """Images of one update per rank: equal, or (where ``world_size`` does not divide the
    batch) the first ``global_batch % world_size`` ranks take one more."""
    if not 1 <= world_size <= global_batch:
        raise ValueError(
            f"a global batch of {global_batch} cannot be split over {world_size} workers"
        )
    base, extra = divmod(global_batch, world_size)
    return [base + (rank < extra) for rank in range(world_size)]


class UpdateOrder(EpochOrder):
    """The training order of one rank, laid out by classifier update.

    Epoch ``e`` is one seeded permutation of the dataset (``seed + e``, as EpochOrder),
    cut into updates of ``global_batch`` images (a last partial update is dropped). Rank
    ``r`` takes a contiguous slice of each update (``worker_shares``). So which images
    make update ``u`` depends on the seed only, never on how many workers there are: an
    elastic group that shrinks or grows at a restart trains on the same global batches,
    the updates per epoch stay ``len(dataset) // global_batch``, and a mid-epoch
    checkpoint taken at one size resumes at another at exactly the next update. With one
    worker the order is EpochOrder's.

    An EpochOrder (a ``DistributedSampler``), so Ray Train's ``prepare_data_loader`` keeps
    it, and ``set_epoch(epoch, start=...)`` counts ``start`` in updates."""

    def __init__(
        self, dataset: Sized, *, global_batch: int, num_replicas: int, rank: int, seed: int
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, seed=seed)
        shares = worker_shares(global_batch, num_replicas)
        self.global_batch = global_batch
        self.share = shares[rank]
        self.offset = sum(shares[:rank])
        # A dataset smaller than one batch (tests, smoke runs) still makes one update,
        # its positions wrapping around the permutation.
        self.updates = max(1, len(dataset) // global_batch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        size = len(self.dataset)  # type: ignore[arg-type]
        order = torch.randperm(size, generator=generator).tolist()
        for update in range(self.start, self.updates):
            first = update * self.global_batch + self.offset
            for position in range(first, first + self.share):
                yield order[position % size]

    def __len__(self) -> int:
        return (self.updates - self.start) * self.share
