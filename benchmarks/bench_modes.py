"""One MNIST epoch of each training mode, single process: images/s and clean accuracy.

    ANTRAY_DATA_ROOT=../shared/data .venv/bin/python benchmarks/bench_modes.py [--epochs 1]

images/s counts the classifier's training images over the step loop (ANT includes its
generator step); the per-epoch restart (1000 iterations, blocking in a single process,
as in the reference) is timed separately. Prints a Markdown table for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time

import torch

from orchestrator.config import load_config
from orchestrator.train import train_from_config

MODES = ["vanilla", "gnt", "speckle", "ant1x1", "ant3x3"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    rows = []
    for mode in args.modes.split(","):
        overrides = [f"optim.epochs={args.epochs}", "runtime.log_every_steps=100", *args.overrides]
        cfg = load_config(f"configs/mnist_{mode}.yaml", overrides)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            m = train_from_config(cfg, f"{tmp}/run", backend="local", track=False)
            wall = time.perf_counter() - t0
        rows.append(
            (
                mode,
                m["images_per_s"],
                m["epoch_time_s"],
                wall,
                m["val_clean_acc"],
                m["val_gaussian_acc"],
                m.get("val_generator_acc", float("nan")),
            )
        )
        print(f"{mode}: {rows[-1]}", file=sys.stderr, flush=True)
    print(f"\nCommand: `{' '.join(sys.argv)}`  ")
    print(
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU\n"
    )
    print(
        "| mode | train images/s | step-loop time (s) | wall incl. restart + eval (s) "
        "| clean acc | Gaussian 0.5 acc | current-generator acc |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, rate, steps, wall, clean, gauss, gen in rows:
        print(
            f"| {mode} | {rate:.0f} | {steps:.1f} | {wall:.1f} | {clean:.4f} | {gauss:.4f} "
            f"| {gen:.4f} |"
        )


if __name__ == "__main__":
    main()
