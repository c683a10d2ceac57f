"""antray on an autoscaling cluster that starts with no worker nodes, as `ray up
cluster.yaml` gives: Ray's own fake multi-node provider (``RAY_FAKE_CLUSTER=1 ray start
--head --autoscaling-config=FILE`` with ``provider: {type: fake_multinode}``) launches
worker nodes on demand as local raylets, and terminates them when idle.

The head has no CPU and carries the ``antray_head`` marker; the one worker type has
``min_workers: 0``. ``antray train --address`` and ``antray tune --address`` run as a user
runs them (the CLI, in a subprocess), make the autoscaler launch nodes and finish; the
idle nodes go away afterwards. While the cluster trains, a second antray run with its own
local Ray instance trains on the same machine: neither may mix up the two instances."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ANTRAY = str(Path(sys.executable).with_name("antray"))
WORKER_TYPE = "gpu_worker"
# What must never be printed with two Ray instances on one machine (see
# orchestrator/ray_instance.py::_pinned).
WRONG_INSTANCE = ("multiple active Ray instances", "Failed to query Ray Train Controller")

TINY = [
    "data.limit_train=768",
    "data.limit_val=128",
    "data.val_suite_images=32",
    "data.batch_size=64",
    "optim.epochs=1",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=1000",
    "runtime.device=cpu",
    "runtime.dist_backend=gloo",
]
ON_GPU_NODES = ["runtime.cpus_per_worker=1", "runtime.gpus_per_worker=1"]


def autoscaling_config(gcs_address: str) -> dict:
    return {
        "cluster_name": "antray-fake",
        "max_workers": 3,
        # 6 s: idle nodes go away within the test (cluster.yaml: 10 minutes)
        "idle_timeout_minutes": 0.1,
        "upscaling_speed": 2.0,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,
            # the fake raylets report their node id, not the machine's IP, to the autoscaler
            "use_node_id_as_ip": True,
            "disable_launch_config_check": True,
            "disable_node_updaters": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {
                "resources": {"CPU": 0, "antray_head": 1},
                "node_config": {},
                "max_workers": 0,
            },
            # a Train worker (CPU 1, GPU 1) and a generator actor (CPU 1) per node
            WORKER_TYPE: {
                "resources": {"CPU": 2, "GPU": 1},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 3,
            },
        },
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def session_processes(session_dir: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(session_dir in arg for arg in p.info.get("cmdline") or []):
            found.append(p)
    return found


def stop_session(session_dir: str) -> None:
    """Stop this cluster's processes only (``ray stop`` would stop every Ray here)."""
    procs = session_processes(session_dir)
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def autoscaling_cluster(tmp_path_factory):
    from ray._private.services import get_node_ip_address

    assert not ray.is_initialized(), "another module left Ray running"
    address = f"{get_node_ip_address()}:{free_port()}"
    config = tmp_path_factory.mktemp("autoscaler") / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(autoscaling_config(address)))
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_AUTH_MODE": "disabled",
    }
    subprocess.run(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            f"--port={address.rsplit(':', 1)[1]}",
            "--num-cpus=0",
            '--resources={"antray_head": 1}',
            f"--autoscaling-config={config}",
            "--dashboard-port=0",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    ray.init(address=address)  # this test process watches the nodes
    session = ray._private.worker._global_node.get_session_dir_path()
    try:
        yield address
    finally:
        ray.shutdown()
        stop_session(session)


def worker_nodes(alive: bool = True) -> list[dict]:
    return [
        n for n in ray.nodes() if n["Alive"] == alive and n["Resources"].get("antray_head", 0) == 0
    ]


def antray(*args: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env_extra or {})}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [ANTRAY, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def finish(proc: subprocess.Popen, timeout: float = 420) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def test_train_launches_nodes_beside_a_second_local_ray(autoscaling_cluster, mnist_root, tmp_path):
    assert worker_nodes() == [], "the cluster starts with no worker nodes"
    cluster_run = antray(
        "train",
        "--address",
        autoscaling_cluster,
        "--config",
        "configs/mnist_ant1x1.yaml",
        "--run-dir",
        str(tmp_path / "cluster-run"),
        "--data-root",
        str(mnist_root),
        *sets(
            *TINY,
            *ON_GPU_NODES,
            "runtime.num_workers=2",
            "ant.restart_every_steps=4",
            "ant.restart_iterations=4",
            f"runtime.storage={tmp_path / 'shared'}",
        ),
    )
    # A second run on the same machine, on the local Ray instance antray starts for it.
    local_run = antray(
        "train",
        "--config",
        "configs/mnist_gnt.yaml",
        "--run-dir",
        str(tmp_path / "local-run"),
        "--data-root",
        str(mnist_root),
        *sets(*TINY, "runtime.cpus_per_worker=0.5"),
    )
    cluster_out, local_out = finish(cluster_run), finish(local_run)
    assert f"of type {WORKER_TYPE}" in cluster_out, "the autoscaler launched the nodes"
    assert "val_clean_acc" in cluster_out and "val_clean_acc" in local_out
    for out in (cluster_out, local_out):
        for line in WRONG_INSTANCE:
            assert line not in out, out[-4000:]
    assert len(worker_nodes(alive=True) + worker_nodes(alive=False)) >= 2


def test_tune_two_trials_on_launched_nodes(autoscaling_cluster, mnist_root, tmp_path):
    proc = antray(
        "tune",
        "--address",
        autoscaling_cluster,
        "--config",
        "configs/mnist_gnt.yaml",
        "--space",
        "gnt_sigma",
        "--grid",
        "0.3,0.5",
        "--scheduler",
        "fifo",
        "--out",
        str(tmp_path / "tune"),
        "--data-root",
        str(mnist_root),
        *sets(*TINY, *ON_GPU_NODES, f"runtime.storage={tmp_path / 'shared'}"),
    )
    out = finish(proc)
    best = yaml.safe_load((tmp_path / "tune" / "best.json").read_text())
    assert best["trials"] == 2 and best["errors"] == 0, best
    for line in WRONG_INSTANCE:
        assert line not in out, out[-4000:]


def test_idle_nodes_go_away(autoscaling_cluster):
    launched = worker_nodes(alive=True) + worker_nodes(alive=False)
    assert launched, "the tests before launched worker nodes"
    deadline = time.time() + 120
    while worker_nodes(alive=True):
        assert time.time() < deadline, f"idle nodes still up: {len(worker_nodes())}"
        time.sleep(1)
