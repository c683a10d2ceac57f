"""Ray orchestration overhead on this machine, in one run:

(a) Ray Train, 1 worker, ANT steps vs the same loop in a bare process (target >= 0.90);
(b) epoch time with a generator restart every epoch vs no restarts (target <= 1.10),
    plus the longest single step while a restart was running.

    ANTRAY_DATA_ROOT=../shared/data .venv/bin/python benchmarks/bench_orchestrator.py

On a 2-core box (b) gives the Train worker and the restart actor one core each and
torch.set_num_threads(1) in both, so the ratio measures blocking, not two processes
sharing one core. Both runs of a pair use the same data, seed and step count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray Train's controller health-check interval stays at its 2 s default here: the 0.2 s the
# tests use for fast teardown costs CPU that the 2-core measurement cannot spare.

from orchestrator.config import load_config  # noqa: E402
from orchestrator.train import train_from_config  # noqa: E402

BASE = [
    "data.limit_test=500",
    "data.batch_size=128",
    "runtime.log_every_steps=1000",
    "ant.snapshot_every_steps=25",
]


def history(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "history.json")
    return json.load(open(path)) if os.path.exists(path) else []


def run(overrides: list[str], backend: str, tmp: str, tag: str) -> dict:
    cfg = load_config("configs/mnist_ant1x1.yaml", [*BASE, *overrides])
    t0 = time.perf_counter()
    m = train_from_config(cfg, f"{tmp}/{tag}", backend=backend, track=False)
    m["wall_s"] = time.perf_counter() - t0
    print(
        f"{tag}: {json.dumps({k: m[k] for k in sorted(m) if not k.startswith('mlflow')})}",
        file=sys.stderr,
        flush=True,
    )
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-images", type=int, default=12800)
    # ~0.16 s per generator iteration on one core (batch 128): 100 iterations finish
    # within one epoch of 12800 images, so each restart is adopted in the next epoch.
    parser.add_argument("--restart-iterations", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    # On 2 cores, 2 intra-op threads leave none for Ray's own daemons (raylet, GCS, dashboard,
    # Train controller), and every preemption stalls torch's parallel regions: measure both.
    parser.add_argument("--threads-a", type=int, default=1, help="torch threads for (a)")
    parser.add_argument("--only-a", action="store_true", help="skip (b)")
    args = parser.parse_args()
    data = [f"data.limit_train={args.train_images}"]
    with tempfile.TemporaryDirectory() as tmp:
        # (a) same steps, no restarts: Ray Train 1 worker vs a bare process, same threads.
        steps = data + [
            "optim.epochs=1",
            "ant.restart_iterations=0",
            f"runtime.torch_threads={args.threads_a}",
            "runtime.cpus_per_worker=1",
            "runtime.generator_actor_cpus=1",
        ]
        bare = run(steps, "local", tmp, "bare")
        ray_one = run(steps, "ray", tmp, "ray1")
        if args.only_a:
            ratio = ray_one["images_per_s"] / bare["images_per_s"]
            print(
                f"\n(a) threads {args.threads_a}: bare {bare['images_per_s']:.0f} img/s, "
                f"Ray {ray_one['images_per_s']:.0f} img/s, ratio {ratio:.3f}"
            )
            return
        # (b) Ray, one core each for the worker and the restart actor.
        split = data + [
            f"optim.epochs={args.epochs}",
            "runtime.torch_threads=1",
            "runtime.cpus_per_worker=1",
            "runtime.generator_actor_cpus=1",
        ]
        none = run(split + ["ant.restart_iterations=0"], "ray", tmp, "norestart")
        restart = run(
            split + [f"ant.restart_iterations={args.restart_iterations}"], "ray", tmp, "restart"
        )
    ratio_a = ray_one["images_per_s"] / bare["images_per_s"]
    # Epochs after the first overlap a restart requested at the previous epoch's end;
    # compare those epochs' step-loop times (final epoch metrics are the last epoch's).
    ratio_b = restart["epoch_time_s"] / none["epoch_time_s"]
    print(f"\nCommand: `{' '.join(sys.argv)}` ({args.train_images} MNIST images, batch 128)\n")
    print("| measurement | value | target |")
    print("|---|---|---|")
    print(f"| (a) torch threads in both runs | {args.threads_a} | |")
    print(f"| (a) bare-process ANT throughput | {bare['images_per_s']:.0f} img/s | |")
    print(f"| (a) Ray Train 1-worker ANT throughput | {ray_one['images_per_s']:.0f} img/s | |")
    print(f"| (a) ratio Ray / bare | {ratio_a:.3f} | >= 0.90 |")
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
