"""Per-corruption accuracy of several models over their seeds, from ``antray eval`` outputs.

    python -m experiments.mnist.per_corruption_seeds \
        --model "ANT 1x1=runs/a_s0/eval,runs/a_s1/eval" --model "GNT=runs/g_s0/eval,..."

Each ``--model LABEL=DIR,DIR,...`` names one ``antray eval --out`` directory per seed (each
holds ``results.json``). Prints a Markdown table: per corruption, every seed's top-1 and the
seeds' mean for each model, and the difference of the first two models' means; then each
model's mean over the corruptions, and the **per-corruption best**: the mean over the
corruptions of the highest top-1 any single run of any model reached on each. No model
scores above that bound (each run's mean is at most the mean of per-corruption maxima), so
it says how far a target is from everything the listed runs do on any corruption. Reads
only the result files it is given; which split they measured is the caller's business.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def load_result(out_dir: Path) -> dict:
    """The ``results.json`` of one ``antray eval --out`` folder."""
    path = out_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json in {out_dir} (an `antray eval --out` folder)")
    return json.loads(path.read_text())


def load_top1(out_dir: Path) -> dict[str, float]:
    """Corruption -> top-1 (%) of one ``antray eval`` output (mean over its severities)."""
    rows = load_result(out_dir)["rows"]
    per: dict[str, list[float]] = {}
    for row in rows:
        per.setdefault(row["corruption"], []).append(100 * float(row["top1"]))
    return {name: statistics.fmean(values) for name, values in per.items()}


def parse_model(spec: str) -> tuple[str, list[Path]]:
    label, sep, dirs = spec.partition("=")
    if not sep or not label or not dirs:
        raise ValueError(f"--model takes LABEL=DIR[,DIR...], got {spec!r}")
    return label, [Path(d) for d in dirs.split(",") if d]


def table(models: list[tuple[str, list[dict[str, float]]]]) -> str:
    corruptions = list(models[0][1][0])
    for label, runs in models:
        for run in runs:
            if set(run) != set(corruptions):
                raise ValueError(f"{label}: a run measured other corruptions than the first")
    head = "| corruption | " + " | ".join(f"{label} (seeds) | {label} mean" for label, _ in models)
    if len(models) > 1:
        head += f" | {models[0][0]} - {models[1][0]}"
    lines = [head + " |", "|" + "---|" * (1 + 2 * len(models) + (len(models) > 1))]
    for name in corruptions:
        cells = [name]
        means = []
        for _, runs in models:
            values = [run[name] for run in runs]
            means.append(statistics.fmean(values))
            cells += [" / ".join(f"{v:.1f}" for v in values), f"{means[-1]:.1f}"]
        if len(models) > 1:
            cells.append(f"{means[0] - means[1]:+.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    means_row = ["**mean of the corruptions**"]
    model_means = []
    for _, runs in models:
        per_run = [statistics.fmean(run.values()) for run in runs]
        model_means.append(statistics.fmean(per_run))
        means_row += [" / ".join(f"{v:.2f}" for v in per_run), f"**{model_means[-1]:.2f}**"]
    if len(models) > 1:
        means_row.append(f"{model_means[0] - model_means[1]:+.2f}")
    lines.append("| " + " | ".join(means_row) + " |")
    every_run = [run for _, runs in models for run in runs]
    best = {name: max(run[name] for run in every_run) for name in corruptions}
    lines.append(
        f"\nPer-corruption best of all {len(every_run)} runs, averaged over the "
        f"{len(corruptions)} corruptions: **{statistics.fmean(best.values()):.2f} %**"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="LABEL=DIR[,DIR...]")
    args = parser.parse_args(argv)
    try:
        models = []
        for spec in args.model:
            label, dirs = parse_model(spec)
            models.append((label, [load_top1(d) for d in dirs]))
        print(table(models))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"per_corruption_seeds: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
