"""Single-process training: the paper's reference behaviour (restarts block).

Used by ``antray train --backend local`` and by fast tests; the Ray runner runs
the same ``trainers.loop.run_worker`` on Ray Train workers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig
from orchestrator.signals import stop_on_signals
from orchestrator.suite_validation import make_suite_validation
from trainers.checkpoint_format import STATE_FILE, load_state
from trainers.data import IMAGE_SPECS
from trainers.generator_service import InlineGeneratorService
from trainers.loop import run_worker
from trainers.worker_env import LocalEnv


def inline_service(*, cfg: ExperimentConfig, loader, precision, rank: int):
    return InlineGeneratorService(
        kind=cfg.ant.generator,
        channels=IMAGE_SPECS[cfg.data.dataset].channels,
        epsilon=cfg.ant.epsilon,
        batches=loader,
        iterations=cfg.ant.restart_iterations,
        lr=cfg.ant.restart_lr,
        capacity=cfg.ant.replay_capacity,
        eviction=cfg.ant.replay_eviction,
        device=precision.device,
        seed=cfg.experiment.seed,
    )


def train_local(
    cfg: ExperimentConfig,
    run_dir: Path,
    *,
    data_root: str | None = None,
    resume: bool = False,
    on_report: Callable[[dict[str, float]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Returns (final metrics, final checkpoint state)."""
    env = LocalEnv(run_dir, resume=resume, on_report=on_report)
    with stop_on_signals(lambda: setattr(env, "stop", True)):
        metrics = run_worker(
            cfg,
            env,
            make_service=inline_service,
            data_root=data_root,
            make_suite_validation=make_suite_validation,
        )
    state_file = env.checkpoint_dir / STATE_FILE
    state = load_state(state_file) if state_file.exists() else None
    return metrics or (state or {}).get("metrics", {}), state
