"""benchmarks/bench_gpu.py's settings and flags. (Its loop on CPU with tiny sizes:
tests/integration/test_bench_gpu_bare.py.)"""

import pytest

from benchmarks import bench_gpu


def test_overrides_match_the_bare_loop_settings():
    setting = bench_gpu.Setting("resnet50", 224, 1000, 70, 10, 2)
    sets = bench_gpu.orchestrator_overrides("ant3x3", setting, "bf16", True, workers=2)
    assert "ant.generator=3x3" in sets and "ant.epsilon=135.0" in sets
    assert "data.batch_size=70" in sets and "data.limit_train=840" in sets
    assert "runtime.amp=true" in sets and "noise.shares.replay=0.2" in sets


def test_bad_mode_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        bench_gpu.parse_args(["--modes", "vanilla,nope"])
    assert exc.value.code == 2
