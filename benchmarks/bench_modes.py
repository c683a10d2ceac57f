"""Step cost of each training mode, single process, measured so one noisy run cannot mislead.

    ANTRAY_DATA_ROOT=../shared/data .venv/bin/python benchmarks/bench_modes.py \\
        --modes gnt,ant1x1,ant1x1-fused --repeats 5

The modes are run in alternation (gnt, ant1x1, ant1x1-fused, gnt, ...) ``--repeats`` times,
each run a fresh process-local training (`--backend local`) on the same ``--train-images``
MNIST images with the same seed. ``ant1x1-fused`` (and ``ant3x3-fused``) is the ANT config
with ``ant.step=fused``, one forward and backward of the classifier per step
(docs/METHOD.md). "images/s" counts classifier training images over the step loop
(alternating ANT includes its generator step). Restarts are off
(``ant.restart_iterations=0``): the blocking from-scratch restart of the local backend is
not a per-step cost, and the Ray backend runs it on an actor. The weight average is off
(``optim.ema_decay=0``): only the ANT 1x1 config turns it on, and it is no part of a mode's
step. With ``--block-steps K`` each mode's run is set up once instead, and every round times K
steps of each mode's step function in turn: blocks of a few seconds, neighbours in time, so
that on a machine shared with other work a slow spell meets the modes alike (the loop
around the step is not timed then). Every mode's rate and its ratio to the first mode are
reported as median and
[min, max] over the rounds; the load average before and after says whether the machine was
quiet (a load above the core count means other work shared the cores).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from orchestrator.config import load_config
from orchestrator.local_runner import inline_service
from orchestrator.train import train_from_config
from trainers.run import Run, setup_run
from trainers.worker_env import LocalEnv

# mode -> (the MNIST config it trains, its own overrides)
MODES: dict[str, tuple[str, list[str]]] = {
    "vanilla": ("mnist_vanilla", []),
    "gnt": ("mnist_gnt", []),
    "speckle": ("mnist_speckle", []),
    "ant1x1": ("mnist_ant1x1", []),  # ant.step: alternating, the reference
    "ant1x1-fused": ("mnist_ant1x1", ["ant.step=fused"]),
    "ant3x3": ("mnist_ant3x3", []),
    "ant3x3-fused": ("mnist_ant3x3", ["ant.step=fused"]),
}


def run_once(mode: str, overrides: list[str]) -> float:
    config, own = MODES[mode]
    cfg = load_config(f"configs/{config}.yaml", [*overrides, *own])
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_from_config(cfg, f"{tmp}/run", backend="local", track=False)
    return float(metrics["images_per_s"])


class StepBlocks:
    """One mode's run, set up once as a local training sets it up (restarts off), whose step
    function is timed ``steps`` batches at a time; the batches are read before the clock
    starts, and the loop around the step (bookkeeping, validation) is not timed."""

    def __init__(self, mode: str, overrides: list[str], run_dir: str) -> None:
        config, own = MODES[mode]
        cfg = load_config(f"configs/{config}.yaml", [*overrides, *own])
        self.run: Run = setup_run(cfg, LocalEnv(Path(run_dir)), make_service=inline_service)
        self.run.batches.order.set_epoch(0)
        if self.run.life is not None:  # the epoch start: ANT's first replay snapshot
            self.run.life.before_step(0, epoch_start=True)
        self.batches = itertools.cycle(list(self.run.batches.loader))

    def rate(self, steps: int) -> float:
        block = [next(self.batches) for _ in range(steps)]
        start = time.perf_counter()
        for x, y in block:
            self.run.train_step(x, y)
        return sum(len(y) for _, y in block) / (time.perf_counter() - start)

    def close(self) -> None:
        if self.run.life is not None:
            self.run.life.close()


def median_and_range(values: list[float], digits: int = 3) -> str:
    f = f".{digits}f"
    return f"{statistics.median(values):{f}} [{min(values):{f}}, {max(values):{f}}]"


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", default="gnt,ant1x1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=12800)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--block-steps",
        type=int,
        default=0,
        help="0: each round trains every mode one epoch in a fresh run; K > 0: each mode's "
        "run is set up once and every round times K steps of each mode's step function in "
        "turn (short neighbouring blocks: a slow spell of a shared machine meets them alike)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {unknown}; choose from {list(MODES)}")
    overrides = [
        "optim.epochs=1",
        f"data.limit_train={args.train_images}",
        "data.val_size=0",  # no validation: only the step loop matters here
        "optim.select_epoch=last",  # no validation split to choose an epoch on
        "data.val_suite=none",  # the MNIST configs measure the suite on validation
        "ant.restart_iterations=0",
        "optim.ema_decay=0",  # a choice of one config (ANT 1x1), not of a mode
        "runtime.log_every_steps=1000000",
        *([f"runtime.torch_threads={args.threads}"] if args.threads else []),
        *args.overrides,
    ]
    load_before = os.getloadavg()
    if args.block_steps > 0:
        rates = step_blocks(modes, overrides, args.repeats, args.block_steps)
        what = f"blocks of {args.block_steps} steps of each mode's step function, alternated"
    else:
        rates = whole_runs(modes, overrides, args.repeats)
        what = "one epoch per mode in a fresh local run, alternated"
    load_after = os.getloadavg()
    base = modes[0]
    threads = args.threads or torch.get_num_threads()
    print(f"\nCommand: `{' '.join(sys.argv)}`  ")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{threads} torch threads, torch {torch.__version__}, CPU; {args.train_images} "
        f"MNIST images, batch 128; {what}, {args.repeats} rounds; load average (1 min) "
        f"before {load_before[0]:.2f}, after {load_after[0]:.2f}\n"
    )
    print(f"| mode | images/s, median [min, max] | step cost / {base}, median [min, max] |")
    print("|---|---|---|")
    for mode in modes:
        # Step cost ratio = base rate / mode rate, per round (the runs of one round are
        # neighbours in time, so a slow spell affects both).
        ratios = [b / r for b, r in zip(rates[base], rates[mode], strict=True)]
        print(f"| {mode} | {median_and_range(rates[mode], 0)} | {median_and_range(ratios)} |")
    # Before: other work (anything above half the cores); after: this run's own threads
    # count too, so only a load above the core count says someone else shared them.
    cores = os.cpu_count() or 1
    if load_before[0] > cores / 2 or load_after[0] > cores + 0.5:
        print("\nWARNING: the machine was busy (see the load averages): rerun when quiet.")
    return rates


def whole_runs(modes: list[str], overrides: list[str], repeats: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for round_ in range(repeats):
        for mode in modes:
            rates[mode].append(run_once(mode, overrides))
            print(f"round {round_ + 1} {mode}: {rates[mode][-1]:.0f} img/s", file=sys.stderr)
    return rates


def step_blocks(
    modes: list[str], overrides: list[str], repeats: int, steps: int
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {m: StepBlocks(m, overrides, f"{tmp}/{m}") for m in modes}
        try:
            for blocks in runs.values():
                blocks.rate(2)  # warm-up: first allocations, the fused optimisers' state
            for round_ in range(repeats):
                for mode, blocks in runs.items():
                    rates[mode].append(blocks.rate(steps))
                    print(
                        f"round {round_ + 1} {mode}: {rates[mode][-1]:.0f} img/s", file=sys.stderr
                    )
        finally:
            for blocks in runs.values():
                blocks.close()
    return rates


if __name__ == "__main__":
    main()
