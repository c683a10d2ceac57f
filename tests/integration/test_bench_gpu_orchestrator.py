"""bench_gpu's orchestrator rows on CPU: each mode through `antray train`, local then Ray."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def test_tiny_orchestrator_rows_local_and_ray(ray_local, capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    rows = bench.main(
        ["--tiny", "--device", "cpu", "--modes", "vanilla,ant1x1", "--model", "resnet18"]
    )
    orchestrated = [(r.runner, r.mode) for r in rows if r.runner != "bare"]
    assert orchestrated == [
        ("antray-local", "vanilla"), ("orchestrator", "vanilla"),
        ("antray-local", "ant1x1"), ("orchestrator", "ant1x1"),
    ]  # fmt: skip
    assert all(r.images_per_s > 0 for r in rows)
    assert "orchestrator/local ant1x1 fp32" in capsys.readouterr().out
