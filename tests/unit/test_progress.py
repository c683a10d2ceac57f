"""The progress meter's steady-state rate leaves out the first (warm-up) steps."""

from __future__ import annotations

import time

from trainers.progress import ProgressMeter


def test_steady_rate_excludes_warmup_steps() -> None:
    meter = ProgressMeter(10, every=1000, enabled=False, steady_after=2)
    meter.update(1, 8, 0.0)
    time.sleep(0.2)  # a slow first step (loader start-up, autotuning)
    meter.update(2, 8, 0.0)
    assert meter.steady_rate() is None  # nothing measured past the warm-up yet
    for step in range(3, 6):
        time.sleep(0.01)
        meter.update(step, 8, 0.0)
    steady = meter.steady_rate()
    assert steady is not None
    # 24 images in ~0.03 s after warm-up, against 40 images in ~0.23 s overall.
    assert steady > 3 * meter.rate()
    assert steady < 24 / 0.03 * 1.01


def test_short_epoch_has_no_steady_rate() -> None:
    meter = ProgressMeter(3, every=1000, enabled=False, steady_after=8)
    for step in range(1, 4):
        meter.update(step, 4, 0.0)
    assert meter.steady_rate() is None


def test_steady_rate_ends_at_the_last_step() -> None:
    # What follows the last step (the loader's shutdown, the epoch summary) is no step.
    meter = ProgressMeter(4, every=1000, enabled=False, steady_after=1)
    for step in range(1, 5):
        time.sleep(0.01)
        meter.update(step, 8, 0.0)
    time.sleep(0.3)
    steady = meter.steady_rate()
    assert steady is not None
    assert steady > 24 / 0.2  # 24 images in ~0.03 s, not ~0.33 s


def test_no_warmup_counts_every_step() -> None:
    meter = ProgressMeter(3, every=1000, enabled=False, steady_after=0)
    assert meter.steady_rate() is None  # no step yet
    for step in range(1, 4):
        time.sleep(0.01)
        meter.update(step, 4, 0.0)
    steady = meter.steady_rate()
    assert steady is not None
    assert 12 / 0.2 < steady < 12 / 0.03 * 1.01
