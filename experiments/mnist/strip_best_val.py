"""Copy a checkpoint without its early-stopping record, so that ``antray eval`` serves that
checkpoint's own epoch (its weight average, or its live weights) instead of the best
validation epoch a ``select_epoch: best_val`` run carries along.

    python -m experiments.mnist.strip_best_val CHECKPOINT OUT_DIR
    antray eval --checkpoint OUT_DIR ...

For comparing a best_val run's served epoch with its last one (experiments/mnist/NOTEBOOK.md). The
copy is an ordinary antray checkpoint; nothing else in it changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainers.checkpoint_format import BEST_VAL_KEY, CheckpointError, load_state, save_state


def strip_best_val(checkpoint: Path, out_dir: Path) -> int:
    """Write the copy; returns the copy's (0-based) epoch."""
    state = load_state(checkpoint)
    if BEST_VAL_KEY not in state:
        raise CheckpointError(
            f"{checkpoint} has no '{BEST_VAL_KEY}' record: it serves its own epoch"
        )
    state.pop(BEST_VAL_KEY)
    state.pop("format")  # save_state writes it again
    save_state(state, out_dir)
    return int(state["epoch"])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: strip_best_val.py CHECKPOINT OUT_DIR", file=sys.stderr)
        return 2
    try:
        epoch = strip_best_val(Path(args[0]), Path(args[1]))
    except CheckpointError as exc:
        print(f"strip_best_val: {exc}", file=sys.stderr)
        return 2
    print(f"epoch {epoch + 1} (0-based {epoch}) -> {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
