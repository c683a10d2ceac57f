"""Which epoch ``optim.select_epoch: best_val`` would serve, for runs that kept every epoch.

    python -m experiments.mnist.best_val_epoch RUN_DIR ...

For a run trained with ``optim.select_epoch: last`` and enough checkpoints kept
(``runtime.checkpoints_to_keep`` >= its epochs), every end-of-epoch checkpoint under the run
directory is read: its epoch and its validation score (``val_corruption_acc`` when the run
measured the corruption suite, else ``val_clean_acc``: trainers/best_epoch.py). Prints one
line per epoch, marks the best by the rule ``best_val`` uses (highest score; a tie keeps the
earlier epoch) and the last line gives that checkpoint's directory, which ``antray eval
--checkpoint`` takes. Only validation numbers are read: nothing here looks at test images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainers.best_epoch import BestEpoch, selection_metric
from trainers.checkpoint_format import STATE_FILE, CheckpointError, load_state


def epoch_checkpoints(run_dir: Path) -> tuple[list[tuple[int, dict, Path]], str]:
    """(0-based epoch, metrics, checkpoint directory) of each end-of-epoch checkpoint,
    oldest epoch first (the newest file wins when an epoch was checkpointed twice), and the
    run's ``data.val_suite`` from its config."""
    found: dict[int, tuple[float, dict, Path]] = {}
    suite = "none"
    for state_file in sorted(run_dir.rglob(STATE_FILE)):
        state = load_state(state_file)
        if state.get("mid_epoch") or state.get("interrupted"):
            continue
        suite = str((state.get("config") or {}).get("data", {}).get("val_suite", "none"))
        mtime = state_file.stat().st_mtime
        epoch = int(state["epoch"])
        if epoch not in found or mtime > found[epoch][0]:
            found[epoch] = (mtime, dict(state.get("metrics") or {}), state_file.parent)
    epochs = [(epoch, metrics, path) for epoch, (_, metrics, path) in sorted(found.items())]
    return epochs, suite


def choose(run_dir: Path) -> tuple[list[str], Path]:
    """The report lines for one run and the chosen checkpoint directory."""
    epochs, suite = epoch_checkpoints(run_dir)
    if not epochs:
        raise CheckpointError(f"no end-of-epoch checkpoint ({STATE_FILE}) under {run_dir}")
    best = BestEpoch(selection_metric(suite))
    chosen = None
    for epoch, metrics, path in epochs:
        if best.metric in metrics and best.record(epoch, metrics):
            chosen = path
    if chosen is None:
        raise CheckpointError(f"{run_dir}: no checkpoint reports {best.metric}")
    kept = f"{len(epochs)} of its {epochs[-1][0] + 1} epochs kept"
    lines = [f"{run_dir}: {best.metric} per epoch ({kept})"]
    for epoch, metrics, _ in epochs:
        mark = "  <- best_val" if epoch == best.epoch else ""
        lines.append(f"  epoch {epoch + 1}: {metrics.get(best.metric, float('nan')):.4f}{mark}")
    return lines, chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    args = parser.parse_args(argv)
    results = []
    for run in args.runs:  # every run checked before anything is printed
        try:
            results.append(choose(run))
        except CheckpointError as exc:
            print(f"best_val_epoch.py: {exc}", file=sys.stderr)
            return 2
    for lines, path in results:
        print("\n".join(lines))
        print(f"  chosen: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
