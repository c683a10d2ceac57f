"""Who uses the CPU while one Ray Train worker trains: per process, over a window mid-run.

    ANTRAY_DATA_ROOT=../shared/data python -m experiments.mnist.ray_background_cpu

Starts an ANT 1x1 run on the Ray backend (one worker, ``--threads`` torch threads, restarts
off: the figures are what Ray and antray cost beside a training step) in a child process,
waits until the Train worker has trained for ``--settle`` seconds, then reads every
process's CPU time from ``/proc/<pid>/stat`` twice, ``--window`` seconds apart, and prints
each process's share of one core (100 % = one core busy for the whole window), then the
same per thread of the Train worker, grouped by thread name (torch's intra-op threads carry
the name of the thread that started them; Ray's own threads in the worker, its gRPC and IO
loops, carry theirs). Linux only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds() -> dict[int, tuple[float, str]]:
    """Every readable process: (user + system CPU seconds, its command line, shortened)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # exited meanwhile
        seconds, name = _cpu_and_name(stat)
        out[int(entry)] = (seconds, _label(cmd) or name)
    return out


def _cpu_and_name(stat: str) -> tuple[float, str]:
    """User + system CPU seconds and the name from a ``/proc/.../stat`` line (the name sits
    in parentheses and may itself hold spaces or parentheses, hence the outermost pair)."""
    fields = stat[stat.rfind(")") + 2 :].split()
    name = stat[stat.find("(") + 1 : stat.rfind(")")]
    return (int(fields[11]) + int(fields[12])) / TICKS, name


def thread_cpu_seconds(pid: int) -> dict[int, tuple[float, str]]:
    """Each thread of ``pid``: (user + system CPU seconds, the thread's name)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        out[int(tid)] = _cpu_and_name(stat)
    return out


def _shares(
    before: dict[int, tuple[float, str]], after: dict[int, tuple[float, str]], window: float
) -> list[tuple[float, str]]:
    """(% of one core, name) of each thread in both readings (new or exited ones are left out)."""
    return [
        ((after[tid][0] - before[tid][0]) / window * 100, after[tid][1])
        for tid in after.keys() & before.keys()
    ]


def by_name(
    before: dict[int, tuple[float, str]], after: dict[int, tuple[float, str]], window: float
) -> list[tuple[float, int, str]]:
    """(% of one core, thread count, name) per thread name over the window, largest first."""
    groups: dict[str, list[float]] = {}
    for share, name in _shares(before, after, window):
        groups.setdefault(name, []).append(share)
    return sorted(((sum(v), len(v), name) for name, v in groups.items()), reverse=True)


def per_thread(
    before: dict[int, tuple[float, str]],
    after: dict[int, tuple[float, str]],
    window: float,
    name: str,
) -> list[float]:
    """Each thread called ``name``: % of one core over the window, largest first."""
    return sorted((share for share, n in _shares(before, after, window) if n == name), reverse=True)


def _label(cmd: str) -> str:
    """``ray::Actor`` names as they are; a path's last part for Ray's own executables."""
    if not cmd:
        return ""
    first = cmd.split()[0]
    if first.startswith("ray::") or first.startswith("ray-dashboard"):
        return first
    for word in cmd.split()[:3]:
        if word.endswith(".py") or "/ray/" in word:
            return os.path.basename(word)
    return cmd[:60]


def train(threads: int, images: int) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from orchestrator.config import load_config
    from orchestrator.train import train_from_config

    cfg = load_config(
        "configs/mnist_ant1x1.yaml",
        [
            "optim.epochs=1",
            f"data.limit_train={images}",
            "data.limit_val=500",
            "ant.restart_iterations=0",
            "ant.snapshot_every_steps=25",
            "runtime.log_every_steps=1000",
            f"runtime.torch_threads={threads}",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        train_from_config(cfg, f"{tmp}/run", backend="ray", track=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=25600, help="long enough for the window")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args(argv)
    child = multiprocessing.get_context("spawn").Process(
        target=train, args=(args.threads, args.images)
    )
    child.start()
    deadline = time.monotonic() + 300
    while not any(label == "ray::RayTrainWorker" for _, label in cpu_seconds().values()):
        if not child.is_alive() or time.monotonic() > deadline:
            child.terminate()
            sys.exit("the Train worker never started")
        time.sleep(0.5)
    time.sleep(args.settle)
    before = cpu_seconds()
    workers = [pid for pid, (_, label) in before.items() if label == "ray::RayTrainWorker"]
    threads_before = {pid: thread_cpu_seconds(pid) for pid in workers}
    load_before = os.getloadavg()[0]
    time.sleep(args.window)
    after = cpu_seconds()
    threads_after = {pid: thread_cpu_seconds(pid) for pid in workers}
    child.join()
    rows = sorted(
        (
            ((after[pid][0] - before[pid][0]) / args.window * 100, pid, after[pid][1])
            for pid in after.keys() & before.keys()
        ),
        reverse=True,
    )
    rows = [r for r in rows if r[0] >= 0.1]
    print(f"Command: `{' '.join(sys.argv)}`  ")
    print(
        f"{os.cpu_count()} cores, {args.threads} torch threads; window {args.window:.0f} s, "
        f"{args.settle:.0f} s after the Train worker started; load average {load_before:.2f}\n"
    )
    print("| process | CPU, % of one core |")
    print("|---|---|")
    for share, pid, label in rows:
        print(f"| {label} (pid {pid}) | {share:.1f} |")
    worker = sum(s for s, _, label in rows if label == "ray::RayTrainWorker")
    print(
        f"\nTrain worker {worker:.1f} %, everything else {sum(r[0] for r in rows) - worker:.1f} %"
    )
    for pid in workers:
        print(f"\nThe Train worker's threads (pid {pid}), grouped by name:\n")
        print("| thread name | threads | CPU, % of one core (each thread) |")
        print("|---|---|---|")
        for share, count, name in by_name(threads_before[pid], threads_after[pid], args.window):
            if share >= 0.05:
                each = per_thread(threads_before[pid], threads_after[pid], args.window, name)
                split = " + ".join(f"{v:.2f}" for v in each)
                print(f"| {name} | {count} | {share:.2f} ({split}) |")
    if child.exitcode:
        sys.exit(f"the training run failed (exit {child.exitcode})")


if __name__ == "__main__":
    main()
