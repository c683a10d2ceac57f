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


def test_fused_modes_run_the_fused_step(capsys):
    rows = bench_gpu.main(
        ["--tiny", "--device", "cpu", "--orchestrator", "off", "--modes", "vanilla,ant1x1-fused",
         "--model", "resnet18"]
    )  # fmt: skip
    assert [r.mode for r in rows] == ["vanilla", "ant1x1-fused"]
    assert "bare ant1x1-fused/vanilla fp32" in capsys.readouterr().out
    setting = bench_gpu.Setting("resnet50", 224, 1000, 70, 10, 2)
    sets = bench_gpu.orchestrator_overrides("ant3x3-fused", setting, "bf16", True, workers=1)
    assert "ant.generator=3x3" in sets and "ant.step=fused" in sets
    assert "ant.step=alternating" in bench_gpu.orchestrator_overrides(
        "ant1x1", setting, "bf16", True, workers=1
    )


def test_bad_mode_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        bench_gpu.parse_args(["--modes", "vanilla,nope"])
    assert exc.value.code == 2
