"""Checkpoints and data in S3: a real S3-compatible endpoint on loopback (moto's server
mode, as in Ray's own test suite), MNIST read from the bucket (copied once to the node),
two epochs of ANT checkpointed into it, then ``--resume`` from it with the replay
history back."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_runs import TINY_ANT_RUN

from orchestrator.config import load_config
from orchestrator.storage import RunLocation, latest_checkpoint
from orchestrator.train import train_from_config
from trainers.checkpoint_format import load_state

pytestmark = pytest.mark.integration
BUCKET = "antray-test"
# Fake credentials for the local server only; real clusters use an instance profile.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto_server on 127.0.0.1 with one bucket; the fake credentials (and where nodes
    keep synced data) are in the environment before Ray starts, so Train workers (which
    upload checkpoints) get them."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    env = {**FAKE_AWS, "ANTRAY_DATA_CACHE": str(tmp_path_factory.mktemp("node-data"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "moto did not start"
                time.sleep(0.2)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    finally:
        server.terminate()
        server.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def ray_with_s3(s3_endpoint):
    import ray

    from orchestrator.ray_instance import ensure_ray

    assert not ray.is_initialized(), "another module left Ray running"
    ensure_ray(None, num_cpus=2)
    yield s3_endpoint
    ray.shutdown()


SETS = [*TINY_ANT_RUN, "runtime.cpus_per_worker=0.5", "runtime.generator_actor_cpus=0.5"]


def test_data_and_checkpoints_in_s3_then_resume_restores_replay(ray_with_s3, mnist_root, tmp_path):
    endpoint, client = ray_with_s3
    for f in (mnist_root / "MNIST" / "raw").glob("*.gz"):
        client.upload_file(str(f), BUCKET, f"data/MNIST/raw/{f.name}")
    data_root = f"s3://{BUCKET}/data"
    run = tmp_path / "run"
    cfg = load_config(
        "configs/mnist_ant1x1.yaml",
        [
            *SETS,
            "optim.epochs=2",
            f"runtime.storage=s3://{BUCKET}/runs",
            f"runtime.storage_endpoint={endpoint}",
        ],
    )
    first = train_from_config(cfg, run, data_root=data_root, track=False)
    assert first["epoch"] == 2
    # 12 steps per epoch, a snapshot every 3 steps.
    assert first["replay_size"] == 8
    # One copy of the data on this (one-node) cluster, shared by worker and actor.
    (copy,) = [p for p in Path(os.environ["ANTRAY_DATA_CACHE"]).iterdir() if p.is_dir()]
    assert (copy / ".antray-synced").read_text() == data_root
    assert (copy / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()

    location = RunLocation.read(run)
    keys = [
        o["Key"]
        for o in client.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{location.name}/")["Contents"]
    ]
    assert any("/checkpoint_" in k and k.endswith("/state.pt") for k in keys), keys
    assert not (run / "ray").exists(), "nothing checkpointed on the driver's disk"
    # Read back through Ray's Result and pyarrow, from the bucket.
    with latest_checkpoint(location).as_directory() as directory:
        saved = load_state(Path(directory))
    assert saved["epoch"] == 1 and len(saved["service"]["replay"]["items"]) == 8

    # Resume: runtime.storage is not repeated; the run directory says where to look.
    more = load_config(
        "configs/mnist_ant1x1.yaml",
        [*SETS, "optim.epochs=3", f"runtime.storage_endpoint={endpoint}"],  # for the data
    )
    second = train_from_config(more, run, data_root=data_root, resume=True, track=False)
    assert second["epoch"] == 3 and second["step"] == 36
    assert second["replay_size_at_start"] == 8, "the replay history came back from S3"
    assert second["replay_size"] == 12
