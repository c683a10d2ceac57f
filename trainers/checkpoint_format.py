"""The on-disk format of a training checkpoint: what writers and readers agree on.

The training loop writes ``state.pt``; ``antray eval``, the orchestrator and the benchmark
scripts read it. Keeping the format here (and not in the loop's modules) lets readers
depend on the file's layout without importing the training loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "antray-checkpoint-v1"
STATE_FILE = "state.pt"
# The early-stopping record: trainers/run.py writes BestEpoch.state() under it, and
# evaluation.model_loading serves its weights.
BEST_VAL_KEY = "best_val"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or is not an antray checkpoint."""


def save_state(state: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (STATE_FILE + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, directory / STATE_FILE)  # atomic: a crash never leaves half a file
    return directory / STATE_FILE


def load_state(path: Path) -> dict[str, Any]:
    """Read ``state.pt`` from a file or a directory; reject anything not ours."""
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for garbage
        raise CheckpointError(f"corrupt checkpoint {path}: {type(exc).__name__}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an antray checkpoint (format {CHECKPOINT_FORMAT})")
    return state
