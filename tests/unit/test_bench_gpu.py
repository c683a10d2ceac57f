"""benchmarks/bench_gpu.py runs on CPU with tiny sizes: every requested row is measured."""

import json

import pytest

from benchmarks import bench_gpu


def test_tiny_cpu_bare_loop_measures_each_mode(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rows = bench_gpu.main(
        ["--tiny", "--device", "cpu", "--orchestrator", "off", "--modes", "vanilla,gnt,ant3x3",
         "--model", "resnet18", "--json", str(out)]
    )  # fmt: skip
    # CPU: bf16 autocast and channels_last are CUDA-only, so one row per mode.
    assert [(r.runner, r.mode, r.precision, r.channels_last) for r in rows] == [
        ("bare", m, "fp32", False) for m in ("vanilla", "gnt", "ant3x3")
    ]
    assert all(r.images_per_s > 0 and r.step_ms > 0 for r in rows)
    assert len(json.loads(out.read_text())) == 3
    printed = capsys.readouterr().out
    assert printed.startswith("device: CPU") and "bare ant3x3/vanilla fp32" in printed


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


def test_profile_prints_the_step_operators(capsys):
    bench_gpu.main(
        ["--tiny", "--device", "cpu", "--orchestrator", "off", "--modes", "ant1x1",
         "--model", "resnet18", "--profile", "ant1x1"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "profile of ant1x1" in printed
    # The table names the operators of the classifier and of the exact rescaling's search.
    assert "aten::convolution" in printed and "aten::sort" in printed
