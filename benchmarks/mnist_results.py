"""MNIST results table: train each mode, then evaluate on the generated corruption suite.

    ANTRAY_DATA_ROOT=../shared/data .venv/bin/python benchmarks/mnist_results.py \
        --epochs 1 --limit 2000 --out runs/mnist_results

Each mode trains with `configs/mnist_<mode>.yaml` (single process, `--set optim.epochs=N`),
then `antray eval --benchmark mnist-c --generated` corrupts the first `--limit` MNIST test
images with our 12 generated corruptions x 5 severities (CIFAR-10-C parameters, since MNIST
is 28x28; *not* the official MNIST-C files, which are not available here) and measures eps*
along Gaussian directions. Prints a Markdown table for docs/RESULTS_MNIST.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from orchestrator.cli import main as antray
from orchestrator.config import load_config
from orchestrator.train import train_from_config

MODES = ["vanilla", "gnt", "speckle", "ant1x1", "ant3x3"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--eps-star-limit", type=int, default=200)
    parser.add_argument("--out", default="runs/mnist_results")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for mode in args.modes.split(","):
        run = out / mode
        cfg = load_config(
            f"configs/mnist_{mode}.yaml",
            [f"optim.epochs={args.epochs}", "runtime.log_every_steps=1000"],
        )
        t0 = time.perf_counter()
        train_from_config(cfg, run, backend="local", overwrite=True, track=False)
        train_s = time.perf_counter() - t0
        report = run / "eval"
        code = antray(
            [
                "eval",
                "--checkpoint",
                str(run),
                "--benchmark",
                "mnist-c",
                "--generated",
                "--limit",
                str(args.limit),
                "--eps-star",
                "gaussian",
                "--eps-star-limit",
                str(args.eps_star_limit),
                "--no-progress",
                "--out",
                str(report),
            ]
        )
        if code != 0:
            sys.exit(code)
        r = json.loads((report / "results.json").read_text())
        eps = r.get("eps_star", {}).get("gaussian", {}).get("median", float("nan"))
        rows.append(
            (
                mode,
                r["clean_accuracy"],
                r["mean_accuracy"],
                r.get("mean_accuracy_without_noise"),
                eps,
                train_s,
            )
        )
        print(f"{mode}: {rows[-1]}", file=sys.stderr, flush=True)
    print(f"\nCommand: `{' '.join(sys.argv)}`\n")
    print(
        "| mode | clean | generated suite mean | mean w/o noise | eps* Gaussian (median l2) "
        "| train time (s) |"
    )
    print("|---|---|---|---|---|---|")
    for mode, clean, mean, no_noise, eps, secs in rows:
        nn = f"{100 * no_noise:.2f}" if no_noise is not None else "–"
        print(f"| {mode} | {100 * clean:.2f} | {100 * mean:.2f} | {nn} | {eps:.2f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
