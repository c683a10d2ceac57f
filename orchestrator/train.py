"""Train from a config, return metrics: the one function every entry point calls
(the CLI, Ray Tune trials, benchmarks, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from orchestrator.config import ExperimentConfig
from orchestrator.run_dir import CONFIG_FILE, prepare_run_dir, write_metrics

Backend = Literal["local", "ray"]


def train_from_config(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    backend: Backend = "local",
    data_root: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    address: str | None = None,
) -> dict[str, Any]:
    """Run one training; writes ``config.yaml``, checkpoints and ``metrics.json`` to ``run_dir``."""
    run_path = prepare_run_dir(Path(run_dir), resume=resume, overwrite=overwrite)
    (run_path / CONFIG_FILE).write_text(cfg.to_yaml())
    if backend == "local":
        from orchestrator.local_runner import train_local

        metrics = train_local(cfg, run_path, data_root=data_root, resume=resume)
    else:
        from orchestrator.ray_runner import train_ray

        metrics = train_ray(cfg, run_path, data_root=data_root, resume=resume, address=address)
    write_metrics(run_path, metrics)
    return metrics
