"""MLflow: one run per training. Params = the resolved config, per-epoch metrics,
artifacts = config YAML, final model, metrics.json.

Tracking URI: ``tracking.mlflow_uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite
file in the run directory (absolute: Ray workers change their cwd). An unreachable
URI falls back to the local file with a warning: losing tracking must not lose a run.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

LOCAL_DB = "mlflow.db"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)
    return out


@dataclass(frozen=True)
class TrackingTarget:
    uri: str
    experiment_id: str
    run_id: str


def local_uri(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / LOCAL_DB).resolve()}"


def start_run(
    config: dict[str, Any], run_dir: Path, *, uri: str | None, experiment: str, run_id: str | None
) -> TrackingTarget:
    """Create (or reopen, on resume) the MLflow run for this training."""
    import mlflow

    # MLflow announces creating its SQLite tables on stderr; errors stay one line.
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    wanted = uri or os.environ.get("MLFLOW_TRACKING_URI") or local_uri(run_dir)
    try:
        return _open(mlflow, wanted, config, run_dir, experiment, run_id)
    except Exception as exc:  # unreachable server, bad scheme, locked db ...
        fallback = local_uri(run_dir)
        if wanted == fallback:
            raise
        warnings.warn(
            f"MLflow at {wanted} is unreachable ({type(exc).__name__}); logging to {fallback}",
            stacklevel=2,
        )
        return _open(mlflow, fallback, config, run_dir, experiment, None)


def _probe_http(uri: str) -> None:
    """MLflow's client retries an unreachable server for minutes; find out in seconds."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.hostname or "localhost", port), timeout=5):
        pass


def _open(mlflow, uri, config, run_dir, experiment, run_id) -> TrackingTarget:
    _probe_http(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp:
        exp_id = exp.experiment_id
    elif uri.startswith("sqlite:"):  # keep artifacts beside the local db, not in the cwd
        exp_id = client.create_experiment(
            experiment, artifact_location=(run_dir / "mlartifacts").resolve().as_uri()
        )
    else:
        exp_id = client.create_experiment(experiment)
    if run_id is not None:
        try:
            client.get_run(run_id)
            return TrackingTarget(uri, exp_id, run_id)
        except Exception:
            pass  # resumed against another store: start a new run there
    run = client.create_run(exp_id, run_name=run_dir.name, tags={"antray.run_dir": str(run_dir)})
    params = flatten(config)
    from mlflow.entities import Param

    items = [Param(k, v[:500]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i : i + 100])
    return TrackingTarget(uri, exp_id, run.info.run_id)


def log_epoch(target: TrackingTarget, metrics: dict[str, float]) -> None:
    import time

    import mlflow
    from mlflow.entities import Metric

    step = int(metrics.get("epoch", 0))
    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step)
        for k, v in metrics.items()
        if isinstance(v, int | float) and math.isfinite(float(v))
    ]
    mlflow.MlflowClient(tracking_uri=target.uri).log_batch(target.run_id, metrics=items)


def finish_run(target: TrackingTarget, run_dir: Path, *, status: str = "FINISHED") -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=target.uri)
    for name in ("config.yaml", "metrics.json", "model.pt"):
        path = run_dir / name
        if path.exists():
            client.log_artifact(target.run_id, str(path))
    client.set_terminated(target.run_id, status=status)
