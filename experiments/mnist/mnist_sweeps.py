"""The sigma and epsilon sweeps of several `antray tune` runs, read together and chosen on
validation (never on test results).

    python -m experiments.mnist.mnist_sweeps \\
        --gnt runs/mnist_long/gnt_tune runs/mnist_long/gnt_sweep8 \\
        --ant runs/mnist_long/ant1x1_tune runs/mnist_long/ant1x1_eps6_tune \\
              runs/mnist_long/ant1x1_sweep8 \\
        --eval-root runs/mnist_long/eval --vanilla runs/mnist_long/eval/vanilla-val \\
        --plots experiments/mnist/figures/full

Each tune directory's `tune_results.csv` gives the grid values and their last checkpoints;
the validation report of a checkpoint is the `results.json` under ``--eval-root`` whose
recorded checkpoint is that one (`antray eval --split val`). Prints one markdown table per
sweep (validation clean and MNIST-C mean, epochs, trial time, MLflow run id, the choice by
`mnist_results.pick_best`) and a per-corruption table, and draws accuracy against sigma and
against epsilon. Values that occur in two tune runs are refused: each is trained once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from experiments.mnist import mnist_results as mr


def val_reports(eval_root: Path) -> dict[str, dict[str, Any]]:
    """Validation results by the checkpoint directory they evaluated."""
    out = {}
    for path in sorted(eval_root.glob("*/results.json")):
        results = json.loads(path.read_text())
        meta = results.get("metadata", {})
        if meta.get("split") != "val":
            continue
        run_dir = meta.get("checkpoint", {}).get("run_dir")
        if run_dir:
            out[str(Path(run_dir).resolve())] = results
    return out


class SweepError(ValueError):
    """Run directories that cannot be read as one sweep; ``main`` prints it and exits 2."""


def sweep(tune_dirs: list[Path], reports: dict[str, dict[str, Any]]) -> dict[float, dict]:
    """Grid value -> its trial (checkpoint, epochs, seconds, MLflow id, tune dir) and its
    validation results."""
    rows: dict[float, dict] = {}
    for tune_dir in tune_dirs:
        results_csv = tune_dir / "tune_results.csv"
        if not results_csv.is_file():
            raise SweepError(f"{results_csv} not found: pass the --out folder of `antray tune`")
        ids = mr.tune_mlflow_ids(tune_dir).get("trials", {})
        for value, trial in mr.trial_table(results_csv.read_text(), tune_dir).items():
            if value in rows:
                raise SweepError(f"value {value:g} is in {rows[value]['tune_dir']} and {tune_dir}")
            checkpoint = str(Path(trial["checkpoint"]).resolve())
            if checkpoint not in reports:
                raise SweepError(f"no validation report for {checkpoint} under --eval-root")
            rows[value] = {
                **trial,
                "tune_dir": str(tune_dir),
                "mlflow": ids.get(value, "–"),
                "val": reports[checkpoint],
            }
    return rows


def table(name: str, rows: dict[float, dict]) -> tuple[float, str]:
    best = mr.pick_best({v: mr.suite_mean(r["val"]) for v, r in rows.items()})
    lines = [
        f"| {name} | val clean | val MNIST-C mean (15) | epochs | trial wall (s) | "
        "trial MLflow run id | tune run |",
        "|---|---|---|---|---|---|---|",
    ]
    for value in sorted(rows):
        r = rows[value]
        mark = " **(chosen)**" if value == best else ""
        lines.append(
            f"| {value:g}{mark} | {100 * r['val']['clean_accuracy']:.2f} | "
            f"{100 * mr.suite_mean(r['val']):.2f} | {r['epochs']} | {r['seconds']:.0f} | "
            f"`{r['mlflow']}` | `{r['tune_dir']}` |"
        )
    return best, "\n".join(lines)


def per_corruption(sweeps: dict[str, dict[float, dict]]) -> str:
    columns = [(n, v) for n, rows in sweeps.items() for v in sorted(rows)]
    first = sweeps[next(iter(sweeps))]
    corruptions = list(mr.corruption_accuracies(first[min(first)]["val"]))
    per = {(n, v): mr.corruption_accuracies(sweeps[n][v]["val"]) for n, v in columns}
    head = "| corruption | " + " | ".join(f"{n} {v:g}" for n, v in columns) + " |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for c in corruptions:
        lines.append(f"| {c} | " + " | ".join(f"{100 * per[k][c]:.1f}" for k in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gnt", nargs="+", type=Path, default=[])
    p.add_argument("--ant", nargs="+", type=Path, default=[])
    p.add_argument("--eval-root", type=Path, required=True)
    p.add_argument("--vanilla", type=Path, help="the vanilla model's validation report dir")
    p.add_argument("--plots", type=Path, help="folder for the PNGs (needs --vanilla)")
    args = p.parse_args(argv)
    if args.plots and not args.vanilla:
        p.error("--plots needs --vanilla (the plots mark the vanilla model's accuracy)")
    if not args.eval_root.is_dir():
        print(f"error: --eval-root {args.eval_root} is not a folder", file=sys.stderr)
        return 2
    reports = val_reports(args.eval_root)
    named = (("gnt", args.gnt, "sigma"), ("ant1x1", args.ant, "epsilon"))
    given = [(key, dirs, label) for key, dirs, label in named if dirs]
    sweeps = {}
    try:  # every sweep is read before anything is printed
        for key, dirs, _ in given:
            sweeps[key] = sweep(dirs, reports)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, _, label in given:
        best, text = table(label, sweeps[key])
        print(f"{text}\n\nchosen {label}: {best:g}\n")
    if sweeps:
        print(per_corruption(sweeps))
    if args.plots and sweeps:
        val: dict[str, Any] = {k: {v: r["val"] for v, r in s.items()} for k, s in sweeps.items()}
        val["vanilla"] = json.loads((args.vanilla / "results.json").read_text())
        state = {"val": val, "test": {}}
        for png in mr.plots(state, args.plots):
            print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
