"""Run a command while Ray's own daemons run at a lower scheduling priority (an experiment).

    .venv/bin/python benchmarks/renice_ray_daemons.py --nice 10 -- \\
        .venv/bin/python benchmarks/bench_orchestrator.py --only-a --threads-a 2 --repeats 3

Every ``--every`` seconds while the command runs, this user's Ray daemons (GCS server,
dashboard and its modules, agents, log and autoscaler monitors) get niceness ``--nice``.
The Train workers keep theirs, and so does the raylet, because it forks the worker
processes and a child inherits its parent's niceness (an unprivileged process cannot lower
it back), and so do worker processes not yet given an actor (one may become the Train
worker). Actors (Train's controller, antray's replay store and generator actors) are
reniced.
Prints each process it reniced, then exits with the command's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading

TRAIN_WORKER = "ray::RayTrainWorker"  # a Train worker's process title
IDLE_WORKER = "ray::IDLE"  # a pooled worker process with no task or actor yet


def is_ray_daemon(cmdline: str) -> bool:
    """A Ray process (its code under ``site-packages/ray/``, or a Ray process title) other
    than the raylet, an unassigned worker process and a Train worker. Actors that Ray Train
    and antray start (the Train controller, the replay store...) count as daemons here."""
    if not ("/ray/" in cmdline or cmdline.startswith(("ray::", "ray-"))):
        return False
    executable = cmdline.split(" ", 1)[0]
    return not (
        executable.endswith("/raylet")
        or "default_worker.py" in cmdline
        or cmdline.startswith((TRAIN_WORKER, IDLE_WORKER))
    )


def processes() -> dict[int, str]:
    """This user's processes: pid -> command line (arguments joined by spaces)."""
    out = {}
    uid = os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        out[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return out


def renice_daemons(nice: int, done: dict[int, str]) -> None:
    for pid, cmdline in processes().items():
        if pid in done or pid == os.getpid() or not is_ray_daemon(cmdline):
            continue
        try:
            if os.getpriority(os.PRIO_PROCESS, pid) < nice:
                os.setpriority(os.PRIO_PROCESS, pid, nice)
            done[pid] = cmdline
            print(f"[renice] {pid} -> {nice}: {cmdline[:100]}", file=sys.stderr, flush=True)
        except OSError:
            pass  # gone, or not ours to change


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--every", type=float, default=2.0, help="seconds between scans")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to run after --")
    stop, done = threading.Event(), {}

    def scan() -> None:
        while not stop.wait(args.every):
            renice_daemons(args.nice, done)

    scanner = threading.Thread(target=scan, daemon=True)
    scanner.start()
    try:
        return subprocess.call(command)
    finally:
        stop.set()
        scanner.join()


if __name__ == "__main__":
    sys.exit(main())
