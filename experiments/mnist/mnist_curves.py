"""Per-epoch validation curves of `antray tune` runs: a markdown table and a PNG.

Reads each trial's ``progress.csv`` (Tune writes one per trial under ``<out>/tune/``) and
prints, per trial, the reported metric after every epoch (default ``val_corruption_acc``,
the generated corruption suite on the validation split) with the restarts adopted so far::

    python -m experiments.mnist.mnist_curves runs/suite_val/ant1x1_eps8_10 \\
        runs/suite_val/gnt04 --plot experiments/mnist/figures/suite_val/val_corruption_vs_epoch.png

``--metric`` may be given more than once (e.g. ``val_corruption_acc`` and
``live_val_corruption_acc`` for a run with ``optim.ema_decay``): one table per metric, and
one line per trial and metric in the plot (solid for the first metric, dashed after).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def trial_curves(
    tune_dir: Path, metric: str, *, missing_ok: bool = False
) -> list[tuple[str, pd.DataFrame]]:
    """(label, per-epoch rows) for every trial of one ``antray tune`` output directory;
    with ``missing_ok``, trials that did not report ``metric`` are left out."""
    best = json.loads((tune_dir / "best.json").read_text())
    key = best["key"]
    curves = []
    for progress in sorted(tune_dir.glob("tune/trial_*/progress.csv")):
        params = json.loads((progress.parent / "params.json").read_text())
        rows = pd.read_csv(progress)
        if metric not in rows:
            if missing_ok:
                continue
            raise SystemExit(f"{progress}: no column {metric}")
        # One row per finished epoch: mid-epoch checkpoints and interrupted epochs report
        # no validation.
        if "mid_epoch" in rows:
            rows = rows[rows["mid_epoch"].fillna(0) != 1]
        rows = rows.dropna(subset=[metric]).drop_duplicates("epoch", keep="last")
        curves.append((f"{tune_dir.name} {key}={params['value']:g}", rows.reset_index(drop=True)))
    if not curves and not missing_ok:
        raise SystemExit(f"{tune_dir}: no tune/trial_*/progress.csv")
    return curves


def markdown(curves: list[tuple[str, pd.DataFrame]], metric: str) -> str:
    epochs = sorted({int(e) for _, rows in curves for e in rows["epoch"]})
    head = ["trial", *(str(e) for e in epochs), "best (epoch)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, rows in curves:
        by_epoch = dict(zip(rows["epoch"].astype(int), rows[metric], strict=True))
        values = [f"{100 * by_epoch[e]:.2f}" if e in by_epoch else "" for e in epochs]
        best = int(rows[metric].idxmax())
        lines.append(
            f"| {label} | " + " | ".join(values) + f" | {100 * rows[metric][best]:.2f} "
            f"({int(rows['epoch'][best])}) |"
        )
    if any("restarts_adopted" in rows for _, rows in curves):
        lines.append("")
        lines.append("restarts adopted by the end of each epoch:")
        for label, rows in curves:
            if "restarts_adopted" in rows:
                adopted = rows["restarts_adopted"]
                lines.append(f"- {label}: " + ", ".join(f"{v:.0f}" for v in adopted))
    return "\n".join(lines)


def plot(curves: list[tuple[str, pd.DataFrame]], metrics: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    for i, (label, rows) in enumerate(curves):
        color = f"C{i}"
        for j, metric in enumerate(metrics):
            if metric not in rows:
                continue
            name = label if len(metrics) == 1 else f"{label} {metric}"
            style = "-" if j == 0 else "--"
            ax.plot(rows["epoch"], 100 * rows[metric], style, color=color, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metrics[0]} (%)" if len(metrics) == 1 else "validation top-1 (%)")
    ax.grid(alpha=0.3)
    # Beside the axes: with several runs a legend inside would cover the curves.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tune_dirs", nargs="+", type=Path, help="antray tune --out directories")
    p.add_argument("--metric", action="append", help="default: val_corruption_acc; repeatable")
    p.add_argument("--plot", type=Path, help="write the curves as a PNG here")
    args = p.parse_args(argv)
    metrics = args.metric or ["val_corruption_acc"]
    first: list[tuple[str, pd.DataFrame]] = []  # the plot's trials: those of the first metric
    for i, metric in enumerate(metrics):
        # The first metric is required of every trial; later ones where reported.
        curves = [c for d in args.tune_dirs for c in trial_curves(d, metric, missing_ok=i > 0)]
        if not curves:
            raise SystemExit(f"no trial reports {metric}")
        first = first or curves
        if len(metrics) > 1:
            print(("\n" if i else "") + f"{metric}:\n")
        print(markdown(curves, metric))
    if args.plot:
        plot(first, metrics, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
