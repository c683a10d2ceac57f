"""The few things the training loop needs from its surroundings.

``LocalEnv`` runs in one process and keeps checkpoints in the run directory.
``RayTrainEnv`` (trainers/ray_env.py) maps the same calls onto Ray Train: this is
where Ray appears, and only here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from trainers.checkpoint_format import STATE_FILE, load_state, save_state


class WorkerEnv(Protocol):
    rank: int
    world_size: int

    def device(self) -> torch.device | None:
        """The device assigned to this worker (None: let the config decide)."""

    def prepare_model(self, model: nn.Module) -> nn.Module: ...

    def prepare_loader(self, loader: DataLoader) -> DataLoader: ...

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""

    def load_checkpoint(self) -> dict[str, Any] | None: ...

    def stop_requested(self) -> bool:
        """Rank 0: has the user asked to stop (Ctrl-C)? Checked every few steps."""

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None) -> None:
        """Publish epoch metrics; ``state`` (rank 0 only) becomes a checkpoint."""


class LocalEnv:
    """One process, rank 0 of 1; checkpoints in ``<run_dir>/checkpoint/``."""

    rank = 0
    world_size = 1

    def __init__(
        self,
        run_dir: Path,
        *,
        resume: bool = False,
        on_report: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.on_report = on_report
        self.stop = False  # set by the SIGINT handler of the local runner
        history = self.run_dir / "history.json"
        self.history: list[dict[str, float]] = (
            json.loads(history.read_text()) if resume and history.exists() else []
        )

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoint"

    def device(self) -> torch.device | None:
        return None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def prepare_loader(self, loader: DataLoader) -> DataLoader:
        return loader

    def broadcast(self, obj: Any) -> Any:
        return obj

    def stop_requested(self) -> bool:
        return self.stop

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.resume or not (self.checkpoint_dir / STATE_FILE).exists():
            return None
        return load_state(self.checkpoint_dir)

    def report(self, metrics: dict[str, float], state: dict[str, Any] | None) -> None:
        self.history.append(dict(metrics))
        if state is not None:
            save_state(state, self.checkpoint_dir)
        (self.run_dir / "history.json").write_text(json.dumps(self.history, indent=1))
        if self.on_report is not None:
            self.on_report(metrics)
