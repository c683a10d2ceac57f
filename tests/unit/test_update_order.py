"""The training order by classifier update: which images make an update depends on the
seed only, never on how many data-parallel workers share it; shares that differ by one
image when the batch does not divide (DDP's weighted update over them:
tests/integration/test_ddp_unequal_shares.py)."""

import pytest

from trainers.order import EpochOrder, UpdateOrder, worker_shares

DATASET = list(range(103))
BATCH = 10


def global_batches(world: int, *, epoch: int = 0, start: int = 0) -> list[list[int]]:
    """Each update's images, gathered from every rank's order."""
    orders = []
    for rank in range(world):
        order = UpdateOrder(DATASET, global_batch=BATCH, num_replicas=world, rank=rank, seed=3)
        order.set_epoch(epoch, start=start)
        orders.append(list(order))
    shares = worker_shares(BATCH, world)
    updates = len(orders[0]) // shares[0]
    return [
        sum((orders[r][u * shares[r] : (u + 1) * shares[r]] for r in range(world)), [])
        for u in range(updates)
    ]


def test_shares_differ_by_at_most_one_image():
    assert worker_shares(70, 4) == [18, 18, 17, 17]
    assert worker_shares(64, 2) == [32, 32]
    with pytest.raises(ValueError):
        worker_shares(3, 4)


@pytest.mark.parametrize("world", [2, 3, 4, 7])
def test_the_updates_are_the_same_at_every_group_size(world):
    one = global_batches(1, epoch=2)
    assert len(one) == len(DATASET) // BATCH
    assert global_batches(world, epoch=2) == one


def test_one_worker_keeps_the_epoch_order_of_before():
    order = EpochOrder(DATASET, num_replicas=1, rank=0, seed=3)
    order.set_epoch(1)
    assert sum(global_batches(1, epoch=1), []) == list(order)[: len(DATASET) // BATCH * BATCH]


def test_a_mid_epoch_restart_at_another_size_continues_at_the_next_update():
    full = global_batches(2, epoch=0)
    # 4 updates done by two workers, the rest by three (a node joined).
    assert global_batches(3, epoch=0, start=4) == full[4:]
