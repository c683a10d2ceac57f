"""The training order by classifier update: which images make an update depends on the
seed only, never on how many data-parallel workers share it; unequal shares are
weighted so that DDP's update is the mean over the whole global batch."""

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

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


def _weighted_gradient(rank: int, world: int, port: int, x, y, queue) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from trainers.run import weight_unequal_shares

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Linear(4, 3).double())
    shares = worker_shares(len(y), world)
    weight_unequal_shares(model, shares[rank], len(y))
    first = sum(shares[:rank])
    part = slice(first, first + shares[rank])
    nn.functional.cross_entropy(model(x[part]), y[part]).backward()
    if rank == 0:
        queue.put(model.module.weight.grad.clone())
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_with_unequal_shares_steps_on_the_mean_over_the_whole_batch():
    import socket

    x = torch.randn(10, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    torch.manual_seed(0)
    reference = nn.Linear(4, 3).double()
    nn.functional.cross_entropy(reference(x), y).backward()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    world = 3  # shares 4, 3, 3 of a batch of 10
    procs = [
        ctx.Process(target=_weighted_gradient, args=(r, world, port, x, y, queue))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    grad = queue.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    torch.testing.assert_close(grad, reference.weight.grad)
