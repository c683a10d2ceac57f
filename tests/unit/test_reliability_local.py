"""Faults on the single-process backend: NaN loss, bad checkpoints, bad addresses,
unreachable MLflow. Each user fault is one line on stderr, exit 2. (Ctrl-C and --resume:
tests/integration/test_training_runs.py.)"""

import gzip
import hashlib
import time
from pathlib import Path

import pytest
import torch

from orchestrator.cli import main

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
