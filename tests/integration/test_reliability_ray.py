"""Worker and actor loss on a local Ray (num_cpus=2): the run recovers and finishes."""

import os
import signal
import threading
import time

import pytest

from orchestrator.config import load_config
from orchestrator.storage import RunLocation, latest_checkpoint
from orchestrator.train import train_from_config

pytestmark = pytest.mark.integration

BASE = [
    "data.limit_train=3072",
    "data.limit_val=500",
    "data.val_suite_images=32",
    "data.batch_size=128",  # global: 64 per worker
    "runtime.num_workers=2",
    "runtime.cpus_per_worker=0.5",
    "runtime.generator_actor_cpus=0.5",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=1000",
    "runtime.max_failures=2",
]


def alive_pids(class_name: str) -> list[int]:
    import ray
    from ray.util.state import list_actors

    here = ray.get_runtime_context().gcs_address  # never another Ray on the machine
    actors = list_actors(
        address=here, filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")]
    )
    return [a.pid for a in actors if a.pid]


def checkpointed(run) -> bool:
    """A checkpoint is registered, read through Ray's Result wherever storage is."""
    return latest_checkpoint(RunLocation.read(run)) is not None


def run_in_thread(cfg, run, mnist_root):
    box: dict = {}

    def target():
        try:
            box["metrics"] = train_from_config(
                cfg, run, backend="ray", data_root=str(mnist_root), track=False
            )
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_worker_sigkill_resumes_from_checkpoint_and_matches_undisturbed(
    ray_local, mnist_root, tmp_path
):
    overrides = [*BASE, "optim.epochs=3"]
    cfg = load_config("configs/mnist_gnt.yaml", overrides)
    calm = train_from_config(
        cfg, tmp_path / "calm", backend="ray", data_root=str(mnist_root), track=False
    )

    run = tmp_path / "killed"
    thread, box = run_in_thread(cfg, run, mnist_root)
    wait_for(lambda: checkpointed(run), 600, "the first checkpoint")
    pids = alive_pids("RayTrainWorker")
    assert pids, "Train workers are visible through the state API"
    os.kill(pids[-1], signal.SIGKILL)  # mid-training, after epoch 1's checkpoint
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    killed = box["metrics"]
    assert killed["epoch"] == 3
    assert pids[-1] not in alive_pids("RayTrainWorker"), "the worker group was rebuilt"
    assert abs(killed["val_clean_acc"] - calm["val_clean_acc"]) < 0.03
    assert abs(killed["val_gaussian_acc"] - calm["val_gaussian_acc"]) < 0.05


def test_generator_and_store_actor_loss_never_stops_training(ray_local, mnist_root, tmp_path):
    cfg = load_config(
        "configs/mnist_ant1x1.yaml",
        [
            *BASE,
            "optim.epochs=3",
            "ant.epsilon=6.0",
            "ant.restart_iterations=10",
            "ant.restart_every_steps=5",
            "ant.snapshot_every_steps=4",
            "ant.replay_refresh_every_steps=2",
            "ant.replay_capacity=50",
        ],
    )
    run = tmp_path / "run"
    thread, box = run_in_thread(cfg, run, mnist_root)
    wait_for(lambda: checkpointed(run), 600, "the first checkpoint")
    store_pids = alive_pids("ReplayStoreActor")
    trainer_pids = alive_pids("GeneratorTrainer")
    assert store_pids and trainer_pids
    for pid in store_pids + trainer_pids:
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    m = box["metrics"]
    assert m["epoch"] == 3
    # The store was refilled from the last checkpoint and kept growing after the loss:
    # 24 steps per epoch per worker, a snapshot every 4 steps = 18 snapshots in all.
    assert m["store_recoveries"] >= 1
    assert m["replay_size"] == 18
    # The restarted GeneratorTrainer kept serving: epoch 3 (after the kill) adopted restarts.
    assert m["restarts_adopted_epoch"] >= 1
