"""Ray Tune over ANT's epsilon: each trial is a full orchestrated training."""

import json

import mlflow
import pandas as pd
import pytest

from orchestrator.config import load_config
from orchestrator.errors import UserError
from orchestrator.tune_runner import tune_from_config

pytestmark = pytest.mark.integration


def test_epsilon_grid_runs_two_orchestrated_trials(ray_local, mnist_root, tmp_path):
    cfg = load_config(
        "configs/mnist_ant1x1.yaml",
        [
            "data.limit_train=768",
            "data.limit_val=200",
            "data.val_suite_images=32",
            "data.batch_size=64",
            "optim.epochs=2",
            "ant.restart_iterations=5",
            "ant.restart_every_steps=6",
            "ant.snapshot_every_steps=4",
            "runtime.num_workers=1",
            "runtime.cpus_per_worker=0.5",
            "runtime.generator_actor_cpus=0.25",
            "runtime.torch_threads=1",
            "runtime.log_every_steps=1000",
        ],
    )
    summary = tune_from_config(
        cfg,
        tmp_path / "tune",
        space_name="ant_epsilon",
        grid=[3.0, 9.0],
        mode="max",
        scheduler="fifo",
        max_concurrent=2,
        data_root=str(mnist_root),
    )
    assert summary["trials"] == 2 and summary["errors"] == 0
    table = pd.read_csv(tmp_path / "tune" / "tune_results.csv")
    assert sorted(table["config/value"]) == [3.0, 9.0]
    # Ranked by the generated MNIST-C of the validation images (the config's data.val_suite)
    # of the epoch each trial serves (optim.select_epoch: best_val): its best epoch so far,
    # which its last report carries.
    assert summary["metric"] == "best_val_corruption_acc"
    assert (table["best_val_corruption_acc"] >= table["val_corruption_acc"]).all()
    best_row = table.loc[table["best_val_corruption_acc"].idxmax()]
    assert summary["best_value"] == best_row["config/value"]
    assert list(table["training_iteration"]) == [2, 2]  # fifo: no trial stopped early
    assert json.loads((tmp_path / "tune" / "best.json").read_text())["key"] == "ant.epsilon"
    # One MLflow child run per trial under the search's parent run.
    client = mlflow.MlflowClient(tracking_uri=summary["mlflow_uri"])
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{summary['mlflow_run_id']}'"
    )
    assert len(children) == 2


def test_space_must_match_the_noise_mode(tmp_path):
    cfg = load_config("configs/mnist_gnt.yaml")
    with pytest.raises(UserError, match="noise.mode=ant"):
        tune_from_config(cfg, tmp_path / "t", space_name="ant_epsilon")
