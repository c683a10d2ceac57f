"""Workers whose shares of the global batch differ by one image (a batch that does not
divide) still step on the mean over the whole batch: three gloo processes with DDP's
weighted hook (``trainers.run.weight_unequal_shares``) against one process on the whole
batch. Spawns processes (about 15 s on 2 cores), no Ray."""

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from trainers.order import worker_shares

pytestmark = pytest.mark.integration


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
