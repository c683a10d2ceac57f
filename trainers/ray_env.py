"""``WorkerEnv`` on a Ray Train worker: the only place the loop meets Ray Train.

prepare_model / prepare_data_loader give DDP and distributed sampling, report()
turns rank 0's state into a ``ray.train.Checkpoint``, and get_checkpoint() resumes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from trainers.checkpoint_format import load_state, save_state

STOP_POLL_TIMEOUT_S = 60.0  # a stop-flag answer older than this is asked for again


class RayTrainEnv:
    def __init__(self, stop_flag: Any = None, device: str = "auto") -> None:
        self.stop_flag = stop_flag  # an actor with is_set(), set by the driver on Ctrl-C
        self.stop_query: tuple[Any, float] | None = None
        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self._device = self._pick_device(device)

    @staticmethod
    def _pick_device(wanted: str) -> torch.device:
        """Ray's assigned GPU when CUDA is really there; otherwise the CPU. (A node may
        advertise GPUs torch cannot use; ``runtime.device=cpu`` keeps a GPU worker on
        the CPU.) ``cuda`` without CUDA is refused on the driver before Ray starts."""
        if wanted != "cpu" and torch.cuda.is_available():
            device = ray.train.torch.get_device()
            if device.type == "cuda":
                return device
        return torch.device("cpu")

    def device(self) -> torch.device | None:
        return self._device

    def prepare_model(self, model: nn.Module) -> nn.Module:
        # The loop has already moved the model; naming the device keeps Ray from moving
        # it to a GPU torch cannot see, and picks DDP's device_ids.
        return ray.train.torch.prepare_model(model, move_to_device=self._device)

    def prepare_loader(self, loader: DataLoader) -> DataLoader:
        # Batches move to the device in the loop (pinned, non-blocking).
        return ray.train.torch.prepare_data_loader(loader, move_to_device=False)

    def broadcast(self, obj: Any) -> Any:
        if self.world_size == 1 or not dist.is_initialized():
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def stop_requested(self) -> bool:
        """Never waits: the answer to the previous question, once it has arrived."""
        if self.stop_flag is None:
            return False
        if self.stop_query is None:
            self.stop_query = (self.stop_flag.is_set.remote(), time.monotonic())
            return False
        ref, sent = self.stop_query
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            if time.monotonic() - sent > STOP_POLL_TIMEOUT_S:
                self.stop_query = None  # flag actor gone or stuck: ask again
            return False
        self.stop_query = None
        try:
            return bool(ray.get(ref, timeout=0))
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
