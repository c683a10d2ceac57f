import pytest


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray (num_cpus=2) per test module, started the way antray does. Module
    scope: the multi-node modules start their own ``Cluster`` in between, and only one
    Ray may be connected in this process at a time."""
    import ray

    from orchestrator.ray_instance import ensure_ray

    assert not ray.is_initialized(), "another module left Ray running"
    ensure_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()


MiB = 1024 * 1024
# A head marked with antray_head and GPU nodes with one fake GPU each, as `ray up
# cluster.yaml` gives on AWS (sized for one ANT run: a worker + a GPU generator actor).
HEAD_NODE = {"num_cpus": 1, "resources": {"antray_head": 1.0}, "object_store_memory": 100 * MiB}
GPU_NODE = {"num_cpus": 1, "num_gpus": 1, "object_store_memory": 100 * MiB}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gpu_node() -> dict:
    """``cluster.add_node(**gpu_node)`` adds one more GPU node (a spot node joining)."""
    return dict(GPU_NODE)


@pytest.fixture(scope="module")
def cluster():
    """A simulated cluster (``ray.cluster_utils.Cluster``, no autoscaler) per module: the
    head and two GPU nodes. Fake GPUs: Ray schedules on them, torch sees no CUDA."""
    import ray
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "another module left Ray running"
    # A free dashboard port: 8265 may belong to another Ray on the machine, and a head
    # without its dashboard has no State API (Train's cleaner needs it).
    c = Cluster(initialize_head=True, head_node_args={**HEAD_NODE, "dashboard_port": free_port()})
    for _ in range(2):
        c.add_node(**GPU_NODE)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()
