"""What a training reads of its experiment config, as types.

The config itself is ``orchestrator.config.ExperimentConfig`` (validated, frozen, with every
key's default and meaning); trainers/ never imports orchestrator/, so the loop names here the
keys it reads, section by section, and any object with them will do: the orchestrator's
config, or a test's stand-in. A unit test checks that every key named here is one of
``ExperimentConfig``'s (``tests/unit/test_config.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from trainers.steps import Mode


class ExperimentKeys(Protocol):
    seed: int


class DataKeys(Protocol):
    dataset: str
    root: str | None
    stylized_root: str | None
    batch_size: int  # of one update, over all workers
    eval_batch_size: int
    loader_workers: int
    val_size: int | None  # None: the dataset's default
    split_seed: int
    limit_train: int | None
    limit_val: int | None
    val_suite: str


class ModelKeys(Protocol):
    name: str
    num_classes: int
    weights_path: str | None


class OptimKeys(Protocol):
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    epochs: int
    max_steps: int | None
    step_size_epochs: int
    gamma: float
    ema_decay: float
    select_epoch: str


class SharesKeys(Protocol):
    clean: float
    current: float
    replay: float
    stylized: float


class NoiseKeys(Protocol):
    mode: Mode
    sigmas: Sequence[float]
    speckle_levels: Sequence[float]
    shares: SharesKeys


class AntKeys(Protocol):
    generator: str
    epsilon: float
    generator_lr: float
    restart_iterations: int
    restart_every_steps: int | None
    snapshot_every_steps: int | None
    replay_generators_per_batch: int
    step: str  # "alternating" (the reference) or "fused" (trainers/steps.py::ANT_STEPS)


class RuntimeKeys(Protocol):
    device: str
    amp: bool
    channels_last: bool
    torch_threads: int
    log_every_steps: int
    checkpoint_every_epochs: int
    checkpoint_every_steps: int | None


class TrainConfig(Protocol):
    experiment: ExperimentKeys
    data: DataKeys
    model: ModelKeys
    optim: OptimKeys
    noise: NoiseKeys
    ant: AntKeys
    runtime: RuntimeKeys

    def to_dict(self) -> dict[str, Any]:
        """The whole resolved config (saved in every checkpoint)."""
        ...
