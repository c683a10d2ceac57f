import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (num_cpus=2) for the whole session, started the way antray does."""
    import ray

    from orchestrator.ray_runner import ensure_ray

    ensure_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()
