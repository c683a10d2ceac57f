"""Ray Train + generator actors + replay store + MLflow on a local Ray (num_cpus=2)."""

import mlflow
import pytest
import torch

from orchestrator.config import load_config
from orchestrator.train import train_from_config

pytestmark = pytest.mark.integration

TINY_ANT = [
    "data.dataset=mnist",
    "data.limit_train=2560",
    "data.limit_val=256",
    "data.val_suite_images=32",
    "data.batch_size=128",  # global: 64 per worker
    "optim.epochs=1",
    "ant.epsilon=6.0",
    "ant.restart_iterations=10",
    "ant.restart_every_steps=4",
    "ant.snapshot_every_steps=5",
    "ant.replay_capacity=5",
    "runtime.num_workers=2",
    "runtime.cpus_per_worker=0.5",
    "runtime.generator_actor_cpus=0.5",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=100",
    # early stopping on validation rides through Ray's checkpoints and a resume
    "optim.select_epoch=best_val",
]


def test_two_workers_ant_replay_restarts_resume_and_mlflow(ray_local, mnist_root, tmp_path):
    run = tmp_path / "run"
    cfg = load_config("configs/mnist_ant1x1.yaml", TINY_ANT)
    first = train_from_config(cfg, run, backend="ray", data_root=str(mnist_root))

    # 2560 images / global batch 128 (64 per worker) = 20 steps: snapshots at 5, 10, 15, 20.
    assert first["epoch"] == 1 and first["step"] == 20
    assert first["replay_size"] == 4, "the store grows by one snapshot per interval"
    assert first["restarts_adopted"] >= 1, "a restarted generator was adopted"
    # No step waited for a restart: steps kept running while one was in flight, and
    # checking for a finished generator is a non-blocking ray.wait.
    assert first["steps_while_restarting"] >= 1
    assert first["longest_restart_poll_s"] < 0.1
    assert (run / "model.pt").exists() and (run / "metrics.json").exists()
    assert first["best_epoch"] == 1
    first_model = torch.load(run / "model.pt", weights_only=False)["model"]

    client = mlflow.MlflowClient(tracking_uri=first["mlflow_uri"])
    logged = client.get_run(first["mlflow_run_id"])
    assert logged.data.params["ant.epsilon"] == "6.0"
    assert logged.data.params["runtime.num_workers"] == "2"
    assert "val_clean_acc" in logged.data.metrics and "replay_size" in logged.data.metrics
    assert logged.info.status == "FINISHED"

    # Resume the same run for a second epoch: it starts at epoch 2 with the saved replay.
    cfg2 = load_config("configs/mnist_ant1x1.yaml", [*TINY_ANT, "optim.epochs=2"])
    second = train_from_config(cfg2, run, backend="ray", data_root=str(mnist_root), resume=True)
    assert second["epoch"] == 2 and second["step"] == 40
    assert second["replay_size_at_start"] == first["replay_size"]
    assert second["replay_size"] == 5, "capacity bounds the store"
    assert second["mlflow_run_id"] == first["mlflow_run_id"], "one MLflow run per training"
    history = client.get_metric_history(first["mlflow_run_id"], "train_loss")
    assert sorted(m.step for m in history) == [1, 2]

    # model.pt serves the better validation epoch of the two (the first one's weights when
    # epoch 1 scored at least as well), which the resumed run compared across the resume.
    first_scores = first["best_val_corruption_acc"]
    assert second["best_val_corruption_acc"] == max(first_scores, second["val_corruption_acc"])
    served = torch.load(run / "model.pt", weights_only=False)["model"]
    if second["best_epoch"] == 1:
        assert second["val_corruption_acc"] <= first_scores
        assert all(torch.equal(served[k], v) for k, v in first_model.items())
    else:
        assert second["best_epoch"] == 2 and second["val_corruption_acc"] > first_scores
