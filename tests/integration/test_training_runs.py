"""Whole trainings on real MNIST, in one process (no Ray), tens of seconds each: what the
short runs of tests/unit cannot show. A vanilla Madry CNN learns MNIST; the corruption
suite measured in the loop is what ``antray eval --generated --split val`` gives the
checkpoint; a weight average leaves training unchanged and is what eval serves; Ctrl-C
writes a checkpoint that ``--resume`` continues."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from evaluation.corruptions.suites import generated_suite
from orchestrator.cli import main
from orchestrator.suite_validation import MEAN_KEY, corruption_key
from trainers.checkpoint_format import load_state
from trainers.data import load_mnist, resolve_data_root
from trainers.device import Precision
from trainers.loop import LIVE_PREFIX
from trainers.models import create_model
from trainers.steps import vanilla_step
from trainers.validation import accuracy

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_vanilla_madry_cnn_learns_mnist(mnist_root):
    torch.manual_seed(0)
    root = resolve_data_root(str(mnist_root))
    train = load_mnist(root, train=True)
    test = load_mnist(root, train=False)
    loader = DataLoader(
        train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    precision = Precision.create("cpu")
    model = create_model("madry_cnn")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for i, (x, y) in enumerate(loader):
        losses.append(vanilla_step(model, opt, x, y, precision=precision)["loss"])
        if i == 299:
            break
    assert sum(losses[-30:]) / 30 < 0.5 * sum(losses[:30]) / 30
    sub = torch.utils.data.Subset(test, range(2000))
    acc = accuracy(model, DataLoader(sub, batch_size=500), precision)
    assert acc > 0.90, acc


# --- the validation suite and the weight average: GNT on 512 real digits for 2 epochs,
# with the suite of IMAGES validation digits on

IMAGES = 300
SUITE = ("data.val_suite=mnist-c", f"data.val_suite_images={IMAGES}")


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _train(run: Path, mnist_root: Path, tmp_path: Path, *suite: str) -> dict:
    common = sets(
        "data.limit_train=512",
        "data.limit_val=100",
        "data.batch_size=64",
        "optim.epochs=2",
        "runtime.torch_threads=1",
        "tracking.mlflow_uri=sqlite:///" + str(tmp_path / "ml.db"),
        *suite,
    )
    argv = ["train", "--backend", "local", "--config", str(REPO / "configs/mnist_gnt.yaml")]
    assert main([*argv, "--run-dir", str(run), "--data-root", str(mnist_root), *common]) == 0
    return json.loads((run / "metrics.json").read_text())


def eval_val_suite(run: Path, mnist_root: Path, out: Path) -> dict:
    """``antray eval --generated --split val`` of the run's checkpoint on the first IMAGES
    validation digits, as the loop measures them; the report (results.json)."""
    evaluate = ["eval", "--checkpoint", str(run), "--benchmark", "mnist-c"]
    evaluate += ["--generated", "--split", "val", "--limit", str(IMAGES), "--no-progress"]
    assert main([*evaluate, "--out", str(out), "--data-root", str(mnist_root)]) == 0
    return json.loads((out / "results.json").read_text())


def test_training_reports_the_suite_and_eval_of_the_checkpoint_agrees(mnist_root, tmp_path):
    on = ("data.val_suite=mnist-c", f"data.val_suite_images={IMAGES}")
    metrics = _train(tmp_path / "run", mnist_root, tmp_path, *on)
    suite = generated_suite("mnist-c")
    per = [metrics[corruption_key(c)] for c in suite.corruptions]
    assert len(per) == 15 and all(0.0 <= a <= 1.0 for a in per)
    assert metrics[MEAN_KEY] == pytest.approx(sum(per) / 15, abs=1e-12)
    # A trained-for-two-epochs model is far from chance on most corruptions.
    assert metrics[MEAN_KEY] > 0.3, metrics[MEAN_KEY]

    report = eval_val_suite(tmp_path / "run", mnist_root, tmp_path / "eval")
    assert report["mean_accuracy"] == pytest.approx(metrics[MEAN_KEY], abs=1e-12)

    # Measuring the suite does not change the training: the GNT noise of epoch 2 comes from
    # the same random stream with the suite off.
    off = _train(tmp_path / "off", mnist_root, tmp_path, "data.val_suite=none")
    assert MEAN_KEY not in off
    assert off["train_loss"] == metrics["train_loss"]


def test_in_loop_seed_and_batch_size_are_antray_evals_defaults():
    from orchestrator.cli import build_parser
    from orchestrator.suite_validation import EVAL_BATCH_SIZE, EVAL_SEED

    args = build_parser().parse_args(["eval", "--checkpoint", "x", "--benchmark", "mnist-c"])
    assert (args.seed, args.batch_size) == (EVAL_SEED, EVAL_BATCH_SIZE)
    assert IMAGES > EVAL_BATCH_SIZE  # the parity above spans two batches' corruption seeds


def test_training_is_unchanged_and_eval_serves_the_average(mnist_root, tmp_path):
    plain = _train(tmp_path / "plain", mnist_root, tmp_path, *SUITE, "optim.ema_decay=0")
    averaged = _train(tmp_path / "ema", mnist_root, tmp_path, *SUITE, "optim.ema_decay=0.9")
    # Same training (loss of every step of the last epoch), and the live weights measure
    # exactly what the run without the average measured.
    assert averaged["train_loss"] == plain["train_loss"]
    assert averaged[LIVE_PREFIX + MEAN_KEY] == plain[MEAN_KEY]
    assert LIVE_PREFIX + MEAN_KEY not in plain
    assert averaged[MEAN_KEY] != plain[MEAN_KEY]  # the average is other weights

    state = load_state(tmp_path / "ema" / "checkpoint")
    assert state["averaged_model"]["updates"] == averaged["step"] == 16
    report = eval_val_suite(tmp_path / "ema", mnist_root, tmp_path / "eval")
    assert report["mean_accuracy"] == pytest.approx(averaged[MEAN_KEY], abs=1e-12)
    assert report["metadata"]["checkpoint"]["weights"] == "averaged"
    # model.pt, the run's final classifier for other tools, is the average too.
    served = torch.load(tmp_path / "ema" / "model.pt", weights_only=False)["model"]
    for name, value in state["averaged_model"]["weights"].items():
        assert torch.equal(served[name], value), name


# --- Ctrl-C and --resume


def test_sigint_writes_checkpoint_and_resume_continues(mnist_root, tmp_path):
    # The same ANT run is interrupted, then resumed: one set of overrides for both.
    ant_sets = sets(
        "data.limit_val=200",
        "data.val_suite_images=32",
        "data.batch_size=64",
        "runtime.log_every_steps=5",
        "runtime.torch_threads=1",
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

    resume = ["train", "--backend", "local", "--config", str(REPO / "configs/mnist_ant1x1.yaml")]
    assert main([*resume, "--run-dir", str(run), "--resume", *ant_sets]) == 0
    history = json.loads((run / "history.json").read_text())
    resumed_first = history[1]
    assert resumed_first["epoch"] == 1 and "interrupted" not in resumed_first
    assert resumed_first["replay_size_at_start"] == len(replay_ids)  # same replay history
    final = load_state(run / "checkpoint")
    assert final["epoch"] == 1 and not final["interrupted"]
    # Optimizer state carried over: Adam's step count continues from the interrupt.
    final_steps = int(next(iter(final["optimizer"]["state"].values()))["step"])
    assert final_steps == saved["steps_done"] + 2 * (2048 // 64)
