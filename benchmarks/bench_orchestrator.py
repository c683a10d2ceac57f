"""Ray orchestration overhead on this machine, in one run:

(a) Ray Train, 1 worker, ANT steps vs the same loop in a bare process (target >= 0.97),
    alternated bare, Ray, bare, Ray ... ``--repeats`` times at each of ``--threads-a``
    torch thread counts; the ratio of each neighbouring pair, median and [min, max];
(b) epoch time with a generator restart every epoch vs no restarts (target <= 1.10),
    plus the longest single step while a restart was running.

    ANTRAY_DATA_ROOT=../shared/data .venv/bin/python benchmarks/bench_orchestrator.py
    ANTRAY_DATA_ROOT=../shared/data .venv/bin/python benchmarks/bench_orchestrator.py --only-a

The load average before and after says whether the machine was quiet.

On a 2-core box (b) gives the Train worker and the restart actor one core each and
torch.set_num_threads(1) in both, so the ratio measures blocking, not two processes
sharing one core. Both runs of a pair use the same data, seed and step count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray Train's controller health-check interval stays at its 2 s default here: the 0.2 s the
# tests use for fast teardown costs CPU that the 2-core measurement cannot spare.

from orchestrator.config import ExperimentConfig, load_config  # noqa: E402
from orchestrator.train import train_from_config  # noqa: E402

BASE = [
    "data.limit_val=500",
    "data.val_suite=none",  # the config's per-epoch corruption suite is not the step loop
    "data.batch_size=128",
    "runtime.log_every_steps=1000",
    "ant.snapshot_every_steps=25",
]


def history(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "history.json")
    return json.load(open(path)) if os.path.exists(path) else []


def config(overrides: list[str]) -> ExperimentConfig:
    """The benchmark's ANT 1x1 config: BASE, then a measurement's overrides."""
    return load_config("configs/mnist_ant1x1.yaml", [*BASE, *overrides])


def run(overrides: list[str], backend: str, tmp: str, tag: str) -> dict:
    cfg = config(overrides)
    t0 = time.perf_counter()
    m = train_from_config(cfg, f"{tmp}/{tag}", backend=backend, track=False)
    m["wall_s"] = time.perf_counter() - t0
    print(
        f"{tag}: {json.dumps({k: m[k] for k in sorted(m) if not k.startswith('mlflow')})}",
        file=sys.stderr,
        flush=True,
    )
    return m


def overrides_a(train_images: int, threads: int) -> list[str]:
    """(a): one epoch of steps without restarts or validation, ``threads`` torch threads."""
    return [
        f"data.limit_train={train_images}",
        "optim.epochs=1",
        "ant.restart_iterations=0",
        "data.val_size=0",
        "optim.select_epoch=last",  # no validation split to choose an epoch on
        f"runtime.torch_threads={threads}",
        "runtime.cpus_per_worker=1",
        "runtime.generator_actor_cpus=1",
    ]


def overrides_b(train_images: int, epochs: int) -> list[str]:
    """(b): one core and one torch thread each for the Train worker and the restart actor
    (the restart iterations are added per run)."""
    return [
        f"data.limit_train={train_images}",
        f"optim.epochs={epochs}",
        "runtime.torch_threads=1",
        "runtime.cpus_per_worker=1",
        "runtime.generator_actor_cpus=1",
    ]


def _spread(values: list[float], digits: int) -> str:
    f = f".{digits}f"
    return f"{statistics.median(values):{f}} [{min(values):{f}}, {max(values):{f}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-images", type=int, default=12800)
    # ~0.16 s per generator iteration on one core (batch 128): 100 iterations finish
    # within one epoch of 12800 images, so each restart is adopted in the next epoch.
    parser.add_argument("--restart-iterations", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    # On 2 cores, 2 intra-op threads leave none for Ray's own daemons (raylet, GCS, dashboard,
    # Train controller), and every preemption stalls torch's parallel regions: measure both.
    parser.add_argument(
        "--threads-a", default="1,2", help="torch thread counts for (a), comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3, help="bare/Ray pairs per count")
    parser.add_argument("--only-a", action="store_true", help="skip (b)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        # (a) same steps, no restarts: Ray Train 1 worker vs a bare process, same threads.
        table_a = []
        for threads in [int(t) for t in args.threads_a.split(",")]:
            steps = overrides_a(args.train_images, threads)
            pairs = []
            for i in range(args.repeats):
                bare_rate = run(steps, "local", tmp, f"bare{threads}-{i}")["images_per_s"]
                ray_rate = run(steps, "ray", tmp, f"ray{threads}-{i}")["images_per_s"]
                pairs.append((bare_rate, ray_rate))
            table_a.append((threads, pairs))
        load_after_a = os.getloadavg()
        print(f"\nCommand: `{' '.join(sys.argv)}` ({args.train_images} MNIST images, batch 128)")
        print(
            f"Load average (1 min): before {load_before[0]:.2f}, after (a) {load_after_a[0]:.2f}"
            f" on {os.cpu_count()} cores\n"
        )
        print("| (a) torch threads | bare img/s, median [min, max] | Ray img/s | Ray / bare |")
        print("|---|---|---|---|")
        for threads, pairs in table_a:
            bare_rates = [b for b, _ in pairs]
            ray_rates = [r for _, r in pairs]
            ratios = [r / b for b, r in pairs]
            print(
                f"| {threads} | {_spread(bare_rates, 0)} | {_spread(ray_rates, 0)} "
                f"| {_spread(ratios, 3)} |"
            )
        if args.only_a:
            return
        # (b) Ray, one core each for the worker and the restart actor.
        split = overrides_b(args.train_images, args.epochs)
        none = run(split + ["ant.restart_iterations=0"], "ray", tmp, "norestart")
        restart = run(
            split + [f"ant.restart_iterations={args.restart_iterations}"], "ray", tmp, "restart"
        )
    # Every epoch starts with a restart request (the reference's schedule), so each epoch's
    # steps overlap a restart training on the actor; compare the last epochs' step loops.
    ratio_b = restart["epoch_time_s"] / none["epoch_time_s"]
    print(f"\nLoad average (1 min) after (b): {os.getloadavg()[0]:.2f}\n")
    print("| measurement | value | target |")
    print("|---|---|---|")
    print(f"| (b) last-epoch step time, no restarts | {none['epoch_time_s']:.1f} s | |")
    print(
        f"| (b) last-epoch step time, restart every epoch "
        f"({args.restart_iterations} it.) | {restart['epoch_time_s']:.1f} s | |"
    )
    print(f"| (b) ratio restart / none | {ratio_b:.3f} | <= 1.10 |")
    print(
        f"| (b) restarts adopted / steps run while one was training | "
        f"{restart['restarts_adopted']:.0f} / {restart['steps_while_restarting']:.0f} | |"
    )
    print(f"| (b) longest step, no restarts | {none['longest_step_s'] * 1000:.0f} ms | |")
    print(f"| (b) longest step, with restarts | {restart['longest_step_s'] * 1000:.0f} ms | |")
    print(f"| (b) longest restart poll | {restart['longest_restart_poll_s'] * 1000:.2f} ms | |")


if __name__ == "__main__":
    main()
