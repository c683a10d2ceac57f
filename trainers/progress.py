"""Periodic progress lines with rate and ETA (rank 0 prints)."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


# Steps of an epoch left out of its steady-state rate (the GPU benchmark's default warm-up).
STEADY_AFTER_STEPS = 8


class ProgressMeter:
    def __init__(
        self,
        total_steps: int,
        *,
        every: int,
        enabled: bool,
        prefix: str = "",
        steady_after: int = STEADY_AFTER_STEPS,
    ) -> None:
        self.total, self.every, self.enabled, self.prefix = total_steps, every, enabled, prefix
        self.start = time.perf_counter()
        self.images = 0
        self.done = 0
        self.steady_after = steady_after
        # (time, images) when the warm-up ended: at its last step, or now when there is none.
        self._steady_start: tuple[float, int] | None = (
            (self.start, 0) if steady_after <= 0 else None
        )
        self._last_update = self.start  # the steady window ends at the last step

    def update(self, step: int, images: int, loss: float) -> None:
        self.images += images
        self.done += 1
        self._last_update = time.perf_counter()
        if self.done == self.steady_after:
            self._steady_start = (self._last_update, self.images)
        if not self.enabled or step % self.every:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.images / max(elapsed, 1e-9)
        eta = (self.total - step) * elapsed / max(self.done, 1)
        print(
            f"{self.prefix}step {step}/{self.total} loss {loss:.4f} "
            f"{rate:.0f} img/s ETA {format_duration(eta)}",
            file=sys.stderr,
            flush=True,
        )

    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def steady_rate(self) -> float | None:
        """Images/s after the first ``steady_after`` steps (loader start-up, cuDNN autotuning
        and first-touch allocations excluded), up to the last step's update (what follows it,
        such as the data loader's shutdown or a checkpoint, is not a step); None until a step
        beyond them has run."""
        if self._steady_start is None or self.done <= max(self.steady_after, 0):
            return None
        t0, images0 = self._steady_start
        return (self.images - images0) / max(self._last_update - t0, 1e-9)
