"""Faults on the single-process backend: Ctrl-C, NaN loss, bad checkpoints, bad
addresses, unreachable MLflow. Each user fault is one line on stderr, exit 2."""

import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from orchestrator.cli import main
from trainers.checkpoint_format import load_state

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.limit_train=1024",
    "data.limit_val=200",
    "data.val_suite_images=32",
    "data.batch_size=64",
    "runtime.log_every_steps=5",
    "runtime.torch_threads=1",
]


def sets(*overrides: str) -> list[str]:
    out: list[str] = []
    for o in overrides:
        out += ["--set", o]
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(run: Path, *extra: str, config: str = "configs/mnist_vanilla.yaml") -> int:
    argv = ["train", "--backend", "local", "--config", str(REPO / config), "--run-dir", str(run)]
    return main([*argv, *extra])


def test_sigint_writes_checkpoint_and_resume_continues(mnist_root, tmp_path):
    # The same ANT run is interrupted, then resumed: one set of overrides for both.
    ant_sets = sets(
        *TINY,
        "data.limit_train=2048",
        "optim.epochs=2",
        "ant.restart_iterations=5",
        "ant.restart_every_steps=10",
        "ant.snapshot_every_steps=5",
        "tracking.mlflow_uri=sqlite:///" + str(tmp_path / "ml.db"),
    )
    run = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "train",
        "--backend",
        "local",
        "--config",
        str(REPO / "configs/mnist_ant1x1.yaml"),
        "--run-dir",
        str(run),
        *ant_sets,
    ]
    env = {**os.environ, "ANTRAY_DATA_ROOT": str(mnist_root)}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # wait until it is well into epoch 1
        seen.append(line)
        if "step 20/" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "--resume" in rest.strip().splitlines()[-1]
    saved = load_state(run / "checkpoint")
    assert saved["interrupted"] and saved["epoch"] == -1 and saved["steps_done"] >= 20
    replay_ids = [i for i, _ in saved["service"]["replay"]["items"]]
    assert len(replay_ids) >= 4
    adam_steps = int(next(iter(saved["optimizer"]["state"].values()))["step"])
    assert adam_steps == saved["steps_done"]

    code = train(run, "--resume", *ant_sets, config="configs/mnist_ant1x1.yaml")
    assert code == 0
    history = __import__("json").loads((run / "history.json").read_text())
    resumed_first = history[1]
    assert resumed_first["epoch"] == 1 and "interrupted" not in resumed_first
    assert resumed_first["replay_size_at_start"] == len(replay_ids)  # same replay history
    final = load_state(run / "checkpoint")
    assert final["epoch"] == 1 and not final["interrupted"]
    # Optimizer state carried over: Adam's step count continues from the interrupt.
    final_steps = int(next(iter(final["optimizer"]["state"].values()))["step"])
    assert final_steps == saved["steps_done"] + 2 * (2048 // 64)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(mnist_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, *sets(*TINY, "optim.epochs=1", "optim.optimizer=sgd")) == 0
    good = digest(run / "checkpoint" / "state.pt")
    code = train(
        run, "--resume", *sets(*TINY, "optim.epochs=2", "optim.optimizer=sgd", "optim.lr=1e10")
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and "loss is nan" in err[-1] and "last good checkpoint" in err[-1]
    assert digest(run / "checkpoint" / "state.pt") == good


@pytest.mark.parametrize("kind", ["corrupt", "foreign"])
def test_bad_checkpoint_on_resume_exits_2_and_overwrites_nothing(tmp_path, capsys, kind):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.yaml").write_text("original: true\n")
    if kind == "corrupt":
        (run / "checkpoint" / "state.pt").write_bytes(b"\x80\x02garbage" * 10)
    else:
        torch.save({"model": {}}, run / "checkpoint" / "state.pt")
    code = train(run, "--resume")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "checkpoint" in err[0]
    assert (run / "config.yaml").read_text() == "original: true\n"


def test_truncated_data_file_exits_2(tmp_path, capsys, mnist_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    # Only the four .gz files: a raw folder that torchvision's own download filled also
    # holds their extracted copies, which are not gzip and which the loader reads second.
    for src in (mnist_root / "MNIST" / "raw").glob("*.gz"):
        data = src.read_bytes()
        if src.name.startswith("train-images"):
            data = gzip.compress(gzip.decompress(data)[:100_000])
        (raw / src.name).write_bytes(data)
    code = train(tmp_path / "run", "--data-root", str(tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "truncated" in err[0]


def test_unreachable_address_exits_2_fast(tmp_path, capsys):
    t0 = time.perf_counter()
    code = main(["train", "--address", "127.0.0.1:1", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot reach Ray at 127.0.0.1:1" in err[0]
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "run").exists(), "nothing is written before the cluster answers"


def test_unreachable_mlflow_falls_back_to_local_with_warning(mnist_root, tmp_path):
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="unreachable"):
        code = train(
            run, *sets(*TINY, "optim.max_steps=3", "tracking.mlflow_uri=http://127.0.0.1:1")
        )
    assert code == 0 and (run / "mlflow.db").exists()
