"""Rank agreement through a real process group (gloo, 2 processes): every rank gets rank
0's flags from one small tensor broadcast, without pickling."""

from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainers.sync import agree


def _agree_on_rank(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:

        def no_pickles(obj):
            raise AssertionError("flags must not go through a pickled broadcast")

        env = SimpleNamespace(rank=rank, world_size=2, broadcast=no_pickles)
        mine = [True, False] if rank == 0 else [False, True]
        got = agree(env, mine, torch.device("cpu"))
        torch.save(got, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_every_rank_gets_rank_zeros_flags(tmp_path):
    mp.spawn(_agree_on_rank, args=(str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank{rank}.pt") == [True, False]


def test_one_worker_needs_no_collective():
    env = SimpleNamespace(rank=0, world_size=1)
    assert agree(env, [False, True], torch.device("cpu")) == [False, True]
