"""Train from a config, return metrics: the one function every entry point calls
(the CLI, Ray Tune trials, benchmarks, tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from orchestrator.config import ExperimentConfig
from orchestrator.errors import Interrupted, TrainingFault
from orchestrator.run_dir import CONFIG_FILE, prepare_run_dir, write_metrics
from trainers.worker_env import STATE_FILE, load_state

Backend = Literal["local", "ray"]
MODEL_FILE = "model.pt"
TRACKING_FILE = "mlflow_run.json"


def train_from_config(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    backend: Backend = "ray",
    data_root: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    address: str | None = None,
    track: bool = True,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Run one training. ``run_dir`` gets ``config.yaml``, checkpoints, ``model.pt``
    (final classifier + config), ``metrics.json`` and, with ``track``, an MLflow run."""
    if backend == "ray":  # an unreachable cluster fails before anything is written
        from orchestrator.ray_runner import ensure_ray

        ensure_ray(address, num_cpus=num_cpus)
    cfg = absolute_paths(cfg)  # Ray workers run in another cwd
    run_path = prepare_run_dir(Path(run_dir), resume=resume, overwrite=overwrite)
    if resume:
        validate_resume_checkpoint(run_path, backend)  # before anything is written
    (run_path / CONFIG_FILE).write_text(cfg.to_yaml())
    target = _start_tracking(cfg, run_path) if track else None
    on_report = None
    if target is not None:
        from orchestrator.tracking import log_epoch

        def on_report(metrics: dict[str, float]) -> None:
            log_epoch(target, metrics)

    status = "FAILED"
    try:
        if backend == "local":
            from orchestrator.local_runner import train_local

            metrics, state = train_local(
                cfg, run_path, data_root=data_root, resume=resume, on_report=on_report
            )
        else:
            from orchestrator.ray_runner import train_ray

            metrics, state = train_ray(
                cfg,
                run_path,
                data_root=data_root,
                resume=resume,
                address=address,
                tracking=target,
                num_cpus=num_cpus,
            )
        if metrics.get("error") == "nonfinite_loss":
            raise TrainingFault(metrics["message"])
        status = "KILLED" if metrics.get("interrupted") else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if target is not None and status != "FINISHED":
            from orchestrator.tracking import finish_run

            finish_run(target, run_path, status=status)
    if state is not None:
        torch.save({"config": state["config"], "model": state["model"]}, run_path / MODEL_FILE)
    write_metrics(run_path, metrics)
    if target is not None:
        from orchestrator.tracking import finish_run

        finish_run(target, run_path, status=status)
        metrics = {**metrics, "mlflow_run_id": target.run_id, "mlflow_uri": target.uri}
    if status == "KILLED":
        raise Interrupted(
            f"interrupted; checkpoint saved. Continue with: antray train --resume "
            f"--run-dir {run_path} --config {run_path / CONFIG_FILE}"
        )
    return metrics


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Relative file paths in the config, resolved against the caller's cwd."""

    def fix(value: str | None) -> str | None:
        return str(Path(value).expanduser().resolve()) if value else value

    data = cfg.data.model_copy(
        update={"root": fix(cfg.data.root), "stylized_root": fix(cfg.data.stylized_root)}
    )
    model = cfg.model.model_copy(update={"weights_path": fix(cfg.model.weights_path)})
    return cfg.model_copy(update={"data": data, "model": model})


def latest_checkpoint_dir(run_path: Path, backend: Backend) -> Path | None:
    """Where a resumed run will read its state from (None: nothing saved yet)."""
    if backend == "local":
        candidate = run_path / "checkpoint"
        return candidate if (candidate / STATE_FILE).exists() else None
    from orchestrator.ray_runner import RAY_RUN_NAME

    found = sorted((run_path / "ray" / RAY_RUN_NAME).glob("checkpoint_*/" + STATE_FILE))
    return found[-1].parent if found else None


def validate_resume_checkpoint(run_path: Path, backend: Backend) -> None:
    directory = latest_checkpoint_dir(run_path, backend)
    if directory is not None:
        load_state(directory)  # raises CheckpointError (exit 2) for corrupt/foreign files


def _start_tracking(cfg: ExperimentConfig, run_path: Path):
    from orchestrator.tracking import start_run

    record = run_path / TRACKING_FILE
    previous = json.loads(record.read_text())["run_id"] if record.exists() else None
    target = start_run(
        cfg.to_dict(),
        run_path,
        uri=cfg.tracking.mlflow_uri,
        experiment=cfg.tracking.experiment,
        run_id=previous,
    )
    record.write_text(json.dumps({"run_id": target.run_id, "uri": target.uri}))
    return target
