"""A simulated multi-node cluster (``ray.cluster_utils.Cluster``): a head marked with the
``antray_head`` resource and two worker nodes with fake GPUs, as `ray up cluster.yaml`
gives on AWS. Shows where everything runs, that Tune cannot deadlock on it, and that a
worker node lost mid-run (a spot preemption) costs a restart, not the run.

Fake GPUs: Ray schedules on them, torch sees no CUDA, so Train workers and the generator
actor compute on the CPU (``runtime.dist_backend=gloo``); placement is what is tested."""

import threading
import time

import pytest
import ray
from tiny_runs import TINY_ANT_RUN

from orchestrator.config import load_config
from orchestrator.errors import UserError
from orchestrator.storage import RunLocation, Storage, latest_checkpoint
from orchestrator.train import train_from_config

pytestmark = pytest.mark.integration
HEAD = "antray_head"


TINY = [
    *TINY_ANT_RUN,
    "ant.replay_refresh_every_steps=2",
    "runtime.cpus_per_worker=0.25",
    "runtime.gpus_per_worker=1",
    "runtime.generator_actor_cpus=0.25",
    "runtime.dist_backend=gloo",
]


def node_ids(nodes) -> set[str]:
    return {n.node_id for n in nodes}


def ant(tmp_path, *extra):
    return load_config(
        "configs/mnist_ant1x1.yaml", [*TINY, f"runtime.storage={tmp_path / 'shared'}", *extra]
    )


def actors_of(class_name: str) -> list:
    from ray.util.state import list_actors

    here = ray.get_runtime_context().gcs_address  # never another Ray on the machine
    return list_actors(address=here, filters=[("class_name", "=", class_name)], limit=1000)


def test_store_on_the_head_and_generator_gpu_from_ray(cluster, mnist_root, tmp_path):
    from orchestrator.ray_instance import ensure_ray
    from orchestrator.ray_runner import build_trainer, kill_actors, wait_until_ready

    ensure_ray(cluster.address)
    head = cluster.head_node.node_id
    workers = node_ids(cluster.worker_nodes)

    # The generator actor's GPU is the one Ray assigned (get_gpu_ids), and none at all
    # with generator_actor_gpus=0 even on a GPU node.
    for gpus in (1, 0):
        cfg = ant(tmp_path, f"runtime.generator_actor_gpus={gpus}")
        location = RunLocation(Storage(str(tmp_path / "shared")), "placement")
        _, actors = build_trainer(cfg, data_root=str(mnist_root), location=location)
        try:
            wait_until_ready(actors, cfg)
            where = ray.get(actors.generator.placement.remote())
            assert ray.get(actors.store.node_id.remote()) == head
            assert ray.get(actors.stop_flag.ping.remote()) is False
        finally:
            kill_actors(actors)
        if gpus:
            assert where["node_id"] in workers and len(where["gpu_ids"]) == 1
        else:
            assert where["gpu_ids"] == []
        assert where["device"] == "cpu"  # fake GPUs: no CUDA behind them


def test_local_storage_on_a_multi_node_cluster_is_refused(cluster, mnist_root, tmp_path):
    cfg = load_config("configs/mnist_ant1x1.yaml", TINY)
    with pytest.raises(UserError, match="runtime.storage is needed on a multi-node cluster"):
        train_from_config(
            cfg, tmp_path / "run", data_root=str(mnist_root), address=cluster.address, track=False
        )
    assert not (tmp_path / "run").exists()


def test_missing_data_on_the_gpu_nodes_is_found_before_the_run(cluster, tmp_path):
    cfg = ant(tmp_path)
    with pytest.raises(UserError, match="on a worker node: MNIST files missing"):
        train_from_config(
            cfg, tmp_path / "run", data_root=str(tmp_path / "nodata"), address=cluster.address
        )
    assert not (tmp_path / "run").exists()


def test_tune_two_trials_on_a_cluster_that_holds_one(cluster, mnist_root, tmp_path):
    from orchestrator.tune_runner import tune_from_config

    # One trial holds both GPUs (its worker and its generator actor). Before trials
    # reserved their generator actor, each of two trials took one GPU node for its
    # generator and both waited for ever for a GPU for their worker.
    cfg = ant(tmp_path, "runtime.generator_actor_gpus=1", "optim.epochs=1")
    summary = tune_from_config(
        cfg,
        tmp_path / "tune",
        space_name="ant_epsilon",
        grid=[3.0, 9.0],
        metric="val_generator_acc",
        mode="max",
        max_concurrent=2,
        data_root=str(mnist_root),
        address=cluster.address,
        track=False,
    )
    assert summary["trials"] == 2 and summary["errors"] == 0
    assert summary["max_concurrent"] == 1
    head = cluster.head_node.node_id
    drivers = [a for a in actors_of("ImplicitFunc")]
    assert len(drivers) >= 2 and {a.node_id for a in drivers} == {head}


def test_worker_node_lost_mid_run_and_training_finishes(cluster, gpu_node, mnist_root, tmp_path):
    cfg = ant(tmp_path, "runtime.num_workers=1", "optim.epochs=3")
    run = tmp_path / "run"
    box: dict = {}

    def target():
        try:
            box["metrics"] = train_from_config(
                cfg, run, data_root=str(mnist_root), address=cluster.address, track=False
            )
        except BaseException as exc:  # surfaced below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.time() + 300
    while not ((run / "storage.json").exists() and latest_checkpoint(RunLocation.read(run))):
        assert time.time() < deadline and thread.is_alive(), box.get("error")
        time.sleep(0.5)
    (alive,) = [a for a in actors_of("RayTrainWorker") if a.state == "ALIVE"]
    assert alive.node_id in node_ids(cluster.worker_nodes), "Train workers run on GPU nodes"
    victim = next(n for n in cluster.worker_nodes if n.node_id == alive.node_id)
    cluster.remove_node(victim)  # a spot preemption without warning
    thread.join(timeout=400)
    try:
        assert "error" not in box, box.get("error")
        m = box["metrics"]
        assert m["epoch"] == 3, "training finished on the remaining GPU node"
        rebuilt = [a for a in actors_of("RayTrainWorker") if a.actor_id != alive.actor_id]
        survivor = node_ids(cluster.worker_nodes)
        assert any(a.node_id in survivor for a in rebuilt), "a new worker on the other node"
        head = cluster.head_node.node_id
        assert {a.node_id for a in actors_of("ReplayStoreActor")} == {head}
        assert {a.node_id for a in actors_of("StopFlag")} == {head}
        assert m["store_recoveries"] == 0, "the store lives on the head: nothing to refill"
        # 12 steps per epoch, a snapshot every 3 steps: 4 per epoch, none lost.
        assert m["replay_size"] == 12
        # The checkpoints are in the configured shared storage, found through Result.
        recorded = RunLocation.read(run)
        assert recorded.storage.root == str(tmp_path / "shared")
        assert not (run / "ray").exists()
    finally:
        cluster.add_node(**gpu_node)  # the autoscaler's replacement, for later tests
