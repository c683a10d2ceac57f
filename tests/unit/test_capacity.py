"""Whether a run fits a cluster is answered from its node types (an autoscaling cluster
has no worker nodes until asked), by packing each process onto one node."""

import yaml

from orchestrator.capacity import (
    ClusterShape,
    NodeType,
    copies_that_fit,
    fits,
    shape_from_autoscaling_config,
)
from orchestrator.config import load_config
from orchestrator.preflight import run_bundles

GPU_WORKER = {"CPU": 1.0, "GPU": 1.0}
GENERATOR = {"CPU": 1.0}


def autoscaling(max_workers: int = 4, per_type: int = 4) -> ClusterShape:
    raw = {
        "max_workers": max_workers,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0, "antray_head": 1}},
            "gpu_worker": {"resources": {"CPU": 2, "GPU": 1}, "max_workers": per_type},
        },
    }
    return shape_from_autoscaling_config(raw, "test")


def test_a_cold_autoscaling_cluster_holds_what_its_node_types_can():
    shape = autoscaling()
    assert fits([GPU_WORKER] * 2 + [GENERATOR], shape)
    assert fits([GPU_WORKER] * 4, shape)
    assert not fits([GPU_WORKER] * 5, shape), "only four GPU nodes can exist"


def test_the_global_cap_on_worker_nodes_binds_across_types():
    assert not fits([GPU_WORKER] * 3, autoscaling(max_workers=2, per_type=4))


def test_packing_is_per_node_not_summed():
    # Two nodes with one GPU each do not hold a two-GPU worker, though the sum is 2.
    shape = ClusterShape((NodeType("g", {"CPU": 4, "GPU": 1}, 2),), "test")
    assert not fits([{"CPU": 1, "GPU": 2}], shape)
    # Two 1-CPU processes share a 2-CPU node; a third needs the next node.
    small = ClusterShape((NodeType("c", {"CPU": 2}, 1),), "test")
    assert fits([{"CPU": 1}] * 2, small) and not fits([{"CPU": 1}] * 3, small)


def test_head_only_bundles_land_on_the_head():
    shape = autoscaling()
    assert fits([{"antray_head": 0.001}] * 50, shape)
    no_head = ClusterShape((NodeType("c", {"CPU": 8}, 4),), "test")
    assert not fits([{"antray_head": 0.001}], no_head)


def test_trials_at_once_pack_per_node_type():
    trial = [GPU_WORKER, GPU_WORKER, GENERATOR, {"antray_head": 0.001}]
    # Four 2-CPU/1-GPU nodes: a trial's two workers take two nodes and its generator
    # fits beside one of them, so two trials run at once; three nodes hold one.
    assert copies_that_fit(trial, autoscaling(), limit=8) == 2
    assert copies_that_fit(trial, autoscaling(max_workers=3, per_type=3), limit=8) == 1
    assert copies_that_fit(trial, autoscaling(), limit=1) == 1
    # Summed resources say three (CPU 8 / 2.5, GPU 4 / 1), but a 1.5-CPU worker and a
    # 1-CPU generator never share a 2-CPU node: each trial takes two nodes.
    wide = [{"CPU": 1.5, "GPU": 1.0}, GENERATOR]
    assert copies_that_fit(wide, autoscaling(), limit=8) == 2


def test_cluster_yaml_holds_the_imagenet_runs():
    """The shipped cluster holds each ImageNet config's workers and generator actor."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    shape = shape_from_autoscaling_config(
        yaml.safe_load((repo / "cluster.yaml").read_text()), "cluster.yaml"
    )
    for path in sorted((repo / "configs").glob("imagenet_*.yaml")):
        cfg = load_config(path)
        assert fits(run_bundles(cfg, workers=cfg.runtime.max_workers), shape), path.name


def test_run_bundles_follow_the_elastic_minimum():
    cfg = load_config(
        "configs/mnist_ant1x1.yaml",
        ["runtime.num_workers=[2, 4]", "runtime.gpus_per_worker=1", "data.batch_size=64"],
    )
    bundles = run_bundles(cfg)
    assert bundles.count({"CPU": 1.0, "GPU": 1.0}) == 2 and {"CPU": 1.0} in bundles
    assert len(run_bundles(cfg, workers=cfg.runtime.max_workers)) == 5


def test_nodes_of_one_address_are_told_apart(monkeypatch):
    """Simulated nodes share one IP: each alive node is its own type."""
    import ray

    from orchestrator import capacity

    nodes = [
        {"Alive": True, "NodeManagerAddress": "10.0.0.1", "NodeID": f"{i}" * 8, "Resources": r}
        for i, r in enumerate(
            [{"CPU": 1, "antray_head": 1}, {"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 1}]
        )
    ]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    shape = capacity.alive_shape()
    assert fits([{"CPU": 0.25, "GPU": 1}] * 2 + [{"CPU": 0.1}], shape)
    assert not fits([{"CPU": 0.25, "GPU": 1}] * 3, shape)
