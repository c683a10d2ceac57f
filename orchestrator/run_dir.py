"""Run directories: refuse to clobber one unless told to resume or overwrite."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"


def default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(path: Path, *, resume: bool, overwrite: bool) -> Path:
    """The checks of :func:`prepare_run_dir`, touching nothing (run before preflight)."""
    path = path.expanduser().resolve()
    if resume:
        if not path.is_dir():
            raise UserError(f"--resume: run directory {path} does not exist")
    elif path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise UserError(
            f"run directory {path} already exists; pass --resume to continue it "
            "or --overwrite to replace it"
        )
    return path


def prepare_run_dir(path: Path, *, resume: bool, overwrite: bool) -> Path:
    path = check_run_dir(path, resume=resume, overwrite=overwrite)
    if resume:
        return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    out = run_dir / METRICS_FILE
    out.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return out
