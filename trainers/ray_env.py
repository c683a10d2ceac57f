"""``WorkerEnv`` on a Ray Train worker: the only place the loop meets Ray Train.

prepare_model / prepare_data_loader give DDP and distributed sampling, report()
turns rank 0's state into a ``ray.train.Checkpoint``, and get_checkpoint() resumes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from trainers.worker_env import load_state, save_state


class RayTrainEnv:
    def __init__(self, stop_flag: Any = None) -> None:
        self.stop_flag = stop_flag  # an actor with is_set(), set by the driver on Ctrl-C
        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()

    def device(self) -> torch.device | None:
        return ray.train.torch.get_device()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(model)

    def prepare_loader(self, loader: DataLoader) -> DataLoader:
        return ray.train.torch.prepare_data_loader(loader)

    def set_epoch(self, loader: DataLoader, epoch: int) -> None:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # type: ignore[union-attr]

    def broadcast(self, obj: Any) -> Any:
        if self.world_size == 1 or not dist.is_initialized():
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def stop_requested(self) -> bool:
        if self.stop_flag is None:
            return False
        try:
            return bool(ray.get(self.stop_flag.is_set.remote(), timeout=10))
        except ray.exceptions.RayError:
            return False

    def load_checkpoint(self) -> dict[str, Any] | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return load_state(Path(directory))

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None) -> None:
        # Every rank must call report (it is a barrier); only rank 0 attaches state.
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if state is not None:
                save_state(state, Path(tmp))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
