"""Ctrl-C on the Ray backend (a subprocess with its own local Ray): the driver sets the
StopFlag actor, all ranks stop at the same step, rank 0 writes an interrupted checkpoint,
and `--resume` continues from it with the same replay history."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.storage import RunLocation, latest_checkpoint
from trainers.checkpoint_format import load_state

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SETS = [
    "data.limit_train=4096",
    "data.limit_val=200",
    "data.val_suite_images=32",
    "data.batch_size=128",  # global: 64 per worker
    "optim.epochs=2",
    "ant.restart_iterations=5",
    "ant.restart_every_steps=10",
    "ant.snapshot_every_steps=5",
    "runtime.num_workers=2",
    "runtime.cpus_per_worker=0.5",
    "runtime.generator_actor_cpus=0.5",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=5",
]


def command(run: Path, *extra: str) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "train",
        "--config",
        str(REPO / "configs/mnist_ant1x1.yaml"),
        "--run-dir",
        str(run),
        *extra,
    ]
    for s in SETS:
        argv += ["--set", s]
    return argv


def test_sigint_on_ray_backend_checkpoints_and_resumes(mnist_root, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "ANTRAY_DATA_ROOT": str(mnist_root)}
    proc = subprocess.Popen(
        command(run), cwd=REPO, env=env, stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "step 15/" in line:
            proc.send_signal(signal.SIGINT)
            break
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, "".join(lines) + out
    with latest_checkpoint(RunLocation.read(run)).as_directory() as directory:
        saved = load_state(Path(directory))
    assert saved["interrupted"] and saved["epoch"] == -1 and saved["steps_done"] >= 15
    snapshots = len(saved["service"]["replay"]["items"])

    done = subprocess.run(
        command(run, "--resume"), cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    history = __import__("json").loads((run / "metrics.json").read_text())
    assert history["epoch"] == 2
    assert snapshots >= 3
