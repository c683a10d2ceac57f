"""Fixtures of the experiments' tests: tiny trainings in one process (synthetic digits, no
Ray) whose run directories the campaign's scripts then read."""

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.local_runner import inline_service
from trainers.loop import run_worker
from trainers.worker_env import LocalEnv

TINY_RUN = [
    "data.dataset=synthetic",
    "data.limit_train=256",  # 8 steps of 32 per epoch
    "data.limit_val=64",
    "data.batch_size=32",
    "ant.epsilon=6.0",
    "ant.restart_iterations=3",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=1000",
]


@pytest.fixture
def train_tiny() -> Callable[..., Path]:
    """``train_tiny(run_dir, *overrides, env=None)`` trains a tiny run (ANT 1x1 unless an
    override says otherwise) into ``run_dir``, or through ``env`` (a ``LocalEnv``), and
    returns ``run_dir``."""

    def train(run_dir: Path, *overrides: str, env: LocalEnv | None = None) -> Path:
        cfg = load_config(None, [*TINY_RUN, *overrides])
        run_worker(cfg, env or LocalEnv(run_dir), make_service=inline_service)
        return run_dir

    return train
