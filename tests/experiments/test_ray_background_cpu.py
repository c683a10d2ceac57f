"""experiments/mnist/ray_background_cpu.py: the /proc reader and the process labels (the Ray
run itself is a measurement, not a test)."""

import os
import time
from pathlib import Path

import pytest

from experiments.mnist import ray_background_cpu as script

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_cpu_seconds_sees_this_process_use_cpu():
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
    assert script._label("ray::ReplayStoreActor   ") == "ray::ReplayStoreActor"
    assert script._label("/venv/lib/ray/core/src/ray/raylet/raylet --x=1") == "raylet"
    assert script._label("/venv/bin/python -u /venv/lib/ray/_private/log_monitor.py") == (
        "log_monitor.py"
    )
    assert script._label("") == ""


def test_threads_of_this_process_are_read_and_grouped_by_name():
    import threading

    burned, done = threading.Event(), threading.Event()

    def burn():
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        burned.set()
        done.wait(timeout=30)  # stay alive until the second reading

    t = threading.Thread(target=burn, name="burner")
    before = script.thread_cpu_seconds(os.getpid())
    assert os.getpid() in before  # the main thread's id is the process id
    t.start()
    assert burned.wait(timeout=30)
    after = script.thread_cpu_seconds(os.getpid())
    done.set()
    t.join(timeout=30)
    # The new thread was not in the first reading, so it is left out; the main thread is in.
    assert t.native_id in after and t.native_id not in before
    assert after[t.native_id][0] >= 0.2
    # Grouping adds the threads of one name, largest group first; new threads are left out.
    fake_before = {1: (1.0, "a"), 2: (2.0, "a"), 3: (0.0, "b")}
    fake_after = {1: (1.5, "a"), 2: (2.5, "a"), 3: (0.1, "b"), 4: (9.0, "new")}
    assert script.by_name(fake_before, fake_after, window=2.0) == [(50.0, 2, "a"), (5.0, 1, "b")]
    fake_after[2] = (3.0, "a")
    assert script.per_thread(fake_before, fake_after, 2.0, "a") == [50.0, 25.0]
