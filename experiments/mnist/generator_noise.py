"""What the noise generators of an ANT run do to validation digits, generator by generator.

    ANTRAY_DATA_ROOT=../shared/data python -m experiments.mnist.generator_noise RUN_DIR ...

For each run (a run directory or a checkpoint, as `antray eval --checkpoint` takes): the
replay history, oldest first, and the current generator of its last checkpoint, each at the
run's epsilon on the first ``--limit`` digits of the run's validation split (carved from the
training images), next to untrained (Gaussian) noise: the raw output's share below 0 and
its skew, the share of stroke pixels dimmed below 0.5, the share of background pixels lit
to 0.5 or more, and the served classifier's accuracy (evaluation/noise_anatomy.py). Then
the digits' own l2 norms: a generator that only dims strokes can take a digit no further
than its norm away.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from evaluation.corruption_loop import stack_images
from evaluation.model_loading import load_checkpoint_model
from evaluation.noise_anatomy import checkpoint_generators, generator_anatomy
from generators.networks import create_generator
from trainers.checkpoint_format import CheckpointError, load_state
from trainers.data import DataMissingError, load_split, resolve_data_root


def validation_digits(info: dict, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_split(
        str(info["dataset"]),
        resolve_data_root(None),
        "val",
        val_size=info["val_size"],
        split_seed=int(info["split_seed"] or 0),
        limit=limit,
    )
    return stack_images(data)


def report(path: str, limit: int, seed: int) -> str:
    classifier, info = load_checkpoint_model(path)
    state = load_state(Path(info["checkpoint"]))  # the file the classifier came from
    epsilon = float(info["epsilon"])
    x, y = validation_digits(info, limit)
    rows = checkpoint_generators(state)
    untrained = create_generator(str(info["generator"]), channels=x.shape[1])
    rows.append(("untrained (Gaussian)", untrained))
    lines = [
        f"{info['run_dir']} (epoch {int(info['epoch']) + 1}, {info['weights']} weights), "
        f"epsilon {epsilon:g}, {len(x)} validation digits",
        "",
        "| generator | raw < 0 | raw skew | strokes dimmed | background lit "
        "| classifier accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for label, generator in rows:
        a = generator_anatomy(generator, x, epsilon=epsilon, classifier=classifier, y=y, seed=seed)
        lines.append(
            f"| {label} | {a.negative_share:.3f} | {a.skew:+.2f} | {a.strokes_dimmed:.3f} "
            f"| {a.background_lit:.3f} | {a.accuracy:.3f} |"
        )
    norms = x.flatten(1).norm(dim=1)
    q = torch.quantile(norms, torch.tensor([0.1, 0.5, 0.9])).tolist()
    lines += [
        "",
        f"digit l2 norms: 10 / 50 / 90 % quantiles {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}; "
        f"{float((norms <= epsilon).float().mean()):.1%} of the digits at or below epsilon",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+", help="ANT run directories or checkpoints")
    p.add_argument("--limit", type=int, default=1000, help="validation digits (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]  # before this script's own work
    try:  # every run is read before anything is printed
        reports = [report(path, args.limit, args.seed) for path in args.runs]
    except (CheckpointError, DataMissingError, ValueError) as exc:
        # not a checkpoint, not an ANT run, or its dataset missing: one line, exit 2
        print(f"generator_noise: {exc}".splitlines()[0], file=sys.stderr)
        raise SystemExit(2) from None
    print(f"load average (1 min) {load:.2f}\n")
    for text in reports:
        print(text, end="\n\n")


if __name__ == "__main__":
    main()
