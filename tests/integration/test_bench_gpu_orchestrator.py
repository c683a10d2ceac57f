"""bench_gpu's orchestrator rows on CPU: each mode through `antray train`, local then Ray."""

import pytest

from benchmarks import bench_gpu

pytestmark = pytest.mark.integration


def test_tiny_orchestrator_rows_local_and_ray(ray_local, capsys):
    rows = bench_gpu.main(
        ["--tiny", "--device", "cpu", "--modes", "vanilla,ant1x1", "--model", "resnet18"]
    )
    orchestrated = [(r.runner, r.mode) for r in rows if r.runner != "bare"]
    assert orchestrated == [
        ("antray-local", "vanilla"), ("orchestrator", "vanilla"),
        ("antray-local", "ant1x1"), ("orchestrator", "ant1x1"),
    ]  # fmt: skip
    assert all(r.images_per_s > 0 for r in rows)
    assert "orchestrator/local ant1x1 fp32" in capsys.readouterr().out
