"""benchmarks/ray_background_cpu.py: the /proc reader and the process labels (the Ray run
itself is a benchmark, not a test)."""

import os
import time
from pathlib import Path

import pytest
from benchmark_script import load_benchmark

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def load_script():
    return load_benchmark("ray_background_cpu")


def test_cpu_seconds_sees_this_process_use_cpu():
    script = load_script()
    before = script.cpu_seconds()[os.getpid()][0]
    start = time.perf_counter()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn 0.3 s of CPU
        pass
    after = script.cpu_seconds()[os.getpid()][0]
    # Other threads of the pytest process may add CPU time, never more than the cores had.
    elapsed = time.perf_counter() - start
    assert 0.2 <= after - before <= elapsed * (os.cpu_count() or 1) + 0.05


def test_labels_name_ray_actors_and_daemons():
    script = load_script()
    assert script._label("ray::ReplayStoreActor   ") == "ray::ReplayStoreActor"
    assert script._label("/venv/lib/ray/core/src/ray/raylet/raylet --x=1") == "raylet"
    assert script._label("/venv/bin/python -u /venv/lib/ray/_private/log_monitor.py") == (
        "log_monitor.py"
    )
    assert script._label("") == ""
