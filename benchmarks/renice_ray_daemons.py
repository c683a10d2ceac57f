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
RAY_CODE = "site-packages/ray/"


def is_ray_daemon(argv: list[str]) -> bool:
    """A Ray daemon or actor by its arguments: Ray's own binaries and scripts (GCS server,
    dashboard, agents, monitors) and process titles ``ray::<actor>`` and
    ``ray-dashboard-<module>``; never the raylet, a pooled ``ray::IDLE`` worker, a Train
    worker or an unassigned ``default_worker.py`` process. (A pooled worker reniced while it
    ran a task keeps the niceness when it returns to the pool: no task runs in the
    benchmarks this wraps.)"""
    if not argv:
        return False
    title = argv[0]
    if title.startswith(("ray::", "ray-dashboard-")):
        return not title.startswith((TRAIN_WORKER, IDLE_WORKER))
    # The binary itself, or the first script the interpreter runs (flags like -u skipped).
    program = next((a for a in argv[1:] if not a.startswith("-")), "")
    code = title if RAY_CODE in title else program if RAY_CODE in program else ""
    return bool(code) and not (code.endswith("/raylet") or code.endswith("default_worker.py"))


def processes() -> dict[int, list[str]]:
    """This user's processes: pid -> arguments."""
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
        # A process that set its title (Ray's workers) may pad it with spaces, not NULs.
        args = raw.decode(errors="replace").split("\0")
        out[int(entry)] = [a.strip() for a in args if a.strip()]
    return out


def renice_daemons(nice: int, done: dict[int, str]) -> None:
    """Give every Ray daemon not yet seen niceness ``nice`` (no change if already higher)."""
    for pid, argv in processes().items():
        if pid in done or pid == os.getpid() or not is_ray_daemon(argv):
            continue
        line = " ".join(argv)
        try:
            before = os.getpriority(os.PRIO_PROCESS, pid)
            if before < nice:
                os.setpriority(os.PRIO_PROCESS, pid, nice)
                print(f"[renice] {pid} {before} -> {nice}: {line[:100]}", file=sys.stderr)
            done[pid] = line
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
