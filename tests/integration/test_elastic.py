"""Elastic data-parallel groups (``runtime.num_workers: [min, max]``) on a simulated
cluster whose GPU nodes come and go as spot nodes do: a node lost with no replacement
and the run goes on with fewer workers; a node joins again and the group grows back.
The global batch, the updates per epoch and the data order stay the same throughout,
and a mid-epoch checkpoint resumes at its step on the Ray backend.

A ``ray.cluster_utils.Cluster`` (no autoscaler): the test decides when nodes leave and
join. Fake GPUs: Ray schedules on them, the workers compute on the CPU (gloo)."""

import json
import re
import threading
import time

import pytest
import ray

from orchestrator.config import load_config
from orchestrator.train import train_from_config

pytestmark = pytest.mark.integration
EPOCHS = 20
STEPS_PER_EPOCH = 24  # 1536 images, a global batch of 64

ELASTIC_RUN = [
    "data.limit_train=1536",
    "data.limit_val=128",
    "data.val_suite_images=32",
    "data.batch_size=64",
    f"optim.epochs={EPOCHS}",
    "runtime.num_workers=[1, 2]",
    "runtime.elastic_resize_interval_s=1",
    "runtime.checkpoint_every_steps=3",
    "runtime.cpus_per_worker=0.5",
    "runtime.gpus_per_worker=1",
    "runtime.dist_backend=gloo",
    "runtime.device=cpu",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=1000",
]


def alive_train_workers() -> list:
    from ray.util.state import list_actors

    here = ray.get_runtime_context().gcs_address  # never another Ray on the machine
    found = list_actors(address=here, filters=[("class_name", "=", "RayTrainWorker")], limit=1000)
    return [a for a in found if a.state == "ALIVE"]


def wait_for(condition, what: str, thread: threading.Thread, box: dict, timeout: float = 240):
    deadline = time.time() + timeout
    while not condition():
        assert thread.is_alive(), f"the run ended before {what}: {box.get('error')}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def epoch_history(run) -> dict[str, list[float]]:
    """Per-epoch ``workers`` and ``step`` as the run logged them to MLflow so far."""
    import mlflow

    path = run / "mlflow_run.json"
    if not path.exists():
        return {"workers": [], "step": []}
    record = json.loads(path.read_text())
    client = mlflow.tracking.MlflowClient(record["uri"])
    return {
        key: [
            p.value
            for p in sorted(client.get_metric_history(record["run_id"], key), key=lambda p: p.step)
        ]
        for key in ("workers", "step")
    }


def latest_is_mid_epoch(run) -> bool:
    """The run's latest checkpoint was taken inside an epoch (checkpoint_every_steps)."""
    from pathlib import Path

    from orchestrator.storage import RunLocation, latest_checkpoint
    from trainers.checkpoint_format import load_state

    if not (run / "storage.json").exists():
        return False
    checkpoint = latest_checkpoint(RunLocation.read(run))
    if checkpoint is None:
        return False
    try:
        with checkpoint.as_directory() as directory:
            return bool(load_state(Path(directory)).get("mid_epoch"))
    except Exception:  # being replaced by the next one: ask again
        return False


def test_group_shrinks_on_node_loss_grows_back_and_keeps_every_update(
    cluster, gpu_node, mnist_root, tmp_path, monkeypatch, capfd
):
    # A group restarted on a just-lost node's stale resources gives up after 10 s, not
    # Train's 60, and re-decides its size (Train's resource view refreshes every 20 s).
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "10")
    cfg = load_config(
        "configs/mnist_gnt.yaml", [*ELASTIC_RUN, f"runtime.storage={tmp_path / 'shared'}"]
    )
    run = tmp_path / "run"
    box: dict = {}

    def target():
        try:
            box["metrics"] = train_from_config(
                cfg, run, data_root=str(mnist_root), address=cluster.address
            )
        except BaseException as exc:  # surfaced below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_for(lambda: len(epoch_history(run)["workers"]) >= 1, "a first epoch", thread, box)
    assert epoch_history(run)["workers"][0] == 2.0, "both GPU nodes in use at first"
    wait_for(lambda: latest_is_mid_epoch(run), "a mid-epoch checkpoint", thread, box)
    doomed = alive_train_workers()[-1].node_id
    cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == doomed))
    wait_for(
        lambda: 1.0 in epoch_history(run)["workers"],
        "an epoch with the one worker left",
        thread,
        box,
    )
    cluster.add_node(**gpu_node)  # a spot node joins again
    thread.join(timeout=400)
    assert not thread.is_alive(), "the run did not finish"
    assert "error" not in box, box.get("error")
    m = box["metrics"]
    # Every update of every epoch ran exactly once, across the group's three sizes
    # (mid-epoch checkpoints every 3 steps: the restarts resumed where they stopped).
    assert m["epoch"] == EPOCHS and m["step"] == EPOCHS * STEPS_PER_EPOCH
    history = epoch_history(run)
    assert history["workers"][-1] == 2.0, f"the group grew back: {history['workers']}"
    assert history["step"][-1] == EPOCHS * STEPS_PER_EPOCH, history
    # The restart after the loss resumed inside an epoch, at a mid-epoch checkpoint's step.
    out = capfd.readouterr()
    assert re.search(r"resumed at epoch \d+ batch \d+", out.out + out.err), "no mid-epoch resume"
