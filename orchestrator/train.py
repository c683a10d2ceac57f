"""Train from a config, return metrics: the one function every entry point calls
(the CLI, Ray Tune trials, benchmarks, tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from evaluation.model_loading import served_weights
from orchestrator.config import ExperimentConfig
from orchestrator.errors import Interrupted, TrainingFault
from orchestrator.run_dir import CONFIG_FILE, prepare_run_dir, write_metrics
from orchestrator.storage import RunLocation, latest_checkpoint, location_for
from trainers.checkpoint_format import STATE_FILE, load_state

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
    """Run one training. ``run_dir`` gets ``config.yaml``, ``model.pt`` (final classifier
    + config), ``metrics.json``, ``storage.json`` (where the checkpoints are: the run
    directory itself or ``runtime.storage``) and, with ``track``, an MLflow run.

    Bad input (data, model, device, storage, resources) is refused before Ray starts and
    before the run directory is touched: ``UserError``, exit 2."""
    cfg = absolute_paths(cfg)  # Ray workers run in another cwd
    run_path = Path(run_dir).expanduser().resolve()
    location = check_before_start(
        cfg,
        run_path,
        backend=backend,
        data_root=data_root,
        resume=resume,
        overwrite=overwrite,
        address=address,
        num_cpus=num_cpus,
    )
    run_path = prepare_run_dir(run_path, resume=resume, overwrite=overwrite)
    if resume:
        validate_resume_checkpoint(run_path, backend, location)  # before anything is written
    (run_path / CONFIG_FILE).write_text(cfg.to_yaml())
    if backend == "ray":
        location.write(run_path)
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
                location=location,
                data_root=data_root,
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
        served = served_weights(state)  # the weight average when the run kept one
        torch.save({"config": state["config"], "model": served}, run_path / MODEL_FILE)
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

    from orchestrator.data_sync import is_uri

    def fix(value: str | None) -> str | None:
        if not value or is_uri(value):  # a URI is never squeezed through Path
            return value
        return str(Path(value).expanduser().resolve())

    data = cfg.data.model_copy(
        update={"root": fix(cfg.data.root), "stylized_root": fix(cfg.data.stylized_root)}
    )
    model = cfg.model.model_copy(update={"weights_path": fix(cfg.model.weights_path)})
    return cfg.model_copy(update={"data": data, "model": model})


def check_before_start(
    cfg: ExperimentConfig,
    run_path: Path,
    *,
    backend: Backend,
    data_root: str | None,
    resume: bool,
    overwrite: bool,
    address: str | None,
    num_cpus: int | None,
) -> RunLocation:
    """Everything a worker or actor will need, checked here first; then (Ray) join or
    start Ray. Returns where the run's checkpoints go."""
    from orchestrator import preflight
    from orchestrator.run_dir import check_run_dir

    check_run_dir(run_path, resume=resume, overwrite=overwrite)
    location = location_for(cfg.runtime, run_path, resume=resume)
    preflight.check_run(
        cfg,
        location,
        backend=backend,
        data_root=data_root,
        address=address,
        num_cpus=num_cpus,
        bundles=preflight.run_bundles(cfg),
        what="this run",
    )
    return location


def latest_checkpoint_dir(run_path: Path) -> Path | None:
    """Local backend: where a resumed run will read its state from (None: nothing yet)."""
    candidate = run_path / "checkpoint"
    return candidate if (candidate / STATE_FILE).exists() else None


def validate_resume_checkpoint(run_path: Path, backend: Backend, location: RunLocation) -> None:
    """Raise ``CheckpointError`` (exit 2) for a corrupt or foreign latest checkpoint."""
    if backend == "local":
        directory = latest_checkpoint_dir(run_path)
        if directory is not None:
            load_state(directory)
        return
    checkpoint = latest_checkpoint(location)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            load_state(Path(directory))


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
