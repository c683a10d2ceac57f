"""benchmarks/bench_gpu.py's bare loop on CPU with tiny sizes: every requested mode is
measured (a few steps of a ResNet-18 per mode, tens of seconds), and ``--profile`` prints
the step's operators. The orchestrator rows: test_bench_gpu_orchestrator.py."""

import json

import pytest

from benchmarks import bench_gpu

pytestmark = pytest.mark.integration


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


def test_profile_prints_the_step_operators(capsys):
    bench_gpu.main(
        ["--tiny", "--device", "cpu", "--orchestrator", "off", "--modes", "ant1x1",
         "--model", "resnet18", "--profile", "ant1x1"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "profile of ant1x1" in printed
    # The table names the operators of the classifier and of the exact rescaling's search.
    assert "aten::convolution" in printed and "aten::sort" in printed
