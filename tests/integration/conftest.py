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
